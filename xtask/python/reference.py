"""PyTorch reference for pspnet-rs: PSPNet in both published key layouts.

Builds a PSPNet exactly as hszhao/semseg (`--layout semseg`) or
mmsegmentation's `pspnet_r{18,50,101}-d8` (`--layout mmseg`) build it, with
random weights and non-trivial batch-norm statistics, saves the checkpoint in
the layout's own wrapping (zip format, plus the legacy pre-1.6 format), and
runs it in float64 on random images, saving every stage's output.

    python reference.py --layout semseg --depth 50 --classes 150 --size 473x473 --out DIR

Files written to DIR:
    checkpoint.pth, checkpoint_legacy.pth      the model (state dict in the layout's keys)
    reference_HxW.safetensors                  input (normalised, f32) and outputs:
        stem, layer1..layer4, ppm, head, logits_low, aux_logits, logits
        (computed in float64, stored as float32)

Only `torch` and `numpy` are needed (`pip install torch numpy`); safetensors
files are written by hand (JSON header + raw little-endian data).
"""

import argparse
import json
import struct
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

MEAN = [123.675, 116.28, 103.53]
STD = [58.395, 57.12, 57.375]
DEPTHS = {18: ("basic", [2, 2, 2, 2]), 34: ("basic", [3, 4, 6, 3]), 50: ("bottleneck", [3, 4, 6, 3]),
          101: ("bottleneck", [3, 4, 23, 3]), 152: ("bottleneck", [3, 8, 36, 3])}


def conv(cin, cout, k, stride=1, dilation=1, padding=None, bias=False):
    pad = dilation * (k // 2) if padding is None else padding
    return nn.Conv2d(cin, cout, k, stride=stride, padding=pad, dilation=dilation, bias=bias)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride, dilation, downsample, stride_on_reduce=False):
        """stride_on_reduce: stride on conv1 (the 1x1 reduce) instead of conv2, as
        the authors' Caffe pspnet50 does (the downsample strides either way)."""
        super().__init__()
        s1, s2 = (stride, 1) if stride_on_reduce else (1, stride)
        self.conv1, self.bn1 = conv(inplanes, planes, 1, s1), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = conv(planes, planes, 3, s2, dilation), nn.BatchNorm2d(planes)
        self.conv3, self.bn3 = conv(planes, planes * 4, 1), nn.BatchNorm2d(planes * 4)
        self.downsample = downsample

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class BasicBlock(nn.Module):
    """mmsegmentation's BasicBlock: only conv1 is dilated; conv2 is a plain 3x3."""
    expansion = 1

    def __init__(self, inplanes, planes, stride, dilation, downsample):
        super().__init__()
        self.conv1, self.bn1 = conv(inplanes, planes, 3, stride, dilation), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = conv(planes, planes, 3, padding=1), nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class ResNet(nn.Module):
    """Dilated ResNet, output stride 8: stages 3 and 4 stride 1, dilation 2 and 4."""

    def __init__(self, depth, width, stem_widths, contract, classic_stem=False, avg_down=False, output_stride=8,
                 stride_on_reduce=False):
        super().__init__()
        kind, layers = DEPTHS[depth]
        block = Bottleneck if kind == "bottleneck" else BasicBlock
        if stride_on_reduce and block is not Bottleneck:
            raise ValueError("stride_on_reduce needs bottleneck blocks")
        extra = {"stride_on_reduce": True} if stride_on_reduce else {}
        w0, w1, w2 = stem_widths
        if classic_stem:  # ResNetV1b: one 7x7 stride-2 convolution
            self.stem = nn.Sequential(conv(3, width, 7, 2), nn.BatchNorm2d(width), nn.ReLU())
            inplanes = width
        else:
            self.stem = nn.Sequential(conv(3, w0, 3, 2), nn.BatchNorm2d(w0), nn.ReLU(),
                                      conv(w0, w1, 3), nn.BatchNorm2d(w1), nn.ReLU(),
                                      conv(w1, w2, 3), nn.BatchNorm2d(w2), nn.ReLU())
            inplanes = w2
        strides, dilations = {8: ([1, 2, 1, 1], [1, 1, 2, 4]), 16: ([1, 2, 2, 1], [1, 1, 1, 2]),
                              32: ([1, 2, 2, 2], [1, 1, 1, 1])}[output_stride]
        self.stages = nn.ModuleList()
        for i, (n, stride, dilation) in enumerate(zip(layers, strides, dilations)):
            planes = width * 2 ** i
            downsample = None
            if stride != 1 or inplanes != planes * block.expansion:
                out = planes * block.expansion
                if avg_down and stride != 1:  # ResNetV1d: pool, then a stride-1 projection
                    downsample = nn.Sequential(nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False),
                                               conv(inplanes, out, 1), nn.BatchNorm2d(out))
                else:
                    downsample = nn.Sequential(conv(inplanes, out, 1, stride), nn.BatchNorm2d(out))
            blocks = []
            for b in range(n):
                d = dilation // 2 if (contract and b == 0 and dilation > 1) else dilation
                blocks.append(block(inplanes, planes, stride if b == 0 else 1, d, downsample if b == 0 else None,
                                    **extra))
                inplanes = planes * block.expansion
            self.stages.append(nn.Sequential(*blocks))
        self.out_channels = inplanes

    def forward(self, x):
        out = OrderedDict()
        x = F.max_pool2d(self.stem(x), 3, 2, 1)
        out["stem"] = x
        for i, stage in enumerate(self.stages):
            x = stage(x)
            out[f"layer{i + 1}"] = x
        return out


class PSPNet(nn.Module):
    def __init__(self, depth, width, classes, bins, layout, classic_stem=False, avg_down=False, output_stride=8,
                 stride_on_reduce=False, pool="avg"):
        super().__init__()
        semseg = layout == "semseg"
        stem = (width, width, 2 * width) if semseg else (width // 2, width // 2, width)
        self.backbone = ResNet(depth, width, stem, not semseg, classic_stem, avg_down, output_stride,
                               stride_on_reduce)
        pooling = {"avg": nn.AdaptiveAvgPool2d, "max": nn.AdaptiveMaxPool2d}[pool]
        self.classic_stem = classic_stem
        c4 = self.backbone.out_channels
        bottleneck = DEPTHS[depth][0] == "bottleneck"
        channels = c4 // len(bins) if semseg else (8 * width if bottleneck else 2 * width)
        head = 8 * width if semseg else channels
        aux_channels = 4 * width if (semseg or bottleneck) else width
        self.bins, self.align_corners = bins, semseg
        self.ppm = nn.ModuleList(nn.Sequential(pooling(b), conv(c4, channels, 1),
                                               nn.BatchNorm2d(channels), nn.ReLU()) for b in bins)
        self.head = nn.Sequential(conv(c4 + len(bins) * channels, head, 3), nn.BatchNorm2d(head), nn.ReLU())
        self.cls = nn.Conv2d(head, classes, 1)
        c3 = c4 // 2
        self.aux = nn.Sequential(conv(c3, aux_channels, 3), nn.BatchNorm2d(aux_channels), nn.ReLU())
        self.aux_cls = nn.Conv2d(aux_channels, classes, 1)

    def forward(self, x):
        out = self.backbone(x)
        f = out["layer4"]
        levels = [f] + [F.interpolate(m(f), f.shape[2:], mode="bilinear", align_corners=self.align_corners)
                        for m in self.ppm]
        out["ppm"] = torch.cat(levels, 1)
        out["head"] = self.head(out["ppm"])
        out["logits_low"] = self.cls(out["head"])
        out["aux_logits"] = self.aux_cls(self.aux(out["layer3"]))
        out["logits"] = F.interpolate(out["logits_low"], x.shape[2:], mode="bilinear",
                                      align_corners=self.align_corners)
        return out

    def layout_state_dict(self, layout):
        """The state dict under the reference implementation's key names."""
        own = self.state_dict()
        renamed = OrderedDict()
        stem_index = {"semseg": "layer0.{}", "mmseg": "backbone.stem.{}"}[layout]
        ppm_conv = {"semseg": "ppm.features.{}.1.", "mmseg": "decode_head.psp_modules.{}.1.conv."}[layout]
        ppm_bn = {"semseg": "ppm.features.{}.2.", "mmseg": "decode_head.psp_modules.{}.1.bn."}[layout]
        fixed = {
            "semseg": {"head.0.": "cls.0.", "head.1.": "cls.1.", "cls.": "cls.4.", "aux.0.": "aux.0.",
                       "aux.1.": "aux.1.", "aux_cls.": "aux.4."},
            "mmseg": {"head.0.": "decode_head.bottleneck.conv.", "head.1.": "decode_head.bottleneck.bn.",
                      "cls.": "decode_head.conv_seg.", "aux.0.": "auxiliary_head.convs.0.conv.",
                      "aux.1.": "auxiliary_head.convs.0.bn.", "aux_cls.": "auxiliary_head.conv_seg."},
        }[layout]
        for key, value in own.items():
            parts = key.split(".")
            if key.startswith("backbone.stem.") and self.classic_stem:
                new = "backbone." + ("conv1" if parts[2] == "0" else "bn1") + "." + ".".join(parts[3:])
            elif key.startswith("backbone.stem."):
                new = stem_index.format(parts[2]) + "." + ".".join(parts[3:])
            elif key.startswith("backbone.stages."):
                stage = f"layer{int(parts[2]) + 1}"
                new = ".".join([stage] + parts[3:])
                new = new if layout == "semseg" else "backbone." + new
            elif key.startswith("ppm."):
                template = ppm_conv if parts[2] == "1" else ppm_bn
                new = template.format(parts[1]) + ".".join(parts[3:])
            else:
                prefix = next(p for p in fixed if key.startswith(p))
                new = fixed[prefix] + key[len(prefix):]
            renamed[new] = value
        return renamed


def calibrate(model, size, generator):
    """Data-dependent batch-norm statistics (so activations stay O(1) through
    any depth), then perturbed so the folding is exercised non-trivially."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(torch.randn(2, 3, *size, generator=generator))
    model.eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_var.mul_(0.8 + 0.4 * torch.rand(c, generator=generator))
            m.running_mean.add_(0.1 * m.running_var.sqrt() * torch.randn(c, generator=generator))
            m.weight.data.copy_(0.5 + torch.rand(c, generator=generator))
            m.bias.data.copy_(0.1 * torch.randn(c, generator=generator))


def write_safetensors(path, tensors, metadata, keep_f64=False):
    """Tensors as F32, or float64 ones as F64 with `keep_f64`."""
    header, offset, blobs = {"__metadata__": metadata}, 0, []
    for name, t in tensors.items():
        wide = keep_f64 and t.dtype == torch.float64
        data = np.ascontiguousarray(t.detach().cpu().numpy().astype("<f8" if wide else "<f4")).tobytes()
        header[name] = {"dtype": "F64" if wide else "F32", "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for blob in blobs:
            f.write(blob)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layout", choices=["semseg", "mmseg"], required=True)
    p.add_argument("--depth", type=int, default=50, choices=sorted(DEPTHS))
    p.add_argument("--width", type=int, default=64, help="base width (64 = the published models)")
    p.add_argument("--classes", type=int, default=150)
    p.add_argument("--bins", default="1,2,3,6")
    p.add_argument("--size", action="append", default=[], help="HxW of a reference input (repeatable; none: checkpoint only)")
    p.add_argument("--stem", choices=["deep", "classic"], default="deep",
                   help="classic = mmsegmentation ResNetV1b (7x7 stem), mmseg layout only")
    p.add_argument("--avg-down", action="store_true", help="ResNetV1d shortcuts (mmseg layout only)")
    p.add_argument("--output-stride", type=int, default=8, choices=[8, 16, 32])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    args = p.parse_args()

    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    bins = [int(b) for b in args.bins.split(",")]
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.size]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    if args.layout == "semseg" and (args.stem == "classic" or args.avg_down):
        p.error("--stem classic and --avg-down are mmsegmentation variants")
    model = PSPNet(args.depth, args.width, args.classes, bins, args.layout, args.stem == "classic", args.avg_down,
                   args.output_stride)
    calibrate(model, (65, 65), generator)
    state = model.layout_state_dict(args.layout)
    names = [f"class{i}" for i in range(args.classes)]
    if args.layout == "semseg":
        wrapped = {"epoch": 1, "state_dict": OrderedDict(("module." + k, v) for k, v in state.items()),
                   "optimizer": {"state": {}, "param_groups": []}}
    else:
        palette = [[(37 * i) % 256, (91 * i) % 256, (173 * i) % 256] for i in range(args.classes)]
        wrapped = {"meta": {"CLASSES": tuple(names), "PALETTE": palette}, "state_dict": state}
    torch.save(wrapped, out / "checkpoint.pth")
    torch.save(wrapped, out / "checkpoint_legacy.pth", _use_new_zipfile_serialization=False)

    model64 = model.double()
    # FLOPs of the inference path (auxiliary head excluded): 2 per multiply-add of every convolution.
    flops = [0]
    aux = {id(m) for m in list(model64.aux.modules()) + [model64.aux_cls]}

    def count(module, inputs, output):
        if id(module) not in aux:
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            flops[0] += 2 * output.numel() * k

    for m in model64.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(count)
    for h, w in sizes:
        flops[0] = 0
        image = torch.randint(0, 256, (1, 3, h, w), generator=generator).float()
        x = (image - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
        with torch.no_grad():
            outputs = model64(x.double())
        tensors = OrderedDict(input=x, image=image)
        tensors.update(outputs)
        meta = {"layout": args.layout, "depth": str(args.depth), "width": str(args.width),
                "classes": str(args.classes), "bins": args.bins, "torch": torch.__version__, "dtype": "float64",
                "flops": str(flops[0])}
        write_safetensors(out / f"reference_{h}x{w}.safetensors", tensors, meta)
    print(f"wrote {out}: {sum(v.numel() for v in state.values() if v.is_floating_point())} parameters, "
          f"references at {', '.join(f'{h}x{w}' for h, w in sizes)}")


if __name__ == "__main__":
    main()

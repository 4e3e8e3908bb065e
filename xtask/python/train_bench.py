"""PyTorch's side of `cargo xtask bench-train`: semseg's training step on
reference.py's PSPNet, CPU eager, in this process's time and memory.

    python train_bench.py --layout mmseg --depth 18 --classes 11 --batch 8 --crop 360x360 \
        --iters 6 --threads 2 [--checkpoint OUT.pth]

The step: model.train(); Dropout2d(0.1) before both classifiers; both logits
resized to the labels (the layout's align_corners); cross-entropy (ignore
255) + 0.4 x the auxiliary one; backward; SGD (momentum 0.9, weight decay
1e-4, the backbone at 0.01 and the rest at 10x, poly 0.9). Inputs are random
normalised tensors and random labels, made before the clock starts.
Prints one JSON object: {"seconds": [per iteration], "peak_rss_mb": ...}.
With --checkpoint, also saves the initial model in the layout's wrapping.
"""

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference import PSPNet  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layout", choices=["semseg", "mmseg"], required=True)
    p.add_argument("--depth", type=int, required=True)
    p.add_argument("--classes", type=int, required=True)
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--crop", required=True)
    p.add_argument("--iters", type=int, default=6)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    h, w = (int(v) for v in args.crop.split("x"))
    model = PSPNet(args.depth, 64, args.classes, [1, 2, 3, 6], args.layout)
    model.train()
    backbone = [p for n, p in model.named_parameters() if n.startswith("backbone.")]
    head = [p for n, p in model.named_parameters() if not n.startswith("backbone.")]
    base = 0.01
    opt = torch.optim.SGD([{"params": backbone, "lr": base}, {"params": head, "lr": base * 10}],
                          lr=base, momentum=0.9, weight_decay=1e-4)
    data = [(torch.randn(args.batch, 3, h, w), torch.randint(0, args.classes, (args.batch, h, w)))
            for _ in range(2)]
    seconds = []
    for i in range(args.iters):
        x, labels = data[i % 2]
        start = time.perf_counter()
        rate = base * (1 - i / args.iters) ** 0.9
        opt.param_groups[0]["lr"], opt.param_groups[1]["lr"] = rate, rate * 10
        features = model.backbone(x)
        f = features["layer4"]
        levels = [f] + [F.interpolate(m(f), f.shape[2:], mode="bilinear", align_corners=model.align_corners)
                        for m in model.ppm]
        logits = model.cls(F.dropout2d(model.head(torch.cat(levels, 1)), 0.1, training=True))
        aux = model.aux_cls(F.dropout2d(model.aux(features["layer3"]), 0.1, training=True))
        up = lambda t: F.interpolate(t, (h, w), mode="bilinear", align_corners=model.align_corners)  # noqa: E731
        loss = F.cross_entropy(up(logits), labels, ignore_index=255) + 0.4 * F.cross_entropy(
            up(aux), labels, ignore_index=255)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seconds.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak, "torch": torch.__version__}))


if __name__ == "__main__":
    main()

"""Gradient fixtures for pspnet-rs's training code (PyTorch semseg/mmseg training step).

    python xtask/python/train_reference.py --out crates/pspnet-model/tests/fixtures/train

For each case, DIR/CASE/ holds:
    checkpoint.pth       the initial model in the layout's keys, wrapped as reference.py's main() wraps it
    pass.safetensors     one training step (model.train(), batch 2), computed in float64:
        input   [2,3,H,W] F32   normalised image batch (N(0,1))
        labels  [2,H,W]   F32   class ids; 255 = ignore (about 10%)
        loss    [3]       F64   (main, aux, total), total = main + 0.4 * aux
        grad.NAME         F64   d total / d parameter, every learnable parameter (canonical names)
        tol.NAME [1]      F32   max(1e-5, 3 x the worst float32 relative L2 error ||g32 - g64|| / ||g64||
                                over four runs with the weights perturbed by 1e-7 relative, seeds 1..4)
        running.NAME      F64   every BN's running_mean / running_var after the pass (momentum 0.1,
                                unbiased variance in the update)
    trajectory.safetensors   (the ResNet-18 cases) three SGD steps of the recipe in float64:
        input.I, labels.I       the batch of step I (0..2); step 0's is pass.safetensors' batch
        loss    [3]       F64   the total loss of each step
        after.NAME        F32   every parameter and running statistic after the three steps

The loss: logits (1/8) and auxiliary logits (layer3) are both resized to the label size with
bilinear interpolation (align_corners: semseg True, mmseg False); cross entropy with
ignore_index 255, mean over the valid pixels; total = main + 0.4 * aux.

The batch is redrawn (metadata `draw`) until every ReLU input is MARGIN x its observed float32
error away from zero and no max-pool window is within MIN_GAP of a tie, so that no float32 run
crosses a kink (one flipped ReLU moves some gradients of these tiny models by several percent).
"""

import argparse
import copy
import sys
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference import PSPNet, calibrate, write_safetensors  # noqa: E402

AUX_WEIGHT = 0.4
IGNORE = 255
SIZE = (37, 45)
BATCH = 2
CLASSES = 5
BINS = [1, 2, 3, 6]
PERTURB_SEEDS = [1, 2, 3, 4]
PERTURB = 1e-7
MARGIN = 3.0  # every ReLU input at least this many times its float32 error away from zero
MIN_GAP = 1e-5  # smallest top-1 minus top-2 gap in a max-pool window (positive maxima)
MAX_DRAWS = 80

CASES = OrderedDict([
    ("semseg_r50", dict(layout="semseg", depth=50, width=2, stride_on_reduce=False, pool="avg", trajectory=False,
                        description="semseg layout, ResNet-50 (deep stem), width 2, avg pyramid")),
    ("mmseg_r18", dict(layout="mmseg", depth=18, width=4, stride_on_reduce=False, pool="avg",
                       description="mmseg layout, ResNet-18 (deep stem), width 4, avg pyramid")),
    ("semseg_r18", dict(layout="semseg", depth=18, width=4, stride_on_reduce=False, pool="avg",
                        description="semseg layout, ResNet-18 (deep stem), width 4, avg pyramid")),
    ("semseg_r50_reduce_max", dict(layout="semseg", depth=50, width=2, stride_on_reduce=True, pool="max",
                                   trajectory=False,
                                   description="semseg layout, ResNet-50 (deep stem), width 2, stride on the "
                                               "1x1 reduce (Caffe pspnet50), max pyramid")),
])


def canonical(model, key):
    """The Rust side's canonical name for one of the PSPNet module's state-dict keys
    (None for num_batches_tracked)."""
    parts = key.split(".")
    leaf = parts[-1]
    if leaf == "num_batches_tracked":
        return None
    module = model.get_submodule(".".join(parts[:-1]))
    kind = "conv" if isinstance(module, nn.Conv2d) else "bn" if isinstance(module, nn.BatchNorm2d) else None
    assert kind is not None, key
    if parts[:2] == ["backbone", "stem"] and len(parts) == 4:
        index = {"0": 0, "1": 0, "3": 1, "4": 1, "6": 2, "7": 2}[parts[2]]
        return f"backbone.stem.{index}.{kind}.{leaf}"
    if parts[:2] == ["backbone", "stages"]:
        stage, block, rest = int(parts[2]), int(parts[3]), parts[4:]
        prefix = f"backbone.layer{stage + 1}.{block}"
        if rest[0] == "downsample":
            assert len(rest) == 3, key
            return f"{prefix}.downsample.{kind}.{leaf}"
        assert len(rest) == 2 and rest[0][:-1] in ("conv", "bn") and rest[0][:-1] == kind, key
        return f"{prefix}.{rest[0]}.{leaf}"
    if parts[0] == "ppm" and len(parts) == 4:
        assert parts[2] == {"conv": "1", "bn": "2"}[kind], key
        return f"decode.ppm.{int(parts[1])}.{kind}.{leaf}"
    if parts[0] == "head" and len(parts) == 3:
        assert parts[1] == {"conv": "0", "bn": "1"}[kind], key
        return f"decode.bottleneck.{kind}.{leaf}"
    if parts[0] == "cls" and len(parts) == 2:
        return f"decode.classifier.{leaf}"
    if parts[0] == "aux" and len(parts) == 3:
        assert parts[1] == {"conv": "0", "bn": "1"}[kind], key
        return f"aux.{kind}.{leaf}"
    if parts[0] == "aux_cls" and len(parts) == 2:
        return f"aux.classifier.{leaf}"
    raise KeyError(f"no canonical name for {key}")


def names(model):
    mapping = OrderedDict((k, canonical(model, k)) for k in model.state_dict())
    mapped = [v for v in mapping.values() if v is not None]
    assert len(set(mapped)) == len(mapped), "canonical names collide"
    params = {k for k, _ in model.named_parameters()}
    assert all(mapping[k] is not None for k in params)
    return mapping


def save_checkpoint(model, layout, classes, path):
    """As reference.py's main() saves checkpoint.pth."""
    state = model.layout_state_dict(layout)
    if layout == "semseg":
        wrapped = {"epoch": 1, "state_dict": OrderedDict(("module." + k, v) for k, v in state.items()),
                   "optimizer": {"state": {}, "param_groups": []}}
    else:
        class_names = [f"class{i}" for i in range(classes)]
        palette = [[(37 * i) % 256, (91 * i) % 256, (173 * i) % 256] for i in range(classes)]
        wrapped = {"meta": {"CLASSES": tuple(class_names), "PALETTE": palette}, "state_dict": state}
    torch.save(wrapped, path)


def train_pass(model, x, labels):
    """One training step's forward and backward; returns (main, aux, total) and the gradients."""
    model.train()
    model.zero_grad(set_to_none=True)
    out = model(x)
    main = F.cross_entropy(out["logits"], labels, ignore_index=IGNORE)
    aux_logits = F.interpolate(out["aux_logits"], labels.shape[1:], mode="bilinear",
                               align_corners=model.align_corners)
    aux = F.cross_entropy(aux_logits, labels, ignore_index=IGNORE)
    total = main + AUX_WEIGHT * aux
    total.backward()
    grads = OrderedDict((k, p.grad.detach().clone()) for k, p in model.named_parameters())
    return torch.stack([main.detach(), aux.detach(), total.detach()]), grads


def top2_gap(values):
    """values [..., n]: smallest top-1 minus top-2 gap among windows whose maximum is positive
    (a tie at zero sits behind a ReLU and carries no gradient)."""
    if values.shape[-1] < 2:
        return float("inf")
    top = values.topk(2, dim=-1).values
    positive = top[..., 0] > 0
    if not positive.any():
        return float("inf")
    return (top[..., 0] - top[..., 1])[positive].min().item()


def max_pool_gaps(model, x):
    """Smallest top-2 gaps in the stem's 3x3/2 max pool and (for a max pyramid) the pyramid windows."""
    seen = {}
    hooks = [model.backbone.stem.register_forward_hook(lambda m, i, o: seen.__setitem__("stem", o.detach())),
             model.ppm[0].register_forward_pre_hook(lambda m, i: seen.__setitem__("layer4", i[0].detach()))]
    with torch.no_grad():
        copy.deepcopy(model).train()(x)  # a copy: leaves the running statistics alone
    for h in hooks:
        h.remove()
    s = seen["stem"]
    n, c, h, w = s.shape
    windows = F.unfold(F.pad(s, (1, 1, 1, 1), value=float("-inf")), 3, stride=2)
    stem_gap = top2_gap(windows.view(n, c, 9, -1).transpose(2, 3))
    f = seen["layer4"]
    h, w = f.shape[2:]
    ppm_gap = float("inf")
    for b in model.bins:
        for i in range(b):
            for j in range(b):
                r0, r1 = (i * h) // b, -((-(i + 1) * h) // b)
                c0, c1 = (j * w) // b, -((-(j + 1) * w) // b)
                ppm_gap = min(ppm_gap, top2_gap(f[:, :, r0:r1, c0:c1].flatten(2)))
    return stem_gap, ppm_gap


class ReluInputs:
    """Records the input of every ReLU (nn.ReLU and reference.py's F.relu both call F.relu)."""

    def __enter__(self):
        self.seen, self.original = [], F.relu

        def relu(x, *args, **kwargs):
            self.seen.append(x.detach().double())
            return self.original(x, *args, **kwargs)

        F.relu = relu
        return self.seen

    def __exit__(self, *exc):
        F.relu = self.original


def perturbed(model, seed):
    """model with its parameters scaled by (1 + 1e-7 N(0,1)), rounded to float32."""
    model = copy.deepcopy(model)
    if seed:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for _, p in model.named_parameters():
                noise = torch.randn(p.shape, generator=g, dtype=torch.float64)
                p.copy_((p.double() * (1 + PERTURB * noise)).float())
    return model


def float32_runs(model, x, labels):
    """The float64 pass of the model itself and of each perturbed copy, and the matching float32 passes.
    Returns the unperturbed float64 model after its pass, its loss and gradients, the worst relative L2
    error per parameter over the perturbed runs (the unperturbed one apart), and the smallest
    |ReLU input in float64| / |its float32 error| over all runs (stopping early once it is under MARGIN)."""
    worst, margin, result = None, float("inf"), None
    for seed in [0] + PERTURB_SEEDS:
        m32 = perturbed(model, seed)
        m64 = copy.deepcopy(m32).double()
        with ReluInputs() as a64:
            loss, g64 = train_pass(m64, x.double(), labels)
        with ReluInputs() as a32:
            _, g32 = train_pass(m32, x, labels)
        assert len(a64) == len(a32)
        for u, v in zip(a64, a32):
            margin = min(margin, (u.abs() / (v - u).abs().clamp_min(1e-300)).min().item())
        if margin < MARGIN:
            return None, None, None, margin
        errs = {k: ((g32[k].double() - g64[k]).norm() / g64[k].norm().clamp_min(1e-300)).item() for k in g64}
        if seed == 0:
            result, unperturbed, worst = (m64, loss, g64), errs, {k: 0.0 for k in g64}
        else:
            worst = {k: max(worst[k], e) for k, e in errs.items()}
    return result, worst, unperturbed, margin


def sgd_trajectory(model, batches):
    """The recipe's SGD on `batches` in the model's own precision (two groups, momentum, weight decay,
    poly over len(batches) iterations, aux 0.4, no dropout); returns the losses and the state after."""
    groups = [[p for n, p in model.named_parameters() if n.startswith("backbone.")],
              [p for n, p in model.named_parameters() if not n.startswith("backbone.")]]
    opt = torch.optim.SGD([{"params": groups[0], "lr": 0.01}, {"params": groups[1], "lr": 0.1}],
                          lr=0.01, momentum=0.9, weight_decay=1e-4)
    dtype = next(model.parameters()).dtype
    losses = []
    for i, (bx, bl) in enumerate(batches):
        rate = 0.01 * (1 - i / len(batches)) ** 0.9
        opt.param_groups[0]["lr"], opt.param_groups[1]["lr"] = rate, 10 * rate
        step_loss, _ = train_pass(model, bx.to(dtype), bl)
        opt.step()
        losses.append(step_loss[2].item())
    return losses, model.state_dict()


def write_trajectory(name, model, mapping, first, generator, case_dir):
    """Three SGD steps of the recipe in float64 on three fixed batches, `first` and two more; the state
    after them stored as float32. The check's tolerances (5e-3 relative L2 on tensors of two or more
    dimensions, 5e-2 on running statistics) assume PyTorch's own float32 run stays within a fifth of
    them; that is verified here on the unperturbed and perturbed weights. It holds for the ResNet-18s,
    not for a width-2 ResNet-50, whose stem moves 40% in three steps and whose float32 run ends 20% off."""
    x, labels = first
    h, w = SIZE
    batches = [(x, labels)]
    for _ in range(2):
        extra_labels = torch.randint(0, CLASSES, (BATCH, h, w), generator=generator)
        extra_labels[torch.rand(BATCH, h, w, generator=generator) < 0.1] = IGNORE
        batches.append((torch.randn(BATCH, 3, h, w, generator=generator), extra_labels))
    losses, after = sgd_trajectory(copy.deepcopy(model).double(), batches)
    for seed in [0] + PERTURB_SEEDS:
        _, after32 = sgd_trajectory(perturbed(model, seed), batches)
        for k, v in after32.items():
            running = k.endswith(("running_mean", "running_var"))
            if running or (v.is_floating_point() and v.dim() >= 2):
                error = ((v.double() - after[k]).norm() / after[k].norm().clamp_min(1e-300)).item()
                bound = (5e-2 if running else 5e-3) / 5
                if error > bound:
                    raise RuntimeError(f"{name}: PyTorch's float32 trajectory misses float64 by {error:.2e} on "
                                       f"{k} (seed {seed}), over {bound:.0e}: the check would be meaningless")
    steps = OrderedDict()
    for i, (bx, bl) in enumerate(batches):
        steps[f"input.{i}"] = bx
        steps[f"labels.{i}"] = bl.float()
    steps["loss"] = torch.tensor(losses, dtype=torch.float64)
    for k, v in after.items():
        if mapping.get(k):
            steps[f"after.{mapping[k]}"] = v.detach().float()
    write_safetensors(case_dir / "trajectory.safetensors", steps,
                      {"case": name, "steps": "3", "lr": "0.01 backbone, 0.1 the rest, poly 0.9 over 3",
                       "momentum": "0.9", "weight_decay": "1e-4", "aux_weight": str(AUX_WEIGHT), "dropout": "0",
                       "float32": "PyTorch's float32 run within 1e-3 (parameters) and 1e-2 (running statistics)"},
                      keep_f64=True)


def make_case(name, spec, out_dir, seed):
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = PSPNet(spec["depth"], spec["width"], CLASSES, BINS, spec["layout"],
                   stride_on_reduce=spec["stride_on_reduce"], pool=spec["pool"])
    calibrate(model, (65, 65), generator)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.1  # calibrate left a cumulative average; training uses PyTorch's default
    mapping = names(model)

    # Draw batches until no ReLU input lies within float32 noise of its kink (MARGIN x the worst float32
    # error seen for that element) and no max-pool window is close to a tie: a float32 run that crossed
    # a kink would make the gradients jump by a few percent and the tolerances useless.
    h, w = SIZE
    for draw in range(MAX_DRAWS):
        x = torch.randn(BATCH, 3, h, w, generator=generator)
        labels = torch.randint(0, CLASSES, (BATCH, h, w), generator=generator)
        labels[torch.rand(BATCH, h, w, generator=generator) < 0.1] = IGNORE
        stem_gap, ppm_gap = max_pool_gaps(copy.deepcopy(model).double(), x.double())
        pyramid_ok = spec["pool"] != "max" or ppm_gap > MIN_GAP
        if stem_gap <= MIN_GAP or not pyramid_ok:
            print(f"  {name}: draw {draw} rejected, max-pool gap stem {stem_gap:.1e} pyramid {ppm_gap:.1e}")
            continue
        result, worst, unperturbed, margin = float32_runs(model, x, labels)
        if margin >= MARGIN:
            m64, loss, grads = result
            break
        print(f"  {name}: draw {draw} rejected, a ReLU input within {margin:.2f}x its float32 error")
    else:
        raise RuntimeError(f"{name}: no batch without near-kinks in {MAX_DRAWS} draws")
    assert stem_gap > 1e-6 and (spec["pool"] != "max" or ppm_gap > 1e-6)

    case_dir = out_dir / name
    case_dir.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, spec["layout"], CLASSES, case_dir / "checkpoint.pth")

    tensors = OrderedDict(input=x, labels=labels.float(), loss=loss)
    for k, v in grads.items():
        tensors[f"grad.{mapping[k]}"] = v
    for k in grads:
        tensors[f"tol.{mapping[k]}"] = torch.tensor([max(1e-5, 3 * worst[k])], dtype=torch.float32)
    for k, v in m64.state_dict().items():
        if k.endswith(("running_mean", "running_var")):
            tensors[f"running.{mapping[k]}"] = v.detach().clone()
    meta = {"case": name, "description": spec["description"], "layout": spec["layout"],
            "depth": str(spec["depth"]), "width": str(spec["width"]), "classes": str(CLASSES),
            "bins": ",".join(map(str, BINS)), "size": f"{h}x{w}", "batch": str(BATCH),
            "stride_on_reduce": str(spec["stride_on_reduce"]).lower(), "pool": spec["pool"],
            "aux_weight": str(AUX_WEIGHT), "ignore": str(IGNORE),
            "align_corners": str(m64.align_corners).lower(), "bn_momentum": "0.1",
            "loss": "main, aux, total", "torch": torch.__version__, "seed": str(seed), "draw": str(draw),
            "relu_margin": f"{margin:.3g}", "tol": "max(1e-5, 3 x worst float32 relative L2 error, 4 perturbed runs)"}
    write_safetensors(case_dir / "pass.safetensors", tensors, meta, keep_f64=True)

    if spec.get("trajectory", True):
        write_trajectory(name, model, mapping, (x, labels), generator, case_dir)

    tols = [max(1e-5, 3 * e) for e in worst.values()]
    worst_key = max(worst, key=worst.get)
    over = [k for k in grads if unperturbed[k] > max(1e-5, 3 * worst[k])]
    print(f"{name}: {sum(p.numel() for p in model.parameters())} parameters, draw {draw}; loss main {loss[0]:.6f} "
          f"aux {loss[1]:.6f} total {loss[2]:.6f}; max f32 rel err {worst[worst_key]:.3e} "
          f"({mapping[worst_key]}), unperturbed f32 {max(unperturbed.values()):.3e}"
          f"{' (over tol: ' + ', '.join(mapping[k] for k in over) + ')' if over else ''}; "
          f"tol {min(tols):.2e}..{max(tols):.2e} (median {sorted(tols)[len(tols) // 2]:.2e}); "
          f"ReLU margin {margin:.1f}x; max-pool gap stem {stem_gap:.2e} pyramid {ppm_gap:.2e}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--case", action="append", choices=list(CASES), help="only these cases (repeatable)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    out = Path(args.out)
    for name in args.case or CASES:
        make_case(name, CASES[name], out, args.seed)


if __name__ == "__main__":
    main()

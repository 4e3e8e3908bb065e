"""PyTorch's run of the CamVid fine-tuning recipe the training issue checks
pspnet-rs against: PSPNet-R18 (mmseg layout, reference.py's model), the
backbone of ../shared/models/pspnet_r18-d8_camvid.pth, everything else
initialised as semseg does, batch 8, random 360x360 crops and horizontal
flips, SGD (momentum 0.9, weight decay 1e-4, the backbone at 0.01 and the
rest at 10x, poly 0.9), Dropout2d 0.1, aux 0.4, 100 iterations; then the
test split segmented whole and scored (mIoU over the 11 classes).

    python camvid_train.py --root ../shared/datasets/camvid --checkpoint ../shared/models/pspnet_r18-d8_camvid.pth \
        --seed 0 [--iters 100] [--threads 2]

Prints one JSON object: {"seed", "mIoU", "mAcc", "aAcc", "losses": [...], "seconds"}.
"""

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference import MEAN, STD, PSPNet  # noqa: E402

CLASSES, IGNORE, VOID = 11, 255, 11


def load(root, split):
    images = sorted((root / split / "images").glob("*.png"))
    out = []
    for path in images:
        rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
        label = np.asarray(Image.open(root / split / "labels" / path.name), dtype=np.int64)
        label = np.where(label == VOID, IGNORE, label)
        out.append((rgb, label))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", required=True)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--iters", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    root = Path(args.root)
    model = PSPNet(18, 64, CLASSES, [1, 2, 3, 6], "mmseg")
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for cls in (model.cls, model.aux_cls):
        nn.init.normal_(cls.weight, 0, 0.01)
        nn.init.zeros_(cls.bias)
    state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    own = model.state_dict()
    mapping = dict(zip(model.layout_state_dict("mmseg").keys(), own.keys()))
    backbone = {mapping[k]: v for k, v in state.items() if k.startswith("backbone.") and k in mapping}
    own.update(backbone)
    model.load_state_dict(own)
    train, test = load(root, "train"), load(root, "test")
    mean, std = np.array(MEAN, dtype=np.float32), np.array(STD, dtype=np.float32)
    groups = [[p for n, p in model.named_parameters() if n.startswith("backbone.")],
              [p for n, p in model.named_parameters() if not n.startswith("backbone.")]]
    base = 0.01
    opt = torch.optim.SGD([{"params": groups[0], "lr": base}, {"params": groups[1], "lr": base * 10}],
                          lr=base, momentum=0.9, weight_decay=1e-4)
    order, losses, start = [], [], time.perf_counter()
    model.train()
    for i in range(args.iters):
        images, labels = [], []
        for _ in range(8):
            if not order:
                order = list(range(len(train)))
                rng.shuffle(order)
            rgb, label = train[order.pop()]
            h, w = label.shape
            y, x = rng.randint(0, h - 360), rng.randint(0, w - 360)
            rgb, label = rgb[y:y + 360, x:x + 360], label[y:y + 360, x:x + 360]
            if rng.random() < 0.5:
                rgb, label = rgb[:, ::-1], label[:, ::-1]
            images.append(((rgb - mean) / std).transpose(2, 0, 1))
            labels.append(label)
        x = torch.from_numpy(np.ascontiguousarray(np.stack(images)))
        target = torch.from_numpy(np.ascontiguousarray(np.stack(labels)))
        rate = base * (1 - i / args.iters) ** 0.9
        opt.param_groups[0]["lr"], opt.param_groups[1]["lr"] = rate, rate * 10
        features = model.backbone(x)
        f = features["layer4"]
        levels = [f] + [F.interpolate(m(f), f.shape[2:], mode="bilinear", align_corners=False) for m in model.ppm]
        logits = model.cls(F.dropout2d(model.head(torch.cat(levels, 1)), 0.1, training=True))
        aux = model.aux_cls(F.dropout2d(model.aux(features["layer3"]), 0.1, training=True))
        up = lambda t: F.interpolate(t, (360, 360), mode="bilinear", align_corners=False)  # noqa: E731
        loss = F.cross_entropy(up(logits), target, ignore_index=IGNORE) + 0.4 * F.cross_entropy(
            up(aux), target, ignore_index=IGNORE)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    seconds = time.perf_counter() - start
    model.eval()
    confusion = np.zeros((CLASSES, CLASSES), dtype=np.int64)
    with torch.no_grad():
        for rgb, label in test:
            x = torch.from_numpy(((rgb - mean) / std).transpose(2, 0, 1)[None].copy())
            pred = model(x)["logits"].argmax(1)[0].numpy()
            valid = label != IGNORE
            np.add.at(confusion, (label[valid], pred[valid]), 1)
    inter = np.diag(confusion).astype(np.float64)
    union = confusion.sum(0) + confusion.sum(1) - inter
    target_px = confusion.sum(1)
    iou = inter[union > 0] / union[union > 0]
    acc = inter[target_px > 0] / target_px[target_px > 0]
    print(json.dumps({"seed": args.seed, "mIoU": 100 * iou.mean(), "mAcc": 100 * acc.mean(),
                      "aAcc": 100 * inter.sum() / confusion.sum(), "losses": losses, "seconds": seconds}))


if __name__ == "__main__":
    main()

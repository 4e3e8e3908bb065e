"""Argmax agreement between pspnet-rs label maps and PyTorch fp32 on real images.

    python compare_labels.py --checkpoint CKPT --layout mmseg --depth 18 --images DIR --ours DIR

For each image NAME.png in --images, runs the checkpoint in PyTorch (float32,
whole image, the model of reference.py) and compares its argmax with
--ours/NAME.labels.png written by `pspnet segment`. Prints the agreement over
all pixels. Needs `pip install torch numpy pillow`.
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from reference import MEAN, STD, PSPNet


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--layout", choices=["semseg", "mmseg"], required=True)
    p.add_argument("--depth", type=int, required=True)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--bins", default="1,2,3,6")
    p.add_argument("--images", required=True)
    p.add_argument("--ours", required=True)
    args = p.parse_args()

    ckpt = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    state = ckpt.get("state_dict", ckpt)
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    classes = state["decode_head.conv_seg.weight" if args.layout == "mmseg" else "cls.4.weight"].shape[0]
    model = PSPNet(args.depth, args.width, classes, [int(b) for b in args.bins.split(",")], args.layout)
    own_to_layout = dict(zip(model.state_dict().keys(), model.layout_state_dict(args.layout).keys()))
    model.load_state_dict({own: state[theirs] for own, theirs in own_to_layout.items()})
    model.eval()

    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    total = agree = 0
    worst = []
    for path in sorted(Path(args.images).glob("*.png")):
        rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
        x = (torch.from_numpy(rgb).permute(2, 0, 1)[None] - mean) / std
        with torch.no_grad():
            ref = model(x)["logits"].argmax(1)[0].numpy()
        ours = np.asarray(Image.open(Path(args.ours) / f"{path.stem}.labels.png"))
        same = int((ours == ref).sum())
        total, agree = total + ref.size, agree + same
        worst.append((ref.size - same, path.name))
    worst.sort(reverse=True)
    print(f"{len(worst)} images, {total} pixels: argmax agreement {100.0 * agree / total:.5f}% "
          f"({total - agree} pixels differ); most differing: {worst[:3]}")


if __name__ == "__main__":
    main()

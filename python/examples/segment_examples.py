"""Segments the repository's example street scenes with the embedded CamVid
model and saves, beside each, its overlay and the classes it found.

    pip install ./python pillow
    python python/examples/segment_examples.py [--out pspnet-out] [IMAGES...]
"""

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

import pspnet

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="*", type=Path, default=sorted(EXAMPLES.glob("*.png")))
    p.add_argument("--out", type=Path, default=Path("pspnet-out"))
    p.add_argument("--model", help="a checkpoint (default: the embedded CamVid model)")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    model = pspnet.load(args.model)
    for path in args.images:
        image = np.asarray(Image.open(path).convert("RGB"))
        labels = model.segment(image)
        Image.fromarray(model.overlay(image, labels)).save(args.out / f"{path.stem}.overlay.png")
        classes, counts = np.unique(labels, return_counts=True)
        shares = ", ".join(f"{model.classes[c]} {100 * n / labels.size:.0f}%" for c, n in zip(classes, counts))
        print(f"{path.name}: {shares}")


if __name__ == "__main__":
    main()

"""The fixture of tests/evaluate.rs's Cityscapes-format check: a small
synthetic Cityscapes-layout split, and the official cityscapesscripts
(2.3.0) evaluation of pspnet-rs's predictions on it.

    python xtask/python/cityscapes_format.py make tests/fixtures/cityscapes_format
    pspnet evaluate --dataset cityscapes --data-root tests/fixtures/cityscapes_format --split val \
        --model tests/fixtures/datasets/cityscapes.pth --preset camvid \
        --out-dir tests/fixtures/cityscapes_format/pred --format cityscapes --format-only
    python xtask/python/cityscapes_format.py score tests/fixtures/cityscapes_format

`make` writes ROOT/leftImg8bit/val/CITY/*_leftImg8bit.png (random RGB) and
ROOT/gtFine/val/CITY/*_gtFine_labelIds.png (random label ids 0..33, the
ignored ones included). `score` runs cityscapesscripts' pixel-level
evaluation on ROOT/pred/cityscapes/*.png (label ids, matched to the ground
truth by CITY_SEQ_FRAME as the scripts do) and writes ROOT/expected.json:
its mIoU (`averageScoreClasses`) and per-class IoU. Needs
`pip install cityscapesscripts numpy pillow`.
"""

import json
import os
import sys
from glob import glob
from pathlib import Path

import numpy as np
from PIL import Image

FRAMES = [("aachen", "000000", "000019"), ("aachen", "000001", "000019"), ("bremen", "000002", "000019")]


def make(root):
    rng = np.random.default_rng(19)
    for city, seq, frame in FRAMES:
        stem = f"{city}_{seq}_{frame}"
        image = root / "leftImg8bit/val" / city / f"{stem}_leftImg8bit.png"
        label = root / "gtFine/val" / city / f"{stem}_gtFine_labelIds.png"
        image.parent.mkdir(parents=True, exist_ok=True)
        label.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(image)
        Image.fromarray(rng.integers(0, 34, (20, 24), dtype=np.uint8)).save(label)


def score(root):
    os.environ["CITYSCAPES_DATASET"] = str(root)
    os.environ["CITYSCAPES_RESULTS"] = str(root / "pred/cityscapes")
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as cs

    cs.args.evalInstLevelScore = False
    cs.args.JSONOutput = False
    cs.args.quiet = True
    ground_truth = sorted(glob(str(root / "gtFine/val/*/*_gtFine_labelIds.png")))
    predictions = [cs.getPrediction(cs.args, gt) for gt in ground_truth]
    result = cs.evaluateImgLists(predictions, ground_truth, cs.args)
    # Ignored classes score NaN; they are left out, as from the mean.
    per_class = {name: v for name, v in result["classScores"].items() if v == v}
    expected = {"mIoU": result["averageScoreClasses"], "per_class_IoU": per_class, "cityscapesscripts": "2.3.0"}
    (root / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
    print(json.dumps(expected["mIoU"]))


if __name__ == "__main__":
    {"make": make, "score": score}[sys.argv[1]](Path(sys.argv[2]))

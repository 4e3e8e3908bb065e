"""Loads a .pth that `pspnet convert MODEL OUT.pth --layout L` wrote into
reference.py's PSPNet with that layout's module names, as PyTorch users
would: `torch.load(weights_only=True)` and `load_state_dict(strict=True)`;
then runs it in float64 on an image and compares with logits the engine
wrote (`pspnet segment IMG --model MODEL --mode whole --logits L.npy`).

    python check_pth.py OUT.pth --layout mmseg --depth 18 --width 64 --classes 11 \
        --image IMG.png --logits L.npy
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference import MEAN, STD, PSPNet  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pth")
    p.add_argument("--layout", choices=["semseg", "mmseg"], required=True)
    p.add_argument("--depth", type=int, required=True)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--classes", type=int, required=True)
    p.add_argument("--image", required=True)
    p.add_argument("--logits", required=True)
    args = p.parse_args()
    checkpoint = torch.load(args.pth, map_location="cpu", weights_only=True)
    state = checkpoint["state_dict"]
    if args.layout == "semseg":
        state = {k.removeprefix("module."): v for k, v in state.items()}
        print("epoch", checkpoint["epoch"])
    else:
        print("classes", checkpoint["meta"]["CLASSES"][:3], "...")
    model = PSPNet(args.depth, args.width, args.classes, [1, 2, 3, 6], args.layout)
    own = list(model.state_dict().keys())
    renamed = list(model.layout_state_dict(args.layout).keys())
    by_layout = dict(zip(renamed, own))
    missing = set(renamed) - set(state)
    unexpected = set(state) - set(renamed)
    model.load_state_dict({by_layout[k]: v for k, v in state.items() if k in by_layout}, strict=True)
    assert not missing and not unexpected, (sorted(missing)[:5], sorted(unexpected)[:5])
    print("strict load: ok,", len(state), "tensors, all float32 but num_batches_tracked:",
          all(v.dtype == torch.float32 for k, v in state.items() if not k.endswith("num_batches_tracked")))
    model = model.double().eval()
    rgb = np.asarray(Image.open(args.image).convert("RGB"), dtype=np.float64)
    x = (rgb - np.array(MEAN)) / np.array(STD)
    x = torch.from_numpy(x.transpose(2, 0, 1)[None].copy())
    with torch.no_grad():
        want = model(x)["logits"][0].numpy()
    got = np.load(args.logits).astype(np.float64)
    rel = np.linalg.norm(got - want) / np.linalg.norm(want)
    print(f"logits: relative L2 {rel:.2e} against the engine's")
    sys.exit(0 if rel < 1e-5 else 1)


if __name__ == "__main__":
    main()

"""Oracle for the inference protocols of pspnet-rs (crates/pspnet-model/src/protocol.rs).

    python protocol_reference.py [--fixtures crates/pspnet-model/tests/fixtures]

Loads the small semseg_r50 and mmseg_r18 fixture checkpoints into the PyTorch
model of reference.py (run in float64) and evaluates one random 37x53 image
with transcriptions of

- hszhao/semseg `tool/test.py` (`net_process`, `scale_process` and the scale
  loop: cv2 resizes, mean padding, sliding windows, flip, softmax averaging),
  with a reduced preset (base size 64, crop 33, scales 0.5 / 1.0 / 1.5) so
  that windows slide and pad;
- mmsegmentation's `slide_inference` (logits summed per window and divided by
  the count, no padding) with crop 41 and stride 17, so that one window is
  shorter than the crop.

Writes FIXTURES/protocol/{semseg_r50,mmseg_r18}_37x53.safetensors with
`image` (H, W, 3; the uint8 RGB values as float32), `scores` (classes, H, W;
probabilities or logits) and `labels` (H, W; their argmax), with the protocol
in the metadata. Needs `pip install torch numpy opencv-python-headless`.
"""

import argparse
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from reference import MEAN, STD, PSPNet, write_safetensors

SEMSEG = {"base_size": 64, "crop": 33, "scales": [0.5, 1.0, 1.5]}
MMSEG = {"crop": 41, "stride": 17}


def load(path, layout, depth, width, bins=(1, 2, 3, 6)):
    """A layout checkpoint in reference.py's model, as compare_labels.py loads it, in float64."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    state = ckpt.get("state_dict", ckpt)
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    classes = state["decode_head.conv_seg.weight" if layout == "mmseg" else "cls.4.weight"].shape[0]
    model = PSPNet(depth, width, classes, list(bins), layout)
    own_to_layout = dict(zip(model.state_dict().keys(), model.layout_state_dict(layout).keys()))
    model.load_state_dict({own: state[theirs] for own, theirs in own_to_layout.items()})
    return model.double().eval(), classes


# --- semseg tool/test.py (the model returns a dict here; run in float64) ---

def net_process(model, image, mean, std=None, flip=True):
    input = torch.from_numpy(image.transpose((2, 0, 1))).float()
    if std is None:
        for t, m in zip(input, mean):
            t.sub_(m)
    else:
        for t, m, s in zip(input, mean, std):
            t.sub_(m).div_(s)
    input = input.unsqueeze(0)
    if flip:
        input = torch.cat([input, input.flip(3)], 0)
    with torch.no_grad():
        output = model(input.double())["logits"]
    _, _, h_i, w_i = input.shape
    _, _, h_o, w_o = output.shape
    if (h_o != h_i) or (w_o != w_i):
        output = F.interpolate(output, (h_i, w_i), mode="bilinear", align_corners=True)
    output = F.softmax(output, dim=1)
    if flip:
        output = (output[0] + output[1].flip(2)) / 2
    else:
        output = output[0]
    output = output.data.cpu().numpy()
    output = output.transpose(1, 2, 0)
    return output


def scale_process(model, image, classes, crop_h, crop_w, h, w, mean, std=None, stride_rate=2 / 3):
    ori_h, ori_w, _ = image.shape
    pad_h = max(crop_h - ori_h, 0)
    pad_w = max(crop_w - ori_w, 0)
    pad_h_half = int(pad_h / 2)
    pad_w_half = int(pad_w / 2)
    if pad_h > 0 or pad_w > 0:
        image = cv2.copyMakeBorder(image, pad_h_half, pad_h - pad_h_half, pad_w_half, pad_w - pad_w_half,
                                   cv2.BORDER_CONSTANT, value=mean)
    new_h, new_w, _ = image.shape
    stride_h = int(np.ceil(crop_h * stride_rate))
    stride_w = int(np.ceil(crop_w * stride_rate))
    grid_h = int(np.ceil(float(new_h - crop_h) / stride_h) + 1)
    grid_w = int(np.ceil(float(new_w - crop_w) / stride_w) + 1)
    prediction_crop = np.zeros((new_h, new_w, classes), dtype=float)
    count_crop = np.zeros((new_h, new_w), dtype=float)
    for index_h in range(0, grid_h):
        for index_w in range(0, grid_w):
            s_h = index_h * stride_h
            e_h = min(s_h + crop_h, new_h)
            s_h = e_h - crop_h
            s_w = index_w * stride_w
            e_w = min(s_w + crop_w, new_w)
            s_w = e_w - crop_w
            image_crop = image[s_h:e_h, s_w:e_w].copy()
            count_crop[s_h:e_h, s_w:e_w] += 1
            prediction_crop[s_h:e_h, s_w:e_w, :] += net_process(model, image_crop, mean, std)
    prediction_crop /= np.expand_dims(count_crop, 2)
    prediction_crop = prediction_crop[pad_h_half:pad_h_half + ori_h, pad_w_half:pad_w_half + ori_w]
    prediction = cv2.resize(prediction_crop, (w, h), interpolation=cv2.INTER_LINEAR)
    return prediction


def semseg_test(model, image, classes, base_size, crop, scales, mean, std):
    """The body of semseg's `test()` for one image (RGB float32, 0..255)."""
    h, w, _ = image.shape
    prediction = np.zeros((h, w, classes), dtype=float)
    for scale in scales:
        long_size = round(scale * base_size)
        new_h = long_size
        new_w = long_size
        if h > w:
            new_w = round(long_size / float(h) * w)
        else:
            new_h = round(long_size / float(w) * h)
        image_scale = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        prediction += scale_process(model, image_scale, classes, crop, crop, h, w, mean, std)
    prediction /= len(scales)
    return prediction


# --- mmsegmentation EncoderDecoder.slide_inference (float64 logits) ---

def slide_inference(model, inputs, classes, crop, stride):
    h_stride, w_stride = stride, stride
    h_crop, w_crop = crop, crop
    batch_size, _, h_img, w_img = inputs.size()
    h_grids = max(h_img - h_crop + h_stride - 1, 0) // h_stride + 1
    w_grids = max(w_img - w_crop + w_stride - 1, 0) // w_stride + 1
    preds = inputs.new_zeros((batch_size, classes, h_img, w_img))
    count_mat = inputs.new_zeros((batch_size, 1, h_img, w_img))
    for h_idx in range(h_grids):
        for w_idx in range(w_grids):
            y1 = h_idx * h_stride
            x1 = w_idx * w_stride
            y2 = min(y1 + h_crop, h_img)
            x2 = min(x1 + w_crop, w_img)
            y1 = max(y2 - h_crop, 0)
            x1 = max(x2 - w_crop, 0)
            crop_img = inputs[:, :, y1:y2, x1:x2]
            with torch.no_grad():
                crop_seg_logit = model(crop_img)["logits"]
            preds += F.pad(crop_seg_logit, (int(x1), int(preds.shape[3] - x2), int(y1), int(preds.shape[2] - y2)))
            count_mat[:, :, y1:y2, x1:x2] += 1
    assert (count_mat == 0).sum() == 0
    return preds / count_mat


def save(path, image, scores, meta):
    tensors = OrderedDict(image=torch.from_numpy(image.astype(np.float32)),
                          scores=torch.from_numpy(scores.astype(np.float32)),
                          labels=torch.from_numpy(scores.argmax(0).astype(np.float32)))
    write_safetensors(path, tensors, {k: str(v) for k, v in meta.items()})
    print(f"wrote {path}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fixtures", default=str(Path(__file__).resolve().parents[2] / "crates/pspnet-model/tests/fixtures"))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    fixtures = Path(args.fixtures)
    out = fixtures / "protocol"
    out.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(args.seed).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    image = np.float32(rgb)

    model, classes = load(fixtures / "semseg_r50/checkpoint.pth", "semseg", 50, 4)
    probs = semseg_test(model, image, classes, SEMSEG["base_size"], SEMSEG["crop"], SEMSEG["scales"], MEAN, STD)
    meta = dict(SEMSEG, protocol="semseg test.py", flip=True, average="probs", model="semseg_r50")
    save(out / "semseg_r50_37x53.safetensors", rgb, probs.transpose(2, 0, 1), meta)

    model, classes = load(fixtures / "mmseg_r18/checkpoint.pth", "mmseg", 18, 8)
    x = (torch.from_numpy(image).permute(2, 0, 1)[None] - torch.tensor(MEAN).view(1, 3, 1, 1)) \
        / torch.tensor(STD).view(1, 3, 1, 1)
    logits = slide_inference(model, x.double(), classes, MMSEG["crop"], MMSEG["stride"])[0].numpy()
    meta = dict(MMSEG, protocol="mmseg slide_inference", flip=False, average="logits", model="mmseg_r18")
    save(out / "mmseg_r18_37x53.safetensors", rgb, logits, meta)


if __name__ == "__main__":
    main()

"""PSPNet scene parsing from NumPy, on the pspnet-rs engine (no PyTorch).

    import numpy as np, pspnet
    model = pspnet.load()                      # the embedded CamVid model
    labels = model.segment(image)              # image: H x W x 3 uint8 RGB
    overlay = model.overlay(image, labels)
"""

from os import PathLike
from typing import Any, Literal, Optional, Sequence, Union, overload

import numpy as np
import numpy.typing as npt

__version__: str

_Path = Union[str, PathLike[str]]
_Image = npt.NDArray[np.uint8]

class CheckpointError(Exception):
    """A checkpoint that cannot be loaded: unreadable, of no known layout, or hostile."""

class Model:
    """A PSPNet loaded from a checkpoint, ready to segment RGB images.

    One model may be used from several Python threads at once: each call
    releases the GIL and runs on the model's thread pool.
    """

    @property
    def classes(self) -> list[str]:
        """The class names (numbered when the checkpoint names none)."""
    @property
    def palette(self) -> npt.NDArray[np.uint8]:
        """The class colours, classes x 3 uint8: `model.palette[labels]` is the colour image."""
    @overload
    def segment(
        self,
        image: _Image,
        *,
        mode: Optional[Literal["whole", "slide"]] = None,
        crop: Optional[int] = None,
        stride: Optional[int] = None,
        base_size: Optional[int] = None,
        flip: Optional[bool] = None,
        scales: Optional[Sequence[float]] = None,
        average: Optional[Literal["probs", "logits"]] = None,
        preset: Optional[str] = None,
    ) -> npt.NDArray[Union[np.uint8, np.uint16]]: ...
    @overload
    def segment(
        self,
        image: list[_Image],
        *,
        mode: Optional[Literal["whole", "slide"]] = None,
        crop: Optional[int] = None,
        stride: Optional[int] = None,
        base_size: Optional[int] = None,
        flip: Optional[bool] = None,
        scales: Optional[Sequence[float]] = None,
        average: Optional[Literal["probs", "logits"]] = None,
        preset: Optional[str] = None,
    ) -> list[npt.NDArray[Union[np.uint8, np.uint16]]]:
        """Class ids (H x W; uint8 for up to 256 classes, else uint16) of an H x W x 3
        uint8 RGB array (any strides), or a list of them for a list.

        The keywords are `pspnet segment`'s protocol flags: `preset` (ade20k,
        voc2012, cityscapes, caffe-ade20k, caffe-voc2012, caffe-cityscapes, camvid),
        `mode` ("whole" or "slide"), `crop`, `stride`, `base_size`, `flip`, `scales`,
        `average` ("probs" or "logits"). `None` leaves the preset's choice or, without
        a preset, one whole-image pass at the image's size, unflipped, scale 1.0.
        Raises ValueError for an array of the wrong dtype, shape or channel count.
        """
    def logits(
        self,
        image: _Image,
        *,
        mode: Optional[Literal["whole", "slide"]] = None,
        crop: Optional[int] = None,
        stride: Optional[int] = None,
        base_size: Optional[int] = None,
        flip: Optional[bool] = None,
        scales: Optional[Sequence[float]] = None,
        average: Optional[Literal["probs", "logits"]] = None,
        preset: Optional[str] = None,
    ) -> npt.NDArray[np.float32]:
        """float32 class scores (C x H x W) at the image's size, equal to `pspnet segment
        --logits` with the same flags: the logits of a whole-image pass, else what the
        protocol averages."""
    def probabilities(
        self,
        image: _Image,
        *,
        mode: Optional[Literal["whole", "slide"]] = None,
        crop: Optional[int] = None,
        stride: Optional[int] = None,
        base_size: Optional[int] = None,
        flip: Optional[bool] = None,
        scales: Optional[Sequence[float]] = None,
        average: Optional[Literal["probs", "logits"]] = None,
        preset: Optional[str] = None,
    ) -> npt.NDArray[np.float32]:
        """The class probabilities (C x H x W, float32): the softmax of `logits`, or what
        the protocol averages when it averages probabilities."""
    def colorize(self, labels: npt.NDArray[np.integer[Any]]) -> npt.NDArray[np.uint8]:
        """Each pixel of a label map (H x W, any integer dtype) in its class's colour: H x W x 3 uint8."""
    def overlay(
        self, image: _Image, labels: npt.NDArray[np.integer[Any]], opacity: float = 0.5
    ) -> npt.NDArray[np.uint8]:
        """The class colours over the photo, per channel
        floor((1 - opacity) * photo + opacity * colour + 0.5): `pspnet segment`'s overlay at 0.5."""
    def roundtrip(self, image: _Image) -> npt.NDArray[np.uint8]:
        """`segment`'s path without the network (image in, GIL released, an all-zero label
        map out): the call's own overhead, for benchmarks."""
    def flops(self, height: int, width: int) -> int:
        """Floating-point operations of one forward pass (convolutions, 2 per multiply-add), as `pspnet info`."""

def load(
    path: Optional[_Path] = None,
    *,
    precision: Literal["f32", "bf16"] = "f32",
    threads: Optional[int] = None,
    prototxt: Optional[_Path] = None,
) -> Model:
    """Loads any checkpoint `pspnet` loads: a .pth (semseg or mmsegmentation layout), a
    pspnet-rs .safetensors or a .caffemodel (with `prototxt` when its layers lack
    parameters); None is the embedded CamVid model (PSPNet ResNet-18, 11 classes).
    `threads`: the model's thread pool size (default: one per core).
    Raises FileNotFoundError, or CheckpointError for an unreadable or hostile file."""

def evaluate(
    model: Model,
    dataset: Literal["camvid", "ade20k", "voc2012", "cityscapes", "custom"],
    root: Optional[_Path] = None,
    split: Optional[str] = None,
    *,
    images: Optional[_Path] = None,
    labels: Optional[_Path] = None,
    classes: Union[None, int, Sequence[str], _Path] = None,
    ignore_index: int = 255,
    reduce_zero_label: bool = False,
    mode: Optional[Literal["whole", "slide"]] = None,
    crop: Optional[int] = None,
    stride: Optional[int] = None,
    base_size: Optional[int] = None,
    flip: Optional[bool] = None,
    scales: Optional[Sequence[float]] = None,
    average: Optional[Literal["probs", "logits"]] = None,
    preset: Optional[str] = None,
    max_pixels: int = 100_000_000,
) -> dict[str, Any]:
    """Scores `model` on a dataset split: the dict `pspnet evaluate --json` writes
    (dataset, split, images, mIoU, mAcc, aAcc in percent, per_class [{name, IoU, Acc}]).
    Named datasets take `root` and `split` and default to their preset's protocol;
    "custom" takes `images` and `labels` folders paired by file stem."""

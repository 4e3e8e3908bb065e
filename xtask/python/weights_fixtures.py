"""Checkpoint fixtures for the pspnet-weights tests.

Writes small checkpoint files and the values PyTorch itself reads back from
them into the folder given as the only argument:

    /work/venv/py/bin/python xtask/python/weights_fixtures.py \
        crates/pspnet-weights/tests/fixtures

Files written:

- `checkpoint_zip.pth`: `torch.save` (zip container, torch >= 1.6) of
  `{'state_dict': OrderedDict(module.* tensors), 'meta': {'CLASSES', 'PALETTE'}}`
  with f32 / f64 / f16 / bf16 / int64-scalar / int32 / uint8 / bool tensors, a
  transposed (non-contiguous) view, a strided slice with a storage offset and
  two tensors that are views into one shared storage;
- `checkpoint_legacy.pth`: the same object saved with
  `_use_new_zipfile_serialization=False` (the torch < 1.6 container);
- `mmengine_like.pth`: an mmengine-style training checkpoint whose extra
  entries pickle numpy arrays, a numpy dtype, a numpy scalar,
  `collections.defaultdict`, `argparse.Namespace` and a class named
  `mmengine.logging.history_buffer.HistoryBuffer` (a stub module registered in
  `sys.modules`, so mmengine need not be installed);
- `malicious.pth`: a zip checkpoint whose pickle calls `os.system` (pickled by
  Python as `posix.system`) through `__reduce__`; loading it must be refused
  and the command (which would create `/tmp/pspnet_weights_pwned`) never run;
- `tensors.safetensors`: written by the `safetensors` package
  (`/work/venv/py/bin/pip install safetensors`) with `__metadata__`;
- `expected.json`: for every tensor the dtype, shape, logical C-order bytes
  (hex, little-endian) and, for floating dtypes, the values as floats, all
  taken from torch after loading the files back with `torch.load` /
  `safetensors.torch.load_file`.

Needs `pip install torch numpy safetensors`.
"""

import argparse
import collections
import json
import os
import sys
import types
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

PWNED = "/tmp/pspnet_weights_pwned"

DTYPE_NAMES = {
    torch.float64: "f64",
    torch.float32: "f32",
    torch.float16: "f16",
    torch.bfloat16: "bf16",
    torch.int64: "i64",
    torch.int32: "i32",
    torch.int16: "i16",
    torch.int8: "i8",
    torch.uint8: "u8",
    torch.bool: "bool",
}


def make_history_buffer_class():
    """A stand-in for mmengine's HistoryBuffer, pickled under its real name."""
    module = types.ModuleType("mmengine.logging.history_buffer")

    class HistoryBuffer:
        def __init__(self, log_history, count_history, max_length=1000000):
            self._log_history = np.asarray(log_history)
            self._count_history = np.asarray(count_history)
            self.max_length = max_length

    HistoryBuffer.__module__ = module.__name__
    HistoryBuffer.__qualname__ = "HistoryBuffer"
    module.HistoryBuffer = HistoryBuffer
    for name in ["mmengine", "mmengine.logging", "mmengine.logging.history_buffer"]:
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["mmengine.logging.history_buffer"] = module
    return HistoryBuffer


class Evil:
    """Pickles as a call to os.system; loading it must be refused."""

    def __reduce__(self):
        return (os.system, (f"touch {PWNED}",))


def state_dict():
    shared = torch.arange(10, dtype=torch.float32) * 0.5 - 2.0
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4) * 0.25
    grid = torch.arange(20, dtype=torch.float32).reshape(4, 5) - 7.0
    sd = collections.OrderedDict()
    sd["module.conv.weight"] = (torch.arange(24, dtype=torch.float32).reshape(2, 3, 2, 2) - 11.5) / 8.0
    sd["module.bn.running_var"] = torch.tensor([0.1, 2.0 / 3.0, 1e-300, -4.5], dtype=torch.float64)
    sd["module.head.half"] = torch.tensor([1.5, -2.25, 65504.0, 6e-5, 1.0 / 3.0], dtype=torch.float16)
    sd["module.head.bf16"] = torch.tensor([[1.0, -0.1], [3.0e38, 7.0]], dtype=torch.bfloat16)
    sd["module.bn.num_batches_tracked"] = torch.tensor(12345678901, dtype=torch.int64)
    sd["module.idx"] = torch.tensor([-7, 2147483647], dtype=torch.int32)
    sd["module.bytes"] = torch.tensor([0, 17, 255], dtype=torch.uint8)
    sd["module.mask"] = torch.tensor([True, False, True], dtype=torch.bool)
    sd["module.transposed"] = base.t()
    sd["module.sliced"] = grid[1:, ::2]
    sd["module.shared_a"] = shared[:6].view(2, 3)
    sd["module.shared_b"] = shared[4:]
    # A tensor spanning its whole storage, read again by a later view; and
    # one tensor saved under two keys: the loader may move a storage into
    # its last reader only.
    whole = torch.arange(8, dtype=torch.float32) * 1.5 - 3.0
    tied = torch.tensor([[0.5, -1.0], [2.0, 4.0]], dtype=torch.float32)
    sd["module.whole"] = whole
    sd["module.whole_tail"] = whole[5:]
    sd["module.tied_a"] = tied
    sd["module.tied_b"] = tied
    assert not sd["module.transposed"].is_contiguous()
    assert not sd["module.sliced"].is_contiguous()
    assert sd["module.sliced"].storage_offset() == 5
    assert sd["module.shared_b"].storage_offset() == 4
    return sd


def describe(tensor):
    tensor = tensor.detach().contiguous()
    raw = tensor.reshape(-1).view(torch.uint8).numpy().tobytes()
    entry = {
        "dtype": DTYPE_NAMES[tensor.dtype],
        "shape": list(tensor.shape),
        "bytes_hex": raw.hex(),
    }
    if tensor.is_floating_point():
        entry["values"] = tensor.double().reshape(-1).tolist()
    return entry


def describe_dict(tensors):
    return {k: describe(v) for k, v in tensors.items()}


def main():
    out_dir = Path(sys.argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    classes = ("wall", "floor", "sky")
    palette = [[120, 120, 120], [80, 50, 50], [6, 230, 230]]
    checkpoint = {
        "state_dict": state_dict(),
        "meta": {"CLASSES": classes, "PALETTE": palette},
    }
    torch.save(checkpoint, out_dir / "checkpoint_zip.pth")
    torch.save(checkpoint, out_dir / "checkpoint_legacy.pth", _use_new_zipfile_serialization=False)

    history_buffer = make_history_buffer_class()
    counts = collections.defaultdict(list)
    counts["loss"].append(1)
    mm_state = collections.OrderedDict()
    mm_state["backbone.stem.0.weight"] = torch.linspace(-1.0, 1.0, 8).reshape(2, 1, 2, 2)
    mm_state["decode_head.conv_seg.bias"] = torch.tensor([0.25, -0.5], dtype=torch.float32)
    mmengine_like = {
        "meta": {
            "dataset_meta": {"classes": classes, "palette": palette},
            "seed": 42,
            "mean": np.array([123.675, 116.28, 103.53]),
            "dtype": np.dtype("float32"),
            "scale": np.float64(0.5),
            "cfg": argparse.Namespace(lr=0.01, name="pspnet"),
        },
        "state_dict": mm_state,
        "message_hub": {
            "log_scalars": collections.OrderedDict(
                [("train/loss", history_buffer([0.5, 0.25], [1, 1]))]
            ),
            "runtime_info": {"epoch": 3, "iter": 160},
            "counts": counts,
        },
        "optimizer": {
            "state": {0: {"momentum_buffer": torch.ones(2)}},
            "param_groups": [{"lr": 0.01, "momentum": 0.9, "params": [0]}],
        },
    }
    torch.save(mmengine_like, out_dir / "mmengine_like.pth")

    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": Evil()}, out_dir / "malicious.pth")

    st_tensors = {
        "conv.weight": (torch.arange(6, dtype=torch.float32).reshape(2, 3) - 2.5) / 4.0,
        "conv.half": torch.tensor([0.5, -1.0, 1024.0], dtype=torch.float16),
        "conv.bf16": torch.tensor([[2.0, -3.5]], dtype=torch.bfloat16),
        "bn.num_batches_tracked": torch.tensor(7, dtype=torch.int64),
    }
    st_metadata = {"format": "pt", "classes": "wall,floor,sky"}
    save_file(st_tensors, out_dir / "tensors.safetensors", metadata=st_metadata)

    loaded_zip = torch.load(out_dir / "checkpoint_zip.pth", weights_only=True)
    loaded_legacy = torch.load(out_dir / "checkpoint_legacy.pth", weights_only=True)
    for key, value in loaded_zip["state_dict"].items():
        assert torch.equal(value, loaded_legacy["state_dict"][key]), key
    expected = {
        "generated_with": {"torch": torch.__version__, "numpy": np.__version__},
        "checkpoint": describe_dict(
            {k.removeprefix("module."): v for k, v in loaded_zip["state_dict"].items()}
        ),
        "classes": list(classes),
        "palette": palette,
        "mmengine_like": describe_dict(mm_state),
        "mmengine_optimizer_momentum": describe(torch.ones(2)),
        "safetensors": describe_dict(load_file(out_dir / "tensors.safetensors")),
        "safetensors_metadata": st_metadata,
        "malicious_global": f"{os.system.__module__}.system",
        "pwned_marker": PWNED,
    }
    (out_dir / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
    total = sum(p.stat().st_size for p in out_dir.iterdir())
    print(f"wrote {out_dir} ({total} bytes)")


if __name__ == "__main__":
    main()

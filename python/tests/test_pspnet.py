"""The Python package against the `pspnet` command line, which the Rust test
suite checks against PyTorch: same labels, same logits bit for bit, the same
evaluation dict; plus the package's own contract (array layouts, errors,
threads).

The command line is $PSPNET_CLI, else the repository's target/release or
target/debug build.
"""

import json
import os
import shutil
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import pspnet

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.png"))
FIXTURES = REPO / "tests" / "fixtures"


def cli_path():
    for candidate in [os.environ.get("PSPNET_CLI"), REPO / "target/release/pspnet", REPO / "target/debug/pspnet"]:
        if candidate and Path(candidate).is_file():
            return str(candidate)
    pytest.fail("no pspnet binary: build it (cargo build --release) or set PSPNET_CLI")


def cli(*args):
    run = subprocess.run([cli_path(), *map(str, args)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return run


def read_rgb(path):
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def model():
    return pspnet.load(threads=2)


@pytest.fixture(scope="module")
def cli_outputs(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli")
    cli("segment", *EXAMPLES, "--out", out)
    return out


def test_the_bundled_examples_exist():
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_labels_equal_the_command_line(model, cli_outputs, example):
    labels = model.segment(read_rgb(example))
    expected = np.asarray(Image.open(cli_outputs / f"{example.stem}.labels.png"))
    assert labels.dtype == np.uint8
    assert labels.shape == expected.shape
    assert np.array_equal(labels, expected)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_overlay_and_colours_equal_the_command_line(model, cli_outputs, example):
    image = read_rgb(example)
    labels = model.segment(image)
    assert np.array_equal(model.overlay(image, labels), read_rgb(cli_outputs / f"{example.stem}.overlay.png"))
    assert np.array_equal(model.colorize(labels), read_rgb(cli_outputs / f"{example.stem}.color.png"))
    assert np.array_equal(model.palette[labels], model.colorize(labels))


def test_overlay_follows_its_formula(model):
    image = read_rgb(EXAMPLES[0])[:40, :50]
    labels = model.segment(image)
    colour = model.palette[labels].astype(np.float64)
    for opacity in [0.0, 0.3, 0.5, 0.7, 1.0]:
        want = np.floor((1 - opacity) * image + opacity * colour + 0.5).astype(np.uint8)
        assert np.array_equal(model.overlay(image, labels, opacity=opacity), want), opacity
    with pytest.raises(ValueError, match="opacity"):
        model.overlay(image, labels, opacity=1.5)


def test_logits_equal_segment_logits_bit_for_bit(model, tmp_path):
    example = EXAMPLES[1]
    cli("segment", example, "--out", tmp_path, "--logits", tmp_path / "logits.npy")
    expected = np.load(tmp_path / "logits.npy")
    logits = model.logits(read_rgb(example))
    assert logits.dtype == np.float32 and logits.shape == expected.shape
    assert np.array_equal(logits, expected)


def test_a_protocol_equals_the_command_line_s(model, tmp_path):
    example = EXAMPLES[2]
    flags = ["--mode", "slide", "--crop", "193", "--flip", "true", "--scales", "0.75,1.0", "--average", "probs"]
    cli("segment", example, "--out", tmp_path, "--logits", tmp_path / "scores.npy", *flags)
    image = read_rgb(example)
    kwargs = dict(mode="slide", crop=193, flip=True, scales=[0.75, 1.0], average="probs")
    scores = model.logits(image, **kwargs)
    assert np.array_equal(scores, np.load(tmp_path / "scores.npy"))
    assert np.array_equal(model.probabilities(image, **kwargs), scores)
    labels = model.segment(image, **kwargs)
    assert np.array_equal(labels, np.asarray(Image.open(tmp_path / f"{example.stem}.labels.png")))


def test_probabilities_are_the_softmax_of_the_logits(model):
    image = read_rgb(EXAMPLES[0])[:64, :80]
    logits = model.logits(image).astype(np.float64)
    softmax = np.exp(logits - logits.max(0)) / np.exp(logits - logits.max(0)).sum(0)
    probabilities = model.probabilities(image)
    assert probabilities.dtype == np.float32
    assert np.abs(probabilities - softmax).max() < 1e-6


def test_any_strides_and_read_only_arrays(model):
    image = read_rgb(EXAMPLES[0])
    expected = model.segment(image)
    padded = np.zeros((image.shape[0] + 7, image.shape[1] + 9, 3), np.uint8)
    padded[3:-4, 5:-4] = image
    views = {
        "crop of a larger array": padded[3:-4, 5:-4],
        "Fortran order": np.asfortranarray(image),
        "channels reversed twice": image[..., ::-1][..., ::-1],
        "planar storage": np.moveaxis(np.ascontiguousarray(np.moveaxis(image, -1, 0)), 0, -1),
    }
    read_only = image.copy()
    read_only.setflags(write=False)
    views["read-only"] = read_only
    for name, view in views.items():
        assert np.array_equal(model.segment(view), expected), name
    flipped = image[:, ::-1]
    assert not flipped.flags.c_contiguous
    assert np.array_equal(model.segment(flipped), model.segment(np.ascontiguousarray(flipped)))


def test_a_list_gives_a_list(model):
    images = [read_rgb(p) for p in EXAMPLES[:2]]
    labels = model.segment(images)
    assert isinstance(labels, list) and len(labels) == 2
    for image, got in zip(images, labels):
        assert np.array_equal(got, model.segment(image))


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((32, 32, 3), np.float32), "dtype uint8, got dtype float32"),
        (np.zeros((32, 32, 3), np.int64), "dtype uint8"),
        (np.zeros((32, 32), np.uint8), r"shape \(H, W, 3\), got shape \(32, 32\)"),
        (np.zeros((32, 32, 4), np.uint8), r"got shape \(32, 32, 4\)"),
        (np.zeros((3, 32, 32), np.uint8), r"got shape \(3, 32, 32\)"),
        (np.zeros((0, 32, 3), np.uint8), "non-empty"),
        ("image.png", "numpy array"),
    ],
)
def test_wrong_arrays_raise_value_error(model, bad, message):
    with pytest.raises(ValueError, match=message):
        model.segment(bad)
    with pytest.raises(ValueError, match=message):
        model.logits(bad)


def test_bad_labels_and_keywords_raise_value_error(model):
    image = read_rgb(EXAMPLES[0])[:32, :32]
    with pytest.raises(ValueError, match="value 11 is not a class"):
        model.colorize(np.full((4, 4), 11, np.uint8))
    with pytest.raises(ValueError, match="value -1 is not a class"):
        model.colorize(np.full((4, 4), -1, np.int64))
    with pytest.raises(ValueError, match="integer dtype"):
        model.colorize(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="labels are 4x4, the image 32x32"):
        model.overlay(image, np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="mode"):
        model.segment(image, mode="tiles")
    with pytest.raises(ValueError, match="--mode slide needs --crop"):
        model.segment(image, mode="slide")
    with pytest.raises(ValueError, match="unknown protocol preset"):
        model.segment(image, preset="kitti")


def test_missing_and_hostile_checkpoints(tmp_path):
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        pspnet.load(missing)
    # A pickle that would run a shell command if unpickled naively.
    malicious = REPO / "crates/pspnet-weights/tests/fixtures/malicious.pth"
    with pytest.raises(pspnet.CheckpointError, match="malicious.pth"):
        pspnet.load(malicious)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes((FIXTURES / "datasets/camvid.pth").read_bytes()[:5000])
    with pytest.raises(pspnet.CheckpointError, match="truncated.pth"):
        pspnet.load(truncated)
    with pytest.raises(ValueError, match="precision"):
        pspnet.load(precision="f16")


def test_a_zip_whose_pickle_calls_os_system_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    payload = (
        b"\x80\x02cos\nsystem\nq\x00X" + len(f"touch {marker}").to_bytes(4, "little")
        + f"touch {marker}".encode() + b"q\x01\x85q\x02Rq\x03."
    )
    path = tmp_path / "evil.pth"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("evil/data.pkl", payload)
        z.writestr("evil/version", "3\n")
    with pytest.raises(pspnet.CheckpointError):
        pspnet.load(path)
    assert not marker.exists()


def test_two_threads_get_the_answers_of_one(model):
    images = [read_rgb(p) for p in EXAMPLES]
    expected = [model.segment(i) for i in images]
    results = {}

    def work(slot):
        results[slot] = [model.segment(i) for i in images for _ in range(2)]

    threads = [threading.Thread(target=work, args=(slot,)) for slot in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for slot in range(2):
        for got, want in zip(results[slot], [e for e in expected for _ in range(2)]):
            assert np.array_equal(got, want)


def test_the_gil_is_released_during_compute(model):
    # With a long switch interval, the main thread can run Python code while
    # the worker is inside segment() only if segment() lets go of the GIL.
    image = read_rgb(EXAMPLES[0])
    started, done = threading.Event(), threading.Event()
    ticks = 0

    def work():
        started.set()
        model.segment(image)
        done.set()

    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.5)
    try:
        worker = threading.Thread(target=work)
        worker.start()
        started.wait()
        while not done.is_set():
            ticks += 1
        worker.join()
    finally:
        sys.setswitchinterval(interval)
    assert ticks > 1000


def test_evaluate_returns_what_evaluate_json_writes(model, tmp_path, cli_outputs):
    # A CamVid-layout split: the examples, labelled by another example's prediction.
    root = tmp_path / "camvid"
    (root / "test/images").mkdir(parents=True)
    (root / "test/labels").mkdir(parents=True)
    for i, example in enumerate(EXAMPLES):
        shutil.copy(example, root / "test/images" / example.name)
        other = EXAMPLES[(i + 1) % len(EXAMPLES)]
        labels = np.asarray(Image.open(cli_outputs / f"{other.stem}.labels.png"))
        Image.fromarray(labels).save(root / "test/labels" / example.name)
    cli("evaluate", "--dataset", "camvid", "--data-root", root, "--split", "test", "--json", tmp_path / "cli.json")
    expected = json.loads((tmp_path / "cli.json").read_text())
    assert pspnet.evaluate(model, "camvid", root, "test") == expected
    custom = pspnet.evaluate(model, "custom", images=root / "test/images", labels=root / "test/labels")
    assert custom["mIoU"] == expected["mIoU"] and custom["dataset"] == "custom"
    with pytest.raises(FileNotFoundError):
        pspnet.evaluate(model, "camvid", tmp_path / "nowhere", "test")
    with pytest.raises(ValueError, match="the model has 11 classes, custom has 3"):
        pspnet.evaluate(model, "custom", images=root / "test/images", labels=root / "test/labels", classes=3)


def test_model_description(model):
    assert model.classes[:3] == ["Sky", "Building", "Pole"]
    assert model.palette.shape == (11, 3) and model.palette.dtype == np.uint8
    info = cli("info", "--size", "473x473").stdout
    gflops = float(info.split("FLOPs:")[1].split()[0])
    assert abs(model.flops(473, 473) / 1e9 - gflops) < 0.005
    assert pspnet.__version__


def test_threads_are_the_model_s_own_and_leave_with_it():
    tasks = Path("/proc/self/task")
    if not tasks.is_dir():
        pytest.skip("needs /proc")
    before = len(list(tasks.iterdir()))
    model = pspnet.load(threads=3)
    model.segment(np.zeros((40, 40, 3), np.uint8))
    assert len(list(tasks.iterdir())) == before + 3
    del model
    import gc

    gc.collect()
    assert len(list(tasks.iterdir())) == before
    with pytest.raises(ValueError, match="threads"):
        pspnet.load(threads=0)


def test_more_than_256_classes_give_uint16(tmp_path):
    # A 300-class model trained for one step from scratch on two tiny images.
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    rng = np.random.default_rng(3)
    for name in ["a", "b"]:
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(images / f"{name}.png")
        Image.fromarray(rng.integers(0, 300, (64, 64), dtype=np.uint16)).save(labels / f"{name}.png")
    out = tmp_path / "run"
    cli("train", "--dataset", "custom", "--images", images, "--labels", labels, "--classes", "300",
        "--layout", "mmseg", "--depth", "18", "--batch", "2", "--iters", "1", "--crop", "64x64",
        "--augment", "crop", "--out", out)
    model = pspnet.load(out / "last.safetensors")
    assert len(model.classes) == 300 and model.palette.shape == (300, 3)
    image = read_rgb(images / "a.png")
    got = model.segment(image)
    assert got.dtype == np.uint16
    cli("segment", images / "a.png", "--model", out / "last.safetensors", "--out", tmp_path / "seg")
    expected = np.asarray(Image.open(tmp_path / "seg/a.labels.png")).astype(np.uint16)
    assert np.array_equal(got, expected)

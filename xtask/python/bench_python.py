"""The Python package against the command line and the peers, in one run.

    python xtask/python/bench_python.py --checkpoint target/bench/PSPNet-50/checkpoint.pth \
        [--layout semseg --depth 50] [--size 473] [--runs 7] [--rounds 3] [--cli target/release/pspnet]

Each engine runs in its own process on the same checkpoint and the same
random 473x473 image with 2 threads; model loading is excluded; one
warm-up, then `runs` timed images (medians below); the package and the CLI
run `rounds` times each, alternating, since the machine's speed drifts:
- package: `pspnet.load(CKPT, precision=P, threads=2).segment(image)`,
  labels out, in f32 and bf16;
  also the call's own overhead, `model.roundtrip(image)` (the image in,
  the GIL released, a label map out, no network), median of 200 calls;
- cli: `pspnet segment --precision P` on `runs + 1` copies of the image,
  its per-image time as it prints it (decoding and PNG writing excluded);
- PyTorch eager, ONNX Runtime, OpenVINO in f32 and in bf16 (OpenVINO's
  default on CPUs with AVX512-BF16): bench_peers.py (logits out), each
  skipped with a message when not installed.
Peak RSS is each process's own. Prints a Markdown table. Needs this package
installed (`pip install ./python`) and Pillow; the peers need
`pip install torch onnx onnxscript onnxruntime openvino`.
"""

import argparse
import importlib.util
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def image(size):
    return np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)


def package(args):
    """Runs in the child process: times the package, prints one JSON line."""
    import pspnet

    model = pspnet.load(args.checkpoint, precision=args.precision, threads=2)
    x = image(args.size)
    model.segment(x)
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        model.segment(x)
        times.append(time.perf_counter() - start)
    overhead = []
    for _ in range(200):
        start = time.perf_counter()
        model.roundtrip(x)
        overhead.append(time.perf_counter() - start)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"times": times, "overhead_ms": 1e3 * statistics.median(overhead), "peak_rss_mb": rss}))


def measured(command, env=None):
    """Runs a command; its stdout and its own peak RSS in MiB."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        child = subprocess.Popen(command, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(child.pid, 0)
        out.seek(0)
        err.seek(0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(err.read().decode().strip().splitlines()[-1])
        return out.read().decode(), usage.ru_maxrss / 1024


def cli(args, work, precision):
    from PIL import Image

    source = work / "input.png"
    Image.fromarray(image(args.size)).save(source)
    inputs = []
    for i in range(args.runs + 1):
        inputs.append(work / f"image-{i:02}.png")
        inputs[-1].symlink_to(source)
    env = dict(os.environ, RAYON_NUM_THREADS="2")
    command = [args.cli, "segment", *map(str, inputs), "--model", args.checkpoint, "--precision", precision]
    out, rss = measured([*command, "--out", str(work / "out")], env)
    times = [float(ms) / 1e3 for ms in re.findall(r" in (\d+(?:\.\d+)?) ms", out)]
    return times[1:], rss


def peer(args, engine):
    out, _ = measured([sys.executable, str(HERE / "bench_peers.py"), "--engine", engine, "--checkpoint",
                       args.checkpoint, "--layout", args.layout, "--depth", str(args.depth), "--size",
                       f"{args.size}x{args.size}", "--threads", "2", "--runs", str(args.runs)])
    v = json.loads(out.strip().splitlines()[-1])
    return v["median_s"], v["min_s"], v["max_s"], v["peak_rss_mb"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--layout", default="semseg")
    p.add_argument("--depth", type=int, default=50)
    p.add_argument("--size", type=int, default=473)
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--rounds", type=int, default=3, help="package and CLI runs, alternating")
    p.add_argument("--cli", default=str(REPO / "target/release/pspnet"))
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--precision", default="f32", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return package(args)

    rows = []
    overhead = []
    rounds = {}
    for precision in ["f32", "bf16"]:
        # The machine drifts: package and CLI alternate, round by round.
        times = {"package": [], "cli": []}
        rss = {"package": 0.0, "cli": 0.0}
        for _ in range(args.rounds):
            out, peak = measured([sys.executable, __file__, "--child", "--checkpoint", args.checkpoint, "--size",
                                  str(args.size), "--runs", str(args.runs), "--precision", precision])
            result = json.loads(out.strip().splitlines()[-1])
            times["package"].append(result["times"])
            rss["package"] = max(rss["package"], peak)
            overhead.append(result["overhead_ms"])
            with tempfile.TemporaryDirectory() as work:
                cli_times, peak = cli(args, Path(work), precision)
            times["cli"].append(cli_times)
            rss["cli"] = max(rss["cli"], peak)
        rounds[precision] = [statistics.median(p) / statistics.median(c) for p, c in zip(times["package"], times["cli"])]
        flat = {k: [t for r in v for t in r] for k, v in times.items()}
        rows.append((f"pspnet, Python package, {precision}", precision, flat["package"], rss["package"]))
        rows.append((f"pspnet segment (CLI), {precision}", precision, flat["cli"], rss["cli"]))
    peers = [("torch", "torch", "PyTorch eager, f32", "f32"), ("onnxruntime", "onnxruntime", "ONNX Runtime, f32", "f32"),
             ("openvino", "openvino", "OpenVINO, f32", "f32"), ("openvino-bf16", "openvino", "OpenVINO, bf16", "bf16")]
    for engine, module, label, precision in peers:
        if importlib.util.find_spec(module) is None or importlib.util.find_spec("torch") is None:
            print(f"{label}: skipped ({module} or torch is not installed)", file=sys.stderr)
            continue
        rows.append((label, precision, *peer(args, engine)))

    ours = {precision: statistics.median(times) for label, precision, times, _ in rows[:4] if "package" in label}
    print(f"{args.layout} ResNet-{args.depth} @{args.size}, 2 threads, {args.runs} timed images after a warm-up"
          f" ({args.rounds} rounds of package and CLI, alternating)")
    print()
    print("| engine | median s | min-max s | package (same precision) time / its | peak RSS MiB |")
    print("|---|---|---|---|---|")
    for row in rows:
        if len(row) == 4:
            label, precision, times, rss = row
            median, low, high = statistics.median(times), min(times), max(times)
        else:
            label, precision, median, low, high, rss = row
        ratio = ours[precision] / median
        print(f"| {label} | {median:.3f} | {low:.3f}-{high:.3f} | {ratio:.2f}x | {rss:.0f} |")
    print()
    for precision, ratios in rounds.items():
        print(f"package / CLI, {precision}, round by round: " + ", ".join(f"{r:.3f}" for r in ratios))
    print(f"call overhead (image in, labels out, no network): {statistics.median(overhead):.3f} ms")


if __name__ == "__main__":
    main()

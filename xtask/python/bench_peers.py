"""Times the PyTorch, ONNX Runtime and OpenVINO peers of `cargo xtask bench`
and of bench_python.py.

    python bench_peers.py --engine torch|onnxruntime|openvino|openvino-bf16 --checkpoint CKPT --layout semseg --depth 50 \
        --size 473x473 --threads 2 --runs 5

Loads the checkpoint into the PyTorch model of reference.py (the same
module the cross-check uses), runs it eagerly in fp32 with
`torch.set_num_threads(threads)`, or exports it to ONNX and runs it with
ONNX Runtime's CPU provider and `threads` intra-op threads (or OpenVINO's
CPU device with `INFERENCE_NUM_THREADS`, in f32 or, as `openvino-bf16`, in
bf16, OpenVINO's default on CPUs with AVX512-BF16). One warm-up,
then `runs` timed forward passes on a random image. Prints one JSON line:
{"engine", "median_s", "min_s", "max_s", "peak_rss_mb"} (peak RSS of this
process, so run one engine per process). Needs
`pip install torch numpy onnx onnxscript onnxruntime` (and `openvino`).
"""

import argparse
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch

from reference import PSPNet


def load(checkpoint, layout, depth):
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    state = ckpt.get("state_dict", ckpt)
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    classes = state["decode_head.conv_seg.weight" if layout == "mmseg" else "cls.4.weight"].shape[0]
    width = state["layer1.0.conv1.weight" if layout == "semseg" else "backbone.layer1.0.conv1.weight"].shape[0]
    model = PSPNet(depth, width, classes, [1, 2, 3, 6], layout)
    own_to_layout = dict(zip(model.state_dict().keys(), model.layout_state_dict(layout).keys()))
    model.load_state_dict({own: state[theirs] for own, theirs in own_to_layout.items()})
    return model.eval()


def onnx_runner(engine, path, x, threads):
    """A function running the exported model once with `threads` threads."""
    if engine.startswith("openvino"):
        import openvino as ov
        # OpenVINO computes in bf16 by default where the CPU has it; "openvino" asks for f32.
        precision = "bf16" if engine == "openvino-bf16" else "f32"
        config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": precision}
        compiled = ov.Core().compile_model(str(path), "CPU", config)
        request = compiled.create_infer_request()
        return lambda: request.infer({"x": x})
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda: session.run(None, {"x": x})


class LogitsOnly(torch.nn.Module):
    """The inference path only: logits at the input resolution."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        b = self.net.backbone(x)["layer4"]
        import torch.nn.functional as F
        levels = [b] + [F.interpolate(m(b), b.shape[2:], mode="bilinear", align_corners=self.net.align_corners)
                        for m in self.net.ppm]
        low = self.net.cls(self.net.head(torch.cat(levels, 1)))
        return F.interpolate(low, x.shape[2:], mode="bilinear", align_corners=self.net.align_corners)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engine", choices=["torch", "onnxruntime", "openvino", "openvino-bf16"], required=True)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--layout", choices=["semseg", "mmseg"], required=True)
    p.add_argument("--depth", type=int, required=True)
    p.add_argument("--size", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()
    h, w = (int(v) for v in args.size.lower().split("x"))
    torch.set_num_threads(args.threads)
    model = LogitsOnly(load(args.checkpoint, args.layout, args.depth)).eval()
    x = torch.randn(1, 3, h, w)
    # The exported graph (hundreds of MB) lives only as long as the run.
    with tempfile.TemporaryDirectory() as work:
        if args.engine == "torch":
            def run():
                with torch.no_grad():
                    model(x)
        else:
            path = Path(work) / "pspnet.onnx"
            with torch.no_grad():
                torch.onnx.export(model, (x,), str(path), input_names=["x"], output_names=["logits"], dynamo=False)
            del model
            run = onnx_runner(args.engine, path, x.numpy(), args.threads)
        run()
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"engine": args.engine, "median_s": statistics.median(times), "min_s": min(times),
                      "max_s": max(times), "peak_rss_mb": rss_mb}))


if __name__ == "__main__":
    main()

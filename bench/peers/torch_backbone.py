"""PyTorch peer for bench/backbone.bench.mjs: a torchvision ResNet up to a tap, in two modes.

`eager` is eval() + no_grad(); `best` is torch.jit.optimize_for_inference of the scripted,
frozen model (BN folded, oneDNN blocked layout) - PyTorch's fastest CPU mode. Weights are
random (speed does not depend on them); inputs have the shape of the anomalens run.
Run with Debian's Python (/usr/bin/python3), which has python3-torch/torchvision.

One-shot timing, prints {"eager": ms_per_image, "best": ms_per_image}:
    /usr/bin/python3 bench/peers/torch_backbone.py ARCH SIZE BATCH THREADS TAP SECONDS

Server for interleaved benches (one JSON request per stdin line, one JSON reply per line):
    /usr/bin/python3 bench/peers/torch_backbone.py serve
    {"op": "load", "arch": "resnet18", "size": 224, "batch": 8, "threads": 2, "tap": "layer3"}
      -> {"ok": true, "seconds": build_time, "shape": [8, 256, 14, 14]}
    {"op": "run", "mode": "eager" | "best"}  -> {"ms": one_forward_ms}
    {"op": "quit"}
  Errors reply {"error": message}. Only the last loaded model pair is kept.

ONNX export of the same truncated model for onnxruntime (fixed shape, eval mode, so the
exporter folds batch-norm into the convolutions):
    /usr/bin/python3 bench/peers/torch_backbone.py export-onnx ARCH SIZE BATCH TAP OUT.onnx [OPSET]
"""
import json
import sys
import time

import torch
import torchvision

STAGES = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
STOP = {"stem": 4, "layer1": 5, "layer2": 6, "layer3": 7, "layer4": 8}


class UpTo(torch.nn.Module):
    def __init__(self, model, tap):
        super().__init__()
        self.body = torch.nn.Sequential(*[getattr(model, n) for n in STAGES[: STOP[tap]]])

    def forward(self, x):
        return self.body(x)


def build(arch, tap):
    torch.manual_seed(0)
    return UpTo(getattr(torchvision.models, arch)(weights=None), tap).eval()


def timed(fn, x, seconds):
    fn(x)
    fn(x)
    n, start = 0, time.perf_counter()
    while True:
        fn(x)
        n += 1
        el = time.perf_counter() - start
        if el > seconds and n >= 3:
            return el / n


def one_shot(argv):
    arch, size, batch, threads, tap, seconds = argv[0], int(argv[1]), int(argv[2]), int(argv[3]), argv[4], float(argv[5])
    torch.set_num_threads(threads)
    model = build(arch, tap)
    x = torch.randn(batch, 3, size, size)
    with torch.no_grad():
        eager = timed(model, x, seconds)
        best_model = torch.jit.optimize_for_inference(torch.jit.script(model))
        best = timed(best_model, x, seconds)
    print(json.dumps({"eager": eager * 1000 / batch, "best": best * 1000 / batch}))


def serve():
    models, x = {}, None
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            req = json.loads(line)
            op = req["op"]
            if op == "quit":
                break
            if op == "load":
                models, x = {}, None
                t0 = time.perf_counter()
                torch.set_num_threads(int(req["threads"]))
                eager = build(req["arch"], req["tap"])
                x = torch.randn(int(req["batch"]), 3, int(req["size"]), int(req["size"]))
                with torch.no_grad():
                    best = torch.jit.optimize_for_inference(torch.jit.script(eager))
                    for m in (eager, best):  # first calls compile / pack weights
                        m(x)
                        y = m(x)
                models = {"eager": eager, "best": best}
                reply = {"ok": True, "seconds": time.perf_counter() - t0, "shape": list(y.shape),
                         "threads": torch.get_num_threads()}
            elif op == "run":
                model = models[req["mode"]]
                with torch.no_grad():
                    t0 = time.perf_counter()
                    model(x)
                    ms = (time.perf_counter() - t0) * 1000
                reply = {"ms": ms}
            else:
                reply = {"error": f"unknown op {op!r}"}
        except Exception as e:  # reported to the bench, which stops with it
            reply = {"error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


def export_onnx(argv):
    arch, size, batch, tap, out = argv[0], int(argv[1]), int(argv[2]), argv[3], argv[4]
    opset = int(argv[5]) if len(argv) > 5 else 17
    model = build(arch, tap)
    x = torch.randn(batch, 3, size, size)
    with torch.no_grad():
        torch.onnx.export(model, x, out, opset_version=opset, input_names=["input"], output_names=[tap],
                          do_constant_folding=True, training=torch.onnx.TrainingMode.EVAL)
    print(f"wrote {out} ({arch} up to {tap}, input [{batch}, 3, {size}, {size}], opset {opset})")


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "serve":
        serve()
    elif len(sys.argv) >= 2 and sys.argv[1] == "export-onnx":
        export_onnx(sys.argv[2:])
    else:
        one_shot(sys.argv[1:])


if __name__ == "__main__":
    main()

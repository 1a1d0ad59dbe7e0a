"""Peer of bench/train.bench.mjs: torch conv2d forward + autograd backward (dx, dw) per shape.

    /usr/bin/python3 bench/peers/train_peer.py THREADS REPEATS ROUNDS_JSON

Prints one JSON line {"seconds": {name: best seconds per forward+backward}}.
"""
import json
import sys
import time

import torch
import torch.nn.functional as F

threads, repeats, shapes = int(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
torch.set_num_threads(threads)
torch.manual_seed(0)
out = {}
for name, s in shapes.items():
    x = torch.randn(s["n"], s["c"], s["h"], s["w"], requires_grad=True)
    w = torch.randn(s["k"], s["c"], s["kh"], s["kw"], requires_grad=True)
    oh = (s["h"] + 2 * s["padding"] - s["kh"]) // s["stride"] + 1
    ow = (s["w"] + 2 * s["padding"] - s["kw"]) // s["stride"] + 1
    dy = torch.randn(s["n"], s["k"], oh, ow)

    def step():
        x.grad = None
        w.grad = None
        y = F.conv2d(x, w, None, stride=s["stride"], padding=s["padding"])
        y.backward(dy)

    step()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - t0)
    out[name] = best
print(json.dumps({"seconds": out, "torch": torch.__version__}))

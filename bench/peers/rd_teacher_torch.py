"""PyTorch peer for bench/rd-step.mjs's teacher line: the ResNet-50 v2 teacher of
bench/peers/rd_torch.py (stem + stages 1-3, F.conv2d / F.batch_norm, eval mode, no_grad) on one
random batch, float32 eager (Debian python3-torch 1.13).

    /usr/bin/python3 bench/peers/rd_teacher_torch.py WEIGHTS.safetensors THREADS SIZE BATCH REPEATS
Prints one JSON line {"seconds": best seconds per batch}.
"""
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rd_torch import read_safetensors, teacher  # noqa: E402


def main():
    weights, threads, size, batch, repeats = sys.argv[1], *(int(v) for v in sys.argv[2:6])
    torch.set_num_threads(threads)
    fwd = teacher(read_safetensors(weights))
    x = torch.rand(batch, 3, size, size)
    best = float("inf")
    with torch.no_grad():
        fwd(x)  # warm-up
        for _ in range(repeats):
            t0 = time.perf_counter()
            fwd(x)
            best = min(best, time.perf_counter() - t0)
    print(json.dumps({"seconds": best}))


if __name__ == "__main__":
    main()

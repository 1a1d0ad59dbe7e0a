"""PyTorch / scipy peer for bench/maps.bench.mjs: seconds of the reference map kernels.

    /usr/bin/python3 bench/peers/maps_peer.py DIR THREADS REPEATS

DIR holds the bench's inputs as raw little-endian float32 files:
  resize_c1.f32 [32, 1, 28, 28], resize_c3.f32 [32, 3, 28, 28], blur.f32 [32, 256, 256],
  a.f32 and b.f32 [32, 256, 64, 64].
Each op is timed as the best of REPEATS runs (inputs already in memory as tensors / arrays):
  resize:  torch F.interpolate(x, (256, 256), mode='bilinear', align_corners=False)
  blur:    scipy.ndimage.gaussian_filter(map, 4) per map (mode 'reflect', truncate 4); with
           THREADS > 1 the maps are spread over a thread pool of THREADS (ndimage releases the
           GIL while filtering)
  cosine:  1 - torch F.cosine_similarity(a, b, dim=1)
  l2:      torch.linalg.vector_norm(a - b, dim=1)
torch runs with torch.set_num_threads(THREADS). The outputs are written to
DIR/peer-<op>-<THREADS>.f32 (float32) for the bench to compare. Prints one JSON line.
"""
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.ndimage as ndimage
import torch
import torch.nn.functional as F


def best_of(repeats, fn):
    best, value = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t0)
    return best, value


def main():
    folder, threads, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(threads)
    load = lambda name, shape: np.fromfile(os.path.join(folder, name), dtype="<f4").reshape(shape)
    c1 = torch.from_numpy(load("resize_c1.f32", (32, 1, 28, 28)))
    c3 = torch.from_numpy(load("resize_c3.f32", (32, 3, 28, 28)))
    maps = load("blur.f32", (32, 256, 256))
    a = torch.from_numpy(load("a.f32", (32, 256, 64, 64)))
    b = torch.from_numpy(load("b.f32", (32, 256, 64, 64)))
    pool = ThreadPoolExecutor(threads) if threads > 1 else None

    def blur():
        one = lambda m: ndimage.gaussian_filter(m, 4.0, mode="reflect", truncate=4.0)
        return np.stack(list(pool.map(one, maps)) if pool else [one(m) for m in maps])

    ops = {
        "resizeC1": lambda: F.interpolate(c1, size=(256, 256), mode="bilinear", align_corners=False),
        "resizeC3": lambda: F.interpolate(c3, size=(256, 256), mode="bilinear", align_corners=False),
        "blur": blur,
        "cosine": lambda: 1 - F.cosine_similarity(a, b, dim=1),
        "l2": lambda: torch.linalg.vector_norm(a - b, dim=1),
    }
    seconds = {}
    for name, fn in ops.items():
        seconds[name], value = best_of(repeats, fn)
        value = value.numpy() if isinstance(value, torch.Tensor) else value
        value.astype("<f4").tofile(os.path.join(folder, f"peer-{name}-{threads}.f32"))
    print(json.dumps({"threads": threads, "seconds": seconds, "torch": torch.__version__}))


if __name__ == "__main__":
    main()

"""sklearn + numpy/scipy peer for bench/metrics.bench.mjs: seconds of the reference metrics.

    /usr/bin/python3 bench/peers/metrics_peer.py MAPS_F32 MASKS_U8 N H W REPEATS

MAPS_F32 / MASKS_U8 are raw little-endian files of N * H * W float32 scores and uint8 masks
written by the bench. Times, each the best of REPEATS runs (data loading excluded):
  image AUROC: sklearn.metrics.roc_auc_score on the per-image max of each map
  pixel AUROC: sklearn.metrics.roc_auc_score on all pixels (labels = mask > 0)
  AUPRO:       the float64 MVTec AD reference of test/fixtures/metrics/make_fixtures.py
               (scipy.ndimage.label with 8-connectivity, one argsort, cumsums, trapezoid)
Prints one JSON line with the seconds and the values, so the bench can check agreement.
"""
import json
import os
import sys
import time

import numpy as np
from sklearn.metrics import roc_auc_score

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'test', 'fixtures', 'metrics'))
from make_fixtures import aupro_f64  # noqa: E402


def best_of(repeats, fn):
    best, value = float('inf'), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t0)
    return best, value


def main():
    maps_path, masks_path, n, h, w, repeats = sys.argv[1:7]
    n, h, w, repeats = int(n), int(h), int(w), int(repeats)
    maps = np.fromfile(maps_path, dtype=np.float32).reshape(n, h, w)
    masks = np.fromfile(masks_path, dtype=np.uint8).reshape(n, h, w)
    image_scores = maps.reshape(n, -1).max(axis=1)
    image_labels = (masks.reshape(n, -1) > 0).any(axis=1).astype(np.uint8)
    out = {}
    out['imageAurocSeconds'], out['imageAuroc'] = best_of(max(repeats, 5), lambda: float(roc_auc_score(image_labels, image_scores)))
    labels = (masks > 0).ravel().astype(np.uint8)
    out['pixelAurocSeconds'], out['pixelAuroc'] = best_of(repeats, lambda: float(roc_auc_score(labels, maps.ravel())))
    del labels
    out['auproSeconds'], out['aupro'] = best_of(repeats, lambda: aupro_f64(list(maps), list(masks), 0.3))
    print(json.dumps(out))


if __name__ == '__main__':
    main()

"""PyTorch peer for bench/patchcore.bench.mjs: PatchCore fit + predict end to end, float32 eager.

The same pipeline as anomalens' Detector({ method: 'patchcore', arch: 'resnet50_v2', size }):
PIL decode (grey -> RGB) + torchvision Resize([size, size]) + ToTensor + Normalize; ResNet-50 v2
(ONNX Model Zoo / Gluon) stem + stages 1-3 written with torch.nn.functional (as v2_reference in
test/fixtures/backbone/make_parity.py, float32), batch 8; PatchCore's locally aware patch
embedding (stage2 + stage3, as patchcore_embed in test/fixtures/detectors/make_fixtures.py,
i.e. the original code's PatchMaker + Preprocessing + Aggregator); the original
ApproximateGreedyCoresetSampler (amazon-science/patchcore-inspection: torch.nn.Linear
projection to 128 dims, 10 random starting rows whose mean distance initialises the minimum
distances, then iterative farthest-row selection with torch ops); squared-L2 nearest neighbour
with chunked torch.cdist; image score = max patch score; map: F.interpolate (bilinear,
align_corners False) to size x size, scipy gaussian_filter sigma 4, then F.interpolate to the
image's original size (the order anomalens uses: lib/methods/patchcore.ts + lib/detector/detector.ts).
Image AUROC with sklearn as a sanity check.

Run with Debian's Python (torch, torchvision, scipy, sklearn):
    /usr/bin/python3 bench/peers/patchcore_torch.py SUBSET.json WEIGHTS.safetensors THREADS [CORESET] [SIZE]
SUBSET.json: {"train": [paths], "test": [paths], "labels": [0/1 per test path]}.
Prints one JSON line: fitSeconds, predictImagesPerSecond, imageAuroc and per-stage seconds.
"""
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.ndimage import gaussian_filter
from sklearn.metrics import roc_auc_score
from torchvision import transforms

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "test", "fixtures", "backbone"))
from make_parity import V2, v2_names  # noqa: E402
from make_real import read_safetensors  # noqa: E402

BATCH = 8


def resnet_v2(weights, arch="resnet50_v2", stages=3):
    kind, blocks, p = V2[arch]
    names, structure = v2_names(kind, blocks, p)
    W = {k: torch.from_numpy(np.array(weights[k], dtype=np.float32)) for k, _ in names if k in weights}

    def bn(x, base):
        return F.batch_norm(x, W[base + "_running_mean"], W[base + "_running_var"], W[base + "_gamma"], W[base + "_beta"],
                            False, 0.0, 1e-5)

    def forward(x):
        out = {}
        x = bn(x, p + "batchnorm0")
        x = F.conv2d(x, W[p + "conv0_weight"], stride=2, padding=3)
        x = F.relu(bn(x, p + "batchnorm1"))
        x = F.max_pool2d(x, 3, 2, 1)
        for s, stage in enumerate(structure[:stages]):
            for blk in stage:
                pre = F.relu(bn(x, blk["bn"][0]))
                y = pre
                for i, (w, st, pad) in enumerate(blk["conv"]):
                    if i > 0:
                        y = F.relu(bn(y, blk["bn"][i]))
                    y = F.conv2d(y, W[w], stride=st, padding=pad)
                shortcut = F.conv2d(pre, W[blk["proj"][0]], stride=blk["proj"][1]) if blk["proj"] else x
                x = y + shortcut
            out[f"stage{s + 1}"] = x
        return out

    return forward


def patchcore_embed(a, c, dim=1024):
    """PatchMaker(3, stride 1) on each layer, layer 3 resized to layer 2's grid, adaptive pooling."""
    def patchify(x):
        unf = torch.nn.Unfold(kernel_size=3, stride=1, padding=1, dilation=1)(x)
        n, _, L = unf.shape
        return unf.reshape(n, x.shape[1], 3, 3, L).permute(0, 4, 1, 2, 3), (x.shape[2], x.shape[3])

    p2, (h2, w2) = patchify(a)
    p3, (h3, w3) = patchify(c)
    n = p3.shape[0]
    p3 = p3.reshape(n, h3, w3, *p3.shape[2:]).permute(0, -3, -2, -1, 1, 2)
    s = p3.shape
    p3 = p3.reshape(-1, h3, w3)
    p3 = F.interpolate(p3.unsqueeze(1), size=(h2, w2), mode="bilinear", align_corners=False).squeeze(1)
    p3 = p3.reshape(*s[:-2], h2, w2).permute(0, -2, -1, 1, 2, 3).reshape(n, h2 * w2, *s[1:4])
    feats = [p2.reshape(-1, *p2.shape[-3:]), p3.reshape(-1, *p3.shape[-3:])]
    pooled = [F.adaptive_avg_pool1d(x.reshape(len(x), 1, -1), dim).squeeze(1) for x in feats]
    stacked = torch.stack(pooled, dim=1)
    return F.adaptive_avg_pool1d(stacked.reshape(len(stacked), 1, -1), dim).reshape(len(stacked), -1), (h2, w2)


def batchwise_distances(a, b):
    """GreedyCoresetSampler._compute_batchwise_differences (Euclidean, clamped at 0)."""
    aa = a.unsqueeze(1).bmm(a.unsqueeze(2)).reshape(-1, 1)
    bb = b.unsqueeze(1).bmm(b.unsqueeze(2)).reshape(1, -1)
    ab = a.mm(b.T)
    return (-2 * ab + aa + bb).clamp(0, None).sqrt()


def approximate_greedy_coreset(features, percentage, starting_points=10, project_to=128):
    """ApproximateGreedyCoresetSampler.run (patchcore-inspection, src/patchcore/sampler.py)."""
    if percentage == 1:
        return features
    if features.shape[1] != project_to:
        mapper = torch.nn.Linear(features.shape[1], project_to, bias=False)
        reduced = mapper(features)
    else:
        reduced = features
    start = np.random.choice(len(reduced), int(np.clip(starting_points, None, len(reduced))), replace=False).tolist()
    mins = torch.mean(batchwise_distances(reduced, reduced[start]), axis=-1).reshape(-1, 1)
    idx = []
    for _ in range(int(len(reduced) * percentage)):
        sel = torch.argmax(mins).item()
        idx.append(sel)
        d = batchwise_distances(reduced, reduced[sel:sel + 1])
        mins = torch.cat([mins, d], dim=-1)
        mins = torch.min(mins, dim=1).values.reshape(-1, 1)
    return features[np.array(idx)]


def nearest_l2sq(q, bank, chunk=4096):
    out = torch.empty(len(q))
    for i in range(0, len(q), chunk):
        out[i:i + chunk] = (torch.cdist(q[i:i + chunk], bank) ** 2).min(1)[0]
    return out


def main():
    subset_path, weights_path, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    coreset = float(sys.argv[4]) if len(sys.argv) > 4 else 0.1
    size = int(sys.argv[5]) if len(sys.argv) > 5 else 224
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    np.random.seed(0)
    with open(subset_path) as f:
        subset = json.load(f)
    forward = resnet_v2(read_safetensors(weights_path))
    tf = transforms.Compose([transforms.Resize([size, size]), transforms.ToTensor(),
                             transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    t = {"decode": 0.0, "features": 0.0, "embed": 0.0, "coreset": 0.0,
         "p_decode": 0.0, "p_features": 0.0, "p_embed": 0.0, "p_search": 0.0, "p_maps": 0.0}

    def load(paths):
        s = time.perf_counter()
        imgs = [Image.open(p).convert("RGB") for p in paths]
        sizes = [(im.height, im.width) for im in imgs]
        x = torch.stack([tf(im) for im in imgs])
        return x, sizes, time.perf_counter() - s

    with torch.no_grad():
        # fit
        start, cpu0 = time.perf_counter(), time.process_time()
        parts = []
        train = subset["train"]
        for i in range(0, len(train), BATCH):
            x, _, dt = load(train[i:i + BATCH])
            t["decode"] += dt
            s = time.perf_counter()
            f = forward(x)
            t["features"] += time.perf_counter() - s
            s = time.perf_counter()
            parts.append(patchcore_embed(f["stage2"], f["stage3"])[0])
            t["embed"] += time.perf_counter() - s
        s = time.perf_counter()
        bank = approximate_greedy_coreset(torch.cat(parts), coreset).contiguous()
        del parts
        t["coreset"] = time.perf_counter() - s
        fit_seconds = time.perf_counter() - start
        fit_cpu = time.process_time() - cpu0

        # predict
        start, cpu0 = time.perf_counter(), time.process_time()
        scores = []
        test = subset["test"]
        for i in range(0, len(test), BATCH):
            x, sizes, dt = load(test[i:i + BATCH])
            t["p_decode"] += dt
            s = time.perf_counter()
            f = forward(x)
            t["p_features"] += time.perf_counter() - s
            s = time.perf_counter()
            q, (h, w) = patchcore_embed(f["stage2"], f["stage3"])
            t["p_embed"] += time.perf_counter() - s
            s = time.perf_counter()
            d = nearest_l2sq(q, bank).reshape(-1, h, w)
            t["p_search"] += time.perf_counter() - s
            s = time.perf_counter()
            scores.extend(d.reshape(len(d), -1).max(1)[0].tolist())
            up = F.interpolate(d.unsqueeze(1), size=(size, size), mode="bilinear", align_corners=False)
            blurred = torch.from_numpy(np.stack([gaussian_filter(m, sigma=4) for m in up.squeeze(1).numpy()]))
            maps = [F.interpolate(blurred[j][None, None], size=hw, mode="bilinear", align_corners=False)[0, 0].numpy()
                    for j, hw in enumerate(sizes)]
            t["p_maps"] += time.perf_counter() - s
            del maps
        predict_seconds = time.perf_counter() - start
        predict_cpu = time.process_time() - cpu0

    print(json.dumps({
        "threads": threads, "train": len(train), "test": len(test), "bankRows": int(bank.shape[0]),
        "fitSeconds": fit_seconds, "predictSeconds": predict_seconds,
        "predictImagesPerSecond": len(test) / predict_seconds,
        "cpuPerWall": {"fit": fit_cpu / fit_seconds, "predict": predict_cpu / predict_seconds},
        "imageAuroc": float(roc_auc_score(subset["labels"], scores)),
        "stages": {k: round(v, 3) for k, v in t.items()},
    }))


if __name__ == "__main__":
    main()

"""PyTorch peer for bench/rd-real.mjs: Reverse Distillation training on the same images, float32
eager (Debian python3-torch 1.13; no torchvision / scipy needed).

The same work as anomalens' Detector({ method: 'reverse-distillation', arch: 'resnet50_v2', size })
fit: PIL decode (grey -> RGB), PIL bilinear resize to size x size (torchvision's Resize on a PIL
image), /255, ImageNet mean/std; the ResNet-50 v2 teacher (stem + stages 1-3, F.conv2d /
F.batch_norm, as bench/peers/patchcore_torch.py) in eval mode under no_grad, its three stage
outputs computed once per image and kept (anomalens keeps them too: the teacher is frozen and
sees no augmentation); then the original main.py's epochs: shuffled batches of 16, the
original BN_layer + de_resnet (test/fixtures/rd/make_fixtures.py, resnet50 kind) in train mode,
loss_function, Adam(lr 0.005, betas (0.5, 0.999)). Initialisation: the original's (kaiming normal
fan_out for Conv2d, BN 1 / 0, ConvTranspose2d torch default).

    /usr/bin/python3 bench/peers/rd_torch.py SUBSET.json WEIGHTS.safetensors THREADS SIZE EPOCHS
SUBSET.json: {"train": [paths]}. Prints one JSON line: featureSeconds, epochSeconds [per epoch],
losses [per epoch].
"""
import json
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "test", "fixtures", "rd"))
from make_fixtures import Student, loss_function  # noqa: E402

BATCH = 16
P = "resnetv24_"


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    return {k: torch.from_numpy(np.frombuffer(data[v["data_offsets"][0]:v["data_offsets"][1]], dtype=np.float32)
                                .reshape(v["shape"]).copy())
            for k, v in header.items() if k != "__metadata__"}


def teacher(W):
    """ONNX Model Zoo ResNet-50 v2 stem + stages 1-3 (names as ../shared/data/README.md)."""
    def bn(x, base):
        return F.batch_norm(x, W[base + "_running_mean"], W[base + "_running_var"], W[base + "_gamma"], W[base + "_beta"],
                            False, 0.0, 1e-5)

    def forward(x):
        out = []
        x = bn(x, P + "batchnorm0")
        x = F.conv2d(x, W[P + "conv0_weight"], stride=2, padding=3)
        x = F.max_pool2d(F.relu(bn(x, P + "batchnorm1")), 3, 2, 1)
        cin = 64
        for s, blocks in enumerate([3, 4, 6]):
            sp = f"{P}stage{s + 1}_"
            outc = 256 << s
            width = outc // 4
            b_i = c_i = 0
            for b in range(blocks):
                stride = 2 if (b == 0 and s > 0) else 1
                pre = F.relu(bn(x, f"{sp}batchnorm{b_i}"))
                y = F.conv2d(pre, W[f"{sp}conv{c_i}_weight"])
                y = F.conv2d(F.relu(bn(y, f"{sp}batchnorm{b_i + 1}")), W[f"{sp}conv{c_i + 1}_weight"], stride=stride, padding=1)
                y = F.conv2d(F.relu(bn(y, f"{sp}batchnorm{b_i + 2}")), W[f"{sp}conv{c_i + 2}_weight"])
                b_i += 3
                c_i += 3
                if cin != outc:
                    shortcut = F.conv2d(pre, W[f"{sp}conv{c_i}_weight"], stride=stride)
                    c_i += 1
                else:
                    shortcut = x
                x = y + shortcut
                cin = outc
            out.append(x)
        return out

    return forward


def init_original(m):
    for mod in m.modules():
        if isinstance(mod, nn.Conv2d):
            nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(mod, nn.BatchNorm2d):
            nn.init.constant_(mod.weight, 1)
            nn.init.constant_(mod.bias, 0)


def main():
    subset_path, weights_path, threads, size, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    with open(subset_path) as f:
        train = json.load(f)["train"]
    fwd = teacher(read_safetensors(weights_path))
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    s0 = time.perf_counter()
    feats = [[], [], []]
    with torch.no_grad():
        for i in range(0, len(train), BATCH):
            ims = [np.asarray(Image.open(p).convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.float32) / 255
                   for p in train[i:i + BATCH]]
            x = (torch.from_numpy(np.stack(ims)).permute(0, 3, 1, 2) - mean) / std
            for k, t in enumerate(fwd(x.contiguous())):
                feats[k].append(t)
    feats = [torch.cat(f) for f in feats]
    feature_seconds = time.perf_counter() - s0
    model = Student("resnet50")
    init_original(model)
    model.train()
    opt = torch.optim.Adam(list(model.bn.parameters()) + list(model.decoder.parameters()), lr=0.005, betas=(0.5, 0.999))
    n = feats[0].shape[0]
    epoch_seconds, losses = [], []
    for _ in range(epochs):
        t0 = time.perf_counter()
        order = torch.randperm(n)
        ls = []
        for s in range(0, n, BATCH):
            idx = order[s:s + BATCH]
            f = [t[idx] for t in feats]
            loss = loss_function(f, model(f))
            opt.zero_grad()
            loss.backward()
            opt.step()
            ls.append(float(loss))
        epoch_seconds.append(time.perf_counter() - t0)
        losses.append(float(np.mean(ls)))
    print(json.dumps({"featureSeconds": feature_seconds, "epochSeconds": epoch_seconds, "losses": losses}))


if __name__ == "__main__":
    main()

"""Peer of bench/panda-step.bench.mjs: one PANDA optimisation step in torch 1.13, the work of
anomalens' compactnessStep from the cached layer2 output: ResNet-50 (torchvision structure)
layer3 + layer4 in eval mode, adaptive_avg_pool2d, ((f - c) ** 2).mean(), backward,
clip_grad_norm_(1e-3), SGD(lr 1e-2, momentum 0.9, weight_decay 5e-5).

    /usr/bin/python3 bench/peers/panda_step_peer.py THREADS REPEATS N SIDE

Prints one JSON line {"seconds": {"step", "forward", "backward", "optimiser"}} (best of REPEATS).
"""
import json
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

threads, repeats, n, side = (int(v) for v in sys.argv[1:5])
torch.set_num_threads(threads)
torch.manual_seed(0)


class Bottleneck(nn.Module):
    def __init__(self, cin, planes, stride):
        super().__init__()
        out = planes * 4
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != out:
            self.downsample = nn.Sequential(nn.Conv2d(cin, out, 1, stride, bias=False), nn.BatchNorm2d(out))

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        o = self.relu(self.bn1(self.conv1(x)))
        o = self.relu(self.bn2(self.conv2(o)))
        o = self.bn3(self.conv3(o))
        return self.relu(o + idt)


def stage(cin, planes, blocks):
    return nn.Sequential(*[Bottleneck(cin if b == 0 else planes * 4, planes, 2 if b == 0 else 1) for b in range(blocks)])


tail = nn.Sequential(stage(512, 256, 6), stage(1024, 512, 3)).eval()  # layer3, layer4
x = torch.randn(n, 512, side // 8, side // 8)  # the cached layer2 output
centre = torch.randn(2048) * 0.1
opt = torch.optim.SGD(tail.parameters(), lr=1e-2, momentum=0.9, weight_decay=5e-5)
best = {"step": float("inf"), "forward": float("inf"), "backward": float("inf"), "optimiser": float("inf")}
for r in range(repeats + 1):  # the first is a warm-up
    t0 = time.perf_counter()
    opt.zero_grad()
    f = F.adaptive_avg_pool2d(tail(x), 1).flatten(1)
    loss = ((f - centre) ** 2).mean()
    t1 = time.perf_counter()
    loss.backward()
    t2 = time.perf_counter()
    nn.utils.clip_grad_norm_(tail.parameters(), 1e-3)
    opt.step()
    t3 = time.perf_counter()
    if r == 0:
        continue
    for k, v in (("step", t3 - t0), ("forward", t1 - t0), ("backward", t2 - t1), ("optimiser", t3 - t2)):
        best[k] = min(best[k], v)
print(json.dumps({"seconds": best, "torch": torch.__version__}))

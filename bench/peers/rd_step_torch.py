"""PyTorch peer for bench/rd-step.mjs: one Reverse Distillation training step (the original
main.py's: BN_layer + de_resnet in train mode, loss_function, backward, Adam(0.005, (0.5, 0.999)))
on a fixed batch of random teacher taps, float32 eager (Debian python3-torch 1.13).

    /usr/bin/python3 bench/peers/rd_step_torch.py KIND THREADS SIZE BATCH STEPS
KIND: resnet18 | resnet50 | wide_resnet50_2 (resnet50 is also the resnet50_v2 student). One
warm-up step, then STEPS timed steps, split into forward (student), loss, backward and Adam.
Prints one JSON line of per-step seconds.
"""
import json
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "test", "fixtures", "rd"))
from make_fixtures import Student, loss_function  # noqa: E402


def main():
    kind, threads, size, batch, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    e = 1 if kind == "resnet18" else 4
    taps = [torch.rand(batch, (64 << i) * e, size // (4 << i), size // (4 << i)) for i in range(3)]
    m = Student(kind)
    m.train()
    opt = torch.optim.Adam(list(m.bn.parameters()) + list(m.decoder.parameters()), lr=0.005, betas=(0.5, 0.999))
    rows = []
    for s in range(steps + 1):
        t0 = time.perf_counter()
        out = m(taps)
        t1 = time.perf_counter()
        loss = loss_function(taps, out)
        t2 = time.perf_counter()
        opt.zero_grad()
        loss.backward()
        t3 = time.perf_counter()
        opt.step()
        t4 = time.perf_counter()
        if s > 0:
            rows.append({"step": t4 - t0, "forward": t1 - t0, "loss": t2 - t1, "backward": t3 - t2, "adam": t4 - t3})
    print(json.dumps(rows))


if __name__ == "__main__":
    main()

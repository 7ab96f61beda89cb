#!/usr/bin/env python3
"""CPU training-step time: silt (tch, `silt bench step`) vs PyTorch eager, same model, batch,
threads and update (forward, ReLU + linear head, cross-entropy, backward, SGD momentum 0.9,
wd 1e-4), one after the other in one run.

With --precision bf16 both sides run forward and loss under autocast in bfloat16
(`silt bench step --precision bf16`, `torch.autocast("cpu", torch.bfloat16)`).

usage: $SILT_PYTHON benches/train_step_compare.py [--threads N] [--steps N] [--precision fp32|bf16]
       (after ops/setup; runs ops/silt, or the binary named by $SILT_BIN)
Prints one line per configuration and the ratio silt time / PyTorch time (goal <= 1.05).
"""
import argparse
import json
import os
import subprocess
import time

import torch
import torchvision

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = [("resnet18", 32, 64), ("resnet50", 16, 64), ("resnet18", 64, 32)]


def torch_step_times(arch, batch, size, steps, warmup, precision, classes=1000):
    torch.manual_seed(0)
    trunk = getattr(torchvision.models, arch)()
    dim = trunk.fc.in_features
    trunk.fc = torch.nn.Identity()
    head = torch.nn.Linear(dim, classes)
    params = list(trunk.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(classes, (batch,))
    trunk.train()
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = torch.nn.functional.cross_entropy(head(torch.relu(trunk(x))), y)
        loss.backward()
        opt.step()
        loss.item()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"threads {a.threads}, torch {torch.__version__}, {a.precision}, median of {a.steps} steps after {a.warmup} warm-up")
    for arch, batch, size in CONFIGS:
        silt = os.environ.get("SILT_BIN", os.path.join(ROOT, "ops/silt"))
        out = subprocess.run([silt, "bench", "step", "--arch", arch, "--batch", str(batch), "--size", str(size),
                              "--steps", str(a.steps), "--warmup", str(a.warmup), "--threads", str(a.threads), "--precision", a.precision, "--json"],
                             check=True, capture_output=True, text=True).stdout
        silt = json.loads(out.strip().splitlines()[-1])["median_s"]
        pt = torch_step_times(arch, batch, size, a.steps, a.warmup, a.precision)
        print(f"{arch:9s} batch {batch:3d} {size}px: silt {silt * 1e3:7.1f} ms  PyTorch eager {pt * 1e3:7.1f} ms  "
              f"silt/PyTorch time {silt / pt:.3f}")


if __name__ == "__main__":
    main()

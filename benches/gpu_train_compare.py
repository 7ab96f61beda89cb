#!/usr/bin/env python3
"""The peer of `silt train --method rotnet --decode gpu` for issue 10's end-to-end figure: PyTorch
eager training fed by torchvision's ImageFolder + DataLoader (CPU decode and augmentation in
`--workers` processes), the same step as silt's RotNet: ResNet-50, RandomResizedCrop(224) + flip,
the four rotations of every image (batch B samples -> 4B images), a 4-way linear head, SGD
momentum 0.9, optional bf16 autocast. Prints images/s (4B per step) and the GPU busy fraction
sampled through NVML while it trains.

usage: python3 benches/gpu_train_compare.py FOLDER [--arch resnet50] [--batch 64] [--steps 30] [--workers N]
       [--precision fp32|bf16]       (FOLDER: an ImageFolder tree, e.g. class/x.jpg)
"""
import argparse
import os
import threading
import time

import torch
import torchvision
from torchvision import transforms


def gpu_busy(stop, samples):
    try:
        import pynvml

        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(0)
        while not stop.is_set():
            samples.append(pynvml.nvmlDeviceGetUtilizationRates(h).gpu)
            time.sleep(0.1)
    except Exception as e:  # no NVML (CPU machine): no busy figure
        print(f"(no GPU busy fraction: {e})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("folder")
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    a = ap.parse_args()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tf = transforms.Compose([
        transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
        transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ])
    ds = torchvision.datasets.ImageFolder(a.folder, tf)
    sampler = torch.utils.data.RandomSampler(ds, replacement=True, num_samples=(a.steps + a.warmup) * a.batch)
    dl = torch.utils.data.DataLoader(ds, batch_size=a.batch, sampler=sampler, num_workers=a.workers,
                                     pin_memory=dev.type == "cuda", drop_last=True, persistent_workers=a.workers > 0)
    trunk = getattr(torchvision.models, a.arch)()
    dim = trunk.fc.in_features
    trunk.fc = torch.nn.Identity()
    head = torch.nn.Linear(dim, 4)
    trunk.to(dev).train()
    head.to(dev)
    opt = torch.optim.SGD(list(trunk.parameters()) + list(head.parameters()), lr=0.01, momentum=0.9, weight_decay=5e-4)
    stop, samples = threading.Event(), []
    t0, done = None, 0
    for step, (x, _) in enumerate(dl):
        if step == a.warmup:
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            threading.Thread(target=gpu_busy, args=(stop, samples), daemon=True).start()
        x = x.to(dev, non_blocking=True)
        x = torch.cat([torch.rot90(x, k, (2, 3)) for k in range(4)])
        y = torch.arange(4, device=dev).repeat_interleave(a.batch)
        opt.zero_grad()
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.precision == "bf16"):
            loss = torch.nn.functional.cross_entropy(head(torch.relu(trunk(x))), y)
        loss.backward()
        opt.step()
        if step >= a.warmup:
            done += 1
    if dev.type == "cuda":
        torch.cuda.synchronize()
    secs = time.perf_counter() - t0
    stop.set()
    busy = sum(samples) / len(samples) if samples else float("nan")
    print(f"torchvision DataLoader ({a.workers} workers) + PyTorch eager, RotNet step, {a.precision}: "
          f"{done * 4 * a.batch / secs:.1f} images/s ({a.arch}), GPU busy {busy:.1f}% ({len(samples)} samples)")


if __name__ == "__main__":
    main()

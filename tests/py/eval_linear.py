"""Oracle for tests/eval_linear.rs: the same linear probe in plain PyTorch.

Reads x_train/y_train/x_test/y_test, the initial weight w0 [C, D] and the per-epoch visiting
orders [epochs, N] from .npy files in --dir (written by the Rust test), then trains
nn.Linear(D, C) (weight = w0, bias = 0) with F.cross_entropy and torch.optim.SGD (momentum,
weight decay), setting the learning rate before every step from the schedule:
bottou lr0 / sqrt(1 + lr0 * wd * t), cosine lr0 * 0.5 * (1 + cos(pi * t / T)), constant.
Feature normalisation: none | standardize (train mean / biased var, eps 1e-5) |
batchnorm (nn.BatchNorm1d(affine=False): train mode while training, eval mode for the test set).

Writes w.npy and b.npy to --dir and prints one JSON object: epoch_loss, top1, top5, predictions.
"""
import argparse
import json
import math
import os

import numpy as np
import torch
import torch.nn.functional as F


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--bs", type=int, required=True)
    p.add_argument("--lr", type=float, required=True)
    p.add_argument("--wd", type=float, required=True)
    p.add_argument("--momentum", type=float, required=True)
    p.add_argument("--schedule", choices=["constant", "bottou", "cosine"], required=True)
    p.add_argument("--norm", choices=["none", "standardize", "batchnorm"], required=True)
    a = p.parse_args()
    ld = lambda name: torch.from_numpy(np.load(os.path.join(a.dir, name + ".npy")))
    x, y, xt, yt, w0, orders = ld("x_train"), ld("y_train"), ld("x_test"), ld("y_test"), ld("w0"), ld("orders")
    n, d = x.shape
    c = w0.shape[0]

    bn = None
    if a.norm == "standardize":
        mu = x.mean(0, keepdim=True)
        var = x.var(0, unbiased=False, keepdim=True)
        x = (x - mu) / torch.sqrt(var + 1e-5)
        xt = (xt - mu) / torch.sqrt(var + 1e-5)
    elif a.norm == "batchnorm":
        bn = torch.nn.BatchNorm1d(d, affine=False, eps=1e-5, momentum=0.1)

    lin = torch.nn.Linear(d, c)
    with torch.no_grad():
        lin.weight.copy_(w0)
        lin.bias.zero_()
    opt = torch.optim.SGD(lin.parameters(), lr=a.lr, momentum=a.momentum, weight_decay=a.wd)
    per_epoch = (n + a.bs - 1) // a.bs
    total = per_epoch * a.epochs

    def lr_at(t):
        if a.schedule == "bottou":
            return a.lr / math.sqrt(1 + a.lr * a.wd * t)
        if a.schedule == "cosine":
            return a.lr * 0.5 * (1 + math.cos(math.pi * t / total))
        return a.lr

    t = 0
    losses = []
    for e in range(a.epochs):
        order = orders[e]
        tot = 0.0
        for s in range(0, n, a.bs):
            idx = order[s:s + a.bs]
            xb, yb = x[idx], y[idx]
            if bn is not None:
                bn.train()
                xb = bn(xb)
            loss = F.cross_entropy(lin(xb), yb)
            opt.zero_grad()
            loss.backward()
            for g in opt.param_groups:
                g["lr"] = lr_at(t)
            opt.step()
            tot += loss.item() * len(idx)
            t += 1
        losses.append(tot / n)

    with torch.no_grad():
        if bn is not None:
            bn.eval()
            xt = bn(xt)
        logits = lin(xt)
        top = logits.topk(min(5, c), dim=1).indices
        top1 = (top[:, 0] == yt).double().mean().item()
        top5 = (top == yt[:, None]).any(dim=1).double().mean().item()
    np.save(os.path.join(a.dir, "w.npy"), lin.weight.detach().numpy())
    np.save(os.path.join(a.dir, "b.npy"), lin.bias.detach().numpy())
    print(json.dumps({"epoch_loss": losses, "top1": top1, "top5": top5, "predictions": top[:, 0].tolist()}))


if __name__ == "__main__":
    main()

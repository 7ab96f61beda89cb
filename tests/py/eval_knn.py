"""Oracle for tests/eval_knn.rs: the InstDisc / MoCo weighted kNN classifier written plainly with
torch on the full similarity matrix (no chunking), on raw Fashion-MNIST pixels read from the IDX
files.

    sim = normalize(test) @ normalize(train).T;  (s, j) = topk(sim, k)
    score[c] = sum over neighbours of class c of exp(s / T);  pred = argmax score

Prints one JSON object: top1, top5, predictions and every row's class scores.
"""
import argparse
import json
import os

import numpy as np
import torch


def idx(path):
    with open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(data, prefix, n):
    x = idx(os.path.join(data, f"{prefix}-images-idx3-ubyte"))[:n]
    y = idx(os.path.join(data, f"{prefix}-labels-idx1-ubyte"))[:n]
    return x.reshape(len(x), -1).astype(np.float32) / np.float32(255.0), y.astype(np.int64)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--train", type=int, required=True)
    p.add_argument("--test", type=int, required=True)
    p.add_argument("--k", type=int, default=200)
    p.add_argument("--t", type=float, default=0.07)
    p.add_argument("--classes", type=int, default=10)
    a = p.parse_args()

    xtr, ytr = load(a.data, "train", a.train)
    xte, yte = load(a.data, "t10k", a.test)
    ftr = torch.nn.functional.normalize(torch.from_numpy(xtr), dim=1)
    fte = torch.nn.functional.normalize(torch.from_numpy(xte), dim=1)
    ytr, yte = torch.from_numpy(ytr), torch.from_numpy(yte)

    sim = fte @ ftr.T
    s, j = sim.topk(min(a.k, len(ftr)), dim=1, largest=True, sorted=True)
    w = (s / a.t).exp()
    scores = torch.zeros(len(fte), a.classes).scatter_add_(1, ytr[j], w)
    top = scores.topk(min(5, a.classes), dim=1).indices
    pred = top[:, 0]
    top1 = (pred == yte).double().mean().item()
    top5 = (top == yte[:, None]).any(dim=1).double().mean().item()
    print(json.dumps({"top1": top1, "top5": top5, "predictions": pred.tolist(), "scores": scores.tolist()}))


if __name__ == "__main__":
    main()

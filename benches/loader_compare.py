#!/usr/bin/env python3
"""Side-by-side loader benchmark on the same real photos, in one run.

  silt loader bench            (decode with DCT scaling + augment, uint8 NCHW batches)
  torchvision ImageFolder + DataLoader with the same augmentation (PIL, num_workers = W)
  libjpeg-turbo full-size decode only of the same files (`silt loader bench --decode-only`)

usage: $SILT_PYTHON benches/loader_compare.py [--silt PATH] [--photos DIR] [--workers 1]
           [--limit 600] [--presets simclr,deepcluster,swav-multicrop] [--json OUT]

Photos are split by size into `small` (< 0.6 MP, ImageNet-like) and `large` (>= 1 MP); each
set is ingested once with `silt ingest folder` into a temporary shard dataset. Prints a table
and the ratios silt / torchvision and silt / decode-only, per worker (= per core).
"""
import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import torch
import torchvision.transforms as T
from torch.utils.data import DataLoader, RandomSampler
from torchvision.datasets import ImageFolder

# torchvision twins of silt's presets (src/loader/presets.rs).
STRONG = [T.RandomApply([T.ColorJitter(0.8, 0.8, 0.8, 0.2)], p=0.8), T.RandomGrayscale(0.2)]


def blur(size):
    k = int(size * 0.1)
    k = k + 1 if k % 2 == 0 else k
    return T.RandomApply([T.GaussianBlur(k, (0.1, 2.0))], p=0.5)


def rrc(size, scale):
    return [T.RandomResizedCrop(size, scale=scale), T.RandomHorizontalFlip()]


TORCHVISION = {
    "deepcluster": [(1, T.Compose(rrc(224, (0.08, 1.0)) + [T.PILToTensor()]))],
    "simclr": [(2, T.Compose(rrc(224, (0.08, 1.0)) + STRONG + [blur(224), T.PILToTensor()]))],
    "swav-multicrop": [
        (2, T.Compose(rrc(224, (0.14, 1.0)) + STRONG + [blur(224), T.PILToTensor()])),
        (6, T.Compose(rrc(96, (0.05, 0.14)) + STRONG + [blur(96), T.PILToTensor()])),
    ],
    "eval": [(1, T.Compose([T.Resize(256), T.CenterCrop(224), T.PILToTensor()]))],
}


class Views:
    def __init__(self, spec):
        self.spec = spec

    def __call__(self, img):
        return [t(img) for n, t in self.spec for _ in range(n)]


def worker_init(_):
    torch.set_num_threads(1)


def torchvision_rate(root, preset, workers, limit, batch):
    ds = ImageFolder(root, transform=Views(TORCHVISION[preset]))
    sampler = RandomSampler(ds, num_samples=limit)
    dl = DataLoader(ds, batch_size=batch, sampler=sampler, num_workers=workers, worker_init_fn=worker_init, persistent_workers=False)
    t0 = time.perf_counter()
    n = 0
    for views, _ in dl:
        n += views[0].shape[0]
    return n / (time.perf_counter() - t0)


def silt_bench(silt, shards, args):
    out = subprocess.run([silt, "loader", "bench", "--shards", shards, "--json"] + args, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    home = os.environ.get("SILT_HOME", os.path.expanduser("~/.cache/silt"))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--silt", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(home, "target")), "release", "silt"))
    ap.add_argument("--photos", default=os.path.join(home, "data", "photos"))
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--limit", type=int, default=600)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--presets", default="simclr,deepcluster,swav-multicrop")
    ap.add_argument("--sets", default="small,large")
    ap.add_argument("--json", help="write all figures to this file")
    a = ap.parse_args()

    rows = list(csv.DictReader(open(os.path.join(a.photos, "photos.tsv")), delimiter="\t"))
    sets = {
        "small": [r for r in rows if int(r["width"]) * int(r["height"]) < 600_000],
        "large": [r for r in rows if int(r["width"]) * int(r["height"]) >= 1_000_000],
    }
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.sets.split(","):
            files = sets[name]
            root = os.path.join(tmp, name, "images")
            for r in files:
                d = os.path.join(root, r["source_package"])
                os.makedirs(d, exist_ok=True)
                src, dst = os.path.join(a.photos, r["file"]), os.path.join(d, r["file"])
                try:
                    os.link(src, dst)  # ingest refuses symlinks that leave the tree
                except OSError:
                    shutil.copyfile(src, dst)
            shards = os.path.join(tmp, name, "shards")
            subprocess.run([a.silt, "ingest", "folder", root, "--out", shards], check=True, capture_output=True)
            mp = sum(int(r["width"]) * int(r["height"]) for r in files) / len(files) / 1e6
            common = ["--workers", str(a.workers), "--limit-images", str(a.limit), "--batch", str(a.batch)]
            dec = silt_bench(a.silt, shards, common + ["--decode-only"])
            for preset in a.presets.split(","):
                s = silt_bench(a.silt, shards, common + ["--preset", preset])
                tv = torchvision_rate(root, preset, a.workers, a.limit, a.batch)
                res = {
                    "set": name, "files": len(files), "mean_megapixels": round(mp, 2), "preset": preset, "workers": a.workers,
                    "silt_images_per_sec": s["images_per_sec"], "torchvision_images_per_sec": tv,
                    "decode_only_images_per_sec": dec["images_per_sec"],
                    "silt_vs_torchvision": s["images_per_sec"] / tv,
                    "silt_vs_decode_only": s["images_per_sec"] / dec["images_per_sec"],
                    "silt_stage_ms_per_image": s["stage_ms_per_image"],
                }
                results.append(res)
                print(f"{name:5} ({len(files)} files, {mp:.2f} MP) {preset:15} workers={a.workers}: silt {s['images_per_sec']:8.1f}/s  "
                      f"torchvision {tv:8.1f}/s  decode-only {dec['images_per_sec']:8.1f}/s  "
                      f"-> x{res['silt_vs_torchvision']:.2f} vs torchvision, x{res['silt_vs_decode_only']:.2f} vs decode-only", flush=True)
    if a.json:
        json.dump(results, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    sys.exit(main())

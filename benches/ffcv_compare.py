#!/usr/bin/env python3
"""silt's loader vs FFCV's on the same real photos, in one run.

  silt loader bench --preset deepcluster     RandomResizedCrop(224) + flip, uint8 NCHW batches,
                                              from shards that keep the original JPEG bytes, and
                                              from shards of decoded pixels (`ingest --store-raw`)
  FFCV Loader                                 RandomResizedCropRGBImageDecoder((224, 224)) +
                                              RandomHorizontalFlip + ToTensor + ToTorchImage
                                              (uint8 NCHW), from a .beton written by FFCV's
                                              DatasetWriter: `jpg` (FFCV re-encodes every
                                              image at quality 90) and `raw` (decoded pixels
                                              stored: no decode when loading, FFCV's fastest)

Both sides use W threads (silt: decode workers; FFCV: num_workers, its numba-compiled threads),
random order, batch B; FFCV's first epoch (numba compilation) is not timed. The silt shards are
`silt ingest folder` of the photos; the .beton of the same files (max_resolution unset).

FFCV is not in ops/setup (it builds against OpenCV): install it into the venv first with
    apt-get install -y libopencv-dev pkg-config libturbojpeg0-dev
    $SILT_PYTHON -m pip install ffcv numba
usage: $SILT_PYTHON benches/ffcv_compare.py [--photos DIR] [--workers 1,2] [--limit 2000] [--batch 32]
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

import numpy as np
from PIL import Image


def silt_rate(silt, shards, workers, limit, batch):
    out = subprocess.run([silt, "loader", "bench", "--shards", shards, "--json", "--preset", "deepcluster",
                          "--workers", str(workers), "--limit-images", str(limit), "--batch", str(batch)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["images_per_sec"]


class Photos:
    """The photos as FFCV's DatasetWriter wants them: (RGB PIL image, label)."""

    def __init__(self, files):
        self.files = files

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        return Image.open(self.files[i]).convert("RGB"), 0


def write_beton(files, path, mode, workers):
    from ffcv.fields import IntField, RGBImageField
    from ffcv.writer import DatasetWriter
    fields = {"image": RGBImageField(write_mode=mode, jpeg_quality=90), "label": IntField()}
    DatasetWriter(path, fields, num_workers=workers).from_indexed_dataset(Photos(files))


# FFCV's loaders stay referenced until the process leaves: numba's dispatcher finalizers raise
# KeyErrors when a compiled pipeline is collected (noise on stderr, nothing wrong with the run)
_LOADERS = []


def ffcv_rate(path, workers, limit, batch):
    import torch
    from ffcv.fields.decoders import IntDecoder, RandomResizedCropRGBImageDecoder
    from ffcv.loader import Loader, OrderOption
    from ffcv.transforms import RandomHorizontalFlip, ToTensor, ToTorchImage
    torch.set_num_threads(1)
    pipelines = {"image": [RandomResizedCropRGBImageDecoder((224, 224)), RandomHorizontalFlip(), ToTensor(), ToTorchImage()],
                 "label": [IntDecoder(), ToTensor()]}
    loader = Loader(path, batch_size=batch, num_workers=workers, order=OrderOption.RANDOM, os_cache=True,
                    drop_last=False, pipelines=pipelines)
    _LOADERS.append(loader)
    for _ in loader:  # first epoch: numba compiles the pipeline
        pass
    n, t0 = 0, time.perf_counter()
    while n < limit:
        for images, _ in loader:
            assert images.dtype == torch.uint8 and images.shape[1:] == (3, 224, 224)
            n += images.shape[0]
    return n / (time.perf_counter() - t0)


def main():
    home = os.environ.get("SILT_HOME", os.path.expanduser("~/.cache/silt"))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--silt", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(home, "target")), "release", "silt"))
    ap.add_argument("--photos", default=os.path.join(home, "data", "photos"))
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--limit", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--max-megapixels", type=float, default=0.6, help="photos below this size (ImageNet-like)")
    ap.add_argument("--json", help="write the figures to this file")
    a = ap.parse_args()

    rows = list(csv.DictReader(open(os.path.join(a.photos, "photos.tsv")), delimiter="\t"))
    rows = [r for r in rows if int(r["width"]) * int(r["height"]) < a.max_megapixels * 1e6]
    mp = sum(int(r["width"]) * int(r["height"]) for r in rows) / len(rows) / 1e6
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "images")
        os.makedirs(root)
        files = []
        for r in rows:
            dst = os.path.join(root, r["file"])
            try:
                os.link(os.path.join(a.photos, r["file"]), dst)
            except OSError:
                shutil.copyfile(os.path.join(a.photos, r["file"]), dst)
            files.append(dst)
        shards = os.path.join(tmp, "shards")
        subprocess.run([a.silt, "ingest", "folder", root, "--out", shards], check=True, capture_output=True)
        shards_raw = os.path.join(tmp, "shards-raw")
        subprocess.run([a.silt, "ingest", "folder", root, "--out", shards_raw, "--store-raw"], check=True, capture_output=True)
        betons = {}
        for mode in ("jpg", "raw"):
            betons[mode] = os.path.join(tmp, f"photos-{mode}.beton")
            write_beton(files, betons[mode], mode, 2)
        du = lambda d: sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
        sizes = {"silt shards": du(shards), "silt raw shards": du(shards_raw),
                 **{f"ffcv {m}": os.path.getsize(p) for m, p in betons.items()}}
        print(f"{len(files)} photos, mean {mp:.2f} MP; bytes on disk: " + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in sizes.items()))
        for w in (int(x) for x in a.workers.split(",")):
            s = silt_rate(a.silt, shards, w, a.limit, a.batch)
            s_raw = silt_rate(a.silt, shards_raw, w, a.limit, a.batch)
            f = {m: ffcv_rate(p, w, a.limit, a.batch) for m, p in betons.items()}
            res = {"workers": w, "files": len(files), "mean_megapixels": round(mp, 3), "silt_images_per_sec": s,
                   "ffcv_jpg_images_per_sec": f["jpg"], "ffcv_raw_images_per_sec": f["raw"],
                   "silt_raw_images_per_sec": s_raw, "silt_vs_ffcv_jpg": s / f["jpg"], "silt_vs_ffcv_raw": s / f["raw"],
                   "silt_raw_vs_ffcv_raw": s_raw / f["raw"], "bytes": sizes}
            results.append(res)
            print(f"workers={w}: silt {s:8.1f}/s  ffcv-jpg {f['jpg']:8.1f}/s  silt-raw {s_raw:8.1f}/s  ffcv-raw {f['raw']:8.1f}/s  "
                  f"-> x{res['silt_vs_ffcv_jpg']:.2f} vs FFCV jpg; raw: x{res['silt_raw_vs_ffcv_raw']:.2f} vs FFCV raw", flush=True)
    if a.json:
        json.dump(results, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)  # without running the finalizers (see _LOADERS)

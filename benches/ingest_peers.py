"""The Python shard writers silt's ingest is compared with, doing the same work on the same files:
read each image, check its header (PIL, lazy: no pixel decode), and pack it.

usage: ingest_peers.py {wds|mds|pillow-resize} SRC_DIR OUT_DIR   -> one JSON line {images, seconds}
  wds            webdataset.ShardWriter (tar shards, 256 MB)
  mds            streaming.MDSWriter (MosaicML MDS shards, 256 MB, no compression)
  pillow-resize  Pillow: decode, resize shorter side to 256 (bilinear, antialiased), JPEG q=90,
                 one process (the per-core rate). Images whose shorter side is already <= 256
                 are written as they are, as silt keeps them.
  pillow-draft   the same with `Image.draft` first (libjpeg's scaled DCT, as silt decodes): what
                 a Pillow expert would write
"""
import io
import json
import os
import sys
import time

from PIL import Image

EXTS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")


def files(src):
    out = []
    for dp, _, fn in os.walk(src):
        out += [os.path.join(dp, f) for f in fn if f.lower().endswith(EXTS)]
    return sorted(out)


def header_ok(data):
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size[0] > 0 and im.size[1] > 0
    except Exception:
        return False


def run_wds(paths, out):
    import webdataset as wds
    n = 0
    with wds.ShardWriter(os.path.join(out, "shard-%06d.tar"), maxsize=256 << 20, verbose=0) as w:
        for i, p in enumerate(paths):
            data = open(p, "rb").read()
            if header_ok(data):
                w.write({"__key__": f"{i:09d}", "jpg": data, "cls": 0})
                n += 1
    return n


def run_mds(paths, out):
    from streaming import MDSWriter
    n = 0
    cols = {"image": "bytes", "key": "str", "label": "int"}
    with MDSWriter(out=out, columns=cols, size_limit=256 << 20, compression=None) as w:
        for p in paths:
            data = open(p, "rb").read()
            if header_ok(data):
                w.write({"image": data, "key": os.path.basename(p), "label": 0})
                n += 1
    return n


def run_pillow_resize(paths, out, draft=False):
    n = 0
    for i, p in enumerate(paths):
        with open(p, "rb") as f:
            data = f.read()
        try:
            im = Image.open(io.BytesIO(data))
            w, h = im.size
        except Exception:
            continue  # not an image: silt quarantines it
        n += 1
        if min(w, h) <= 256:
            with open(os.path.join(out, f"{i:06d}.img"), "wb") as f:
                f.write(data)
            continue
        s = 256 / min(w, h)
        size = (max(1, round(w * s)), max(1, round(h * s)))
        if draft:
            im.draft("RGB", size)
        im = im.convert("RGB")
        im = im.resize(size, Image.BILINEAR, reducing_gap=None)
        im.save(os.path.join(out, f"{i:06d}.jpg"), quality=90)
    return n


if __name__ == "__main__":
    mode, src, out = sys.argv[1:4]
    os.makedirs(out, exist_ok=True)
    paths = files(src)
    t = time.perf_counter()
    runs = {"wds": run_wds, "mds": run_mds, "pillow-resize": run_pillow_resize,
            "pillow-draft": lambda p, o: run_pillow_resize(p, o, draft=True)}
    n = runs[mode](paths, out)
    print(json.dumps({"tool": mode, "images": n, "seconds": time.perf_counter() - t}))

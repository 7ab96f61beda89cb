"""Reference outputs from the venv's torchvision for silt's loader tests.

usage: torchvision_ref.py rrc IN.json OUT.json     crop boxes from RandomResizedCrop.get_params
                                                   with the random draws replayed from IN
       torchvision_ref.py ops DIR                  DIR/cases.json: pixel ops on DIR/<name>.bin
                                                   (HWC uint8); writes DIR/<name>.out.bin
"""
import json
import math
import os
import sys

import numpy as np
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as F
from PIL import Image


class Replay:
    def __init__(self, values):
        self.values, self.pos = values, 0

    def unit(self):
        v = self.values[min(self.pos, len(self.values) - 1)]
        self.pos += 1
        return v


def rrc(inp, out):
    cases = json.load(open(inp))
    boxes = []
    real_empty, real_randint = torch.empty, torch.randint
    for c in cases:
        draws = Replay(c["draws"])

        class Fake:
            def uniform_(self, lo, hi):
                lo, hi = float(lo), float(hi)
                return torch.tensor([lo + draws.unit() * (hi - lo)], dtype=torch.float32)

        def fake_empty(*a, **k):
            return Fake()

        def fake_randint(lo, hi, size):
            n = hi - lo
            return torch.tensor([lo + min(int(draws.unit() * n), n - 1)])

        torch.empty, torch.randint = fake_empty, fake_randint
        try:
            img = Image.new("RGB", (c["w"], c["h"]))
            i, j, h, w = T.RandomResizedCrop.get_params(img, tuple(c["scale"]), tuple(c["ratio"]))
        finally:
            torch.empty, torch.randint = real_empty, real_randint
        boxes.append([int(i), int(j), int(h), int(w)])
    json.dump(boxes, open(out, "w"))


def ops(d):
    cases = json.load(open(os.path.join(d, "cases.json")))
    for c in cases:
        raw = np.fromfile(os.path.join(d, c["file"]), dtype=np.uint8).reshape(c["h"], c["w"], 3)
        t = torch.from_numpy(raw.copy()).permute(2, 0, 1).contiguous()
        op, a = c["op"], c.get("args", [])
        if op == "brightness":
            r = F.adjust_brightness(t, a[0])
        elif op == "contrast":
            r = F.adjust_contrast(t, a[0])
        elif op == "saturation":
            r = F.adjust_saturation(t, a[0])
        elif op == "hue":
            r = F.adjust_hue(t, a[0])
        elif op == "gray":
            r = F.rgb_to_grayscale(t, num_output_channels=3)
        elif op == "blur":
            r = F.gaussian_blur(t, [int(a[0]), int(a[0])], [a[1], a[1]])
        elif op == "hflip":
            r = F.hflip(t)
        elif op == "rot90":
            r = torch.from_numpy(np.ascontiguousarray(np.rot90(raw, int(a[0])))).permute(2, 0, 1)
        elif op == "resized_crop":  # PIL path, as ImageFolder + transforms uses it
            i, j, h, w, size = (int(x) for x in a)
            pil = F.resized_crop(Image.fromarray(raw), i, j, h, w, [size, size], T.InterpolationMode.BILINEAR)
            r = torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1)
        elif op == "eval_crop":  # Resize(256) + CenterCrop(224) on PIL
            pil = F.center_crop(F.resize(Image.fromarray(raw), int(a[0])), int(a[1]))
            r = torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1)
        else:
            raise SystemExit(f"unknown op {op}")
        r.permute(1, 2, 0).contiguous().numpy().astype(np.uint8).tofile(os.path.join(d, c["file"] + "." + c["name"] + ".out"))


if __name__ == "__main__":
    if sys.argv[1] == "rrc":
        rrc(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "ops":
        ops(sys.argv[2])
    else:
        raise SystemExit(__doc__)

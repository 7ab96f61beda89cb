"""Oracle for tests/model_torchvision.rs: silt's networks against torchvision / DeepCluster.

    model_torchvision.py check DIR   load silt's exports DIR/<case>.weights.safetensors into the
                                     PyTorch models with load_state_dict(strict=True), run
                                     DIR/<case>.io.safetensors' input, print the max abs diffs
    model_torchvision.py make DIR    write random PyTorch weights (heads included) and the
                                     reference outputs for silt to import and reproduce

DIR/cases.json lists the cases: {name, arch, sobel, cifar_stem, batch, size, seed}. The last
stdout line is JSON. Safetensors are read and written here with a few lines of numpy (the file
format is 8-byte header length, JSON header, raw little-endian data), so the venv needs no
`safetensors` package.
"""

import json
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torchvision

DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "F16": np.float16}
NAMES = {torch.float32: "F32", torch.float64: "F64", torch.int64: "I64", torch.float16: "F16"}


def st_read(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        s, e = info["data_offsets"]
        arr = np.frombuffer(data[base + s : base + e], dtype=DTYPES[info["dtype"]]).reshape(info["shape"])
        out[name] = torch.from_numpy(arr.copy())
    return out


def st_write(path, tensors):
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        b = t.numpy().tobytes()
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)


def sobel_module():
    # DeepCluster models/alexnet.py, verbatim values.
    grayscale = nn.Conv2d(3, 1, kernel_size=1, stride=1, padding=0)
    grayscale.weight.data.fill_(1.0 / 3.0)
    grayscale.bias.data.zero_()
    sobel_filter = nn.Conv2d(1, 2, kernel_size=3, stride=1, padding=1)
    sobel_filter.weight.data[0, 0].copy_(torch.FloatTensor([[1, 0, -1], [2, 0, -2], [1, 0, -1]]))
    sobel_filter.weight.data[1, 0].copy_(torch.FloatTensor([[1, 2, 1], [0, 0, 0], [-1, -2, -1]]))
    sobel_filter.bias.data.zero_()
    s = nn.Sequential(grayscale, sobel_filter)
    for p in s.parameters():
        p.requires_grad = False
    return s


class DCAlexNet(nn.Module):
    """DeepCluster's AlexNet (models/alexnet.py) with bn=True."""

    CFG = [(96, 11, 4, 2), "M", (256, 5, 1, 2), "M", (384, 3, 1, 1), (384, 3, 1, 1), (256, 3, 1, 1), "M"]

    def __init__(self, sobel, num_classes=1000):
        super().__init__()
        layers, c = [], 2 if sobel else 3
        for v in self.CFG:
            if v == "M":
                layers += [nn.MaxPool2d(kernel_size=3, stride=2)]
            else:
                layers += [nn.Conv2d(c, v[0], kernel_size=v[1], stride=v[2], padding=v[3]), nn.BatchNorm2d(v[0]), nn.ReLU(inplace=True)]
                c = v[0]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
            nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(inplace=True))
        self.top_layer = nn.Linear(4096, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                m.weight.data.normal_(0, (2.0 / n) ** 0.5)
                m.bias.data.zero_()
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.data.fill_(1)
                m.bias.data.zero_()
            elif isinstance(m, nn.Linear):
                m.weight.data.normal_(0, 0.01)
                m.bias.data.zero_()
        self.sobel = sobel_module() if sobel else None


class Small(nn.Module):
    """silt's small CNN (src/model/small.rs)."""

    def __init__(self, sobel, num_classes=10):
        super().__init__()
        c = 2 if sobel else 3
        self.features = nn.Sequential(
            nn.Conv2d(c, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(inplace=True), nn.MaxPool2d(2, 2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(inplace=True), nn.MaxPool2d(2, 2),
            nn.Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(3))
        self.classifier = nn.Sequential(nn.Linear(128 * 9, 256))
        self.top_layer = nn.Linear(256, num_classes)
        self.sobel = sobel_module() if sobel else None


def build(case, head):
    """The PyTorch model; with head=False, the heads are removed so that its state_dict has the
    trunk's names exactly (strict loading of a silt export)."""
    arch = case["arch"]
    if arch in ("resnet18", "resnet50"):
        assert not case["sobel"], "no sobel resnet in the oracle"
        m = getattr(torchvision.models, arch)(weights=None)
        if case["cifar_stem"]:
            m.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
            m.maxpool = nn.Identity()
        if not head:
            m.fc = nn.Identity()
    elif arch == "vgg16":
        assert not case["sobel"]
        m = torchvision.models.vgg16_bn(weights=None)
        if not head:
            m.classifier = nn.Sequential(*list(m.classifier.children())[:4])
    elif arch == "alexnet":
        m = DCAlexNet(case["sobel"])
        if not head:
            m.top_layer = None
    elif arch == "small":
        m = Small(case["sobel"])
        if not head:
            m.top_layer = None
    else:
        raise ValueError(arch)
    return m


def trunk(m, arch, x):
    """(trunk output, [conv outputs]) with silt's conventions (src/model/mod.rs)."""
    convs = []
    if arch in ("resnet18", "resnet50"):
        x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        convs.append(x.clone())
        for layer in (m.layer1, m.layer2, m.layer3, m.layer4):
            x = layer(x)
            convs.append(x.clone())
        return torch.flatten(m.avgpool(x), 1), convs
    if getattr(m, "sobel", None) is not None:
        x = m.sobel(x)
    for mod in m.features:
        x = mod(x)
        if isinstance(mod, nn.ReLU):
            convs.append(x.clone())
    if arch == "vgg16":
        x = torch.flatten(m.avgpool(x), 1)
        x = nn.Sequential(*list(m.classifier.children())[:4])(x)
    elif arch == "alexnet":
        x = x.view(x.size(0), 256 * 6 * 6)
        x = m.classifier[:5](x)  # stop before DC's last ReLU: pre-ReLU fc7
    else:
        x = m.classifier[0](torch.flatten(x, 1))
    return x, convs


def outputs(m, case, x):
    """The io tensors: eval output and conv outputs; without dropout also the train-mode output
    (which updates the BN running statistics) and the eval output after it."""
    arch = case["arch"]
    res = {}
    m.eval()
    with torch.no_grad():
        out, convs = trunk(m, arch, x)
        res["eval"] = out
        for i, c in enumerate(convs):
            res[f"conv.{i}"] = c
        if arch not in ("alexnet", "vgg16"):
            m.train()
            res["train"] = trunk(m, arch, x)[0]
            m.eval()
            res["eval_after_train"] = trunk(m, arch, x)[0]
    return res


def randomise_bn(m, gen):
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            c = mod.num_features
            with torch.no_grad():
                mod.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                mod.bias.copy_(torch.rand(c, generator=gen) * 0.4 - 0.2)
                mod.running_mean.copy_(torch.rand(c, generator=gen) * 0.4 - 0.2)
                mod.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
                mod.num_batches_tracked.fill_(int(torch.randint(1, 1000, (1,), generator=gen)))


def check(d, cases):
    results = {}
    for case in cases:
        name = case["name"]
        weights = st_read(f"{d}/{name}.weights.safetensors")
        io = st_read(f"{d}/{name}.io.safetensors")
        m = build(case, head=False)
        m.load_state_dict(weights, strict=True)  # raises on any missing / unexpected / mis-shaped name
        ref = outputs(m, case, io["input"])
        diffs = {}
        for k, v in ref.items():
            if k not in io:
                raise KeyError(f"{name}: silt did not write {k}")
            if tuple(io[k].shape) != tuple(v.shape):
                raise ValueError(f"{name}/{k}: silt shape {tuple(io[k].shape)}, PyTorch {tuple(v.shape)}")
            diffs[k] = float((io[k].double() - v.double()).abs().max())
        results[name] = {
            "strict_load": True,
            "tensors": len(weights),
            "diffs": diffs,
            "scale": float(ref["eval"].abs().max()),
        }
    return results


def make(d, cases):
    results = {}
    for case in cases:
        name = case["name"]
        torch.manual_seed(case["seed"])
        gen = torch.Generator().manual_seed(case["seed"] + 1)
        m = build(case, head=True)
        randomise_bn(m, gen)
        st_write(f"{d}/{name}.weights.safetensors", m.state_dict())
        x = torch.randn(case["batch"], 3, case["size"], case["size"], generator=gen)
        io = outputs(m, case, x)
        io["input"] = x
        st_write(f"{d}/{name}.io.safetensors", io)
        results[name] = {"tensors": len(m.state_dict()), "scale": float(io["eval"].abs().max())}
    return results


def main():
    mode, d = sys.argv[1], sys.argv[2]
    with open(f"{d}/cases.json") as f:
        cases = json.load(f)
    res = check(d, cases) if mode == "check" else make(d, cases)
    print(json.dumps(res))


if __name__ == "__main__":
    main()

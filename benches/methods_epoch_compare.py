"""Time per training epoch of each method: silt vs a PyTorch-eager version of the same step.

    $SILT_PYTHON benches/methods_epoch_compare.py [--methods rotnet,moco-v2,simclr,instdisc,pic,deepcluster]
        [--train-n 5000] [--epochs 3] [--threads 2] [--workers 2] [--out /tmp/silt-methods-time] [--silt PATH]

For each method, one after the other: `silt train` on Fashion-MNIST shards (the first TRAIN_N
training images, ingested as benches/methods_compare.sh does), then the same training in PyTorch
eager (run as a child process of this script, so that each side starts from a fresh process).
Prints a Markdown table of seconds per epoch, a table of last-epoch losses (a sanity check that
both sides train the same thing), and writes OUT/methods_epoch_compare.json.

Seconds per epoch = the mean over the epochs after the first (the first includes warm-up and, for
InstDisc/PIC with --bank-init features, the eval pass that initialises the bank); silt's come from
the `"seconds"` of the `"kind": "epoch"` lines of its metrics.jsonl (from the start of the epoch,
including the method's begin_epoch and the loader's start, to the end of the last step; no
evaluation, checkpoints written outside it). The PyTorch side times the same span.

The same on both sides
- data: the first TRAIN_N Fashion-MNIST training images (grayscale, replicated to RGB), ImageNet
  mean/std; batch 128, reshuffled every epoch, last partial batch kept (silt: drop_last false);
- network: silt's `--arch small` (src/model/small.rs) with its init; trunk output = the 1152->256
  Linear, pre-ReLU; every head sees ReLU(trunk);
- per method, silt's step (src/method/*.rs) with benches/methods_compare.sh's flags (SILT_FLAGS
  below): heads, losses, memory bank / queue / momentum encoder, optimiser (SGD momentum,
  weight decay, Nesterov for RotNet; LARS for SimCLR as src/train/optim.rs does it: weight decay
  and trust ratio only on tensors with more than one dimension), learning-rate schedule per step;
- augmentations: silt's preset of each method at --crop 28 --min-scale 0.3 (src/loader/presets.rs,
  contrastive_pipeline: no blur for crops <= 64 px) as torchvision transforms on PIL images;
- threads: libtorch intra-op threads = --threads on both sides (`silt --threads`,
  `torch.set_num_threads`), --workers loader workers (silt: decode/augment threads; PyTorch:
  DataLoader worker processes, persistent_workers=True, default prefetch 2 per worker);
- one loss.item() per step (silt reads every step's loss too; here it also writes a metrics line
  per step, --log-every 1, for the step timestamps DeepCluster's row needs).

Not identical (and why)
- RNG streams differ (silt's counter-based per-sample streams vs torch's generator), so crops,
  initial weights and the losses' exact values differ; the amount of work per step is the same.
- silt decodes a 28x28 PNG per sample (its shards store PNGs); the PyTorch dataset holds the
  raw idx pixels in memory (torchvision's FashionMNIST does the same). silt converts uint8 to
  float and normalises on the training thread; torchvision's ToTensor/Normalize run in the
  workers.
- PyTorch's zero_grad() sets gradients to None (its default); silt zeroes them in place.
- silt re-seeds torch's generator before every step (cheap); the PyTorch side does not.
- DeepCluster (optional, `--methods deepcluster`): silt's epoch also extracts features, runs
  PCA and k-means; the PyTorch side trains on FIXED RANDOM pseudo-labels (k 100, fresh top
  layer N(0, 0.01) with momentum-free SGD every epoch, as silt) and does not cluster. Its row
  compares the training pass only, estimated the same way on both sides from the per-step
  timestamps (silt: --log-every 1 `time_s`): (t_last_step - t_first_step) * S / (S - 1) for an
  epoch of S steps. silt draws its samples uniformly over the clusters (the same count, N per
  epoch), PyTorch shuffles. Its losses are not comparable (k-means vs random labels; both start
  at ~ln 100).

Run it on an otherwise idle machine: with other work on a 2-core machine, epochs of either side
jumped between ~1x and ~4-5x their idle time from one run to the next (libtorch's OpenMP threads
wait for each other when one is descheduled). The 1-minute load average before and after is
printed and kept in the JSON, with the per-epoch times and the fastest timed epoch.
"""
import argparse
import copy
import gc
import json
import math
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision.transforms as T
from PIL import Image
from torch.utils.data import DataLoader, Dataset

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
BATCH, CROP, MIN_SCALE, SEED = 128, 28, 0.3, 31
ALL_METHODS = ["rotnet", "moco-v2", "simclr", "instdisc", "pic"]

# benches/methods_compare.sh's per-method flags (the timing runs pass no --eval-data).
SILT_FLAGS = {
    "rotnet": "--lr 0.05 --schedule constant",
    "moco-v2": "--moco-k 4096 --moco-m 0.99 --bn-splits 1 --lr 0.06",
    "simclr": "--temperature 0.5 --lars --lr 1.0",
    "instdisc": "--nce-k 0 --temperature 0.1 --lr 0.03 --bank-init features",
    "pic": "--lr 0.03 --schedule constant --mlp-hidden 512 --bank-init features",
    "deepcluster": "--k 100 --dim-pca 64 --lr 0.05",
}


# ---------------------------------------------------------------------------------------------
# silt side

def silt_env_file():
    return os.path.join(os.environ.get("SILT_HOME", os.path.expanduser("~/.cache/silt")), "env")


def in_silt_env(argv):
    """argv run after sourcing silt's env file (libtorch on LD_LIBRARY_PATH)."""
    return ["bash", "-c", 'source "$0" && exec "$@"', silt_env_file(), *argv]


def silt_var(name):
    out = subprocess.run(["bash", "-c", f'source "$0" && printf %s "${{{name}}}"', silt_env_file()], check=True, capture_output=True, text=True)
    return out.stdout


def fashion_dir():
    return os.path.join(os.environ.get("SILT_DATA") or os.path.join(silt_var("SILT_HOME"), "data"), "fashion-mnist")


def build_shards(silt, out, n):
    shards = os.path.join(out, f"fashion-train-{n}")
    if not os.path.exists(os.path.join(shards, "manifest.json")):
        fm = fashion_dir()
        subprocess.run(in_silt_env([silt, "ingest", "idx", "--images", f"{fm}/train-images-idx3-ubyte", "--labels", f"{fm}/train-labels-idx1-ubyte",
                                    "--classes", f"{fm}/classes.txt", "--limit", str(n), "--dedup", "none", "--out", shards]),
                       check=True, stdout=subprocess.DEVNULL)
    return shards


def step_estimate(times_by_epoch):
    """Training-pass seconds per epoch from per-step end times: (t_last - t_first) * S / (S - 1)."""
    return [(t[-1] - t[0]) * len(t) / (len(t) - 1) for t in times_by_epoch if len(t) > 1]


def run_silt(silt, shards, method, args):
    run_dir = os.path.join(args.out, "runs", method)
    shutil.rmtree(run_dir, ignore_errors=True)
    os.makedirs(run_dir)
    cmd = [silt, "train", shards, "--method", method, "--run-dir", run_dir, "--epochs", str(args.epochs), "--batch-size", str(BATCH),
           "--arch", "small", "--crop", str(CROP), "--min-scale", str(MIN_SCALE), "--checkpoint-every", "0", "--log-every", "1",
           "--workers", str(args.workers), "--threads", str(args.threads), "--seed", str(SEED), *SILT_FLAGS[method].split()]
    with open(os.path.join(run_dir, "silt.log"), "w") as log:
        subprocess.run(in_silt_env(cmd), check=True, stdout=log, stderr=subprocess.STDOUT)
    lines = [json.loads(l) for l in open(os.path.join(run_dir, "metrics.jsonl")) if l.strip()]
    epochs = [l for l in lines if l.get("kind") == "epoch"]
    steps = [l for l in lines if l.get("kind") == "step"]
    step_times = [[s["time_s"] for s in steps if s["epoch"] == e["epoch"]] for e in epochs]
    return {"command": " ".join(cmd), "epoch_seconds": [e["seconds"] for e in epochs], "epoch_loss": [e["loss"] for e in epochs],
            "train_pass_seconds": step_estimate(step_times)}


# ---------------------------------------------------------------------------------------------
# PyTorch side: data

def read_idx_images(path, n):
    with open(path, "rb") as f:
        magic, count, rows, cols = np.frombuffer(f.read(16), dtype=">u4")
        assert magic == 2051, f"{path}: not an IDX images file"
        n = min(n, int(count))
        return np.frombuffer(f.read(n * rows * cols), dtype=np.uint8).reshape(n, rows, cols)


class Views(Dataset):
    """(views, index): `count` independently augmented views of image `index` (PIL, RGB), or with
    `rotations` the four rotations (0/90/180/270 counter-clockwise, as silt's rotate90) of one view
    stacked as [4, 3, H, W]."""

    def __init__(self, images, transform, count=1, rotations=False):
        self.images, self.transform, self.count, self.rotations = images, transform, count, rotations

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        img = Image.fromarray(self.images[i]).convert("RGB")
        views = [self.transform(img) for _ in range(self.count)]
        if self.rotations:
            views = [torch.stack([torch.rot90(v, r, dims=(1, 2)) for r in range(4)]) for v in views]
        return views, i


def to_tensor():
    return [T.ToTensor(), T.Normalize(MEAN, STD)]


def rrc():
    return T.RandomResizedCrop(CROP, scale=(MIN_SCALE, 1.0))


# silt's presets at 28 px (blur dropped for crops <= 64 px, as contrastive_pipeline does)
def plain_view():  # deepcluster / rotnet: RRC + flip
    return T.Compose([rrc(), T.RandomHorizontalFlip(), *to_tensor()])


def moco_v1_view():  # instdisc: RRC, Gray(.2) before CJ(.4,.4,.4,.4) p 1, flip
    return T.Compose([rrc(), T.RandomHorizontalFlip(), T.RandomGrayscale(0.2), T.ColorJitter(0.4, 0.4, 0.4, 0.4), *to_tensor()])


def moco_v2_view():  # RRC, Apply(CJ(.4,.4,.4,.1), .8), Gray(.2), flip
    return T.Compose([rrc(), T.RandomHorizontalFlip(), T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), T.RandomGrayscale(0.2), *to_tensor()])


def simclr_view():  # simclr / pic: RRC, flip, Apply(CJ(.8,.8,.8,.2), .8), Gray(.2)
    return T.Compose([rrc(), T.RandomHorizontalFlip(), T.RandomApply([T.ColorJitter(0.8, 0.8, 0.8, 0.2)], p=0.8), T.RandomGrayscale(0.2), *to_tensor()])


def eval_view():  # silt's eval_pipeline(28): Resize(32) + CenterCrop(28)
    return T.Compose([T.Resize(round(CROP * 256 / 224)), T.CenterCrop(CROP), *to_tensor()])


def make_loader(dataset, args, shuffle=True, batch_size=BATCH, persistent=True):
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=False, num_workers=args.workers,
                      persistent_workers=persistent and args.workers > 0)


# ---------------------------------------------------------------------------------------------
# PyTorch side: network, heads, optimisers, schedules

class Small(nn.Module):
    """silt's `--arch small` (src/model/small.rs), with its init (DeepCluster's)."""

    def __init__(self):
        super().__init__()
        layers, cin = [], 3
        for out, pool in [(32, True), (64, True), (128, False)]:
            layers += [nn.Conv2d(cin, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            layers += [nn.MaxPool2d(2, 2)] if pool else []
            cin = out
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(3))
        self.classifier = nn.Sequential(nn.Linear(128 * 9, 256))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0, math.sqrt(2.0 / (m.kernel_size[0] * m.kernel_size[1] * m.out_channels)))
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


class BatchNormNoBeta(nn.Module):
    """BatchNorm1d with γ only (SimCLR's last BN, TF `center=False`)."""

    def __init__(self, c):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))
        self.register_buffer("running_mean", torch.zeros(c))
        self.register_buffer("running_var", torch.ones(c))

    def forward(self, x):
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, None, self.training, 0.1, 1e-5)


def head(kind, dim_in=256, dim_out=128, hidden=None):
    """silt's Projection (contrastive.rs): ReLU first, then Linear / MLP / SimCLR's BN MLP."""
    if kind == "linear":
        layers = [nn.Linear(dim_in, dim_out)]
    elif kind == "mlp":
        layers = [nn.Linear(dim_in, hidden or dim_in), nn.ReLU(), nn.Linear(hidden or dim_in, dim_out)]
    else:  # simclr
        fc1, fc2 = nn.Linear(dim_in, dim_in, bias=False), nn.Linear(dim_in, dim_out, bias=False)
        nn.init.normal_(fc1.weight, 0, 0.01)
        nn.init.normal_(fc2.weight, 0, 0.01)
        layers = [fc1, nn.BatchNorm1d(dim_in), nn.ReLU(), fc2, BatchNormNoBeta(dim_out)]
    return nn.Sequential(nn.ReLU(), *layers)


class Lars(torch.optim.Optimizer):
    """silt's SGD with LARS (src/train/optim.rs; SimCLR v1's lars_optimizer.py): tensors with more
    than one dimension get g = trust·(∇ + wd·p), trust = η‖p‖/‖∇ + wd·p‖ (1 when a norm is 0);
    the others neither; then b = m·b + g (b = g at the first step), p -= lr·b."""

    def __init__(self, params, lr, momentum, weight_decay, eta=0.001):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            lr, m, wd, eta = group["lr"], group["momentum"], group["weight_decay"], group["eta"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if p.ndim > 1:
                    g = g.add(p, alpha=wd)
                    w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(g)
                    g = g * torch.where((w_norm > 0) & (g_norm > 0), eta * w_norm / g_norm, torch.ones_like(w_norm))
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = g.clone()
                else:
                    state["momentum_buffer"].mul_(m).add_(g)
                p.add_(state["momentum_buffer"], alpha=-lr)


def sgd(params, lr, momentum=0.9, weight_decay=1e-4, nesterov=False):
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)


def constant(lr):
    return lambda t: lr


def cosine(lr, epochs):  # silt's Schedule::Cosine, final 0, no warm-up, at fractional epoch t
    return lambda t: 0.5 * lr * (1 + math.cos(math.pi * min(max(t / epochs, 0.0), 1.0)))


def step_decay(lr, milestones=(120, 160), gamma=0.1):
    return lambda t: lr * gamma ** sum(t >= m for m in milestones)


def warmup(schedule, lr, epochs):  # silt's LrSchedule.at: linear from lr/100 over `epochs`
    return lambda t: lr * 0.01 + (schedule(t) - lr * 0.01) * t / epochs if t < epochs else schedule(t)


def l2n(x):
    return F.normalize(x, dim=1)


class Setup:
    """One method's PyTorch side: views, the loss of a batch, what to do after the optimiser step
    and at the start of an epoch, its optimisers and lr schedule."""

    def __init__(self, view, count=1, rotations=False):
        self.view, self.count, self.rotations = view, count, rotations
        self.optimizers, self.schedule = [], None

    def begin_epoch(self, epoch):
        pass

    def loss(self, views, idx):
        raise NotImplementedError

    def after_step(self):
        pass


# ---------------------------------------------------------------------------------------------
# PyTorch side: one setup per method (src/method/*.rs)

def setup_rotnet(trunk, args, ctx):
    """rotnet.rs: the four rotations of one crop in one batch (4B images), Linear 256->4 on
    ReLU(trunk), CE; SGD Nesterov m 0.9 wd 5e-4; --lr 0.05 --schedule constant."""
    s = Setup(plain_view(), rotations=True)
    fc = nn.Sequential(nn.ReLU(), nn.Linear(256, 4))

    def loss(views, idx):
        x = views[0].flatten(0, 1)  # [B, 4, 3, H, W] -> [4B, 3, H, W], image-major as silt's batch
        y = torch.arange(4).repeat(views[0].shape[0])
        return F.cross_entropy(fc(trunk(x)), y)

    s.loss = loss
    s.optimizers = [sgd([*trunk.parameters(), *fc.parameters()], 0.05, weight_decay=5e-4, nesterov=True)]
    s.schedule = constant(0.05)
    return s


def setup_moco_v2(trunk, args, ctx):
    """moco.rs: MLP head 256->256->128, key encoder = EMA (m 0.99) of trunk + head (parameters
    only; its BN runs in train mode on the key batch), queue K 4096 (wrap-around enqueue as silt),
    InfoNCE T 0.2; --bn-splits 1: no shuffle BN; SGD m 0.9 wd 1e-4, lr 0.06 cosine per step."""
    s = Setup(moco_v2_view(), count=2)
    fc = head("mlp")
    key_trunk, key_fc = copy.deepcopy(trunk), copy.deepcopy(fc)
    for p in [*key_trunk.parameters(), *key_fc.parameters()]:
        p.requires_grad_(False)
    pairs = list(zip([*key_trunk.parameters(), *key_fc.parameters()], [*trunk.parameters(), *fc.parameters()]))
    queue = F.normalize(torch.randn(128, 4096), dim=0)  # columns normalised, as builder.py
    state = {"ptr": 0, "keys": None}

    def loss(views, idx):
        q = l2n(fc(trunk(views[0])))
        with torch.no_grad():
            for pk, pq in pairs:  # builder.py _momentum_update_key_encoder
                pk.data = pk.data * 0.99 + pq.data * (1.0 - 0.99)
            k = l2n(key_fc(key_trunk(views[1])))
        l_pos = (q * k).sum(1, keepdim=True)
        l_neg = q @ queue
        logits = torch.cat([l_pos, l_neg], 1) / 0.2
        state["keys"] = k
        return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long))

    def after_step():  # _dequeue_and_enqueue, with silt's wrap-around for a partial last batch
        k, K = state["keys"], queue.shape[1]
        b = k.shape[0]
        keep = min(b, K)
        cols = (torch.arange(keep) + state["ptr"] + b - keep) % K
        queue[:, cols] = k[b - keep:].t()
        state["ptr"] = (state["ptr"] + b) % K

    s.loss, s.after_step = loss, after_step
    s.optimizers = [sgd([*trunk.parameters(), *fc.parameters()], 0.06, weight_decay=1e-4)]
    s.schedule = cosine(0.06, args.epochs)
    key_trunk.train()
    key_fc.train()
    return s


def setup_simclr(trunk, args, ctx):
    """simclr.rs: both views through the trunk in one batch (BN over 2B), SimCLR's head (Linear
    no bias, BN, ReLU, Linear no bias, BN γ only), NT-Xent T 0.5 (sum of the two directions);
    LARS (η 0.001) on trunk and head, m 0.9 wd 1e-6, lr 1.0 cosine per step."""
    s = Setup(simclr_view(), count=2)
    fc = head("simclr")
    large = 1e9

    def loss(views, idx):
        n = views[0].shape[0]
        z = fc(trunk(torch.cat([views[0], views[1]], 0)))
        h1, h2 = l2n(z[:n]), l2n(z[n:])
        labels = torch.arange(n)
        masks = F.one_hot(labels, n).float()
        logits_aa = h1 @ h1.t() / 0.5 - masks * large
        logits_bb = h2 @ h2.t() / 0.5 - masks * large
        logits_ab = h1 @ h2.t() / 0.5
        logits_ba = h2 @ h1.t() / 0.5
        return F.cross_entropy(torch.cat([logits_ab, logits_aa], 1), labels) + F.cross_entropy(torch.cat([logits_ba, logits_bb], 1), labels)

    s.loss = loss
    s.optimizers = [Lars([*trunk.parameters(), *fc.parameters()], 1.0, momentum=0.9, weight_decay=1e-6)]
    s.schedule = cosine(1.0, args.epochs)
    return s


def feature_rows(trunk, fc, ctx, args):
    """contrastive.rs feature_rows: row i = normalise(head(trunk(eval view of image i))), eval mode."""
    loader = make_loader(Views(ctx["images"], eval_view()), args, shuffle=False, batch_size=256, persistent=False)
    trunk.eval()
    fc.eval()
    with torch.no_grad():
        rows = torch.cat([l2n(fc(trunk(v[0]))) for v, _ in loader])
    trunk.train()
    fc.train()
    del loader
    return rows


def setup_instdisc(trunk, args, ctx):
    """instdisc.rs, --nce-k 0: Linear head 256->128, full softmax over the memory bank (N x 128,
    rows = the untrained network's normalised features: --bank-init features) T 0.1, target = the
    image's index; after the step V_i <- normalise(0.5 V_i + 0.5 f_i); SGD m 0.9 wd 1e-4, lr 0.03
    (step schedule at 120/160: constant here)."""
    s = Setup(moco_v1_view())
    fc = head("linear")
    state = {"bank": None, "pending": None}

    def begin_epoch(epoch):
        if state["bank"] is None:
            state["bank"] = feature_rows(trunk, fc, ctx, args)

    def loss(views, idx):
        f = l2n(fc(trunk(views[0])))
        state["pending"] = (idx, f.detach())
        return F.cross_entropy(f @ state["bank"].t() / 0.1, idx)

    def after_step():  # lemniscate NCEAverage backward (memory update)
        idx, f = state["pending"]
        bank = state["bank"]
        w = bank.index_select(0, idx) * 0.5 + f * 0.5
        bank.index_copy_(0, idx, w / w.pow(2).sum(1, keepdim=True).pow(0.5))

    s.begin_epoch, s.loss, s.after_step = begin_epoch, loss, after_step
    s.optimizers = [sgd([*trunk.parameters(), *fc.parameters()], 0.03, weight_decay=1e-4)]
    s.schedule = step_decay(0.03)
    return s


def setup_pic(trunk, args, ctx):
    """pic.rs, full softmax: MLP head 256->512->128 (--mlp-hidden 512), classifier W (N x 128,
    rows = the untrained network's normalised features: --bank-init features) a parameter of the
    same SGD (m 0.9, wd 1e-4 on W too: every row moves every step), logits = normalise(f) ·
    normalise(W)ᵀ / 0.2, target = the image's index; lr 0.03 constant (after a warm-up of
    epochs/40 epochs, integer division, as silt: none below 40 epochs)."""
    s = Setup(simclr_view())
    fc = head("mlp", hidden=512)
    state = {}

    def begin_epoch(epoch):
        if "W" not in state:
            state["W"] = nn.Parameter(feature_rows(trunk, fc, ctx, args))
            s.optimizers = [sgd([*trunk.parameters(), *fc.parameters(), state["W"]], 0.03, weight_decay=1e-4)]

    def loss(views, idx):
        f = fc(trunk(views[0]))
        return F.cross_entropy(l2n(f) @ l2n(state["W"]).t() / 0.2, idx)

    s.begin_epoch, s.loss = begin_epoch, loss
    s.schedule = warmup(constant(0.03), 0.03, args.epochs // 40) if args.epochs >= 40 else constant(0.03)  # PIC: epochs/40
    return s


def setup_deepcluster(trunk, args, ctx):
    """deepcluster.rs' training pass on FIXED RANDOM pseudo-labels (k 100; no clustering): a fresh
    top layer Linear 256->100 (N(0, 0.01), bias 0) on ReLU(trunk) every epoch with its own SGD
    (no momentum, wd 1e-5); trunk SGD m 0.9 wd 1e-5 kept across epochs; lr 0.05 constant."""
    s = Setup(plain_view())
    k = 100
    labels = torch.randint(k, (len(ctx["images"]),))
    trunk_opt = sgd(trunk.parameters(), 0.05, weight_decay=1e-5)
    state = {}

    def begin_epoch(epoch):
        top = nn.Linear(256, k)
        nn.init.normal_(top.weight, 0, 0.01)
        nn.init.zeros_(top.bias)
        state["top"] = nn.Sequential(nn.ReLU(), top)
        s.optimizers = [trunk_opt, sgd(top.parameters(), 0.05, momentum=0.0, weight_decay=1e-5)]

    def loss(views, idx):
        return F.cross_entropy(state["top"](trunk(views[0])), labels[idx])

    s.begin_epoch, s.loss = begin_epoch, loss
    s.schedule = constant(0.05)
    return s


SETUPS = {"rotnet": setup_rotnet, "moco-v2": setup_moco_v2, "simclr": setup_simclr, "instdisc": setup_instdisc, "pic": setup_pic,
          "deepcluster": setup_deepcluster}


def run_pytorch(method, args):
    """The PyTorch-eager training of `method`, timed per epoch as silt's trainer times it."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)
    images = read_idx_images(os.path.join(fashion_dir(), "train-images-idx3-ubyte"), args.train_n)
    ctx = {"images": images}
    trunk = Small().train()
    s = SETUPS[method](trunk, args, ctx)
    loader = make_loader(Views(images, s.view, s.count, s.rotations), args)
    n = len(images)
    epoch_seconds, epoch_loss, step_times = [], [], []
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        s.begin_epoch(epoch)
        pos, losses, ends = 0, [], []
        for views, idx in loader:
            lr = s.schedule(epoch + pos / n)
            for opt in s.optimizers:
                for g in opt.param_groups:
                    g["lr"] = lr
                opt.zero_grad()
            loss = s.loss(views, idx)
            loss.backward()
            for opt in s.optimizers:
                opt.step()
            s.after_step()
            value = loss.item()
            if not math.isfinite(value):
                raise SystemExit(f"{method}: loss {value} at epoch {epoch}")
            losses.append(value)
            pos += len(idx)
            ends.append(time.perf_counter() - t0)
        epoch_seconds.append(time.perf_counter() - t0)
        epoch_loss.append(sum(losses) / len(losses))
        step_times.append(ends)
        print(f"  pytorch {method} epoch {epoch}: loss {epoch_loss[-1]:.4f}, {epoch_seconds[-1]:.2f}s", file=sys.stderr)
    return {"epoch_seconds": epoch_seconds, "epoch_loss": epoch_loss, "train_pass_seconds": step_estimate(step_times),
            "torch": torch.__version__, "threads": torch.get_num_threads()}


def run_pytorch_child(method, args):
    """run_pytorch in a fresh process (no leftover workers or allocator state between methods)."""
    path = os.path.join(args.out, "runs", method, "pytorch.json")
    cmd = [sys.executable, os.path.abspath(__file__), "--pytorch-one", method, "--result", path, "--train-n", str(args.train_n),
           "--epochs", str(args.epochs), "--threads", str(args.threads), "--workers", str(args.workers), "--out", args.out]
    subprocess.run(cmd, check=True)
    return json.load(open(path))


# ---------------------------------------------------------------------------------------------
# report

def steady(xs):
    """Mean over the epochs after the first (all of them when there is only one)."""
    xs = xs[1:] if len(xs) > 1 else xs
    return sum(xs) / len(xs) if xs else float("nan")


def chance_loss(method, n):
    return {"rotnet": math.log(4), "moco-v2": math.log(4097), "simclr": 2 * math.log(2 * min(BATCH, n) - 1), "instdisc": math.log(n),
            "pic": math.log(n), "deepcluster": math.log(100)}[method]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--methods", default=",".join(ALL_METHODS), help=f"comma-separated, of {', '.join(SETUPS)}")
    ap.add_argument("--train-n", type=int, default=5000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default="/tmp/silt-methods-time")
    ap.add_argument("--silt", help="the silt binary (default: $CARGO_TARGET_DIR/release/silt from silt's env file)")
    ap.add_argument("--pytorch-one", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.pytorch_one:
        json.dump(run_pytorch(args.pytorch_one, args), open(args.result, "w"), indent=1)
        return
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in SETUPS]
    if unknown:
        ap.error(f"unknown methods {unknown}; known: {', '.join(SETUPS)}")
    silt = args.silt or os.path.join(silt_var("CARGO_TARGET_DIR"), "release", "silt")
    os.makedirs(args.out, exist_ok=True)
    shards = build_shards(silt, args.out, args.train_n)
    load_before = os.getloadavg()
    rows = []
    for m in methods:
        print(f"== {m}: silt {SILT_FLAGS[m]}", file=sys.stderr)
        s = run_silt(silt, shards, m, args)
        print(f"  silt {m}: epochs {', '.join(f'{x:.2f}s' for x in s['epoch_seconds'])}; loss {s['epoch_loss'][-1]:.4f}", file=sys.stderr)
        p = run_pytorch_child(m, args)
        gc.collect()
        key = "train_pass_seconds" if m == "deepcluster" else "epoch_seconds"
        rows.append({"method": m, "silt_flags": SILT_FLAGS[m], "timed": key, "silt": s, "pytorch": p,
                     "silt_s_per_epoch": steady(s[key]), "pytorch_s_per_epoch": steady(p[key]),
                     "silt_min_s_per_epoch": min(s[key][1:] or s[key]), "pytorch_min_s_per_epoch": min(p[key][1:] or p[key]),
                     "silt_loss_last": s["epoch_loss"][-1], "pytorch_loss_last": p["epoch_loss"][-1], "chance_loss": chance_loss(m, args.train_n)})
    meta = {"train_n": args.train_n, "epochs": args.epochs, "threads": args.threads, "workers": args.workers, "batch": BATCH, "crop": CROP,
            "min_scale": MIN_SCALE, "torch": torch.__version__, "cpus": os.cpu_count(),
            "loadavg_before": load_before, "loadavg_after": os.getloadavg()}
    path = os.path.join(args.out, "methods_epoch_compare.json")
    json.dump({"meta": meta, "rows": rows}, open(path, "w"), indent=1)

    print(f"\n{args.train_n} Fashion-MNIST images, batch {BATCH}, {args.epochs} epochs (mean over epochs 2..{args.epochs}), "
          f"{args.threads} libtorch threads, {args.workers} loader workers, {os.cpu_count()} CPUs "
          f"(1-min load average {load_before[0]:.1f} before, {meta['loadavg_after'][0]:.1f} after: other load skews both sides)\n")
    print("| method | silt s/epoch | PyTorch eager s/epoch | ratio (silt/PyTorch) |")
    print("|---|---|---|---|")
    for r in rows:
        name = r["method"] + (" (training pass; PyTorch: random labels, k 100)" if r["method"] == "deepcluster" else "")
        print(f"| {name} | {r['silt_s_per_epoch']:.2f} | {r['pytorch_s_per_epoch']:.2f} | {r['silt_s_per_epoch'] / r['pytorch_s_per_epoch']:.2f} |")
    print("\nSanity check, mean loss of the last epoch (RNG streams differ: similar magnitude expected, not equal values)\n")
    print("| method | silt loss | PyTorch loss | chance |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['silt_loss_last']:.3f} | {r['pytorch_loss_last']:.3f} | {r['chance_loss']:.3f} |")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()

"""Reference for tests/method_pic.rs: PIC's loss and the SGD step on its classifier, transcribed
from bl0/PIC into PyTorch, on the tensors silt wrote (pic.safetensors).

- logits / targets: contrast/models/PIC.py `PIC.forward` with the encoder's outputs given
  (large crops against normalize(sim_matrix), small crops against its detached copy, / T,
  concatenated; targets y_idx.repeat(k + k_small)); loss F.cross_entropy (main_pretrain.py)
- optimiser: main_pretrain.py `torch.optim.SGD(model.parameters(), lr, momentum, weight_decay)`
- head: contrast/resnet.py mlp_head (fc1, ReLU, fc2) on ReLU(features)

Prints one line per check with the largest absolute difference; exits 1 when one exceeds its
tolerance.
"""
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file

torch.set_num_threads(1)
t = load_file(f"{sys.argv[1]}/pic.safetensors")
results = []


def check(name, silt, ref, tol=2e-5):
    diff = (silt.double() - ref.double()).abs().max().item() if silt.numel() else 0.0
    scale = max(1.0, ref.double().abs().max().item())
    results.append((name, diff, diff <= tol * scale))


class PIC(nn.Module):
    """contrast/models/PIC.py, the encoder replaced by the given features."""

    def __init__(self, sim_matrix, temperature):
        super().__init__()
        self.sim_matrix = nn.Parameter(sim_matrix.clone(), requires_grad=True)
        self.contrast_temperature = temperature

    def forward(self, feats, feats_small, y_idx):
        feature_list = [F.normalize(f, dim=1) for f in feats]
        sim_matrix = F.normalize(self.sim_matrix, dim=1)
        logit_list = [torch.einsum("nc,kc->nk", [f, sim_matrix]) for f in feature_list]
        logit_list = [logit / self.contrast_temperature for logit in logit_list]
        feature_small_list = [F.normalize(f, dim=1) for f in feats_small]
        sim_matrix_detach = sim_matrix.detach()
        logit_small_list = [torch.einsum("nc,kc->nk", [f, sim_matrix_detach]) for f in feature_small_list]
        logit_small_list = [logit / self.contrast_temperature for logit in logit_small_list]
        logit = torch.cat(logit_list + logit_small_list, dim=0)
        return logit, y_idx.repeat(len(feats) + len(feats_small))


temp, lr0, lr1, momentum, wd = t["hyper"].tolist()
n_small = int(t["n_small"].item())
y = t["y"]

# --- loss, logits and gradients
model = PIC(t["W"], temp)
f_large = t["f_large"].clone().requires_grad_(True)
f_small = [t[f"f_small{i}"].clone().requires_grad_(True) for i in range(n_small)]
logit, label = model([f_large], f_small, y)
loss = F.cross_entropy(logit, label)
loss.backward()
check("PIC logits", t["logits"], logit.detach())
check("PIC loss", t["loss"], loss.detach())
check("PIC grad large-crop features", t["grad_f_large"], f_large.grad)
for i in range(n_small):
    check(f"PIC grad small-crop features {i}", t[f"grad_f_small{i}"], f_small[i].grad)
check("PIC grad W", t["grad_W"], model.sim_matrix.grad)
# The small crops do not reach W: the gradient equals that of the large crops' rows alone.
model_large = PIC(t["W"], temp)
logit_l, _ = model_large([t["f_large"]], [], y)
(F.cross_entropy(logit_l, y, reduction="sum") / logit.shape[0]).backward()
check("PIC grad W comes from the large crops only", t["grad_W"], model_large.sim_matrix.grad)

# --- two SGD steps on W (features fixed), torch.optim.SGD as main_pretrain.py builds it
model = PIC(t["W"], temp)
opt = torch.optim.SGD(model.parameters(), lr=lr0, momentum=momentum, weight_decay=wd)
for s, lr in enumerate([lr0, lr1]):
    for g in opt.param_groups:
        g["lr"] = lr
    opt.zero_grad()
    logit, label = model([t["f_large"]], [t[f"f_small{i}"] for i in range(n_small)], y)
    F.cross_entropy(logit, label).backward()
    opt.step()
    check(f"SGD step {s + 1} on W", t[f"W_step{s + 1}"], model.sim_matrix.detach())

# --- the MLP head
x = t["head.x"]
h = F.linear(F.relu(x), t["head.init.head.0.weight"], t["head.init.head.0.bias"])
h = F.linear(F.relu(h), t["head.init.head.2.weight"], t["head.init.head.2.bias"])
check("PIC MLP head forward", t["head.y"], h)

bad = 0
for name, diff, ok in results:
    print(f"{'ok ' if ok else 'BAD'} {name}: {diff:.3e}")
    bad += not ok
sys.exit(1 if bad else 0)

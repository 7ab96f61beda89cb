"""Reference for tests/method_contrastive.rs: the contrastive losses and updates, transcribed from
the upstream code into PyTorch, on the tensors silt wrote (contrastive.safetensors).

- MoCo InfoNCE and momentum update / queue: facebookresearch/moco moco/builder.py
- NT-Xent: google-research/simclr (v1) objective.py `add_contrastive_loss` (TF ops in torch)
- InstDisc NCE and memory update: zhirongw/lemniscate.pytorch lib/NCEAverage.py, NCECriterion.py;
  full softmax: lib/LinearAverage.py + CrossEntropyLoss
- heads: MoCo v2 `nn.Sequential(Linear, ReLU, fc)`; SimCLR v1 model_util.py `projection_head`
- LARS: simclr (v1) lars_optimizer.py, classic momentum, constant learning rate

Prints one line per check with the largest absolute difference; exits 1 when one exceeds its
tolerance.
"""
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

torch.set_num_threads(1)
t = load_file(f"{sys.argv[1]}/contrastive.safetensors")
results = []


def check(name, silt, ref, tol=2e-5):
    diff = (silt.double() - ref.double()).abs().max().item() if silt.numel() else 0.0
    scale = max(1.0, ref.double().abs().max().item())
    results.append((name, diff, diff <= tol * scale))


def leaf(x):
    return x.clone().requires_grad_(True)


# --- MoCo InfoNCE (builder.py forward)
q_raw = leaf(t["moco.q_raw"])
q = F.normalize(q_raw, dim=1)
k = F.normalize(t["moco.k_raw"], dim=1)
queue = t["moco.queue"]
l_pos = torch.einsum("nc,nc->n", [q, k]).unsqueeze(-1)
l_neg = torch.einsum("nc,ck->nk", [q, queue.clone().detach()])
logits = torch.cat([l_pos, l_neg], dim=1) / 0.07
labels = torch.zeros(logits.shape[0], dtype=torch.long)
loss = F.cross_entropy(logits, labels)
loss.backward()
check("moco InfoNCE logits", t["moco.logits"], logits.detach())
check("moco InfoNCE loss", t["moco.loss"], loss.detach())
check("moco InfoNCE grad q", t["moco.grad_q"], q_raw.grad)

# --- SimCLR NT-Xent (objective.py add_contrastive_loss, hidden_norm=True, one core)
LARGE_NUM = 1e9


def add_contrastive_loss(hidden, temperature):
    hidden = F.normalize(hidden, dim=-1)
    hidden1, hidden2 = torch.split(hidden, hidden.shape[0] // 2, 0)
    batch_size = hidden1.shape[0]
    labels = F.one_hot(torch.arange(batch_size), batch_size * 2).float()
    masks = F.one_hot(torch.arange(batch_size), batch_size).float()
    logits_aa = hidden1 @ hidden1.T / temperature
    logits_aa = logits_aa - masks * LARGE_NUM
    logits_bb = hidden2 @ hidden2.T / temperature
    logits_bb = logits_bb - masks * LARGE_NUM
    logits_ab = hidden1 @ hidden2.T / temperature
    logits_ba = hidden2 @ hidden1.T / temperature
    # tf.losses.softmax_cross_entropy: mean over the batch of -sum(labels * log_softmax)
    loss_a = -(labels * F.log_softmax(torch.cat([logits_ab, logits_aa], 1), 1)).sum(1).mean()
    loss_b = -(labels * F.log_softmax(torch.cat([logits_ba, logits_bb], 1), 1)).sum(1).mean()
    return loss_a + loss_b


for tag in ["a", "b"]:
    z1, z2 = leaf(t[f"ntxent_{tag}.z1"]), leaf(t[f"ntxent_{tag}.z2"])
    temp = t[f"ntxent_{tag}.t"].item()
    loss = add_contrastive_loss(torch.cat([z1, z2], 0), temp)
    loss.backward()
    check(f"simclr NT-Xent loss T={temp}", t[f"ntxent_{tag}.loss"], loss.detach())
    check(f"simclr NT-Xent grad z1 T={temp}", t[f"ntxent_{tag}.grad_z1"], z1.grad)
    check(f"simclr NT-Xent grad z2 T={temp}", t[f"ntxent_{tag}.grad_z2"], z2.grad)


# --- InstDisc NCEAverage + NCECriterion
def nce_average(x, memory, idx, T, Z):
    batchSize, inputSize = x.size(0), memory.size(1)
    outputSize = memory.size(0)
    K = idx.size(1) - 1
    weight = torch.index_select(memory, 0, idx.view(-1)).detach()
    weight = weight.view(batchSize, K + 1, inputSize)
    out = torch.bmm(weight, x.view(batchSize, inputSize, 1))
    out = out.div(T).exp()
    if Z < 0:
        Z = out.mean().item() * outputSize
    out = out.div(Z).view(batchSize, K + 1)
    return out, Z


def nce_criterion(x, nLem):
    eps = 1e-7
    batchSize = x.size(0)
    K = x.size(1) - 1
    Pnt = 1 / float(nLem)
    Pns = 1 / float(nLem)
    Pmt = x.select(1, 0)
    Pmt_div = Pmt.add(K * Pnt + eps)
    lnPmt = torch.div(Pmt, Pmt_div)
    Pon_div = x.narrow(1, 1, K).add(K * Pns + eps)
    Pon = Pon_div.clone().fill_(K * Pns)
    lnPon = torch.div(Pon, Pon_div)
    lnPmt = lnPmt.log()
    lnPon = lnPon.log()
    lnPmtsum = lnPmt.sum(0)
    lnPonsum = lnPon.view(-1, 1).sum(0)
    return -(lnPmtsum + lnPonsum) / batchSize


memory, idx, y = t["nce.bank"], t["nce.idx"], t["nce.y"]
n_data = memory.size(0)
f_raw = leaf(t["nce.f_raw"])
f = F.normalize(f_raw, dim=1)
probs, Z = nce_average(f, memory, idx, 0.07, -1)
loss = nce_criterion(probs, n_data)
loss.backward()
check("instdisc NCE P(i|v)", t["nce.probs"], probs.detach(), tol=1e-4)
check("instdisc NCE Z (relative)", t["nce.z"] / Z, torch.tensor([1.0]), tol=1e-6)
check("instdisc NCE loss", t["nce.loss"], loss.detach())
check("instdisc NCE grad f", t["nce.grad_f"], f_raw.grad)
probs2, _ = nce_average(F.normalize(t["nce.f2_raw"], dim=1), memory, idx, 0.07, Z)
check("instdisc NCE loss, Z reused", t["nce.loss2"], nce_criterion(probs2, n_data))

f_raw = leaf(t["nce.f_raw"])
f = F.normalize(f_raw, dim=1)
out = torch.mm(f, memory.t()) / 0.1  # LinearAverage
loss = F.cross_entropy(out, y)
loss.backward()
check("instdisc full-softmax loss", t["softmax.loss"], loss.detach())
check("instdisc full-softmax grad f", t["softmax.grad_f"], f_raw.grad)

# memory update (NCEAverage backward), momentum 0.5
momentum = 0.5
mem = memory.clone()
weight_pos = mem.index_select(0, y.view(-1))
weight_pos.mul_(momentum)
weight_pos.add_(torch.mul(f.detach(), 1 - momentum))
w_norm = weight_pos.pow(2).sum(1, keepdim=True).pow(0.5)
mem.index_copy_(0, y, weight_pos.div(w_norm))
check("instdisc memory-bank update", t["bank.after"], mem, tol=1e-6)

# --- momentum encoder (builder.py _momentum_update_key_encoder), m = 0.99
for i in range(2):
    pk, pq = t[f"ema.k{i}"].clone(), t[f"ema.q{i}"]
    pk = pk * 0.99 + pq * (1.0 - 0.99)
    check(f"moco momentum update, tensor {i}", t[f"ema.k{i}_after"], pk, tol=0.0)

# --- queue (builder.py _dequeue_and_enqueue, K % batch == 0)
K = t["queue.init"].shape[1]
qk, ptr = t["queue.init"].clone(), 0
for s in range(5):
    keys = t[f"queue.keys{s}"]
    batch_size = keys.shape[0]
    assert K % batch_size == 0
    qk[:, ptr:ptr + batch_size] = keys.T
    ptr = (ptr + batch_size) % K
check("moco queue after 5 batches", t["queue.after"], qk, tol=0.0)
check("moco queue pointer", t["queue.ptr"], torch.tensor([ptr]), tol=0.0)
# silt's generalisation: key i of a batch goes to column (ptr + i) mod K, later keys win
for s in range(3):
    keys = t[f"queue.wrap_keys{s}"]
    for i in range(keys.shape[0]):
        qk[:, (ptr + i) % K] = keys[i]
    ptr = (ptr + keys.shape[0]) % K
check("queue wrap-around (batch 12, 12, 40 into 32)", t["queue.wrap_after"], qk, tol=0.0)
check("queue wrap-around pointer", t["queue.wrap_ptr"], torch.tensor([ptr]), tol=0.0)

# --- heads
import torch.nn as nn  # noqa: E402

for tag in ["mlp", "simclr", "linear"]:
    init = {k[len(tag) + 6:]: v for k, v in t.items() if k.startswith(f"{tag}.init.")}
    after = {k[len(tag) + 7:]: v for k, v in t.items() if k.startswith(f"{tag}.after.")}
    if tag == "mlp":
        head = nn.Sequential(nn.Linear(12, 12), nn.ReLU(), nn.Linear(12, 6))
    elif tag == "linear":
        head = nn.Sequential(nn.Linear(12, 6))
    else:
        head = nn.Sequential(nn.Linear(12, 12, bias=False), nn.BatchNorm1d(12), nn.ReLU(), nn.Linear(12, 6, bias=False), nn.BatchNorm1d(6))
        init["head.4.bias"] = torch.zeros(6)  # center=False: no beta
    sd = {k[len("head."):]: v for k, v in init.items()}
    missing, unexpected = head.load_state_dict(sd, strict=False)
    assert not unexpected and all(m.endswith("num_batches_tracked") for m in missing), (tag, missing, unexpected)
    head.train()
    with torch.no_grad():
        out = head(F.relu(t[f"{tag}.x"]))
    check(f"head {tag}: output", t[f"{tag}.y"], out)
    for k, v in head.state_dict().items():
        if k.endswith("num_batches_tracked") or f"head.{k}" not in after:
            continue
        check(f"head {tag}: {k} after one train-mode forward", after[f"head.{k}"], v, tol=1e-6)

# --- LARS (SimCLR v1 lars_optimizer.py, classic momentum, no nesterov), constant lr
lr, momentum, wd, eta = t["lars.hyper"].tolist()
params = {"w": t["lars.w0"].clone(), "b": t["lars.b0"].clone()}
v = {k: torch.zeros_like(p) for k, p in params.items()}
for s in range(3):
    grads = {"w": t[f"lars.gw{s}"], "b": t[f"lars.gb{s}"]}
    for name in params:
        param, grad = params[name], grads[name]
        excluded = name == "b"  # 'bias' / 'batch_normalization' in the variable name
        if not excluded:
            grad = grad + wd * param
        trust_ratio = 1.0
        if not excluded:
            w_norm, g_norm = torch.norm(param), torch.norm(grad)
            trust_ratio = torch.where(w_norm > 0, torch.where(g_norm > 0, eta * w_norm / g_norm, torch.ones_like(w_norm)), torch.ones_like(w_norm))
        scaled_lr = lr * trust_ratio
        v[name] = momentum * v[name] + scaled_lr * grad
        params[name] = param - v[name]
check("LARS weight after 3 steps", t["lars.w3"], params["w"], tol=1e-5)
check("LARS bias after 3 steps", t["lars.b3"], params["b"], tol=1e-5)

width = max(len(r[0]) for r in results)
for name, diff, ok in results:
    print(f"{name:<{width}}  {diff:.3e}{'' if ok else '  FAIL'}")
sys.exit(0 if all(ok for _, _, ok in results) else 1)

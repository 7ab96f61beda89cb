"""Reference for tests/method_sela.rs: SeLa's label optimisation, multi-head loss and relabelling
schedule transcribed from the upstream code (yukimasano/self-label) on the tensors silt wrote
(sela.safetensors).

- label optimisation: sinkhornknopp.py `cpu_sk` (hc > 1: features @ W^T + b in float64,
  util.py `py_softmax`) and `optimize_L_sk` (P^lambda, r/c scaling, error every 10 iterations,
  argmax of diag(r) P diag(c)), float64 numpy;
- loss: main.py `torch.mean(torch.stack([XE(final[h], L[h, selected]) for h in range(hc)]))`;
- schedule: main.py `optimize_times` and the `niter * batch_size >= optimize_times[-1]` trigger
  of `optimize_epoch`, over upstream's `epochs + 1` epochs.

Prints one line per check with the largest difference; exits 1 when one exceeds its tolerance.
"""
import sys

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from scipy.special import logsumexp

torch.set_num_threads(1)
t = load_file(f"{sys.argv[1]}/sela.safetensors")
results = []


def check(name, silt, ref, tol):
    silt, ref = np.asarray(silt, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if silt.shape != ref.shape:
        results.append((f"{name}: shape {silt.shape} vs {ref.shape}", float("inf"), False))
        return
    diff = float(np.abs(silt - ref).max()) if silt.size else 0.0
    results.append((name, diff, diff <= tol))


def py_softmax(x, axis=None):
    """util.py: stable softmax"""
    return np.exp(x - logsumexp(x, axis=axis, keepdims=True))


def optimize_L_sk(PS, lamb, tol):
    """sinkhornknopp.py optimize_L_sk on PS (N x K); the stop threshold 1e-1 made a parameter."""
    N, K = PS.shape
    PS = PS.T.copy()  # now it is K x N
    r = np.ones((K, 1), dtype=np.float64) / K
    c = np.ones((N, 1), dtype=np.float64) / N
    PS **= lamb  # K x N
    inv_K = np.float64(1.0 / K)
    inv_N = np.float64(1.0 / N)
    err = 1e6
    _counter = 0
    while err > tol:
        r = inv_K / (PS @ c)  # (KxN)@(N,1) = K x 1
        c_new = inv_N / (r.T @ PS).T  # ((1,K)@(KxN)).t() = N x 1
        if _counter % 10 == 0:
            err = np.nansum(np.abs(c / c_new - 1))
        c = c_new
        _counter += 1
    PS *= np.squeeze(c)
    PS = PS.T
    PS *= np.squeeze(r)
    PS = PS.T
    return np.nanargmax(PS, 0), _counter, err, np.log(r[:, 0]), np.log(c[:, 0])


# --- label optimisation (cpu_sk, hc > 1), two settings
for case in ["a", "b"]:
    lamb, tol = t[f"sk_{case}.hyper"].double().numpy()
    feats = t[f"sk_{case}.features"].numpy().astype(np.float64)
    heads = int(t[f"sk_{case}.heads"].item())
    for nh in range(heads):
        w = t[f"sk_{case}.w{nh}"].numpy().astype(np.float64)
        b = t[f"sk_{case}.b{nh}"].numpy().astype(np.float64)
        PS = py_softmax(feats @ w.T + b, 1)
        labels, iters, err, log_r, log_c = optimize_L_sk(PS, lamb, tol)
        tag = f"sk {case} (lambda {lamb:g}, tol {tol:g}) head {nh}"
        check(f"{tag} labels (mismatches)", [int((t[f"sk_{case}.labels{nh}"].numpy() != labels).sum())], [0], 0)
        check(f"{tag} iterations", [t[f"sk_{case}.iterations{nh}"].item()], [iters], 0)
        check(f"{tag} final error", [t[f"sk_{case}.error{nh}"].item()], [err], 1e-9 + 1e-6 * abs(err))
        check(f"{tag} log r", t[f"sk_{case}.log_r{nh}"].numpy(), log_r, 1e-8)
        check(f"{tag} log c", t[f"sk_{case}.log_c{nh}"].numpy(), log_c, 1e-8)
        sizes = np.bincount(labels, minlength=w.shape[0])
        print(f"{tag}: {iters} iterations, error {err:.4f}, cluster sizes {sizes.min()}..{sizes.max()}")

# --- multi-head loss through the heads (SeLa main.py), gradients included
heads = int(t["loss.heads"].item())
x = t["loss.x"].clone().requires_grad_(True)
tls = []
for h in range(heads):
    tl = torch.nn.Linear(x.shape[1], t[f"loss.w{h}"].shape[0])
    with torch.no_grad():
        tl.weight.copy_(t[f"loss.w{h}"])
        tl.bias.copy_(t[f"loss.b{h}"])
    tls.append(tl)
final = [tl(F.relu(x)) for tl in tls]
XE = torch.nn.CrossEntropyLoss()
L = t["loss.targets"]
loss = torch.mean(torch.stack([XE(final[h], L[h]) for h in range(heads)]))
loss.backward()
check("multi-head loss", t["loss.loss"], loss.detach(), 1e-5)
check("multi-head loss grad x", t["loss.grad_x"], x.grad, 1e-6)
for h in range(heads):
    check(f"multi-head loss grad W{h}", t[f"loss.grad_w{h}"], tls[h].weight.grad, 1e-6)
    check(f"multi-head loss grad b{h}", t[f"loss.grad_b{h}"], tls[h].bias.grad, 1e-6)
acc = np.mean([(final[h].argmax(1) == L[h]).float().mean().item() for h in range(heads)])
check("multi-head accuracy", t["loss.accuracy"], [acc], 1e-6)

# --- relabelling schedule and trigger, several (epochs, N, nopts, batch)
for i, row in enumerate(t["sched.cases"].tolist()):
    run_epochs, N, nopts, bs = row
    E = run_epochs - 1  # upstream --epochs E trains E + 1 epochs
    times = ((E + 1.01) * N * (np.linspace(0, 1, nopts) ** 2)).tolist()
    check(f"schedule {row}: times", t[f"sched.times{i}"].numpy(), times, 1e-9 * max(1.0, times[-1]))
    # main.py: optimize_times = [(E+2)N] + reversed times; pop the last when niter*bs >= it.
    optimize_times = [(E + 2) * N] + times[::-1]
    per_epoch = -(-N // bs)
    fired = []
    for epoch in range(E + 1):
        for it in range(per_epoch):
            niter = epoch * per_epoch + it
            if niter * bs >= optimize_times[-1]:
                optimize_times.pop()
                fired.append(niter)
    shown = fired if len(fired) <= 12 else f"{fired[:6]} ... {fired[-3:]} ({len(fired)} in all)"
    check(f"schedule {row}: relabel steps {shown}", t[f"sched.fired{i}"].numpy(), fired, 0)

bad = [r for r in results if not r[2]]
for name, diff, ok in results:
    print(f"{'ok ' if ok else 'BAD'} {diff:.3e}  {name}")
sys.exit(1 if bad else 0)

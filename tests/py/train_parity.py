"""Reference for tests/train_parity.rs: two SGD steps of torchvision's ResNet-18 in PyTorch.

Reads init.safetensors (weights silt initialised, torchvision names), batch.safetensors (x, y)
and silt's after.safetensors (losses, weights after the steps); runs the same two steps with
torch.optim.SGD and prints the largest differences as JSON. Exits 1 when they exceed the
tolerances given on the command line.
"""
import json
import sys

import torch
import torchvision
from safetensors.torch import load_file

d, lr, momentum, wd, tol_loss = sys.argv[1], *map(float, sys.argv[2:6])
init = load_file(f"{d}/init.safetensors")
batch = load_file(f"{d}/batch.safetensors")
after = load_file(f"{d}/after.safetensors")

torch.set_num_threads(1)


def two_steps(dtype):
    model = torchvision.models.resnet18(num_classes=int(init["fc.weight"].shape[0]))
    missing, unexpected = model.load_state_dict(init, strict=False)
    assert not unexpected, unexpected
    assert all(k.endswith("num_batches_tracked") for k in missing), missing
    model = model.to(dtype).train()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=wd)
    losses = []
    for _ in range(2):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(batch["x"].to(dtype)), batch["y"])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    state = {k: v.double() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    return losses, state


def max_diff(a, b):
    return max(((a[k] - b[k]).abs().max().item(), k) for k in a)


losses, torch32 = two_steps(torch.float32)
_, exact = two_steps(torch.float64)
silt = {k: after[k].double() for k in torch32}
loss_diff = max(abs(a - b) for a, b in zip(losses, after["losses"].tolist()))
(w_diff, worst), (f32_err, _) = max_diff(silt, torch32), max_diff(torch32, exact)
tol_w = max(1e-5, f32_err)
print(json.dumps({"torch_losses": losses, "silt_losses": after["losses"].tolist(), "max_loss_diff": loss_diff,
                  "max_weight_diff_vs_torch_f32": w_diff, "worst_tensor": worst,
                  "torch_f32_vs_f64": f32_err, "tensors": len(torch32)}))
sys.exit(0 if loss_diff <= tol_loss and w_diff <= tol_w else 1)

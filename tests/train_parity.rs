//! Parity with PyTorch: two training steps (forward, cross-entropy, backward, SGD with momentum
//! and weight decay) of ResNet-18 from the same weights on the same batch, in silt and in
//! PyTorch (torchvision's resnet18 + torch.optim.SGD), give the same losses and weights: silt's
//! weights must be as close to PyTorch's float32 result as that is to a float64 run of the same
//! steps (BatchNorm over small batches makes a few steps ill-conditioned, so a fixed tolerance
//! would either be loose or flaky).

mod train_common;

use silt::model::{build, Arch, ModelConfig};
use silt::train::checkpoint::named_vars;
use silt::train::optim::{Sgd, SgdConfig};
use std::process::Command;
use tch::{nn, nn::Module, Kind, Tensor};

#[test]
fn two_sgd_steps_match_pytorch() {
    let Some(py) = train_common::python() else {
        panic!("the Python venv with torch/torchvision is missing: run ops/setup (ops/test does)");
    };
    tch::set_num_threads(1);
    tch::manual_seed(3);
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let trunk = build(&vs.root(), &ModelConfig::new(Arch::ResNet18));
    let head_vs = nn::VarStore::new(tch::Device::Cpu);
    let head = silt::model::heads::linear_head(&(head_vs.root() / "fc"), 512, 10, silt::model::heads::HeadInit::TorchDefault);
    let x = Tensor::randn([16, 3, 64, 64], (Kind::Float, tch::Device::Cpu));
    let y = Tensor::randint(10, [16], (Kind::Int64, tch::Device::Cpu));

    let dir = tempfile::tempdir().unwrap();
    let mut init = named_vars(&vs, "");
    init.extend(named_vars(&head_vs, ""));
    let copy = |v: &[(String, Tensor)]| v.iter().map(|(n, t)| (n.clone(), t.detach().copy())).collect::<Vec<_>>();
    Tensor::write_safetensors(&copy(&init), dir.path().join("init.safetensors")).unwrap();
    Tensor::write_safetensors(&[("x", &x), ("y", &y)], dir.path().join("batch.safetensors")).unwrap();

    let (lr, momentum, wd) = (0.01, 0.9, 1e-4);
    let mut params = named_vars(&vs, "");
    params.extend(named_vars(&head_vs, ""));
    let mut opt = Sgd::new(params, SgdConfig::new(momentum, wd, false));
    let mut losses = Vec::new();
    for _ in 0..2 {
        opt.zero_grad();
        let loss = head.forward(&trunk.forward_t(&x, true)).cross_entropy_for_logits(&y);
        loss.backward();
        opt.step(lr);
        losses.push(loss.double_value(&[]));
    }
    let mut after = copy(&named_vars(&vs, ""));
    after.extend(copy(&named_vars(&head_vs, "")));
    after.push(("losses".into(), Tensor::from_slice(&losses)));
    Tensor::write_safetensors(&after, dir.path().join("after.safetensors")).unwrap();

    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/train_parity.py");
    let out = Command::new(&py).arg(script).arg(dir.path()).args([lr, momentum, wd, 1e-5].map(|v| v.to_string())).output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    eprintln!("silt vs PyTorch: {report}");
    assert!(out.status.success(), "silt and PyTorch differ: {report} {}", String::from_utf8_lossy(&out.stderr));
}

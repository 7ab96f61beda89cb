//! silt's networks against PyTorch, both ways, through safetensors:
//! - export: silt builds a network (fixed seed, random BatchNorm parameters and statistics),
//!   writes it with `save_torchvision` plus an input and its outputs; tests/py/model_torchvision.py
//!   loads it into torchvision's resnet18 / resnet50 / vgg16_bn (DeepCluster's AlexNet-BN and the
//!   small CNN written in the script) with `load_state_dict(strict=True)` and compares outputs;
//! - import: the script writes random PyTorch weights (heads included) and reference outputs,
//!   silt loads them with `load_torchvision` and reproduces the outputs.
//!
//! Compared: the eval-mode trunk output, every `conv_outputs` tensor and, for the networks without
//! dropout, the train-mode output and the eval output after it (BatchNorm running-stat updates).
//!
//! The oracle is the project venv's PyTorch (`SILT_PYTHON`, else ~/.cache/silt/venv/bin/python);
//! a missing venv is a failure that says to run ops/setup.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use silt::model::{build, load_torchvision, save_torchvision, Arch, ModelConfig, Network};
use tch::{nn, Device, Kind, Tensor};

struct Case {
    name: &'static str,
    arch: Arch,
    sobel: bool,
    cifar_stem: bool,
    batch: i64,
    size: i64,
}

const CASES: &[Case] = &[
    Case { name: "resnet18", arch: Arch::ResNet18, sobel: false, cifar_stem: false, batch: 2, size: 64 },
    Case { name: "resnet18_cifar", arch: Arch::ResNet18, sobel: false, cifar_stem: true, batch: 2, size: 32 },
    Case { name: "resnet50", arch: Arch::ResNet50, sobel: false, cifar_stem: false, batch: 2, size: 64 },
    // 64x64 gives a 2x2 map: exercises the AdaptiveAvgPool(7,7) up-sampling path.
    Case { name: "vgg16", arch: Arch::Vgg16Bn, sobel: false, cifar_stem: false, batch: 2, size: 64 },
    Case { name: "alexnet_sobel", arch: Arch::AlexNet, sobel: true, cifar_stem: false, batch: 2, size: 224 },
    Case { name: "small", arch: Arch::Small, sobel: false, cifar_stem: false, batch: 4, size: 28 },
    Case { name: "small_sobel", arch: Arch::Small, sobel: true, cifar_stem: false, batch: 4, size: 32 },
];

/// Relative tolerance: max |silt - PyTorch| <= TOL * max(1, max |PyTorch eval output|).
const TOL: f64 = 1e-4;

fn python() -> PathBuf {
    const HELP: &str = "the model tests compare against PyTorch in the project venv: run ops/setup \
                        (ops/test runs it) and `source ~/.cache/silt/env`";
    if let Ok(p) = std::env::var("SILT_PYTHON") {
        let p = PathBuf::from(p);
        assert!(p.exists(), "SILT_PYTHON={} does not exist; {HELP}", p.display());
        return p;
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let p = PathBuf::from(home).join(".cache/silt/venv/bin/python");
    assert!(p.exists(), "SILT_PYTHON is unset and {} does not exist; {HELP}", p.display());
    p
}

fn run_oracle(mode: &str, dir: &Path) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/model_torchvision.py");
    let py = python();
    let out = Command::new(&py)
        .arg(&script)
        .arg(mode)
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e} (run ops/setup)", py.display()));
    assert!(
        out.status.success(),
        "{} {} {mode} failed:\n{}",
        py.display(),
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().unwrap_or("null");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("bad JSON from the oracle ({e}): {last}"))
}

fn write_cases(dir: &Path, seed0: u64) {
    let cases: Vec<serde_json::Value> = CASES
        .iter()
        .enumerate()
        .map(|(i, c)| {
            serde_json::json!({"name": c.name, "arch": c.arch.to_string(), "sobel": c.sobel,
                "cifar_stem": c.cifar_stem, "batch": c.batch, "size": c.size, "seed": seed0 + i as u64})
        })
        .collect();
    std::fs::write(dir.join("cases.json"), serde_json::to_string(&cases).unwrap()).unwrap();
}

fn config(c: &Case) -> ModelConfig {
    ModelConfig { arch: c.arch, sobel: c.sobel, cifar_stem: c.cifar_stem }
}

/// BatchNorm parameters and statistics away from their 1/0 init, so the comparison sees them.
fn randomise_bn(vs: &nn::VarStore) {
    let vars = vs.variables();
    tch::no_grad(|| {
        for name in vars.keys() {
            if let Some(p) = name.strip_suffix(".running_mean") {
                let c = vars[name].size()[0];
                let set = |n: &str, lo: f64, hi: f64| {
                    let mut t = vars[&format!("{p}.{n}")].shallow_clone();
                    t.copy_(&(Tensor::rand([c], (Kind::Float, Device::Cpu)) * (hi - lo) + lo));
                };
                set("weight", 0.5, 1.5);
                set("bias", -0.2, 0.2);
                set("running_mean", -0.2, 0.2);
                set("running_var", 0.5, 1.5);
            }
        }
    });
}

/// The same sequence of outputs the oracle computes (tests/py/model_torchvision.py `outputs`).
fn outputs(net: &dyn Network, x: &Tensor) -> Vec<(String, Tensor)> {
    let mut res = Vec::new();
    tch::no_grad(|| {
        res.push(("eval".to_string(), net.forward_t(x, false)));
        for (i, c) in net.conv_outputs(x, false).into_iter().enumerate() {
            res.push((format!("conv.{i}"), c.contiguous()));
        }
        if !net.arch().has_dropout() {
            res.push(("train".to_string(), net.forward_t(x, true)));
            res.push(("eval_after_train".to_string(), net.forward_t(x, false)));
        }
    });
    res
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double)).abs().max().double_value(&[])
}

#[test]
fn export_loads_strictly_into_torchvision_and_matches() {
    let dir = tempfile::tempdir().unwrap();
    write_cases(dir.path(), 1000);
    let mut expected_tensors = BTreeMap::new();
    for (i, c) in CASES.iter().enumerate() {
        tch::manual_seed(1000 + i as i64);
        let vs = nn::VarStore::new(Device::Cpu);
        let net = build(&vs.root(), &config(c));
        randomise_bn(&vs);
        save_torchvision(&vs, &dir.path().join(format!("{}.weights.safetensors", c.name))).unwrap();
        let n_bn = vs.variables().keys().filter(|n| n.ends_with(".running_mean")).count();
        expected_tensors.insert(c.name, vs.len() + n_bn);
        let x = Tensor::randn([c.batch, 3, c.size, c.size], (Kind::Float, Device::Cpu));
        let mut io = outputs(net.as_ref(), &x);
        io.push(("input".to_string(), x));
        Tensor::write_safetensors(&io, dir.path().join(format!("{}.io.safetensors", c.name))).unwrap();
    }
    let res = run_oracle("check", dir.path());
    for c in CASES {
        let r = &res[c.name];
        assert_eq!(r["strict_load"], true, "{}: {r}", c.name);
        assert_eq!(r["tensors"].as_u64().unwrap() as usize, expected_tensors[c.name], "{}", c.name);
        let scale = r["scale"].as_f64().unwrap();
        let diffs = r["diffs"].as_object().unwrap();
        let worst = diffs.values().map(|v| v.as_f64().unwrap()).fold(0.0, f64::max);
        println!(
            "export {:<15} strict load OK ({} tensors); output scale {:.3e}; max |diff| {:.3e} ({})",
            c.name,
            r["tensors"],
            scale,
            worst,
            diffs.iter().map(|(k, v)| format!("{k} {:.1e}", v.as_f64().unwrap())).collect::<Vec<_>>().join(", ")
        );
        for (k, v) in diffs {
            let d = v.as_f64().unwrap();
            assert!(d <= TOL * scale.max(1.0), "{}: {k}: max |diff| {d:e} (scale {scale:e})", c.name);
        }
        let n_conv = diffs.keys().filter(|k| k.starts_with("conv.")).count();
        let want_conv = match c.arch {
            Arch::AlexNet => 5,
            Arch::Vgg16Bn => 13,
            Arch::ResNet18 | Arch::ResNet50 => 5,
            Arch::Small => 3,
        };
        assert_eq!(n_conv, want_conv, "{}", c.name);
    }
}

#[test]
fn import_from_torchvision_reproduces_its_outputs() {
    let dir = tempfile::tempdir().unwrap();
    write_cases(dir.path(), 2000);
    run_oracle("make", dir.path());
    for c in CASES {
        let mut vs = nn::VarStore::new(Device::Cpu);
        let net = build(&vs.root(), &config(c));
        let report = load_torchvision(&mut vs, &dir.path().join(format!("{}.weights.safetensors", c.name)))
            .unwrap_or_else(|e| panic!("{}: {e}", c.name));
        let heads: &[&str] = match c.arch {
            Arch::ResNet18 | Arch::ResNet50 => &["fc.bias", "fc.weight"],
            Arch::Vgg16Bn => &["classifier.6.bias", "classifier.6.weight"],
            Arch::AlexNet | Arch::Small => &["top_layer.bias", "top_layer.weight"],
        };
        assert_eq!(report.ignored, heads, "{}", c.name);
        assert_eq!(report.loaded.len(), vs.len(), "{}", c.name);
        let n_bn = vs.variables().keys().filter(|n| n.ends_with(".running_mean")).count();
        assert_eq!(report.num_batches_tracked, n_bn, "{}", c.name);

        let io: BTreeMap<String, Tensor> =
            Tensor::read_safetensors(dir.path().join(format!("{}.io.safetensors", c.name))).unwrap().into_iter().collect();
        let ours = outputs(net.as_ref(), &io["input"]);
        assert_eq!(ours.len() + 1, io.len(), "{}: {:?}", c.name, io.keys().collect::<Vec<_>>());
        let scale = io["eval"].abs().max().double_value(&[]);
        let mut line = Vec::new();
        let mut worst = 0f64;
        for (k, t) in &ours {
            let d = max_abs_diff(t, &io[k]);
            assert!(d <= TOL * scale.max(1.0), "{}: {k}: max |diff| {d:e} (scale {scale:e})", c.name);
            worst = worst.max(d);
            line.push(format!("{k} {d:.1e}"));
        }
        println!(
            "import {:<15} {report}; output scale {scale:.3e}; max |diff| {worst:.3e} ({})",
            c.name,
            line.join(", ")
        );
    }
}

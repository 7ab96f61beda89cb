//! The model module without the PyTorch oracle: Sobel weights and their freezing, output shapes,
//! parameter counts, heads, architecture names, and the safetensors import's error handling.

use std::collections::HashMap;

use silt::model::{
    build, linear_head, load_torchvision, reset_linear, save_torchvision, Arch, HeadInit, ModelConfig, ModelError,
    Network, Sobel,
};
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};

fn cfg(arch: Arch, sobel: bool, cifar_stem: bool) -> ModelConfig {
    ModelConfig { arch, sobel, cifar_stem }
}

fn numel(t: &Tensor) -> i64 {
    t.size().iter().product()
}

fn same(a: &Tensor, b: &Tensor) -> bool {
    a.size() == b.size() && a.equal(b)
}

#[test]
fn sobel_weights_are_deepcluster_values_and_never_trained() {
    let gray = Tensor::from_slice(&[1.0f32 / 3.0; 3]).view([1, 3, 1, 1]);
    #[rustfmt::skip]
    let sob = Tensor::from_slice(&[1f32, 0., -1., 2., 0., -2., 1., 0., -1.,
                                   1., 2., 1., 0., 0., 0., -1., -2., -1.]).view([2, 1, 3, 3]);
    let (g, s) = Sobel::dc_weights();
    assert!(same(&g, &gray) && same(&s, &sob));
    for arch in Arch::ALL {
        let mut vs = nn::VarStore::new(Device::Cpu);
        let net = build(&vs.root(), &cfg(arch, true, false));
        let vars = vs.variables();
        assert!(same(&vars["sobel.0.weight"], &gray), "{arch}");
        assert!(same(&vars["sobel.0.bias"], &Tensor::zeros([1], (Kind::Float, Device::Cpu))), "{arch}");
        assert!(same(&vars["sobel.1.weight"], &sob), "{arch}");
        assert!(same(&vars["sobel.1.bias"], &Tensor::zeros([2], (Kind::Float, Device::Cpu))), "{arch}");
        let first = match arch {
            Arch::ResNet18 | Arch::ResNet50 => "conv1.weight",
            _ => "features.0.weight",
        };
        assert_eq!(vars[first].size()[1], 2, "{arch}: first conv takes the 2 Sobel channels");
        vs.freeze();
        vs.unfreeze();
        let trainable: Vec<_> = vs.trainable_variables().iter().map(|t| t.data_ptr() as usize).collect();
        for n in ["sobel.0.weight", "sobel.0.bias", "sobel.1.weight", "sobel.1.bias"] {
            assert!(!vars[n].requires_grad(), "{arch}: {n} requires grad");
            assert!(!trainable.contains(&(vars[n].data_ptr() as usize)), "{arch}: {n} is trainable");
        }
        assert_eq!(net.arch(), arch);
    }

    // A training step moves the trunk and leaves the Sobel layers exactly as they were.
    tch::manual_seed(7);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = build(&vs.root(), &cfg(Arch::Small, true, false));
    let before: HashMap<String, Tensor> = vs.variables().into_iter().map(|(k, v)| (k, v.copy())).collect();
    let mut opt = nn::Sgd { momentum: 0.9, dampening: 0.0, wd: 1e-4, nesterov: false }.build(&vs, 0.1).unwrap();
    let x = Tensor::randn([4, 3, 28, 28], (Kind::Float, Device::Cpu));
    let loss = net.forward_t(&x, true).relu().pow_tensor_scalar(2).mean(Kind::Float);
    opt.backward_step(&loss);
    let after = vs.variables();
    for n in ["sobel.0.weight", "sobel.0.bias", "sobel.1.weight", "sobel.1.bias"] {
        assert!(same(&before[n], &after[n]), "{n} changed in a training step");
    }
    assert!(!same(&before["features.0.weight"], &after["features.0.weight"]), "the trunk did not train");
}

#[test]
fn conv_outputs_and_features_have_the_documented_shapes() {
    let cases: Vec<(ModelConfig, i64, Vec<[i64; 3]>)> = vec![
        (cfg(Arch::Small, false, false), 28, vec![[32, 28, 28], [64, 14, 14], [128, 7, 7]]),
        (cfg(Arch::Small, true, false), 32, vec![[32, 32, 32], [64, 16, 16], [128, 8, 8]]),
        (
            cfg(Arch::AlexNet, true, false),
            224,
            vec![[96, 55, 55], [256, 27, 27], [384, 13, 13], [384, 13, 13], [256, 13, 13]],
        ),
        (
            cfg(Arch::Vgg16Bn, false, false),
            32,
            vec![
                [64, 32, 32], [64, 32, 32], [128, 16, 16], [128, 16, 16],
                [256, 8, 8], [256, 8, 8], [256, 8, 8],
                [512, 4, 4], [512, 4, 4], [512, 4, 4],
                [512, 2, 2], [512, 2, 2], [512, 2, 2],
            ],
        ),
        (
            cfg(Arch::ResNet18, false, false),
            64,
            vec![[64, 16, 16], [64, 16, 16], [128, 8, 8], [256, 4, 4], [512, 2, 2]],
        ),
        (
            cfg(Arch::ResNet18, false, true),
            32,
            vec![[64, 32, 32], [64, 32, 32], [128, 16, 16], [256, 8, 8], [512, 4, 4]],
        ),
        (
            cfg(Arch::ResNet50, true, false),
            64,
            vec![[64, 16, 16], [256, 16, 16], [512, 8, 8], [1024, 4, 4], [2048, 2, 2]],
        ),
    ];
    for (c, size, want) in cases {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        let net = build(&vs.root(), &c);
        let x = Tensor::randn([2, 3, size, size], (Kind::Float, Device::Cpu));
        let (feat, convs) = tch::no_grad(|| (net.forward_t(&x, false), net.conv_outputs(&x, false)));
        assert_eq!(net.feature_dim(), c.arch.feature_dim(), "{c:?}");
        assert_eq!(feat.size(), vec![2, c.arch.feature_dim()], "{c:?}");
        let got: Vec<Vec<i64>> = convs.iter().map(|t| t.size()).collect();
        let want: Vec<Vec<i64>> = want.iter().map(|s| vec![2, s[0], s[1], s[2]]).collect();
        assert_eq!(got, want, "{c:?}");
        for t in &convs {
            assert!(t.min().double_value(&[]) >= 0.0, "{c:?}: conv outputs are post-ReLU");
        }
        // Trunk outputs of AlexNet/VGG/Small are pre-ReLU: some are negative.
        if !matches!(c.arch, Arch::ResNet18 | Arch::ResNet50) {
            assert!(feat.min().double_value(&[]) < 0.0, "{c:?}: expected a pre-ReLU output");
        }
        // Train mode runs too (batch statistics, dropout).
        let ft = net.forward_t(&x, true);
        assert_eq!(ft.size(), feat.size());
    }
}

#[test]
fn trainable_parameter_counts_match_the_reference_architectures() {
    let count = |c: ModelConfig| {
        let vs = nn::VarStore::new(Device::Cpu);
        let _net = build(&vs.root(), &c);
        vs.trainable_variables().iter().map(numel).sum::<i64>()
    };
    // torchvision's totals minus the heads (fc 512*1000+1000, 2048*1000+1000; classifier.6 4096*1000+1000).
    assert_eq!(count(cfg(Arch::ResNet18, false, false)), 11_689_512 - 513_000);
    assert_eq!(count(cfg(Arch::ResNet50, false, false)), 25_557_032 - 2_049_000);
    assert_eq!(count(cfg(Arch::Vgg16Bn, false, false)), 138_365_992 - 4_097_000);
    // CIFAR stem: conv1 64x3x3x3 instead of 64x3x7x7.
    assert_eq!(count(cfg(Arch::ResNet18, false, true)), 11_176_512 - 64 * 3 * 49 + 64 * 3 * 9);
    // DeepCluster AlexNet-BN from its spec; Sobel: conv1 has 2 input channels, Sobel not trainable.
    let alex = |cin: i64| {
        let convs = [(cin, 96, 11), (96, 256, 5), (256, 384, 3), (384, 384, 3), (384, 256, 3)];
        let c: i64 = convs.iter().map(|&(i, o, k)| o * i * k * k + o + 2 * o).sum();
        c + 9216 * 4096 + 4096 + 4096 * 4096 + 4096
    };
    assert_eq!(count(cfg(Arch::AlexNet, false, false)), alex(3));
    assert_eq!(count(cfg(Arch::AlexNet, true, false)), alex(2));
    let small = 32 * 3 * 9 + 32 + 64 + 64 * 32 * 9 + 64 + 128 + 128 * 64 * 9 + 128 + 256 + 1152 * 256 + 256;
    assert_eq!(count(cfg(Arch::Small, false, false)), small);
}

#[test]
fn arch_names_parse_print_and_serialise() {
    use clap::ValueEnum;
    for a in Arch::ALL {
        assert_eq!(a.to_string().parse::<Arch>().unwrap(), a);
        assert_eq!(Arch::from_str(&a.to_string(), false).unwrap(), a);
        let j = serde_json::to_string(&a).unwrap();
        assert_eq!(j, format!("\"{a}\""));
        assert_eq!(serde_json::from_str::<Arch>(&j).unwrap(), a);
    }
    let names: Vec<String> = Arch::ALL.iter().map(|a| a.to_string()).collect();
    assert_eq!(names, ["alexnet", "vgg16", "resnet18", "resnet50", "small"]);
    assert_eq!("vgg16_bn".parse::<Arch>().unwrap(), Arch::Vgg16Bn);
    assert!(matches!("resnet101".parse::<Arch>(), Err(ModelError::UnknownArch(_))));
    let c = ModelConfig { arch: Arch::ResNet18, sobel: true, cifar_stem: true };
    let back: ModelConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
    assert_eq!(back, c);
}

#[test]
fn heads_are_initialised_as_documented() {
    tch::manual_seed(11);
    let vs = nn::VarStore::new(Device::Cpu);
    let mut dc = linear_head(&(vs.root() / "top_layer"), 4096, 1000, HeadInit::Normal001);
    let td = linear_head(&(vs.root() / "fc"), 2048, 1000, HeadInit::TorchDefault);
    let names: Vec<String> = {
        let mut n: Vec<String> = vs.variables().into_keys().collect();
        n.sort();
        n
    };
    assert_eq!(names, ["fc.bias", "fc.weight", "top_layer.bias", "top_layer.weight"]);
    let std = dc.ws.std(true).double_value(&[]);
    assert!((std - 0.01).abs() < 0.0002, "N(0, 0.01) head: std {std}");
    assert_eq!(dc.bs.as_ref().unwrap().abs().max().double_value(&[]), 0.0);
    let bound = 1.0 / 2048f64.sqrt();
    let wmax = td.ws.abs().max().double_value(&[]);
    let bmax = td.bs.as_ref().unwrap().abs().max().double_value(&[]);
    assert!(wmax <= bound && wmax > 0.99 * bound, "torch-default weight max {wmax}, bound {bound}");
    assert!(bmax <= bound && bmax > 0.9 * bound, "torch-default bias max {bmax}, bound {bound}");
    let std = td.ws.std(true).double_value(&[]);
    assert!((std / (bound / 3f64.sqrt()) - 1.0).abs() < 0.01, "uniform std {std}");

    let ptr = dc.ws.data_ptr();
    let old = dc.ws.copy();
    reset_linear(&mut dc, HeadInit::Normal001);
    assert_eq!(dc.ws.data_ptr(), ptr, "reset in place");
    assert!(!dc.ws.equal(&old));
    assert!(dc.ws.requires_grad());
}

fn resnet18(seed: i64, cifar_stem: bool) -> (nn::VarStore, Box<dyn Network>) {
    tch::manual_seed(seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = build(&vs.root(), &cfg(Arch::ResNet18, false, cifar_stem));
    (vs, net)
}

#[test]
fn safetensors_round_trip_and_import_errors_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r18.safetensors");
    let (vs, net) = resnet18(1, false);
    // Non-trivial running statistics: one train-mode pass.
    let x = Tensor::randn([4, 3, 32, 32], (Kind::Float, Device::Cpu));
    let _ = tch::no_grad(|| net.forward_t(&x, true));
    save_torchvision(&vs, &path).unwrap();
    assert!(!dir.path().join("r18.safetensors.partial").exists());

    // The file: every variable plus an int64 scalar num_batches_tracked per BatchNorm (20 in ResNet-18).
    let file: HashMap<String, Tensor> = Tensor::read_safetensors(&path).unwrap().into_iter().collect();
    let nbt: Vec<&String> = file.keys().filter(|k| k.ends_with(".num_batches_tracked")).collect();
    assert_eq!(nbt.len(), 20);
    assert_eq!(file.len(), vs.len() + 20);
    for k in nbt {
        assert_eq!(file[k].kind(), Kind::Int64);
        assert!(file[k].size().is_empty(), "{k} is a 0-d tensor as in PyTorch");
        assert!(file.contains_key(&k.replace("num_batches_tracked", "running_var")));
    }
    assert!(file.contains_key("layer2.0.downsample.0.weight") && file.contains_key("layer2.0.downsample.1.running_mean"));

    // Round trip: a differently-seeded network becomes the same function.
    let (mut vs2, net2) = resnet18(2, false);
    let report = load_torchvision(&mut vs2, &path).unwrap();
    assert!(report.ignored.is_empty());
    assert_eq!(report.num_batches_tracked, 20);
    assert_eq!(report.loaded.len(), vs2.len());
    let (a, b) = tch::no_grad(|| (net.forward_t(&x, false), net2.forward_t(&x, false)));
    assert!(a.equal(&b));

    // Helper: write `file` with a modification.
    let write = |name: &str, f: &dyn Fn(&mut HashMap<String, Tensor>)| {
        let mut m: HashMap<String, Tensor> = file.iter().map(|(k, v)| (k.clone(), v.copy())).collect();
        f(&mut m);
        let p = dir.path().join(name);
        let v: Vec<(String, Tensor)> = m.into_iter().collect();
        Tensor::write_safetensors(&v, &p).unwrap();
        p
    };
    let (mut vs3, _net3) = resnet18(3, false);
    let snapshot = vs3.variables()["layer1.0.conv1.weight"].copy();
    let unchanged = |vs: &nn::VarStore| vs.variables()["layer1.0.conv1.weight"].equal(&snapshot);

    // Missing tensors: all named, nothing loaded.
    let p = write("missing.safetensors", &|m| {
        m.remove("layer4.1.bn2.running_var");
        m.remove("conv1.weight");
    });
    match load_torchvision(&mut vs3, &p) {
        Err(e @ ModelError::Missing { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("layer4.1.bn2.running_var") && msg.contains("conv1.weight"), "{msg}");
        }
        other => panic!("expected Missing, got {other:?}"),
    }
    assert!(unchanged(&vs3));

    // Shape mismatch (a CIFAR-stem export into an ImageNet-stem network).
    let (vs_c, _n) = resnet18(4, true);
    let pc = dir.path().join("cifar.safetensors");
    save_torchvision(&vs_c, &pc).unwrap();
    match load_torchvision(&mut vs3, &pc) {
        Err(ModelError::Shape { name, expected, found, .. }) => {
            assert_eq!(name, "conv1.weight");
            assert_eq!((expected, found), (vec![64, 3, 7, 7], vec![64, 3, 3, 3]));
        }
        other => panic!("expected Shape, got {other:?}"),
    }
    assert!(unchanged(&vs3));

    // Wrong dtype.
    let p = write("dtype.safetensors", &|m| {
        m.insert("bn1.running_mean".into(), Tensor::zeros([64], (Kind::Int64, Device::Cpu)));
    });
    match load_torchvision(&mut vs3, &p) {
        Err(ModelError::Dtype { name, .. }) => assert_eq!(name, "bn1.running_mean"),
        other => panic!("expected Dtype, got {other:?}"),
    }
    assert!(unchanged(&vs3));

    // Float64 weights load (converted); an extra head is reported, not an error.
    let p = write("f64.safetensors", &|m| {
        for v in m.values_mut() {
            if v.kind() == Kind::Float {
                *v = v.to_kind(Kind::Double);
            }
        }
        m.insert("fc.weight".into(), Tensor::zeros([1000, 512], (Kind::Float, Device::Cpu)));
        m.insert("fc.bias".into(), Tensor::zeros([1000], (Kind::Float, Device::Cpu)));
    });
    let report = load_torchvision(&mut vs3, &p).unwrap();
    assert_eq!(report.ignored, ["fc.bias", "fc.weight"]);
    assert_eq!(vs3.variables()["conv1.weight"].kind(), Kind::Float);
    assert!(vs3.variables()["layer1.0.conv1.weight"].equal(&vs.variables()["layer1.0.conv1.weight"]));
    assert!(report.to_string().contains("ignored 2 not in the network: fc.bias, fc.weight"), "{report}");

    // Not a safetensors file / no file: errors that name the path, no panic.
    let bad = dir.path().join("bad.safetensors");
    std::fs::write(&bad, b"\xff\xff\xff\xff\xff\xff\xff\x7fgarbage").unwrap();
    for p in [bad, dir.path().join("absent.safetensors")] {
        match load_torchvision(&mut vs3, &p) {
            Err(e @ ModelError::File { .. }) => assert!(e.to_string().contains(&*p.to_string_lossy()), "{e}"),
            other => panic!("expected File error, got {other:?}"),
        }
    }
    let truncated = dir.path().join("trunc.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    assert!(matches!(load_torchvision(&mut vs3, &truncated), Err(ModelError::File { .. })));
}

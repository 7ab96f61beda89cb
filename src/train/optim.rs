//! SGD with momentum, weight decay and Nesterov, with PyTorch's exact update rule — written
//! here rather than taken from tch because the momentum buffers must go into checkpoints (tch's
//! optimiser keeps them inside libtorch where they cannot be saved) for resumption to be exact.
//!
//! PyTorch `torch.optim.SGD` (dampening 0): g = ∇ + wd·p; first step b = g, then b = m·b + g;
//! g = g + m·b (Nesterov) or g = b; p -= lr·g.
//!
//! With LARS (SimCLR v1 lars_optimizer.py, methods.md §1.11) the gradient of every parameter with
//! more than one dimension first becomes trust·(∇ + wd·p), trust = η‖p‖/‖∇ + wd·p‖ (1 when either
//! norm is 0); vectors (biases, BatchNorm) get neither weight decay nor adaptation. The momentum
//! step above then equals SimCLR's v ← m·v + lr·g, w ← w − v exactly at a constant learning rate
//! (LARC-style, as SwAV wraps SGD).

use tch::Tensor;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdConfig {
    pub momentum: f64,
    pub weight_decay: f64,
    pub nesterov: bool,
    /// LARS trust coefficient η (SimCLR 0.001); None = plain SGD.
    pub lars_eta: Option<f64>,
}

impl SgdConfig {
    pub fn new(momentum: f64, weight_decay: f64, nesterov: bool) -> Self {
        SgdConfig { momentum, weight_decay, nesterov, lars_eta: None }
    }

    pub fn with_lars(self, eta: f64) -> Self {
        SgdConfig { lars_eta: Some(eta), ..self }
    }
}

/// One parameter group: named tensors updated with one learning rate.
#[derive(Debug)]
pub struct Sgd {
    pub cfg: SgdConfig,
    names: Vec<String>,
    params: Vec<Tensor>,
    buffers: Vec<Option<Tensor>>,
}

impl Sgd {
    /// Takes the parameters that require a gradient (frozen ones, e.g. the Sobel filters, are
    /// left out), sorted by name so that the state is laid out the same on every run.
    pub fn new(named: impl IntoIterator<Item = (String, Tensor)>, cfg: SgdConfig) -> Self {
        let mut named: Vec<(String, Tensor)> = named.into_iter().filter(|(_, t)| t.requires_grad()).collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let buffers = named.iter().map(|_| None).collect();
        let (names, params) = named.into_iter().unzip();
        Sgd { cfg, names, params, buffers }
    }

    pub fn len(&self) -> usize {
        self.params.len()
    }
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.detach_();
                let _ = g.zero_();
            }
        }
    }

    /// One update with learning rate `lr`. Parameters without a gradient are skipped, as PyTorch
    /// skips them. Works in place (the gradient tensor takes the weight-decay term), so a step
    /// allocates nothing after the first: temporaries the size of the model every step cost more
    /// than the arithmetic on a CPU.
    pub fn step(&mut self, lr: f64) {
        let SgdConfig { momentum, weight_decay, nesterov, lars_eta } = self.cfg;
        tch::no_grad(|| {
            for (p, buf) in self.params.iter_mut().zip(self.buffers.iter_mut()) {
                let mut g = p.grad();
                if !g.defined() {
                    continue;
                }
                let scalar = |v: f64| Tensor::from(v).to_kind(p.kind()).to_device(p.device());
                match lars_eta {
                    Some(eta) if p.dim() > 1 => {
                        if weight_decay != 0.0 {
                            let _ = g.f_addcmul_(p, &scalar(weight_decay));
                        }
                        let (w_norm, g_norm) = (p.norm().double_value(&[]), g.norm().double_value(&[]));
                        if w_norm > 0.0 && g_norm > 0.0 {
                            let _ = g.g_mul_scalar_(eta * w_norm / g_norm);
                        }
                    }
                    Some(_) => {}
                    None if weight_decay != 0.0 => {
                        let _ = g.f_addcmul_(p, &scalar(weight_decay));
                    }
                    None => {}
                }
                let update = if momentum != 0.0 {
                    let b = match buf.take() {
                        None => g.copy(),
                        Some(mut b) => {
                            let _ = b.g_mul_scalar_(momentum);
                            let _ = b.g_add_(&g);
                            b
                        }
                    };
                    let u = if nesterov {
                        let _ = g.f_addcmul_(&b, &scalar(momentum));
                        g.shallow_clone()
                    } else {
                        b.shallow_clone()
                    };
                    *buf = Some(b);
                    u
                } else {
                    g.shallow_clone()
                };
                let _ = p.f_addcmul_(&update, &scalar(-lr));
            }
        });
    }

    /// Momentum buffers as (name, tensor) under `prefix`, for a checkpoint.
    pub fn state(&self, prefix: &str) -> Vec<(String, Tensor)> {
        self.names
            .iter()
            .zip(&self.buffers)
            .filter_map(|(n, b)| b.as_ref().map(|b| (format!("{prefix}{n}"), b.shallow_clone())))
            .collect()
    }

    /// Restores the buffers saved by [`Sgd::state`]; a parameter with no saved buffer starts
    /// fresh (it had not been stepped). Returns the number restored.
    pub fn load_state(&mut self, prefix: &str, saved: &std::collections::HashMap<String, Tensor>) -> Result<usize, String> {
        let mut n = 0;
        for ((name, p), buf) in self.names.iter().zip(&self.params).zip(self.buffers.iter_mut()) {
            match saved.get(&format!("{prefix}{name}")) {
                Some(t) if t.size() == p.size() => {
                    *buf = Some(t.to_device(p.device()).to_kind(p.kind()));
                    n += 1;
                }
                Some(t) => return Err(format!("momentum buffer {prefix}{name}: saved shape {:?}, parameter {:?}", t.size(), p.size())),
                None => *buf = None,
            }
        }
        Ok(n)
    }
}

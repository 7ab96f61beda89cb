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

extern "C" {
    fn silt_grad_reset(t: *mut torch_sys::C_tensor);
}

/// `zero_grad(set_to_none=True)`: the gradients become undefined, and the next backward writes
/// them afresh instead of adding to zeros.
pub fn clear_grads(params: &[Tensor]) {
    for p in params {
        // SAFETY: `as_ptr` is the live `at::Tensor*` of `p` (csrc/grad_shim.cpp); resetting its
        // grad is what PyTorch's zero_grad(set_to_none=True) does.
        unsafe { silt_grad_reset(p.as_ptr() as *mut torch_sys::C_tensor) }
    }
}

/// Zeroes (in place, keeping them defined) the gradients of `params` that have one.
pub fn zero_grads(params: &[Tensor]) {
    for p in params {
        let mut g = p.grad();
        if g.defined() {
            let _ = g.detach_();
            let _ = g.zero_();
        }
    }
}

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

    /// The parameters, sorted by name (the order every rank uses when averaging gradients).
    pub fn params(&self) -> &[Tensor] {
        &self.params
    }
    pub fn len(&self) -> usize {
        self.params.len()
    }
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    pub fn zero_grad(&mut self) {
        zero_grads(&self.params);
    }

    /// PyTorch's `zero_grad(set_to_none=True)` (its default): see [`clear_grads`].
    pub fn clear_grad(&mut self) {
        clear_grads(&self.params);
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

/// Momentum SGD with weight decay for a large matrix of which each step only touches some rows
/// (PIC's instance classifier W with negative sampling): the rows a step leaves out get no
/// gradient, but with weight decay and momentum they would still move — `torch.optim.SGD` on the
/// whole matrix steps every row, with ∇ = 0 for the untouched ones. Stepping all N rows every
/// step costs O(N·dim); here a row is brought up to date only when it is touched again, in
/// closed form.
///
/// With ∇ = 0 one step of learning rate η is linear in (w, b) and the same for every row:
/// b' = m·b + wd·w, w' = w − η·b', i.e. (w, b) ← M(η)·(w, b) with
/// M(η) = [[1 − η·wd, −η·m], [wd, m]]. A row last stepped at step s is brought to step t − 1 by
/// M(η_{t−1})···M(η_{s+1}), computed in f64 from the logged learning rates (the per-iteration
/// schedule changes η every step, so a power of one matrix would not do). The momentum buffer
/// starts at zero, which equals PyTorch's first-step rule b = g. Nesterov and LARS are not
/// linear in this way and are not supported.
#[derive(Debug)]
pub struct LazyRowSgd {
    pub momentum: f64,
    pub weight_decay: f64,
    /// Momentum buffer, the shape of the matrix.
    pub buffer: Tensor,
    /// Per row: the step that last updated it (−1: never).
    pub last: Vec<i64>,
    /// The learning rate of every step taken so far; its length is the number of steps.
    pub lrs: Vec<f64>,
}

impl LazyRowSgd {
    pub fn new(rows: i64, cols: i64, momentum: f64, weight_decay: f64, device: tch::Device) -> Self {
        LazyRowSgd { momentum, weight_decay, buffer: Tensor::zeros([rows, cols], (tch::Kind::Float, device)), last: vec![-1; rows as usize], lrs: Vec::new() }
    }

    /// Steps taken so far (the index of the next one).
    pub fn steps(&self) -> i64 {
        self.lrs.len() as i64
    }

    /// The 2×2 map (row-major) that applies gradient-free steps s+1 ..= t−1 to (w, b), for
    /// every distinct `s` of `since` (t = the next step).
    fn catch_up_maps(&self, since: &[i64]) -> std::collections::HashMap<i64, [f64; 4]> {
        let t = self.steps();
        let mut wanted: Vec<i64> = since.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        let mut maps = std::collections::HashMap::with_capacity(wanted.len());
        // Walk back from t − 1: R(s) = M_{t−1}···M_{s+1}, R(s − 1) = R(s)·M_s.
        let (m, wd) = (self.momentum, self.weight_decay);
        let mut r = [1.0, 0.0, 0.0, 1.0];
        let mut s = t - 1;
        for &want in wanted.iter().rev() {
            while s > want {
                let eta = self.lrs[s as usize];
                let mm = [1.0 - eta * wd, -eta * m, wd, m];
                r = [r[0] * mm[0] + r[1] * mm[2], r[0] * mm[1] + r[1] * mm[3], r[2] * mm[0] + r[3] * mm[2], r[2] * mm[1] + r[3] * mm[3]];
                s -= 1;
            }
            maps.insert(want, r);
        }
        maps
    }

    /// Brings rows `rows` of `w` (and their momentum) up to date: applies the gradient-free
    /// steps they missed since they were last updated.
    pub fn catch_up(&mut self, w: &Tensor, rows: &[i64]) {
        let since: Vec<i64> = rows.iter().map(|&r| self.last[r as usize]).collect();
        if since.iter().all(|&s| s == self.steps() - 1) {
            return;
        }
        let maps = self.catch_up_maps(&since);
        let coef = |k: usize| {
            let v: Vec<f32> = since.iter().map(|s| maps[s][k] as f32).collect();
            Tensor::from_slice(&v).to_device(w.device()).unsqueeze(1)
        };
        let idx = Tensor::from_slice(rows).to_device(w.device());
        tch::no_grad(|| {
            let (wr, br) = (w.index_select(0, &idx), self.buffer.index_select(0, &idx));
            let w_new = &wr * coef(0) + &br * coef(1);
            let b_new = &wr * coef(2) + &br * coef(3);
            let mut w = w.shallow_clone();
            let _ = w.index_copy_(0, &idx, &w_new);
            let _ = self.buffer.index_copy_(0, &idx, &b_new);
        });
        for &r in rows {
            self.last[r as usize] = self.steps() - 1;
        }
    }

    /// Brings every row up to date (before reading the whole matrix).
    pub fn catch_up_all(&mut self, w: &Tensor) {
        let rows: Vec<i64> = (0..self.last.len() as i64).collect();
        self.catch_up(w, &rows);
    }

    /// One step of learning rate `lr` for rows `rows` (already caught up) with their gradient
    /// `grad` [rows, cols]; PyTorch's rule g = ∇ + wd·w, b = m·b + g, w −= lr·b. Rows not named
    /// fall one step behind, to be caught up when next touched. Ends the step.
    pub fn step(&mut self, w: &Tensor, rows: &[i64], grad: &Tensor, lr: f64) {
        let idx = Tensor::from_slice(rows).to_device(w.device());
        tch::no_grad(|| {
            let wr = w.index_select(0, &idx);
            let g = grad + &wr * self.weight_decay;
            let b = self.buffer.index_select(0, &idx) * self.momentum + g;
            let w_new = wr - &b * lr;
            let mut w = w.shallow_clone();
            let _ = w.index_copy_(0, &idx, &w_new);
            let _ = self.buffer.index_copy_(0, &idx, &b);
        });
        let t = self.steps();
        for &r in rows {
            self.last[r as usize] = t;
        }
        self.lrs.push(lr);
    }
}

//! `silt dist check`: every collective on known inputs, with the value each rank must see, so a
//! new cluster (interfaces, ports, launcher variables) can be checked before a long job; the
//! multi-process tests run it too. `silt dist bench`: all-reduce bandwidth.

use super::error::Result;
use super::group::{ProcessGroup, ReduceOp};
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;
use tch::{Kind, Tensor};

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub got: Vec<f64>,
    pub want: Vec<f64>,
}

fn check(name: &'static str, got: &Tensor, want: Vec<f64>) -> Check {
    let got: Vec<f64> = Vec::try_from(got.to_kind(Kind::Double).reshape([-1])).unwrap_or_default();
    let ok = got.len() == want.len() && got.iter().zip(&want).all(|(a, b)| (a - b).abs() <= 1e-9 * b.abs().max(1.0));
    Check { name, ok, got, want }
}

/// Runs every collective once; every rank of `g` must call it.
pub fn run_checks(g: &Arc<ProcessGroup>) -> Result<Vec<Check>> {
    let (r, w) = (g.rank() as f64, g.size() as f64);
    let ranks: Vec<f64> = (0..g.size()).map(|i| i as f64).collect();
    let mut out = Vec::new();

    for (name, op, want) in [
        ("all_reduce sum", ReduceOp::Sum, w * (w + 1.0) / 2.0),
        ("all_reduce avg", ReduceOp::Avg, (w + 1.0) / 2.0),
        ("all_reduce max", ReduceOp::Max, w),
        ("all_reduce min", ReduceOp::Min, 1.0),
    ] {
        let mut t = Tensor::from_slice(&[r + 1.0, 2.0 * (r + 1.0)]);
        g.all_reduce(&mut t, op)?;
        let second = match op {
            ReduceOp::Min => 2.0,
            _ => 2.0 * want,
        };
        out.push(check(name, &t, vec![want, second]));
    }

    let mut coalesced = vec![Tensor::from_slice(&[r]), Tensor::from_slice(&[1.0f64, r, 2.0])];
    g.all_reduce_coalesced(&mut coalesced, ReduceOp::Sum)?;
    let s: f64 = ranks.iter().sum();
    out.push(check("all_reduce_coalesced", &Tensor::cat(&coalesced, 0), vec![s, w, s, 2.0 * w]));

    let root = g.size() - 1;
    let mut b = Tensor::from_slice(&[r * 10.0, 7.0]);
    g.broadcast(&mut b, root)?;
    out.push(check("broadcast", &b, vec![root as f64 * 10.0, 7.0]));

    let gathered = g.all_gather(&Tensor::from_slice(&[r, -r]))?;
    out.push(check("all_gather", &gathered, ranks.iter().flat_map(|&i| [i, -i]).collect()));

    // rank i contributes i + 1 rows of value i
    let rows = Tensor::full([g.rank() as i64 + 1, 2], r, (Kind::Double, tch::Device::Cpu));
    let parts = g.all_gather_varying(&rows)?;
    let flat = Tensor::cat(&parts, 0);
    out.push(check("all_gather unequal parts", &flat, ranks.iter().flat_map(|&i| std::iter::repeat_n(i, 2 * (i as usize + 1))).collect()));

    // every rank sends [0, 1, ..., w-1] + rank; block i of the sum is i·w + Σ ranks
    let send = Tensor::from_slice(&ranks) + r;
    let scattered = g.reduce_scatter(&send, ReduceOp::Sum)?;
    out.push(check("reduce_scatter", &scattered, vec![r * w + s]));

    // the backward of the autograd all-gather sums every rank's gradient of this rank's slice
    let x = Tensor::from_slice(&[r + 1.0]).set_requires_grad(true);
    let all = g.all_gather_autograd(&x)?;
    let weights = Tensor::from_slice(&ranks) + 1.0;
    (&all * &weights).sum(Kind::Double).backward();
    out.push(check("all_gather autograd (values)", &all.detach(), ranks.iter().map(|i| i + 1.0).collect()));
    out.push(check("all_gather autograd (gradient)", &x.grad(), vec![w * (r + 1.0)]));

    // the overlapping reducer: one parameter per bucket, buckets in reverse order [b], [a], [c];
    // backward produces b's and a's gradients, each bucket is sent from its hook; c (unused here)
    // is sent as zeros when the step finishes
    let c = Tensor::zeros([2], (Kind::Double, tch::Device::Cpu)).set_requires_grad(true);
    let a = Tensor::ones([3], (Kind::Double, tch::Device::Cpu)).set_requires_grad(true);
    let b = Tensor::ones([2], (Kind::Double, tch::Device::Cpu)).set_requires_grad(true);
    {
        let mut reducer = super::reducer::Reducer::new(g.clone(), &[c.shallow_clone(), a.shallow_clone(), b.shallow_clone()], 8)?;
        reducer.prepare()?;
        ((&a * (r + 1.0)).sum(Kind::Double) + (&b * (2.0 * (r + 1.0))).sum(Kind::Double)).backward();
        let early = reducer.finish()?;
        let mean = (w + 1.0) / 2.0;
        let got = Tensor::cat(&[a.grad(), b.grad(), c.grad(), Tensor::from_slice(&[early as f64, reducer.buckets() as f64])], 0);
        out.push(check("reducer (averaged during backward)", &got, vec![mean, mean, mean, 2.0 * mean, 2.0 * mean, 0.0, 0.0, 2.0, 3.0]));
    }

    // the even ranks form a group of their own
    let evens: Vec<usize> = (0..g.size()).step_by(2).collect();
    if let Some(sub) = g.subgroup(&evens, "evens")? {
        let mut t = Tensor::from_slice(&[r]);
        sub.all_reduce(&mut t, ReduceOp::Sum)?;
        out.push(check("subgroup all_reduce", &t, vec![evens.iter().sum::<usize>() as f64]));
    }
    g.barrier()?;
    Ok(out)
}

#[derive(Debug, Clone, Serialize)]
pub struct Bandwidth {
    pub ranks: usize,
    pub megabytes: f64,
    pub iterations: usize,
    pub mean_ms: f64,
    pub best_ms: f64,
    /// Algorithm bandwidth: bytes / mean time.
    pub gb_per_s: f64,
    /// NCCL-tests' bus bandwidth: algorithm bandwidth × 2(n − 1)/n.
    pub bus_gb_per_s: f64,
}

/// Times `iterations` all-reduces (sum) of `megabytes` of f32 after one warm-up.
pub fn bandwidth(g: &ProcessGroup, megabytes: f64, iterations: usize) -> Result<Bandwidth> {
    let n = ((megabytes * 1e6) / 4.0).max(1.0) as i64;
    let mut t = Tensor::ones([n], tch::kind::FLOAT_CPU);
    g.all_reduce(&mut t, ReduceOp::Sum)?;
    let mut times = Vec::with_capacity(iterations);
    for _ in 0..iterations.max(1) {
        g.barrier()?;
        let started = Instant::now();
        g.all_reduce(&mut t, ReduceOp::Sum)?;
        times.push(started.elapsed().as_secs_f64());
    }
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    let best = times.iter().copied().fold(f64::INFINITY, f64::min);
    let bytes = n as f64 * 4.0;
    let w = g.size() as f64;
    Ok(Bandwidth {
        ranks: g.size(),
        megabytes: bytes / 1e6,
        iterations: times.len(),
        mean_ms: mean * 1e3,
        best_ms: best * 1e3,
        gb_per_s: bytes / mean / 1e9,
        bus_gb_per_s: bytes / mean / 1e9 * 2.0 * (w - 1.0) / w,
    })
}

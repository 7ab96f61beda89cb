//! Data-parallel training over a process group, as PyTorch's DistributedDataParallel does it:
//! rank 0's weights and buffers are broadcast once at the start (and buffers before every step,
//! DDP's `broadcast_buffers`), and after every backward the gradients are averaged over the
//! ranks in flattened buckets of about 25 MB, all buckets in flight at once.

use super::error::Result;
use super::group::{ProcessGroup, ReduceOp};
use tch::Tensor;

/// DDP's default bucket size.
pub const BUCKET_BYTES: usize = 25 << 20;

/// Copies rank `root`'s values of `tensors` into every rank's, bucket by bucket.
pub fn broadcast_tensors(group: &ProcessGroup, tensors: &[Tensor], root: usize) -> Result<()> {
    for bucket in buckets(tensors, BUCKET_BYTES) {
        let parts: Vec<&Tensor> = bucket.iter().map(|&i| &tensors[i]).collect();
        let mut flat = flatten(&parts);
        group.broadcast(&mut flat, root)?;
        unflatten_into(&flat, &parts);
    }
    Ok(())
}

/// Replaces every parameter's gradient with its mean over the ranks.
///
/// Every rank must pass the same parameters in the same order. A parameter that has no gradient
/// yet (a head created this epoch, or a rank whose batch was empty) is given a zero gradient
/// first, so that every rank's buckets have the same layout and every rank updates the same
/// parameters.
pub fn average_gradients<'a>(group: &ProcessGroup, params: impl IntoIterator<Item = &'a Tensor>, bucket_bytes: usize) -> Result<()> {
    let params: Vec<&Tensor> = params.into_iter().filter(|p| p.requires_grad()).collect();
    define_missing_gradients(&params);
    let grads: Vec<Tensor> = params.iter().map(|p| p.grad()).collect();
    let layout = buckets(&grads, bucket_bytes);
    let mut flats: Vec<Tensor> = layout.iter().map(|b| flatten(&b.iter().map(|&i| &grads[i]).collect::<Vec<_>>())).collect();
    let works = flats.iter_mut().map(|f| group.all_reduce_async(f, ReduceOp::Sum)).collect::<Result<Vec<_>>>()?;
    for w in works {
        w.wait()?;
    }
    let world = group.size() as f64;
    tch::no_grad(|| {
        for (flat, bucket) in flats.iter_mut().zip(&layout) {
            let _ = flat.g_div_scalar_(world);
            unflatten_into(flat, &bucket.iter().map(|&i| &grads[i]).collect::<Vec<_>>());
        }
    });
    Ok(())
}

/// Gives parameters without a gradient a zero one (one backward of Σ 0·p).
fn define_missing_gradients(params: &[&Tensor]) {
    let missing: Vec<Tensor> = params.iter().filter(|p| !p.grad().defined()).map(|p| p.sum(p.kind()) * 0.0).collect();
    if !missing.is_empty() {
        Tensor::stack(&missing, 0).sum(tch::Kind::Float).backward();
    }
}

/// Consecutive runs of tensors of one dtype whose sizes add up to about `bytes`.
fn buckets(tensors: &[Tensor], bytes: usize) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut size = 0usize;
    for (i, t) in tensors.iter().enumerate() {
        let b = t.numel() * t.kind().elt_size_in_bytes();
        let same_kind = out.last().and_then(|l| l.first()).is_some_and(|&j| tensors[j].kind() == t.kind());
        match out.last_mut() {
            Some(last) if same_kind && size + b <= bytes.max(1) => last.push(i),
            _ => {
                out.push(vec![i]);
                size = 0;
            }
        }
        size += b;
    }
    out
}

fn flatten(parts: &[&Tensor]) -> Tensor {
    let flat: Vec<Tensor> = parts.iter().map(|t| t.detach().reshape([-1])).collect();
    Tensor::cat(&flat, 0)
}

fn unflatten_into(flat: &Tensor, parts: &[&Tensor]) {
    let mut offset = 0i64;
    tch::no_grad(|| {
        for t in parts {
            let n = t.numel() as i64;
            let mut dst = t.detach();
            dst.copy_(&flat.narrow(0, offset, n).reshape(t.size()));
            offset += n;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_respect_size_and_dtype() {
        let ts = vec![Tensor::zeros([10], tch::kind::FLOAT_CPU), Tensor::zeros([10], tch::kind::FLOAT_CPU), Tensor::zeros([30], tch::kind::FLOAT_CPU), Tensor::zeros([5], tch::kind::INT64_CPU)];
        assert_eq!(buckets(&ts, 80), vec![vec![0, 1], vec![2], vec![3]]);
        assert_eq!(buckets(&ts, 1 << 20), vec![vec![0, 1, 2], vec![3]]);
    }

    #[test]
    fn flatten_round_trips() {
        let a = Tensor::arange(6, tch::kind::FLOAT_CPU).reshape([2, 3]);
        let b = Tensor::from_slice(&[7.0f32, 8.0]);
        let flat = flatten(&[&a, &b]) * 2.0;
        unflatten_into(&flat, &[&a, &b]);
        assert_eq!(Vec::<f32>::try_from(a.reshape([-1])).unwrap(), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(Vec::<f32>::try_from(b).unwrap(), vec![14.0, 16.0]);
    }
}

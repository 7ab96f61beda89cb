//! Gradient averaging that overlaps with backward, as DistributedDataParallel's Reducer does:
//! tch has no autograd hooks, so the hooks live in the C++ shim (csrc/c10d_shim.cpp,
//! `silt_reducer`). Each parameter's hook copies its gradient into a flat bucket as soon as
//! backward produces it; a full bucket is all-reduced at once (strictly in bucket order, the same
//! on every rank) while backward computes the earlier layers' gradients. Buckets are laid out in
//! reverse parameter order, because backward produces the last layers' gradients first.

use super::error::Result;
use super::ffi;
use super::group::ProcessGroup;
use std::sync::Arc;
use tch::Tensor;

pub struct Reducer {
    raw: *mut ffi::RawReducer,
    group: Arc<ProcessGroup>,
    /// The parameters, kept alive as long as their hooks point at this reducer.
    _params: Vec<Tensor>,
}

impl Reducer {
    /// Hooks every parameter of `params` (a fixed set for the reducer's life: the trunk's).
    pub fn new(group: Arc<ProcessGroup>, params: &[Tensor], bucket_bytes: usize) -> Result<Reducer> {
        let params: Vec<Tensor> = params.iter().filter(|p| p.requires_grad()).map(|p| p.shallow_clone()).collect();
        let ptrs: Vec<*mut torch_sys::C_tensor> = params.iter().map(|p| p.as_ptr() as *mut _).collect();
        // SAFETY: the pointers are live tensors for the call; the shim keeps its own references.
        let raw = unsafe { ffi::silt_reducer_new(group.raw(), ptrs.as_ptr(), ptrs.len(), bucket_bytes) };
        if raw.is_null() {
            return Err(group.error("reducer", ffi::last_error()));
        }
        Ok(Reducer { raw, group, _params: params })
    }

    /// Number of buckets.
    pub fn buckets(&self) -> usize {
        // SAFETY: raw is live until Drop.
        unsafe { ffi::silt_reducer_buckets(self.raw) }
    }

    /// Arms the hooks: the next backward sends each bucket as soon as it is complete.
    pub fn prepare(&mut self) -> Result<()> {
        // SAFETY: raw is live until Drop.
        let rc = unsafe { ffi::silt_reducer_prepare(self.raw) };
        self.group.check(rc, "all_reduce")
    }

    /// After backward (or instead of it, on a rank whose batch was empty): sends the rest
    /// (gradients that never arrived count as zeros), waits, and leaves every parameter's
    /// gradient averaged over the ranks. Returns how many buckets were already sent during
    /// backward.
    pub fn finish(&mut self) -> Result<usize> {
        let mut early = 0usize;
        // SAFETY: raw is live until Drop; early is a valid out-pointer.
        let rc = unsafe { ffi::silt_reducer_finish(self.raw, &mut early) };
        self.group.check(rc, "all_reduce")?;
        Ok(early)
    }
}

impl Drop for Reducer {
    fn drop(&mut self) {
        // SAFETY: raw came from silt_reducer_new and is freed once; it removes its hooks.
        unsafe { ffi::silt_reducer_free(self.raw) }
    }
}

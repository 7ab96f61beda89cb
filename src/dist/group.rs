//! A c10d process group (Gloo on CPU tensors) and its collectives. Every collective blocks until
//! it is done on this rank and returns a typed error when a peer died or did not arrive within
//! the group's timeout; no call hangs forever.

use super::error::{DistError, Result};
use super::ffi;
use super::launch::Launch;
use std::ffi::CString;
use std::os::raw::c_int;
use tch::{Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    Sum = 0,
    Product = 1,
    Min = 2,
    Max = 3,
    Avg = 4,
}

pub struct ProcessGroup {
    raw: *mut ffi::RawGroup,
    rank: usize,
    size: usize,
    name: String,
}

// SAFETY: a c10d ProcessGroup may be used from any thread; silt issues collectives from one
// thread at a time (the trainer's), which keeps their order the same on every rank.
unsafe impl Send for ProcessGroup {}
unsafe impl Sync for ProcessGroup {}

impl std::fmt::Debug for ProcessGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProcessGroup({:?}, rank {}/{})", self.name, self.rank, self.size)
    }
}

/// An all-reduce in flight; the tensor stays borrowed until it is waited for.
pub struct Work<'a> {
    raw: *mut ffi::RawWork,
    group: &'a ProcessGroup,
    _tensor: std::marker::PhantomData<&'a mut Tensor>,
}

impl Work<'_> {
    pub fn wait(self) -> Result<()> {
        // SAFETY: raw came from silt_c10d_all_reduce_async and is freed once, in Drop.
        let rc = unsafe { ffi::silt_c10d_wait(self.raw) };
        self.group.check(rc, "all_reduce")
    }
}

impl Drop for Work<'_> {
    fn drop(&mut self) {
        // SAFETY: see wait(). Dropping without waiting leaves c10d's own reference to the work.
        unsafe { ffi::silt_c10d_work_free(self.raw) }
    }
}

/// Whether this build registers NCCL for CUDA tensors (cargo feature `cuda`).
pub fn nccl_available() -> bool {
    // SAFETY: a constant query.
    unsafe { ffi::silt_c10d_has_nccl() != 0 }
}

fn cstring(s: &str, op: &'static str) -> Result<CString> {
    CString::new(s).map_err(|_| DistError::Usage { op, message: format!("{s:?} contains a NUL byte") })
}

impl ProcessGroup {
    /// Joins the job's default group ("world"); rank 0 serves the rendezvous store.
    pub fn init(launch: &Launch) -> Result<Self> {
        let addr = cstring(&launch.master_addr, "init")?;
        let name = cstring("world", "init")?;
        let timeout_ms = launch.timeout.as_millis().min(i64::MAX as u128) as i64;
        // SAFETY: plain C strings and integers; a NULL return carries the error message.
        // NCCL for CUDA tensors on this process's GPU (LOCAL_RANK), when built in and a GPU is seen
        let device = if nccl_available() && tch::Cuda::is_available() { launch.local_rank as c_int } else { -1 };
        let raw = unsafe { ffi::silt_c10d_init(addr.as_ptr(), launch.master_port, launch.rank as c_int, launch.world as c_int, timeout_ms, name.as_ptr(), device) };
        if raw.is_null() {
            return Err(DistError::Init { rank: launch.rank, world: launch.world, master: format!("{}:{}", launch.master_addr, launch.master_port), message: ffi::last_error() });
        }
        Ok(ProcessGroup { raw, rank: launch.rank, size: launch.world, name: "world".into() })
    }

    /// A group of some of this group's ranks (DeeperCluster's clustering group, for instance).
    /// Every rank of this group calls it with the same `members` and `name`; members get
    /// `Some(group)` in which their rank is their position in `members`, the others `None`.
    pub fn subgroup(&self, members: &[usize], name: &str) -> Result<Option<ProcessGroup>> {
        if members.is_empty() || members.iter().any(|&m| m >= self.size) {
            return Err(DistError::Usage { op: "subgroup", message: format!("members {members:?} are not ranks of a world of {}", self.size) });
        }
        let Some(rank) = members.iter().position(|&m| m == self.rank) else {
            return Ok(None);
        };
        let full = format!("{}/{name}", self.name);
        let c = cstring(&full, "subgroup")?;
        // SAFETY: self.raw is live; the shim copies the name.
        let raw = unsafe { ffi::silt_c10d_subgroup(self.raw, rank as c_int, members.len() as c_int, c.as_ptr()) };
        if raw.is_null() {
            return Err(self.error("subgroup", ffi::last_error()));
        }
        Ok(Some(ProcessGroup { raw, rank, size: members.len(), name: full }))
    }

    pub fn rank(&self) -> usize {
        self.rank
    }
    pub fn size(&self) -> usize {
        self.size
    }
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(super) fn raw(&self) -> *mut ffi::RawGroup {
        self.raw
    }

    pub(super) fn error(&self, op: &'static str, message: String) -> DistError {
        DistError::Collective { rank: self.rank, world: self.size, op, message }
    }

    pub(super) fn check(&self, rc: c_int, op: &'static str) -> Result<()> {
        if rc == 0 {
            Ok(())
        } else {
            Err(self.error(op, ffi::last_error()))
        }
    }

    fn dense(&self, t: &Tensor, op: &'static str) -> Result<()> {
        if t.is_contiguous() {
            Ok(())
        } else {
            Err(DistError::Usage { op, message: "the tensor must be contiguous (it is reduced in place)".into() })
        }
    }

    /// Reduces `t` over all ranks, in place.
    pub fn all_reduce(&self, t: &mut Tensor, op: ReduceOp) -> Result<()> {
        self.dense(t, "all_reduce")?;
        // SAFETY: t is a live, contiguous tensor for the duration of the (blocking) call.
        let rc = unsafe { ffi::silt_c10d_all_reduce(self.raw, t.as_mut_ptr(), op as c_int) };
        self.check(rc, "all_reduce")
    }

    /// Starts an all-reduce of `t`; several may be in flight (gradient buckets).
    pub fn all_reduce_async<'a>(&'a self, t: &'a mut Tensor, op: ReduceOp) -> Result<Work<'a>> {
        self.dense(t, "all_reduce")?;
        // SAFETY: the returned Work borrows t mutably until it is waited for or dropped.
        let raw = unsafe { ffi::silt_c10d_all_reduce_async(self.raw, t.as_mut_ptr(), op as c_int) };
        if raw.is_null() {
            return Err(self.error("all_reduce", ffi::last_error()));
        }
        Ok(Work { raw, group: self, _tensor: std::marker::PhantomData })
    }

    /// Reduces each tensor element-wise over all ranks, in one call.
    pub fn all_reduce_coalesced(&self, ts: &mut [Tensor], op: ReduceOp) -> Result<()> {
        for t in ts.iter() {
            self.dense(t, "all_reduce_coalesced")?;
        }
        let ptrs: Vec<_> = ts.iter_mut().map(|t| t.as_mut_ptr()).collect();
        // SAFETY: every pointer is a live tensor borrowed for the blocking call.
        let rc = unsafe { ffi::silt_c10d_all_reduce_coalesced(self.raw, ptrs.as_ptr(), ptrs.len(), op as c_int) };
        self.check(rc, "all_reduce_coalesced")
    }

    /// Copies rank `root`'s `t` into every rank's `t`.
    pub fn broadcast(&self, t: &mut Tensor, root: usize) -> Result<()> {
        self.dense(t, "broadcast")?;
        // SAFETY: as all_reduce.
        let rc = unsafe { ffi::silt_c10d_broadcast(self.raw, t.as_mut_ptr(), root as c_int) };
        self.check(rc, "broadcast")
    }

    /// Every rank's `t` (all the same shape), concatenated along the first dimension in rank order.
    pub fn all_gather(&self, t: &Tensor) -> Result<Tensor> {
        let mut input = t.contiguous();
        let mut shape = t.size();
        if shape.is_empty() {
            input = input.reshape([1]);
            shape = vec![1];
        }
        shape[0] *= self.size as i64;
        let mut out = Tensor::empty(shape, (t.kind(), t.device()));
        // SAFETY: both tensors are live and contiguous for the blocking call.
        let rc = unsafe { ffi::silt_c10d_all_gather(self.raw, out.as_mut_ptr(), input.as_mut_ptr()) };
        self.check(rc, "all_gather")?;
        Ok(out)
    }

    /// Every rank's `t`, where the first dimension may differ between ranks (feature snapshots of
    /// unequal parts): returns one tensor per rank, in rank order.
    pub fn all_gather_varying(&self, t: &Tensor) -> Result<Vec<Tensor>> {
        let t = if t.dim() == 0 { t.reshape([1]) } else { t.shallow_clone() };
        let rows = t.size()[0];
        let lengths: Vec<i64> = Vec::try_from(self.all_gather(&Tensor::from_slice(&[rows]))?).map_err(|e: tch::TchError| self.error("all_gather", e.to_string()))?;
        let longest = lengths.iter().copied().max().unwrap_or(0);
        let mut padded_shape = t.size();
        padded_shape[0] = longest;
        let padded = Tensor::zeros(&padded_shape, (t.kind(), t.device()));
        if rows > 0 {
            padded.narrow(0, 0, rows).copy_(&t);
        }
        let all = self.all_gather(&padded)?;
        Ok(lengths.iter().enumerate().map(|(r, &n)| all.narrow(0, r as i64 * longest, n)).collect())
    }

    /// Sums (or `op`s) `t` over all ranks and keeps block `rank` of the first dimension, which
    /// must be divisible by the group's size.
    pub fn reduce_scatter(&self, t: &Tensor, op: ReduceOp) -> Result<Tensor> {
        let mut shape = t.size();
        if shape.is_empty() || shape[0] % self.size as i64 != 0 {
            return Err(DistError::Usage { op: "reduce_scatter", message: format!("first dimension of {shape:?} is not a multiple of {}", self.size) });
        }
        shape[0] /= self.size as i64;
        let mut input = t.contiguous();
        let mut out = Tensor::empty(shape, (t.kind(), t.device()));
        // SAFETY: as all_gather.
        let rc = unsafe { ffi::silt_c10d_reduce_scatter(self.raw, out.as_mut_ptr(), input.as_mut_ptr(), op as c_int) };
        self.check(rc, "reduce_scatter")?;
        Ok(out)
    }

    /// All-gather that autograd sees through: the gradient of each rank's slice flows back to
    /// that rank's input (its backward is a reduce-scatter). SimCLR's global batch and
    /// SyncBatchNorm's statistics use it.
    pub fn all_gather_autograd(&self, t: &Tensor) -> Result<Tensor> {
        let input = t.contiguous();
        // SAFETY: the shim returns a new at::Tensor* that we own, or NULL on error.
        let raw = unsafe { ffi::silt_c10d_all_gather_autograd(self.raw, input.as_ptr()) };
        if raw.is_null() {
            return Err(self.error("all_gather", ffi::last_error()));
        }
        // SAFETY: raw is a fresh heap tensor owned by nobody else.
        Ok(unsafe { Tensor::from_ptr(raw) })
    }

    pub fn barrier(&self) -> Result<()> {
        // SAFETY: self.raw is live.
        let rc = unsafe { ffi::silt_c10d_barrier(self.raw) };
        self.check(rc, "barrier")
    }

    /// A scalar reduced over all ranks.
    pub fn all_reduce_f64(&self, x: f64, op: ReduceOp) -> Result<f64> {
        let mut t = Tensor::from_slice(&[x]);
        self.all_reduce(&mut t, op)?;
        Ok(t.double_value(&[0]))
    }

    /// Rank `root`'s bytes on every rank (JSON state, labels).
    pub fn broadcast_bytes(&self, bytes: &[u8], root: usize) -> Result<Vec<u8>> {
        let mut len = Tensor::from_slice(&[bytes.len() as i64]);
        self.broadcast(&mut len, root)?;
        let n = len.int64_value(&[0]).max(0) as usize;
        let mut buf = if self.rank == root { Tensor::from_slice(bytes) } else { Tensor::zeros([n as i64], (Kind::Uint8, tch::Device::Cpu)) };
        self.broadcast(&mut buf, root)?;
        Vec::<u8>::try_from(&buf).map_err(|e: tch::TchError| self.error("broadcast", e.to_string()))
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: raw was returned by init/subgroup and is freed exactly once.
        unsafe { ffi::silt_c10d_free(self.raw) }
    }
}

//! Distributed training on torch's own engine, c10d, driven from Rust through a small C++ shim
//! (csrc/c10d_shim.cpp, built by build.rs against the libtorch that tch links): a TCPStore
//! rendezvous, ProcessGroupGloo for CPU tensors, the same code path PyTorch's
//! `torch.distributed` takes.
//!
//! - [`launch`]: rank, world size and master address from torchrun, SLURM, Open MPI or PMI
//!   variables;
//! - [`group`]: a process group and its collectives (all-reduce, broadcast, all-gather also of
//!   unequal parts, reduce-scatter, barrier, an autograd-aware all-gather, sub-groups);
//! - [`sync`]: DistributedDataParallel's part: broadcast weights, average gradients in buckets;
//! - [`reducer`]: the trunk's gradient averaging overlapped with backward (hooks in the shim);
//! - [`sync_bn`]: SyncBatchNorm for the models' BatchNorm layers.
//!
//! Like `torch.distributed`'s default group, the job's group is process-wide
//! ([`init_from_env`] / [`world`]): methods that need their peers (MoCo's key queue, SimCLR's
//! global batch, clustering) find it there instead of having it threaded through every call.

pub mod error;
mod ffi;
pub mod group;
pub mod launch;
pub mod reducer;
pub mod selftest;
pub mod sync;
pub mod sync_bn;

pub use error::{DistError, Result};
pub use group::{ProcessGroup, ReduceOp, Work};
pub use launch::{Launch, Launcher};

use std::sync::{Arc, RwLock};

static WORLD: RwLock<Option<Arc<ProcessGroup>>> = RwLock::new(None);

/// Reads the launcher's variables and, when the job has more than one process, joins its
/// group and makes it the process-wide one. Returns the launch description and the group (None
/// for a single process). Calling it again returns the group already joined.
pub fn init_from_env() -> Result<(Launch, Option<Arc<ProcessGroup>>)> {
    let launch = Launch::from_env()?;
    if !launch.is_distributed() {
        return Ok((launch, None));
    }
    if let Some(g) = world() {
        return Ok((launch, Some(g)));
    }
    let started = std::time::Instant::now();
    let group = Arc::new(ProcessGroup::init(&launch)?);
    tracing::info!(
        "rank {}/{} (local {}) joined {}:{} via {:?} in {:.2}s",
        launch.rank,
        launch.world,
        launch.local_rank,
        launch.master_addr,
        launch.master_port,
        launch.launcher,
        started.elapsed().as_secs_f64()
    );
    if let Ok(mut w) = WORLD.write() {
        *w = Some(group.clone());
    }
    Ok((launch, Some(group)))
}

/// The job's group, when running distributed.
pub fn world() -> Option<Arc<ProcessGroup>> {
    WORLD.read().ok().and_then(|w| w.clone())
}

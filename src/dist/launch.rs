//! Who am I in the job: rank, world size, local rank and the rendezvous address, read from the
//! variables the launchers set. torchrun's names win; SLURM, Open MPI and PMI (MPICH, Intel MPI)
//! are read when they are absent, and MASTER_ADDR / MASTER_PORT may always override.

use super::error::{DistError, Result};
use std::time::Duration;

/// torch.distributed's default port.
pub const DEFAULT_PORT: u16 = 29500;
/// torch.distributed's default collective timeout (30 minutes): long enough for rank 0 to
/// evaluate or cluster while the others wait at the next collective.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launcher {
    Torchrun,
    Slurm,
    OpenMpi,
    Pmi,
    /// No launcher variables: one process.
    Single,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub launcher: Launcher,
    pub rank: usize,
    pub world: usize,
    /// Index of this process on its node (the GPU it should use).
    pub local_rank: usize,
    pub master_addr: String,
    pub master_port: u16,
    /// Collective and rendezvous timeout (SILT_DIST_TIMEOUT_S, seconds).
    pub timeout: Duration,
}

impl Launch {
    pub fn single() -> Self {
        Launch { launcher: Launcher::Single, rank: 0, world: 1, local_rank: 0, master_addr: "127.0.0.1".into(), master_port: DEFAULT_PORT, timeout: DEFAULT_TIMEOUT }
    }

    pub fn is_distributed(&self) -> bool {
        self.world > 1
    }

    /// From the process environment.
    pub fn from_env() -> Result<Self> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// From any variable lookup (tests pass a map).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let num = |k: &str| -> Result<Option<usize>> {
            match var(k) {
                None => Ok(None),
                Some(v) => v.trim().parse().map(Some).map_err(|_| DistError::Launch(format!("{k}={v:?} is not a number"))),
            }
        };
        let (launcher, rank, world, local) = if let (Some(r), Some(w)) = (num("RANK")?, num("WORLD_SIZE")?) {
            (Launcher::Torchrun, r, w, num("LOCAL_RANK")?)
        } else if let (Some(r), Some(w)) = (num("SLURM_PROCID")?, num("SLURM_NTASKS")?) {
            (Launcher::Slurm, r, w, num("SLURM_LOCALID")?)
        } else if let (Some(r), Some(w)) = (num("OMPI_COMM_WORLD_RANK")?, num("OMPI_COMM_WORLD_SIZE")?) {
            (Launcher::OpenMpi, r, w, num("OMPI_COMM_WORLD_LOCAL_RANK")?)
        } else if let (Some(r), Some(w)) = (num("PMI_RANK")?, num("PMI_SIZE")?) {
            (Launcher::Pmi, r, w, num("MPI_LOCALRANKID")?)
        } else {
            return Ok(Self::single());
        };
        if world == 0 || rank >= world {
            return Err(DistError::Launch(format!("rank {rank} is not in a world of {world} processes")));
        }
        let master_addr = match var("MASTER_ADDR") {
            Some(a) if !a.trim().is_empty() => a.trim().to_string(),
            _ if launcher == Launcher::Slurm => match var("SLURM_JOB_NODELIST").or_else(|| var("SLURM_NODELIST")) {
                Some(list) => first_host(&list)?,
                None => return Err(DistError::Launch("SLURM: neither MASTER_ADDR nor SLURM_JOB_NODELIST is set".into())),
            },
            _ if world == 1 => "127.0.0.1".into(),
            _ => return Err(DistError::Launch(format!("{launcher:?}: MASTER_ADDR is not set (the host of rank 0)"))),
        };
        let master_port = match var("MASTER_PORT") {
            Some(p) => p.trim().parse().map_err(|_| DistError::Launch(format!("MASTER_PORT={p:?} is not a port")))?,
            // One port per job, so two jobs sharing a node do not collide (a common SLURM recipe).
            None if launcher == Launcher::Slurm => match num("SLURM_JOB_ID")? {
                Some(id) => 15000 + (id % 20000) as u16,
                None => DEFAULT_PORT,
            },
            None => DEFAULT_PORT,
        };
        let timeout = match var("SILT_DIST_TIMEOUT_S") {
            Some(s) => Duration::from_secs_f64(s.trim().parse::<f64>().ok().filter(|t| *t > 0.0).ok_or_else(|| DistError::Launch(format!("SILT_DIST_TIMEOUT_S={s:?} is not a positive number of seconds")))?),
            None => DEFAULT_TIMEOUT,
        };
        Ok(Launch { launcher, rank, world, local_rank: local.unwrap_or(0), master_addr, master_port, timeout })
    }
}

/// The first host of a SLURM host list: `node[03-05,9],gpu1` → `node03`.
pub fn first_host(list: &str) -> Result<String> {
    let list = list.trim();
    let bad = || DistError::Launch(format!("cannot read the SLURM host list {list:?}"));
    let end = list.find(',').unwrap_or(list.len());
    let open = list.find('[');
    match open {
        Some(o) if o < end => {
            let close = list[o..].find(']').map(|c| o + c).ok_or_else(bad)?;
            let first = list[o + 1..close].split([',', '-']).next().filter(|s| !s.is_empty()).ok_or_else(bad)?;
            Ok(format!("{}{first}", &list[..o]))
        }
        _ if end > 0 => Ok(list[..end].to_string()),
        _ => Err(bad()),
    }
}

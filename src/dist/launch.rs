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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn launch(vars: &[(&str, &str)]) -> Result<Launch> {
        let m: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Launch::from_vars(|k| m.get(k).cloned())
    }

    #[test]
    fn torchrun_variables() {
        let l = launch(&[("RANK", "3"), ("WORLD_SIZE", "8"), ("LOCAL_RANK", "1"), ("MASTER_ADDR", "node7"), ("MASTER_PORT", "29400")]).unwrap();
        assert_eq!((l.launcher, l.rank, l.world, l.local_rank, l.master_addr.as_str(), l.master_port), (Launcher::Torchrun, 3, 8, 1, "node7", 29400));
        assert_eq!(l.timeout, DEFAULT_TIMEOUT);
    }

    #[test]
    fn slurm_takes_the_first_node_and_a_per_job_port() {
        let l = launch(&[("SLURM_PROCID", "5"), ("SLURM_NTASKS", "16"), ("SLURM_LOCALID", "1"), ("SLURM_JOB_NODELIST", "gpu[012-015,020],cpu1"), ("SLURM_JOB_ID", "123456")]).unwrap();
        assert_eq!((l.launcher, l.rank, l.world, l.local_rank, l.master_addr.as_str()), (Launcher::Slurm, 5, 16, 1, "gpu012"));
        assert_eq!(l.master_port, 15000 + (123456 % 20000) as u16);
        // MASTER_ADDR set by the batch script wins
        assert_eq!(launch(&[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "2"), ("SLURM_JOB_NODELIST", "a[1-2]"), ("MASTER_ADDR", "10.0.0.9")]).unwrap().master_addr, "10.0.0.9");
    }

    #[test]
    fn open_mpi_and_pmi() {
        let l = launch(&[("OMPI_COMM_WORLD_RANK", "1"), ("OMPI_COMM_WORLD_SIZE", "4"), ("OMPI_COMM_WORLD_LOCAL_RANK", "1"), ("MASTER_ADDR", "h")]).unwrap();
        assert_eq!((l.launcher, l.rank, l.world, l.local_rank), (Launcher::OpenMpi, 1, 4, 1));
        let l = launch(&[("PMI_RANK", "2"), ("PMI_SIZE", "3"), ("MASTER_ADDR", "h"), ("SILT_DIST_TIMEOUT_S", "2.5")]).unwrap();
        assert_eq!((l.launcher, l.rank, l.world, l.timeout), (Launcher::Pmi, 2, 3, Duration::from_millis(2500)));
    }

    #[test]
    fn nothing_set_is_a_single_process() {
        let l = launch(&[]).unwrap();
        assert!(!l.is_distributed());
        assert_eq!(l.launcher, Launcher::Single);
    }

    #[test]
    fn bad_variables_are_clear_errors() {
        let e = launch(&[("RANK", "4"), ("WORLD_SIZE", "4"), ("MASTER_ADDR", "h")]).unwrap_err().to_string();
        assert!(e.contains("rank 4 is not in a world of 4"), "{e}");
        let e = launch(&[("RANK", "x"), ("WORLD_SIZE", "4")]).unwrap_err().to_string();
        assert!(e.contains("RANK=\"x\""), "{e}");
        let e = launch(&[("RANK", "0"), ("WORLD_SIZE", "2")]).unwrap_err().to_string();
        assert!(e.contains("MASTER_ADDR is not set"), "{e}");
        assert!(launch(&[("RANK", "0"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "h"), ("SILT_DIST_TIMEOUT_S", "0")]).is_err());
        assert!(first_host("").is_err());
        assert!(first_host("node[").is_err());
        assert_eq!(first_host("single").unwrap(), "single");
        assert_eq!(first_host("a,b").unwrap(), "a");
    }
}

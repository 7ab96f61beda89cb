//! Helpers for the multi-process tests: a free port on 127.0.0.1 and N `silt` processes
//! launched the way torchrun launches them (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
//! MASTER_PORT), each with its own stdout/stderr, waited for with a deadline.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("no free port on 127.0.0.1")
}

pub struct Rank {
    pub rank: usize,
    pub child: Child,
    pub log: std::path::PathBuf,
}

/// Starts `world` ranks of `silt args...`; `extra_env` is added to every rank's environment.
/// Output goes to `dir/rank-R.out` and `dir/rank-R.err`.
pub fn spawn(world: usize, port: u16, args: &[&str], dir: &Path, extra_env: &[(&str, String)]) -> Vec<Rank> {
    std::fs::create_dir_all(dir).unwrap();
    (0..world)
        .map(|r| {
            let out = std::fs::File::create(dir.join(format!("rank-{r}.out"))).unwrap();
            let log = dir.join(format!("rank-{r}.err"));
            let err = std::fs::File::create(&log).unwrap();
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_silt"));
            cmd.args(args)
                .env("RANK", r.to_string())
                .env("WORLD_SIZE", world.to_string())
                .env("LOCAL_RANK", r.to_string())
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", port.to_string())
                .env("SILT_DIST_TIMEOUT_S", "60")
                .stdin(Stdio::null())
                .stdout(Stdio::from(out))
                .stderr(Stdio::from(err));
            for (k, v) in extra_env {
                cmd.env(k, v);
            }
            Rank { rank: r, child: cmd.spawn().expect("spawn silt"), log }
        })
        .collect()
}

/// Waits for every rank; kills the rest and panics if `deadline` passes first. Returns each
/// rank's exit success and stderr.
pub fn wait_all(ranks: &mut [Rank], deadline: Duration) -> Vec<(bool, String)> {
    let started = Instant::now();
    let mut done: Vec<Option<bool>> = vec![None; ranks.len()];
    while done.iter().any(Option::is_none) {
        for (i, r) in ranks.iter_mut().enumerate() {
            if done[i].is_none() {
                if let Ok(Some(status)) = r.child.try_wait() {
                    done[i] = Some(status.success());
                }
            }
        }
        if started.elapsed() > deadline {
            for r in ranks.iter_mut() {
                let _ = r.child.kill();
            }
            let logs: Vec<String> = ranks.iter().map(|r| std::fs::read_to_string(&r.log).unwrap_or_default()).collect();
            panic!("ranks still running after {deadline:?}: {done:?}\n{}", logs.join("\n----\n"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    ranks.iter().zip(done).map(|(r, ok)| (ok.unwrap_or(false), std::fs::read_to_string(&r.log).unwrap_or_default())).collect()
}

/// Each rank's stdout.
pub fn outputs(dir: &Path, world: usize) -> Vec<String> {
    (0..world).map(|r| std::fs::read_to_string(dir.join(format!("rank-{r}.out"))).unwrap_or_default()).collect()
}

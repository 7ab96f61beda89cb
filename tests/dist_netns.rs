//! Two "nodes": two network namespaces joined by a veth pair (made by the test; needs root and
//! `ip`, otherwise the test prints why and skips). Rank 0 and rank 1 each live in their own
//! namespace, find each other through MASTER_ADDR and bind gloo to their veth with
//! GLOO_SOCKET_IFNAME, as a multi-node job must; a GLOO_SOCKET_IFNAME that names no interface is
//! a clear error.


use std::process::{Command, Stdio};
use std::time::Duration;

struct Namespaces {
    names: [String; 2],
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Two namespaces, veth `<tag>a` (10.77.0.1) in the first and `<tag>b` (10.77.0.2) in the second.
fn two_nodes(tag: &str) -> Result<Namespaces, String> {
    let ns = Namespaces { names: [format!("{tag}-n0"), format!("{tag}-n1")] };
    for n in &ns.names {
        ip(&["netns", "add", n])?;
        ip(&["-n", n, "link", "set", "lo", "up"])?;
    }
    let (va, vb) = (format!("{tag}a"), format!("{tag}b"));
    ip(&["link", "add", &va, "type", "veth", "peer", "name", &vb])?;
    ip(&["link", "set", &va, "netns", &ns.names[0]])?;
    ip(&["link", "set", &vb, "netns", &ns.names[1]])?;
    ip(&["-n", &ns.names[0], "addr", "add", "10.77.0.1/24", "dev", &va])?;
    ip(&["-n", &ns.names[1], "addr", "add", "10.77.0.2/24", "dev", &vb])?;
    ip(&["-n", &ns.names[0], "link", "set", &va, "up"])?;
    ip(&["-n", &ns.names[1], "link", "set", &vb, "up"])?;
    Ok(ns)
}

fn run_pair(ns: &Namespaces, ifnames: [&str; 2]) -> Vec<(bool, String, String)> {
    let children: Vec<_> = (0..2)
        .map(|r| {
            Command::new("ip")
                .args(["netns", "exec", &ns.names[r], env!("CARGO_BIN_EXE_silt"), "dist", "check"])
                .env("RANK", r.to_string())
                .env("WORLD_SIZE", "2")
                .env("MASTER_ADDR", "10.77.0.1")
                .env("MASTER_PORT", "29555")
                .env("GLOO_SOCKET_IFNAME", ifnames[r])
                .env("SILT_DIST_TIMEOUT_S", "20")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn ip netns exec")
        })
        .collect();
    let started = std::time::Instant::now();
    let results: Vec<_> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
        })
        .collect();
    assert!(started.elapsed() < Duration::from_secs(90), "took {:?}", started.elapsed());
    results
}

#[test]
fn two_nodes_in_network_namespaces() {
    let tag = format!("sl{}", std::process::id() % 100_000);
    let ns = match two_nodes(&tag) {
        Ok(ns) => ns,
        Err(e) => {
            eprintln!("SKIPPED: cannot make network namespaces here ({e}); needs root and iproute2");
            return;
        }
    };
    let (va, vb) = (format!("{tag}a"), format!("{tag}b"));
    for (r, (ok, out, err)) in run_pair(&ns, [&va, &vb]).iter().enumerate() {
        assert!(ok, "rank {r}: {err}");
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("rank {r}: {e}: {out}"));
        assert_eq!(v["ok"], true, "rank {r}: {out}");
    }
    // an interface that does not exist: both ranks fail and say why
    let results = run_pair(&ns, ["nosuch0", &vb]);
    assert!(!results[0].0);
    assert!(results[0].2.contains("nosuch0"), "rank 0 does not name the interface: {}", results[0].2);
}

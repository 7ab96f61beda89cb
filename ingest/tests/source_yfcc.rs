//! `yfcc` source: the real-photo YFCC100M-style dirty list (702 photos + hostile rows: 3 keys
//! never uploaded, 2 videos, and with --with-bad-inputs 16 corrupt/non-JPEG files under
//! data/bad/), served three ways: file://, a local `python3 -m http.server`, and the
//! S3-compatible server that `ops/start-s3` starts.

mod common;
use common::*;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PHOTOS: u64 = 702;

/// The dirty list's keys are in its download_url column (data/images/... and data/bad/...).
fn ingest_dirty(source: &str, envs: &[(String, String)], extra: &[&str]) -> (serde_json::Value, tempfile::TempDir) {
    let data = data_dir();
    let out = tempfile::tempdir().unwrap();
    let list = data.join("yfcc/yfcc100m_dataset_dirty.tsv");
    let res = Command::new(bin())
        .args(["yfcc", "--list", p(&list), "--source", source, "--key-template", "{download_url}"])
        .args(["--out", p(out.path()), "--check", "full", "--retries", "2", "--quiet", "--json"])
        .args(extra)
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    (serde_json::from_slice(&res.stdout).unwrap(), out)
}

/// What the dirty list should give: (videos, keys absent from yfcc/, rows under data/bad/).
fn dirty_expectations() -> (u64, u64, u64) {
    let data = data_dir();
    let list = std::fs::read_to_string(data.join("yfcc/yfcc100m_dataset_dirty.tsv")).unwrap();
    let (mut videos, mut missing, mut bad) = (0, 0, 0);
    for row in list.lines() {
        let c: Vec<&str> = row.split('\t').collect();
        if c[24] == "1" {
            videos += 1;
        } else if !data.join("yfcc").join(c[16]).is_file() {
            missing += 1;
        } else if c[16].starts_with("data/bad/") {
            bad += 1;
        }
    }
    (videos, missing, bad)
}

/// Every real photo arrives; every hostile row is quarantined with its reason.
fn check_dirty(summary: &serde_json::Value, out: &Path) {
    let (videos, missing, bad) = dirty_expectations();
    assert_eq!((videos, missing), (2, 3), "the dirty list has 2 videos and 3 keys never uploaded");
    assert_eq!(summary["records"], PHOTOS, "{summary}");
    assert_eq!(summary["quarantined"], videos + missing + bad, "{summary}");
    let r = reasons(summary);
    assert_eq!(r.get("video"), Some(&videos), "{r:?}");
    assert_eq!(r.get("not-found"), Some(&missing), "{r:?}");
    let corrupt: u64 = r.iter().filter(|(k, _)| !["video", "not-found"].contains(&k.as_str())).map(|(_, v)| v).sum();
    assert_eq!(corrupt, bad, "{r:?}");
    assert!(quarantine(out).iter().filter(|q| q.2 != "video" && q.2 != "not-found").all(|q| q.1.starts_with("data/bad/")));
    // The hash column is the md5 of the bytes; spot-check keys against the list and the bytes
    // against the files.
    let data = data_dir();
    let list = std::fs::read_to_string(data.join("yfcc/yfcc100m_dataset_dirty.tsv")).unwrap();
    let rows: Vec<&str> = list.lines().collect();
    for (id, (key, _, _, _, hash)) in contents(out) {
        assert_eq!(rows[id as usize].split('\t').nth(16).unwrap(), key);
        let bytes = std::fs::read(data.join("yfcc").join(&key)).unwrap();
        assert_eq!(hash, *blake3::hash(&bytes).as_bytes(), "{key}");
    }
}

#[test]
fn yfcc_list_over_file_url() {
    let url = format!("file://{}/", data_dir().join("yfcc").canonicalize().unwrap().display());
    let (summary, out) = ingest_dirty(&url, &[], &[]);
    check_dirty(&summary, out.path());
}

#[test]
fn yfcc_default_template_and_id_hash_list() {
    // yfcc100m_hash.tsv (id<TAB>hash) with the multimedia-commons key layout.
    let data = data_dir();
    let out = tempfile::tempdir().unwrap();
    let url = format!("file://{}/", data.join("yfcc").canonicalize().unwrap().display());
    let s = ingest(&["yfcc", "--list", p(&data.join("yfcc/yfcc100m_hash.tsv")), "--source", &url, "--out", p(out.path())]);
    assert_eq!(s["records"], PHOTOS, "{s}");
    assert!(contents(out.path()).values().all(|r| r.0.starts_with("data/images/")));
}

struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_for_port(port: u16) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(30), "server on {port} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn yfcc_list_over_http_server() {
    let port = free_port();
    let dir = data_dir().join("yfcc");
    let server = Server(
        Command::new("python3")
            .args(["-m", "http.server", &port.to_string(), "--bind", "127.0.0.1", "-d", p(&dir)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs"),
    );
    wait_for_port(port);
    // http.server speaks HTTP/1.0 (a connection per request) with a listen backlog of 5: more
    // concurrent connects overflow it and stall in TCP SYN retransmits, so stay under it.
    let (summary, out) = ingest_dirty(&format!("http://127.0.0.1:{port}/"), &[], &["--fetch-concurrency", "4"]);
    drop(server);
    check_dirty(&summary, out.path());
}

fn start_s3_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/start-s3")
}

/// Starts (or restarts) SeaweedFS with ops/start-s3; returns the AWS_* variables it prints.
fn start_s3(port: u16, dir: &Path, seed: bool) -> Vec<(String, String)> {
    let script = start_s3_script();
    assert!(script.is_file(), "{} is missing", script.display());
    let mut cmd = Command::new(&script);
    cmd.args(["--port", &port.to_string(), "--data-dir", p(dir), "--bucket", "yfcc"]);
    if seed {
        cmd.args(["--seed", p(&data_dir().join("yfcc"))]);
    }
    let out = cmd.stderr(Stdio::inherit()).output().expect("ops/start-s3 runs");
    assert!(out.status.success(), "ops/start-s3 failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("export ").unwrap_or(l.trim()).split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches(['\'', '"']).to_string()))
        .collect()
}

/// A port base for SeaweedFS (it needs PORT..PORT+4 and +10000 free), apart per test.
fn s3_port(slot: u16) -> u16 {
    20000 + ((std::process::id() % 1000) as u16 * 10 + slot * 5) % 15000
}

#[test]
fn yfcc_list_over_s3_server() {
    let port = s3_port(0);
    let dir = tempfile::tempdir().unwrap();
    let envs = start_s3(port, dir.path(), true);
    let stop = Stopper(start_s3_script(), port, dir.path().to_path_buf());
    let (summary, out) = ingest_dirty("s3://yfcc/", &envs, &[]);
    check_dirty(&summary, out.path());
    drop(stop);
}

/// The S3 server dies mid-ingest (SIGKILL): the run stops with a clear error instead of
/// quarantining the rest of the list; after a restart, re-running the command completes with
/// nothing lost (failed downloads are retried, not left in quarantine).
#[test]
fn s3_server_killed_mid_ingest_then_resumed_loses_nothing() {
    let port = s3_port(1);
    let dir = tempfile::tempdir().unwrap();
    let envs = start_s3(port, dir.path(), true);
    let _stop = Stopper(start_s3_script(), port, dir.path().to_path_buf());
    let pid = envs.iter().find(|(k, _)| k == "S3_PID").map(|(_, v)| v.clone()).expect("start-s3 prints S3_PID");

    let data = data_dir();
    let out = tempfile::tempdir().unwrap();
    let list = data.join("yfcc/yfcc100m_dataset_dirty.tsv");
    let args: Vec<String> = ["yfcc", "--list", p(&list), "--source", "s3://yfcc/", "--key-template", "{download_url}"]
        .iter()
        .chain(&["--out", p(out.path()), "--check", "full", "--shard-records", "8", "--fetch-concurrency", "1"])
        .chain(&["--cpu-threads", "1", "--quiet"])
        .map(|s| s.to_string())
        .collect();
    // The first run gives up quickly once the server is gone.
    let fail_fast = ["--retries", "1", "--timeout", "5", "--max-consecutive-failures", "5"];
    let mut child = Command::new(bin()).args(&args).args(fail_fast).envs(envs.iter().map(|(k, v)| (k, v))).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let shards = || {
        std::fs::read(out.path().join("manifest.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|m| m["shards"].as_array().map(|a| a.len()))
            .unwrap_or(0)
    };
    while shards() < 2 {
        assert!(child.try_wait().unwrap().is_none(), "ingest ended before the server was killed");
        std::thread::sleep(Duration::from_millis(5));
    }
    Command::new("kill").args(["-KILL", &pid]).status().unwrap();
    let res = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(!res.status.success(), "the run must stop when the store is gone");
    assert!(stderr.contains("source looks unavailable"), "{stderr}");

    // A freshly restarted SeaweedFS answers 500 InternalError for a moment while its volume
    // server comes back; resume once it serves objects again (as an operator would), and with
    // the default retry policy.
    let envs = start_s3(port, dir.path(), false);
    wait_until_serving(&envs, "data/images");
    let res = Command::new(bin()).args(&args).arg("--json").envs(envs.iter().map(|(k, v)| (k, v))).output().unwrap();
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&res.stdout).unwrap();
    assert!(summary["resumed_items"].as_u64().unwrap() >= 16, "{summary}");
    check_dirty(&summary, out.path());
}

/// Polls (signed GETs with curl) until the server returns an object under `prefix` of the
/// bucket `yfcc`, for at most 60 s.
fn wait_until_serving(envs: &[(String, String)], prefix: &str) {
    let var = |k: &str| envs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
    let key = std::fs::read_to_string(data_dir().join("yfcc/keys.txt"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with(prefix))
        .expect("a key under the prefix")
        .to_string();
    let url = format!("{}/yfcc/{key}", var("AWS_ENDPOINT_URL"));
    let sigv4 = format!("aws:amz:{}:s3", var("AWS_REGION"));
    let user = format!("{}:{}", var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY"));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ok = Command::new("curl").args(["-sf", "-o", "/dev/null", "--aws-sigv4", &sigv4, "--user", &user, &url]).status().is_ok_and(|s| s.success());
        if ok {
            return;
        }
        assert!(Instant::now() < deadline, "the restarted S3 server does not serve {url}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Stops the S3 server a test started, whatever happens in the test.
struct Stopper(PathBuf, u16, PathBuf);
impl Drop for Stopper {
    fn drop(&mut self) {
        let _ = Command::new(&self.0)
            .args(["--stop", "--port", &self.1.to_string(), "--data-dir", p(&self.2)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// `--upload s3://...`: the ingested dataset is published to the S3 server (shards by multipart
/// upload, manifest last); every object reads back byte for byte, and a second run uploads nothing.
#[test]
fn dataset_uploaded_to_s3_reads_back_identically_and_resumes() {
    let port = s3_port(2);
    let dir = tempfile::tempdir().unwrap();
    let envs = start_s3(port, dir.path(), false);
    let _stop = Stopper(start_s3_script(), port, dir.path().to_path_buf());
    let out = tempfile::tempdir().unwrap();
    let url = "s3://yfcc/datasets/photos";
    let run = || {
        let res = Command::new(bin())
            .args(["folder", p(&data_dir().join("photos")), "--out", p(out.path()), "--shard-size", &(20u64 << 20).to_string()])
            .args(["--upload", url, "--quiet", "--json"])
            .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("silt-ingest runs");
        assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
        serde_json::from_slice::<serde_json::Value>(&res.stdout).unwrap()
    };
    let first = run();
    let manifest = silt_shards::Manifest::load(out.path()).unwrap();
    assert!(manifest.shards.len() >= 5, "139 MB at 20 MiB per shard");
    assert_eq!(first["upload"]["shards_uploaded"], manifest.shards.len());
    assert_eq!(first["upload"]["bytes_uploaded"], manifest.bytes);

    // Read everything back through object_store with the same credentials.
    for (k, v) in &envs {
        std::env::set_var(k, v);
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (store, prefix) = silt_ingest::store::open_store(url).unwrap();
    rt.block_on(async {
        use object_store::ObjectStoreExt;
        let mut names: Vec<String> = manifest.shards.iter().map(|s| s.file.clone()).collect();
        names.push("manifest.json".into());
        for name in names {
            let remote = store.get(&prefix.clone().join(name.as_str())).await.unwrap().bytes().await.unwrap();
            let local = std::fs::read(out.path().join(&name)).unwrap();
            assert!(remote.as_ref() == local.as_slice(), "{name} differs in the store");
        }
    });

    let second = run();
    assert_eq!(second["upload"]["shards_uploaded"], 0);
    assert_eq!(second["upload"]["shards_already_there"], manifest.shards.len());
}

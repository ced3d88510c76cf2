//! Three registry instances as three hosts (issue 14): network namespaces
//! of the test's own, each with its address on a bridge, and on the
//! bridge's gateway one S3 server (moto), one PostgreSQL (the search
//! index) and one Redis (the cache), all shared. Pushes through one,
//! pulls through another, `/v1/search` through the third; one upload's
//! chunks spread over all three; an instance killed in the middle of a
//! push and the client going on through another; Redis killed and started
//! again under traffic.
//!
//! Needs root and `ip` (iproute2); skipped with a message elsewhere,
//! failed under CI.

mod common;
mod v2_support;

#[path = "search_support/postgres.rs"]
#[allow(dead_code)] // what the search tests use of it
mod postgres_server;
#[path = "storage_support/redis_server.rs"]
mod redis_server;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::Value;

use v2_support::*;

/// The bridge and the namespaces, removed when dropped.
struct Network {
    bridge: String,
    namespaces: Vec<String>,
    /// `10.<a>.<b>`: the gateway is `.1`, host `i` is `.(11 + i)`.
    subnet: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Network {
    fn new(hosts: usize) -> Result<Network, String> {
        let id = std::process::id();
        let subnet = format!("10.{}.{}", 200 + (id >> 8) % 50, id % 250);
        let mut network = Network {
            bridge: format!("rv1br{}", id % 100_000),
            namespaces: Vec::new(),
            subnet,
        };
        let bridge = network.bridge.clone();
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", network.gateway()),
            "dev",
            &bridge,
        ])?;
        ip(&["link", "set", &bridge, "up"])?;
        for i in 0..hosts {
            let ns = format!("rv1-{}-{i}", id % 100_000);
            let (outside, inside) = (
                format!("rv1v{}o{i}", id % 10_000),
                format!("rv1v{}i{i}", id % 10_000),
            );
            ip(&["netns", "add", &ns])?;
            network.namespaces.push(ns.clone());
            ip(&[
                "link", "add", &outside, "type", "veth", "peer", "name", &inside,
            ])?;
            ip(&["link", "set", &outside, "master", &bridge])?;
            ip(&["link", "set", &outside, "up"])?;
            ip(&["link", "set", &inside, "netns", &ns])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", network.host(i)),
                "dev",
                &inside,
            ])?;
            ip(&["-n", &ns, "link", "set", &inside, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(network)
    }

    fn gateway(&self) -> String {
        format!("{}.1", self.subnet)
    }

    fn host(&self, i: usize) -> String {
        format!("{}.{}", self.subnet, 11 + i)
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            // Deleting the namespace deletes its end of the veth, and so
            // the other end.
            let _ = ip(&["netns", "del", ns]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}

/// A registry process inside a namespace, killed when dropped.
struct Host {
    address: String,
    child: Child,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

const PORT: u16 = 5000;

impl Host {
    fn start(ns: &str, address: &str, env: &[(String, String)]) -> Host {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("stderr.log");
        let cmd = common::command();
        let program = cmd.get_program().to_owned();
        let mut inside = Command::new("ip");
        inside.args(["netns", "exec", ns]).arg(program);
        // `ip netns exec` execs the binary: the child's pid is the
        // registry's, for kill -9.
        for (key, value) in cmd.get_envs() {
            match value {
                Some(v) => inside.env(key, v),
                None => inside.env_remove(key),
            };
        }
        let child = inside
            .current_dir(dir.path())
            .env("REGISTRY_HOST", address)
            .env("REGISTRY_PORT", PORT.to_string())
            .env("GUNICORN_WORKERS", "2")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start registry-v1 in its namespace");
        let mut host = Host {
            address: address.to_owned(),
            child,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = host.child.try_wait() {
                panic!(
                    "registry-v1 on {address} exited with {status}:\n{}",
                    host.log()
                );
            }
            let ready = common::client()
                .get(host.url("/readyz"))
                .timeout(Duration::from_secs(2))
                .send()
                .is_ok_and(|r| r.status() == 200);
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{address} not ready:\n{}",
                host.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        host
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}:{PORT}{path}", self.address)
    }

    fn v2(&self) -> V2 {
        V2::at(format!("http://{}:{PORT}", self.address))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether this test can make hosts here; says why not.
fn network_or_skip() -> Option<Network> {
    match Network::new(3) {
        Ok(network) => Some(network),
        Err(why) if std::env::var_os("CI").is_some() => {
            panic!("the multi-host test needs root and iproute2 under CI: {why}")
        }
        Err(why) => {
            eprintln!("\nSKIPPED: multi-host test (cannot make network namespaces: {why})\n");
            None
        }
    }
}

/// `Location` of an upload, as a path the next host can be asked for.
fn location_path(location: &str) -> String {
    path_of(location)
}

/// A PATCH of `data` at `offset` to `host`; the new `Location`.
fn patch(client: &Client, host: &Host, location: &str, offset: usize, data: Vec<u8>) -> String {
    let end = offset + data.len() - 1;
    let resp = client
        .patch(host.url(location))
        .header("content-type", "application/octet-stream")
        .header("content-range", format!("{offset}-{end}"))
        .body(data)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 202, "PATCH on {}", host.address);
    let range = header(&resp, "range").unwrap();
    assert_eq!(range, format!("0-{end}"));
    location_path(&header(&resp, "location").unwrap())
}

/// A body that sends `data`, then fails to end: the server waits for more
/// until its host is killed.
struct ThenHang {
    data: std::io::Cursor<Vec<u8>>,
    sent: std::sync::Arc<AtomicBool>,
}

impl Read for ThenHang {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.data.read(buf)?;
        if n == 0 {
            self.sent.store(true, Ordering::Release);
            std::thread::sleep(Duration::from_secs(10));
            return Err(std::io::Error::other("gave up"));
        }
        Ok(n)
    }
}

#[test]
fn three_hosts_share_one_bucket_one_index_and_one_cache() {
    let Some(network) = network_or_skip() else {
        return;
    };
    let gateway = network.gateway();
    let s3 = s3_server::start_on(&gateway).expect("an S3 server on the gateway");
    let bucket = "multi-host";
    let created = common::client()
        .put(format!("{}/{bucket}", s3.endpoint()))
        .send()
        .unwrap();
    assert!(created.status().is_success());
    let pg = postgres_server::start_on(&gateway).expect("PostgreSQL on the gateway");
    let db = pg.database();
    let mut redis = redis_server::start_on(&gateway, Some("multi host pw")).expect("redis-server");
    let mut env: Vec<(String, String)> = [
        ("SETTINGS_FLAVOR", "s3"),
        ("AWS_BUCKET", bucket),
        ("AWS_KEY", "testing"),
        ("AWS_SECRET", "testing"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_HOST", &gateway),
        ("AWS_SECURE", "false"),
        ("AWS_ENCRYPT", "false"),
        ("STORAGE_PATH", "/registry"),
        ("SEARCH_BACKEND", "sqlalchemy"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    env.push(("AWS_PORT".into(), s3.port.to_string()));
    env.push((
        "SQLALCHEMY_INDEX_DATABASE".into(),
        format!(
            "postgresql://postgres:s3cret@{gateway}:{}/{}",
            db.port(),
            db.name
        ),
    ));
    env.extend(redis.env().into_iter().map(|(k, v)| (k.to_owned(), v)));
    let mut hosts: Vec<Host> = (0..3)
        .map(|i| Host::start(&network.namespaces[i], &network.host(i), &env))
        .collect();
    let client = common::client();

    // One layer, its chunks through each host in turn.
    let layer = unique_bytes("multi-host layer", 20 << 20);
    let digest = sha256(&layer);
    let mut location = location_path(&hosts[0].v2().start_upload("team/app"));
    let chunk = 8 << 20;
    for (i, part) in layer[..2 * chunk].chunks(chunk).enumerate() {
        location = patch(
            &client,
            &hosts[(i + 1) % 3],
            &location,
            i * chunk,
            part.to_vec(),
        );
    }
    let resp = client
        .put(hosts[0].url(&with_query(&location, &format!("digest={digest}"))))
        .header("content-type", "application/octet-stream")
        .header(
            "content-range",
            format!("{}-{}", 2 * chunk, layer.len() - 1),
        )
        .body(layer[2 * chunk..].to_vec())
        .send()
        .unwrap();
    assert_eq!(resp.status(), 201, "the upload ends through the first host");
    let config = ImageBlobs::new("multi-host", "amd64").config;
    hosts[1].v2().push_blob("team/app", &config);
    let manifest = manifest_bytes(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, &config),
        "layers": [descriptor(OCI_LAYER, &layer)],
    }));
    let manifest_digest = hosts[2]
        .v2()
        .push_manifest("team/app", "v1", OCI_MANIFEST, &manifest);

    // Pulled through another host, found through the third.
    for host in &hosts {
        let resp = host.v2().get_manifest("/v2/team/app/manifests/v1");
        assert_eq!(resp.status(), 200, "manifest through {}", host.address);
        assert_eq!(
            header(&resp, "docker-content-digest").unwrap(),
            manifest_digest
        );
    }
    let pulled = hosts[1].v2().get(&format!("/v2/team/app/blobs/{digest}"));
    assert_eq!(pulled.status(), 200);
    assert_eq!(sha256(&pulled.bytes().unwrap()), digest);
    let found: Value = client
        .get(hosts[2].url("/v1/search?q=team/app"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(found["num_results"], 1, "{found}");

    // A push whose host is killed in its middle; the client asks another
    // host where the upload stands and goes on there.
    let big = unique_bytes("killed in the middle", 24 << 20);
    let big_digest = sha256(&big);
    let mut location = location_path(&hosts[0].v2().start_upload("team/killed"));
    location = patch(&client, &hosts[0], &location, 0, big[..8 << 20].to_vec());
    let sent = std::sync::Arc::new(AtomicBool::new(false));
    let body = ThenHang {
        data: std::io::Cursor::new(big[8 << 20..16 << 20].to_vec()),
        sent: sent.clone(),
    };
    let url = hosts[0].url(&location);
    let hanging = std::thread::spawn(move || {
        common::client()
            .patch(url)
            .header("content-type", "application/octet-stream")
            .body(reqwest::blocking::Body::new(body))
            .send()
    });
    while !sent.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    hosts[0].kill();
    assert!(hanging.join().unwrap().is_err(), "the killed host answered");
    let status = client.get(hosts[1].url(&location)).send().unwrap();
    assert_eq!(status.status(), 204);
    let range = header(&status, "range").unwrap();
    let done: usize = range.strip_prefix("0-").unwrap().parse::<usize>().unwrap() + 1;
    assert!(done <= 8 << 20, "only closed bytes count: {range}");
    let location = location_path(&header(&status, "location").unwrap());
    let location = patch(
        &client,
        &hosts[1],
        &location,
        done,
        big[done..20 << 20].to_vec(),
    );
    let resp = client
        .put(hosts[2].url(&with_query(&location, &format!("digest={big_digest}"))))
        .header("content-type", "application/octet-stream")
        .header("content-range", format!("{}-{}", 20 << 20, big.len() - 1))
        .body(big[20 << 20..].to_vec())
        .send()
        .unwrap();
    assert_eq!(
        resp.status(),
        201,
        "the upload completed through the others"
    );
    let pulled = hosts[2]
        .v2()
        .get(&format!("/v2/team/killed/blobs/{big_digest}"));
    assert_eq!(
        sha256(&pulled.bytes().unwrap()),
        big_digest,
        "the image ends complete"
    );
    // The killed host comes back and serves it too.
    let ns = network.namespaces[0].clone();
    hosts[0] = Host::start(&ns, &network.host(0), &env);
    let resp = hosts[0]
        .v2()
        .head(&format!("/v2/team/killed/blobs/{big_digest}"));
    assert_eq!(resp.status(), 200);

    // Redis killed and started again while all three serve pulls.
    let stop = AtomicBool::new(false);
    let requests = AtomicU64::new(0);
    let manifest_path = format!("/v2/team/app/manifests/{manifest_digest}");
    std::thread::scope(|threads| {
        for host in &hosts {
            let (stop, requests, path) = (&stop, &requests, &manifest_path);
            threads.spawn(move || {
                let v2 = host.v2();
                while !stop.load(Ordering::Relaxed) {
                    let resp = v2.get_manifest(path);
                    assert_eq!(resp.status(), 200, "a pull through {} failed", host.address);
                    requests.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        std::thread::sleep(Duration::from_millis(500));
        redis.stop();
        std::thread::sleep(Duration::from_secs(1));
        redis.start_again();
        std::thread::sleep(Duration::from_secs(3));
        stop.store(true, Ordering::Relaxed);
    });
    assert!(requests.load(Ordering::Relaxed) > 30, "too little traffic");
    for host in &hosts {
        let log = host.log();
        assert!(
            !log.contains("multi host pw") && !log.contains("s3cret"),
            "a password in the log"
        );
        assert!(!log.contains("panicked"), "{log}");
    }
}

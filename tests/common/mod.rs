//! Test support shared by the integration tests: the real `registry-v1`
//! binary on a free loopback port, and its command line.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The checksum a v1 client sends for an image (`X-Docker-Checksum-Payload`):
/// `sha256(json + "\n" + layer)`.
pub fn v1_checksum(json: &[u8], layer: &[u8]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(json);
    h.update(b"\n");
    h.update(layer);
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// Where the fixtures shared with the rest of the team live.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/v1-images")
}

/// The binary under test, with an environment holding none of the
/// registry's variables from the developer's shell. `REGISTRY_V1_TEST_BIN`
/// names another build of it (a copy, when worktrees share a target
/// folder and so the binary's path).
pub fn command() -> Command {
    let bin = std::env::var_os("REGISTRY_V1_TEST_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_registry-v1").into());
    let mut cmd = Command::new(bin);
    for (key, _) in std::env::vars() {
        if key.starts_with("AWS_")
            || key.starts_with("GCS_")
            || [
                "DOCKER_REGISTRY_CONFIG",
                "SETTINGS_FLAVOR",
                "REGISTRY_HOST",
                "REGISTRY_PORT",
                "STORAGE_PATH",
                "SEARCH_BACKEND",
                "SQLALCHEMY_INDEX_DATABASE",
                "LOGLEVEL",
                "DEBUG",
                "STANDALONE",
                "WEB_UI",
                "WEB_UI_PREFIX",
                "RUST_LOG",
                "BODY_IDLE_TIMEOUT",
                "MAX_CONCURRENT_UPLOADS",
                "GC_INTERVAL",
                "GC_GRACE_PERIOD",
                "GC_UPLOAD_MAX_AGE",
                "GC_DELETE_UNTAGGED",
                "AUTH_HTPASSWD",
                "AUTH_REALM",
                "AUTH_REQUIRED",
                "AUTH_MAX_FAILED_LOGINS",
                "AUTH_TOKEN_REALM",
                "AUTH_TOKEN_SERVICE",
                "AUTH_TOKEN_ISSUER",
                "AUTH_TOKEN_ROOTCERTBUNDLE",
                "TLS_CERTIFICATE",
                "TLS_KEY",
                "TLS_CLIENT_CA",
                "METRICS_ADDRESS",
                "METRICS_PATH",
                "CACHE_REDIS_HOST",
                "CACHE_REDIS_PORT",
                "CACHE_REDIS_DB",
                "CACHE_REDIS_PASSWORD",
                "CACHE_LRU_REDIS_HOST",
                "CACHE_LRU_REDIS_PORT",
                "CACHE_LRU_REDIS_DB",
                "CACHE_LRU_REDIS_PASSWORD",
            ]
            .contains(&key.as_str())
        {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Runs the binary to completion with `args` and extra environment.
pub fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    command()
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run registry-v1")
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

/// A running registry; killed when dropped.
pub struct Registry {
    pub port: u16,
    child: Child,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Starts the binary in a fresh temporary working directory with `env`
    /// (add `STORAGE_PATH`, `DOCKER_REGISTRY_CONFIG`, ... as the test needs)
    /// and waits until `/_ping` answers.
    pub fn start(env: &[(&str, &str)]) -> Registry {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let stderr = dir.path().join("stderr.log");
        let child = command()
            .current_dir(dir.path())
            .env("REGISTRY_HOST", "127.0.0.1")
            .env("REGISTRY_PORT", port.to_string())
            .env("GUNICORN_WORKERS", "2")
            // `dev` searches by default: a database of its own, not the
            // machine-wide /tmp/docker-registry.db.
            .env(
                "SQLALCHEMY_INDEX_DATABASE",
                format!("sqlite:///{}", dir.path().join("search.db").display()),
            )
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("stderr log"))
            .spawn()
            .expect("spawn registry-v1");
        let mut registry = Registry {
            port,
            child,
            stderr,
            _dir: dir,
        };
        registry.wait_ready();
        registry
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("registry-v1 exited with {status}:\n{}", self.log());
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("registry-v1 did not listen within 20 s:\n{}", self.log());
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// What the server wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits (up to 10 s) for the process to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("registry-v1 ignored SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking HTTP client that does not follow redirects.
pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .expect("http client")
}

/// The names `/v1/search` finds for `term` (all, for an empty term; up
/// to 100), sorted.
pub fn search_names(registry: &Registry, term: &str) -> Vec<String> {
    let resp = client()
        .get(registry.url(&format!("/v1/search?q={term}&n=100")))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let found: serde_json::Value = resp.json().unwrap();
    let mut names: Vec<String> = found["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

/// Instantiates each test function, taking a `Backend`, once on local disk,
/// once on S3 and once on Swift (each skipped when its test server is not
/// there, outside CI); the caller's module defines `Backend::local()`,
/// `Backend::s3()` and `Backend::swift()`.
#[allow(unused_macros)]
macro_rules! for_each_backend {
    ($($test:ident),* $(,)?) => {
        mod local {
            $( #[test] fn $test() { super::$test(super::Backend::local()); } )*
        }
        mod s3 {
            $( #[test] fn $test() {
                if let Some(backend) = super::Backend::s3() { super::$test(backend); }
            } )*
        }
        mod swift {
            $( #[test] fn $test() {
                if let Some(backend) = super::Backend::swift() { super::$test(backend); }
            } )*
        }
    };
}

/// A field of a process's /proc status in KiB (`VmRSS`, now; `VmHWM`, the peak).
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// What a docker 1.x push sends of one image.
pub struct V1Upload<'a> {
    pub id: &'a str,
    pub json: &'a [u8],
    pub layer: &'a [u8],
}

/// docker 1.x's push to the v1 API at `base` (a path to its URL): the
/// repository, each image not there yet in three steps (json, layer,
/// checksum), then `tag` on the last image.
pub fn push_v1(base: &dyn Fn(&str) -> String, repo: &str, images: &[V1Upload], tag: &str) {
    let http = client();
    let ok = |resp: reqwest::blocking::Response, what: &str| {
        let status = resp.status();
        assert!(
            status.is_success(),
            "{what}: {status} {}",
            resp.text().unwrap_or_default()
        );
    };
    let put = |path: &str| http.put(base(path));
    ok(
        put(&format!("/v1/repositories/{repo}/"))
            .body("[]")
            .send()
            .unwrap(),
        "PUT repository",
    );
    for image in images {
        let id = image.id;
        let held = http
            .get(base(&format!("/v1/images/{id}/json")))
            .send()
            .unwrap();
        if held.status() == 200 {
            continue;
        }
        let json = put(&format!("/v1/images/{id}/json")).body(image.json.to_vec());
        ok(json.send().unwrap(), "PUT json");
        let layer = put(&format!("/v1/images/{id}/layer")).body(image.layer.to_vec());
        ok(layer.send().unwrap(), "PUT layer");
        let checksum = put(&format!("/v1/images/{id}/checksum")).header(
            "X-Docker-Checksum-Payload",
            v1_checksum(image.json, image.layer),
        );
        ok(checksum.send().unwrap(), "PUT checksum");
    }
    let top = images.last().expect("an image to tag").id;
    let tagged = put(&format!("/v1/repositories/{repo}/tags/{tag}")).body(format!("\"{top}\""));
    ok(tagged.send().unwrap(), "PUT tag");
}

/// A fixture image of `../shared/fixtures/v1-images/<dir>`: its json and
/// its layer.
pub fn v1_fixture(dir: &str) -> (serde_json::Value, Vec<u8>) {
    let dir = fixtures().join(dir);
    (
        serde_json::from_slice(&std::fs::read(dir.join("json")).unwrap()).unwrap(),
        std::fs::read(dir.join("layer.tar")).unwrap(),
    )
}

/// An image's json as `json` with the id `id` and the parent `parent`.
pub fn v1_json(mut json: serde_json::Value, id: &str, parent: Option<&str>) -> Vec<u8> {
    json["id"] = serde_json::json!(id);
    match parent {
        Some(p) => json["parent"] = serde_json::json!(p),
        None => {
            json.as_object_mut().unwrap().remove("parent");
        }
    }
    serde_json::to_vec(&json).unwrap()
}

/// The value of the first metric line starting with `line_start` at the
/// metrics listener on `port`; 0 when there is none yet.
pub fn metric(port: u16, line_start: &str) -> f64 {
    let text = client()
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

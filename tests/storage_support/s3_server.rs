//! A real S3-compatible server (moto's, from PyPI `moto[server]`, run by
//! `s3_test_server.py`) on a free loopback port, started once per test
//! binary and stopped when the binary exits.
//!
//! The server runs under a small shell that waits on its standard input:
//! when this process ends, for any reason, the pipe closes and the shell
//! kills the server, so no server outlives the tests.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Where `.ci/install-storage.sh` puts moto when the system Python lacks it.
const INSTALLED: &str = "/opt/registry-v1-s3-test/bin/python3";

/// The Python that has moto installed: `S3_TEST_PYTHON`, else the one
/// `.ci/install-storage.sh` set up, else `python3`.
fn python() -> String {
    if let Ok(python) = std::env::var("S3_TEST_PYTHON") {
        return python;
    }
    if std::path::Path::new(INSTALLED).exists() {
        return INSTALLED.to_owned();
    }
    "python3".to_owned()
}

fn launcher() -> String {
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/storage_support/s3_test_server.py"
    )
    .to_owned()
}

pub struct S3Server {
    /// The address it listens on: 127.0.0.1, but for [`start_on`].
    pub host: String,
    pub port: u16,
    // Held so that the pipe closes (and the server stops) only at exit.
    _stdin: Mutex<ChildStdin>,
    _child: Mutex<Child>,
}

impl S3Server {
    pub fn endpoint(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }

    /// Makes a bucket (the test fails if the server refuses). Not from
    /// within an async runtime: the client blocks.
    pub fn create_bucket(&self, bucket: &str) {
        let status = reqwest::blocking::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .put(format!("{}/{bucket}", self.endpoint()))
            .send()
            .expect("create bucket")
            .status();
        assert!(status.is_success(), "create bucket {bucket}: {status}");
    }

    /// The environment of a registry that keeps its data in `bucket` on
    /// this server: the `s3` flavor of config_sample.yml with moto's test
    /// credentials, plain HTTP, `storage_path` /registry.
    pub fn registry_env(&self, bucket: &str) -> Vec<(String, String)> {
        [
            ("SETTINGS_FLAVOR", "s3"),
            ("AWS_BUCKET", bucket),
            ("AWS_KEY", "testing"),
            ("AWS_SECRET", "testing"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_HOST", &self.host),
            ("AWS_PORT", &self.port.to_string()),
            ("AWS_SECURE", "false"),
            ("AWS_ENCRYPT", "false"),
            ("STORAGE_PATH", "/registry"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

static SERVER: OnceLock<Option<S3Server>> = OnceLock::new();

/// The shared server, or `None` (with a message) when moto's server is not
/// installed. Under CI (`CI` set) a missing server fails loudly instead.
pub fn server() -> Option<&'static S3Server> {
    SERVER
        .get_or_init(|| match start_on("127.0.0.1") {
            Ok(server) => Some(server),
            Err(why) if std::env::var_os("CI").is_some() => {
                panic!("S3 tests need moto's server under CI: {why} (run .ci/install-storage.sh)")
            }
            Err(why) => {
                // Straight to stderr: the test harness swallows `eprintln!`
                // of passing tests, and this must be seen.
                let _ = writeln!(
                    std::io::stderr(),
                    "\nSKIPPING S3/GCS storage tests: {why}. Install the server with \
                     .ci/install-storage.sh (pip install 'moto[server]').\n"
                );
                None
            }
        })
        .as_ref()
}

fn free_port(host: &str) -> u16 {
    TcpListener::bind((host, 0))
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

/// A server of its own on `host`: an address other than loopback, for a
/// registry in a container (the docker bridge's gateway). It stops when
/// the returned value is dropped, or when this process exits.
pub fn start_on(host: &str) -> Result<S3Server, String> {
    let python = python();
    let found = Command::new(&python)
        .args([
            "-c",
            "import moto.moto_server.werkzeug_app, flask, werkzeug",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !found {
        return Err(format!(
            "`{python}` cannot import moto's server (moto[server])"
        ));
    }
    let port = free_port(host);
    let script = r#""$1" "$2" "$3" "$4" >/dev/null 2>&1 &
server=$!
read -r _ignored
kill "$server" 2>/dev/null
wait "$server" 2>/dev/null
exit 0"#;
    let mut child = Command::new("sh")
        .args([
            "-c",
            script,
            "sh",
            &python,
            &launcher(),
            host,
            &port.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the S3 test server: {e}"))?;
    let stdin = child.stdin.take().ok_or("no stdin pipe")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !answers(host, port) {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("the S3 test server exited at start: {status}"));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(format!(
                "the S3 test server did not answer on port {port} within 60 s"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(S3Server {
        host: host.to_owned(),
        port,
        _stdin: Mutex::new(stdin),
        _child: Mutex::new(child),
    })
}

/// Whether an HTTP server answers on the port.
fn answers(host: &str, port: u16) -> bool {
    let Ok(mut conn) = TcpStream::connect((host, port)) else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    if conn.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    conn.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.")
}

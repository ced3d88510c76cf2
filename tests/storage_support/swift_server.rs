//! A real OpenStack Swift (Debian's, `.ci/install-swift.sh`, run by
//! `swift_test_server.py`) on free loopback ports: one account, container
//! and object server, a proxy with tempauth, bulk, tempurl, copy, slo and
//! dlo, and memcached. Started once per test binary and stopped when the
//! binary exits; its configuration, rings and data live in a temporary
//! folder the launcher removes when it stops. Nothing under /etc is read.
//!
//! The launcher waits on its standard input: when this process ends, for
//! any reason, the pipe closes and it stops the servers (which also die
//! with it if it is killed).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::Duration;

/// tempauth's one user (`.admin` of account [`ACCOUNT`], so it may set
/// the account's temp-URL key) and its key.
pub const USER: &str = "test:tester";
pub const KEY: &str = "testing";
/// The account [`USER`] works in, created on first use.
pub const ACCOUNT: &str = "AUTH_test";

/// Keystone's user (started `--keystone`), its password, its project (a
/// member of it; its account is `KEY_<project id>`), domain and region.
pub const KEYSTONE_USER: &str = "swiftuser";
pub const KEYSTONE_PASSWORD: &str = "swiftpass";
pub const KEYSTONE_PROJECT: &str = "swiftproject";
pub const KEYSTONE_REGION: &str = "RegionOne";

/// Debian's interpreter, the one that imports `swift` (an interpreter
/// earlier on `PATH` may not).
const PYTHON: &str = "/usr/bin/python3";

/// How long the launcher may take to answer `ready` (it gives up itself
/// after 60 s an attempt).
const START_TIMEOUT: Duration = Duration::from_secs(240);

/// The Python that runs Swift: `SWIFT_TEST_PYTHON`, else Debian's.
fn python() -> String {
    std::env::var("SWIFT_TEST_PYTHON").unwrap_or_else(|_| PYTHON.to_owned())
}

fn launcher() -> String {
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/storage_support/swift_test_server.py"
    )
    .to_owned()
}

pub struct SwiftServer {
    /// The proxy's port, on 127.0.0.1.
    pub port: u16,
    /// Keystone's port (v3 at `/v3`), for a server started `--keystone`.
    pub keystone_port: Option<u16>,
    // Held so that the pipe closes (and the server stops) only at exit,
    // or when the value is dropped.
    stdin: Mutex<Option<ChildStdin>>,
    child: Mutex<Child>,
}

impl SwiftServer {
    /// tempauth's v1 endpoint: `GET` with `X-Auth-User` [`USER`] and
    /// `X-Auth-Key` [`KEY`] answers `X-Auth-Token` and `X-Storage-Url`.
    pub fn auth_url(&self) -> String {
        format!("http://127.0.0.1:{}/auth/v1.0", self.port)
    }

    /// The account's URL, as `X-Storage-Url` gives it.
    pub fn storage_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1/{ACCOUNT}", self.port)
    }

    fn client() -> reqwest::blocking::Client {
        reqwest::blocking::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
    }

    /// A token of [`USER`] (the test fails if the server refuses). Not
    /// from within an async runtime: the client blocks.
    pub fn token(&self) -> String {
        let response = Self::client()
            .get(self.auth_url())
            .header("X-Auth-User", USER)
            .header("X-Auth-Key", KEY)
            .send()
            .expect("Swift auth");
        assert!(
            response.status().is_success(),
            "Swift auth: {}",
            response.status()
        );
        response
            .headers()
            .get("X-Auth-Token")
            .and_then(|v| v.to_str().ok())
            .expect("X-Auth-Token")
            .to_owned()
    }

    /// A token and the storage URL it is good for. Not from within an
    /// async runtime.
    pub fn login(&self) -> (String, String) {
        (self.token(), self.storage_url())
    }

    /// Every object name of `container` (none when it does not exist),
    /// page after page. Not from within an async runtime.
    pub fn names(&self, container: &str) -> Vec<String> {
        let token = self.token();
        let mut all: Vec<String> = Vec::new();
        loop {
            let mut request = Self::client()
                .get(format!("{}/{container}", self.storage_url()))
                .header("X-Auth-Token", &token)
                .query(&[("format", "json")]);
            if let Some(last) = all.last() {
                request = request.query(&[("marker", last.as_str())]);
            }
            let response = request.send().expect("Swift listing");
            if response.status() == 404 {
                return all;
            }
            let page: Vec<serde_json::Value> = response.json().expect("a JSON listing");
            if page.is_empty() {
                return all;
            }
            all.extend(page.iter().map(|o| o["name"].as_str().unwrap().to_owned()));
        }
    }

    /// Makes a container (the test fails if the server refuses; 202 when
    /// it exists already). Not from within an async runtime.
    pub fn create_container(&self, container: &str) {
        let status = Self::client()
            .put(format!("{}/{container}", self.storage_url()))
            .header("X-Auth-Token", self.token())
            .send()
            .expect("create container")
            .status();
        assert!(
            status.is_success(),
            "create container {container}: {status}"
        );
    }

    /// The environment of a registry that keeps its data in `container`
    /// on this server: the `swift` flavor of config_sample.yml with
    /// tempauth's user, `storage_path` /registry.
    pub fn registry_env(&self, container: &str) -> Vec<(String, String)> {
        [
            ("SETTINGS_FLAVOR", "swift"),
            ("OS_AUTH_URL", &self.auth_url()),
            ("OS_CONTAINER", container),
            ("OS_USERNAME", USER),
            ("OS_PASSWORD", KEY),
            ("STORAGE_PATH", "/registry"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

impl Drop for SwiftServer {
    fn drop(&mut self) {
        // Closing its stdin stops the launcher: it stops the servers and
        // removes its folder.
        if let Ok(stdin) = self.stdin.get_mut() {
            drop(stdin.take());
        }
        if let Ok(child) = self.child.get_mut() {
            let _ = child.wait();
        }
    }
}

static SERVER: OnceLock<Option<SwiftServer>> = OnceLock::new();

/// The shared server, or `None` (with a message) when Swift is not
/// installed. Under CI (`CI` set) a missing server fails loudly instead.
pub fn server() -> Option<&'static SwiftServer> {
    SERVER
        .get_or_init(|| match start() {
            Ok(server) => Some(server),
            Err(why) if std::env::var_os("CI").is_some() => {
                panic!("Swift tests need Debian's Swift under CI: {why} (run .ci/install-swift.sh)")
            }
            Err(why) => {
                // Straight to stderr: the test harness swallows `eprintln!`
                // of passing tests, and this must be seen.
                let _ = writeln!(
                    std::io::stderr(),
                    "\nSKIPPING Swift storage tests: {why}. Install Swift with \
                     .ci/install-swift.sh.\n"
                );
                None
            }
        })
        .as_ref()
}

/// A server of its own. It stops when the returned value is dropped, or
/// when this process exits.
pub fn start() -> Result<SwiftServer, String> {
    start_with(&[])
}

/// [`start`] with arguments of the launcher (`--dir D`: its folder, logs
/// in `D/log`, kept; `--token-life S`: tempauth's tokens live `S` s;
/// `--listing-limit N`; `--keystone`, `--keystone-token-life S`: a
/// Keystone v3 whose tokens the proxy takes too, see [`KEYSTONE_USER`]).
pub fn start_with(args: &[&str]) -> Result<SwiftServer, String> {
    let python = python();
    if !std::path::Path::new(&python).exists() {
        return Err(format!(
            "`{python}` not found (Debian's python3, with Swift)"
        ));
    }
    let mut child = Command::new(&python)
        .arg(launcher())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the Swift test server: {e}"))?;
    let stdin = child.stdin.take().ok_or("no stdin pipe")?;
    let stdout = child.stdout.take().ok_or("no stdout pipe")?;
    // Its first line: `ready <port>`, or `error: <why>` (then it exits).
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = match rx.recv_timeout(START_TIMEOUT) {
        Ok(line) => line,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "the Swift test server did not start within {} s",
                START_TIMEOUT.as_secs()
            ));
        }
    };
    let line = line.trim();
    // `ready <proxy port>`, then Keystone's port with `--keystone`.
    let mut ports = line
        .strip_prefix("ready ")
        .unwrap_or_default()
        .split_whitespace()
        .map(|port| port.parse::<u16>().ok());
    let (port, keystone_port) = (ports.next().flatten(), ports.next().flatten());
    let Some(port) = port else {
        let _ = child.kill();
        let status = child.wait();
        return Err(match line.strip_prefix("error: ") {
            Some(why) => why.to_owned(),
            None => format!("the Swift test server exited at start: {status:?} {line:?}"),
        });
    };
    Ok(SwiftServer {
        port,
        keystone_port,
        stdin: Mutex::new(Some(stdin)),
        child: Mutex::new(child),
    })
}

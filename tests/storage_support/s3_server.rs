//! A real S3-compatible server (`moto_server`) on a free loopback port,
//! started once per test binary and stopped when the binary exits.
//!
//! The server runs under a small shell that waits on its standard input:
//! when this process ends, for any reason, the pipe closes and the shell
//! kills the server, so no server outlives the tests.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The program started; override with `MOTO_SERVER`.
fn program() -> String {
    std::env::var("MOTO_SERVER").unwrap_or_else(|_| "moto_server".to_owned())
}

pub struct S3Server {
    pub port: u16,
    // Held so that the pipe closes (and the server stops) only at exit.
    _stdin: Mutex<ChildStdin>,
    _child: Mutex<Child>,
}

impl S3Server {
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

static SERVER: OnceLock<Option<S3Server>> = OnceLock::new();

/// The shared server, or `None` (with a message) when `moto_server` is not
/// installed. Under CI (`CI` set) a missing server fails loudly instead.
pub fn server() -> Option<&'static S3Server> {
    SERVER
        .get_or_init(|| match start() {
            Ok(server) => Some(server),
            Err(why) if std::env::var_os("CI").is_some() => {
                panic!(
                    "S3 tests need {} under CI: {why} (run .ci/install-storage.sh)",
                    program()
                )
            }
            Err(why) => {
                eprintln!(
                    "SKIPPING S3/GCS storage tests: {why}. Install the server with \
                     .ci/install-storage.sh (pip install 'moto[server]')."
                );
                None
            }
        })
        .as_ref()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

fn start() -> Result<S3Server, String> {
    let program = program();
    let found = Command::new("sh")
        .args(["-c", "command -v \"$1\"", "sh", &program])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !found {
        return Err(format!("`{program}` is not on PATH"));
    }
    let port = free_port();
    let script = r#""$1" -H 127.0.0.1 -p "$2" >/dev/null 2>&1 &
server=$!
read -r _ignored
kill "$server" 2>/dev/null
wait "$server" 2>/dev/null
exit 0"#;
    let mut child = Command::new("sh")
        .args(["-c", script, "sh", &program, &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    let stdin = child.stdin.take().ok_or("no stdin pipe")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !answers(port) {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("{program} exited at start: {status}"));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(format!(
                "{program} did not answer on port {port} within 60 s"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(S3Server {
        port,
        _stdin: Mutex::new(stdin),
        _child: Mutex::new(child),
    })
}

/// Whether an HTTP server answers on the port.
fn answers(port: u16) -> bool {
    use std::io::Write;
    let Ok(mut conn) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    let req = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if conn.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    conn.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.")
}

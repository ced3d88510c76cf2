//! A real Redis server (Debian's `redis-server`, `.ci/install-redis.sh`) on
//! a free loopback port, nothing kept on disk, for the cache tests. It can
//! be stopped and started again on the same port, as an outage would; it
//! stops for good when dropped or when the test process ends (it runs
//! under a shell that waits on a pipe from this process).

// Each test binary uses a part of it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    /// Where it listens: loopback, or a test host's gateway.
    pub host: String,
    pub port: u16,
    pub password: Option<String>,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// `None` (and a message) when redis-server is not installed; under CI a
/// missing server fails instead.
pub fn start(password: Option<&str>) -> Option<RedisServer> {
    start_on("127.0.0.1", password)
}

/// A server on `host` instead of loopback.
pub fn start_on(host: &str, password: Option<&str>) -> Option<RedisServer> {
    let found = Command::new("sh")
        .args(["-c", "command -v redis-server"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        if std::env::var_os("CI").is_some() {
            panic!("the cache tests need redis-server under CI (run .ci/install-redis.sh)");
        }
        let _ = writeln!(
            std::io::stderr(),
            "\nSKIPPING the Redis cache tests: redis-server not installed (.ci/install-redis.sh)\n"
        );
        return None;
    }
    let port = TcpListener::bind((host, 0))
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut server = RedisServer {
        host: host.to_owned(),
        port,
        password: password.map(str::to_owned),
        dir: tempfile::tempdir().expect("tempdir"),
        child: None,
    };
    server.start_again();
    Some(server)
}

impl RedisServer {
    /// Starts the server (again) on its port.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "already running");
        let mut args = vec![
            "--port".to_owned(),
            self.port.to_string(),
            "--bind".to_owned(),
            self.host.clone(),
            "--save".to_owned(),
            String::new(),
            "--appendonly".to_owned(),
            "no".to_owned(),
            "--dir".to_owned(),
            self.dir.path().display().to_string(),
        ];
        if let Some(password) = &self.password {
            args.extend(["--requirepass".to_owned(), password.clone()]);
        }
        let script = r#""$@" >/dev/null 2>&1 &
server=$!
read -r _ignored
kill -9 "$server" 2>/dev/null
wait "$server" 2>/dev/null
exit 0"#;
        let child = Command::new("sh")
            .args(["-c", script, "sh", "redis-server"])
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.answers() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (`kill -9`: an outage, not a shutdown).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            drop(child.stdin.take());
            let _ = child.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect((self.host.as_str(), self.port)).is_ok() {
            assert!(Instant::now() < deadline, "redis-server still answers");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A command through `redis-cli`, its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-h", &self.host, "-p", &self.port.to_string()]);
        if let Some(password) = &self.password {
            cmd.env("REDISCLI_AUTH", password);
        }
        let out = cmd.args(args).output().expect("run redis-cli");
        assert!(out.status.success(), "redis-cli {args:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn answers(&self) -> bool {
        let Ok(mut conn) = TcpStream::connect((self.host.as_str(), self.port)) else {
            return false;
        };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(1)));
        if conn.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut answer = [0u8; 1];
        // `+PONG`, or `-NOAUTH` with a password: either way it serves.
        conn.read_exact(&mut answer).is_ok()
    }

    /// The settings a registry gets to use this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("CACHE_REDIS_HOST", self.host.clone()),
            ("CACHE_REDIS_PORT", self.port.to_string()),
        ];
        if let Some(password) = &self.password {
            env.push(("CACHE_REDIS_PASSWORD", password.clone()));
        }
        env
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One server for a whole test binary (tests that stop Redis start their
/// own instead).
pub fn shared() -> Option<&'static RedisServer> {
    static SERVER: std::sync::OnceLock<Option<RedisServer>> = std::sync::OnceLock::new();
    SERVER.get_or_init(|| start(None)).as_ref()
}

//! The servers a run starts, each on a free loopback port and stopped when
//! dropped: the registry under test, nginx (the baseline), moto (the local
//! S3-compatible server).

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A loopback port nobody listens on right now.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A child process killed (and reaped) when dropped, its stderr kept in a
/// file for error messages.
pub struct Server {
    pub name: &'static str,
    pub port: u16,
    child: Child,
    log: PathBuf,
}

impl Server {
    /// Starts `cmd` (stdout and stderr to `log`) and waits until it accepts
    /// connections on `port`.
    fn spawn(name: &'static str, mut cmd: Command, port: u16, log: PathBuf) -> Result<Server> {
        let out = fs::File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("start {name} ({:?})", cmd.get_program()))?;
        let mut server = Server {
            name,
            port,
            child,
            log,
        };
        server.wait_listening(Duration::from_secs(30))?;
        Ok(server)
    }

    fn wait_listening(&mut self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("{} exited with {status}:\n{}", self.name, self.log_tail());
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!(
            "{} did not listen on 127.0.0.1:{} within {limit:?}:\n{}",
            self.name,
            self.port,
            self.log_tail()
        )
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The last lines the server wrote, for error messages.
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Whether it is still running (a crash mid-run fails the step).
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} died ({status}):\n{}", self.name, self.log_tail());
        }
        Ok(())
    }

    /// CPU time (user and system) the process and its children (nginx's
    /// workers) have used so far, in seconds. Unlike wall time it hardly
    /// moves with the load of the machine: the figure to compare on a busy
    /// machine.
    pub fn cpu_seconds(&self) -> Result<f64> {
        let mut pids = vec![self.pid()];
        pids.extend(children(self.pid()));
        let mut ticks = 0;
        for pid in pids {
            if let Some(stat) = stat_fields(&format!("/proc/{pid}/stat")) {
                // utime and stime: fields 14 and 15 of proc(5).
                ticks += field(&stat, 14) + field(&stat, 15);
            }
        }
        Ok(ticks as f64 / clock_ticks())
    }

    /// Current resident memory of the process, KiB.
    pub fn rss_kib(&self) -> Result<u64> {
        proc_status_kib(self.pid(), "VmRSS")
    }

    /// Peak resident memory since start or the last [`Server::reset_peak`], KiB.
    pub fn peak_rss_kib(&self) -> Result<u64> {
        proc_status_kib(self.pid(), "VmHWM")
    }

    /// Restarts the peak-RSS count from the current RSS.
    pub fn reset_peak(&self) -> Result<()> {
        fs::write(format!("/proc/{}/clear_refs", self.pid()), "5")
            .context("reset the peak RSS (/proc/PID/clear_refs)")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM first: nginx's master takes its workers down with it.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The fields of a `/proc/PID/stat` line after the command name (which may
/// hold spaces), so that field `n` of proc(5) is at index `n - 3`.
fn stat_fields(path: &str) -> Option<Vec<String>> {
    let text = fs::read_to_string(path).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// Field `n` (numbered from 1 as in proc(5)) of a split stat line.
fn field(stat: &[String], n: usize) -> u64 {
    stat.get(n - 3).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// The direct children of `pid`.
fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            stat_fields(&format!("/proc/{p}/stat")).is_some_and(|s| field(&s, 4) == u64::from(pid))
        })
        .collect()
}

/// Clock ticks a second, the unit of the CPU times in /proc.
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// CPU seconds used by the children this process has waited for (a
/// command run to completion: openssl, dd).
pub fn waited_children_cpu_seconds() -> f64 {
    stat_fields("/proc/self/stat").map_or(0.0, |s| {
        (field(&s, 16) + field(&s, 17)) as f64 / clock_ticks()
    })
}

fn proc_status_kib(pid: u32, field: &str) -> Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// The registry's environment variables, removed from what the harness
/// inherited so that only what a step sets reaches the registry.
const REGISTRY_VARIABLES: &[&str] = &[
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
    "GUNICORN_WORKERS",
    "RUST_LOG",
];

/// Starts the registry binary with `env` on a free loopback port; `dir`
/// holds its log.
pub fn registry(bin: &Path, env: &[(&str, String)], dir: &Path) -> Result<Server> {
    let port = free_port()?;
    let mut cmd = Command::new(bin);
    for (key, _) in std::env::vars() {
        if key.starts_with("AWS_") || REGISTRY_VARIABLES.contains(&key.as_str()) {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(dir)
        .env("REGISTRY_HOST", "127.0.0.1")
        .env("REGISTRY_PORT", port.to_string())
        // What production runs with: the access log at info, no debug.
        .env("LOGLEVEL", "info")
        .env("DEBUG", "false")
        .envs(env.iter().map(|(k, v)| (k, v)));
    let log = dir.join(format!("registry-{port}.log"));
    Server::spawn("registry-v1", cmd, port, log)
}

/// Whether this process runs as root (nginx then needs `user root` to read
/// the registry's files, which are private to their owner).
fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|u| u.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Starts nginx serving the files under `root` with sendfile, as shipped by
/// Debian but with everything (pid, logs, temp files) under `dir`.
pub fn nginx(root: &Path, dir: &Path) -> Result<Server> {
    let port = free_port()?;
    let d = dir.display();
    let user = if is_root() { "user root root;" } else { "" };
    let conf = format!(
        "{user}
worker_processes auto;
daemon off;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {d}/nginx-access.log;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    types {{ application/json json; }}
    default_type application/octet-stream;
    client_body_temp_path {d}/nginx-body;
    proxy_temp_path {d}/nginx-proxy;
    fastcgi_temp_path {d}/nginx-fastcgi;
    uwsgi_temp_path {d}/nginx-uwsgi;
    scgi_temp_path {d}/nginx-scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
",
        root = root.display()
    );
    let conf_path = dir.join("nginx.conf");
    fs::write(&conf_path, conf)?;
    let mut cmd = Command::new(crate::tools::nginx_path());
    cmd.arg("-e")
        .arg(dir.join("nginx-error.log"))
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf_path);
    Server::spawn("nginx", cmd, port, dir.join("nginx-stdout.log"))
}

/// Starts moto's S3-compatible server; objects live in its memory or in
/// spooled temporary files.
pub fn moto(dir: &Path) -> Result<Server> {
    let port = free_port()?;
    let mut cmd = Command::new(crate::tools::moto_python());
    cmd.current_dir(dir).env("TMPDIR", dir).args([
        "-m",
        "moto.server",
        "-H",
        "127.0.0.1",
        "-p",
        &port.to_string(),
    ]);
    Server::spawn("moto_server", cmd, port, dir.join("moto.log"))
}

/// Starts the tests' one-node OpenStack Swift (Debian's servers, through
/// `tests/storage_support/swift_test_server.py`) with its folder under
/// `dir`; it listens before it hands out tokens (see `swift::start`).
pub fn swift(dir: &Path) -> Result<Server> {
    let port = free_port()?;
    let launcher = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/storage_support/swift_test_server.py"
    );
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.current_dir(dir)
        .arg(launcher)
        .args(["--dir", &dir.join("swift").display().to_string()])
        .args(["--port", &port.to_string(), "--until-signalled"]);
    Server::spawn("swift", cmd, port, dir.join("swift.log"))
}

/// Starts redis-server on loopback, nothing kept on disk.
pub fn redis(dir: &Path) -> Result<Server> {
    let port = free_port()?;
    let mut cmd = Command::new("redis-server");
    cmd.current_dir(dir).args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]);
    Server::spawn("redis-server", cmd, port, dir.join("redis.log"))
}

/// Starts distribution (Debian's `docker-registry`) with the storage
/// section `storage` (YAML, indented as under `storage:`) on a free
/// loopback port; its configuration and log go in `dir`. The rest of the
/// configuration is the one `distribution-peer-setup.sh` writes: access
/// log on at info, deletes on, the in-memory blob descriptor cache,
/// redirects off; no health checks (they would poll storage mid-figure).
pub fn distribution(storage: &str, dir: &Path) -> Result<Server> {
    distribution_with(storage, "", dir)
}

/// [`distribution`] with more top-level configuration after the rest
/// (`proxy:` for its pull-through cache), YAML at column 0.
pub fn distribution_with(storage: &str, extra: &str, dir: &Path) -> Result<Server> {
    let port = free_port()?;
    let conf = format!(
        "version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
{storage}
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
  maintenance:
    uploadpurging:
      enabled: false
  redirect:
    disable: true
http:
  addr: 127.0.0.1:{port}
{extra}"
    );
    let conf_path = dir.join(format!("distribution-{port}.yml"));
    fs::write(&conf_path, conf)?;
    let mut cmd = Command::new("docker-registry");
    // The AWS SDK in distribution refuses to start on S3 when
    // AWS_CA_BUNDLE is set (its transport cannot take a CA bundle), and
    // the harness's own AWS_* variables are not distribution's business.
    for (key, _) in std::env::vars() {
        if key.starts_with("AWS_") || key.starts_with("REGISTRY_") {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(dir).arg("serve").arg(&conf_path);
    let log = dir.join(format!("distribution-{port}.log"));
    Server::spawn("distribution", cmd, port, log)
}

//! A real PostgreSQL server (Debian's `postgresql` package, installed by
//! `.ci/install-postgres.sh`): a cluster of its own in a temporary folder,
//! on a free loopback port, started once per test binary; each test gets a
//! database of its own.
//!
//! The server runs under a small shell that waits on its standard input:
//! when this process ends, for any reason, the pipe closes and the shell
//! stops the server and removes its folder, so no server outlives the
//! tests. As root (CI), the cluster belongs to the `postgres` user, since
//! PostgreSQL refuses to run as root.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub struct PgServer {
    pub port: u16,
    // Held so that the pipe closes (and the server stops) only at exit.
    _stdin: Mutex<ChildStdin>,
    _child: Mutex<Child>,
}

/// A database of one test, dropped (with its connections) afterwards.
pub struct TestDatabase {
    pub name: String,
    port: u16,
}

impl TestDatabase {
    /// The URL the registry is given, in SQLAlchemy's spelling.
    pub fn url(&self) -> String {
        format!(
            "postgresql+psycopg2://postgres:s3cret@127.0.0.1:{}/{}",
            self.port, self.name
        )
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn connect(&self) -> postgres::Client {
        connect(self.port, &self.name).expect("connect to the test database")
    }

    /// What drops the database under whoever uses it (their sessions
    /// ended), for when the database itself has been handed on.
    pub fn dropper(&self) -> impl Fn() {
        let (port, name) = (self.port, self.name.clone());
        move || {
            connect(port, "postgres")
                .expect("connect to the cluster")
                .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
                .expect("drop the test database");
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Ok(mut admin) = connect(self.port, "postgres") {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

impl PgServer {
    /// A new, empty database.
    pub fn database(&self) -> TestDatabase {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = connect(self.port, "postgres").expect("connect to the test server");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create a test database");
        TestDatabase {
            name,
            port: self.port,
        }
    }
}

static SERVER: OnceLock<Option<PgServer>> = OnceLock::new();

/// The shared server, or `None` (with a message) when PostgreSQL is not
/// installed. Under CI (`CI` set) a missing server fails loudly instead.
pub fn server() -> Option<&'static PgServer> {
    SERVER
        .get_or_init(|| match start() {
            Ok(server) => Some(server),
            Err(why) if std::env::var_os("CI").is_some() => {
                panic!(
                    "PostgreSQL tests need a server under CI: {why} (run .ci/install-postgres.sh)"
                )
            }
            Err(why) => {
                let _ = writeln!(
                    std::io::stderr(),
                    "\nSKIPPING PostgreSQL search tests: {why}. Install it with \
                     .ci/install-postgres.sh (apt-get install postgresql).\n"
                );
                None
            }
        })
        .as_ref()
}

/// The folder of `initdb` and `postgres`: `PG_BIN`, else the newest of
/// Debian's `/usr/lib/postgresql/<version>/bin`.
fn bin_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| format!("no /usr/lib/postgresql: {e}"))?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| "no PostgreSQL server under /usr/lib/postgresql".to_owned())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| out.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

/// `program args...`, as the `postgres` user when we are root.
fn as_owner(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("setpriv");
        command
            .args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
            .arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

fn connect(port: u16, database: &str) -> Result<postgres::Client, postgres::Error> {
    postgres::Config::new()
        .host("127.0.0.1")
        .port(port)
        .user("postgres")
        .dbname(database)
        .connect_timeout(Duration::from_secs(5))
        .connect(postgres::NoTls)
}

fn start() -> Result<PgServer, String> {
    start_listening("127.0.0.1")
}

/// A server of its own that also listens on `host` (a test host's
/// gateway address, beside loopback); stopped when dropped.
#[allow(dead_code)] // tests/multi_host.rs
pub fn start_on(host: &str) -> Result<PgServer, String> {
    start_listening(&format!("127.0.0.1,{host}"))
}

fn start_listening(addresses: &str) -> Result<PgServer, String> {
    let bin = bin_dir()?;
    // Not a TempDir: the shell removes it after the server stops, which
    // may be after this process is gone.
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "registry-v1-pg-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
    if is_root() {
        let owned = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&dir)
            .status()
            .map_err(|e| format!("chown: {e}"))?;
        if !owned.success() {
            return Err("cannot give the cluster folder to the postgres user".into());
        }
    }
    let data = dir.join("data");
    let init = as_owner(&bin.join("initdb"))
        .args(["--auth=trust", "--username=postgres", "--encoding=UTF8"])
        // An ICU default collation that orders and folds case unlike
        // SQLite (`a` beside `A`, `É` lowered to `é`): the index must not
        // lean on the database's defaults to answer as SQLite does.
        .args([
            "--locale=C.UTF-8",
            "--locale-provider=icu",
            "--icu-locale=en-US",
        ])
        .args(["--no-sync", "-D"])
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run initdb: {e}"))?;
    if !init.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&init.stderr)
        ));
    }
    // The test hosts of a start_on: their subnet may connect (as loopback
    // may, by initdb's own entries).
    for host in addresses.split(',').filter(|a| *a != "127.0.0.1") {
        let subnet = host.rsplit_once('.').map_or(host, |(net, _)| net);
        let line = format!("host all all {subnet}.0/24 trust\n");
        std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("pg_hba.conf"))
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .map_err(|e| format!("pg_hba.conf: {e}"))?;
    }
    let port = free_port();
    // The command line, run by the shell below.
    let mut server = as_owner(&bin.join("postgres"));
    server
        .arg("-D")
        .arg(&data)
        .args(["-p", &port.to_string(), "-k"])
        .arg(&dir)
        .args(["-c", &format!("listen_addresses={addresses}")])
        .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
        .args(["-c", "full_page_writes=off", "-c", "max_connections=300"]);
    let script = r#"dir="$1"; shift
"$@" >"$dir/server.log" 2>&1 &
server=$!
read -r _ignored
kill -QUIT "$server" 2>/dev/null
wait "$server" 2>/dev/null
rm -rf "$dir"
exit 0"#;
    let mut child = Command::new("sh")
        .args(["-c", script, "sh"])
        .arg(&dir)
        .arg(server.get_program())
        .args(server.get_args())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start PostgreSQL: {e}"))?;
    let stdin = child.stdin.take().ok_or("no stdin pipe")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while connect(port, "postgres").is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("PostgreSQL exited at start: {status}"));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
            return Err(format!(
                "PostgreSQL did not answer on port {port} within 60 s: {log}"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(PgServer {
        port,
        _stdin: Mutex::new(stdin),
        _child: Mutex::new(child),
    })
}

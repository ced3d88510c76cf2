//! The deployment recipes of `examples/` (issue 32), each run as its files
//! say against the real binary and real servers on loopback: the systemd
//! unit's command line and environment, the compose file's registry with
//! the PostgreSQL, Redis and S3 services it describes, and the https
//! recipe's CA script with skopeo and curl.

mod common;
mod login_support;
mod v2_support;

#[path = "search_support/postgres.rs"]
#[allow(dead_code)]
mod postgres_server;
#[path = "storage_support/redis_server.rs"]
mod redis_server;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use login_support::{expect_ok, expect_refused, try_run, Layout, INSTALL_CLIENTS};
use v2_support::*;

/// Installs what these tests need beyond the other suites' tools.
const INSTALL_EXAMPLES: &str = ".ci/install-examples.sh";

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// The binary under test, as a path (for the unit's `ExecStart=`).
fn binary() -> PathBuf {
    std::env::var_os("REGISTRY_V1_TEST_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_registry-v1").into())
        .into()
}

/// `registry-v1 config --check --strict` with `env` must pass, warning-free.
fn check_config(env: &[(String, String)], what: &str) {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let out = common::run(&["config", "--check", "--strict"], &env);
    assert!(
        out.status.success(),
        "{what}: config --check --strict: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.to_lowercase().contains("warn"),
        "{what}: config --check warned: {stderr}"
    );
}

/// Pushes a small image over v2 as `name:tag`, pulls it back (manifest by
/// tag, then each blob) and checks the bytes; returns the image.
fn push_and_pull(v2: &V2, name: &str, tag: &str) -> ImageBlobs {
    let image = ImageBlobs::new(name, "amd64");
    image.push(v2, name);
    let manifest = image.oci_manifest();
    v2.push_manifest(name, tag, OCI_MANIFEST, &manifest);
    let got = v2.get_manifest(&format!("/v2/{name}/manifests/{tag}"));
    assert_eq!(got.status(), 200, "pull {name}:{tag}");
    assert_eq!(
        got.bytes().unwrap().to_vec(),
        manifest,
        "manifest of {name}"
    );
    for blob in [&image.config, &image.layer] {
        let got = v2.get(&format!("/v2/{name}/blobs/{}", sha256(blob)));
        assert_eq!(got.status(), 200, "pull a blob of {name}");
        assert_eq!(&got.bytes().unwrap().to_vec(), blob, "a blob of {name}");
    }
    image
}

// ---------------------------------------------------------------------
// systemd

/// The `[Service]` section of a unit: each key's values, in order.
fn service_section(unit: &str) -> BTreeMap<String, Vec<String>> {
    let mut section = String::new();
    let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in unit.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            section = line.to_owned();
            continue;
        }
        assert!(!line.ends_with('\\'), "continued lines are not read here");
        if section == "[Service]" {
            let (key, value) = line.split_once('=').expect("key=value");
            keys.entry(key.trim().to_owned())
                .or_default()
                .push(value.trim().to_owned());
        }
    }
    keys
}

fn one<'a>(keys: &'a BTreeMap<String, Vec<String>>, key: &str) -> &'a str {
    match keys.get(key).map(Vec::as_slice) {
        Some([value]) => value,
        other => panic!("the unit's {key}=: {other:?}, expected one value"),
    }
}

#[test]
fn systemd_unit_runs_the_registry() {
    let dir = examples().join("systemd");
    let unit_path = dir.join("registry-v1.service");
    let unit = std::fs::read_to_string(&unit_path).unwrap();
    let service = service_section(&unit);

    // What the recipe promises.
    assert_eq!(one(&service, "User"), "registry");
    assert_eq!(one(&service, "Restart"), "on-failure");
    assert_eq!(one(&service, "NoNewPrivileges"), "yes");
    assert_eq!(one(&service, "ProtectSystem"), "strict");
    assert_eq!(one(&service, "PrivateTmp"), "yes");
    assert_eq!(one(&service, "KillSignal"), "SIGTERM");
    assert!(
        !service.contains_key("ExecReload"),
        "SIGHUP stops a registry without TLS: no ExecReload in the plain unit"
    );
    let stop_timeout: u64 = one(&service, "TimeoutStopSec").parse().unwrap();
    assert!(
        stop_timeout > 30,
        "TimeoutStopSec must leave the 30 s the registry takes at most"
    );

    let mut env: Vec<(String, String)> = Vec::new();
    for line in &service["Environment"] {
        for assignment in line.split_whitespace() {
            assert!(!assignment.starts_with('"'), "quoted Environment=");
            let (k, v) = assignment.split_once('=').expect("NAME=value");
            env.push((k.to_owned(), v.to_owned()));
        }
    }
    let get = |name: &str| -> String {
        env.iter()
            .find(|(k, _)| k == name)
            .unwrap_or_else(|| panic!("the unit sets no {name}"))
            .1
            .clone()
    };
    // Everything the registry writes is under ReadWritePaths=.
    let writable = one(&service, "ReadWritePaths").to_owned();
    assert_eq!(
        get("STORAGE_PATH"),
        writable,
        "STORAGE_PATH=ReadWritePaths="
    );
    let index = get("SQLALCHEMY_INDEX_DATABASE");
    let index_file = index.strip_prefix("sqlite:///").expect("an SQLite index");
    assert!(
        index_file.starts_with(&format!("{writable}/")),
        "the search index {index_file} must be under {writable}"
    );
    assert_eq!(
        format!("/var/lib/{}", one(&service, "StateDirectory")),
        writable
    );
    assert_eq!(get("DOCKER_REGISTRY_CONFIG"), "/etc/registry-v1/config.yml");
    assert!(
        unit.contains("examples/systemd/config.yml /etc/registry-v1/config.yml"),
        "the unit's install lines put config.yml where DOCKER_REGISTRY_CONFIG names it"
    );

    let exec = one(&service, "ExecStart");
    let mut words = exec.split_whitespace();
    let program = words.next().unwrap();
    assert_eq!(program, "/usr/local/bin/registry-v1");
    let args: Vec<&str> = words.collect();

    let work = tempfile::tempdir().unwrap();
    let bin = binary();

    // systemd's own check of the unit, with ExecStart= naming a binary
    // that exists: any warning about the file fails.
    if tool_available("systemd-analyze", INSTALL_EXAMPLES) {
        let copy = work.path().join("registry-v1.service");
        std::fs::write(&copy, unit.replace(program, bin.to_str().unwrap())).unwrap();
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&copy)
            .output()
            .expect("run systemd-analyze");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "systemd-analyze verify: {stderr}");
        assert!(
            !stderr.contains("registry-v1.service"),
            "systemd-analyze verify warned about the unit: {stderr}"
        );
    }

    // The same command line, with /var/lib/registry-v1 and /etc moved to
    // temporary folders and the port to a free loopback one.
    let storage = work.path().join("var-lib-registry-v1");
    std::fs::create_dir(&storage).unwrap();
    let cwd = work.path().join("cwd");
    std::fs::create_dir(&cwd).unwrap();
    let port = common::free_port();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| {
            let v = match k.as_str() {
                "DOCKER_REGISTRY_CONFIG" => dir.join("config.yml").display().to_string(),
                "REGISTRY_HOST" => "127.0.0.1".to_owned(),
                "REGISTRY_PORT" => port.to_string(),
                _ => v.replace(&writable, storage.to_str().unwrap()),
            };
            (k.clone(), v)
        })
        .collect();
    assert!(env.iter().any(|(k, _)| k == "REGISTRY_PORT"));
    check_config(&env, "systemd/config.yml");

    let log = work.path().join("stderr.log");
    // As root, what User= and NoNewPrivileges= do: another user (nobody,
    // in place of registry) owning the storage folder only, no new
    // privileges; the working directory, systemd's `/`, not writable.
    let mut command = common::command();
    if as_root() && tool_available("setpriv", INSTALL_EXAMPLES) {
        use std::os::unix::fs::PermissionsExt;
        let open = std::fs::Permissions::from_mode(0o755);
        std::fs::set_permissions(work.path(), open.clone()).unwrap();
        std::fs::set_permissions(&cwd, open).unwrap();
        let owned = Command::new("chown")
            .args(["-R", "nobody:"])
            .arg(&storage)
            .status()
            .unwrap();
        assert!(owned.success(), "chown the storage folder");
        let mut wrapped = Command::new("setpriv");
        wrapped
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            .arg("--no-new-privs")
            .arg(command.get_program());
        for (key, value) in command.get_envs() {
            if value.is_none() {
                wrapped.env_remove(key);
            }
        }
        command = wrapped;
    }
    let mut child = Reaped(
        command
            .args(&args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(&cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start the unit's command line"),
    );
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!("the unit's command exited with {status}: {}", read_log());
        }
        assert!(Instant::now() < deadline, "no listener: {}", read_log());
        std::thread::sleep(Duration::from_millis(25));
    }

    let v2 = V2::at(format!("http://127.0.0.1:{port}"));
    let ready = common::client()
        .get(format!("http://127.0.0.1:{port}/readyz"))
        .send()
        .unwrap();
    assert_eq!(ready.status(), 200, "readyz: {}", read_log());
    push_and_pull(&v2, "team/app", "1.0");
    let found = common::client()
        .get(format!("http://127.0.0.1:{port}/v1/search?q=team"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(found.contains("team/app"), "search: {found}");

    // Written: the storage folder and the index inside it; nothing in
    // the working directory (systemd's is /, read-only).
    assert!(Path::new(&index_file.replace(&writable, storage.to_str().unwrap())).exists());
    assert!(storage
        .join("docker/registry/v2/repositories/team/app")
        .is_dir());
    let stray: Vec<PathBuf> = walk(&cwd);
    assert!(
        stray.is_empty(),
        "written outside the storage folder: {stray:?}"
    );

    // `systemctl stop`: SIGTERM, and exit status 0 (no restart by
    // Restart=on-failure).
    let term = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.0.kill();
            panic!("still running 10 s after SIGTERM: {}", read_log());
        }
        std::thread::sleep(Duration::from_millis(25));
    };
    assert_eq!(status.code(), Some(0), "exit after SIGTERM: {}", read_log());
}

/// A process killed and reaped when dropped: a failed assertion leaves no
/// registry running.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.starts_with(b"0\n"))
}

// ---------------------------------------------------------------------
// docker compose

/// A service's `environment`, in either of compose's forms (a map, or a
/// list of `NAME=value`).
fn environment(service: &serde_yaml::Value) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    match &service["environment"] {
        serde_yaml::Value::Mapping(map) => {
            for (k, v) in map {
                let value = match v {
                    serde_yaml::Value::String(s) => s.clone(),
                    serde_yaml::Value::Null => String::new(),
                    other => panic!(
                        "{k:?}: {other:?}: compose wants strings (a number or boolean is \
                         not one)"
                    ),
                };
                env.insert(k.as_str().unwrap().to_owned(), value);
            }
        }
        serde_yaml::Value::Sequence(list) => {
            for item in list {
                let (k, v) = item.as_str().unwrap().split_once('=').unwrap();
                env.insert(k.to_owned(), v.to_owned());
            }
        }
        other => panic!("environment: {other:?}"),
    }
    env
}

/// `postgresql://user:password@host:port/database`, in parts.
fn postgres_url(url: &str) -> (String, String, String, u16, String) {
    let rest = url
        .strip_prefix("postgresql://")
        .unwrap_or_else(|| panic!("not a postgresql:// URL: {url}"));
    let (login, rest) = rest.split_once('@').unwrap();
    let (user, password) = login.split_once(':').unwrap();
    let (address, database) = rest.split_once('/').unwrap();
    let (host, port) = address.split_once(':').unwrap();
    (
        user.to_owned(),
        password.to_owned(),
        host.to_owned(),
        port.parse().unwrap(),
        database.to_owned(),
    )
}

/// `docker compose config` (or `docker-compose config`) of the file.
fn compose_config_accepts(file: &Path) {
    let works = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let (program, pre): (&str, &[&str]) = if works("docker", &["compose", "version"]) {
        ("docker", &["compose"])
    } else if works("docker-compose", &["version"]) {
        ("docker-compose", &[])
    } else {
        assert!(
            std::env::var_os("CI").is_none(),
            "docker compose or docker-compose is required under CI ({INSTALL_EXAMPLES})"
        );
        eprintln!("SKIPPED: compose config check (no docker compose, no docker-compose)");
        return;
    };
    let out = Command::new(program)
        .args(pre)
        .arg("-f")
        .arg(file)
        .args(["config", "-q"])
        .output()
        .expect("run compose");
    expect_ok(out, &format!("{program} config of {}", file.display()));
}

#[test]
fn compose_file_runs_with_s3_postgres_and_redis() {
    let dir = examples().join("compose");
    let file = dir.join("compose.yaml");
    compose_config_accepts(&file);
    let compose: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let services = &compose["services"];
    let registry = &services["registry"];

    // The image docker/build.sh makes, else a build from the Dockerfile.
    assert_eq!(registry["image"].as_str(), Some("registry-v1"));
    let context = dir.join(registry["build"].as_str().expect("build:"));
    assert!(context.join("Dockerfile").exists() && context.join("docker/build.sh").exists());
    assert_eq!(
        registry["ports"][0].as_str(),
        Some("5000:5000"),
        "the image listens on 5000"
    );

    let env = environment(registry);
    // The mounted configuration file is the one DOCKER_REGISTRY_CONFIG names.
    let config = registry["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|v| {
            let mut parts = v.as_str()?.split(':');
            Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
        })
        .find(|(_, target)| Some(target) == env.get("DOCKER_REGISTRY_CONFIG"))
        .map(|(source, _)| dir.join(source))
        .expect("a volume mounting the file DOCKER_REGISTRY_CONFIG names");
    assert!(config.is_file(), "{} is not there", config.display());

    // The services it names, as the file describes them.
    let postgres_env = environment(&services["postgres"]);
    let (user, password, host, port, database) = postgres_url(&env["SQLALCHEMY_INDEX_DATABASE"]);
    assert_eq!((host.as_str(), port), ("postgres", 5432));
    assert_eq!(user, postgres_env["POSTGRES_USER"]);
    assert_eq!(password, postgres_env["POSTGRES_PASSWORD"]);
    assert_eq!(database, postgres_env["POSTGRES_DB"]);
    assert!(services["redis"].is_mapping());
    assert_eq!(env["CACHE_REDIS_HOST"], "redis");
    assert_eq!(env["CACHE_REDIS_PORT"], "6379");
    let minio_env = environment(&services["minio"]);
    assert_eq!(env["AWS_HOST"], "minio");
    assert_eq!(env["AWS_PORT"], "9000");
    assert_eq!(env["AWS_KEY"], minio_env["MINIO_ROOT_USER"]);
    assert_eq!(env["AWS_SECRET"], minio_env["MINIO_ROOT_PASSWORD"]);
    let bucket = &env["AWS_BUCKET"];
    let make_bucket: String = services["bucket"]["entrypoint"]
        .as_sequence()
        .expect("the bucket service's entrypoint")
        .iter()
        .filter_map(|part| part.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        make_bucket.contains(&format!("mc mb --ignore-existing store/{bucket}"))
            && make_bucket.contains(&format!(
                "http://minio:9000 {} {}",
                env["AWS_KEY"], env["AWS_SECRET"]
            )),
        "the bucket service makes {bucket} with the registry's keys: {make_bucket}"
    );

    // Started on loopback in their place.
    let Some(pg) = postgres_server::server() else {
        return;
    };
    let Some(redis) = redis_server::start(None) else {
        return;
    };
    let Some(s3) = s3_server::server() else {
        return;
    };
    let mut admin = postgres::Config::new()
        .host("127.0.0.1")
        .port(pg.port)
        .user("postgres")
        .dbname("postgres")
        .connect(postgres::NoTls)
        .expect("connect to PostgreSQL");
    // What the postgres image does with POSTGRES_USER, _PASSWORD and _DB:
    // a role owning the database (not a superuser here: the registry must
    // do with what an owner may).
    admin
        .batch_execute(&format!("CREATE ROLE {user} LOGIN PASSWORD '{password}'"))
        .expect("make the role");
    admin
        .batch_execute(&format!("CREATE DATABASE {database} OWNER {user}"))
        .expect("make the database");
    s3.create_bucket(bucket);
    let metrics_port = common::free_port();

    let mut run_env: Vec<(String, String)> = Vec::new();
    for (k, v) in &env {
        let v = match k.as_str() {
            "DOCKER_REGISTRY_CONFIG" => config.display().to_string(),
            "AWS_HOST" => s3.host.clone(),
            "AWS_PORT" => s3.port.to_string(),
            "SQLALCHEMY_INDEX_DATABASE" => v.replace(
                &format!("@{host}:{port}/"),
                &format!("@127.0.0.1:{}/", pg.port),
            ),
            "CACHE_REDIS_HOST" => redis.host.clone(),
            "CACHE_REDIS_PORT" => redis.port.to_string(),
            "METRICS_ADDRESS" => format!("127.0.0.1:{metrics_port}"),
            _ => v.clone(),
        };
        run_env.push((k.clone(), v));
    }
    check_config(&run_env, "compose/config.yml");
    let pairs: Vec<(&str, &str)> = run_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let server = common::Registry::start(&pairs);
    let v2 = V2::new(&server);
    let ready = common::client().get(server.url("/readyz")).send().unwrap();
    assert_eq!(ready.status(), 200, "readyz: {}", server.log());

    let name = "tools/busybox";
    let image = push_and_pull(&v2, name, "latest");
    // In the bucket, under storage_path.
    let listing = common::client()
        .get(format!(
            "{}/{bucket}?prefix=registry/docker/",
            s3.endpoint()
        ))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        listing.contains(&hex_of(&sha256(&image.layer))[..16]),
        "bucket: {listing}"
    );

    // Search answers from PostgreSQL.
    assert_eq!(common::search_names(&server, "busybox"), vec![name]);
    let mut db = postgres::Config::new()
        .host("127.0.0.1")
        .port(pg.port)
        .user(&user)
        .dbname(&database)
        .connect(postgres::NoTls)
        .unwrap();
    let rows: Vec<String> = db
        .query("SELECT name FROM repository", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rows, vec![name], "the repository table in PostgreSQL");

    // The cache: keys in Redis, and a pull served from them.
    let keys = redis.cli(&["--scan", "--pattern", "registry-v1:*"]);
    assert!(!keys.trim().is_empty(), "no registry-v1 key in Redis");
    let hits = |m| common::metric(m, "registry_cache_lookups_total{result=\"hit\"}");
    let before = hits(metrics_port);
    let again = v2.get_manifest(&format!("/v2/{name}/manifests/latest"));
    assert_eq!(again.status(), 200);
    assert!(
        hits(metrics_port) > before,
        "a pull with the cache filled read Redis"
    );
}

// ---------------------------------------------------------------------
// https

/// `curl -sS` of `url` with extra arguments; the HTTP status, or the
/// failure.
fn curl(url: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .expect("run curl");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn make_ca(host: &str, dir: &Path) {
    let out = Command::new("bash")
        .arg(examples().join("tls/make-ca.sh"))
        .arg(host)
        .arg(dir)
        .output()
        .expect("run make-ca.sh");
    expect_ok(out, &format!("make-ca.sh {host}"));
}

#[test]
fn tls_recipe_serves_https_with_its_own_ca() {
    let have_tools = tool_available("openssl", INSTALL_EXAMPLES)
        & tool_available("curl", INSTALL_EXAMPLES)
        & tool_available("skopeo", INSTALL_CLIENTS);
    if !have_tools {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let tls = work.path().join("tls");
    make_ca("registry.example.test", &tls);
    for file in ["ca.crt", "ca.key", "server.crt", "server.key"] {
        assert!(tls.join(file).is_file(), "make-ca.sh made no {file}");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(tls.join("server.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "server.key readable by others");
    let ca = tls.join("ca.crt");

    let storage = work.path().join("storage");
    let env: Vec<(String, String)> = [
        (
            "DOCKER_REGISTRY_CONFIG",
            examples().join("tls/config.yml").display().to_string(),
        ),
        ("SETTINGS_FLAVOR", "prod".to_owned()),
        ("STORAGE_PATH", storage.display().to_string()),
        (
            "SQLALCHEMY_INDEX_DATABASE",
            format!("sqlite:///{}/search.db", work.path().display()),
        ),
        (
            "TLS_CERTIFICATE",
            tls.join("server.crt").display().to_string(),
        ),
        ("TLS_KEY", tls.join("server.key").display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    check_config(&env, "tls/config.yml");
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let registry = common::Registry::start(&pairs);
    let port = registry.port;
    let ca_arg = ["--cacert", ca.to_str().unwrap()];

    // curl trusts it with --cacert, for each name the certificate holds.
    for host in ["localhost", "127.0.0.1"] {
        let url = format!("https://{host}:{port}/v2/");
        assert_eq!(curl(&url, &ca_arg).as_deref(), Ok("200"), "{url}");
    }
    let named = format!("https://registry.example.test:{port}/v2/");
    let resolve = format!("registry.example.test:{port}:127.0.0.1");
    let with_name = ["--resolve", &resolve, "--cacert", ca.to_str().unwrap()];
    assert_eq!(curl(&named, &with_name).as_deref(), Ok("200"));
    // ... and not without it, nor over plain http.
    let refused = curl(&format!("https://localhost:{port}/v2/"), &[]);
    assert!(refused.is_err(), "https without the CA: {refused:?}");
    let plain = curl(&format!("http://127.0.0.1:{port}/v2/"), &[]);
    assert_ne!(plain.as_deref(), Ok("200"), "plain http answered");

    // skopeo with a certificate folder holding the CA as ca.crt.
    let certs = work.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    std::fs::copy(&ca, certs.join("ca.crt")).unwrap();
    let cert_dir = certs.to_str().unwrap();
    let layout = Layout::write(&work.path().join("layout"), "tls recipe");
    let dest = format!("docker://localhost:{port}/team/app:v1");
    expect_refused(
        try_run("skopeo", &["copy", &layout.reference(), &dest]),
        "skopeo push without the CA",
    );
    expect_ok(
        try_run(
            "skopeo",
            &[
                "copy",
                "--dest-cert-dir",
                cert_dir,
                &layout.reference(),
                &dest,
            ],
        ),
        "skopeo push with --dest-cert-dir",
    );
    let pulled = work.path().join("pulled");
    expect_ok(
        try_run(
            "skopeo",
            &[
                "copy",
                "--src-cert-dir",
                cert_dir,
                &dest,
                &format!("oci:{}:v1", pulled.display()),
            ],
        ),
        "skopeo pull with --src-cert-dir",
    );
    let layer = std::fs::read(
        pulled
            .join("blobs/sha256")
            .join(hex_of(&sha256(&layout.layer))),
    );
    assert_eq!(layer.unwrap(), layout.layer, "the layer pulled back");

    // The README's renewal: make-ca.sh again into the same folder keeps
    // the CA; SIGHUP serves the new certificate, which clients trust as
    // they are.
    let ca_before = std::fs::read(&ca).unwrap();
    let cert_before = std::fs::read(tls.join("server.crt")).unwrap();
    make_ca("other.example.test", &tls);
    assert_eq!(std::fs::read(&ca).unwrap(), ca_before, "the CA was kept");
    assert_ne!(std::fs::read(tls.join("server.crt")).unwrap(), cert_before);
    let other = format!("https://other.example.test:{port}/v2/");
    let resolve = format!("other.example.test:{port}:127.0.0.1");
    let with_other = ["--resolve", &resolve, "--cacert", ca.to_str().unwrap()];
    assert!(
        curl(&other, &with_other).is_err(),
        "the new name before SIGHUP"
    );
    let hup = Command::new("kill")
        .args(["-HUP", &registry.pid().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match curl(&other, &with_other) {
            Ok(status) if status == "200" => break,
            got => assert!(
                Instant::now() < deadline,
                "the new certificate after SIGHUP: {got:?}\n{}",
                registry.log()
            ),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    expect_ok(
        try_run("skopeo", &["inspect", "--cert-dir", cert_dir, &dest]),
        "skopeo inspect after the renewal",
    );
}

//! The programs the suite drives: checked, installed when missing (as
//! root, through `.ci/install-bench.sh`), and the registry built.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// Debian puts nginx in /usr/sbin, which a non-root PATH may lack.
pub fn nginx_path() -> PathBuf {
    which("nginx").unwrap_or_else(|| PathBuf::from("/usr/sbin/nginx"))
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Where `.ci/install-storage.sh` puts moto when the system Python lacks it
/// (the storage tests look there too).
const MOTO_VENV_PYTHON: &str = "/opt/registry-v1-s3-test/bin/python3";

/// The Python that runs moto's server: `S3_TEST_PYTHON`, else the one
/// `.ci/install-storage.sh` set up, else `python3`.
pub fn moto_python() -> String {
    if let Ok(python) = std::env::var("S3_TEST_PYTHON") {
        return python;
    }
    if Path::new(MOTO_VENV_PYTHON).exists() {
        return MOTO_VENV_PYTHON.to_owned();
    }
    "python3".to_owned()
}

fn moto_found() -> bool {
    Command::new(moto_python())
        .args(["-c", "import moto.server, flask, werkzeug"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn missing(s3: bool, v2: bool) -> Vec<&'static str> {
    let v2_tools: &[&'static str] = if v2 {
        &["docker-registry", "skopeo"]
    } else {
        &[]
    };
    let mut absent: Vec<&'static str> = ["nginx", "wrk", "openssl", "dd"]
        .iter()
        .chain(v2_tools)
        .copied()
        .filter(|t| which(t).is_none())
        .collect();
    if s3 && !moto_found() {
        absent.push("moto (PyPI moto[server])");
    }
    absent
}

/// Makes sure every tool is there, running the install script (apt-get,
/// pip; idempotent) when one is missing. With `v2`, distribution
/// (`docker-registry`) and skopeo too: the v2 sections have no meaning
/// without their peer, so a machine without it fails the run rather than
/// skipping them (`--only` leaves them out).
pub fn ensure(root: &Path, s3: bool, v2: bool, install: bool) -> Result<()> {
    let absent = missing(s3, v2);
    if absent.is_empty() {
        return Ok(());
    }
    let script = root.join(".ci/install-bench.sh");
    if !install {
        bail!(
            "missing tools: {}; install them with `bash {}` (as root)",
            absent.join(", "),
            script.display()
        );
    }
    println!(
        "missing tools: {}; running {}",
        absent.join(", "),
        script.display()
    );
    let status = Command::new("bash")
        .arg(&script)
        .status()
        .with_context(|| format!("run {}", script.display()))?;
    let still = missing(s3, v2);
    if !status.success() || !still.is_empty() {
        bail!(
            "{} failed ({status}); still missing: {} (it needs root for apt-get)",
            script.display(),
            still.join(", ")
        );
    }
    Ok(())
}

/// A cargo command in `root`, without the variables `cargo run` gave this
/// process: build scripts (ring's) watch some of them, and would be rerun,
/// and their crates rebuilt, on every change between the outer and the inner
/// cargo.
pub fn cargo(root: &Path) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_MANIFEST_")
            || [
                "CARGO_BIN_NAME",
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "RUST_S3_SKIP_LOCATION_CONSTRAINT",
            ]
            .contains(&key)
        {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(root);
    cmd
}

/// Builds `registry-v1` (release unless `debug`) with cargo and returns the
/// executable cargo reports.
pub fn build_registry(root: &Path, debug: bool) -> Result<PathBuf> {
    let mut cmd = cargo(root);
    cmd.args([
        "build",
        "--package",
        "registry-v1",
        "--bin",
        "registry-v1",
        "--message-format=json-render-diagnostics",
    ]);
    if !debug {
        cmd.arg("--release");
    }
    println!(
        "building registry-v1 ({})...",
        if debug { "debug" } else { "release" }
    );
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .context("run cargo build")?;
    if !out.status.success() {
        bail!("cargo build of registry-v1 failed ({})", out.status);
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["target"]["name"] == "registry-v1")
        .filter_map(|m| m["executable"].as_str().map(PathBuf::from))
        .next_back()
        .context("cargo built no registry-v1 executable")
}

/// The first line a command prints (stdout or stderr), or why it could not
/// run: for the machine section of the report.
pub fn version_of(program: &Path, args: &[&str]) -> String {
    match Command::new(program).args(args).output() {
        Ok(out) => {
            let text = [out.stdout, out.stderr].concat();
            String::from_utf8_lossy(&text)
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
                .to_owned()
        }
        Err(e) => format!("not available ({e})"),
    }
}

pub fn version(program: &str, args: &[&str]) -> String {
    let path = which(program).unwrap_or_else(|| PathBuf::from(program));
    version_of(&path, args)
}

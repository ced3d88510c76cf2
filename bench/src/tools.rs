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

fn missing(s3: bool) -> Vec<&'static str> {
    let mut tools = vec!["nginx", "wrk", "openssl", "dd"];
    if s3 {
        tools.push("moto_server");
    }
    tools.into_iter().filter(|t| which(t).is_none()).collect()
}

/// Makes sure every tool is there, running the install script (apt-get,
/// pip; idempotent) when one is missing.
pub fn ensure(root: &Path, s3: bool, install: bool) -> Result<()> {
    let absent = missing(s3);
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
    let still = missing(s3);
    if !status.success() || !still.is_empty() {
        bail!(
            "{} failed ({status}); still missing: {} (it needs root for apt-get)",
            script.display(),
            still.join(", ")
        );
    }
    Ok(())
}

/// Builds `registry-v1` (release unless `debug`) with cargo and returns the
/// executable cargo reports.
pub fn build_registry(root: &Path, debug: bool) -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root).args([
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

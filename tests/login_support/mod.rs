//! Support for the login tests (tests/htpasswd.rs, tests/token_auth.rs):
//! the real clients (skopeo, podman, the docker engine) with credentials
//! kept in the test's own folders, and a one-image OCI layout to push.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::json;

use crate::v2_support::*;

pub const INSTALL_CLIENTS: &str = ".ci/install-v2-clients.sh";
pub mod token_service;

pub const INSTALL_AUTH: &str = ".ci/install-auth.sh";

/// Runs a command with extra environment; its output, whatever it did.
pub fn try_run_env(program: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"))
}

pub fn try_run(program: &str, args: &[&str]) -> Output {
    try_run_env(program, args, &[])
}

/// Panics with the output unless the command succeeded.
pub fn expect_ok(out: Output, what: &str) -> Output {
    assert!(
        out.status.success(),
        "{what}: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Panics unless the command failed; its stderr.
pub fn expect_refused(out: Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "{what} succeeded\nstdout: {}\nstderr: {stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

pub fn run(program: &str, args: &[&str]) -> Output {
    expect_ok(
        try_run(program, args),
        &format!("{program} {}", args.join(" ")),
    )
}

/// An OCI image layout of one small image, tagged `v1`.
pub struct Layout {
    pub dir: PathBuf,
    pub manifest_digest: String,
    pub layer: Vec<u8>,
}

impl Layout {
    pub fn write(dir: &Path, label: &str) -> Layout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let blob = |data: &[u8]| {
            std::fs::write(dir.join("blobs/sha256").join(hex_of(&sha256(data))), data).unwrap();
        };
        let tar = rootfs_tar(label);
        let layer = gzip(&tar);
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Cmd": ["/bin/true"]},
            "rootfs": {"type": "layers", "diff_ids": [sha256(&tar)]},
        }))
        .unwrap();
        let manifest = manifest_bytes(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, &config),
            "layers": [descriptor(OCI_LAYER, &layer)],
        }));
        blob(&layer);
        blob(&config);
        blob(&manifest);
        let mut d = descriptor(OCI_MANIFEST, &manifest);
        d["annotations"] = json!({"org.opencontainers.image.ref.name": "v1"});
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [d]});
        std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
        Layout {
            dir: dir.to_path_buf(),
            manifest_digest: sha256(&manifest),
            layer,
        }
    }

    pub fn reference(&self) -> String {
        format!("oci:{}:v1", self.dir.display())
    }
}

/// podman on a store and an auth file of its own in a temporary folder.
pub struct Podman {
    pub root: tempfile::TempDir,
}

impl Podman {
    pub fn new() -> Podman {
        Podman {
            root: tempfile::tempdir().unwrap(),
        }
    }

    pub fn authfile(&self) -> PathBuf {
        self.root.path().join("auth.json")
    }

    pub fn try_run(&self, args: &[&str]) -> Output {
        let root = self.root.path().join("root");
        let runroot = self.root.path().join("run");
        let mut all = vec![
            "--storage-driver".to_owned(),
            "vfs".to_owned(),
            "--root".to_owned(),
            root.display().to_string(),
            "--runroot".to_owned(),
            runroot.display().to_string(),
            "--cgroup-manager=cgroupfs".to_owned(),
            "--events-backend=file".to_owned(),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let authfile = self.authfile();
        try_run_env(
            "podman",
            &refs,
            &[("REGISTRY_AUTH_FILE", authfile.to_str().unwrap())],
        )
    }

    pub fn run(&self, args: &[&str]) -> Output {
        expect_ok(self.try_run(args), &format!("podman {}", args.join(" ")))
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.try_run(&["rmi", "-a", "-f"]);
    }
}

/// Whether a docker engine answers; when not, says so on stderr.
pub fn docker_engine_answers(test: &str) -> bool {
    let out = Command::new("timeout")
        .args(["20", "docker", "info", "--format", "{{.ServerVersion}}"])
        .stdin(Stdio::null())
        .output();
    let ok = matches!(out, Ok(out) if out.status.success() && !out.stdout.trim_ascii().is_empty());
    if !ok {
        let _ = writeln!(
            std::io::stderr(),
            "\nSKIPPED: docker engine not available (`docker info` fails): {test} did not run\n"
        );
    }
    ok
}

/// The docker CLI with a config folder of its own (logins land there, not
/// in the user's), and the images it made, removed when dropped.
pub struct Docker {
    pub config: tempfile::TempDir,
    pub images: Vec<String>,
    pub logged_in: Vec<String>,
}

impl Docker {
    pub fn new() -> Docker {
        Docker {
            config: tempfile::tempdir().unwrap(),
            images: Vec::new(),
            logged_in: Vec::new(),
        }
    }

    pub fn try_run(&self, args: &[&str]) -> Output {
        try_run_env(
            "docker",
            args,
            &[("DOCKER_CONFIG", self.config.path().to_str().unwrap())],
        )
    }

    pub fn run(&self, args: &[&str]) -> Output {
        expect_ok(self.try_run(args), &format!("docker {}", args.join(" ")))
    }

    /// `docker login` with the password on stdin, as docker advises.
    pub fn login(&mut self, host: &str, user: &str, password: &str) -> Output {
        let mut child = Command::new("docker")
            .args(["login", "--username", user, "--password-stdin", host])
            .env("DOCKER_CONFIG", self.config.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run docker login");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(password.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        if out.status.success() {
            self.logged_in.push(host.to_owned());
        }
        out
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        for host in &self.logged_in {
            let _ = self.try_run(&["logout", host]);
        }
        for image in &self.images {
            let _ = self.try_run(&["rmi", "-f", image]);
        }
    }
}

/// libtrust's id of a public key (its DER form), as docker_auth names its
/// keys in a token's `kid`: the first 240 bits of its SHA-256 in base32,
/// in groups of four.
pub fn libtrust_kid(public_der: &[u8]) -> String {
    use sha2::Digest;
    let b32 = data_encoding::BASE32_NOPAD.encode(&sha2::Sha256::digest(public_der)[..30]);
    b32.as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(":")
}

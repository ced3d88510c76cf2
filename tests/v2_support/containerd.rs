//! containerd through `ctr`, for the client tests: its socket, and a
//! namespace of the test's own whose images go when the test ends.

use std::process::{Command, Output, Stdio};

/// containerd's socket: its own, or the one the docker engine runs.
pub fn socket() -> Option<&'static str> {
    [
        "/run/containerd/containerd.sock",
        "/var/run/docker/containerd/containerd.sock",
    ]
    .into_iter()
    .find(|socket| ctr_at(socket, &["version"]).status.success())
}

fn ctr_at(socket: &str, args: &[&str]) -> Output {
    Command::new("timeout")
        .args(["120", "ctr", "--address", socket])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("timeout runs")
}

/// A containerd namespace named `<prefix>-<random>`: its images and the
/// namespace itself are removed when dropped.
pub struct Namespace {
    pub socket: &'static str,
    pub name: String,
}

impl Namespace {
    pub fn new(socket: &'static str, prefix: &str) -> Namespace {
        Namespace {
            socket,
            name: format!("{prefix}-{}", super::rand_suffix()),
        }
    }

    /// `ctr` in this namespace.
    pub fn try_ctr(&self, args: &[&str]) -> Output {
        let mut all = vec!["--namespace", self.name.as_str()];
        all.extend_from_slice(args);
        ctr_at(self.socket, &all)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let listed = self.try_ctr(&["images", "ls", "-q"]);
        for image in String::from_utf8_lossy(&listed.stdout).lines() {
            let _ = self.try_ctr(&["images", "rm", image]);
        }
        // containerd collects the images' content in the background; the
        // namespace can go once it is empty.
        for _ in 0..40 {
            if ctr_at(self.socket, &["namespaces", "remove", &self.name])
                .status
                .success()
            {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
    }
}

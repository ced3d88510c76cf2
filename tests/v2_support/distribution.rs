//! distribution 2.8.2 (Debian's `docker-registry`) serving a folder: the
//! peer that reads the v2 tree we write.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::V2;
use crate::common;

/// distribution serving a folder on a free loopback port; killed when
/// dropped.
pub struct Distribution {
    pub port: u16,
    child: Child,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Distribution {
    pub fn start(root: &std::path::Path) -> Distribution {
        Distribution::start_with(root, "", common::free_port())
    }

    /// distribution on `port`, with more of its config (`auth:` ...) after
    /// the rest.
    pub fn start_with(root: &std::path::Path, extra: &str, port: u16) -> Distribution {
        Distribution::start_on(
            &format!("  filesystem:\n    rootdirectory: {}\n", root.display()),
            extra,
            port,
        )
    }

    /// distribution on `port` with `driver`, its storage driver's section
    /// (indented under `storage:`), and more of its config after the rest.
    pub fn start_on(driver: &str, extra: &str, port: u16) -> Distribution {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\n\
                 log:\n  level: warn\n\
                 storage:\n{driver}  delete:\n    enabled: true\n  \
                 maintenance:\n    uploadpurging:\n      enabled: false\n  redirect:\n    disable: true\n\
                 http:\n  addr: 127.0.0.1:{port}\n{extra}"
            ),
        )
        .unwrap();
        let log = dir.path().join("distribution.log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
            .spawn()
            .expect("start docker-registry");
        let mut d = Distribution {
            port,
            child,
            log,
            _dir: dir,
        };
        d.wait_ready();
        d
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let url = format!("http://127.0.0.1:{}/v2/", self.port);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("distribution exited with {status}:\n{}", self.logs());
            }
            if let Ok(resp) = common::client().get(&url).send() {
                // 401: it asks for the login its config sets.
                if matches!(resp.status().as_u16(), 200 | 401) {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("distribution did not answer within 20 s:\n{}", self.logs());
    }

    pub fn logs(&self) -> String {
        let stderr = self.log.with_file_name("stderr.log");
        format!(
            "{}{}",
            std::fs::read_to_string(&self.log).unwrap_or_default(),
            std::fs::read_to_string(stderr).unwrap_or_default()
        )
    }

    pub fn v2(&self) -> V2 {
        V2::at(format!("http://127.0.0.1:{}", self.port))
    }
}

impl Drop for Distribution {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

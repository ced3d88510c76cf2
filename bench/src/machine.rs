//! What the figures were taken on: the report's first section.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::tools;

/// The 1-minute load average now.
pub fn load() -> f64 {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

pub fn loadavg_line() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

#[derive(Debug, Clone)]
pub struct Machine {
    pub date: String,
    rows: Vec<(String, String)>,
}

fn first_match(path: &str, key: &str) -> String {
    fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_once([':', '=']))
                .map(|(_, v)| v.trim().trim_matches('"').to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn output(program: &str, args: &[&str], dir: &Path) -> String {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

impl Machine {
    /// Looks at the machine and the tools; `registry` names the binary and
    /// how it was built.
    pub fn describe(root: &Path, registry: &str, load_at_start: &str, v2: bool) -> Machine {
        let date = output("date", &["-u", "+%Y-%m-%d %H:%M UTC"], root);
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let mem_kib: f64 = first_match("/proc/meminfo", "MemTotal")
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap_or(f64::NAN);
        let commit = output("git", &["rev-parse", "--short", "HEAD"], root);
        let dirty = !output(
            "git",
            &["status", "--porcelain", "--untracked-files=no"],
            root,
        )
        .is_empty();
        let mut rows = vec![
            ("CPU".into(), first_match("/proc/cpuinfo", "model name")),
            ("cores".into(), cores.to_string()),
            ("memory".into(), format!("{:.1} GiB", mem_kib / 1048576.0)),
            (
                "system".into(),
                format!(
                    "{}, Linux {}",
                    first_match("/etc/os-release", "PRETTY_NAME"),
                    fs::read_to_string("/proc/sys/kernel/osrelease")
                        .unwrap_or_default()
                        .trim()
                ),
            ),
            ("load average at start".into(), load_at_start.to_owned()),
            (
                "load average at end".into(),
                String::new(), // filled in by `finish`
            ),
            (
                "registry-v1".into(),
                format!(
                    "commit {commit}{}; {registry}",
                    if dirty {
                        " (with uncommitted changes)"
                    } else {
                        ""
                    }
                ),
            ),
            ("rustc".into(), tools::version("rustc", &["-V"])),
            ("nginx".into(), {
                let path = tools::nginx_path();
                tools::version_of(&path, &["-v"])
            }),
            ("wrk".into(), tools::version("wrk", &["-v"])),
            ("openssl".into(), tools::version("openssl", &["version"])),
            (
                "moto".into(),
                tools::version_of(
                    Path::new(&tools::moto_python()),
                    &["-c", "import moto; print('moto', moto.__version__)"],
                ),
            ),
        ];
        if v2 {
            rows.push((
                "distribution".into(),
                format!(
                    "{} (Debian's docker-registry)",
                    tools::version("docker-registry", &["--version"])
                ),
            ));
            rows.push(("skopeo".into(), tools::version("skopeo", &["--version"])));
        }
        Machine { date, rows }
    }

    pub fn finish(&mut self) {
        let end = loadavg_line();
        for (k, v) in &mut self.rows {
            if k == "load average at end" {
                *v = end.clone();
            }
        }
    }

    pub fn markdown(&self) -> String {
        let mut md = String::from("| | |\n|---|---|\n");
        md.push_str(&format!("| date | {} |\n", self.date));
        for (k, v) in &self.rows {
            md.push_str(&format!("| {k} | {} |\n", v.replace('|', "\\|")));
        }
        md
    }

    pub fn text(&self) -> String {
        let mut out = format!("date: {}\n", self.date);
        for (k, v) in &self.rows {
            out.push_str(&format!("{k}: {v}\n"));
        }
        out
    }
}

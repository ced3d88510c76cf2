//! A drop-in successor to the classic Python docker-registry (the v1
//! protocol): same configuration file, same storage layout, same HTTP API,
//! same search database.
//!
//! The layers, from the bottom up; a module imports only the ones below it:
//! - [`metrics`]: the Prometheus registry every layer counts in; imports
//!   nothing of ours;
//! - [`config`]: the legacy YAML file (flavors, `_env:`), typed [`config::Settings`];
//! - [`names`]: repository names and image ids, validated once;
//! - [`storage`]: one [`storage::Storage`] trait, the on-disk/in-bucket layouts, a driver a file;
//! - [`events`]: what happened to repositories and tags, for whoever listens;
//! - [`search`]: one [`search::SearchIndex`] trait and the SQLite index, following the events;
//! - [`notifications`]: webhooks, following the events through a durable
//!   queue in the storage;
//! - [`upstream`]: a client of another registry (the pull-through cache's
//!   upstreams): logins, token flow, bounds in time and requests;
//! - [`registry`]: below both APIs: the application state, the auth policy
//!   (decisions only), the v1 model ([`registry::legacy`]) and the OCI model
//!   ([`registry::oci`]) with their domain errors, one classification of
//!   storage and search failures;
//! - [`http`]: what both APIs share on the wire: bounded bodies, byte ranges,
//!   blob serving (redirects, X-Accel-Redirect, streaming), the auth gate;
//! - [`v1`], [`v2`]: the handlers and wire errors of each API, grouped as
//!   the API is; neither imports the other;
//! - [`ui`]: the web pages for people, a third face beside the two APIs
//!   (imports neither, nor they it);
//! - [`server`]: assembly: middleware, mounting the APIs, the listeners
//!   (http or https, metrics), the mail of server errors;
//! - [`cli`]: the command line, and [`healthcheck`], the probe it runs for
//!   the container image.

pub mod cli;
pub mod config;
pub mod events;
pub mod healthcheck;
pub mod http;
pub mod metrics;
pub mod names;
pub mod notifications;
pub mod registry;
pub mod search;
pub mod server;
pub mod storage;
pub mod ui;
pub mod upstream;
pub mod v1;
pub mod v2;

#[cfg(test)]
mod tests {
    /// The layers above, top first; each may import only those after it.
    const LAYERS: &[&str] = &[
        "server",
        "ui",
        "v1",
        "v2",
        "http",
        "registry",
        "upstream",
        "notifications",
        "search",
        "events",
        "storage",
        "names",
        "config",
        "metrics",
    ];

    fn sources(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    #[test]
    fn no_module_imports_one_above_it() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        for (rank, layer) in LAYERS.iter().enumerate() {
            let mut files = Vec::new();
            let dir = src.join(layer);
            if dir.is_dir() {
                sources(&dir, &mut files);
            }
            let file = src.join(format!("{layer}.rs"));
            if file.is_file() {
                files.push(file);
            }
            for file in files {
                let text = std::fs::read_to_string(&file).unwrap();
                // The two APIs and the pages are peers: they sit in a row in
                // the list only because a list is a line.
                if *layer == "ui" {
                    for peer in ["v1", "v2"] {
                        assert!(
                            !text.contains(&format!("crate::{peer}::")),
                            "{} imports crate::{peer}",
                            file.display()
                        );
                    }
                }
                if *layer == "v1" {
                    assert!(
                        !text.contains("crate::v2::"),
                        "{} imports crate::v2",
                        file.display()
                    );
                }
                for above in &LAYERS[..rank] {
                    assert!(
                        !text.contains(&format!("crate::{above}::")),
                        "{} imports crate::{above}",
                        file.display()
                    );
                }
            }
        }
    }
}

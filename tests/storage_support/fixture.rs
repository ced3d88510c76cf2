//! A fresh, empty storage per test, and a way to look at what it left
//! outside its root.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use registry_v1::storage::local::LocalStorage;
use registry_v1::storage::Storage;

pub struct Fixture {
    pub storage: Arc<dyn Storage>,
    /// Whether the driver should give redirect URLs.
    pub redirects: bool,
    place: Place,
}

enum Place {
    Local {
        dir: tempfile::TempDir,
        root: PathBuf,
    },
}

impl Fixture {
    pub async fn local() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        let storage = LocalStorage::new(root.to_str().expect("utf-8 temp path")).expect("local");
        Fixture {
            storage: Arc::new(storage),
            redirects: false,
            place: Place::Local { dir, root },
        }
    }

    /// Whatever the tests wrote outside the storage root: must stay empty.
    pub async fn outside(&self) -> Vec<String> {
        match &self.place {
            Place::Local { dir, root } => walk(dir.path())
                .into_iter()
                .filter(|p| !p.starts_with(root))
                .map(|p| p.display().to_string())
                .collect(),
        }
    }

    /// Temporary files or unfinished uploads: must be empty after any
    /// write, finished or failed.
    pub async fn leftovers(&self) -> Vec<String> {
        match &self.place {
            Place::Local { root, .. } => walk(root)
                .into_iter()
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with('.'))
                })
                .map(|p| p.display().to_string())
                .collect(),
        }
    }
}

/// Every file (not folder) under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

//! Which repositories storage holds: the folders `repositories/<ns>/<repo>`,
//! named the way clients spell them, and the v2 repositories (distribution's
//! tree) that hold a manifest, named as the v2 API's events name them.

use indicatif::ProgressBar;

use crate::names::oci::Name as OciName;
use crate::names::RepositoryName;
use crate::storage::layout::distribution as v2;
use crate::storage::layout::legacy;
use crate::storage::{Storage, StorageError};

/// Every repository in storage, sorted, each once: a folder that lists as
/// empty (nothing in it, or only temporary files) is none. The progress bar counts
/// namespaces. A namespace that vanishes while we walk is skipped; any other
/// storage error ends the walk, so that no index is built from half a
/// listing.
pub async fn repositories(
    storage: &dyn Storage,
    progress: &ProgressBar,
) -> Result<Vec<RepositoryName>, StorageError> {
    let namespaces = match storage.list(legacy::REPOSITORIES).await {
        Ok(names) => names,
        Err(StorageError::NotFound(_)) => Vec::new(),
        Err(e) => return Err(e),
    };
    progress.set_length(namespaces.len() as u64);
    let mut found = Vec::new();
    for namespace in namespaces {
        let folder = format!("{}/{namespace}", legacy::REPOSITORIES);
        let repositories = match storage.list(&folder).await {
            Ok(names) => names,
            Err(StorageError::NotFound(_)) => Vec::new(),
            Err(e) => return Err(e),
        };
        // The old registry escaped the repository part twice, the namespace
        // once (see `layout`).
        let namespace = legacy::unescape(&namespace);
        for repository in repositories {
            // A folder holding nothing but a crash's temporary file (a
            // listing skips those) is no repository.
            match storage.list(&format!("{folder}/{repository}")).await {
                Ok(_) => {}
                Err(StorageError::NotFound(_)) => continue,
                Err(e) => return Err(e),
            }
            let repository = legacy::unescape(&legacy::unescape(&repository));
            match RepositoryName::new(&namespace, &repository) {
                Ok(name) => found.push(name),
                Err(e) => log::warn!("{folder}: skipped, {e}"),
            }
        }
        progress.inc(1);
        progress.set_message(format!("{} repositories", found.len()));
    }
    found.extend(v2_repositories(storage).await?);
    found.sort();
    found.dedup();
    Ok(found)
}

/// The v2 repositories holding at least one manifest: those the v2 API
/// announced (a first manifest push creates the repository in the index,
/// the delete of its last manifest removes it).
///
/// Walked here over distribution's layout rather than through the OCI
/// model, which sits above search: no paging, no order, only which folders
/// are repositories with a manifest.
async fn v2_repositories(storage: &dyn Storage) -> Result<Vec<RepositoryName>, StorageError> {
    let mut found = Vec::new();
    let mut stack = vec![String::new()];
    while let Some(path) = stack.pop() {
        let folder = if path.is_empty() {
            v2::repositories()
        } else {
            v2::repository(&path)
        };
        for child in list_or_empty(storage, &folder).await? {
            if child.starts_with('_') {
                continue;
            }
            let name = if path.is_empty() {
                child
            } else {
                format!("{path}/{child}")
            };
            if OciName::parse(&name).is_err() {
                continue;
            }
            if has_manifest(storage, &name).await? {
                match RepositoryName::parse(&name) {
                    Ok(repository) => found.push(repository),
                    Err(e) => log::warn!("v2 repository {name}: skipped, {e}"),
                }
            }
            stack.push(name);
        }
    }
    Ok(found)
}

/// Whether a v2 repository holds a manifest: a revision link of any
/// algorithm.
async fn has_manifest(storage: &dyn Storage, name: &str) -> Result<bool, StorageError> {
    for algorithm in ["sha256", "sha512"] {
        for hex in list_or_empty(storage, &v2::revisions(name, algorithm)).await? {
            if storage
                .exists(&v2::revision_link(name, algorithm, &hex))
                .await?
            {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

async fn list_or_empty(storage: &dyn Storage, folder: &str) -> Result<Vec<String>, StorageError> {
    match storage.list(folder).await {
        Ok(children) => Ok(children),
        Err(StorageError::NotFound(_)) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    use async_trait::async_trait;
    use bytes::Bytes;

    use crate::storage::memory;
    use crate::storage::{ByteRange, ByteStream, FileInfo, FileWriter, Result};

    /// The memory driver, with one folder whose listing fails as an
    /// unreachable backend's would.
    #[derive(Default)]
    pub(crate) struct MemoryStorage {
        pub storage: memory::MemoryStorage,
        pub broken: Option<String>,
    }

    impl MemoryStorage {
        /// A storage holding `repositories/<folder>/json` for each folder.
        pub fn with_repositories(folders: &[&str]) -> Self {
            let files = folders
                .iter()
                .map(|folder| (format!("repositories/{folder}/json"), Bytes::new()));
            Self {
                storage: memory::MemoryStorage::with_files(files).expect("valid test paths"),
                broken: None,
            }
        }
    }

    #[async_trait(?Send)]
    impl Storage for MemoryStorage {
        fn name(&self) -> &'static str {
            self.storage.name()
        }
        async fn get(&self, path: &str) -> Result<Bytes> {
            self.storage.get(path).await
        }
        async fn put(&self, path: &str, data: Bytes) -> Result<()> {
            self.storage.put(path, data).await
        }
        async fn lock(&self, path: &str) -> Result<crate::storage::Lock> {
            self.storage.lock(path).await
        }
        async fn put_stream(&self, path: &str, body: ByteStream) -> Result<u64> {
            self.storage.put_stream(path, body).await
        }
        async fn get_stream(&self, path: &str, range: Option<ByteRange>) -> Result<ByteStream> {
            self.storage.get_stream(path, range).await
        }
        async fn size(&self, path: &str) -> Result<u64> {
            self.storage.size(path).await
        }
        async fn exists(&self, path: &str) -> Result<bool> {
            self.storage.exists(path).await
        }
        async fn list(&self, path: &str) -> Result<Vec<String>> {
            if self.broken.as_deref() == Some(path) {
                return Err(StorageError::Unavailable("connection refused".into()));
            }
            self.storage.list(path).await
        }
        async fn remove(&self, path: &str) -> Result<()> {
            self.storage.remove(path).await
        }
        async fn writer(&self, path: &str, resume: Option<u64>) -> Result<Box<dyn FileWriter>> {
            self.storage.writer(path, resume).await
        }
        async fn rename(&self, from: &str, to: &str) -> Result<()> {
            self.storage.rename(from, to).await
        }
        async fn stat(&self, path: &str) -> Result<FileInfo> {
            self.storage.stat(path).await
        }
    }

    fn names(found: &[RepositoryName]) -> Vec<String> {
        found.iter().map(|n| n.to_string()).collect()
    }

    #[actix_web::test]
    async fn folders_become_names_as_clients_spell_them() {
        let storage = MemoryStorage::with_repositories(&[
            "library/busybox",
            "me/app",
            // `abc%$_-test`, escaped twice by the old registry.
            "library/abc%2525%2524_-test",
            "my+ns/a%252Fb",
            "me/app2",
        ]);
        let found = repositories(&storage, &ProgressBar::hidden())
            .await
            .unwrap();
        assert_eq!(
            names(&found),
            [
                "library/abc%$_-test",
                "library/busybox",
                "me/app",
                "me/app2",
                "my ns/a/b"
            ]
        );
    }

    #[actix_web::test]
    async fn an_empty_storage_holds_no_repository() {
        let storage = MemoryStorage::default();
        let found = repositories(&storage, &ProgressBar::hidden())
            .await
            .unwrap();
        assert!(found.is_empty());
    }

    #[actix_web::test]
    async fn a_storage_failure_ends_the_walk() {
        let mut storage = MemoryStorage::with_repositories(&["a/x", "b/y"]);
        storage.broken = Some("repositories/b".into());
        let err = repositories(&storage, &ProgressBar::hidden())
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::Unavailable(_)), "{err}");
    }
}

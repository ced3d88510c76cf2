//! A repository as a v2 client names it, in both trees at once: deleting
//! it. The v2 name reaches the v1 repository by the bridge's rule
//! ([`super::v1_name`]): deleting `x` deletes the v2 `x` and the v1
//! `library/x`, which the v2 `x` serves.

use crate::names::RepositoryName;
use crate::registry::oci::{self, repository, Name};
use crate::registry::rules::{self, Rules};
use crate::registry::{legacy, mirror};
use crate::storage::{Storage, StorageError};

/// What went.
#[derive(Debug, Default)]
pub struct Deleted {
    /// What the v2 tree held.
    pub v2: repository::Removed,
    /// The v1 repository the name reaches, when the v1 tree held it.
    pub v1: Option<RepositoryName>,
}

/// Deletes every tag and manifest of `name` in both trees, and its blobs'
/// links; the bytes go with the next collection. Nothing goes when a rule
/// holds a tag of either tree; `NameUnknown` when neither holds the name.
pub async fn delete(storage: &dyn Storage, rules: &Rules, name: &Name) -> oci::Result<Deleted> {
    let v1 = super::v1_name(name);
    let mut v1_held = false;
    if let Some(v1) = &v1 {
        // Both trees are asked before either loses anything.
        match legacy::tags(storage, v1).await {
            Ok(tags) => {
                let repository = v1.to_string();
                let tags = tags.keys().map(String::as_str);
                if let Some(immutable) = rules.first_immutable(&repository, tags) {
                    return Err(oci::Error::Immutable(rules::refuse_delete(immutable)));
                }
                v1_held = true;
            }
            Err(legacy::Error::RepositoryNotFound) => {}
            Err(e) => return Err(from_legacy(e)),
        }
    }
    let v2_held = repository::exists(storage, name).await?;
    if !v1_held && !v2_held {
        return Err(oci::Error::NameUnknown(name.to_string()));
    }
    let mut deleted = Deleted::default();
    if v2_held {
        deleted.v2 = repository::delete(storage, rules, name).await?;
    }
    if let (Some(v1), true) = (v1, v1_held) {
        legacy::delete_repository(storage, rules, &v1)
            .await
            .map_err(from_legacy)?;
        mirror::legacy::forget_repository(storage, &v1)
            .await
            .map_err(|e| match e {
                mirror::Error::Legacy(e) => from_legacy(e),
                mirror::Error::Model(e) => e,
                other => oci::Error::Storage(StorageError::Unavailable(other.to_string())),
            })?;
        deleted.v1 = Some(v1);
    }
    Ok(deleted)
}

fn from_legacy(e: legacy::Error) -> oci::Error {
    match e {
        legacy::Error::Immutable(message) => oci::Error::Immutable(message),
        legacy::Error::Storage(e) => oci::Error::Storage(e),
        other => oci::Error::Storage(StorageError::Unavailable(other.to_string())),
    }
}

/// `registry-v1 delete-repository NAME`: [`delete`] on the configured
/// storage, what went on standard output, and the search index a `serve`
/// beside it answers from told when no tree holds the name any longer.
/// Webhooks hear nothing of it: a command is no request of a client.
pub async fn command(settings: crate::config::Settings, name: &str) -> anyhow::Result<()> {
    let name = Name::parse(name).map_err(|e| anyhow::anyhow!("{name:?}: {e}"))?;
    let storage = crate::storage::from_settings(&settings).await?;
    let rules = Rules::new(&settings.rules);
    let deleted = delete(&*storage, &rules, &name)
        .await
        .map_err(|e| anyhow::anyhow!("{name} not deleted: {e}"))?;
    println!(
        "{name}: deleted {} tags and {} manifests of the v2 tree",
        deleted.v2.tags.len(),
        deleted.v2.manifests.len()
    );
    if let Some(v1) = &deleted.v1 {
        println!("{name}: deleted the v1 repository {v1}");
    }
    println!("the bytes no other repository names go with the next garbage collection");
    if let Ok(repository) = RepositoryName::parse(name.as_str()) {
        if !super::still_held(&*storage, &repository).await {
            crate::search::forget_beside_serve(
                "delete-repository",
                &settings,
                &*storage,
                &[repository],
            )
            .await;
        }
    }
    Ok(())
}

//! What makes a folder of `repositories/` a repository: the rule the
//! catalog lists by and the not-found errors are told apart by.

use super::error::Result;
use super::manifests::list_or_empty;
use super::name::Name;
use crate::storage::layout::distribution as layout;
use crate::storage::Storage;

/// Whether a folder with these children is a repository. distribution 2.8
/// lists folders that hold `_layers`; a repository of indexes alone has
/// only `_manifests`, so either counts.
pub fn holds_repository(children: &[String]) -> bool {
    children.iter().any(|c| c == "_layers" || c == "_manifests")
}

/// Whether anything was ever pushed to the repository.
pub async fn exists(storage: &dyn Storage, name: &Name) -> Result<bool> {
    let children = list_or_empty(storage, &layout::repository(name.as_str())).await?;
    Ok(holds_repository(&children))
}

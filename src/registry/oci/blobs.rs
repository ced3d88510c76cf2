//! Blobs as a repository sees them: the bytes are shared by every
//! repository (`blobs/<alg>/../data`), and a repository may serve a blob
//! only while its own link (`_layers/<alg>/<hex>/link`) names it.

use super::digest::Digest;
use super::error::{Error, OrNotFound, Result};
use super::links;
use super::name::Name;
use crate::storage::layout::distribution as layout;
use crate::storage::{FileInfo, Storage};

/// Size and modification time of blob `digest` as repository `name` serves
/// it; [`Error::BlobUnknown`] when the repository has no link to it or the
/// bytes are gone (collected).
pub async fn stat(storage: &dyn Storage, name: &Name, digest: &Digest) -> Result<FileInfo> {
    if links::read(storage, &links::layer(name, digest))
        .await?
        .is_none()
    {
        return Err(Error::BlobUnknown(digest.clone()));
    }
    storage
        .stat(&links::blob_data(digest))
        .await
        .or_not_found(|| Error::BlobUnknown(digest.clone()))
}

/// Lets repository `name` serve blob `digest` (whose bytes are stored).
pub async fn link(storage: &dyn Storage, name: &Name, digest: &Digest) -> Result<()> {
    links::write(storage, &links::layer(name, digest), digest).await
}

/// Removes blob `digest` from repository `name`. The bytes stay: other
/// repositories may link them, and only garbage collection knows.
pub async fn delete(storage: &dyn Storage, name: &Name, digest: &Digest) -> Result<()> {
    if links::read(storage, &links::layer(name, digest))
        .await?
        .is_none()
    {
        return Err(Error::BlobUnknown(digest.clone()));
    }
    let folder = layout::layer(name.as_str(), digest.algorithm().as_str(), digest.hex());
    storage
        .remove(&folder)
        .await
        .or_not_found(|| Error::BlobUnknown(digest.clone()))
}

/// The cross-repository mount: when repository `from` may serve blob
/// `digest`, `name` may too from now on. `false` when `from` cannot (the
/// client then uploads the blob).
pub async fn mount(
    storage: &dyn Storage,
    from: &Name,
    name: &Name,
    digest: &Digest,
) -> Result<bool> {
    if !links::has_layer(storage, from, digest).await? {
        return Ok(false);
    }
    link(storage, name, digest).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::memory::MemoryStorage;
    use bytes::Bytes;

    #[actix_web::test]
    async fn repositories_see_the_blobs_they_link() {
        let storage = MemoryStorage::new();
        let (a, b, c) = (
            Name::parse("a").unwrap(),
            Name::parse("b/c").unwrap(),
            Name::parse("nobody").unwrap(),
        );
        let digest = Digest::of(super::super::Algorithm::Sha256, b"blob");
        storage
            .put(&links::blob_data(&digest), Bytes::from_static(b"blob"))
            .await
            .unwrap();
        assert!(matches!(
            stat(&storage, &a, &digest).await,
            Err(Error::BlobUnknown(_))
        ));
        link(&storage, &a, &digest).await.unwrap();
        assert_eq!(stat(&storage, &a, &digest).await.unwrap().size, 4);

        assert!(mount(&storage, &a, &b, &digest).await.unwrap());
        assert!(!mount(&storage, &c, &b, &digest).await.unwrap());
        assert_eq!(stat(&storage, &b, &digest).await.unwrap().size, 4);

        delete(&storage, &a, &digest).await.unwrap();
        assert!(matches!(
            stat(&storage, &a, &digest).await,
            Err(Error::BlobUnknown(_))
        ));
        assert!(matches!(
            delete(&storage, &a, &digest).await,
            Err(Error::BlobUnknown(_))
        ));
        // The bytes are shared: b still serves them.
        assert_eq!(stat(&storage, &b, &digest).await.unwrap().size, 4);

        // A link whose bytes were collected serves nothing.
        storage.remove(&links::blob_data(&digest)).await.unwrap();
        assert!(matches!(
            stat(&storage, &b, &digest).await,
            Err(Error::BlobUnknown(_))
        ));
        assert!(!mount(&storage, &b, &c, &digest).await.unwrap());
    }
}

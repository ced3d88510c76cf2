//! Every path of the v2 tree, key for key as the reference registry
//! (distribution 2.x and 3.x) lays it out, relative to `storage_path`, so
//! that distribution started on the same folder or bucket serves what we
//! stored and we serve what it stored.
//!
//! ```text
//! docker/registry/v2/
//!   blobs/
//!     <alg>/<first 2 hex>/<hex>/data                the bytes of every blob and manifest
//!   repositories/
//!     <name>/                                       the name as clients spell it, `/` kept
//!       _layers/<alg>/<hex>/link                    blob <hex> belongs to this repository
//!       _manifests/
//!         revisions/<alg>/<hex>/link                manifest <hex> belongs to this repository
//!         tags/<tag>/
//!           current/link                            the manifest the tag points at now
//!           index/<alg>/<hex>/link                  every manifest the tag has pointed at
//!       _uploads/<uuid>/
//!         data                                      the bytes received so far
//!         startedat                                 RFC 3339 time the upload began
//!         hashstates/<alg>/<offset>                 hash state after <offset> bytes
//!       _referrers/<alg>/<hex>/                     OURS, not distribution's: the manifests
//!         <alg>/<hex>/link                          whose `subject` is manifest <hex>
//!       _counted/<alg>/<hex>                        OURS: blob or manifest <hex> counts in the
//!                                                   repository's quota; its size, in decimal
//! ```
//!
//! `_referrers` and `_counted` are the folders distribution does not have
//! (2.8 predates the referrers API; 3.x has none either; quotas are
//! ours). distribution's catalog, tag
//! and garbage-collection walks skip `_`-prefixed folders they do not
//! know, and no repository name can have a component starting with `_`, so
//! distribution serves a tree that holds it. A referrer link whose manifest
//! distribution has since deleted is skipped when read.
//!
//! A `link` holds the digest as text, `sha256:<hex>`, with no newline.
//!
//! Names, tags and digests reach this file already validated by the OCI
//! grammar (the OCI model checks them): lowercase letters, digits and
//! separators that never form `.` or `..`, so they are used as they are;
//! the driver's own path check still stands behind that. Upload ids are
//! ours (UUIDs). Hash states are private to the registry that wrote them
//! (distribution writes Go's encoding, we write ours): an upload in
//! progress belongs to one implementation, completed content to both.

/// The root of the v2 tree, beside the legacy `images/` and `repositories/`.
pub const ROOT: &str = "docker/registry/v2";

/// The folder under which every repository lives (`_catalog` walks it).
pub fn repositories() -> String {
    format!("{ROOT}/repositories")
}

/// The folder of every blob of one algorithm (the collector walks it).
pub fn blobs(algorithm: &str) -> String {
    format!("{ROOT}/blobs/{algorithm}")
}

/// The bytes of a blob or manifest, shared by every repository.
pub fn blob_data(algorithm: &str, hex: &str) -> String {
    let prefix = hex.get(..2).unwrap_or(hex);
    format!("{ROOT}/blobs/{algorithm}/{prefix}/{hex}/data")
}

pub fn repository(name: &str) -> String {
    format!("{ROOT}/repositories/{name}")
}

/// The folder of the link of blob `<hex>` in repository `name` (removed
/// whole when the blob is deleted from the repository).
pub fn layer(name: &str, algorithm: &str, hex: &str) -> String {
    format!("{}/_layers/{algorithm}/{hex}", repository(name))
}

/// Blob `<hex>` may be read through repository `name`.
pub fn layer_link(name: &str, algorithm: &str, hex: &str) -> String {
    format!("{}/link", layer(name, algorithm, hex))
}

/// The folder of the blob links of a repository, one folder an algorithm.
pub fn layers(name: &str) -> String {
    format!("{}/_layers", repository(name))
}

/// Manifest `<hex>` belongs to repository `name`.
pub fn revision_link(name: &str, algorithm: &str, hex: &str) -> String {
    format!(
        "{}/_manifests/revisions/{algorithm}/{hex}/link",
        repository(name)
    )
}

/// The folder of the manifest links of a repository for one algorithm.
pub fn revisions(name: &str, algorithm: &str) -> String {
    format!("{}/_manifests/revisions/{algorithm}", repository(name))
}

/// The folder under which every tag of a repository has a folder.
pub fn tags(name: &str) -> String {
    format!("{}/_manifests/tags", repository(name))
}

/// The folder of one tag (removed whole when the tag is deleted).
pub fn tag(name: &str, tag: &str) -> String {
    format!("{}/{tag}", tags(name))
}

/// The manifest the tag points at now.
pub fn tag_current_link(name: &str, tag: &str) -> String {
    format!("{}/{TAG_CURRENT_LINK}", self::tag(name, tag))
}

/// [`tag_current_link`] relative to the tag's folder.
pub const TAG_CURRENT_LINK: &str = "current/link";

/// One manifest the tag has pointed at.
pub fn tag_index_link(name: &str, tag: &str, algorithm: &str, hex: &str) -> String {
    format!("{}/index/{algorithm}/{hex}/link", self::tag(name, tag))
}

/// The folder of the referrers of one subject manifest (ours).
pub fn referrers(name: &str, algorithm: &str, hex: &str) -> String {
    format!("{}/_referrers/{algorithm}/{hex}", repository(name))
}

/// Manifest `<hex>` of `algorithm` names the subject as its `subject`.
pub fn referrer_link(
    name: &str,
    subject_algorithm: &str,
    subject_hex: &str,
    algorithm: &str,
    hex: &str,
) -> String {
    format!(
        "{}/{algorithm}/{hex}/link",
        referrers(name, subject_algorithm, subject_hex)
    )
}

/// Blob or manifest `<hex>` counts in the quota of repository `name`.
pub fn counted(name: &str, algorithm: &str, hex: &str) -> String {
    format!("{}/_counted/{algorithm}/{hex}", repository(name))
}

/// The folder of what repository `name` counts, one folder an algorithm.
pub fn counted_all(name: &str) -> String {
    format!("{}/_counted", repository(name))
}

/// The folder of an upload in progress.
pub fn upload(name: &str, uuid: &str) -> String {
    format!("{}/_uploads/{uuid}", repository(name))
}

/// The folder of the uploads in progress of a repository.
pub fn uploads(name: &str) -> String {
    format!("{}/_uploads", repository(name))
}

pub fn upload_data(name: &str, uuid: &str) -> String {
    format!("{}/data", upload(name, uuid))
}

pub fn upload_started_at(name: &str, uuid: &str) -> String {
    format!("{}/startedat", upload(name, uuid))
}

/// The folder of the hash states of one algorithm of an upload.
pub fn upload_hash_states(name: &str, uuid: &str, algorithm: &str) -> String {
    format!("{}/hashstates/{algorithm}", upload(name, uuid))
}

/// The hash state of an upload after its first `offset` bytes.
pub fn upload_hash_state(name: &str, uuid: &str, algorithm: &str, offset: u64) -> String {
    format!("{}/{offset}", upload_hash_states(name, uuid, algorithm))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn paths_are_distributions_own() {
        assert_eq!(
            blob_data("sha256", HEX),
            format!("docker/registry/v2/blobs/sha256/e3/{HEX}/data")
        );
        assert_eq!(
            layer_link("library/ubuntu", "sha256", HEX),
            format!("docker/registry/v2/repositories/library/ubuntu/_layers/sha256/{HEX}/link")
        );
        assert_eq!(
            revision_link("a/b/c", "sha256", HEX),
            format!("docker/registry/v2/repositories/a/b/c/_manifests/revisions/sha256/{HEX}/link")
        );
        assert_eq!(
            tag_current_link("x", "v1.0"),
            "docker/registry/v2/repositories/x/_manifests/tags/v1.0/current/link"
        );
        assert_eq!(
            tag_index_link("x", "latest", "sha256", HEX),
            format!(
                "docker/registry/v2/repositories/x/_manifests/tags/latest/index/sha256/{HEX}/link"
            )
        );
        assert_eq!(
            referrer_link("x", "sha256", HEX, "sha512", "ab"),
            format!("docker/registry/v2/repositories/x/_referrers/sha256/{HEX}/sha512/ab/link")
        );
        assert_eq!(
            upload_hash_state("x", "u-1", "sha256", 1024),
            "docker/registry/v2/repositories/x/_uploads/u-1/hashstates/sha256/1024"
        );
    }
}

//! Where things live in a folder or bucket: one file a tree, each drawing
//! its tree in its header comment.
//!
//! - [`legacy`]: the v1 tree of the Python registry (`images/`,
//!   `repositories/` directly under `storage_path`), byte for byte;
//! - [`distribution`]: the v2 tree of the reference registry
//!   (`docker/registry/v2/` under `storage_path`), key for key;
//! - [`collection`]: the garbage collector's lease and push records (`_gc/`);
//! - [`mirror`]: when the pull-through cache last checked each cached tag
//!   (`_mirror/`);
//! - [`notifications`]: the webhooks' queues of events (`_notifications/`);
//! - [`quotas`]: what the repositories of each quota rule hold (`_quotas/`).
//!
//! The six do not overlap, so one `storage_path` holds them all.
//!
//! [`immutable`] says which of their small files no write ever changes but
//! to delete them: what the Redis cache may keep.

pub mod collection;
pub mod distribution;
pub mod legacy;
pub mod mirror;
pub mod notifications;
pub mod quotas;

/// Whether `path` is a small file that, once written, is only ever
/// deleted, never given other bytes: image json, ancestry, checksums and
/// file listings, the bridge's records, blob and manifest bytes (read
/// whole only when small), and the links of layers, revisions and tag
/// histories. Tags themselves (`tag_*`, `current/link`) move, and uploads
/// grow: neither is.
pub fn immutable(path: &str) -> bool {
    let path = path.trim_start_matches('/');
    if let Some(rest) = path.strip_prefix(distribution::ROOT) {
        return rest.starts_with("/blobs/") && rest.ends_with("/data")
            || rest.starts_with("/repositories/")
                && rest.ends_with("/link")
                && (rest.contains("/_layers/")
                    || rest.contains("/_manifests/revisions/")
                    || (rest.contains("/_manifests/tags/") && rest.contains("/index/")));
    }
    if let Some(rest) = path.strip_prefix("images/") {
        let file = rest.rsplit_once('/').map_or("", |(_, file)| file);
        return matches!(
            file,
            "json" | "ancestry" | "_checksum" | "_files" | "_v2" | "_v2_config" | "_v2_layers"
        );
    }
    path.starts_with("repositories/") && path.contains("/_v2_digests/")
}

#[cfg(test)]
mod tests {
    use super::immutable;

    #[test]
    fn only_files_never_rewritten_are_immutable() {
        for path in [
            "docker/registry/v2/blobs/sha256/ab/abcd/data",
            "docker/registry/v2/repositories/a/b/_layers/sha256/abcd/link",
            "docker/registry/v2/repositories/a/_manifests/revisions/sha256/abcd/link",
            "docker/registry/v2/repositories/a/_manifests/tags/v1/index/sha256/abcd/link",
            "images/0123/json",
            "images/0123/ancestry",
            "images/0123/_checksum",
            "repositories/library/app/_v2_digests/sha256/abcd",
        ] {
            assert!(immutable(path), "{path}");
        }
        for path in [
            "docker/registry/v2/repositories/a/_manifests/tags/v1/current/link",
            "docker/registry/v2/repositories/a/_uploads/u/data",
            "docker/registry/v2/repositories/a/_uploads/u/startedat",
            "images/0123/layer",
            "images/0123/_inprogress",
            "images/0123/_v2_manifest",
            "repositories/library/app/tag_latest",
            "repositories/library/app/_index_images",
            "_gc/lease",
        ] {
            assert!(!immutable(path), "{path}");
        }
    }
}

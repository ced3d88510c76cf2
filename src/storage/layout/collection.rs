//! The garbage collector's own folder, beside the v1 and v2 trees, relative
//! to `storage_path`. Neither the old registry nor distribution looks at it.
//!
//! ```text
//! _gc/
//!   lease                       the collector holding the store now:
//!                               {"holder": <token>, "expires_ms": <unix ms>}
//!   sweeping                    present while a deletion batch runs:
//!                               {"until_ms": <unix ms>}, never longer
//!   pushes/<unix ms>-<token>    one a push in progress: what it references
//!                               {"manifests": [..], "blobs": [..], "images": [..]}
//! ```
//!
//! `lease` keeps a second collector (another instance on the bucket, a
//! second `registry-v1 gc`) from running at once; `sweeping` and `pushes/`
//! let a push and a sweep meet safely (see `registry::collector::records`).

pub const ROOT: &str = "_gc";

pub fn lease() -> String {
    format!("{ROOT}/lease")
}

pub fn sweeping() -> String {
    format!("{ROOT}/sweeping")
}

pub fn pushes() -> String {
    format!("{ROOT}/pushes")
}

/// A push record: its name starts with the time it was written, so the
/// collector knows its age without a stat.
pub fn push(millis: u64, token: &str) -> String {
    format!("{}/{millis}-{token}", pushes())
}

/// The time a push record's name carries; `None` for a name not ours.
pub fn push_time(file: &str) -> Option<u64> {
    file.split_once('-')?.0.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn push_records_carry_their_time() {
        let path = super::push(1_700_000_000_123, "ab12");
        assert_eq!(path, "_gc/pushes/1700000000123-ab12");
        let file = path.rsplit('/').next().unwrap();
        assert_eq!(super::push_time(file), Some(1_700_000_000_123));
        assert_eq!(super::push_time("junk"), None);
    }
}

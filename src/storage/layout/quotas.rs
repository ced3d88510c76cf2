//! The quotas' own folder, beside the v1 and v2 trees, relative to
//! `storage_path`: what the repositories each quota rule covers hold
//! between them, kept up to date by pushes (a compare-and-swap, so that
//! instances on one store agree) and set right by the collector.
//!
//! ```text
//! _quotas/
//!   <key>/usage      {"bytes": <used>, "added": <bytes pushes ever added>}
//! ```
//!
//! `<key>` names the rule by what it covers (the first 16 hex of the
//! sha256 of its `repositories` patterns), so that reordering the rules
//! keeps each one's count. `added` only grows: the collector, which counts
//! what the repositories reference as of its walk, adds what pushes added
//! meanwhile. What each repository counts is marked in the v2 tree
//! ([`super::distribution::counted`]).

pub const ROOT: &str = "_quotas";

/// The usage of the quota rule `key`.
pub fn usage(key: &str) -> String {
    format!("{ROOT}/{key}/usage")
}

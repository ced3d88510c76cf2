//! The webhook notifications' queues, beside the v1 and v2 trees, relative
//! to `storage_path`: one queue an endpoint. On an object store (S3) each
//! event is a file until the endpoint has taken it; on a local folder,
//! where a new file costs a push far more than a line added to one already
//! open, events are lines of append-only segments, one segment a process
//! at a time.
//!
//! ```text
//! _notifications/
//!   <endpoint>/
//!     queue/<ms>-<seq>-<instance>.json   object stores: one event in distribution's shape
//!     journal/                           local folders:
//!       <ms>-<instance>-<n>.log            a segment: lines `<ms> <event>\n`
//!       .open-<ms>-<instance>-<n>.log      a segment being created (not yet locked)
//!       cursor                             how far each segment was delivered
//!     lease                              who delivers: {"holder": .., "expires_ms": ..}
//! ```
//!
//! `<endpoint>` is the endpoint's configured name (letters, digits, `-`,
//! `_`, `.`; checked at startup). `<ms>` is the Unix time in milliseconds
//! of the event, 13 digits; `<seq>` counts the events of one process, 10
//! digits; `<instance>` is the process's random id: names sort in the order
//! the events happened (one process's strictly; several instances' by their
//! clocks), and two instances never write the same name. The one instance
//! holding `lease` sends the queue's files in that order and removes each
//! once the endpoint has answered 2xx.
//!
//! A segment's writer holds an exclusive `flock` on it for as long as it
//! appends, and never opens it again once it let go (it rolled to a new
//! segment, or died): a segment nobody holds is sealed, and once delivered
//! to its end it is removed. A segment is created under its `.open-` name,
//! locked, then renamed, so that no reader ever sees it unlocked before its
//! writer took it. `cursor` (JSON: segment name to byte offset) is written
//! after each delivery; a lost update only sends events again.

pub const ROOT: &str = "_notifications";

/// The queue of `endpoint`.
pub fn queue(endpoint: &str) -> String {
    format!("{ROOT}/{endpoint}/queue")
}

/// The event file `name` (as [`event_name`] made it) in `endpoint`'s queue.
pub fn event(endpoint: &str, name: &str) -> String {
    format!("{}/{name}", queue(endpoint))
}

/// The name of an event file.
pub fn event_name(ms: u64, seq: u64, instance: &str) -> String {
    format!("{ms:013}-{seq:010}-{instance}.json")
}

/// Whether `name`, listed in a queue, is an event file (not a temporary
/// file of a write in progress).
pub fn is_event(name: &str) -> bool {
    name.ends_with(".json") && name.len() > 25 && name.as_bytes()[13] == b'-'
}

/// The journal of `endpoint` (local folders).
pub fn journal(endpoint: &str) -> String {
    format!("{ROOT}/{endpoint}/journal")
}

/// The name of a segment: `n` counts one process's segments.
pub fn segment_name(ms: u64, instance: &str, n: u64) -> String {
    format!("{ms:013}-{instance}-{n:06}.log")
}

/// The name a segment is created under, before its writer locks it.
pub fn opening_segment_name(name: &str) -> String {
    format!(".open-{name}")
}

/// Whether `name`, listed in a journal, is a segment.
pub fn is_segment(name: &str) -> bool {
    name.ends_with(".log") && name.len() > 18 && name.as_bytes()[13] == b'-'
}

/// How far each segment of a journal was delivered.
pub const CURSOR: &str = "cursor";

/// Who delivers `endpoint`'s queue.
pub fn lease(endpoint: &str) -> String {
    format!("{ROOT}/{endpoint}/lease")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_in_the_order_of_events() {
        let a = event_name(999, 12, "ab");
        let b = event_name(1_000, 3, "ab");
        let c = event_name(1_000, 4, "aa");
        assert!(a < b && b < c, "{a} {b} {c}");
        assert!(is_event(&a));
        assert!(!is_event(".tmp-xyz"));
        assert_eq!(event("ci", &a), format!("_notifications/ci/queue/{a}"));
        let s = segment_name(1_000, "ab", 7);
        assert!(segment_name(999, "ab", 8) < s && s < segment_name(1_000, "ab", 8));
        assert!(is_segment(&s));
        assert!(!is_segment(&opening_segment_name(&s)) && !is_segment(CURSOR));
    }
}

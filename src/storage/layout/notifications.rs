//! The webhook notifications' queues, beside the v1 and v2 trees, relative
//! to `storage_path`: one queue an endpoint, each event a file until the
//! endpoint has taken it.
//!
//! ```text
//! _notifications/
//!   <endpoint>/
//!     queue/<ms>-<seq>-<instance>.json   one event in distribution's shape
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
    }
}

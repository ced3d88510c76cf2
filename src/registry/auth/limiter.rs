//! Failed logins per client address: after `max` failures within a
//! window, the address's logins are refused (429) until the window is
//! over. Only failures count: clients send their first request of every
//! exchange without credentials to learn the challenge, and a login that
//! works costs an attacker nothing to repeat.
//!
//! In memory, bounded: at most [`TRACKED_MAX`] addresses; when full, the
//! windows that are over go first, then the oldest. An IPv6 client counts
//! by its /64 (one host is usually given a whole /64 to pick from); an
//! IPv4-mapped one as its IPv4 address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The most client addresses tracked at once.
pub const TRACKED_MAX: usize = 10_000;

pub struct Limiter {
    max: u32,
    window: Duration,
    tracked_max: usize,
    failures: Mutex<HashMap<IpAddr, Window>>,
}

#[derive(Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

impl Limiter {
    pub fn new(max: u32, window: Duration) -> Self {
        Self::bounded(max, window, TRACKED_MAX)
    }

    fn bounded(max: u32, window: Duration, tracked_max: usize) -> Self {
        Self {
            max,
            window,
            tracked_max,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(seconds to wait)` while `addr` may not try to log in.
    pub fn blocked(&self, addr: IpAddr) -> Option<u64> {
        let addr = client_of(addr);
        let now = Instant::now();
        let map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let w = map.get(&addr)?;
        let elapsed = now.duration_since(w.started);
        (w.failures >= self.max && elapsed < self.window)
            .then(|| (self.window - elapsed).as_secs().max(1))
    }

    /// Counts a failed login of `addr`.
    pub fn failed(&self, addr: IpAddr) {
        let addr = client_of(addr);
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if !map.contains_key(&addr) && map.len() >= self.tracked_max {
            map.retain(|_, w| now.duration_since(w.started) < self.window);
            if map.len() >= self.tracked_max {
                if let Some(oldest) = map.iter().min_by_key(|(_, w)| w.started).map(|(a, _)| *a) {
                    map.remove(&oldest);
                }
            }
        }
        let w = map.entry(addr).or_insert(Window {
            started: now,
            failures: 0,
        });
        if now.duration_since(w.started) >= self.window {
            *w = Window {
                started: now,
                failures: 0,
            };
        }
        w.failures = w.failures.saturating_add(1);
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.failures.lock().unwrap().len()
    }
}

/// The key an address is counted under.
fn client_of(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(n))
    }

    #[test]
    fn failures_beyond_the_limit_block_until_the_window_is_over() {
        let limiter = Limiter::new(3, Duration::from_millis(300));
        for _ in 0..3 {
            assert_eq!(limiter.blocked(ip(1)), None);
            limiter.failed(ip(1));
        }
        assert_eq!(limiter.blocked(ip(1)), Some(1));
        // Another address is not affected.
        assert_eq!(limiter.blocked(ip(2)), None);
        std::thread::sleep(Duration::from_millis(350));
        assert_eq!(limiter.blocked(ip(1)), None);
        limiter.failed(ip(1));
        assert_eq!(limiter.blocked(ip(1)), None, "a new window starts at one");
    }

    #[test]
    fn an_ipv6_client_counts_by_its_64() {
        let limiter = Limiter::new(2, Duration::from_secs(60));
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        limiter.failed(a);
        limiter.failed(b);
        assert!(limiter.blocked(a).is_some() && limiter.blocked(b).is_some());
        assert!(limiter.blocked(other).is_none());
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        limiter.failed(mapped);
        limiter.failed("192.0.2.7".parse().unwrap());
        assert!(limiter.blocked("192.0.2.7".parse().unwrap()).is_some());
    }

    #[test]
    fn tracked_addresses_are_bounded() {
        let limiter = Limiter::bounded(1, Duration::from_secs(60), 100);
        for n in 0..1000 {
            limiter.failed(ip(n));
        }
        assert_eq!(limiter.tracked(), 100);
        // The newest are the ones kept.
        assert!(limiter.blocked(ip(999)).is_some());
        assert!(limiter.blocked(ip(0)).is_none());
    }
}

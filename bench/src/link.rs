//! A network link of a set speed on loopback: a TCP relay that passes
//! what a server answers on to its client at that rate, paced in blocks
//! of 64 KiB, and what the client sends on at once. nginx's
//! `limit_rate` lets the first second's worth through unpaced, and its
//! `proxy_limit_rate` paced the same pull at 135 or 165 MB/s from one run
//! to the next, for 125 MB/s asked; this one holds the rate within a
//! block.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

const BLOCK: usize = 64 * 1024;

/// The relay; it stops taking connections when dropped.
pub struct Link {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl Link {
    /// A link of `bytes_per_s` in front of `127.0.0.1:upstream`.
    pub fn start(upstream: u16, bytes_per_s: u64) -> Result<Link> {
        let listener = TcpListener::bind("127.0.0.1:0").context("bind the link")?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        thread::spawn(move || {
            for client in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                relay(client, server, bytes_per_s);
            }
        });
        Ok(Link { port, stop })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accepting thread, which then sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Two threads a connection: requests as they come, answers paced.
fn relay(client: TcpStream, server: TcpStream, bytes_per_s: u64) {
    let (Ok(client_in), Ok(server_out)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    thread::spawn(move || copy(client_in, server_out, None));
    thread::spawn(move || copy(server, client, Some(bytes_per_s)));
}

/// Copies `from` to `to` until either ends, at most `rate` bytes a second:
/// a link's time unused (the sender pausing, as between two requests, or
/// the receiver slow) is lost, as on a wire.
fn copy(mut from: TcpStream, mut to: TcpStream, rate: Option<u64>) {
    let mut buf = vec![0u8; BLOCK];
    let mut burst: Option<(Instant, u64)> = None;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        let Some(rate) = rate else { continue };
        let now = Instant::now();
        let (start, sent) = burst.get_or_insert((now, 0));
        *sent += n as u64;
        let due = *start + Duration::from_secs_f64(*sent as f64 / rate as f64);
        if due > now {
            thread::sleep(due - now);
        } else {
            burst = Some((now, 0));
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

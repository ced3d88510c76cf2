//! A kill -9 of the registry in the middle of a chunked upload. After a
//! restart on the same storage the upload either resumes from an offset
//! the registry acknowledged (or the one the interrupted chunk would have
//! reached, had its answer been lost) or is unknown; it then completes
//! with the right digest, and no blob that was not completed is ever
//! served. A few iterations on each storage, each killed at a random
//! point of a slow PATCH.

mod common;
mod v2_support;

use std::io::Read;
use std::process::Command;
use std::time::{Duration, Instant};

use rand::Rng;

use v2_support::*;

const CHUNK: usize = 64 * 1024;
const SLOW: usize = 1024 * 1024;
const ITERATIONS: usize = 3;

/// A body that trickles out: 16 KiB every 5 ms, so that the kill lands
/// while the request is in flight.
struct Trickle {
    data: Vec<u8>,
    at: usize,
}

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at >= self.data.len() {
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(5));
        let n = buf.len().min(16 * 1024).min(self.data.len() - self.at);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

fn patch(v2: &V2, location: &str, data: &[u8], from: usize) -> reqwest::blocking::Response {
    let to = from + data.len() - 1;
    v2.send(
        v2.request("PATCH", location)
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{from}-{to}"))
            .header("content-length", data.len().to_string())
            .body(data.to_vec()),
    )
}

fn assert_not_served(v2: &V2, name: &str, digests: &[String], when: &str) {
    for digest in digests {
        let resp = v2.head(&format!("/v2/{name}/blobs/{digest}"));
        assert_eq!(resp.status(), 404, "{when}: {digest} is served");
    }
}

fn kill_mid_upload(backend: Backend) {
    let mut rng = rand::thread_rng();
    for iteration in 0..ITERATIONS {
        let name = format!("crash/it{iteration}");
        let chunks = rng.gen_range(2..5);
        let total = chunks * CHUNK + SLOW + 1000;
        let data = unique_bytes(&format!("crash {iteration}"), total);
        let digest = sha256(&data);

        let registry = backend.start(&[]);
        let v2 = V2::new(&registry);
        let mut location = v2.start_upload(&name);
        let mut acknowledged = vec![0usize];
        for i in 0..chunks {
            let from = i * CHUNK;
            let resp = patch(&v2, &location, &data[from..from + CHUNK], from);
            assert_eq!(resp.status(), 202, "chunk {i}");
            assert_eq!(
                header(&resp, "range"),
                Some(format!("0-{}", from + CHUNK - 1))
            );
            location = header(&resp, "location").unwrap();
            acknowledged.push(from + CHUNK);
        }
        let offset = chunks * CHUNK;
        // Had the slow chunk been stored whole, only its answer lost.
        let whole = offset + SLOW;

        // The slow chunk, killed at a random point of its transfer.
        let url = v2.url(&location);
        let slow = data[offset..whole].to_vec();
        let sender = std::thread::spawn(move || {
            let body = reqwest::blocking::Body::sized(Trickle { data: slow, at: 0 }, SLOW as u64);
            common::client()
                .patch(url)
                .header("content-type", "application/octet-stream")
                .header("content-range", format!("{offset}-{}", whole - 1))
                .body(body)
                .send()
                .map(|r| r.status().as_u16())
        });
        // The whole chunk takes some 320 ms to send.
        let delay = Duration::from_millis(rng.gen_range(10..350));
        let started = Instant::now();
        std::thread::sleep(delay);
        let killed = Command::new("kill")
            .args(["-9", &registry.pid().to_string()])
            .status()
            .expect("kill -9");
        assert!(killed.success());
        let answer = sender.join().unwrap();
        let path = path_of(&location);
        drop(registry);

        let registry = backend.start(&[]);
        let v2 = V2::new(&registry);
        let partial = [
            digest.clone(),
            sha256(&data[..offset]),
            sha256(&data[..whole]),
        ];
        assert_not_served(&v2, &name, &partial, "after the kill");

        let resp = v2.get(&path);
        let status = resp.status().as_u16();
        let resume_at = match status {
            204 => {
                let range = header(&resp, "range").expect("Range of the status");
                let end: usize = range
                    .strip_prefix("0-")
                    .and_then(|e| e.parse().ok())
                    .unwrap_or_else(|| panic!("Range {range:?}"));
                // An empty upload may say 0-0 (distribution does).
                let at = if end == 0 && !acknowledged.contains(&1) {
                    0
                } else {
                    end + 1
                };
                assert!(
                    acknowledged.contains(&at) || at == whole,
                    "iteration {iteration}, killed after {:?} (answer {answer:?}): resumes at \
                     {at}, acknowledged {acknowledged:?} or {whole}",
                    started.elapsed()
                );
                location = header(&resp, "location").unwrap_or(path.clone());
                Some(at)
            }
            404 => {
                let codes = error_codes_of(&resp.bytes().unwrap(), "status after the kill");
                assert!(
                    codes.iter().any(|c| c == "BLOB_UPLOAD_UNKNOWN"),
                    "{codes:?}"
                );
                None
            }
            other => panic!("status of the upload after the kill: {other}"),
        };
        if let Ok(202) = answer {
            assert_eq!(resume_at, Some(whole), "an acknowledged chunk was lost");
        }

        let from = match resume_at {
            Some(at) => at,
            None => {
                location = v2.start_upload(&name);
                0
            }
        };
        if from < data.len() - 1 {
            let resp = patch(&v2, &location, &data[from..data.len() - 1], from);
            assert_eq!(resp.status(), 202, "resume at {from}");
            location = header(&resp, "location").unwrap();
        }
        assert_not_served(&v2, &name, &partial, "before the closing PUT");
        let resp = v2.send(
            v2.request("PUT", &with_query(&location, &format!("digest={digest}")))
                .header("content-range", format!("{}-{}", total - 1, total - 1))
                .body(data[total - 1..].to_vec()),
        );
        assert_eq!(resp.status(), 201, "complete after resuming at {from}");
        let resp = v2.get(&format!("/v2/{name}/blobs/{digest}"));
        assert_eq!(resp.status(), 200);
        assert!(resp.bytes().unwrap() == data, "the completed blob is whole");
        assert_not_served(&v2, &name, &partial[1..], "after completion");
    }
}

mod local {
    #[test]
    fn kill_mid_upload() {
        super::kill_mid_upload(super::Backend::local());
    }
}

mod s3 {
    #[test]
    fn kill_mid_upload() {
        if let Some(backend) = super::Backend::s3() {
            super::kill_mid_upload(backend);
        }
    }
}

//! Small-request load with wrk: requests per second and p99 latency at a
//! given number of connections, for a bounded duration.

use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Load {
    pub requests_per_s: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
    pub requests: u64,
    /// Connect, read, write errors and timeouts together.
    pub socket_errors: u64,
}

/// What wrk sends besides a plain GET: headers, and a Lua script (which
/// is how wrk changes the method).
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub headers: Vec<String>,
    pub script: Option<std::path::PathBuf>,
}

/// Runs wrk against `url` with `connections` keep-alive connections for
/// `duration`. Fails on any non-2xx/3xx answer: a fast error is no figure.
pub fn run(url: &str, connections: usize, duration: Duration) -> Result<Load> {
    run_with(url, connections, duration, &Request::default())
}

/// [`run`] with headers or a script.
pub fn run_with(
    url: &str,
    connections: usize,
    duration: Duration,
    request: &Request,
) -> Result<Load> {
    let threads = connections.min(2);
    let mut cmd = Command::new("wrk");
    for h in &request.headers {
        cmd.arg("-H").arg(h);
    }
    if let Some(script) = &request.script {
        cmd.arg("-s").arg(script);
    }
    let out = cmd
        .args([
            "--latency",
            "-t",
            &threads.to_string(),
            "-c",
            &connections.to_string(),
            "-d",
            &format!("{}s", duration.as_secs().max(1)),
            "--timeout",
            "5s",
            url,
        ])
        .output()
        .context("run wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "wrk {url} failed ({}): {}{}",
            out.status,
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let load =
        parse(&text).with_context(|| format!("wrk {url}: cannot read its output:\n{text}"))?;
    // wrk waits for a body after a HEAD answer with a length, and so
    // counts nothing: no requests is a failed load, not a slow one.
    if load.requests == 0 {
        bail!("wrk {url}: no request completed:\n{text}");
    }
    Ok(load)
}

fn parse(text: &str) -> Result<Load> {
    if let Some(line) = text
        .lines()
        .find(|l| l.contains("Non-2xx or 3xx responses"))
    {
        bail!("error answers: {}", line.trim());
    }
    let mut requests_per_s = None;
    let mut p99_ms = None;
    let mut requests = None;
    let mut socket_errors = 0;
    for line in text.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            requests_per_s = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("99%") {
            p99_ms = duration_ms(v.trim());
        } else if line.contains("requests in") {
            requests = line.split_whitespace().next().and_then(|n| n.parse().ok());
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            socket_errors = v
                .split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum();
        }
    }
    Ok(Load {
        requests_per_s: requests_per_s.context("no Requests/sec")?,
        p99_ms: p99_ms.context("no 99% latency")?,
        requests: requests.context("no request count")?,
        socket_errors,
    })
}

/// `812.00us`, `1.23ms`, `2.00s`, `1.5m` in milliseconds.
fn duration_ms(v: &str) -> Option<f64> {
    let split = v.find(|c: char| c.is_ascii_alphabetic())?;
    let (num, unit) = v.split_at(split);
    let num: f64 = num.parse().ok()?;
    let scale = match unit {
        "us" => 1e-3,
        "ms" => 1.0,
        "s" => 1e3,
        "m" => 60e3,
        "h" => 3600e3,
        _ => return None,
    };
    Some(num * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "Running 2s test @ http://127.0.0.1:8080/v1/_ping
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   610.17us  450.71us  12.09ms   93.46%
    Req/Sec    13.61k     1.22k   15.83k    75.00%
  Latency Distribution
     50%  512.00us
     75%  680.00us
     90%    0.90ms
     99%    2.31ms
  54164 requests in 2.00s, 8.37MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
Requests/sec:  27069.80
Transfer/sec:      4.18MB
";

    #[test]
    fn reads_throughput_latency_and_errors() {
        let load = parse(SAMPLE).unwrap();
        assert_eq!(load.requests_per_s, 27069.80);
        assert_eq!(load.p99_ms, 2.31);
        assert_eq!(load.requests, 54164);
        assert_eq!(load.socket_errors, 3);
    }

    #[test]
    fn error_answers_are_refused() {
        let text = SAMPLE.replace(
            "Requests/sec",
            "  Non-2xx or 3xx responses: 12\nRequests/sec",
        );
        assert!(parse(&text).is_err());
    }

    #[test]
    fn durations_in_every_unit() {
        assert_eq!(duration_ms("812.00us"), Some(0.812));
        assert_eq!(duration_ms("2.00s"), Some(2000.0));
        assert_eq!(duration_ms("1.5m"), Some(90000.0));
        assert_eq!(duration_ms("abc"), None);
    }
}

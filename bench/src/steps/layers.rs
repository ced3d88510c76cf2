//! Layer pulls, the same for every storage: one client, N clients, and a
//! ranged pull of the second half, each next to the same bytes from the
//! baseline server; throughput, and the server's CPU time per GB (which a
//! busy machine hardly moves).

use anyhow::Result;

use super::{figure, rotate, Ctx, LoadWatch};
use crate::http;
use crate::procs::Server;
use crate::report::{Goal, Row, Unit};

/// Where the same bytes are: the registry's layer URL and the baseline's,
/// and the servers behind them.
pub struct PullPair<'a> {
    /// Put before each figure's name (`S3: `), or empty.
    pub label: &'a str,
    pub registry: &'a str,
    pub registry_server: &'a Server,
    pub baseline_name: &'a str,
    pub baseline: &'a str,
    pub baseline_server: &'a Server,
    pub size: u64,
}

/// One timed transfer: MB/s and the server's CPU milliseconds per GB.
pub fn throughput_and_cpu(
    server: &Server,
    bytes: u64,
    f: impl FnOnce() -> Result<std::time::Duration>,
) -> Result<(f64, f64)> {
    let cpu0 = server.cpu_seconds()?;
    let elapsed = f()?;
    let cpu = server.cpu_seconds()? - cpu0;
    Ok((
        bytes as f64 / elapsed.as_secs_f64() / 1e6,
        cpu * 1e3 / (bytes as f64 / 1e9),
    ))
}

pub fn pull_rows(ctx: &Ctx, runs: usize, pair: &PullPair, goal: Option<Goal>) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let size = pair.size;
    let half = size / 2;
    let cases = [
        ("1 client".to_owned(), 1, None),
        (
            format!("{} clients", ctx.plan.clients),
            ctx.plan.clients,
            None,
        ),
        ("1 client, Range: second half".to_owned(), 1, Some(half)),
    ];
    for (name, clients, from) in cases {
        let expect = size - from.unwrap_or(0);
        let load = LoadWatch::start();
        let measure = |url: &str, server: &Server| {
            throughput_and_cpu(server, expect * clients as u64, || {
                ctx.block_on(http::parallel_download(
                    &ctx.client,
                    url,
                    clients,
                    from,
                    expect,
                ))
            })
        };
        let mut base = || measure(pair.baseline, pair.baseline_server);
        let mut mine = || measure(pair.registry, pair.registry_server);
        let got = rotate(runs, &mut [&mut base, &mut mine])?;
        let load = load.end();
        let speed = |v: &[(f64, f64)]| v.iter().map(|x| x.0).collect::<Vec<_>>();
        let cpu = |v: &[(f64, f64)]| v.iter().map(|x| x.1).collect::<Vec<_>>();
        rows.push(figure(
            format!("{}pull, {name}", pair.label),
            Unit::MegabytesPerSecond,
            &speed(&got[1]),
            Some((pair.baseline_name, &speed(&got[0]))),
            goal,
            load,
        ));
        rows.push(figure(
            format!("{}pull, {name}: server CPU", pair.label),
            Unit::CpuMsPerGb,
            &cpu(&got[1]),
            Some((pair.baseline_name, &cpu(&got[0]))),
            None,
            load,
        ));
    }
    Ok(rows)
}

/// Smoke runs: one untimed pull from each side, checked byte for byte.
pub fn verify_pull(ctx: &Ctx, pair: &PullPair, sha256: &str) -> Result<()> {
    for url in [pair.registry, pair.baseline] {
        ctx.block_on(http::download(
            &ctx.client,
            url,
            None,
            pair.size,
            Some(sha256),
        ))?;
    }
    Ok(())
}

//! Layer pulls, the same for every storage: one client, N clients, and a
//! ranged pull of the second half, each next to the same bytes from the
//! baseline server.

use anyhow::Result;

use super::{figure, rotate, Ctx, LoadWatch};
use crate::http;
use crate::report::{Goal, Row, Unit};

/// Where the same bytes are: the registry's layer URL and the baseline's.
pub struct PullPair<'a> {
    pub registry: &'a str,
    pub baseline_name: &'a str,
    pub baseline: &'a str,
    pub size: u64,
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
        let measure = |url: &str| -> Result<f64> {
            let t = ctx.block_on(http::parallel_download(
                &ctx.client,
                url,
                clients,
                from,
                expect,
            ))?;
            Ok(t.mb_per_s())
        };
        let mut base = || measure(pair.baseline);
        let mut mine = || measure(pair.registry);
        let got = rotate(runs, &mut [&mut base, &mut mine])?;
        rows.push(figure(
            format!("pull, {name}"),
            Unit::MegabytesPerSecond,
            &got[1],
            Some((pair.baseline_name, &got[0])),
            goal,
            load.end(),
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

//! Section 16: what quota accounting costs a push. Two registry-v1
//! processes on local storage, one without rules and one whose rule puts
//! every repository of the run under a quota far above what it pushes:
//! the same whole-image pushes through each, runs taking turns. Each run
//! pushes into repositories of its own, so that every push is charged
//! (markers looked up, blob sizes read, the usage swapped, markers
//! written), not just checked against markers an earlier run wrote.

use std::cell::Cell;
use std::fs;

use anyhow::{ensure, Result};

use super::pushes::{self, Images};
use super::{figure, rotate, Ctx, LoadWatch, MIB};
use crate::report::{Goal, Section, Unit};

/// "The cost of quota accounting on push throughput: under 2 %".
const QUOTA_GOAL: Goal = Goal::RatioAtLeast(0.98);
/// Clients pushing at once, as docker pushes three layers at a time.
const CLIENTS: usize = 4;

pub fn run(ctx: &Ctx, section: &mut Section) {
    section.step("pushes counted in a quota next to none", || measure(ctx));
}

fn measure(ctx: &Ctx) -> Result<Vec<crate::report::Row>> {
    let work = ctx.work.join("quota");
    fs::create_dir_all(&work)?;
    let config = work.join("config.yml");
    let rule = "  rules:\n    - repositories: bench/**\n      quota: 1TiB\n";
    fs::write(
        &config,
        [pushes::flavor("plain", ""), pushes::flavor("counted", rule)].concat(),
    )?;
    let plain = pushes::start(ctx, &work, &config, "plain")?;
    let counted = pushes::start(ctx, &work, &config, "counted")?;
    let images = Images::write(ctx, &work, 300)?;

    // A fresh repository name for each measurement, the same names on
    // both servers.
    let (plain_runs, counted_runs) = (Cell::new(0usize), Cell::new(0usize));
    let next = |runs: &Cell<usize>| {
        runs.set(runs.get() + 1);
        runs.get()
    };
    let small = |server, runs: &Cell<usize>, clients| {
        let run = next(runs);
        images.small_rate(ctx, server, clients, |c| {
            format!("bench/q{run}-{clients}-{c}")
        })
    };
    let large = |server, runs: &Cell<usize>| {
        let run = next(runs);
        images.large_rate(ctx, server, &format!("bench/large{run}"))
    };
    let runs = if ctx.plan.smoke { 3 } else { 15 };
    let load = LoadWatch::start();
    let got = rotate(
        runs,
        &mut [
            &mut || small(&plain, &plain_runs, 1),
            &mut || small(&counted, &counted_runs, 1),
            &mut || small(&plain, &plain_runs, CLIENTS),
            &mut || small(&counted, &counted_runs, CLIENTS),
            &mut || large(&plain, &plain_runs),
            &mut || large(&counted, &counted_runs),
        ],
    )?;
    let load = load.end();

    // The quota was there and counted every push: each repository counts
    // its images whole (layer, and a config and manifest of under a KiB
    // each), none twice.
    let mut used = 0;
    for entry in fs::read_dir(work.join("counted/_quotas"))? {
        let usage: serde_json::Value =
            serde_json::from_slice(&fs::read(entry?.path().join("usage"))?)?;
        used += usage["bytes"].as_u64().unwrap_or(0);
    }
    let count = images.small.len() as u64;
    let layers = runs as u64 * (2 * count * images.small_size + images.large_size);
    let small_files = runs as u64 * (2 * count + 1) * 2 * 1024;
    ensure!(
        (layers..layers + small_files).contains(&used),
        "the quota counts {used} bytes, {layers} of layers and a little more were pushed"
    );
    ensure!(
        !work.join("plain/_quotas").exists(),
        "the server without rules keeps a usage"
    );
    let kib = images.small_size / 1024;
    Ok(vec![
        figure(
            format!("{count} image pushes ({kib} KiB layer), one client, under a quota"),
            Unit::RequestsPerSecond,
            &got[1],
            Some(("no quota", &got[0])),
            Some(QUOTA_GOAL),
            load,
        ),
        figure(
            format!("{count} image pushes ({kib} KiB layer), {CLIENTS} clients, under a quota"),
            Unit::RequestsPerSecond,
            &got[3],
            Some(("no quota", &got[2])),
            Some(QUOTA_GOAL),
            load,
        ),
        figure(
            format!(
                "image push ({} MiB layer), under a quota",
                images.large_size / MIB
            ),
            Unit::MegabytesPerSecond,
            &got[5],
            Some(("no quota", &got[4])),
            Some(QUOTA_GOAL),
            load,
        ),
    ])
}

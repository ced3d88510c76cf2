//! Section 15: webhook notifications. Four registry-v1 processes on local
//! storage: one without endpoints, one with an endpoint that is down (its
//! port refuses connections, so every delivery fails and the queue grows),
//! one with an endpoint that hangs (it takes the request and never
//! answers, so every delivery waits out its timeout), and one whose dead
//! endpoint takes manifests only: the same whole-image pushes through each,
//! runs taking turns. What an endpoint costs a push is the event appended
//! to its journal, and synced, before the answer; its deliveries run apart,
//! and a dead one must not slow pushes.

use std::fs;

use anyhow::{ensure, Context, Result};

use super::pushes::{self, Images};
use super::{figure, rotate, Ctx, LoadWatch, MIB};
use crate::procs::Server;
use crate::report::{Goal, Section, Unit};

const REPO: &str = "bench/hooked";

/// "A dead endpoint configured within 5 % of none".
const DEAD_ENDPOINT_GOAL: Goal = Goal::RatioAtLeast(0.95);
/// Clients pushing at once, as docker pushes three layers at a time.
const CLIENTS: usize = 4;

pub fn run(ctx: &Ctx, section: &mut Section) {
    section.step(
        "pushes with a dead and a hanging endpoint next to none",
        || measure(ctx),
    );
}

fn measure(ctx: &Ctx) -> Result<Vec<crate::report::Row>> {
    let work = ctx.work.join("notifications");
    fs::create_dir_all(&work)?;
    // A port nothing listens on: connections are refused at once.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    // A port that takes connections and never answers on them.
    let hanging = std::net::TcpListener::bind("127.0.0.1:0")?;
    let hanging_port = hanging.local_addr()?.port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in hanging.incoming().flatten() {
            held.push(conn);
        }
    });
    let endpoint = |name: &str, port: u16| {
        format!(
            "  notifications:\n    endpoints:\n      - name: {name}\n        \
             url: http://127.0.0.1:{port}/events\n        timeout: 1s\n        backoff: 100ms\n"
        )
    };
    let config = work.join("config.yml");
    fs::write(
        &config,
        [
            pushes::flavor("plain", ""),
            pushes::flavor("hooked", &endpoint("dead", dead)),
            pushes::flavor("hanging", &endpoint("hanging", hanging_port)),
            // What most CI consumers ask for: an event an image, not three.
            pushes::flavor(
                "manifests",
                &format!(
                    "{}        ignoredmediatypes: [application/octet-stream]\n",
                    endpoint("manifests", dead)
                ),
            ),
        ]
        .concat(),
    )?;
    let plain = pushes::start(ctx, &work, &config, "plain")?;
    let hooked = pushes::start(ctx, &work, &config, "hooked")?;
    let hung = pushes::start(ctx, &work, &config, "hanging")?;
    let manifests = pushes::start(ctx, &work, &config, "manifests")?;
    let images = Images::write(ctx, &work, 99)?;
    let count = images.small.len();
    let small_pushes = |server: &Server, clients: usize| {
        images.small_rate(ctx, server, clients, |_| REPO.to_owned())
    };
    let large_push = |server: &Server| images.large_rate(ctx, server, REPO);
    // Each run is short, and a few fsyncs more or less move it: many runs.
    let runs = if ctx.plan.smoke { 3 } else { 15 };
    let load = LoadWatch::start();
    let got = rotate(
        runs,
        &mut [
            &mut || small_pushes(&plain, 1),
            &mut || small_pushes(&hooked, 1),
            &mut || small_pushes(&plain, CLIENTS),
            &mut || small_pushes(&hooked, CLIENTS),
            &mut || large_push(&plain),
            &mut || large_push(&hooked),
            &mut || small_pushes(&hung, CLIENTS),
            &mut || large_push(&hung),
            &mut || small_pushes(&manifests, CLIENTS),
        ],
    )?;
    let load = load.end();

    // Each endpoint was there and never took an event: its journal holds
    // every push's events (two blobs and a manifest an image), a line each.
    let check = |journal: &str, pushed: usize| -> Result<()> {
        let journal = work.join(journal);
        let mut queued = 0;
        for entry in fs::read_dir(&journal)
            .with_context(|| format!("{}: no journal, so no endpoint", journal.display()))?
        {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "log") {
                queued += fs::read(&path)?.iter().filter(|b| **b == b'\n').count();
            }
        }
        ensure!(
            queued == pushed,
            "{queued} events in {}, {pushed} expected",
            journal.display()
        );
        Ok(())
    };
    let per_run = count * 3;
    check(
        "hooked/_notifications/dead/journal",
        runs * (2 * per_run + 3),
    )?;
    check(
        "hanging/_notifications/hanging/journal",
        runs * (per_run + 3),
    )?;
    check("manifests/_notifications/manifests/journal", runs * count)?;
    let kib = images.small_size / 1024;
    Ok(vec![
        figure(
            format!("{count} image pushes ({kib} KiB layer), one client, endpoint down"),
            Unit::RequestsPerSecond,
            &got[1],
            Some(("no endpoint", &got[0])),
            None,
            load,
        ),
        figure(
            format!("{count} image pushes ({kib} KiB layer), {CLIENTS} clients, endpoint down"),
            Unit::RequestsPerSecond,
            &got[3],
            Some(("no endpoint", &got[2])),
            Some(DEAD_ENDPOINT_GOAL),
            load,
        ),
        figure(
            format!(
                "image push ({} MiB layer), endpoint down",
                images.large_size / MIB
            ),
            Unit::MegabytesPerSecond,
            &got[5],
            Some(("no endpoint", &got[4])),
            Some(DEAD_ENDPOINT_GOAL),
            load,
        ),
        figure(
            format!("{count} image pushes ({kib} KiB layer), {CLIENTS} clients, endpoint hangs"),
            Unit::RequestsPerSecond,
            &got[6],
            Some(("no endpoint", &got[2])),
            Some(DEAD_ENDPOINT_GOAL),
            load,
        ),
        figure(
            format!(
                "image push ({} MiB layer), endpoint hangs",
                images.large_size / MIB
            ),
            Unit::MegabytesPerSecond,
            &got[7],
            Some(("no endpoint", &got[4])),
            Some(DEAD_ENDPOINT_GOAL),
            load,
        ),
        figure(
            format!(
                "{count} image pushes ({kib} KiB layer), {CLIENTS} clients, endpoint down, \
                 manifests only"
            ),
            Unit::RequestsPerSecond,
            &got[8],
            Some(("no endpoint", &got[2])),
            Some(DEAD_ENDPOINT_GOAL),
            load,
        ),
    ])
}

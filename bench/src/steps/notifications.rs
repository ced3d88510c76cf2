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
use std::time::Instant;

use anyhow::{ensure, Context, Result};

use super::{figure, rotate, sync_disks, Ctx, LoadWatch, MIB};
use crate::data::{self, Image};
use crate::http;
use crate::procs::{self, Server};
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
    let flavor = |name: &str, endpoint: &str| {
        format!(
            "{name}:\n  storage: local\n  storage_path: _env:STORAGE_PATH\n  standalone: true\n\
             {endpoint}"
        )
    };
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
            flavor("plain", ""),
            flavor("hooked", &endpoint("dead", dead)),
            flavor("hanging", &endpoint("hanging", hanging_port)),
            // What most CI consumers ask for: an event an image, not three.
            flavor(
                "manifests",
                &format!(
                    "{}        ignoredmediatypes: [application/octet-stream]\n",
                    endpoint("manifests", dead)
                ),
            ),
        ]
        .concat(),
    )?;
    let start = |flavor: &str| -> Result<Server> {
        let storage = work.join(flavor);
        fs::create_dir_all(&storage)?;
        let env = [
            ("DOCKER_REGISTRY_CONFIG", config.display().to_string()),
            ("SETTINGS_FLAVOR", flavor.to_owned()),
            ("STORAGE_PATH", storage.display().to_string()),
            ("SEARCH_BACKEND", String::new()),
        ];
        procs::registry(&ctx.registry_bin, &env, &work)
    };
    let plain = start("plain")?;
    let hooked = start("hooked")?;
    let hung = start("hanging")?;
    let manifests = start("manifests")?;

    let (count, small, large) = if ctx.plan.smoke {
        (4, 64 * 1024, 2 * MIB)
    } else {
        (40, 256 * 1024, 64 * MIB)
    };
    let images = (0..count)
        .map(|i| {
            let layer = data::write_layer(&work.join(format!("small-{i}.bin")), small, 100 + i)?;
            data::image(&data::image_id(ctx.run_id, 100 + i), None, &layer)
        })
        .collect::<Result<Vec<Image>>>()?;
    let layer = data::write_layer(&work.join("large.bin"), large, 99)?;
    let big = data::image(&data::image_id(ctx.run_id, 99), None, &layer)?;

    // Images a second: `count` small images, each two blobs and a
    // manifest, pushed by `clients` clients at once (each its share).
    let small_pushes = |server: &Server, clients: usize| -> Result<f64> {
        sync_disks();
        let base = server.url("");
        let started = Instant::now();
        ctx.block_on(async {
            let pushers = (0..clients).map(|c| {
                let base = base.clone();
                let images = &images;
                async move {
                    for (i, image) in images.iter().enumerate().skip(c).step_by(clients) {
                        let tag = format!("s{i}");
                        let one = std::slice::from_ref(image);
                        http::v2_push_image(&ctx.client, &base, REPO, &tag, one).await?;
                    }
                    anyhow::Ok(())
                }
            });
            futures_util::future::try_join_all(pushers).await
        })?;
        Ok(count as f64 / started.elapsed().as_secs_f64())
    };
    // MB/s: one image with a large layer.
    let large_push = |server: &Server| -> Result<f64> {
        sync_disks();
        let base = server.url("");
        let started = Instant::now();
        ctx.block_on(http::v2_push_image(
            &ctx.client,
            &base,
            REPO,
            "large",
            std::slice::from_ref(&big),
        ))?;
        Ok(large as f64 / 1e6 / started.elapsed().as_secs_f64())
    };
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
    let per_run = count as usize * 3;
    check(
        "hooked/_notifications/dead/journal",
        runs * (2 * per_run + 3),
    )?;
    check(
        "hanging/_notifications/hanging/journal",
        runs * (per_run + 3),
    )?;
    check(
        "manifests/_notifications/manifests/journal",
        runs * count as usize,
    )?;
    let kib = small / 1024;
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
            format!("image push ({} MiB layer), endpoint down", large / MIB),
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
            format!("image push ({} MiB layer), endpoint hangs", large / MIB),
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

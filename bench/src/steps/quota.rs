//! Section 16: what quota accounting costs a push. Two registry-v1
//! processes on local storage, one without rules and one whose rule puts
//! every repository of the run under a quota far above what it pushes:
//! the same whole-image pushes through each, runs taking turns. Each run
//! pushes into repositories of its own, so that every push is charged
//! (markers looked up, blob sizes read, the usage swapped, markers
//! written), not just checked against markers an earlier run wrote.

use std::cell::Cell;
use std::fs;
use std::time::Instant;

use anyhow::{ensure, Result};

use super::{figure, rotate, sync_disks, Ctx, LoadWatch, MIB};
use crate::data::{self, Image};
use crate::http;
use crate::procs::{self, Server};
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
    let flavor = |name: &str, rules: &str| {
        format!(
            "{name}:\n  storage: local\n  storage_path: _env:STORAGE_PATH\n  standalone: true\n\
             {rules}"
        )
    };
    let config = work.join("config.yml");
    fs::write(
        &config,
        [
            flavor("plain", ""),
            flavor(
                "counted",
                "  rules:\n    - repositories: bench/**\n      quota: 1TiB\n",
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
    let counted = start("counted")?;

    let (count, small, large) = if ctx.plan.smoke {
        (4, 64 * 1024, 2 * MIB)
    } else {
        (40, 256 * 1024, 64 * MIB)
    };
    let images = (0..count)
        .map(|i| {
            let layer = data::write_layer(&work.join(format!("small-{i}.bin")), small, 300 + i)?;
            data::image(&data::image_id(ctx.run_id, 300 + i), None, &layer)
        })
        .collect::<Result<Vec<Image>>>()?;
    let layer = data::write_layer(&work.join("large.bin"), large, 299)?;
    let big = data::image(&data::image_id(ctx.run_id, 299), None, &layer)?;

    // A fresh repository name per measurement, the same for both servers.
    let plain_runs = Cell::new(0usize);
    let counted_runs = Cell::new(0usize);
    let next = |runs: &Cell<usize>| {
        runs.set(runs.get() + 1);
        runs.get()
    };
    // Images a second: `count` small images, each two blobs and a
    // manifest, pushed by `clients` clients at once (each its share, each
    // into a repository of its own).
    let small_pushes = |server: &Server, run: usize, clients: usize| -> Result<f64> {
        sync_disks();
        let base = server.url("");
        let started = Instant::now();
        ctx.block_on(async {
            let pushers = (0..clients).map(|c| {
                let base = base.clone();
                let images = &images;
                async move {
                    let repo = format!("bench/q{run}-{clients}-{c}");
                    for (i, image) in images.iter().enumerate().skip(c).step_by(clients) {
                        let one = std::slice::from_ref(image);
                        http::v2_push_image(&ctx.client, &base, &repo, &format!("s{i}"), one)
                            .await?;
                    }
                    anyhow::Ok(())
                }
            });
            futures_util::future::try_join_all(pushers).await
        })?;
        Ok(count as f64 / started.elapsed().as_secs_f64())
    };
    // MB/s: one image with a large layer.
    let large_push = |server: &Server, run: usize| -> Result<f64> {
        sync_disks();
        let base = server.url("");
        let started = Instant::now();
        ctx.block_on(http::v2_push_image(
            &ctx.client,
            &base,
            &format!("bench/large{run}"),
            "large",
            std::slice::from_ref(&big),
        ))?;
        Ok(large as f64 / 1e6 / started.elapsed().as_secs_f64())
    };
    let runs = if ctx.plan.smoke { 3 } else { 15 };
    let load = LoadWatch::start();
    let got = rotate(
        runs,
        &mut [
            &mut || small_pushes(&plain, next(&plain_runs), 1),
            &mut || small_pushes(&counted, next(&counted_runs), 1),
            &mut || small_pushes(&plain, next(&plain_runs), CLIENTS),
            &mut || small_pushes(&counted, next(&counted_runs), CLIENTS),
            &mut || large_push(&plain, next(&plain_runs)),
            &mut || large_push(&counted, next(&counted_runs)),
        ],
    )?;
    let load = load.end();

    // The quota was there and counted every push: each repository counts
    // its images whole (layer, and a config and manifest of under a KiB
    // each), none twice.
    let usage_dir = work.join("counted/_quotas");
    let mut used = 0;
    for entry in fs::read_dir(&usage_dir)? {
        let usage: serde_json::Value =
            serde_json::from_slice(&fs::read(entry?.path().join("usage"))?)?;
        used += usage["bytes"].as_u64().unwrap_or(0);
    }
    let small_layers: u64 = images.iter().map(|image| image.layer.size).sum();
    let layers = runs as u64 * (2 * small_layers + big.layer.size);
    let small_files = runs as u64 * (2 * count + 1) * 2 * 1024;
    ensure!(
        (layers..layers + small_files).contains(&used),
        "the quota counts {used} bytes, {layers} of layers and a little more were pushed"
    );
    ensure!(
        !work.join("plain/_quotas").exists(),
        "the server without rules keeps a usage"
    );
    let kib = small / 1024;
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
            format!("image push ({} MiB layer), under a quota", large / MIB),
            Unit::MegabytesPerSecond,
            &got[5],
            Some(("no quota", &got[4])),
            Some(QUOTA_GOAL),
            load,
        ),
    ])
}

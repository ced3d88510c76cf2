//! Section 7: pulls, pushes and small requests with the registry on S3
//! storage (moto's S3-compatible server on loopback), next to the same
//! objects read and written on that server directly.

use std::fs;
use std::time::Instant;

use anyhow::{ensure, Context, Result};

use super::layers::{pull_rows, verify_pull, PullPair};
use super::{figure, rotate, small_requests, Ctx, LoadWatch, MIB};
use crate::data;
use crate::http;
use crate::objects::{self, ObjectStore};
use crate::procs;
use crate::report::{Row, Section, Unit};

const BUCKET: &str = "registry-bench";
const REPO: &str = "bench/s3layers";

pub fn run(ctx: &Ctx, section: &mut Section) {
    super::on_s3(ctx, section, "S3", measure);
}

fn measure(ctx: &Ctx, section: &mut Section) -> Result<()> {
    let work = ctx.work.join("s3");
    fs::create_dir_all(&work)?;
    let moto = procs::moto(&work)?;
    let store = ctx.block_on(ObjectStore::create(moto.port, BUCKET))?;
    // The key prefix of the registry's objects. A path under the run's
    // folder: a build whose configuration ignores the S3 flavor (and so
    // stores on local disk) then writes nowhere else.
    let storage_path = work.join("registry-prefix").display().to_string();
    let env = [
        ("SETTINGS_FLAVOR", "s3".to_owned()),
        ("AWS_BUCKET", BUCKET.into()),
        ("AWS_KEY", objects::ACCESS_KEY.into()),
        ("AWS_SECRET", objects::SECRET_KEY.into()),
        ("AWS_REGION", objects::REGION.into()),
        ("AWS_HOST", "127.0.0.1".into()),
        ("AWS_PORT", moto.port.to_string()),
        ("AWS_SECURE", "false".into()),
        ("AWS_ENCRYPT", "false".into()),
        ("STORAGE_PATH", storage_path),
    ];
    let registry = match procs::registry(&ctx.registry_bin, &env, &work) {
        Ok(r) => r,
        Err(e) => {
            section.rows.push(Row::Skipped {
                step: "S3".into(),
                reason: format!(
                    "registry-v1 does not start on S3 storage in this build \
                     (`SETTINGS_FLAVOR=s3 AWS_BUCKET=... AWS_HOST=127.0.0.1 AWS_PORT=...`): {}",
                    first_line(&format!("{e:#}"))
                ),
            });
            return Ok(());
        }
    };
    let base = registry.url("");

    // Is S3 really in use? Push a small image and look for it in the bucket.
    let layer = data::write_layer(&work.join("layer.bin"), ctx.plan.s3_layer, 2)?;
    let pulled = data::image(&data::image_id(ctx.run_id, 2), None, &layer)?;
    let probe = ctx.block_on(async {
        let url = format!("{base}/v1/images/{}/json", pulled.id);
        let r = ctx
            .client
            .put(&url)
            .body(pulled.json.clone())
            .send()
            .await?;
        ensure!(r.status() == 200, "PUT json: {}", r.status());
        let keys = store.keys("").await?;
        anyhow::Ok(
            keys.iter()
                .any(|k| k.ends_with(&format!("images/{}/json", pulled.id))),
        )
    });
    match probe {
        Ok(true) => {}
        Ok(false) => {
            section.rows.push(Row::Skipped {
                step: "S3".into(),
                reason: "registry-v1 started with SETTINGS_FLAVOR=s3 but stored nothing in the \
                         bucket: this build has no S3 storage yet (configuration engine and S3 \
                         driver not merged)"
                    .into(),
            });
            return Ok(());
        }
        Err(e) => {
            section.rows.push(Row::Skipped {
                step: "S3".into(),
                reason: format!(
                    "registry-v1 on S3 storage refused a first image: {}",
                    first_line(&format!("{e:#}"))
                ),
            });
            return Ok(());
        }
    }

    // Set-up: the layer through the registry (tagged), and the same bytes
    // as a plain object.
    let prefix = ctx.block_on(async {
        let keys = store.keys("").await?;
        let key = keys
            .iter()
            .find(|k| k.ends_with(&format!("images/{}/json", pulled.id)))
            .context("probe image gone")?;
        anyhow::Ok(
            key.trim_end_matches(&format!("images/{}/json", pulled.id))
                .to_owned(),
        )
    })?;
    // The probe left the image in progress: remove it before the real push.
    ctx.block_on(store.delete_prefix(&format!("{prefix}images/{}/", pulled.id)))?;
    ctx.block_on(http::push_image(&ctx.client, &base, &pulled))
        .context("push to S3")?;
    let tags = ctx.block_on(http::tag_latest(&ctx.client, &base, REPO, &pulled))?;
    let raw_get = ctx.block_on(async {
        let put = store.put_url("raw/layer").await?;
        http::upload(&ctx.client, &put, &layer.path, layer.size).await?;
        store.put("raw/tags.json", &tags).await?;
        store.get_url("raw/layer").await
    })?;
    let raw_tags = ctx.block_on(store.get_url("raw/tags.json"))?;

    let registry_layer = format!("{base}/v1/images/{}/layer", pulled.id);
    let pair = PullPair {
        label: "S3: ",
        registry: &registry_layer,
        registry_server: &registry,
        baseline_name: "moto GET",
        baseline: &raw_get,
        baseline_server: &moto,
        size: layer.size,
    };
    let runs = ctx.plan.s3_reps;
    if ctx.plan.verify {
        section.step("S3: pulled bytes match", || {
            verify_pull(ctx, &pair, &layer.sha256)?;
            Ok(vec![])
        });
    }
    section.step(&format!("S3: pull {} MiB", layer.size / MIB), || {
        pull_rows(ctx, runs, &pair, None)
    });

    let pushed = data::image(&data::image_id(ctx.run_id, 3), None, &layer)?;
    section.step(&format!("S3: push {} MiB", layer.size / MIB), || {
        let load = LoadWatch::start();
        let mut n = 0;
        let mut raw_put = || -> Result<f64> {
            n += 1;
            let url = ctx.block_on(store.put_url(&format!("raw/put-{n}")))?;
            let start = Instant::now();
            ctx.block_on(http::upload(&ctx.client, &url, &layer.path, layer.size))?;
            let t = start.elapsed();
            ctx.block_on(store.delete_prefix(&format!("raw/put-{n}")))?;
            Ok(layer.size as f64 / t.as_secs_f64() / 1e6)
        };
        let mut push = || -> Result<f64> {
            let start = Instant::now();
            ctx.block_on(http::push_image(&ctx.client, &base, &pushed))?;
            let t = start.elapsed();
            ctx.block_on(store.delete_prefix(&format!("{prefix}images/{}/", pushed.id)))?;
            Ok(layer.size as f64 / t.as_secs_f64() / 1e6)
        };
        let got = rotate(runs, &mut [&mut raw_put, &mut push])?;
        Ok(vec![figure(
            "S3: push (json, layer, checksum)",
            Unit::MegabytesPerSecond,
            &got[1],
            Some(("moto PUT", &got[0])),
            None,
            load.end(),
        )])
    });

    let targets = [
        (
            "S3: GET tags",
            format!("{base}/v1/repositories/{REPO}/tags"),
        ),
        (
            "S3: GET image json",
            format!("{base}/v1/images/{}/json", pulled.id),
        ),
        ("S3: GET /v1/_ping", format!("{base}/v1/_ping")),
    ];
    section.step("S3: small requests", || {
        small_requests(
            ctx,
            runs,
            ctx.plan.s3_wrk_duration,
            ("moto GET of the tags object", &raw_tags, &moto),
            &registry,
            &targets,
            None,
        )
    });
    drop(registry);
    drop(moto);
    Ok(())
}

fn first_line(s: &str) -> String {
    s.lines()
        .filter(|l| !l.trim().is_empty())
        .take(3)
        .collect::<Vec<_>>()
        .join(" / ")
}

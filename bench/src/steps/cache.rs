//! Section 13: the Redis cache of small files on S3 storage (moto on
//! loopback). Two registry processes on the same bucket and prefix, one
//! with `cache` pointing at a redis-server of the run's own, one without:
//! the same small requests through each, wrk at each concurrency, runs
//! taking turns. What the cache saves is the S3 round trips of a request
//! (an image's json, a manifest's revision link and bytes).

use std::fs;

use anyhow::{ensure, Context, Result};

use super::{small_requests, Ctx};
use crate::data;
use crate::http;
use crate::objects::{self, ObjectStore};
use crate::procs;
use crate::report::{Goal, Section};

const BUCKET: &str = "registry-bench-cache";
const REPO: &str = "bench/cached";

/// "Should beat S3 round trips by a wide margin": twice the requests.
const CACHE_GOAL: Goal = Goal::RatioAtLeast(2.0);

pub fn run(ctx: &Ctx, section: &mut Section) {
    super::on_s3(ctx, section, "Redis cache on S3", measure);
}

fn measure(ctx: &Ctx, section: &mut Section) -> Result<()> {
    let work = ctx.work.join("cache");
    fs::create_dir_all(&work)?;
    let moto = procs::moto(&work)?;
    ctx.block_on(ObjectStore::create(moto.port, BUCKET))?;
    let redis = procs::redis(&work).context("redis-server (.ci/install-redis.sh)")?;
    let env = |cached: bool| {
        let mut env = vec![
            ("SETTINGS_FLAVOR", "s3".to_owned()),
            ("AWS_BUCKET", BUCKET.into()),
            ("AWS_KEY", objects::ACCESS_KEY.into()),
            ("AWS_SECRET", objects::SECRET_KEY.into()),
            ("AWS_REGION", objects::REGION.into()),
            ("AWS_HOST", "127.0.0.1".into()),
            ("AWS_PORT", moto.port.to_string()),
            ("AWS_SECURE", "false".into()),
            ("AWS_ENCRYPT", "false".into()),
            ("STORAGE_PATH", "/registry".into()),
            ("SEARCH_BACKEND", String::new()),
        ];
        if cached {
            env.push(("CACHE_REDIS_HOST", "127.0.0.1".into()));
            env.push(("CACHE_REDIS_PORT", redis.port.to_string()));
        }
        env
    };
    let plain = procs::registry(&ctx.registry_bin, &env(false), &work)?;
    let cached = procs::registry(&ctx.registry_bin, &env(true), &work)?;

    // One v1 image and one v2 image, pushed through the registry without
    // the cache (so the first reads through the other fill it).
    let layer = data::write_layer(&work.join("layer.bin"), 1 << 20, 11)?;
    let image = data::image(&data::image_id(ctx.run_id, 11), None, &layer)?;
    let base = plain.url("");
    ctx.block_on(http::push_image(&ctx.client, &base, &image))?;
    ctx.block_on(http::v2_push_image(
        &ctx.client,
        &base,
        REPO,
        "v1",
        std::slice::from_ref(&image),
    ))?;
    let digest = ctx.block_on(async {
        let resp = ctx
            .client
            .get(format!("{base}/v2/{REPO}/manifests/v1"))
            .header("Accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .await?;
        ensure!(resp.status() == 200, "GET manifest: {}", resp.status());
        resp.headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .context("no Docker-Content-Digest")
    })?;
    let paths = [
        ("GET image json", format!("/v1/images/{}/json", image.id)),
        (
            "GET manifest by digest",
            format!("/v2/{REPO}/manifests/{digest}"),
        ),
    ];
    for (name, path) in &paths {
        // Both answer the same, and the cached one has filled Redis.
        for server in [&plain, &cached] {
            let url = server.url(path);
            let status = ctx
                .block_on(async { ctx.client.get(&url).send().await })?
                .status();
            ensure!(status == 200, "GET {url}: {status}");
        }
        let baseline = plain.url(path);
        let target = [(format!("S3 + Redis cache: {name}"), cached.url(path))];
        let targets: Vec<(&str, String)> = target
            .iter()
            .map(|(n, u)| (n.as_str(), u.clone()))
            .collect();
        section.step(&format!("{name}, with and without the cache"), || {
            small_requests(
                ctx,
                ctx.plan.s3_reps,
                ctx.plan.s3_wrk_duration,
                ("S3, no cache", &baseline, &plain),
                &cached,
                &targets,
                Some(CACHE_GOAL),
            )
        });
    }
    Ok(())
}

//! Section 9: garbage collection on local storage. A v2 tree written
//! straight to disk in distribution's layout (10,000 manifests of a
//! config and 9 layers each, 100,000 blobs; half the manifests tagged,
//! half deleted), then `registry-v1 gc` on it while the registry serves:
//! how long the collection takes, and the latency of manifest pulls during
//! it against the same pulls with no collection running.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use super::{figure, Ctx, LoadWatch};
use crate::report::{Row, Section, Unit};

const ROOT: &str = "docker/registry/v2";
const REPOSITORIES: usize = 100;
const LAYERS: usize = 9;

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn write(path: &Path, data: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(path, data).with_context(|| format!("write {}", path.display()))
}

fn blob(storage: &Path, data: &[u8]) -> Result<String> {
    let hex = sha(data);
    write(
        &storage.join(format!("{ROOT}/blobs/sha256/{}/{hex}/data", &hex[..2])),
        data,
    )?;
    Ok(hex)
}

fn link(storage: &Path, path: &str, hex: &str) -> Result<()> {
    write(&storage.join(path), format!("sha256:{hex}").as_bytes())
}

/// The tree: manifest `i` lives in repository `i % 100`; even ones are
/// tagged `t<i>`, odd ones were deleted (their revision link is gone).
/// Returns the (repository, tag) of every kept manifest.
fn populate(storage: &Path, manifests: usize, run: u64) -> Result<Vec<(String, String)>> {
    let mut kept = Vec::new();
    for i in 0..manifests {
        let repo = format!("bench/r{}", i % REPOSITORIES);
        let base = format!("{ROOT}/repositories/{repo}");
        let mut layers = Vec::new();
        for j in 0..LAYERS {
            let data = format!("layer {run} {i} {j}");
            let hex = blob(storage, data.as_bytes())?;
            link(storage, &format!("{base}/_layers/sha256/{hex}/link"), &hex)?;
            layers.push(serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": format!("sha256:{hex}"), "size": data.len(),
            }));
        }
        let config = format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"n\":\"{run} {i}\"}}");
        let config_hex = blob(storage, config.as_bytes())?;
        link(
            storage,
            &format!("{base}/_layers/sha256/{config_hex}/link"),
            &config_hex,
        )?;
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": format!("sha256:{config_hex}"), "size": config.len()},
            "layers": layers,
        }))?;
        let hex = blob(storage, &manifest)?;
        if i % 2 == 0 {
            let tag = format!("t{i}");
            link(
                storage,
                &format!("{base}/_manifests/revisions/sha256/{hex}/link"),
                &hex,
            )?;
            link(
                storage,
                &format!("{base}/_manifests/tags/{tag}/index/sha256/{hex}/link"),
                &hex,
            )?;
            link(
                storage,
                &format!("{base}/_manifests/tags/{tag}/current/link"),
                &hex,
            )?;
            kept.push((repo, tag));
        }
    }
    Ok(kept)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

/// Manifest pulls one after another until `until` says stop; their
/// latencies in ms, sorted.
fn pulls(
    ctx: &Ctx,
    port: u16,
    kept: &[(String, String)],
    until: &mut dyn FnMut() -> bool,
) -> Result<Vec<f64>> {
    let mut latencies = Vec::new();
    let mut k = 0;
    while !until() {
        let (repo, tag) = &kept[k % kept.len()];
        k += 7919;
        let url = format!("http://127.0.0.1:{port}/v2/{repo}/manifests/{tag}");
        let started = Instant::now();
        let status = ctx.block_on(async {
            let resp = ctx
                .client
                .get(&url)
                .header("accept", "application/vnd.oci.image.manifest.v1+json")
                .send()
                .await?;
            let status = resp.status();
            resp.bytes().await?;
            Ok::<_, reqwest::Error>(status)
        })?;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        if status != 200 {
            bail!("GET {url}: {status} during the collection");
        }
    }
    latencies.sort_by(f64::total_cmp);
    Ok(latencies)
}

pub fn run(ctx: &Ctx, section: &mut Section) {
    section.step(
        "gc of 10,000 manifests / 100,000 blobs, and pulls during it",
        || {
            let manifests = if ctx.plan.smoke { 100 } else { 10_000 };
            let storage = ctx.work.join("gc-storage");
            let _ = fs::remove_dir_all(&storage);
            fs::create_dir_all(&storage)?;
            let started = Instant::now();
            let kept = populate(&storage, manifests, ctx.run_id)?;
            println!(
                "    {manifests} manifests, {} blobs written in {:.0} s",
                manifests * (LAYERS + 2),
                started.elapsed().as_secs_f64()
            );
            super::sync_disks();
            let storage_path = storage.to_string_lossy().into_owned();
            let env = [
                ("SETTINGS_FLAVOR", "dev".to_owned()),
                ("STORAGE_PATH", storage_path.clone()),
                ("SEARCH_BACKEND", String::new()),
            ];
            let server = crate::procs::registry(&ctx.registry_bin, &env, &ctx.work)?;
            let quiet = if ctx.plan.smoke { 1 } else { 5 };
            let deadline = Instant::now() + Duration::from_secs(quiet);
            let without = pulls(ctx, server.port, &kept, &mut || Instant::now() >= deadline)?;

            let load = LoadWatch::start();
            let mut gc = Command::new(&ctx.registry_bin);
            gc.args(["gc", "--grace-period", "0"])
                .env("SETTINGS_FLAVOR", "dev")
                .env("STORAGE_PATH", &storage_path)
                .env("SEARCH_BACKEND", "")
                .env("LOGLEVEL", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let started = Instant::now();
            let mut child = gc.spawn().context("start registry-v1 gc")?;
            let mut status = None;
            let during = pulls(ctx, server.port, &kept, &mut || {
                status = status.or_else(|| child.try_wait().ok().flatten());
                status.is_some()
            })?;
            let out = child.wait_with_output()?;
            let took = started.elapsed().as_secs_f64();
            let load = load.end();
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            if !out.status.success() {
                bail!(
                    "registry-v1 gc: {}\n{stdout}\n{}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let summary = stdout.lines().last().unwrap_or_default().to_owned();
            let expected = manifests / 2 * (LAYERS + 2);
            if !summary.contains(&format!(" {expected} blobs")) {
                bail!("expected {expected} blobs deleted: {summary}");
            }
            drop(server);
            Ok(vec![
                figure(
                    format!(
                        "gc: {expected} of {} blobs deleted",
                        manifests * (LAYERS + 2)
                    ),
                    Unit::Seconds,
                    &[took],
                    None,
                    None,
                    load,
                ),
                figure(
                    "manifest pull p50 during the gc",
                    Unit::Milliseconds,
                    &[percentile(&during, 0.5)],
                    Some(("no gc", &[percentile(&without, 0.5)])),
                    None,
                    load,
                ),
                figure(
                    "manifest pull p99 during the gc",
                    Unit::Milliseconds,
                    &[percentile(&during, 0.99)],
                    Some(("no gc", &[percentile(&without, 0.99)])),
                    None,
                    load,
                ),
                Row::Note {
                    step: "gc".into(),
                    text: format!(
                        "{summary}; {} pulls during it, {} without",
                        during.len(),
                        without.len()
                    ),
                },
            ])
        },
    );
}

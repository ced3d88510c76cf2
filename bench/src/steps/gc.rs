//! Section 9: garbage collection on local storage. A v2 tree written
//! straight to disk in distribution's layout (10,000 manifests of a
//! config and 9 layers each, 100,000 blobs; half the manifests tagged,
//! half deleted), then `registry-v1 gc` on it while the registry serves:
//! how long the collection takes, and the latency of manifest pulls during
//! it against the same pulls with no collection running. Then a retention
//! pass ([`retention`]): 10,000 repositories of 100 tags each under a
//! `keep_last: 10` rule, next to distribution's `garbage-collect` walking
//! the same tree.

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

/// Tags a repository holds in the retention figure, and what the rule keeps.
const TAGS: usize = 100;
const KEEP: usize = 10;
/// The manifests the tags of each repository point at (tag `j` at
/// manifest `j / 10`): the same 10 in every repository.
const MANIFESTS: usize = 10;

/// The tree of the retention figure: `repositories` repositories of
/// [`TAGS`] tags pushed a second apart a day ago (a tag's push time is
/// its link's modification time), each repository linking the [`MANIFESTS`] shared
/// manifests (a config and one layer each). Tags are written as
/// distribution's `current/link` alone: their history folders would
/// double the files and the collector reads none for retention.
fn populate_tags(storage: &Path, repositories: usize, run: u64) -> Result<()> {
    let mut manifests = Vec::new();
    for k in 0..MANIFESTS {
        let layer = format!("retention layer {run} {k}");
        let config = format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"k\":\"{run} {k}\"}}");
        let (layer_hex, config_hex) = (
            blob(storage, layer.as_bytes())?,
            blob(storage, config.as_bytes())?,
        );
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": format!("sha256:{config_hex}"), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": format!("sha256:{layer_hex}"), "size": layer.len()}],
        }))?;
        manifests.push((blob(storage, &manifest)?, config_hex, layer_hex));
    }
    let pushed = std::time::SystemTime::now() - Duration::from_secs(86_400);
    for r in 0..repositories {
        let base = format!("{ROOT}/repositories/keep/r{r}");
        for (manifest, config, layer) in &manifests {
            link(
                storage,
                &format!("{base}/_manifests/revisions/sha256/{manifest}/link"),
                manifest,
            )?;
            link(
                storage,
                &format!("{base}/_layers/sha256/{config}/link"),
                config,
            )?;
            link(
                storage,
                &format!("{base}/_layers/sha256/{layer}/link"),
                layer,
            )?;
        }
        for j in 0..TAGS {
            let (manifest, _, _) = &manifests[j / (TAGS / MANIFESTS)];
            let path = format!("{base}/_manifests/tags/t{j}/current/link");
            link(storage, &path, manifest)?;
            // A second apart: the disk's clock ticks coarser than a
            // burst of writes, and "the 10 most recent" needs an order.
            fs::File::options()
                .write(true)
                .open(storage.join(&path))?
                .set_modified(pushed + Duration::from_secs(j as u64))?;
        }
    }
    Ok(())
}

/// The retention figure: `registry-v1 gc --dry-run` (the walk, a stat of
/// every tag, the plan) and `gc` (which removes 90 tags and 9 manifests
/// of each repository, and the blobs only those named), against
/// distribution's `garbage-collect --dry-run` over the same tree (its
/// walk of every repository, tag and manifest; it has no retention).
pub fn retention(ctx: &Ctx, section: &mut Section) {
    section.step(
        "retention: 10,000 repositories of 100 tags, keep_last 10",
        || {
            let repositories = if ctx.plan.smoke { 20 } else { 10_000 };
            let storage = ctx.work.join("retention-storage");
            let _ = fs::remove_dir_all(&storage);
            fs::create_dir_all(&storage)?;
            let started = Instant::now();
            populate_tags(&storage, repositories, ctx.run_id)?;
            println!(
                "    {repositories} repositories of {TAGS} tags written in {:.0} s",
                started.elapsed().as_secs_f64()
            );
            super::sync_disks();
            let storage_path = storage.to_string_lossy().into_owned();
            let config = ctx.work.join("retention.yml");
            fs::write(
                &config,
                format!(
                    "retention:\n  storage: local\n  storage_path: {storage_path}\n  \
                     search_backend: ''\n  loglevel: warn\n  rules:\n    - repositories: keep/*\n      \
                     keep_last: {KEEP}\n"
                ),
            )?;
            let gc = |args: &[&str]| -> Result<(String, f64)> {
                let started = Instant::now();
                let out = Command::new(&ctx.registry_bin)
                    .args(["gc", "--grace-period", "0"])
                    .args(args)
                    .env("DOCKER_REGISTRY_CONFIG", &config)
                    .env("SETTINGS_FLAVOR", "retention")
                    .stdin(Stdio::null())
                    .output()
                    .context("run registry-v1 gc")?;
                let took = started.elapsed().as_secs_f64();
                let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
                if !out.status.success() {
                    bail!(
                        "registry-v1 gc {args:?}: {}\n{}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                Ok((stdout.lines().last().unwrap_or_default().to_owned(), took))
            };
            let removed = repositories * (TAGS - KEEP);
            let peer_config = ctx.work.join("retention-distribution.yml");
            fs::write(
                &peer_config,
                format!(
                    "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    \
                     rootdirectory: {storage_path}\n  delete:\n    enabled: true\nhttp:\n  \
                     addr: 127.0.0.1:{}\n",
                    crate::procs::free_port()?
                ),
            )?;
            let load = LoadWatch::start();
            let (dry, dry_took) = gc(&["--dry-run"])?;
            if !dry.contains(&format!("{removed} tags would be removed")) {
                bail!("expected {removed} tags to go: {dry}");
            }
            let peer_started = Instant::now();
            let peer = Command::new("docker-registry")
                .args(["garbage-collect", "--dry-run"])
                .arg(&peer_config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output()
                .context("run distribution's garbage-collect")?;
            let peer_took = peer_started.elapsed().as_secs_f64();
            if !peer.status.success() {
                bail!(
                    "distribution garbage-collect: {}",
                    String::from_utf8_lossy(&peer.stderr)
                );
            }
            let (real, took) = gc(&[])?;
            let load = load.end();
            let untagged = repositories * (MANIFESTS - 1);
            if !real.contains(&format!("{removed} tags removed"))
                || !real.contains(&format!(": {untagged} manifests"))
            {
                bail!("expected {removed} tags and {untagged} manifests removed: {real}");
            }
            let _ = fs::remove_dir_all(&storage);
            Ok(vec![
                super::figure_vs(
                    format!("retention plan (gc --dry-run): {removed} of {} tags", repositories * TAGS),
                    Unit::Seconds,
                    &[dry_took],
                    ("distribution garbage-collect --dry-run", &[peer_took]),
                    None,
                    None,
                    load,
                ),
                figure(
                    format!("retention pass (gc): {removed} tags removed"),
                    Unit::Seconds,
                    &[took],
                    None,
                    None,
                    load,
                ),
                Row::Note {
                    step: "retention".into(),
                    text: real,
                },
            ])
        },
    );
}

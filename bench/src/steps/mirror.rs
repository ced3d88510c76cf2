//! Section 14: the pull-through cache (issue 27) next to distribution's
//! proxy mode (2.8, `proxy: remoteurl:`), both in front of the same
//! upstream: a plain registry-v1 on loopback holding one image whose layer
//! is large. The upstream is also every figure's baseline: a pull straight
//! from it is what a pull through a cache is measured against, cold (the
//! cache fetches as it serves, a fresh cache each run) and warm (the cache
//! serves its own copy, which should cost what a local pull costs).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{ensure, Context, Result};

use super::layers::throughput_and_cpu;
use super::local::{PULL_GOAL, RSS_GOAL_MIB};
use super::v2::{image_of, wait_v2, OCI_MANIFEST, PEER};
use super::{figure_vs, rotate, socket_errors, timed_command, wrk_load, Ctx, LoadWatch, MIB};
use crate::data::{self, Layer};
use crate::http;
use crate::link::Link;
use crate::procs::{self, Server};
use crate::report::{Goal, Row, Section, Unit};
use crate::wrk;

/// The image's name at the upstream, and through both caches (which keep
/// the name the client asked for).
const REPO: &str = "bench/mirrored";

/// A cold pull should cost no more than a tenth over a direct one over the
/// same link: the cache hashes and writes while it forwards, it should not
/// wait on either.
const COLD_GOAL: Goal = Goal::RatioAtLeast(0.9);

/// The link of the second cold pull: a gigabit network, faster than most
/// links to Docker Hub and slower than sha256 on one core.
const LINK: &str = "1 Gbit/s";
const LINK_BYTES_PER_S: u64 = 125_000_000;

/// A manifest the cache holds should cost about what the plain registry's
/// own costs.
const MANIFEST_GOAL: Goal = Goal::RatioAtLeast(0.8);

/// Which cache a run goes through.
#[derive(Clone, Copy)]
enum Cache {
    Ours,
    Distribution,
}

/// The upstream and what it holds.
struct Upstream {
    server: Server,
    layer: Layer,
    /// The manifest's digest.
    digest: String,
}

/// Section 14.
pub fn run(ctx: &Ctx, section: &mut Section) {
    if let Err(e) = figures(ctx, section) {
        section.rows.push(Row::Failed {
            step: "pull-through cache set-up".into(),
            error: format!("{e:#}"),
        });
    }
}

/// Starts a cache of `kind` in front of `upstream` on an empty folder
/// `dir` (created here).
fn start_cache(ctx: &Ctx, kind: Cache, upstream: &str, dir: &Path) -> Result<Server> {
    fs::create_dir_all(dir)?;
    let storage = dir.join("storage");
    let server = match kind {
        Cache::Ours => procs::registry(
            &ctx.registry_bin,
            &[
                ("SETTINGS_FLAVOR", "dev".into()),
                ("STORAGE_PATH", storage.display().to_string()),
                ("MIRROR_SOURCE", upstream.to_owned()),
            ],
            dir,
        )?,
        Cache::Distribution => procs::distribution_with(
            &format!("  filesystem:\n    rootdirectory: {}", storage.display()),
            &format!("proxy:\n  remoteurl: {upstream}\n"),
            dir,
        )?,
    };
    wait_v2(ctx, &server)?;
    Ok(server)
}

fn setup(ctx: &Ctx, work: &Path) -> Result<Upstream> {
    let dir = work.join("upstream");
    fs::create_dir_all(&dir)?;
    println!(
        "writing a {} MiB layer for the upstream...",
        ctx.plan.mirror_layer / MIB
    );
    let layer = data::write_layer(&work.join("layer.bin"), ctx.plan.mirror_layer, 41)?;
    let server = procs::registry(
        &ctx.registry_bin,
        &[
            ("SETTINGS_FLAVOR", "dev".into()),
            ("STORAGE_PATH", dir.join("storage").display().to_string()),
        ],
        &dir,
    )?;
    wait_v2(ctx, &server)?;
    let (config, _, manifest) = image_of(&layer)?;
    let base = server.url("");
    let digest = ctx
        .block_on(async {
            http::v2_push_monolithic(&ctx.client, &base, REPO, &layer).await?;
            http::v2_push_bytes(&ctx.client, &base, REPO, &config).await?;
            http::v2_put_manifest(&ctx.client, &base, REPO, "latest", &manifest).await
        })
        .context("push the image to the upstream")?;
    Ok(Upstream {
        server,
        layer,
        digest,
    })
}

/// One whole v2 pull (manifest by tag, config, layer) from `base`: MB/s of
/// the layer, its bytes checked in smoke runs.
fn timed_pull(ctx: &Ctx, base: &str, size: u64) -> Result<f64> {
    let start = Instant::now();
    let (_, bytes) = ctx.block_on(http::v2_pull(
        &ctx.client,
        base,
        REPO,
        "latest",
        ctx.plan.verify,
    ))?;
    let elapsed = start.elapsed();
    ensure!(bytes == size, "pulled {bytes} bytes, expected {size}");
    Ok(size as f64 / elapsed.as_secs_f64() / 1e6)
}

/// What one cold pull through a fresh cache gave: MB/s, the cache's RSS
/// before the pull and its peak during it, KiB.
struct Cold {
    speed: f64,
    idle_kib: u64,
    peak_kib: u64,
}

/// A pull through a cache of `source` (a URL) started for it on an empty
/// folder, which goes again afterwards.
fn cold_pull(ctx: &Ctx, kind: Cache, source: &str, size: u64, dir: PathBuf) -> Result<Cold> {
    let cache = start_cache(ctx, kind, source, &dir)?;
    let idle_kib = cache.rss_kib()?;
    cache.reset_peak()?;
    let speed = timed_pull(ctx, &cache.url(""), size)
        .with_context(|| format!("cold pull through {}:\n{}", cache.name, cache.log_tail()))?;
    let peak_kib = cache.peak_rss_kib()?;
    drop(cache);
    fs::remove_dir_all(&dir).with_context(|| format!("remove {}", dir.display()))?;
    Ok(Cold {
        speed,
        idle_kib,
        peak_kib,
    })
}

/// How the caches and the direct pulls reach the upstream.
#[derive(Clone, Copy)]
enum Reach<'a> {
    /// Straight, on loopback: the pull is bound by the machine's CPU, shared
    /// by the client, the upstream and the cache, which must also hash,
    /// write and forward every byte; sha256 on one core (measured beside
    /// it) bounds a cache even where cores are free.
    Loopback,
    /// Through `link`, which passes answers on at `speed` (its name), as
    /// a network does: what a cache in front of a remote registry sees.
    Link { link: &'a Link, speed: &'a str },
}

fn cold_rows(ctx: &Ctx, work: &Path, upstream: &Upstream, reach: Reach) -> Result<Vec<Row>> {
    let size = upstream.layer.size;
    let (source, over) = match reach {
        Reach::Loopback => (upstream.server.url(""), String::new()),
        Reach::Link { link, speed } => (link.url(""), format!(", over a {speed} link")),
    };
    let source = source.as_str();
    let load = LoadWatch::start();
    let mut round = 0;
    let mut fresh = |name: &str| {
        round += 1;
        work.join(format!("cold-{name}-{round}"))
    };
    let (mut ours_dirs, mut dist_dirs) = (Vec::new(), Vec::new());
    for _ in 0..ctx.plan.reps {
        ours_dirs.push(fresh("ours"));
        dist_dirs.push(fresh("dist"));
    }
    let (mut ours_dirs, mut dist_dirs) = (ours_dirs.into_iter(), dist_dirs.into_iter());
    let mut d = || timed_pull(ctx, source, size).map(|s| (s, None));
    let mut o = || {
        let dir = ours_dirs.next().context("a cold run too many")?;
        cold_pull(ctx, Cache::Ours, source, size, dir).map(|c| (c.speed, Some(c)))
    };
    let mut p = || {
        let dir = dist_dirs.next().context("a cold run too many")?;
        cold_pull(ctx, Cache::Distribution, source, size, dir).map(|c| (c.speed, Some(c)))
    };
    let path = upstream.layer.path.display().to_string();
    let mut h = || -> Result<(f64, Option<Cold>)> {
        let (out, t) = timed_command("openssl", &["dgst", "-sha256", &path])?;
        ensure!(out.contains(&upstream.layer.sha256), "openssl: {out}");
        Ok((size as f64 / t.as_secs_f64() / 1e6, None))
    };
    let got = match reach {
        Reach::Loopback => rotate(ctx.plan.reps, &mut [&mut d, &mut o, &mut p, &mut h])?,
        Reach::Link { .. } => rotate(ctx.plan.reps, &mut [&mut d, &mut o, &mut p])?,
    };
    let load = load.end();
    let speed = |v: &[(f64, Option<Cold>)]| v.iter().map(|x| x.0).collect::<Vec<_>>();
    let mib = |v: &[(f64, Option<Cold>)], f: fn(&Cold) -> u64| {
        v.iter()
            .filter_map(|x| x.1.as_ref())
            .map(|c| f(c) as f64 / 1024.0)
            .collect::<Vec<_>>()
    };
    let name = format!(
        "cold pull through the cache ({} MiB layer, fresh cache each run{over})",
        size / MIB
    );
    let direct = format!("direct pull from the upstream{over}");
    let mut rows = vec![figure_vs(
        &name,
        Unit::MegabytesPerSecond,
        &speed(&got[1]),
        (PEER, &speed(&got[2])),
        Some((&direct, &speed(&got[0]))),
        // On loopback the direct pull is bound by nothing a cache could
        // match (see `Reach::Loopback`): the goal is the link's.
        matches!(reach, Reach::Link { .. }).then_some(COLD_GOAL),
        load,
    )];
    if let Reach::Loopback = reach {
        rows.push(figure_vs(
            format!("{name}: next to the hash it must compute"),
            Unit::MegabytesPerSecond,
            &speed(&got[1]),
            (PEER, &speed(&got[2])),
            Some(("openssl dgst -sha256 of the layer", &speed(&got[3]))),
            None,
            load,
        ));
    }
    rows.push(figure_vs(
        format!("cold pull{over}: peak RSS of the cache during the pull"),
        Unit::Mebibytes,
        &mib(&got[1], |c| c.peak_kib),
        (PEER, &mib(&got[2], |c| c.peak_kib)),
        Some(("its RSS before the pull", &mib(&got[1], |c| c.idle_kib))),
        Some(Goal::Below(RSS_GOAL_MIB)),
        load,
    ));
    Ok(rows)
}

/// Warm blob pulls: 1 client, N clients, the second half with `Range`;
/// each from the upstream (a plain local pull), our cache and
/// distribution's, in turn.
fn warm_rows(ctx: &Ctx, upstream: &Upstream, ours: &Server, dist: &Server) -> Result<Vec<Row>> {
    let size = upstream.layer.size;
    let path = format!("/v2/{REPO}/blobs/sha256:{}", upstream.layer.sha256);
    let sides = [&upstream.server, ours, dist];
    let mut rows = Vec::new();
    let cases = super::v2::pull_cases(ctx, size);
    for (name, clients, from) in cases {
        let expect = size - from.unwrap_or(0);
        let load = LoadWatch::start();
        let measure = |server: &Server| {
            let url = server.url(&path);
            throughput_and_cpu(server, expect * clients as u64, || {
                ctx.block_on(http::parallel_download(
                    &ctx.client,
                    &url,
                    clients,
                    from,
                    expect,
                ))
            })
        };
        let mut b = || measure(sides[0]);
        let mut o = || measure(sides[1]);
        let mut d = || measure(sides[2]);
        let got = rotate(ctx.plan.reps, &mut [&mut b, &mut o, &mut d])?;
        let load = load.end();
        let speed = |v: &[(f64, f64)]| v.iter().map(|x| x.0).collect::<Vec<_>>();
        let cpu = |v: &[(f64, f64)]| v.iter().map(|x| x.1).collect::<Vec<_>>();
        rows.push(figure_vs(
            format!("warm blob pull (cache hit), {name}"),
            Unit::MegabytesPerSecond,
            &speed(&got[1]),
            (PEER, &speed(&got[2])),
            Some(("plain registry-v1, local pull", &speed(&got[0]))),
            Some(PULL_GOAL),
            load,
        ));
        rows.push(figure_vs(
            format!("warm blob pull (cache hit), {name}: server CPU"),
            Unit::CpuMsPerGb,
            &cpu(&got[1]),
            (PEER, &cpu(&got[2])),
            Some(("plain registry-v1, local pull", &cpu(&got[0]))),
            None,
            load,
        ));
    }
    Ok(rows)
}

/// Manifests the caches hold, by tag and by digest, with wrk: each cache
/// next to the upstream answering the same request from its own storage.
fn manifest_rows(ctx: &Ctx, upstream: &Upstream, ours: &Server, dist: &Server) -> Result<Vec<Row>> {
    let request = wrk::Request {
        headers: vec![format!("Accept: {OCI_MANIFEST}")],
        script: None,
    };
    // Smoke runs check the step works, at one concurrency.
    let concurrency: Vec<usize> = if ctx.plan.smoke {
        vec![16]
    } else {
        ctx.plan.concurrency.clone()
    };
    let mut rows = Vec::new();
    for (name, reference) in [
        ("by tag", "latest"),
        ("by digest", upstream.digest.as_str()),
    ] {
        let path = format!("/v2/{REPO}/manifests/{reference}");
        for &c in &concurrency {
            let load = LoadWatch::start();
            let measure = |server: &Server| wrk_load(&server.url(&path), server, c, ctx, &request);
            let mut b = || measure(&upstream.server);
            let mut o = || measure(ours);
            let mut d = || measure(dist);
            let got = rotate(ctx.plan.reps, &mut [&mut b, &mut o, &mut d])?;
            let load = load.end();
            let rps =
                |r: &[(wrk::Load, f64)]| r.iter().map(|l| l.0.requests_per_s).collect::<Vec<_>>();
            let cpu = |r: &[(wrk::Load, f64)]| r.iter().map(|l| l.1).collect::<Vec<_>>();
            let base = "plain registry-v1, own manifest";
            rows.push(figure_vs(
                format!("GET manifest {name} (cache hit), {c} conn: throughput"),
                Unit::RequestsPerSecond,
                &rps(&got[1]),
                (PEER, &rps(&got[2])),
                Some((base, &rps(&got[0]))),
                Some(MANIFEST_GOAL),
                load,
            ));
            rows.push(figure_vs(
                format!("GET manifest {name} (cache hit), {c} conn: server CPU"),
                Unit::CpuUsPerRequest,
                &cpu(&got[1]),
                (PEER, &cpu(&got[2])),
                Some((base, &cpu(&got[0]))),
                None,
                load,
            ));
            for (who, r) in [("registry-v1", &got[1]), (PEER, &got[2])] {
                rows.extend(socket_errors(
                    format!("manifest {name}, {c} conn, {who}"),
                    r,
                ));
            }
        }
    }
    Ok(rows)
}

fn figures(ctx: &Ctx, section: &mut Section) -> Result<()> {
    let work = ctx.work.join("mirror");
    fs::create_dir_all(&work)?;
    let upstream = setup(ctx, &work)?;
    let size = upstream.layer.size;

    section.step(&format!("mirror: cold pull {} MiB", size / MIB), || {
        cold_rows(ctx, &work, &upstream, Reach::Loopback)
    });
    // The layer file served as openssl's input; the upstream has its copy.
    fs::remove_file(&upstream.layer.path)?;
    let link = Link::start(upstream.server.port, LINK_BYTES_PER_S)?;
    section.step(
        &format!("mirror: cold pull {} MiB over a {LINK} link", size / MIB),
        || {
            cold_rows(
                ctx,
                &work,
                &upstream,
                Reach::Link {
                    link: &link,
                    speed: LINK,
                },
            )
        },
    );
    drop(link);

    // The warm caches: filled by one pull each (checked byte for byte in
    // smoke runs), then kept for the rest of the section.
    let base = upstream.server.url("");
    let ours = start_cache(ctx, Cache::Ours, &base, &work.join("warm-ours"))?;
    let dist = start_cache(ctx, Cache::Distribution, &base, &work.join("warm-dist"))?;
    for cache in [&ours, &dist] {
        timed_pull(ctx, &cache.url(""), size)
            .with_context(|| format!("fill {}:\n{}", cache.name, cache.log_tail()))?;
    }
    section.step(&format!("mirror: warm pull {} MiB", size / MIB), || {
        warm_rows(ctx, &upstream, &ours, &dist)
    });
    section.step("mirror: manifests on cache hits", || {
        manifest_rows(ctx, &upstream, &ours, &dist)
    });
    for mut server in [ours, dist] {
        if let Err(e) = server.check_alive() {
            section.rows.push(Row::Failed {
                step: format!("{} still running", server.name),
                error: format!("{e:#}"),
            });
        }
    }
    Ok(())
}

//! Section 17: the web pages, as a person's browser gets them. One
//! registry-v1 on local storage holding 100,000 repositories (v1
//! repositories made through the API, each in the search index) and one
//! repository of 10,000 tags; each page's time to first byte and weight,
//! next to nginx sending the same bytes from a file (what no page can
//! beat), runs taking turns.

use std::fs;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};

use super::{figure, rotate, Ctx, LoadWatch};
use crate::http;
use crate::procs::{self, Server};
use crate::report::{Goal, Row, Section, Unit};

/// "Under 50 ms to first byte".
const TTFB_GOAL: Goal = Goal::Below(50.0);
/// "Under 100 KB per page".
const WEIGHT_GOAL: Goal = Goal::Below(100.0);
/// Requests in flight while the repositories and tags are made.
const SETUP_CONCURRENCY: usize = 8;

pub fn run(ctx: &Ctx, section: &mut Section) {
    section.step("web pages: time to first byte and weight", || measure(ctx));
}

fn measure(ctx: &Ctx) -> Result<Vec<Row>> {
    let (repositories, tags) = if ctx.plan.smoke {
        (500, 300)
    } else {
        (100_000, 10_000)
    };
    let work = ctx.work.join("web");
    let storage = work.join("storage");
    fs::create_dir_all(&storage)?;
    let env = [
        ("SETTINGS_FLAVOR", "dev".to_owned()),
        ("STORAGE_PATH", storage.display().to_string()),
        (
            "SQLALCHEMY_INDEX_DATABASE",
            format!("sqlite:///{}", work.join("search.db").display()),
        ),
    ];
    let registry = procs::registry(&ctx.registry_bin, &env, &work)?;
    let base = format!("http://127.0.0.1:{}", registry.port);
    let started = Instant::now();
    ctx.block_on(fill(ctx, &base, repositories, tags))?;
    let filled = started.elapsed();
    // The set-up keeps both cores busy for minutes: the figures wait for
    // the machine to be quiet again (the load column shows it).
    let quiet = settle(if ctx.plan.smoke { 0 } else { 180 });

    let pages = [
        ("repository list (50 of all)", "/".to_owned()),
        (
            "search as one types (a term of 11 repositories)",
            // repo-4999 and repo-49990 to repo-49999 (smoke: repo-24...).
            format!("/-/search?q=repo-{}", repositories / 20 - 1),
        ),
        (
            "repository of 10,000 tags, newest first",
            "/repository/bench/many".to_owned(),
        ),
        (
            "repository of 10,000 tags, by name, page 50",
            "/repository/bench/many?sort=name&page=50".to_owned(),
        ),
        ("an image", "/image/bench/many/t00001".to_owned()),
    ];
    // The same bytes, from files nginx sends.
    let files = work.join("nginx-root");
    fs::create_dir_all(&files)?;
    let mut sizes = Vec::new();
    let mut first_list_ms = 0.0;
    for (i, (_, path)) in pages.iter().enumerate() {
        let (ms, body) = ctx.block_on(get(ctx, &format!("{base}{path}")))?;
        if i == 0 {
            // No repository counted yet: every size read from storage.
            first_list_ms = ms;
        }
        ensure!(body.len() > 100, "{path}: a page of {} bytes", body.len());
        fs::write(files.join(format!("page{i}.html")), &body)?;
        sizes.push(body.len() as f64 / 1000.0);
    }
    let nginx = procs::nginx(&files, &work)?;

    let runs = if ctx.plan.smoke { 3 } else { 30 };
    let mut rows = vec![Row::Note {
        step: "set-up".into(),
        text: format!(
            "{repositories} repositories made through the v1 API (each indexed for search) and \
             {tags} tags of one image pushed through the v2 API in {:.0} s; the browser's \
             Accept header, one kept-alive connection, {runs} runs of each page taking turns \
             with nginx sending the page's bytes from a file. The list's first load, its 50 \
             sizes counted from storage: {first_list_ms:.1} ms; later loads count from what \
             the first one read. After the set-up, {quiet:.0} s waited for the 1-minute load \
             to fall under 1.",
            filled.as_secs_f64()
        ),
    }];
    for (i, (name, path)) in pages.iter().enumerate() {
        let ours = format!("{base}{path}");
        let theirs = format!("http://127.0.0.1:{}/page{i}.html", nginx.port);
        let load = LoadWatch::start();
        let got = rotate(
            runs,
            &mut [
                &mut || ctx.block_on(get(ctx, &ours)).map(|(ms, _)| ms),
                &mut || ctx.block_on(get(ctx, &theirs)).map(|(ms, _)| ms),
            ],
        )?;
        let load = load.end();
        rows.push(figure(
            format!("{name}: time to first byte"),
            Unit::Milliseconds,
            &got[0],
            Some(("nginx, the same bytes from a file", &got[1])),
            Some(TTFB_GOAL),
            load,
        ));
        rows.push(figure(
            format!(
                "{name}: page weight (HTML; script and style {} KB more, cached)",
                assets_kb(ctx, &registry)?
            ),
            Unit::Kilobytes,
            &[sizes[i]],
            None,
            Some(WEIGHT_GOAL),
            load,
        ));
    }
    drop(nginx);
    drop(registry);
    Ok(rows)
}

/// The script and the style sheet every page names, KB.
fn assets_kb(ctx: &Ctx, registry: &Server) -> Result<String> {
    let mut total = 0;
    for asset in ["/-/ui.js", "/-/ui.css"] {
        let url = format!("http://127.0.0.1:{}{asset}", registry.port);
        total += ctx.block_on(get(ctx, &url))?.1.len();
    }
    Ok(format!("{:.1}", total as f64 / 1000.0))
}

/// One page as a browser asks for it: the time to its first byte (the
/// answer's head), ms, and its body.
/// Waits, at most `limit` seconds, for the 1-minute load to fall under 1;
/// the seconds waited.
fn settle(limit: u64) -> f64 {
    let started = Instant::now();
    while started.elapsed().as_secs() < limit && crate::machine::load() >= 1.0 {
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
    started.elapsed().as_secs_f64()
}

async fn get(ctx: &Ctx, url: &str) -> Result<(f64, Vec<u8>)> {
    let started = Instant::now();
    let resp = ctx
        .client
        .get(url)
        .header(
            "Accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        )
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let ttfb = started.elapsed().as_secs_f64() * 1000.0;
    ensure!(resp.status() == 200, "GET {url}: {}", resp.status());
    let body = resp.bytes().await?.to_vec();
    Ok((ttfb, body))
}

/// `repositories` v1 repositories `bench-ns<k>/repo-<n>` and `tags` tags
/// `t<n>` of one image in `bench/many`.
async fn fill(ctx: &Ctx, base: &str, repositories: usize, tags: usize) -> Result<()> {
    let client = &ctx.client;
    stream::iter(0..repositories)
        .map(|n| async move {
            let url = format!("{base}/v1/repositories/bench-ns{}/repo-{n}/", n % 100);
            let resp = client
                .put(url)
                .header("Content-Type", "application/json")
                .body("[]")
                .send()
                .await?;
            ensure!(
                resp.status().is_success(),
                "PUT repository: {}",
                resp.status()
            );
            Ok(())
        })
        .buffer_unordered(SETUP_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;

    let layer = format!("web pages benchmark {}", ctx.run_id).into_bytes();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "created": "2026-12-01T00:00:00Z",
        "config": {"Cmd": ["/bin/true"], "Labels": {"org.example.bench": "web"}},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", hex::encode(Sha256::digest(&layer)))]},
        "history": [{"created_by": "ADD layer /"}],
    }))?;
    let repo = "bench/many";
    let config_digest = http::v2_push_bytes(client, base, repo, &config).await?;
    let layer_digest = http::v2_push_bytes(client, base, repo, &layer).await?;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()}],
    }))?;
    let manifest = &manifest;
    stream::iter(0..tags)
        .map(|n| async move {
            http::v2_put_manifest(client, base, repo, &format!("t{n:05}"), manifest).await
        })
        .buffer_unordered(SETUP_CONCURRENCY)
        .try_collect::<Vec<String>>()
        .await?;
    Ok(())
}

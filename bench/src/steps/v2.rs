//! Sections 10 and 11: the v2 API of registry-v1 next to distribution
//! (Debian's `docker-registry`, 2.8.2), both started here on loopback, each
//! on storage of its own, given the same blobs through the same client, the
//! runs of the two and of the figure's baseline taking turns.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};

use super::layers::throughput_and_cpu;
use super::local::{PULL_GOAL, PUSH_GOAL, RSS_GOAL_MIB, SMALL_GOAL};
use super::{
    figure, figure_vs, rotate, socket_errors, sync_disks, timed_command, wrk_load, Ctx, LoadWatch,
    MIB,
};
use crate::data::{self, Layer};
use crate::http;
use crate::objects::{self, ObjectStore};
use crate::procs::{self, Server};
use crate::report::{Goal, Row, Section, Unit};
use crate::wrk;

/// The peer's name in the tables (its version is in the machine section).
pub const PEER: &str = "distribution 2.8";

/// Where the pulled blob, the manifest and the tags are.
const REPO: &str = "bench/v2";
/// Where the timed pushes go (and are deleted from again).
const PUSH_REPO: &str = "bench/v2-push";
const EMPTY_BLOB: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
pub(super) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// The two registries of a section.
struct Both {
    ours: Server,
    dist: Server,
}

impl Both {
    fn servers(&self) -> [&Server; 2] {
        [&self.ours, &self.dist]
    }

    fn alive(&mut self, section: &mut Section) {
        for server in [&mut self.ours, &mut self.dist] {
            if let Err(e) = server.check_alive() {
                section.rows.push(Row::Failed {
                    step: format!("{} still running", server.name),
                    error: format!("{e:#}"),
                });
            }
        }
    }
}

/// `GET /v2/` answers 200 on both (distribution listens before it serves).
fn wait_ready(ctx: &Ctx, both: &Both) -> Result<()> {
    for server in both.servers() {
        wait_v2(ctx, server)?;
    }
    Ok(())
}

/// `GET /v2/` answers 200 on `server`.
pub(super) fn wait_v2(ctx: &Ctx, server: &Server) -> Result<()> {
    let url = server.url("/v2/");
    let deadline = Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let status = ctx.block_on(async { ctx.client.get(&url).send().await.map(|r| r.status()) });
        match status {
            Ok(s) if s == 200 => return Ok(()),
            _ if Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50))
            }
            other => bail!(
                "{}: GET /v2/: {other:?}\n{}",
                server.name,
                server.log_tail()
            ),
        }
    }
}

/// The image both registries hold: the pulled blob as its one layer, a
/// config, an OCI manifest tagged `latest`; and the empty blob (the
/// `HEAD` target: wrk cannot read a `HEAD` answer that announces a
/// length, and what a `HEAD` costs does not depend on the size).
struct Image {
    manifest: Vec<u8>,
    digest: String,
    /// The config blob: a few hundred bytes, the small blob every pull
    /// fetches (it once waited 40 ms on a kept-alive connection, see
    /// bench/findings.md).
    config_digest: String,
}

pub(super) fn image_of(layer: &Layer) -> Result<(Vec<u8>, String, Vec<u8>)> {
    let blob = format!("sha256:{}", layer.sha256);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [blob]},
    }))?;
    let config_digest = format!("sha256:{}", hex::encode(sha2_digest(&config)));
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": blob, "size": layer.size}],
    }))?;
    Ok((config, config_digest, manifest))
}

fn sha2_digest(data: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(data).to_vec()
}

/// `with_empty`: the empty blob too (local storage only: distribution 2.8
/// cannot store it on S3, where it completes a multipart upload of no
/// parts, which S3 refuses as malformed).
fn store_image(ctx: &Ctx, both: &Both, layer: &Layer, with_empty: bool) -> Result<Image> {
    let (config, config_digest, manifest) = image_of(layer)?;
    let mut digest = String::new();
    for server in both.servers() {
        let base = server.url("");
        digest = ctx
            .block_on(async {
                http::v2_push_monolithic(&ctx.client, &base, REPO, layer).await?;
                if with_empty {
                    http::v2_push_bytes(&ctx.client, &base, REPO, b"").await?;
                }
                http::v2_push_bytes(&ctx.client, &base, REPO, &config).await?;
                http::v2_put_manifest(&ctx.client, &base, REPO, "latest", &manifest).await
            })
            .with_context(|| format!("set-up push to {}", server.name))?;
    }
    Ok(Image {
        manifest,
        digest,
        config_digest,
    })
}

/// Where both registries keep a blob's bytes (the layout of distribution,
/// which registry-v1 shares).
fn blob_dir(storage: &Path, sha256: &str) -> PathBuf {
    blob_dir_of(storage, "sha256", sha256)
}

/// The same for a digest of any algorithm (`sha512` blobs sit beside).
fn blob_dir_of(storage: &Path, algorithm: &str, hex: &str) -> PathBuf {
    storage.join(format!(
        "docker/registry/v2/blobs/{algorithm}/{}/{hex}",
        &hex[..2]
    ))
}

/// `openssl dgst -<algorithm>` of a file, checked against `hex`: MB/s and
/// openssl's CPU per GB, the hashing limit of a push.
fn openssl_dgst(path: &Path, size: u64, algorithm: &str, hex: &str) -> Result<(f64, f64)> {
    let cpu0 = procs::waited_children_cpu_seconds();
    let path = path.display().to_string();
    let (out, t) = timed_command("openssl", &["dgst", &format!("-{algorithm}"), &path])?;
    let cpu = procs::waited_children_cpu_seconds() - cpu0;
    ensure!(out.contains(hex), "openssl dgst -{algorithm}: {out}");
    Ok((
        size as f64 / t.as_secs_f64() / 1e6,
        cpu * 1e3 / (size as f64 / 1e9),
    ))
}

/// The hex sha512 of a file, read in 1 MiB blocks.
fn sha512_hex(path: &Path) -> Result<String> {
    use sha2::Digest;
    use std::io::Read;
    let mut file = fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut hasher = sha2::Sha512::new();
    let mut block = vec![0u8; MIB as usize];
    loop {
        let n = file.read(&mut block)?;
        if n == 0 {
            break;
        }
        hasher.update(&block[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// One way a client hashes a chunked push: what its `POST` says, and the
/// digest its last `PUT` names.
struct Hashing<'a> {
    name: &'a str,
    post_query: &'a str,
    algorithm: &'a str,
    hex: &'a str,
}

/// One timed chunked push to registry-v1 hashed as `hashing` says, checked
/// with a `HEAD` of its digest, then deleted (API, then its bytes) so that
/// the next run writes it anew.
fn timed_hashed_push(
    ctx: &Ctx,
    server: &Server,
    storage: &Path,
    layer: &Layer,
    hashing: &Hashing,
) -> Result<(f64, f64)> {
    sync_disks();
    let base = server.url("");
    let digest = format!("{}:{}", hashing.algorithm, hashing.hex);
    let got = throughput_and_cpu(server, layer.size, || {
        let start = Instant::now();
        ctx.block_on(http::v2_push_chunked_as(
            &ctx.client,
            &base,
            PUSH_REPO,
            layer,
            ctx.plan.chunk,
            hashing.post_query,
            &digest,
        ))?;
        Ok(start.elapsed())
    })?;
    ctx.block_on(async {
        http::v2_check_blob(
            &ctx.client,
            &base,
            PUSH_REPO,
            &digest,
            layer.size,
            hashing.name,
        )
        .await?;
        http::v2_delete_blob(&ctx.client, &base, PUSH_REPO, &digest).await
    })?;
    let dir = blob_dir_of(storage, hashing.algorithm, hashing.hex);
    fs::remove_dir_all(&dir)
        .with_context(|| format!("remove {}", dir.display()))
        .map(|()| got)
}

/// The same chunked push of one blob hashed three ways (sha256, the
/// default; sha512 said at `POST`; sha512 said only at the last `PUT`, which
/// the registry verifies by reading the blob back), next to openssl's
/// sha256 and sha512 of the file: what a sha512 push costs, and that a
/// sha256 one pays nothing for it.
fn hashing_rows(ctx: &Ctx, server: &Server, storage: &Path, layer: &Layer) -> Result<Vec<Row>> {
    let sha512 = sha512_hex(&layer.path)?;
    let ways = [
        Hashing {
            name: "sha256 (the default)",
            post_query: "",
            algorithm: "sha256",
            hex: &layer.sha256,
        },
        Hashing {
            name: "sha512 declared at POST (?digest-algorithm=sha512)",
            post_query: "?digest-algorithm=sha512",
            algorithm: "sha512",
            hex: &sha512,
        },
        Hashing {
            name: "sha512 not declared (read back at the last PUT)",
            post_query: "",
            algorithm: "sha512",
            hex: &sha512,
        },
    ];
    let load = LoadWatch::start();
    let mut o256 = || openssl_dgst(&layer.path, layer.size, "sha256", &layer.sha256);
    let mut o512 = || openssl_dgst(&layer.path, layer.size, "sha512", &sha512);
    let mut p0 = || timed_hashed_push(ctx, server, storage, layer, &ways[0]);
    let mut p1 = || timed_hashed_push(ctx, server, storage, layer, &ways[1]);
    let mut p2 = || timed_hashed_push(ctx, server, storage, layer, &ways[2]);
    let got = rotate(
        ctx.plan.reps,
        &mut [&mut o256, &mut o512, &mut p0, &mut p1, &mut p2],
    )?;
    let load = load.end();
    let speed = |v: &[(f64, f64)]| v.iter().map(|x| x.0).collect::<Vec<_>>();
    let cpu = |v: &[(f64, f64)]| v.iter().map(|x| x.1).collect::<Vec<_>>();
    let chunks = format!("{} MiB PATCHes", ctx.plan.chunk / MIB);
    let mut rows = Vec::new();
    for (k, way) in ways.iter().enumerate() {
        let (baseline, b) = if way.algorithm == "sha256" {
            ("openssl dgst -sha256", 0)
        } else {
            ("openssl dgst -sha512", 1)
        };
        rows.push(figure(
            format!("chunked push ({chunks}), {}", way.name),
            Unit::MegabytesPerSecond,
            &speed(&got[k + 2]),
            Some((baseline, &speed(&got[b]))),
            None,
            load,
        ));
        rows.push(figure(
            format!("chunked push ({chunks}), {}: server CPU", way.name),
            Unit::CpuMsPerGb,
            &cpu(&got[k + 2]),
            Some((baseline, &cpu(&got[b]))),
            None,
            load,
        ));
    }
    Ok(rows)
}

/// The blob's bytes, pulled and checked, from each registry and from the
/// baseline (smoke runs).
fn verify_pulls(ctx: &Ctx, urls: &[String], layer: &Layer) -> Result<()> {
    for url in urls {
        ctx.block_on(http::download(
            &ctx.client,
            url,
            None,
            layer.size,
            Some(&layer.sha256),
        ))?;
    }
    Ok(())
}

/// The manifest by tag and by digest is the one pushed, from both.
fn verify_manifest(ctx: &Ctx, both: &Both, image: &Image) -> Result<()> {
    for server in both.servers() {
        for reference in ["latest", image.digest.as_str()] {
            let url = server.url(&format!("/v2/{REPO}/manifests/{reference}"));
            let body = ctx.block_on(async {
                let r = ctx
                    .client
                    .get(&url)
                    .header("Accept", OCI_MANIFEST)
                    .send()
                    .await?;
                ensure!(r.status() == 200, "GET {url}: {}", r.status());
                Ok(r.bytes().await?)
            })?;
            ensure!(
                body == image.manifest,
                "{}: GET {url}: another manifest",
                server.name
            );
        }
    }
    Ok(())
}

/// A URL and the server whose CPU it costs.
type Target<'a> = (String, &'a Server);

/// The same blob at the baseline and at both registries.
struct PullSides<'a> {
    /// Put before each figure's name (`S3: `), or empty.
    label: &'a str,
    baseline: (&'a str, Target<'a>),
    ours: Target<'a>,
    dist: Target<'a>,
    size: u64,
}

/// Blob pulls: 1 client, N clients, the second half with `Range`; each
/// from the baseline, registry-v1 and distribution in turn.
fn pull_rows(ctx: &Ctx, runs: usize, sides: &PullSides, goal: Option<Goal>) -> Result<Vec<Row>> {
    let PullSides {
        label,
        baseline,
        ours,
        dist,
        size,
    } = sides;
    let size = *size;
    let mut rows = Vec::new();
    let cases = pull_cases(ctx, size);
    for (name, clients, from) in cases {
        let expect = size - from.unwrap_or(0);
        let load = LoadWatch::start();
        let measure = |(url, server): &Target| {
            throughput_and_cpu(server, expect * clients as u64, || {
                ctx.block_on(http::parallel_download(
                    &ctx.client,
                    url,
                    clients,
                    from,
                    expect,
                ))
            })
        };
        let mut b = || measure(&baseline.1);
        let mut o = || measure(ours);
        let mut d = || measure(dist);
        let got = rotate(runs, &mut [&mut b, &mut o, &mut d])?;
        let load = load.end();
        let speed = |v: &[(f64, f64)]| v.iter().map(|x| x.0).collect::<Vec<_>>();
        let cpu = |v: &[(f64, f64)]| v.iter().map(|x| x.1).collect::<Vec<_>>();
        rows.push(figure_vs(
            format!("{label}blob pull, {name}"),
            Unit::MegabytesPerSecond,
            &speed(&got[1]),
            (PEER, &speed(&got[2])),
            Some((baseline.0, &speed(&got[0]))),
            goal,
            load,
        ));
        rows.push(figure_vs(
            format!("{label}blob pull, {name}: server CPU"),
            Unit::CpuMsPerGb,
            &cpu(&got[1]),
            (PEER, &cpu(&got[2])),
            Some((baseline.0, &cpu(&got[0]))),
            None,
            load,
        ));
    }
    Ok(rows)
}

/// What a timed push needs to know of one registry: the server, and how
/// to take the pushed blob's bytes away again after the API delete.
struct PushTarget<'a> {
    server: &'a Server,
    remove: Box<dyn Fn() -> Result<()> + 'a>,
}

/// One timed push (monolithic, or in `chunk`-byte PATCHes), checked with a
/// `HEAD`, then deleted so that the next run writes the blob anew.
fn timed_push(
    ctx: &Ctx,
    target: &PushTarget,
    layer: &Layer,
    chunk: Option<u64>,
    sync: bool,
) -> Result<(f64, f64)> {
    if sync {
        sync_disks();
    }
    let base = target.server.url("");
    let got = throughput_and_cpu(target.server, layer.size, || {
        let start = Instant::now();
        ctx.block_on(async {
            match chunk {
                None => http::v2_push_monolithic(&ctx.client, &base, PUSH_REPO, layer).await,
                Some(c) => http::v2_push_chunked(&ctx.client, &base, PUSH_REPO, layer, c).await,
            }
        })?;
        Ok(start.elapsed())
    })?;
    let digest = format!("sha256:{}", layer.sha256);
    ctx.block_on(async {
        http::v2_check_blob(
            &ctx.client,
            &base,
            PUSH_REPO,
            &digest,
            layer.size,
            target.server.name,
        )
        .await?;
        http::v2_delete_blob(&ctx.client, &base, PUSH_REPO, &digest).await
    })?;
    (target.remove)()?;
    Ok(got)
}

/// How the pushes of a section are run and named.
struct PushCase<'a> {
    runs: usize,
    /// Put before each figure's name (`S3: `), or empty.
    label: &'a str,
    baseline_name: &'a str,
    /// Flush the disks before each push (local storage).
    sync: bool,
    goal: Option<Goal>,
}

/// Blob pushes, monolithic and chunked, on both registries, next to a
/// baseline: MB/s and the server's CPU per GB.
fn push_rows(
    ctx: &Ctx,
    case: &PushCase,
    baseline: &mut dyn FnMut() -> Result<(f64, f64)>,
    targets: [&PushTarget; 2],
    layer: &Layer,
) -> Result<Vec<Row>> {
    let PushCase {
        runs,
        label,
        baseline_name,
        sync,
        goal,
    } = *case;
    let chunk = ctx.plan.chunk;
    let load = LoadWatch::start();
    let [ours, dist] = targets;
    let mut om = || timed_push(ctx, ours, layer, None, sync);
    let mut dm = || timed_push(ctx, dist, layer, None, sync);
    let mut oc = || timed_push(ctx, ours, layer, Some(chunk), sync);
    let mut dc = || timed_push(ctx, dist, layer, Some(chunk), sync);
    let got = rotate(runs, &mut [baseline, &mut om, &mut dm, &mut oc, &mut dc])?;
    let load = load.end();
    let speed = |v: &[(f64, f64)]| v.iter().map(|x| x.0).collect::<Vec<_>>();
    let cpu = |v: &[(f64, f64)]| v.iter().map(|x| x.1).collect::<Vec<_>>();
    let chunks = format!("in {} MiB PATCHes", chunk / MIB);
    let mut rows = Vec::new();
    for (kind, o, d) in [("monolithic", 1, 2), (chunks.as_str(), 3, 4)] {
        rows.push(figure_vs(
            format!("{label}blob push, {kind}"),
            Unit::MegabytesPerSecond,
            &speed(&got[o]),
            (PEER, &speed(&got[d])),
            Some((baseline_name, &speed(&got[0]))),
            goal,
            load,
        ));
        rows.push(figure_vs(
            format!("{label}blob push, {kind}: server CPU"),
            Unit::CpuMsPerGb,
            &cpu(&got[o]),
            (PEER, &cpu(&got[d])),
            Some((baseline_name, &cpu(&got[0]))),
            None,
            load,
        ));
    }
    Ok(rows)
}

type Measure<'a> = Box<dyn FnMut() -> Result<(wrk::Load, f64)> + 'a>;

/// A small request on both registries: its name, path, and whether it is
/// a `HEAD`.
struct Small {
    name: &'static str,
    path: String,
    head: bool,
}

/// Each small request on both registries at each concurrency, next to
/// nginx serving the manifest as a static file: requests/s (with the
/// goal), p99 latency, CPU per request.
fn small_rows(
    ctx: &Ctx,
    nginx: &Server,
    both: &Both,
    requests: &[Small],
    head_script: &Path,
) -> Result<Vec<Row>> {
    let get = wrk::Request {
        headers: vec![format!("Accept: {OCI_MANIFEST}")],
        script: None,
    };
    let head = wrk::Request {
        script: Some(head_script.to_owned()),
        ..get.clone()
    };
    let base_url = nginx.url("/manifest.json");
    let mut rows = Vec::new();
    for &c in &ctx.plan.concurrency {
        let load = LoadWatch::start();
        // Measure 0 is nginx, then for each request registry-v1 and
        // distribution.
        let mut jobs: Vec<(String, &Server, &wrk::Request)> = vec![(base_url.clone(), nginx, &get)];
        for r in requests {
            for server in both.servers() {
                jobs.push((
                    server.url(&r.path),
                    server,
                    if r.head { &head } else { &get },
                ));
            }
        }
        let mut closures: Vec<Measure> = jobs
            .iter()
            .map(|(url, server, req)| {
                Box::new(move || wrk_load(url, server, c, ctx, req)) as Measure
            })
            .collect();
        let mut refs: Vec<&mut dyn FnMut() -> Result<(wrk::Load, f64)>> =
            closures.iter_mut().map(|b| &mut **b as _).collect();
        let results = rotate(ctx.plan.reps, &mut refs)?;
        let load = load.end();
        let rps = |r: &[(wrk::Load, f64)]| r.iter().map(|l| l.0.requests_per_s).collect::<Vec<_>>();
        let p99 = |r: &[(wrk::Load, f64)]| r.iter().map(|l| l.0.p99_ms).collect::<Vec<_>>();
        let cpu = |r: &[(wrk::Load, f64)]| r.iter().map(|l| l.1).collect::<Vec<_>>();
        let base = &results[0];
        let bname = "nginx static manifest";
        for (i, r) in requests.iter().enumerate() {
            let (o, d) = (&results[1 + 2 * i], &results[2 + 2 * i]);
            let name = r.name;
            rows.push(figure_vs(
                format!("{name}, {c} conn: throughput"),
                Unit::RequestsPerSecond,
                &rps(o),
                (PEER, &rps(d)),
                Some((bname, &rps(base))),
                Some(SMALL_GOAL),
                load,
            ));
            rows.push(figure_vs(
                format!("{name}, {c} conn: p99 latency"),
                Unit::Milliseconds,
                &p99(o),
                (PEER, &p99(d)),
                Some((bname, &p99(base))),
                None,
                load,
            ));
            rows.push(figure_vs(
                format!("{name}, {c} conn: server CPU"),
                Unit::CpuUsPerRequest,
                &cpu(o),
                (PEER, &cpu(d)),
                Some((bname, &cpu(base))),
                None,
                load,
            ));
            for (who, res) in [("registry-v1", o), ("distribution", d)] {
                rows.extend(socket_errors(format!("{name}, {c} conn, {who}"), res));
            }
        }
    }
    Ok(rows)
}

/// An OCI image layout of `n` layers of `each` random bytes (distinct for
/// each `seed`), tagged `latest`: what skopeo pushes.
fn oci_layout(dir: &Path, n: usize, each: u64, seed: u64) -> Result<()> {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs)?;
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let mut layers = Vec::new();
    for i in 0..n {
        let tmp = dir.join("layer.tmp");
        let layer = data::write_layer(&tmp, each, seed * 1000 + i as u64)?;
        fs::rename(&tmp, blobs.join(&layer.sha256))?;
        layers.push(layer);
    }
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| format!("sha256:{}", l.sha256))
        .collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))?;
    let put = |bytes: &[u8]| -> Result<String> {
        let hex = hex::encode(sha2_digest(bytes));
        fs::write(blobs.join(&hex), bytes)?;
        Ok(format!("sha256:{hex}"))
    };
    let config_digest = put(&config)?;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config.len()},
        "layers": layers.iter().map(|l| serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": format!("sha256:{}", l.sha256), "size": l.size,
        })).collect::<Vec<_>>(),
    }))?;
    let manifest_digest = put(&manifest)?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": manifest_digest,
                       "size": manifest.len(),
                       "annotations": {"org.opencontainers.image.ref.name": "latest"}}],
    });
    fs::write(dir.join("index.json"), serde_json::to_vec(&index)?)?;
    Ok(())
}

/// `skopeo copy`, timed. `--preserve-digests` keeps skopeo from gzipping
/// the (uncompressed, random) layers on the way, which would make its own
/// CPU the figure.
fn skopeo_copy(from: &str, to: &str) -> Result<f64> {
    let (_, t) = timed_command(
        "skopeo",
        &[
            "--insecure-policy",
            "copy",
            "--quiet",
            "--preserve-digests",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            from,
            to,
        ],
    )?;
    Ok(t.as_secs_f64())
}

/// A whole image push and pull with skopeo, on both registries, next to
/// skopeo copying the same layout to a folder without any registry.
fn skopeo_rows(ctx: &Ctx, work: &Path, both: &Both) -> Result<Vec<Row>> {
    let n = ctx.plan.repo_images;
    let each = ctx.plan.repo_layer;
    let dir = work.join("skopeo");
    fs::create_dir_all(&dir)?;
    let reference = dir.join("layout-0");
    oci_layout(&reference, n, each, 300)?;
    let reference_src = format!("oci:{}:latest", reference.display());
    let out = dir.join("out");
    let copy_out = |from: &str| -> Result<f64> {
        let _ = fs::remove_dir_all(&out);
        let t = skopeo_copy(from, &format!("dir:{}", out.display()))?;
        fs::remove_dir_all(&out)?;
        Ok(t)
    };
    // Every push is of new layers (a fresh layout each run): skopeo
    // remembers where it pushed a blob and would mount it instead.
    let seed = std::cell::Cell::new(300u64);
    let pushed: [std::cell::RefCell<Vec<String>>; 2] = Default::default();
    let push = |k: usize| -> Result<f64> {
        seed.set(seed.get() + 1);
        let layout = dir.join(format!("layout-{}", seed.get()));
        oci_layout(&layout, n, each, seed.get())?;
        let repo = format!("bench/skopeo-{}", seed.get());
        let to = format!(
            "docker://127.0.0.1:{}/{repo}:latest",
            both.servers()[k].port
        );
        sync_disks();
        let t = skopeo_copy(&format!("oci:{}:latest", layout.display()), &to)?;
        fs::remove_dir_all(&layout)?;
        pushed[k].borrow_mut().push(repo);
        Ok(t)
    };
    let load = LoadWatch::start();
    let mut base = || {
        sync_disks();
        copy_out(&reference_src)
    };
    let mut o = || push(0);
    let mut d = || push(1);
    let pushes = rotate(ctx.plan.reps, &mut [&mut base, &mut o, &mut d])?;
    let push_load = load.end();
    let next = [std::cell::Cell::new(0usize), std::cell::Cell::new(0usize)];
    let pull = |k: usize| -> Result<f64> {
        let repo = {
            let list = pushed[k].borrow();
            list[next[k].get() % list.len()].clone()
        };
        next[k].set(next[k].get() + 1);
        let from = format!(
            "docker://127.0.0.1:{}/{repo}:latest",
            both.servers()[k].port
        );
        copy_out(&from)
    };
    let load = LoadWatch::start();
    let mut base = || copy_out(&reference_src);
    let mut o = || pull(0);
    let mut d = || pull(1);
    let pulls = rotate(ctx.plan.reps, &mut [&mut base, &mut o, &mut d])?;
    let total = n as u64 * each / MIB;
    let bname = "skopeo copy of the layout to a folder (no registry)";
    Ok(vec![
        figure_vs(
            format!("skopeo push, {n} layers, {total} MiB: wall time"),
            Unit::Seconds,
            &pushes[1],
            (PEER, &pushes[2]),
            Some((bname, &pushes[0])),
            None,
            push_load,
        ),
        figure_vs(
            format!("skopeo pull, {n} layers, {total} MiB: wall time"),
            Unit::Seconds,
            &pulls[1],
            (PEER, &pulls[2]),
            Some((bname, &pulls[0])),
            None,
            load.end(),
        ),
    ])
}

/// Section 10.
pub fn local(ctx: &Ctx, section: &mut Section) {
    if let Err(e) = local_figures(ctx, section) {
        section.rows.push(Row::Failed {
            step: "v2 set-up".into(),
            error: format!("{e:#}"),
        });
    }
}

fn local_figures(ctx: &Ctx, section: &mut Section) -> Result<()> {
    let work = ctx.work.join("v2");
    let ours_dir = work.join("registry-v1");
    let dist_dir = work.join("distribution");
    let www = work.join("www");
    for d in [&ours_dir, &dist_dir, &www, &work.join("nginx")] {
        fs::create_dir_all(d)?;
    }
    let (ours_storage, dist_storage) = (ours_dir.join("storage"), dist_dir.join("storage"));
    println!("writing two {} MiB blobs...", ctx.plan.layer / MIB);
    let pulled = data::write_layer(&work.join("pulled.bin"), ctx.plan.layer, 21)?;
    let pushed = data::write_layer(&work.join("pushed.bin"), ctx.plan.layer, 22)?;
    let ours = procs::registry(
        &ctx.registry_bin,
        &[
            ("SETTINGS_FLAVOR", "dev".into()),
            ("STORAGE_PATH", ours_storage.display().to_string()),
        ],
        &ours_dir,
    )?;
    let dist = procs::distribution(
        &format!(
            "  filesystem:\n    rootdirectory: {}",
            dist_storage.display()
        ),
        &dist_dir,
    )?;
    let mut both = Both { ours, dist };
    wait_ready(ctx, &both)?;
    let idle = [both.ours.rss_kib()?, both.dist.rss_kib()?];
    for s in both.servers() {
        s.reset_peak()?;
    }
    let rss_load = crate::machine::load();

    let image = store_image(ctx, &both, &pulled, true)?;
    let stored = blob_dir(&ours_storage, &pulled.sha256).join("data");
    ensure!(
        stored.is_file(),
        "registry-v1 did not store the blob at {}",
        stored.display()
    );
    // nginx serves registry-v1's own copy of the blob (the same inode).
    if fs::hard_link(&stored, www.join("blob")).is_err() {
        fs::copy(&stored, www.join("blob"))?;
    }
    fs::write(www.join("manifest.json"), &image.manifest)?;
    let nginx = procs::nginx(&www, &work.join("nginx"))?;
    let blob_path = format!("/v2/{REPO}/blobs/sha256:{}", pulled.sha256);

    if ctx.plan.verify {
        section.step("v2: pulled bytes and manifests match", || {
            let urls = [
                both.ours.url(&blob_path),
                both.dist.url(&blob_path),
                nginx.url("/blob"),
            ];
            verify_pulls(ctx, &urls, &pulled)?;
            verify_manifest(ctx, &both, &image)?;
            Ok(vec![])
        });
    }
    section.step(&format!("v2: blob pull {} MiB", pulled.size / MIB), || {
        let sides = PullSides {
            label: "",
            baseline: ("nginx sendfile", (nginx.url("/blob"), &nginx)),
            ours: (both.ours.url(&blob_path), &both.ours),
            dist: (both.dist.url(&blob_path), &both.dist),
            size: pulled.size,
        };
        pull_rows(ctx, ctx.plan.reps, &sides, Some(PULL_GOAL))
    });
    both.alive(section);

    section.step(&format!("v2: blob push {} MiB", pushed.size / MIB), || {
        let mut openssl = || openssl_dgst(&pushed.path, pushed.size, "sha256", &pushed.sha256);
        let remove = |storage: &Path| {
            let dir = blob_dir(storage, &pushed.sha256);
            fs::remove_dir_all(&dir).with_context(|| format!("remove {}", dir.display()))
        };
        let ours = PushTarget {
            server: &both.ours,
            remove: Box::new(|| remove(&ours_storage)),
        };
        let dist = PushTarget {
            server: &both.dist,
            remove: Box::new(|| remove(&dist_storage)),
        };
        let case = PushCase {
            runs: ctx.plan.reps,
            label: "",
            baseline_name: "openssl dgst -sha256",
            sync: true,
            goal: Some(PUSH_GOAL),
        };
        push_rows(ctx, &case, &mut openssl, [&ours, &dist], &pushed)
    });
    both.alive(section);

    section.step(
        &format!(
            "v2: chunked push {} MiB, sha256 and sha512 (registry-v1)",
            pushed.size / MIB
        ),
        || hashing_rows(ctx, &both.ours, &ours_storage, &pushed),
    );
    both.alive(section);

    let head_script = work.join("head.lua");
    fs::write(&head_script, "wrk.method = \"HEAD\"\n")?;
    let requests = [
        Small {
            name: "GET manifest by tag",
            path: format!("/v2/{REPO}/manifests/latest"),
            head: false,
        },
        Small {
            name: "GET manifest by digest",
            path: format!("/v2/{REPO}/manifests/{}", image.digest),
            head: false,
        },
        Small {
            name: "GET tags list",
            path: format!("/v2/{REPO}/tags/list"),
            head: false,
        },
        Small {
            name: "GET config blob",
            path: format!("/v2/{REPO}/blobs/{}", image.config_digest),
            head: false,
        },
        Small {
            name: "HEAD blob",
            path: format!("/v2/{REPO}/blobs/{EMPTY_BLOB}"),
            head: true,
        },
    ];
    section.step("v2: small requests", || {
        // The pushes' writeback (journal, freed blocks) lands here otherwise.
        sync_disks();
        small_rows(ctx, &nginx, &both, &requests, &head_script)
    });
    both.alive(section);

    section.step("v2: skopeo image push and pull", || {
        skopeo_rows(ctx, &work, &both)
    });
    both.alive(section);

    let mib = |kib: u64| kib as f64 / 1024.0;
    section.step("v2: memory", || {
        let peak = [both.ours.peak_rss_kib()?, both.dist.peak_rss_kib()?];
        let now = [both.ours.rss_kib()?, both.dist.rss_kib()?];
        let none = (f64::NAN, f64::NAN);
        Ok(vec![
            figure_vs(
                "RSS at idle (after start)",
                Unit::Mebibytes,
                &[mib(idle[0])],
                (PEER, &[mib(idle[1])]),
                None,
                None,
                none,
            ),
            figure_vs(
                format!(
                    "peak RSS over this section ({} MiB blobs)",
                    ctx.plan.layer / MIB
                ),
                Unit::Mebibytes,
                &[mib(peak[0])],
                (PEER, &[mib(peak[1])]),
                None,
                Some(Goal::Below(RSS_GOAL_MIB)),
                (rss_load, crate::machine::load()),
            ),
            figure_vs(
                "RSS at idle again (after all of it)",
                Unit::Mebibytes,
                &[mib(now[0])],
                (PEER, &[mib(now[1])]),
                None,
                None,
                none,
            ),
        ])
    });
    drop(nginx);
    Ok(())
}

/// Section 11: blob pulls and pushes with both registries on S3 (moto),
/// each in a bucket of its own, next to moto's own GET and PUT.
pub fn s3(ctx: &Ctx, section: &mut Section) {
    super::on_s3(ctx, section, "v2 on S3", s3_figures);
}

fn s3_figures(ctx: &Ctx, section: &mut Section) -> Result<()> {
    let work = ctx.work.join("v2-s3");
    let (ours_dir, dist_dir) = (work.join("registry-v1"), work.join("distribution"));
    for d in [&ours_dir, &dist_dir] {
        fs::create_dir_all(d)?;
    }
    let moto = procs::moto(&work)?;
    let ours_store = ctx.block_on(ObjectStore::create(moto.port, "bench-v2-registry-v1"))?;
    let dist_store = ctx.block_on(ObjectStore::create(moto.port, "bench-v2-distribution"))?;
    let env = [
        ("SETTINGS_FLAVOR", "s3".to_owned()),
        ("AWS_BUCKET", "bench-v2-registry-v1".into()),
        ("AWS_KEY", objects::ACCESS_KEY.into()),
        ("AWS_SECRET", objects::SECRET_KEY.into()),
        ("AWS_REGION", objects::REGION.into()),
        ("AWS_HOST", "127.0.0.1".into()),
        ("AWS_PORT", moto.port.to_string()),
        ("AWS_SECURE", "false".into()),
        ("AWS_ENCRYPT", "false".into()),
        // A path under the run's folder, as in section 7: a build that
        // ignored the S3 flavor would write nowhere else.
        (
            "STORAGE_PATH",
            ours_dir.join("registry-prefix").display().to_string(),
        ),
    ];
    let ours = procs::registry(&ctx.registry_bin, &env, &ours_dir)?;
    let dist = procs::distribution(
        &format!(
            "  s3:
    accesskey: {key}
    secretkey: {secret}
    region: {region}
    regionendpoint: http://127.0.0.1:{port}
    bucket: bench-v2-distribution
    secure: false
    v4auth: true
    rootdirectory: /distribution",
            key = objects::ACCESS_KEY,
            secret = objects::SECRET_KEY,
            region = objects::REGION,
            port = moto.port
        ),
        &dist_dir,
    )?;
    let mut both = Both { ours, dist };
    wait_ready(ctx, &both)?;
    let pulled = data::write_layer(&work.join("pulled.bin"), ctx.plan.s3_layer, 31)?;
    let pushed = data::write_layer(&work.join("pushed.bin"), ctx.plan.s3_layer, 32)?;
    store_image(ctx, &both, &pulled, false)?;
    // Both really on S3: the blob's bytes are in each bucket.
    for (store, who) in [(&ours_store, "registry-v1"), (&dist_store, "distribution")] {
        let keys = ctx.block_on(store.keys(""))?;
        ensure!(
            keys.iter().any(|k| k.contains(&format!(
                "blobs/sha256/{}/{}/data",
                &pulled.sha256[..2],
                pulled.sha256
            ))),
            "{who} stored no blob in its bucket"
        );
    }
    let raw_get = ctx.block_on(async {
        let put = ours_store.put_url("raw/blob").await?;
        http::upload(&ctx.client, &put, &pulled.path, pulled.size).await?;
        ours_store.get_url("raw/blob").await
    })?;
    let blob_path = format!("/v2/{REPO}/blobs/sha256:{}", pulled.sha256);
    let runs = ctx.plan.s3_reps;
    if ctx.plan.verify {
        section.step("S3: pulled bytes match", || {
            verify_pulls(
                ctx,
                &[
                    both.ours.url(&blob_path),
                    both.dist.url(&blob_path),
                    raw_get.clone(),
                ],
                &pulled,
            )?;
            Ok(vec![])
        });
    }
    section.step(&format!("S3: blob pull {} MiB", pulled.size / MIB), || {
        let sides = PullSides {
            label: "S3: ",
            baseline: ("moto GET", (raw_get.clone(), &moto)),
            ours: (both.ours.url(&blob_path), &both.ours),
            dist: (both.dist.url(&blob_path), &both.dist),
            size: pulled.size,
        };
        pull_rows(ctx, runs, &sides, None)
    });
    both.alive(section);

    section.step(&format!("S3: blob push {} MiB", pushed.size / MIB), || {
        let mut n = 0;
        let mut raw_put = || -> Result<(f64, f64)> {
            n += 1;
            let key = format!("raw/put-{n}");
            let url = ctx.block_on(ours_store.put_url(&key))?;
            let got = throughput_and_cpu(&moto, pushed.size, || {
                let start = Instant::now();
                ctx.block_on(http::upload(&ctx.client, &url, &pushed.path, pushed.size))?;
                Ok(start.elapsed())
            })?;
            ctx.block_on(ours_store.delete_prefix(&key))?;
            Ok(got)
        };
        let blob_keys = format!("blobs/sha256/{}/{}/", &pushed.sha256[..2], pushed.sha256);
        let remove = |store: &ObjectStore| -> Result<()> {
            ctx.block_on(async {
                for key in store.keys("").await? {
                    if key.contains(&blob_keys) {
                        store.delete_prefix(&key).await?;
                    }
                }
                anyhow::Ok(())
            })
        };
        let ours = PushTarget {
            server: &both.ours,
            remove: Box::new(|| remove(&ours_store)),
        };
        let dist = PushTarget {
            server: &both.dist,
            remove: Box::new(|| remove(&dist_store)),
        };
        let case = PushCase {
            runs,
            label: "S3: ",
            baseline_name: "moto PUT",
            sync: false,
            goal: None,
        };
        push_rows(ctx, &case, &mut raw_put, [&ours, &dist], &pushed)
    });
    both.alive(section);
    drop(both);
    drop(moto);
    Ok(())
}

/// Section 18: blob pulls and pushes with both registries on OpenStack
/// Swift (the tests' one-node Swift, Debian's servers, on loopback), each
/// in a container of its own, next to Swift's own GET and PUT of the same
/// bytes (temp URLs). Section 11 measures the same on S3 (moto).
pub fn swift(ctx: &Ctx, section: &mut Section) {
    if !Path::new("/usr/bin/swift-proxy-server").exists() {
        section.rows.push(Row::Skipped {
            step: "v2 on Swift".into(),
            reason: "OpenStack Swift is not installed (.ci/install-swift.sh)".into(),
        });
        return;
    }
    if let Err(e) = swift_figures(ctx, section) {
        section.rows.push(Row::Failed {
            step: "v2 on Swift set-up".into(),
            error: format!("{e:#}"),
        });
    }
}

fn swift_figures(ctx: &Ctx, section: &mut Section) -> Result<()> {
    use crate::swift::{self, Container};
    let work = ctx.work.join("v2-swift");
    let (ours_dir, dist_dir) = (work.join("registry-v1"), work.join("distribution"));
    for d in [&ours_dir, &dist_dir] {
        fs::create_dir_all(d)?;
    }
    let server = swift::start(&work)?;
    let ours_store = ctx.block_on(Container::create(server.port, "bench-v2-registry-v1"))?;
    let dist_store = ctx.block_on(Container::create(server.port, "bench-v2-distribution"))?;
    let env = [
        ("SETTINGS_FLAVOR", "swift".to_owned()),
        ("OS_AUTH_URL", swift::auth_url(server.port)),
        ("OS_CONTAINER", "bench-v2-registry-v1".into()),
        ("OS_USERNAME", swift::USER.into()),
        ("OS_PASSWORD", swift::KEY.into()),
        ("STORAGE_PATH", "/registry".into()),
    ];
    let ours = procs::registry(&ctx.registry_bin, &env, &ours_dir)?;
    let dist = procs::distribution(
        &format!(
            "  swift:
    authurl: {url}
    username: {user}
    password: {key}
    container: bench-v2-distribution
    rootdirectory: /distribution",
            url = swift::auth_url(server.port),
            user = swift::USER,
            key = swift::KEY,
        ),
        &dist_dir,
    )?;
    let mut both = Both { ours, dist };
    wait_ready(ctx, &both)?;
    let pulled = data::write_layer(&work.join("pulled.bin"), ctx.plan.s3_layer, 41)?;
    let pushed = data::write_layer(&work.join("pushed.bin"), ctx.plan.s3_layer, 42)?;
    store_image(ctx, &both, &pulled, false)?;
    let blob_keys =
        |layer: &Layer| format!("blobs/sha256/{}/{}/", &layer.sha256[..2], layer.sha256);
    // Both really on Swift: the blob's bytes are in each container.
    for (store, who) in [(&ours_store, "registry-v1"), (&dist_store, "distribution")] {
        let keys = ctx.block_on(store.keys(""))?;
        ensure!(
            keys.iter().any(|k| k.contains(&blob_keys(&pulled))),
            "{who} stored no blob in its container"
        );
    }
    let raw_get = ctx.block_on(async {
        let put = ours_store.temp_url("PUT", "raw/blob")?;
        http::upload(&ctx.client, &put, &pulled.path, pulled.size).await?;
        ours_store.temp_url("GET", "raw/blob")
    })?;
    let blob_path = format!("/v2/{REPO}/blobs/sha256:{}", pulled.sha256);
    let runs = ctx.plan.s3_reps;
    if ctx.plan.verify {
        section.step("Swift: pulled bytes match", || {
            verify_pulls(
                ctx,
                &[
                    both.ours.url(&blob_path),
                    both.dist.url(&blob_path),
                    raw_get.clone(),
                ],
                &pulled,
            )?;
            Ok(vec![])
        });
    }
    section.step(
        &format!("Swift: blob pull {} MiB", pulled.size / MIB),
        || {
            let sides = PullSides {
                label: "Swift: ",
                baseline: ("Swift GET", (raw_get.clone(), &server)),
                ours: (both.ours.url(&blob_path), &both.ours),
                dist: (both.dist.url(&blob_path), &both.dist),
                size: pulled.size,
            };
            pull_rows(ctx, runs, &sides, None)
        },
    );
    both.alive(section);

    section.step(
        &format!("Swift: blob push {} MiB", pushed.size / MIB),
        || {
            let mut n = 0;
            let mut raw_put = || -> Result<(f64, f64)> {
                n += 1;
                let key = format!("raw/put-{n}");
                let url = ours_store.temp_url("PUT", &key)?;
                let got = throughput_and_cpu(&server, pushed.size, || {
                    let start = Instant::now();
                    ctx.block_on(http::upload(&ctx.client, &url, &pushed.path, pushed.size))?;
                    Ok(start.elapsed())
                })?;
                ctx.block_on(ours_store.delete_prefix(&key))?;
                Ok(got)
            };
            let remove = |store: &Container| -> Result<()> {
                ctx.block_on(async {
                    for key in store.keys("").await? {
                        if key.contains(&blob_keys(&pushed)) {
                            store.delete_prefix(&key).await?;
                        }
                    }
                    anyhow::Ok(())
                })
            };
            let ours = PushTarget {
                server: &both.ours,
                remove: Box::new(|| remove(&ours_store)),
            };
            let dist = PushTarget {
                server: &both.dist,
                remove: Box::new(|| remove(&dist_store)),
            };
            let case = PushCase {
                runs,
                label: "Swift: ",
                baseline_name: "Swift PUT",
                sync: false,
                goal: None,
            };
            push_rows(ctx, &case, &mut raw_put, [&ours, &dist], &pushed)
        },
    );
    both.alive(section);
    drop(both);
    drop(server);
    Ok(())
}

/// The blob pulls measured on each side: its name, the clients at once,
/// and where a `Range` starts (the second half of a blob of `size`).
pub(super) fn pull_cases(ctx: &Ctx, size: u64) -> [(String, usize, Option<u64>); 3] {
    [
        ("1 client".to_owned(), 1, None),
        (
            format!("{} clients", ctx.plan.clients),
            ctx.plan.clients,
            None,
        ),
        ("1 client, Range: second half".to_owned(), 1, Some(size / 2)),
    ]
}

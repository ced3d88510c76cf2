//! Sections 1, 2, 3, 5, 6 and 8 on local storage: one registry process (so
//! that its memory covers them all), nginx serving the very same files.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{ensure, Context, Result};

use super::layers::{pull_rows, throughput_and_cpu, verify_pull, PullPair};
use super::{copy_mb_per_s, figure, rotate, small_requests, sync_disks, timed_command, Ctx};
use super::{LoadWatch, MIB};
use crate::data::{self, Image, Layer};
use crate::http;
use crate::procs::{self, Server};
use crate::report::{Goal, Row, Section, Unit};

/// The goals of the issue.
pub const PULL_GOAL: Goal = Goal::RatioAtLeast(0.9);
pub const PUSH_GOAL: Goal = Goal::RatioAtLeast(0.8);
pub const SMALL_GOAL: Goal = Goal::RatioAtLeast(0.5);
pub const RSS_GOAL_MIB: f64 = 64.0;

/// The repository the pulled layer is tagged in.
const REPO: &str = "bench/layers";

pub struct Local {
    registry: Server,
    nginx: Server,
    storage: PathBuf,
    www: PathBuf,
    work: PathBuf,
    layer: Layer,
    /// Stored and tagged: what the pulls and small requests read.
    pulled: Image,
    /// Pushed, timed, and removed again, run after run.
    pushed: Image,
    idle_rss_kib: u64,
    /// Peak RSS over sections 1 and 2, and the load around them.
    peak_1_2: Option<(u64, (f64, f64))>,
    load_1: f64,
}

/// Links `to` to the file `from` (same inode: nginx serves the registry's
/// own file), or copies it across filesystems.
fn link(from: &Path, to: &Path) -> Result<()> {
    if fs::hard_link(from, to).is_err() {
        fs::copy(from, to).with_context(|| format!("copy {}", from.display()))?;
    }
    Ok(())
}

impl Local {
    pub fn setup(ctx: &Ctx) -> Result<Local> {
        let work = ctx.work.join("local");
        let storage = work.join("storage");
        let www = work.join("www");
        for d in [&storage, &www, &work.join("nginx")] {
            fs::create_dir_all(d)?;
        }
        println!("writing a {} MiB layer...", ctx.plan.layer / MIB);
        let layer = data::write_layer(&work.join("layer.bin"), ctx.plan.layer, 1)?;
        let registry = procs::registry(
            &ctx.registry_bin,
            &[
                ("SETTINGS_FLAVOR", "dev".into()),
                ("STORAGE_PATH", storage.display().to_string()),
            ],
            &work,
        )?;
        let base = registry.url("");
        ctx.block_on(async {
            let r = ctx.client.get(format!("{base}/v1/_ping")).send().await?;
            ensure!(r.status() == 200, "GET /v1/_ping: {}", r.status());
            anyhow::Ok(())
        })?;
        let idle_rss_kib = registry.rss_kib()?;

        let pulled = data::image(&data::image_id(ctx.run_id, 0), None, &layer)?;
        let pushed = data::image(&data::image_id(ctx.run_id, 1), None, &layer)?;
        ctx.block_on(http::push_image(&ctx.client, &base, &pulled))
            .context("push the layer to pull")?;
        let tags = ctx.block_on(http::tag_latest(&ctx.client, &base, REPO, &pulled))?;
        // nginx serves the stored layer itself and the tags answer as a
        // static file: the same bytes as the registry.
        link(
            &storage.join(format!("images/{}/layer", pulled.id)),
            &www.join("layer"),
        )?;
        fs::write(www.join("tags.json"), &tags)?;
        let nginx = procs::nginx(&www, &work.join("nginx"))?;
        Ok(Local {
            registry,
            nginx,
            storage,
            www,
            work,
            layer,
            pulled,
            pushed,
            idle_rss_kib,
            peak_1_2: None,
            load_1: 0.0,
        })
    }

    fn reg(&self, path: &str) -> String {
        self.registry.url(path)
    }

    /// Section 1.
    pub fn pull(&mut self, ctx: &Ctx, section: &mut Section) {
        self.load_1 = crate::machine::load();
        let _ = self.registry.reset_peak();
        let registry = self.reg(&format!("/v1/images/{}/layer", self.pulled.id));
        let baseline = self.nginx.url("/layer");
        let pair = PullPair {
            label: "",
            registry: &registry,
            registry_server: &self.registry,
            baseline_name: "nginx sendfile",
            baseline: &baseline,
            baseline_server: &self.nginx,
            size: self.layer.size,
        };
        if ctx.plan.verify {
            section.step("pulled bytes match", || {
                verify_pull(ctx, &pair, &self.layer.sha256)?;
                Ok(vec![])
            });
        }
        section.step(&format!("pull {} MiB", self.layer.size / MIB), || {
            pull_rows(ctx, ctx.plan.reps, &pair, Some(PULL_GOAL))
        });
        self.note_peak(section);
        self.alive(section);
    }

    /// Keeps the peak RSS so far (sections 1 and 2 together).
    fn note_peak(&mut self, section: &mut Section) {
        match self.registry.peak_rss_kib() {
            Ok(peak) => self.peak_1_2 = Some((peak, (self.load_1, crate::machine::load()))),
            Err(e) => section.rows.push(Row::Failed {
                step: "peak RSS".into(),
                error: format!("{e:#}"),
            }),
        }
    }

    /// Section 2.
    pub fn push(&mut self, ctx: &Ctx, section: &mut Section) {
        if self.peak_1_2.is_none() {
            self.load_1 = crate::machine::load();
            let _ = self.registry.reset_peak();
        }
        let size = self.layer.size;
        section.step(&format!("push {} MiB", size / MIB), || {
            let load = LoadWatch::start();
            let path = self.layer.path.display().to_string();
            let mut openssl = || -> Result<(f64, f64)> {
                let cpu0 = procs::waited_children_cpu_seconds();
                let (out, t) = timed_command("openssl", &["dgst", "-sha256", &path])?;
                let cpu = procs::waited_children_cpu_seconds() - cpu0;
                ensure!(out.contains(&self.layer.sha256), "openssl: {out}");
                Ok((
                    size as f64 / t.as_secs_f64() / 1e6,
                    cpu * 1e3 / (size as f64 / 1e9),
                ))
            };
            let copy_to = self.work.join("copy.bin");
            let mut copy = || {
                sync_disks();
                Ok((copy_mb_per_s(&self.layer.path, &copy_to, size)?, 0.0))
            };
            let mut push = || self.timed_push(ctx);
            let got = rotate(ctx.plan.reps, &mut [&mut openssl, &mut copy, &mut push])?;
            let load = load.end();
            let speed = |v: &[(f64, f64)]| v.iter().map(|x| x.0).collect::<Vec<_>>();
            let cpu = |v: &[(f64, f64)]| v.iter().map(|x| x.1).collect::<Vec<_>>();
            Ok(vec![
                figure(
                    "push (json, layer, checksum)",
                    Unit::MegabytesPerSecond,
                    &speed(&got[2]),
                    Some(("openssl dgst -sha256", &speed(&got[0]))),
                    Some(PUSH_GOAL),
                    load,
                ),
                figure(
                    "push, next to a plain copy",
                    Unit::MegabytesPerSecond,
                    &speed(&got[2]),
                    Some(("dd bs=1M conv=fdatasync", &speed(&got[1]))),
                    None,
                    load,
                ),
                figure(
                    "push: server CPU",
                    Unit::CpuMsPerGb,
                    &cpu(&got[2]),
                    Some(("openssl dgst -sha256", &cpu(&got[0]))),
                    None,
                    load,
                ),
            ])
        });
        self.note_peak(section);
        self.alive(section);
    }

    /// One push of the 3-request sequence, timed; then checked and removed
    /// so that the next run pushes the same image again.
    fn timed_push(&self, ctx: &Ctx) -> Result<(f64, f64)> {
        sync_disks();
        let got = throughput_and_cpu(&self.registry, self.layer.size, || {
            let start = Instant::now();
            ctx.block_on(http::push_image(&ctx.client, &self.reg(""), &self.pushed))?;
            Ok(start.elapsed())
        })?;
        self.check_pushed(ctx)?;
        self.remove_pushed()?;
        Ok(got)
    }

    fn check_pushed(&self, ctx: &Ctx) -> Result<()> {
        let url = self.reg(&format!("/v1/images/{}/json", self.pushed.id));
        let size = ctx.block_on(async {
            let r = ctx.client.get(&url).send().await?;
            ensure!(r.status() == 200, "GET pushed json: {}", r.status());
            Ok(r.headers()
                .get("X-Docker-Size")
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok()))
        })?;
        ensure!(
            size == Some(self.layer.size),
            "pushed layer has size {size:?}, expected {}",
            self.layer.size
        );
        Ok(())
    }

    fn remove_pushed(&self) -> Result<()> {
        let dir = self.storage.join(format!("images/{}", self.pushed.id));
        fs::remove_dir_all(&dir).with_context(|| format!("remove {}", dir.display()))
    }

    /// Section 3.
    pub fn small(&mut self, ctx: &Ctx, section: &mut Section) {
        let targets = [
            (
                "GET tags",
                self.reg(&format!("/v1/repositories/{REPO}/tags")),
            ),
            (
                "GET image json",
                self.reg(&format!("/v1/images/{}/json", self.pulled.id)),
            ),
            ("GET /v1/_ping", self.reg("/v1/_ping")),
        ];
        let baseline = self.nginx.url("/tags.json");
        section.step("small requests", || {
            small_requests(
                ctx,
                ctx.plan.reps,
                ctx.plan.wrk_duration,
                ("nginx static JSON", &baseline, &self.nginx),
                &self.registry,
                &targets,
                Some(SMALL_GOAL),
            )
        });
        self.alive(section);
    }

    /// Section 5: idle, sections 1 and 2, and a push during N pulls.
    pub fn memory(&mut self, ctx: &Ctx, section: &mut Section) {
        let mib = |kib: u64| kib as f64 / 1024.0;
        section.rows.push(figure(
            "RSS at idle (after start)",
            Unit::Mebibytes,
            &[mib(self.idle_rss_kib)],
            None,
            None,
            (f64::NAN, f64::NAN),
        ));
        match self.peak_1_2 {
            Some((peak, load)) => section.rows.push(figure(
                "peak RSS over sections 1 and 2",
                Unit::Mebibytes,
                &[mib(peak)],
                None,
                Some(Goal::Below(RSS_GOAL_MIB)),
                load,
            )),
            None => section.rows.push(Row::Skipped {
                step: "peak RSS over sections 1 and 2".into(),
                reason: "sections 1 and 2 were not run".into(),
            }),
        }
        let clients = ctx.plan.clients;
        section.step(&format!("peak RSS, 1 push during {clients} pulls"), || {
            let load = LoadWatch::start();
            self.registry.reset_peak()?;
            let base = self.reg("");
            let pull_url = self.reg(&format!("/v1/images/{}/layer", self.pulled.id));
            ctx.block_on(async {
                let (pushed, pulled) = tokio::join!(
                    http::push_image(&ctx.client, &base, &self.pushed),
                    http::parallel_download(&ctx.client, &pull_url, clients, None, self.layer.size)
                );
                pushed?;
                pulled?;
                anyhow::Ok(())
            })?;
            let peak = self.registry.peak_rss_kib()?;
            self.check_pushed(ctx)?;
            self.remove_pushed()?;
            let idle = self.registry.rss_kib()?;
            Ok(vec![
                figure(
                    format!("peak RSS, 1 push during {clients} pulls"),
                    Unit::Mebibytes,
                    &[mib(peak)],
                    None,
                    Some(Goal::Below(RSS_GOAL_MIB)),
                    load.end(),
                ),
                figure(
                    "RSS at idle again (after all of it)",
                    Unit::Mebibytes,
                    &[mib(idle)],
                    None,
                    None,
                    (f64::NAN, f64::NAN),
                ),
            ])
        });
        self.alive(section);
    }

    /// Section 6: a docker 1.x push, then pull, of a repository of N
    /// images in one ancestry chain.
    pub fn repository(&mut self, ctx: &Ctx, section: &mut Section) {
        let n = ctx.plan.repo_images;
        let each = ctx.plan.repo_layer;
        section.step(&format!("{n}-image repository"), || {
            let dir = self.work.join("repo");
            fs::create_dir_all(&dir)?;
            let mut layers = Vec::new();
            for i in 0..n {
                let layer =
                    data::write_layer(&dir.join(format!("layer-{i}")), each, 100 + i as u64)?;
                link(&layer.path, &self.www.join(format!("repo-{i}")))?;
                layers.push(layer);
            }
            let base = self.reg("");
            let mut pushed_repos: Vec<(String, Vec<Image>)> = Vec::new();
            let load = LoadWatch::start();
            let mut push = || -> Result<f64> {
                let k = pushed_repos.len() as u64;
                let mut images: Vec<Image> = Vec::new();
                for (i, layer) in layers.iter().enumerate() {
                    let id = data::image_id(ctx.run_id, 1000 + 100 * k + i as u64);
                    let parent = images.last().map(|p| p.id.clone());
                    images.push(data::image(&id, parent.as_deref(), layer)?);
                }
                let repo = format!("bench/chain-{k}");
                sync_disks();
                let start = Instant::now();
                ctx.block_on(http::docker_push(&ctx.client, &base, &repo, &images))?;
                let t = start.elapsed().as_secs_f64();
                pushed_repos.push((repo, images));
                Ok(t)
            };
            let copy_to = self.work.join("copy.bin");
            let mut copy = || -> Result<f64> {
                sync_disks();
                let mut total = 0.0;
                for l in &layers {
                    total += l.size as f64 / copy_mb_per_s(&l.path, &copy_to, l.size)? / 1e6;
                }
                Ok(total)
            };
            let pushes = rotate(ctx.plan.reps, &mut [&mut copy, &mut push])?;
            let push_load = load.end();

            if ctx.plan.verify {
                // Untimed: hashing in the client would slow only one side.
                let (repo, images) = &pushed_repos[0];
                ctx.block_on(http::docker_pull(&ctx.client, &base, repo, images, true))?;
            }
            let load = LoadWatch::start();
            let mut next = 0;
            let mut pull = || -> Result<f64> {
                let (repo, images) = &pushed_repos[next % pushed_repos.len()];
                next += 1;
                let start = Instant::now();
                ctx.block_on(http::docker_pull(&ctx.client, &base, repo, images, false))?;
                Ok(start.elapsed().as_secs_f64())
            };
            let mut nginx = || -> Result<f64> {
                let start = Instant::now();
                for (i, l) in layers.iter().enumerate() {
                    let url = self.nginx.url(&format!("/repo-{i}"));
                    ctx.block_on(http::download(&ctx.client, &url, None, l.size, None))?;
                }
                Ok(start.elapsed().as_secs_f64())
            };
            let pulls = rotate(ctx.plan.reps, &mut [&mut nginx, &mut pull])?;
            let total = n as u64 * each / MIB;
            Ok(vec![
                figure(
                    format!("docker push, {n} images, {total} MiB: wall time"),
                    Unit::Seconds,
                    &pushes[1],
                    Some(("dd copy of the layers", &pushes[0])),
                    None,
                    push_load,
                ),
                figure(
                    format!("docker pull, {n} images, {total} MiB: wall time"),
                    Unit::Seconds,
                    &pulls[1],
                    Some(("nginx GET of the layers", &pulls[0])),
                    None,
                    load.end(),
                ),
            ])
        });
        self.alive(section);
    }

    /// Section 8: a v2 pull of a v1 image the bridge serves from the v1
    /// tree, next to the same image pushed over v2, in the same registry:
    /// warm (digests recorded, as after a push to registry-v1), and first
    /// use (no record yet, as on a storage the old registry wrote).
    pub fn bridge(&mut self, ctx: &Ctx, section: &mut Section) {
        let n = ctx.plan.repo_images;
        let each = ctx.plan.repo_layer;
        section.step(&format!("v2 pull of a {n}-image v1 chain"), || {
            let dir = self.work.join("bridge");
            fs::create_dir_all(&dir)?;
            let mut images: Vec<Image> = Vec::new();
            for i in 0..n {
                let layer =
                    data::write_layer(&dir.join(format!("layer-{i}")), each, 200 + i as u64)?;
                let id = data::image_id(ctx.run_id, 5000 + i as u64);
                let parent = images.last().map(|p| p.id.clone());
                images.push(data::image(&id, parent.as_deref(), &layer)?);
            }
            let base = self.reg("");
            let (v1_repo, v2_repo) = ("bench/bridged", "bench/pushed-over-v2");
            ctx.block_on(http::docker_push(&ctx.client, &base, v1_repo, &images))?;
            ctx.block_on(http::v2_push_image(
                &ctx.client,
                &base,
                v2_repo,
                "latest",
                &images,
            ))?;
            let first = ctx.block_on(http::v2_pull(&ctx.client, &base, v1_repo, "latest", true))?;
            let again = ctx.block_on(http::v2_pull(&ctx.client, &base, v1_repo, "latest", true))?;
            ensure!(
                first.0 == again.0,
                "the bridged digest changed: {} then {}",
                first.0,
                again.0
            );
            ensure!(
                first.1 == n as u64 * each,
                "bridged pull: {} bytes",
                first.1
            );
            ctx.block_on(http::v2_pull(
                &ctx.client,
                &base,
                v2_repo,
                "latest",
                ctx.plan.verify,
            ))?;

            let pull = |repo: &str| -> Result<f64> {
                let start = Instant::now();
                ctx.block_on(http::v2_pull(&ctx.client, &base, repo, "latest", false))?;
                Ok(start.elapsed().as_secs_f64())
            };
            let load = LoadWatch::start();
            let mut bridged = || pull(v1_repo);
            let mut pushed = || pull(v2_repo);
            let warm = rotate(ctx.plan.reps, &mut [&mut pushed, &mut bridged])?;
            let warm_load = load.end();

            // First use: the records removed, as a storage the old
            // registry wrote has none; the pull computes and keeps them.
            let storage = self.storage.clone();
            let forget = || -> Result<()> {
                for image in &images {
                    for file in ["_v2", "_v2_manifest", "_v2_config", "_v2_layers"] {
                        let path = storage.join(format!("images/{}/{file}", image.id));
                        if path.exists() {
                            fs::remove_file(path)?;
                        }
                    }
                }
                let entries = storage.join(format!("repositories/{v1_repo}/_v2_digests"));
                if entries.exists() {
                    fs::remove_dir_all(entries)?;
                }
                Ok(())
            };
            let load = LoadWatch::start();
            let mut cold = || -> Result<f64> {
                forget()?;
                pull(v1_repo)
            };
            let mut pushed = || pull(v2_repo);
            let cold_runs = rotate(ctx.plan.reps, &mut [&mut pushed, &mut cold])?;
            let digest =
                ctx.block_on(http::v2_pull(&ctx.client, &base, v1_repo, "latest", false))?;
            ensure!(
                digest.0 == first.0,
                "the digest after first use: {}, not {}",
                digest.0,
                first.0
            );
            let total = n as u64 * each / MIB;
            Ok(vec![
                figure(
                    format!("v2 pull of a bridged v1 image, {n} layers, {total} MiB: wall time"),
                    Unit::Seconds,
                    &warm[1],
                    Some(("the same image pushed over v2", &warm[0])),
                    None,
                    warm_load,
                ),
                figure(
                    format!("first v2 pull, digests not yet recorded, {total} MiB: wall time"),
                    Unit::Seconds,
                    &cold_runs[1],
                    Some(("the same image pushed over v2", &cold_runs[0])),
                    None,
                    load.end(),
                ),
            ])
        });
        self.alive(section);
    }

    /// A registry that died mid-section fails the section, whatever the
    /// figures said.
    fn alive(&mut self, section: &mut Section) {
        for server in [&mut self.registry, &mut self.nginx] {
            if let Err(e) = server.check_alive() {
                section.rows.push(Row::Failed {
                    step: format!("{} still running", server.name),
                    error: format!("{e:#}"),
                });
            }
        }
    }
}

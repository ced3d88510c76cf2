//! The measurements, section by section: what is run, against which
//! baseline, and how the runs of the two interleave.

pub mod cache;
pub mod gc;
pub mod layers;
pub mod local;
pub mod mirror;
pub mod notifications;
pub mod pushes;
pub mod quota;
pub mod s3;
pub mod search;
pub mod tls;
pub mod v2;
pub mod web;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::machine;
use crate::procs::Server;
use crate::report::{Figure, Goal, Row, Section, Unit};
use crate::stats::Samples;
use crate::wrk;

/// Sizes, repetitions and durations of a run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub smoke: bool,
    pub reps: usize,
    /// The layer of the pull and push figures on local storage, bytes.
    pub layer: u64,
    /// The same on S3 (moto is slower by far: a smaller layer keeps the
    /// run bounded).
    pub s3_layer: u64,
    pub s3_reps: usize,
    /// The layer the pull-through cache fetches from its upstream, bytes.
    pub mirror_layer: u64,
    /// Each layer of the 10-image repository, bytes.
    pub repo_layer: u64,
    pub repo_images: usize,
    pub clients: usize,
    pub concurrency: Vec<usize>,
    pub wrk_duration: Duration,
    /// wrk's duration on S3 storage: at 64 connections a request there
    /// waits up to a second for moto, and wrk counts only the requests
    /// that finish within its duration (a 1-second smoke load could
    /// count none).
    pub s3_wrk_duration: Duration,
    /// The PATCH size of the chunked v2 pushes (8 MiB; smaller in smoke
    /// runs, so that their small blobs still take several PATCHes).
    pub chunk: u64,
    /// Check pulled bytes against their sha256 (smoke runs).
    pub verify: bool,
    pub s3: bool,
}

pub const MIB: u64 = 1 << 20;

impl Plan {
    /// What the run section of the report says about itself.
    pub fn describe(&self) -> String {
        let mib = |b: u64| format!("{} MiB", b / MIB);
        format!(
            "{mode}; {reps} runs of every figure (S3: {s3reps}), the registry's and its \
             baseline's runs taking turns; layer {layer} (S3: {s3layer}; pull-through \
             cache: {mirror}); {clients} \
             concurrent clients; small requests: wrk for {secs} s (S3: {s3secs} s) at {conc} connections; \
             repository: {n} images of {repo} each; v2 chunked pushes in {chunk} PATCHes.",
            mode = if self.smoke {
                "SMOKE run: sizes and durations too small for the figures to mean anything"
            } else {
                "Full run"
            },
            reps = self.reps,
            s3reps = self.s3_reps,
            layer = mib(self.layer),
            s3layer = mib(self.s3_layer),
            mirror = mib(self.mirror_layer),
            clients = self.clients,
            secs = self.wrk_duration.as_secs(),
            s3secs = self.s3_wrk_duration.as_secs(),
            conc = self
                .concurrency
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            n = self.repo_images,
            repo = mib(self.repo_layer),
            chunk = mib(self.chunk),
        )
    }
}

/// What every step needs.
pub struct Ctx {
    pub plan: Plan,
    pub rt: tokio::runtime::Runtime,
    pub client: reqwest::Client,
    pub registry_bin: PathBuf,
    /// The workspace root (where BENCHMARKS.md and benches/ are).
    pub root: PathBuf,
    /// This run's scratch folder.
    pub work: PathBuf,
    /// Makes this run's image ids its own.
    pub run_id: u64,
}

impl Ctx {
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }
}

/// Runs the measurements `runs` times each, taking turns: run `r` starts
/// with measurement `r mod n`, so that neither the registry nor its
/// baseline always goes first on a machine whose load drifts.
pub fn rotate<T>(
    runs: usize,
    measures: &mut [&mut dyn FnMut() -> Result<T>],
) -> Result<Vec<Vec<T>>> {
    let n = measures.len();
    let mut out: Vec<Vec<T>> = (0..n).map(|_| Vec::new()).collect();
    for run in 0..runs {
        for k in 0..n {
            let i = (run + k) % n;
            out[i].push(measures[i]()?);
        }
    }
    Ok(out)
}

pub fn samples(values: &[f64]) -> Samples {
    let mut s = Samples::new();
    for v in values {
        s.push(*v);
    }
    s
}

/// One wrk load of `url` with `request` for the plan's duration, and the
/// CPU `server` spent per request meanwhile, µs.
pub fn wrk_load(
    url: &str,
    server: &Server,
    c: usize,
    ctx: &Ctx,
    request: &wrk::Request,
) -> Result<(wrk::Load, f64)> {
    let cpu0 = server.cpu_seconds()?;
    let load = wrk::run_with(url, c, ctx.plan.wrk_duration, request)?;
    let cpu = server.cpu_seconds()? - cpu0;
    Ok((load, cpu * 1e6 / load.requests.max(1) as f64))
}

/// A note for `step` when its wrk runs counted socket errors.
pub fn socket_errors(step: String, runs: &[(wrk::Load, f64)]) -> Option<Row> {
    let errors: u64 = runs.iter().map(|l| l.0.socket_errors).sum();
    (errors > 0).then(|| Row::Note {
        step,
        text: format!("wrk counted {errors} socket errors (timeouts or resets)"),
    })
}

/// A figure with the registry's runs and a baseline's.
pub fn figure(
    name: impl Into<String>,
    unit: Unit,
    value: &[f64],
    baseline: Option<(&str, &[f64])>,
    goal: Option<Goal>,
    load: (f64, f64),
) -> Row {
    Row::Figure(Figure {
        name: name.into(),
        unit,
        value: samples(value),
        baseline: baseline.map(|(n, v)| (n.to_owned(), samples(v))),
        peer: None,
        goal,
        load,
    })
}

/// A figure with the registry's runs, the peer registry's (the same
/// work on distribution) and a baseline's.
pub fn figure_vs(
    name: impl Into<String>,
    unit: Unit,
    value: &[f64],
    peer: (&str, &[f64]),
    baseline: Option<(&str, &[f64])>,
    goal: Option<Goal>,
    load: (f64, f64),
) -> Row {
    Row::Figure(Figure {
        name: name.into(),
        unit,
        value: samples(value),
        baseline: baseline.map(|(n, v)| (n.to_owned(), samples(v))),
        peer: Some((peer.0.to_owned(), samples(peer.1))),
        goal,
        load,
    })
}

impl Section {
    /// Runs one step; its figures go in the section, or the error that
    /// stopped it.
    pub fn step(&mut self, name: &str, f: impl FnOnce() -> Result<Vec<Row>>) {
        println!("  {name}...");
        match f() {
            Ok(rows) => {
                for row in &rows {
                    if let Row::Figure(fig) = row {
                        println!("    {}", crate::report::one_line(fig));
                    }
                }
                self.rows.extend(rows);
            }
            Err(e) => {
                let error = format!("{e:#}");
                println!("    FAILED: {error}");
                self.rows.push(Row::Failed {
                    step: name.to_owned(),
                    error,
                });
            }
        }
    }
}

/// Runs a section on S3 storage: skipped with `--no-s3`; a set-up that
/// fails is one failed row named `what`.
pub fn on_s3(
    ctx: &Ctx,
    section: &mut Section,
    what: &str,
    measure: impl FnOnce(&Ctx, &mut Section) -> Result<()>,
) {
    if !ctx.plan.s3 {
        section.rows.push(Row::Skipped {
            step: what.into(),
            reason: "left out (--no-s3)".into(),
        });
        return;
    }
    if let Err(e) = measure(ctx, section) {
        section.rows.push(Row::Failed {
            step: format!("{what} set-up"),
            error: format!("{e:#}"),
        });
    }
}

/// The load average around a step.
pub struct LoadWatch(f64);

impl LoadWatch {
    pub fn start() -> Self {
        LoadWatch(machine::load())
    }
    pub fn end(self) -> (f64, f64) {
        (self.0, machine::load())
    }
}

/// Flushes dirty pages so that a timed write does not pay for the one
/// before it.
pub fn sync_disks() {
    let _ = Command::new("sync").status();
}

/// Times a command; fails if it fails. Returns its stdout and the time.
pub fn timed_command(program: &str, args: &[&str]) -> Result<(String, Duration)> {
    let start = Instant::now();
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("run {program}"))?;
    let elapsed = start.elapsed();
    if !out.status.success() {
        bail!(
            "{program} {}: {} {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok((String::from_utf8_lossy(&out.stdout).into_owned(), elapsed))
}

/// A plain copy of `from` to `to` in 1 MiB blocks, synced to disk as the
/// registry syncs a layer; removed afterwards. Returns MB/s. The caller
/// flushes the disks first ([`sync_disks`]).
pub fn copy_mb_per_s(from: &Path, to: &Path, size: u64) -> Result<f64> {
    let (_, elapsed) = timed_command(
        "dd",
        &[
            &format!("if={}", from.display()),
            &format!("of={}", to.display()),
            "bs=1M",
            "conv=fdatasync",
            "status=none",
        ],
    )?;
    std::fs::remove_file(to)?;
    Ok(size as f64 / elapsed.as_secs_f64() / 1e6)
}

/// One wrk load and the server CPU per request it cost.
type Measure<'a> = Box<dyn FnMut() -> Result<(wrk::Load, f64)> + 'a>;

/// Small-request figures: for each concurrency, each registry URL against
/// the baseline URL, wrk running for `duration`: requests/s (with `goal`),
/// p99 latency, and the server's CPU time per request.
pub fn small_requests(
    ctx: &Ctx,
    runs: usize,
    duration: Duration,
    baseline: (&str, &str, &Server),
    registry: &Server,
    targets: &[(&str, String)],
    goal: Option<Goal>,
) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for &c in &ctx.plan.concurrency {
        let load = LoadWatch::start();
        let mut runs_of: Vec<(String, &Server)> = vec![(baseline.1.to_owned(), baseline.2)];
        runs_of.extend(targets.iter().map(|(_, u)| (u.clone(), registry)));
        let mut closures: Vec<Measure> = runs_of
            .iter()
            .map(|(u, server)| {
                let u = u.clone();
                let server: &Server = server;
                Box::new(move || {
                    let cpu0 = server.cpu_seconds()?;
                    let load = wrk::run(&u, c, duration)?;
                    let cpu = server.cpu_seconds()? - cpu0;
                    Ok((load, cpu * 1e6 / load.requests.max(1) as f64))
                }) as Box<dyn FnMut() -> Result<_>>
            })
            .collect();
        let mut refs: Vec<&mut dyn FnMut() -> Result<(wrk::Load, f64)>> =
            closures.iter_mut().map(|b| &mut **b as _).collect();
        let results = rotate(runs, &mut refs)?;
        let load = load.end();
        let rps = |r: &[(wrk::Load, f64)]| r.iter().map(|l| l.0.requests_per_s).collect::<Vec<_>>();
        let p99 = |r: &[(wrk::Load, f64)]| r.iter().map(|l| l.0.p99_ms).collect::<Vec<_>>();
        let cpu = |r: &[(wrk::Load, f64)]| r.iter().map(|l| l.1).collect::<Vec<_>>();
        let base = &results[0];
        for (i, (name, _)) in targets.iter().enumerate() {
            let r = &results[i + 1];
            rows.push(figure(
                format!("{name}, {c} conn: throughput"),
                Unit::RequestsPerSecond,
                &rps(r),
                Some((baseline.0, &rps(base))),
                goal,
                load,
            ));
            rows.push(figure(
                format!("{name}, {c} conn: p99 latency"),
                Unit::Milliseconds,
                &p99(r),
                Some((baseline.0, &p99(base))),
                None,
                load,
            ));
            rows.push(figure(
                format!("{name}, {c} conn: server CPU"),
                Unit::CpuUsPerRequest,
                &cpu(r),
                Some((baseline.0, &cpu(base))),
                None,
                load,
            ));
            rows.extend(socket_errors(format!("{name}, {c} conn"), r));
        }
    }
    Ok(rows)
}

//! The benchmark suite of registry-v1 (docs/src/benchmarks.md): the release
//! binary on loopback, every figure the median of several runs next to a
//! baseline measured in the same run, a table on the terminal and
//! BENCHMARKS.md.

mod data;
mod http;
mod link;
mod machine;
mod objects;
mod procs;
mod report;
mod stats;
mod steps;
mod swift;
mod tools;
mod wrk;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;

use report::{Report, Row};
use steps::{local::Local, Ctx, Plan, MIB};

#[derive(Debug, Parser)]
#[command(
    name = "bench",
    about = "Benchmarks registry-v1 against nginx, openssl, the S3 server and distribution, on 127.0.0.1 only",
    after_help = "Full run: `bash bench/run` (release; 25 to 35 minutes; writes BENCHMARKS.md).\n\
                  Smoke run: `BENCH_SMOKE=1 bash bench/run` (under two minutes; fails if a step fails)."
)]
struct Args {
    /// A short run that checks every step works and prints a figure
    /// (meaningless ones): tiny layers, one run, 1-second loads, pulled
    /// bytes checked. Exits non-zero if a step fails.
    #[arg(long, env = "BENCH_SMOKE", value_parser = clap::builder::FalseyValueParser::new())]
    smoke: bool,
    /// Runs of each figure (default 3; smoke 1).
    #[arg(long)]
    reps: Option<usize>,
    /// Size of the pulled and pushed layer on local storage, MiB (default 1024; smoke 8).
    #[arg(long)]
    layer_mib: Option<u64>,
    /// Size of the layer on S3, MiB (default 64; smoke 4). moto moves tens
    /// of MB/s on uploads: 1 GiB would take minutes a run.
    #[arg(long)]
    s3_layer_mib: Option<u64>,
    /// Size of the layer the pull-through cache fetches, MiB (default 256;
    /// smoke 8).
    #[arg(long)]
    mirror_layer_mib: Option<u64>,
    /// Runs of each S3 figure (default: as --reps).
    #[arg(long)]
    s3_reps: Option<usize>,
    /// Size of each of the 10 layers of the repository push/pull, MiB
    /// (default 10; smoke 1).
    #[arg(long)]
    repo_layer_mib: Option<u64>,
    /// Concurrent clients of the parallel pull (default 16).
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Seconds of each wrk load (default 4; smoke 1; on S3 at least 3).
    #[arg(long)]
    wrk_secs: Option<u64>,
    /// Leave out the S3 sections (7, 11 and 13).
    #[arg(long)]
    no_s3: bool,
    /// Run only these sections (numbers as in the report, e.g. `1,5`):
    /// for quick before/after comparisons while profiling.
    #[arg(long, value_delimiter = ',')]
    only: Vec<usize>,
    /// Use this registry-v1 binary instead of building one.
    #[arg(long)]
    registry_bin: Option<PathBuf>,
    /// Build the registry in debug mode (the default of --smoke, which
    /// then reuses the test build); full runs build release.
    #[arg(long)]
    debug_registry: bool,
    /// With --smoke: build the registry in release mode anyway.
    #[arg(long)]
    release_registry: bool,
    /// Fail instead of installing missing tools (nginx, wrk, openssl, moto,
    /// distribution, skopeo).
    #[arg(long)]
    no_install: bool,
    /// Where to write the report (default: BENCHMARKS.md at the workspace
    /// root; smoke: target/bench-smoke/BENCHMARKS.md).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Folder for the run's scratch folder (layers, storage; needs about 4
    /// layer sizes free). Default: the system's temporary folder.
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// Keep the scratch folder (its logs) after the run.
    #[arg(long)]
    keep_workdir: bool,
}

impl Args {
    fn plan(&self) -> Plan {
        let smoke = self.smoke;
        let pick =
            |v: Option<u64>, full: u64, small: u64| v.unwrap_or(if smoke { small } else { full });
        let reps = self.reps.unwrap_or(if smoke { 1 } else { 3 }).max(1);
        let wrk_duration = Duration::from_secs(pick(self.wrk_secs, 4, 1).max(1));
        Plan {
            smoke,
            reps,
            layer: pick(self.layer_mib, 1024, 8).max(1) * MIB,
            s3_layer: pick(self.s3_layer_mib, 64, 4).max(1) * MIB,
            s3_reps: self.s3_reps.unwrap_or(reps).max(1),
            mirror_layer: pick(self.mirror_layer_mib, 256, 8).max(1) * MIB,
            repo_layer: pick(self.repo_layer_mib, 10, 1).max(1) * MIB,
            repo_images: 10,
            chunk: if smoke { MIB } else { 8 * MIB },
            clients: self.clients.max(1),
            concurrency: vec![1, 16, 64],
            wrk_duration,
            s3_wrk_duration: wrk_duration.max(Duration::from_secs(3)),
            verify: smoke,
            s3: !self.no_s3 && (self.wants(7) || self.wants(11) || self.wants(13)),
        }
    }

    fn wants(&self, section: usize) -> bool {
        self.only.is_empty() || self.only.contains(&section)
    }
}

fn main() -> ExitCode {
    // rust-s3 sends the region as the bucket's location constraint, which
    // S3 (and moto) refuse for us-east-1; its documented switch for local
    // S3-compatible servers turns that off. Set while single-threaded.
    std::env::set_var("RUST_S3_SKIP_LOCATION_CONSTRAINT", "true");
    let args = Args::parse();
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = here.parent().unwrap_or(here);
    root.canonicalize().unwrap_or_else(|_| root.to_owned())
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

fn run(args: Args) -> Result<ExitCode> {
    let started = Instant::now();
    let plan = args.plan();
    let root = workspace_root();
    let load_at_start = machine::loadavg_line();
    let v2 = args.wants(10) || args.wants(11) || args.wants(14);
    tools::ensure(&root, plan.s3, v2, !args.no_install)?;

    let debug = args.debug_registry || (plan.smoke && !args.release_registry);
    let (registry_bin, build) = match &args.registry_bin {
        Some(bin) => {
            let bin = bin
                .canonicalize()
                .with_context(|| format!("registry binary {}", bin.display()))?;
            let text = format!("given binary {}", bin.display());
            (bin, text)
        }
        None => (
            tools::build_registry(&root, debug)?,
            if debug {
                "debug build"
            } else {
                "release build"
            }
            .to_owned(),
        ),
    };

    let scratch_parent = args.workdir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&scratch_parent)?;
    let scratch = tempfile::Builder::new()
        .prefix("registry-bench-")
        .tempdir_in(&scratch_parent)
        .context("create the scratch folder")?;
    let work = scratch.path().to_owned();

    let mut machine = machine::Machine::describe(&root, &build, &load_at_start, v2);
    println!("{}", machine.text());
    println!("{}\nscratch folder: {}\n", plan.describe(), work.display());

    let ctx = Ctx {
        rt: tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?,
        client: http::client()?,
        registry_bin,
        root: root.clone(),
        work,
        run_id: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
        plan,
    };

    let mut report = Report::default();
    let titles = [
        "1. Layer pull (local storage)",
        "2. Layer push (local storage)",
        "3. Small requests (local storage)",
        "4. Search",
        "5. Memory (registry process, local storage)",
        "6. A whole docker push, then pull, of a 10-image repository",
        "7. On S3 storage (moto on loopback)",
        "8. v1 images over v2 (local storage)",
        "9. Garbage collection and retention (local storage)",
        "10. v2 API: registry-v1 and distribution (local storage)",
        "11. v2 API on S3 storage: registry-v1 and distribution (moto on loopback)",
        "12. https next to plain http (local storage)",
        "13. The Redis cache on S3 storage (moto on loopback)",
        "14. Pull-through cache: registry-v1 and distribution's proxy (local storage)",
        "15. Webhook notifications: pushes with a dead or a hanging endpoint next to none (local storage)",
        "16. Quotas: pushes counted in a quota next to none (local storage)",
        "17. Web pages: time to first byte and weight (local storage)",
        "18. v2 API on OpenStack Swift: registry-v1 and distribution (one-node Swift on loopback)",
    ];
    let want = |n: usize| args.wants(n);
    if [1, 2, 3, 5, 6, 8].into_iter().any(want) {
        println!("== local storage: setting up");
        match Local::setup(&ctx) {
            Ok(mut local) => {
                type Part = fn(&mut Local, &Ctx, &mut report::Section);
                let parts: [(usize, Part); 6] = [
                    (1, Local::pull),
                    (2, Local::push),
                    (3, Local::small),
                    (5, Local::memory),
                    (6, Local::repository),
                    (8, Local::bridge),
                ];
                for (n, part) in parts {
                    if n == 5 && want(4) {
                        search_section(&ctx, &mut report, titles[3]);
                    }
                    if want(n) {
                        println!("== {}", titles[n - 1]);
                        let start = Instant::now();
                        part(&mut local, &ctx, report.section(titles[n - 1]));
                        println!("  ({:.0} s)", start.elapsed().as_secs_f64());
                    }
                }
            }
            Err(e) => {
                let error = format!("{e:#}");
                println!("  FAILED: {error}");
                for n in [1, 2, 3, 4, 5, 6, 8].into_iter().filter(|&n| want(n)) {
                    if n == 4 {
                        search_section(&ctx, &mut report, titles[3]);
                    } else {
                        report.section(titles[n - 1]).rows.push(Row::Failed {
                            step: "local storage set-up".into(),
                            error: error.clone(),
                        });
                    }
                }
            }
        }
    } else if want(4) {
        search_section(&ctx, &mut report, titles[3]);
    }
    if want(7) {
        println!("== {}", titles[6]);
        let start = Instant::now();
        steps::s3::run(&ctx, report.section(titles[6]));
        println!("  ({:.0} s)", start.elapsed().as_secs_f64());
    }
    if want(9) {
        println!("== {}", titles[8]);
        let start = Instant::now();
        let section = report.section(titles[8]);
        steps::gc::run(&ctx, section);
        steps::gc::retention(&ctx, section);
        println!("  ({:.0} s)", start.elapsed().as_secs_f64());
    }

    for (n, part) in [
        (10, steps::v2::local as fn(&Ctx, &mut report::Section)),
        (11, steps::v2::s3),
        (12, steps::tls::run),
        (13, steps::cache::run),
        (14, steps::mirror::run),
        (15, steps::notifications::run),
        (16, steps::quota::run),
        (17, steps::web::run),
        (18, steps::v2::swift),
    ] {
        if want(n) {
            println!("== {}", titles[n - 1]);
            let start = Instant::now();
            part(&ctx, report.section(titles[n - 1]));
            println!("  ({:.0} s)", start.elapsed().as_secs_f64());
        }
    }

    machine.finish();
    let elapsed = started.elapsed();
    println!("\n==================== registry-v1 benchmarks ====================");
    print!("{}", report.table());
    println!("\n(run took {:.0} s)", elapsed.as_secs_f64());

    let out = args.out.clone().unwrap_or_else(|| {
        if ctx.plan.smoke {
            target_dir(&root).join("bench-smoke/BENCHMARKS.md")
        } else {
            root.join("BENCHMARKS.md")
        }
    });
    let findings = std::fs::read_to_string(root.join("bench/findings.md")).unwrap_or_default();
    let run_text = format!(
        "{} The run took {:.0} s.",
        ctx.plan.describe(),
        elapsed.as_secs_f64()
    );
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, report.markdown(&machine, &run_text, &findings))
        .with_context(|| format!("write {}", out.display()))?;
    println!("report written to {}", out.display());

    if args.keep_workdir {
        let kept = scratch.keep();
        println!("scratch folder kept: {}", kept.display());
    }
    let failures = report.failures();
    if failures.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("\n{} step(s) failed:", failures.len());
        for f in failures {
            eprintln!("  - {}", first_line(&f));
        }
        Ok(ExitCode::FAILURE)
    }
}

fn search_section(ctx: &Ctx, report: &mut Report, title: &str) {
    println!("== {title}");
    steps::search::run(ctx, report.section(title));
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

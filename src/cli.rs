//! The command line: `serve` (the default), `config`, `reindex`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, Environment, Settings};

const ENVIRONMENT_HELP: &str = "\
Environment:
  DOCKER_REGISTRY_CONFIG  the YAML configuration file, relative to the working
                          directory (default: config/config.yml if present, else
                          the built-in config_sample.yml)
  SETTINGS_FLAVOR         the flavor (top-level key) to use (default: dev)
  REGISTRY_HOST           address to listen on (default: 0.0.0.0)
  REGISTRY_PORT           port to listen on (default: 5000)
  GUNICORN_WORKERS        worker threads (default: one per core)
  RUST_LOG                log filter, overrides the `loglevel` setting

  ...and every variable the chosen flavor names with `_env:VAR[:DEFAULT]`; in
  the built-in sample: LOGLEVEL, DEBUG, STANDALONE, STORAGE_PATH,
  SEARCH_BACKEND, SQLALCHEMY_INDEX_DATABASE, INDEX_ENDPOINT, STORAGE_REDIRECT,
  DISABLE_TOKEN_AUTH, PRIVILEGED_KEY, CORS_*, MIRROR_*, SMTP_*; for S3 (flavors
  s3, prod, ceph-s3) AWS_BUCKET, AWS_KEY, AWS_SECRET, AWS_REGION, AWS_HOST,
  AWS_PORT, AWS_SECURE, AWS_ENCRYPT; for gcs GCS_BUCKET, GCS_KEY, GCS_SECRET.
  `registry-v1 config` prints the resolved flavor, secrets masked.";

#[derive(Debug, Parser)]
#[command(name = "registry-v1", version, about, after_help = ENVIRONMENT_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the registry (the default).
    Serve,
    /// Print the resolved configuration of the chosen flavor, secrets masked.
    Config {
        /// Print JSON instead of YAML.
        #[arg(long)]
        json: bool,
        /// Only check that the configuration loads; print nothing on success.
        #[arg(long)]
        check: bool,
    },
    /// Rebuild the search index from what storage holds.
    Reindex,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("registry-v1: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// How many malloc pools glibc may keep (`MALLOC_ARENA_MAX` overrides).
///
/// Layers move in 1 MiB blocks that are allocated on one thread (a blocking
/// read, a request body) and freed on another (after the send, after the
/// write). glibc's default of up to 8 pools a core then keeps freed blocks
/// spread over pools that never give them back: a push during 16 pulls
/// peaked at 106 MiB and stayed at 92 MiB; with 2 pools, 50 MiB falling back
/// to about 20 (BENCHMARKS.md, section 5).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MALLOC_ARENAS: libc::c_int = 2;

/// Applies [`MALLOC_ARENAS`] before any thread starts, unless the operator
/// chose a value through glibc's own variable.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets a tunable of the allocator; no thread
        // other than this one exists yet.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let env = Environment::from_process()?;
    let settings = config::load(&env)?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            limit_malloc_arenas();
            init_logging(&settings);
            actix_web::rt::System::new().block_on(crate::server::run(settings, &env))
        }
        Command::Config { json, check } => {
            if !check {
                print!("{}", config::render(&settings, json)?);
            }
            Ok(())
        }
        Command::Reindex => {
            init_logging(&settings);
            actix_web::rt::System::new().block_on(crate::search::reindex_command(settings))
        }
    }
}

/// `loglevel` sets the level; `RUST_LOG`, when set, wins.
fn init_logging(settings: &Settings) {
    env_logger::Builder::new()
        .filter_level(settings.loglevel.as_filter())
        .parse_env("RUST_LOG")
        .init();
}

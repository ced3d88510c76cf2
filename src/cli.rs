//! The command line: `serve` (the default), `config`, `reindex`,
//! `healthcheck`, `bridge-digests`, `migrate`, `gc`; and, from the same
//! definitions, its shell completions (`completions`) and man page (`man`).

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

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
  MALLOC_ARENA_MAX, MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_
                          glibc's malloc settings; `serve` sets 2, 4 MiB and
                          16 MiB unless they are given (see
                          docs/src/command-line.md)

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
        /// Only check that the configuration loads; print nothing on success
        /// but the warnings (unknown keys, settings not acted on) on stderr.
        #[arg(long)]
        check: bool,
        /// With --check: an unknown key is an error (exit status 1), for CI.
        #[arg(long, requires = "check")]
        strict: bool,
    },
    /// Rebuild the search index from what storage holds.
    Reindex,
    /// Exit 0 if the registry this environment starts (REGISTRY_HOST,
    /// REGISTRY_PORT) answers its health check, else 1: the container
    /// image's HEALTHCHECK.
    Healthcheck,
    /// Record the v2 digests of every v1 layer and tag ahead of the first
    /// v2 pull (safe while the registry serves).
    BridgeDigests,
    /// Write every v1 tag into the v2 tree for good (the v1 tree stays).
    Migrate {
        /// Only report what would be migrated; write nothing to the v2 tree
        /// (the v1 layers' digests are recorded, as a pull records them).
        #[arg(long)]
        dry_run: bool,
    },
    /// Delete what nothing reaches (safe while the registry serves); the
    /// summary goes to standard output.
    Gc {
        /// Only list what would go and how many bytes; delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Manifests no tag points at go too (default: gc_delete_untagged).
        #[arg(long)]
        delete_untagged: bool,
        /// Seconds: nothing younger is swept (default: gc_grace_period).
        #[arg(long, value_name = "S")]
        grace_period: Option<u64>,
        /// Seconds: uploads started longer ago are removed (default:
        /// gc_upload_max_age).
        #[arg(long, value_name = "S")]
        upload_max_age: Option<u64>,
        /// Seconds the collector's lease lasts unless renewed (tests).
        #[arg(long, value_name = "S", hide = true)]
        lease_ttl: Option<u64>,
    },
    /// Delete a repository whole, in both trees: every tag and manifest, and
    /// its blobs' links (safe while the registry serves; the bytes go with
    /// the next garbage collection). Refused when a rule holds one of its
    /// tags.
    DeleteRepository {
        /// The repository as v2 clients name it (`x` is also the v1
        /// `library/x`).
        name: String,
    },
    /// Print the completion script for a shell, e.g.
    /// `registry-v1 completions bash > /etc/bash_completion.d/registry-v1`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g.
    /// `registry-v1 man > /usr/local/share/man/man1/registry-v1.1`.
    Man {
        /// Write the pages of the command and of each subcommand
        /// (`registry-v1-gc.1`, ...) into this folder instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<std::path::PathBuf>,
    },
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

fn run(cli: Cli) -> anyhow::Result<()> {
    let command = cli.command.unwrap_or(Command::Serve);
    // These two read neither the environment nor the configuration.
    let env = match command {
        Command::Completions { shell } => {
            let mut definitions = Cli::command();
            let out = &mut std::io::stdout();
            clap_complete::generate(shell, &mut definitions, "registry-v1", out);
            return Ok(());
        }
        Command::Man { dir: None } => {
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
            return Ok(());
        }
        Command::Man { dir: Some(dir) } => {
            clap_mangen::generate_to(Cli::command(), &dir)
                .map_err(|e| anyhow::anyhow!("man pages not written to {}: {e}", dir.display()))?;
            return Ok(());
        }
        _ => Environment::from_process()?,
    };
    let load = || config::load(&env);
    match command {
        Command::Serve => {
            let settings = load()?;
            crate::server::memory::tune_malloc();
            init_logging(&settings);
            for notice in &settings.notices {
                log::warn!("{notice}");
            }
            actix_web::rt::System::new().block_on(crate::server::run(settings, &env))
        }
        Command::Config {
            json,
            check,
            strict,
        } => {
            let settings = load()?;
            for notice in &settings.notices {
                eprintln!("registry-v1: warning: {notice}");
            }
            let unknown = settings.notices.iter().filter(|n| n.unknown).count();
            if strict && unknown > 0 {
                anyhow::bail!(
                    "{unknown} unknown setting(s) in flavor `{}` of {} (--strict)",
                    settings.flavor,
                    settings.source
                );
            }
            if !check {
                print!("{}", config::render(&settings, json)?);
            }
            Ok(())
        }
        Command::Reindex => {
            let settings = load()?;
            init_logging(&settings);
            actix_web::rt::System::new().block_on(crate::search::reindex_command(settings))
        }
        // Only where the server listens matters: a probe that parsed the
        // whole configuration every few seconds would only add ways to fail.
        Command::Healthcheck => {
            println!("{}", crate::healthcheck::probe(&env)?);
            Ok(())
        }
        Command::BridgeDigests => {
            let settings = load()?;
            init_logging(&settings);
            actix_web::rt::System::new()
                .block_on(crate::registry::bridge::digests::command(settings))
        }
        Command::Migrate { dry_run } => {
            let settings = load()?;
            init_logging(&settings);
            actix_web::rt::System::new()
                .block_on(crate::registry::bridge::migrate::command(settings, dry_run))
        }
        Command::Gc {
            dry_run,
            delete_untagged,
            grace_period,
            upload_max_age,
            lease_ttl,
        } => {
            let settings = load()?;
            init_logging(&settings);
            use crate::registry::collector;
            let seconds = std::time::Duration::from_secs;
            let mut options = collector::Options::from_settings(&settings);
            options.dry_run = dry_run;
            options.delete_untagged |= delete_untagged;
            options.grace_period = grace_period.map_or(options.grace_period, seconds);
            options.upload_max_age = upload_max_age.map_or(options.upload_max_age, seconds);
            options.lease_ttl = lease_ttl.map_or(options.lease_ttl, seconds).max(seconds(1));
            options.progress = true;
            actix_web::rt::System::new().block_on(collector::command(settings, options))
        }
        Command::DeleteRepository { name } => {
            let settings = load()?;
            init_logging(&settings);
            actix_web::rt::System::new().block_on(crate::registry::bridge::repository::command(
                settings, &name,
            ))
        }
        // Answered above, before the environment was read.
        Command::Completions { .. } | Command::Man { .. } => Ok(()),
    }
}

/// `loglevel` sets the level; `RUST_LOG`, when set, wins. The PostgreSQL
/// driver logs every statement with its parameters at debug: kept at info
/// unless `RUST_LOG` names it.
fn init_logging(settings: &Settings) {
    env_logger::Builder::new()
        .filter_level(settings.loglevel.as_filter())
        .filter_module("tokio_postgres", log::LevelFilter::Info)
        .parse_env("RUST_LOG")
        .init();
}

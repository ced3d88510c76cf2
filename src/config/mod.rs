//! The legacy configuration: a YAML file of flavors, one chosen by
//! `SETTINGS_FLAVOR`, with `_env:VAR[:DEFAULT]` values, turned into typed
//! [`Settings`].
//!
//! - [`yaml`]: YAML 1.1 as PyYAML reads it, merge keys included;
//! - [`env`]: `_env:` values;
//! - [`settings`]: the typed result, and every type check;
//! - [`render`]: `registry-v1 config`, secrets masked;
//! - [`keys`]: unknown keys and the old registry's keys not acted on;
//! - [`Pattern`]: the globs and regular expressions of the rules.

mod env;
pub mod keys;
mod pattern;
mod render;
mod settings;
pub mod yaml;

pub use env::Lookup;
pub use pattern::Pattern;
pub use render::{is_secret, mask, masked_url, render, MASK};
pub use settings::*;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml::Value;

/// The project's `config_sample.yml`: the configuration when no file is
/// given, so that the bare binary is a working registry.
pub const SAMPLE: &str = include_str!("../../config_sample.yml");

/// Looked for in the working directory when `DOCKER_REGISTRY_CONFIG` is unset.
pub const DEFAULT_FILE: &str = "config/config.yml";

/// The process environment the registry reads, typed once with `envy`.
#[derive(Debug, Clone, Deserialize)]
pub struct Environment {
    /// `DOCKER_REGISTRY_CONFIG`: path of the YAML file.
    pub docker_registry_config: Option<std::path::PathBuf>,
    /// `SETTINGS_FLAVOR`: the flavor to use.
    #[serde(default = "default_flavor")]
    pub settings_flavor: String,
    #[serde(default = "default_host")]
    pub registry_host: String,
    #[serde(default = "default_port")]
    pub registry_port: u16,
    /// `GUNICORN_WORKERS`: sizes the worker threads.
    pub gunicorn_workers: Option<usize>,
}

/// The variables [`Environment`] reads.
const ENVIRONMENT: &[&str] = &[
    "DOCKER_REGISTRY_CONFIG",
    "SETTINGS_FLAVOR",
    "REGISTRY_HOST",
    "REGISTRY_PORT",
    "GUNICORN_WORKERS",
];

fn default_flavor() -> String {
    "dev".to_owned()
}

fn default_host() -> String {
    "0.0.0.0".to_owned()
}

fn default_port() -> u16 {
    5000
}

impl Environment {
    /// Reads the process environment.
    pub fn from_process() -> Result<Environment, ConfigError> {
        Environment::from_lookup(&|name| std::env::var_os(name))
    }

    /// Reads the variables through `lookup`. Only these exact (upper-case)
    /// names count; an empty variable is the same as an unset one.
    pub fn from_lookup(lookup: Lookup) -> Result<Environment, ConfigError> {
        let mut vars = Vec::new();
        for &name in ENVIRONMENT {
            let Some(value) = lookup(name) else { continue };
            let value = value
                .into_string()
                .map_err(|_| ConfigError::Environment(format!("{name} is not valid UTF-8")))?;
            if !value.is_empty() {
                vars.push((name.to_owned(), value));
            }
        }
        let env: Environment = envy::from_iter(vars).map_err(|e| {
            ConfigError::Environment(format!(
                "{e} (REGISTRY_PORT takes a port number, 0-65535; GUNICORN_WORKERS a number \
                 of workers)"
            ))
        })?;
        if env.gunicorn_workers == Some(0) {
            return Err(ConfigError::Environment(
                "GUNICORN_WORKERS is 0; it takes a number of workers, at least 1".to_owned(),
            ));
        }
        Ok(env)
    }
}

/// Why the configuration cannot be used. Each message names the file, the
/// flavor, the key or the variable at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid environment: {0}")]
    Environment(String),
    #[error("cannot read the configuration file {}: {error}{hint}", .path.display())]
    Unreadable {
        path: PathBuf,
        /// Where a relative path was looked for.
        hint: String,
        error: std::io::Error,
    },
    #[error("the configuration file {origin} is not valid YAML: {error}")]
    Yaml {
        origin: ConfigSource,
        error: yaml::YamlError,
    },
    #[error(
        "the configuration file {origin} holds no flavors: its top level must be a mapping \
         of flavor names (dev, prod, ...) to settings"
    )]
    NoFlavors { origin: ConfigSource },
    #[error(
        "The specified flavor ({flavor}) is missing in your config file ({origin}). {}",
        flavor_hint(.available)
    )]
    UnknownFlavor {
        flavor: String,
        origin: ConfigSource,
        available: Vec<String>,
    },
    #[error("flavor `{flavor}` in {origin} must be a mapping of settings, not {found}")]
    FlavorNotMapping {
        flavor: String,
        origin: ConfigSource,
        found: String,
    },
    #[error("setting `{key}` of flavor `{flavor}` in {origin}: {error}")]
    Env {
        key: String,
        flavor: String,
        origin: ConfigSource,
        error: Box<env::EnvError>,
    },
    #[error("setting `{key}` of flavor `{flavor}` in {origin} {message}")]
    Setting {
        key: String,
        flavor: String,
        origin: String,
        message: String,
    },
    #[error("cannot print the configuration: {0}")]
    Output(String),
}

fn flavor_hint(available: &[String]) -> String {
    if available.is_empty() {
        "It defines no flavors.".to_owned()
    } else {
        format!(
            "It defines: {}. Choose one with SETTINGS_FLAVOR.",
            available.join(", ")
        )
    }
}

/// Loads the configuration the environment points at, with `_env:` values
/// from the process environment.
pub fn load(env: &Environment) -> Result<Settings, ConfigError> {
    let (source, text) = read_source(env)?;
    from_text(&text, source, &env.settings_flavor, &|name| {
        std::env::var_os(name)
    })
}

/// `DOCKER_REGISTRY_CONFIG` (relative to the working directory), else
/// `config/config.yml` if there is one, else the built-in sample.
fn read_source(env: &Environment) -> Result<(ConfigSource, String), ConfigError> {
    let (path, named_by) = match &env.docker_registry_config {
        Some(path) => (path.clone(), "DOCKER_REGISTRY_CONFIG"),
        None if Path::new(DEFAULT_FILE).exists() => (PathBuf::from(DEFAULT_FILE), "the default"),
        None => return Ok((ConfigSource::BuiltIn, SAMPLE.to_owned())),
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok((ConfigSource::File(path), text)),
        Err(error) => {
            let hint = if path.is_relative() {
                let cwd = std::env::current_dir()
                    .map_or_else(|_| "?".to_owned(), |d| d.display().to_string());
                format!(" ({named_by}; a relative path is taken from the working directory, {cwd})")
            } else {
                format!(" ({named_by})")
            };
            Err(ConfigError::Unreadable { path, hint, error })
        }
    }
}

/// Reads a configuration text and types its flavor `flavor`, reading
/// `_env:` variables through `lookup`.
pub fn from_text(
    text: &str,
    source: ConfigSource,
    flavor: &str,
    lookup: Lookup,
) -> Result<Settings, ConfigError> {
    let document = match yaml::parse(text) {
        Ok(document) => document,
        Err(error) => {
            return Err(ConfigError::Yaml {
                origin: source,
                error,
            })
        }
    };
    let Value::Mapping(mut flavors) = document else {
        return Err(ConfigError::NoFlavors { origin: source });
    };
    let Some(tree) = flavors.remove(flavor) else {
        return Err(ConfigError::UnknownFlavor {
            flavor: flavor.to_owned(),
            available: flavors.keys().map(env::key_text).collect(),
            origin: source,
        });
    };
    let mut tree = match tree {
        // An empty flavor: every setting at its default.
        Value::Null => Value::Mapping(Default::default()),
        Value::Mapping(m) => Value::Mapping(m),
        other => {
            return Err(ConfigError::FlavorNotMapping {
                flavor: flavor.to_owned(),
                origin: source,
                found: settings::describe(&other, false),
            })
        }
    };
    let mut origins = env::Origins::new();
    if let Err(error) = env::expand(&mut tree, lookup, &mut origins) {
        return Err(ConfigError::Env {
            key: shorten(error.key()),
            flavor: flavor.to_owned(),
            origin: source,
            error: Box::new(error),
        });
    }
    let mut settings = Settings::from_tree(flavor.to_owned(), source, tree, &origins)?;
    let mut notices = keys::notices(&settings, text);
    notices.append(&mut settings.notices);
    settings.notices = notices;
    Ok(settings)
}

/// A dotted path fit for a one-line message (a runaway `_env:` nesting
/// makes very long ones).
fn shorten(path: &str) -> String {
    const MAX: usize = 120;
    match path.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &path[..cut]),
        None => path.to_owned(),
    }
}

/// The flavors a configuration text defines, in file order.
pub fn flavors(text: &str) -> Result<Vec<String>, yaml::YamlError> {
    Ok(match yaml::parse(text)? {
        Value::Mapping(m) => m.keys().map(env::key_text).collect(),
        _ => Vec::new(),
    })
}

/// A [`Lookup`] over fixed pairs, for tests and tools that must not read
/// the process environment.
pub fn lookup_from(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
    let pairs: Vec<(String, OsString)> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
        .collect();
    move |name| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

#[cfg(test)]
mod tests;

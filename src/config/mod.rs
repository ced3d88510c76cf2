//! The legacy configuration: a YAML file of flavors, one chosen by
//! `SETTINGS_FLAVOR`, with `_env:VAR[:DEFAULT]` values, turned into typed
//! [`Settings`].
//!
//! OWNER: the configuration engine (issue 2) replaces this placeholder loader.

mod settings;

pub use settings::*;

use serde::Deserialize;

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

fn default_flavor() -> String {
    "dev".to_owned()
}

fn default_host() -> String {
    "0.0.0.0".to_owned()
}

fn default_port() -> u16 {
    5000
}

/// Why the configuration cannot be used. Each message names the file, the
/// flavor, the key or the variable at fault.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

/// INTERIM: replaced by the configuration engine.
pub fn load(env: &Environment) -> Result<Settings, ConfigError> {
    Ok(Settings {
        flavor: env.settings_flavor.clone(),
        source: ConfigSource::BuiltIn,
        loglevel: LogLevel::Info,
        debug: false,
        issue: "\"docker-registry server\"".into(),
        standalone: true,
        index_endpoint: None,
        disable_token_auth: false,
        privileged_key: None,
        registry_endpoints: None,
        storage: StorageSettings {
            kind: StorageKind::Local,
            path: std::env::var("STORAGE_PATH").unwrap_or_else(|_| "/tmp/registry".into()),
            redirect: false,
            nginx_x_accel_redirect: None,
            s3: None,
        },
        search: SearchSettings {
            backend: SearchBackend::Disabled,
            database: None,
        },
        cors: CorsSettings::default(),
        mirroring: false,
        raw: serde_yaml::Value::Null,
    })
}

/// INTERIM: replaced by the configuration engine.
pub fn render(settings: &Settings, json: bool) -> Result<String, ConfigError> {
    let _ = json;
    Ok(format!("{settings:?}\n"))
}

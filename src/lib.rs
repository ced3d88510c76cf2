//! A drop-in successor to the classic Python docker-registry (the v1
//! protocol): same configuration file, same storage layout, same HTTP API,
//! same search database.
//!
//! The layers, from the bottom up:
//! - [`config`]: the legacy YAML file (flavors, `_env:`), typed [`config::Settings`];
//! - [`names`]: repository names and image ids, validated once;
//! - [`storage`]: one [`storage::Storage`] trait, the on-disk/in-bucket layout, a driver a file;
//! - [`search`]: one [`search::SearchIndex`] trait and the SQLite index;
//! - [`events`]: what happened to repositories and tags, for whoever listens (search);
//! - [`http`]: what both APIs share on the wire: bodies, ranges, blob serving;
//! - [`v1`]: the HTTP handlers of the v1 API, grouped as the API is;
//! - [`server`]: assembly, JSON errors, middleware;
//! - [`cli`]: the command line.

pub mod cli;
pub mod config;
pub mod events;
pub mod http;
pub mod names;
pub mod registry;
pub mod search;
pub mod server;
pub mod storage;
pub mod v1;
pub mod v2;

//! What a flavor holds that this build does not act on: keys it does not
//! know (a typo, or a key of someone else's), and settings of the old
//! registry it knows but does not read. Neither stops a start (old files
//! carry keys of their own); each gets one line at startup and from
//! `registry-v1 config --check`, which `--strict` turns into a failure for
//! the unknown ones.

use std::fmt;

use serde_yaml::{Mapping, Value};

use super::env::key_text;
use super::settings::{Settings, StorageKind, KNOWN_KEYS};
use super::ConfigSource;

/// One line about the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// A key this build does not know at all (what `--strict` refuses).
    pub unknown: bool,
    pub message: String,
}

impl Notice {
    /// A setting that is read or known but not acted on.
    pub fn ignored(message: String) -> Notice {
        Notice {
            unknown: false,
            message,
        }
    }
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Keys of the old registry (its sample file's flavors, and older releases)
/// that this build does not read. They are not "unknown"; [`ignored`] says
/// what becomes of each one that is set.
pub const LEGACY_KEYS: &[&str] = &[
    "bugsnag",
    "secret_key",
    "cors.send_wildcard",
    "cors.always_send",
    "cors.automatic_options",
    "cors.vary_header",
    "cors.resources",
    "s3_use_sigv4",
    "boto_calling_format",
    "boto_debug",
    "oauth2",
    "cloudfront.base",
    "cloudfront.keyid",
    "cloudfront.keysecret",
    // Storages this build does not have: `serve` refuses them.
    "azure_storage_account_name",
    "azure_storage_account_key",
    "azure_storage_container",
    "azure_use_https",
    "storage_alternate",
    "elliptics_nodes",
    "elliptics_wait_timeout",
    "elliptics_check_timeout",
    "elliptics_io_thread_num",
    "elliptics_net_thread_num",
    "elliptics_nonblocking_io_thread_num",
    "elliptics_groups",
    "elliptics_verbosity",
    "elliptics_logfile",
    "elliptics_addr_family",
    "oss_host",
    "oss_bucket",
    "oss_accessid",
    "oss_accesskey",
];

/// Whether `path` (dotted) is a key this build knows.
pub fn is_known(path: &str) -> bool {
    KNOWN_KEYS.contains(&path) || LEGACY_KEYS.contains(&path)
}

/// Whether the known key `name` is a mapping of named sections
/// (`upstreams.<name>.url`), whose sections' keys are checked.
fn is_named_sections(name: &str) -> bool {
    KNOWN_KEYS
        .iter()
        .any(|k| k.strip_prefix(name).is_some_and(|r| r.starts_with(".*.")))
}

/// Whether the known key `name` is a mapping of settings (`cors`), whose
/// own keys are checked too.
fn is_section(name: &str) -> bool {
    KNOWN_KEYS
        .iter()
        .chain(LEGACY_KEYS)
        .any(|k| k.strip_prefix(name).is_some_and(|r| r.starts_with('.')))
}

/// Every notice about `settings`: its unknown keys (with the line each
/// stands on in `text`, and the nearest known key), then the settings of
/// the old registry it sets that this build does not act on.
pub fn notices(settings: &Settings, text: &str) -> Vec<Notice> {
    let lines = super::yaml::key_lines(text);
    let place = |path: &str| place(&lines, &settings.flavor, &settings.source, path);
    let mut out = Vec::new();
    let empty = Mapping::new();
    let top = settings.raw.as_mapping().unwrap_or(&empty);
    for (key, value) in top {
        let key = key_text(key);
        if key == "<<" {
            continue;
        }
        if !is_known(&key) && !is_section(&key) {
            out.push(unknown(&key, &place(&key)));
            continue;
        }
        // A list of sections (`rules`): each item's keys.
        if let (true, Value::Sequence(list)) = (is_named_sections(&key), value) {
            for (i, item) in list.iter().enumerate() {
                let Value::Mapping(inner) = item else {
                    continue;
                };
                for inner_key in inner.keys() {
                    let inner_key = key_text(inner_key);
                    if !is_known(&format!("{key}.*.{inner_key}")) {
                        let path = format!("{key}[{i}].{inner_key}");
                        out.push(unknown(&path, &place(&path)));
                    }
                }
            }
            continue;
        }
        if let (true, Value::Mapping(named)) = (is_named_sections(&key), value) {
            for (name, section) in named {
                let Value::Mapping(inner) = section else {
                    continue;
                };
                for inner_key in inner.keys() {
                    let inner_key = key_text(inner_key);
                    if !is_known(&format!("{key}.*.{inner_key}")) {
                        let path = format!("{key}.{}.{inner_key}", key_text(name));
                        out.push(unknown(&path, &place(&path)));
                    }
                }
            }
            continue;
        }
        if let (true, Value::Mapping(inner)) = (is_section(&key), value) {
            for (inner_key, inner_value) in inner {
                let path = format!("{key}.{}", key_text(inner_key));
                if !is_known(&path) && !is_section(&path) {
                    out.push(unknown(&path, &place(&path)));
                    continue;
                }
                // One level further: `notifications.events.<key>`, and
                // each item of a list (`notifications.endpoints[0].<key>`).
                let items: Vec<(String, &Mapping)> = match inner_value {
                    Value::Mapping(m) => vec![(path.clone(), m)],
                    Value::Sequence(list) => list
                        .iter()
                        .enumerate()
                        .filter_map(|(i, item)| Some((format!("{path}[{i}]"), item.as_mapping()?)))
                        .collect(),
                    _ => continue,
                };
                let pattern = match inner_value {
                    Value::Sequence(_) => format!("{path}.*"),
                    _ => path.clone(),
                };
                for (shown, map) in items {
                    for deep in map.keys() {
                        let deep = key_text(deep);
                        let known = format!("{pattern}.{deep}");
                        if !is_known(&known) && !is_section(&known) {
                            let shown = format!("{shown}.{deep}");
                            out.push(unknown(&shown, &place(&shown)));
                        }
                    }
                }
            }
        }
    }
    for (path, message) in ignored(settings) {
        out.push(Notice::ignored(format!(
            "setting `{path}` {}: {message}",
            place(&path)
        )));
    }
    out
}

fn unknown(path: &str, place: &str) -> Notice {
    let hint = match nearest(path) {
        Some(near) => format!(" (did you mean `{near}`?)"),
        None => String::new(),
    };
    Notice {
        unknown: true,
        message: format!(
            "unknown setting `{path}` {place} is not read by registry-v1{hint}; it is kept \
             and ignored"
        ),
    }
}

/// The known key closest to `path` in edit distance, when close enough to
/// be a slip (a third of its length at most).
pub fn nearest(path: &str) -> Option<&'static str> {
    let (section, name) = match path.rsplit_once('.') {
        Some((section, name)) => (Some(section), name),
        None => (None, path),
    };
    // `upstreams.hub.urll` is compared with `upstreams.*.url`.
    let named = section
        .and_then(|s| s.split_once('.'))
        .filter(|(top, _)| is_named_sections(top))
        .map(|(top, _)| format!("{top}.*"));
    let section = named.as_deref().or(section);
    KNOWN_KEYS
        .iter()
        .chain(LEGACY_KEYS)
        .filter(|k| match (section, k.rsplit_once('.')) {
            (Some(s), Some((ks, _))) => s == ks,
            (None, None) => true,
            _ => false,
        })
        .map(|k| {
            let kname = k.rsplit_once('.').map_or(*k, |(_, n)| n);
            (strsim::damerau_levenshtein(name, kname), *k)
        })
        .filter(|(d, _)| *d > 0 && *d <= (name.chars().count() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// `of flavor `dev` in FILE, line N`: the key in the flavor itself, else
/// where a merged-in mapping holds it (the first such place in the file).
fn place(
    lines: &[(Vec<String>, usize)],
    flavor: &str,
    source: &ConfigSource,
    path: &str,
) -> String {
    let parts: Vec<&str> = path.split('.').collect();
    let own = lines.iter().find(|(at, _)| {
        at.len() == parts.len() + 1 && at[0] == flavor && at[1..].iter().eq(parts.iter())
    });
    let merged = || {
        lines
            .iter()
            .find(|(at, _)| at.len() == parts.len() + 1 && at[1..].iter().eq(parts.iter()))
    };
    match own.or_else(merged) {
        Some((at, line)) if at[0] == flavor => {
            format!("of flavor `{flavor}` in {source}, line {line}")
        }
        Some((at, line)) => format!(
            "of flavor `{flavor}` in {source}, line {line} (in `{}`, merged in)",
            at[0]
        ),
        None => format!("of flavor `{flavor}` in {source}"),
    }
}

/// Set: neither null nor empty text nor an empty mapping.
fn set(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Mapping(m)) => m.values().any(|v| set(Some(v))),
        Some(_) => true,
    }
}

/// Set to something other than false or 0 (a debug switch, a flag whose
/// off state is what this build does anyway).
fn on(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        other => set(other),
    }
}

/// The settings of the old registry this flavor sets and this build does
/// not act on, each with what to do instead.
fn ignored(settings: &Settings) -> Vec<(String, String)> {
    let raw = &settings.raw;
    let get = |path: &str| -> Option<&Value> {
        let mut value = raw;
        for part in path.split('.') {
            value = value.as_mapping()?.get(part)?;
        }
        Some(value)
    };
    let mut out: Vec<(String, String)> = Vec::new();
    let mut say = |path: &str, message: &str| out.push((path.to_owned(), message.to_owned()));
    if set(get("bugsnag")) {
        say(
            "bugsnag",
            "Bugsnag is not supported by registry-v1 (it needs the service's own client, and \
             the service is not reachable from most places). Server errors are logged at level \
             error, counted by the metrics endpoint (metrics_address: \
             registry_http_requests_total by status, registry_backend_failures_total) and can be mailed \
             (email_exceptions)",
        );
    }
    if settings
        .cache
        .as_ref()
        .is_some_and(|c| c.section == "cache")
        && set(get("cache_lru.host"))
    {
        say(
            "cache_lru.host",
            "not read: `cache` is set, and registry-v1 keeps one Redis cache of small files \
             for both",
        );
    }
    for key in [
        "send_wildcard",
        "always_send",
        "automatic_options",
        "vary_header",
        "resources",
    ] {
        if set(get(&format!("cors.{key}"))) {
            say(
                &format!("cors.{key}"),
                "not read: registry-v1's CORS applies to every route, answers preflight \
                 requests itself, and sends `*` when origins is `*`",
            );
        }
    }
    if set(get("secret_key")) {
        say(
            "secret_key",
            "not read: a key of older docker-registry releases; nothing in registry-v1 is \
             signed with it",
        );
    }
    if get("s3_use_sigv4") == Some(&Value::Bool(false)) {
        say(
            "s3_use_sigv4",
            "not read: registry-v1 always signs S3 requests with Signature Version 4",
        );
    }
    if set(get("boto_calling_format")) {
        say(
            "boto_calling_format",
            "not read: registry-v1 addresses the bucket path-style with boto_host, \
             virtual-host style on AWS",
        );
    }
    if on(get("boto_debug")) {
        say(
            "boto_debug",
            "not read: use loglevel debug (or RUST_LOG=s3=debug) for the S3 client's log",
        );
    }
    if on(get("oauth2")) {
        say(
            "oauth2",
            "not supported: registry-v1 reaches GCS through its S3-compatible interface with \
             HMAC keys (gs_access_key, gs_secret_key)",
        );
    }
    if set(get("cloudfront")) {
        say(
            "cloudfront",
            "not supported: layer downloads are served by the registry, or redirected to the \
             bucket with storage_redirect",
        );
    }
    let kind = &settings.storage.kind;
    if settings.storage.redirect && *kind == StorageKind::Local {
        say(
            "storage_redirect",
            "not acted on: local storage has no URL of its own to send clients to; layers are \
             served by the registry (or by nginx, with nginx_x_accel_redirect)",
        );
    }
    if settings.storage.nginx_x_accel_redirect.is_some() && *kind != StorageKind::Local {
        say(
            "nginx_x_accel_redirect",
            "not acted on: nginx can only send files of local storage; layers are served by \
             the registry (or redirected to the bucket with storage_redirect)",
        );
    }
    // Settings of a storage other than the one in use.
    if !matches!(kind, StorageKind::Unsupported(_)) {
        let groups: [(&str, &[&str], bool); 3] = [
            (
                "s3",
                &[
                    "s3_bucket",
                    "s3_region",
                    "s3_access_key",
                    "s3_secret_key",
                    "s3_encrypt",
                    "s3_secure",
                    "boto_host",
                    "boto_port",
                ],
                *kind == StorageKind::S3,
            ),
            (
                "gcs",
                &["gs_access_key", "gs_secret_key"],
                *kind == StorageKind::Gcs,
            ),
            (
                "swift",
                &[
                    "swift_authurl",
                    "swift_user",
                    "swift_password",
                    "swift_tenant_name",
                    "swift_auth_token",
                    "swift_object_storage_url",
                    "swift_temp_url_key",
                ],
                *kind == StorageKind::Swift,
            ),
        ];
        for (storage, keys, in_use) in groups {
            if in_use {
                continue;
            }
            // true/false flags are in the sample's flavors whatever the
            // storage: only text (a bucket, a key, a host) is news.
            let given: Vec<&str> = keys
                .iter()
                .copied()
                .filter(|k| matches!(get(k), Some(Value::String(s)) if !s.is_empty()))
                .collect();
            if let Some(first) = given.first() {
                say(
                    first,
                    &format!(
                        "not read, nor {}: settings of storage {storage}, and this flavor's \
                         storage is {kind}",
                        if given.len() > 1 {
                            given[1..].join(", ")
                        } else {
                            "anything else of it".to_owned()
                        }
                    ),
                );
            }
        }
    }
    out
}

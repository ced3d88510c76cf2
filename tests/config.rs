//! The configuration through the real binary: `registry-v1 config`, its
//! errors, where the file is looked for, and the `flavors/` examples.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A startup error: exit status 1, one paragraph on stderr naming every
/// `needle`, nothing on stdout, no panic.
fn assert_fails_with(out: &Output, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(out.stdout.is_empty(), "stdout: {}", stdout(out));
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one paragraph: {err}");
    assert!(err.starts_with("registry-v1: "), "{err}");
    for needle in needles {
        assert!(err.contains(needle), "{needle:?} not in: {err}");
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn flavors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("flavors")
}

#[test]
fn nothing_configured_is_the_built_in_dev_flavor() {
    let out = common::run(&["config", "--check"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out.stdout.is_empty() && out.stderr.is_empty());

    let out = common::run(&["config"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("# registry-v1: flavor `dev` of built-in config_sample.yml"),
        "{text}"
    );
    for line in [
        "storage: local",
        "storage_path: /tmp/registry",
        "loglevel: debug",
        "debug: true",
        "search_backend: sqlalchemy",
        "issue: \"\\\"docker-registry server\\\"\"",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} not in:\n{text}");
    }
}

#[test]
fn config_json_shows_the_flavor_with_secrets_masked() {
    let out = common::run(
        &["config", "--json"],
        &[
            ("SETTINGS_FLAVOR", "prod"),
            ("AWS_BUCKET", "my-bucket"),
            ("AWS_KEY", "AKIAVISIBLENOT"),
            ("AWS_SECRET", "hunter2hunter2"),
            ("SMTP_PASSWORD", "mailpass"),
            ("AWS_PORT", "9000"),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for secret in ["AKIAVISIBLENOT", "hunter2hunter2", "mailpass"] {
        assert!(!text.contains(secret), "{secret} shown:\n{text}");
    }
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["storage"], "s3");
    assert_eq!(json["s3_bucket"], "my-bucket");
    assert_eq!(json["storage_path"], "/prod");
    assert_eq!(json["s3_encrypt"], true);
    assert_eq!(json["boto_port"], 9000);
    assert_eq!(json["s3_access_key"], "*****");
    assert_eq!(json["s3_secret_key"], "*****");
    assert_eq!(json["email_exceptions"]["smtp_password"], "*****");
    // Unset secrets show as unset.
    assert_eq!(json["cache"]["password"], serde_json::Value::Null);
}

#[test]
fn config_yaml_masks_secrets_too() {
    let out = common::run(
        &["config"],
        &[
            ("SETTINGS_FLAVOR", "gcs"),
            ("GCS_SECRET", "gcs-secret-value"),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(!text.contains("gcs-secret-value"), "{text}");
    assert!(
        text.lines().any(|l| l == "gs_secret_key: \"*****\""),
        "{text}"
    );
}

#[test]
fn a_file_named_by_docker_registry_config_relative_to_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("etc")).unwrap();
    write(
        &dir.path().join("etc"),
        "registry.yml",
        "mine:\n  storage: local\n  storage_path: /srv/mine\n",
    );
    let out = common::command()
        .args(["config", "--json"])
        .current_dir(dir.path())
        .env("DOCKER_REGISTRY_CONFIG", "etc/registry.yml")
        .env("SETTINGS_FLAVOR", "mine")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["storage_path"], "/srv/mine");
}

#[test]
fn config_slash_config_yml_in_the_working_directory_is_used_when_present() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("config")).unwrap();
    write(
        &dir.path().join("config"),
        "config.yml",
        "dev:\n  storage: local\n  storage_path: /srv/from-config-dir\n",
    );
    let out = common::command()
        .args(["config", "--json"])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["storage_path"], "/srv/from-config-dir");
}

#[test]
fn missing_file_names_the_path() {
    let out = common::run(
        &["config", "--check"],
        &[("DOCKER_REGISTRY_CONFIG", "/nonexistent/dir/registry.yml")],
    );
    assert_fails_with(
        &out,
        &["/nonexistent/dir/registry.yml", "DOCKER_REGISTRY_CONFIG"],
    );
}

#[test]
fn invalid_yaml_names_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "broken.yml",
        "dev:\n    storage: local\n   storage_path: /tmp/x\n",
    );
    let out = common::run(
        &["config", "--check"],
        &[("DOCKER_REGISTRY_CONFIG", path.to_str().unwrap())],
    );
    assert_fails_with(&out, &[path.to_str().unwrap(), "line 3, column"]);
}

#[test]
fn unknown_flavor_names_it_the_file_and_the_flavors_there_are() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "two.yml",
        "alpha: {storage: local}\nbeta: {storage: s3}\n",
    );
    let file = path.to_str().unwrap();
    let out = common::run(
        &["config", "--check"],
        &[
            ("DOCKER_REGISTRY_CONFIG", file),
            ("SETTINGS_FLAVOR", "gamma"),
        ],
    );
    let expected = format!("The specified flavor (gamma) is missing in your config file ({file})");
    assert_fails_with(&out, &[&expected, "alpha, beta"]);
    // The default flavor, dev, missing from a file that lacks it.
    let out = common::run(&["config", "--check"], &[("DOCKER_REGISTRY_CONFIG", file)]);
    assert_fails_with(&out, &["(dev)", file]);
}

#[test]
fn bad_env_value_names_the_variable_and_the_value() {
    let out = common::run(
        &["config", "--check"],
        &[("CORS_ORIGINS", "[https://a.example")],
    );
    assert_fails_with(
        &out,
        &[
            "CORS_ORIGINS",
            "`[https://a.example`",
            "cors.origins",
            "`dev`",
        ],
    );
}

#[test]
fn bad_registry_port_names_the_variable() {
    let out = common::run(&["config", "--check"], &[("REGISTRY_PORT", "abc")]);
    assert_fails_with(&out, &["REGISTRY_PORT", "abc"]);
}

#[test]
fn wrong_types_name_the_key_and_the_flavor() {
    // A quoted boolean is a string.
    let out = common::run(&["config", "--check"], &[("DEBUG", "\"true\"")]);
    assert_fails_with(&out, &["`debug`", "`dev`", "DEBUG", "quoted"]);
    let out = common::run(
        &["config", "--check"],
        &[("SETTINGS_FLAVOR", "prod"), ("AWS_PORT", "ninety")],
    );
    assert_fails_with(&out, &["`boto_port`", "`prod`", "port"]);
    let out = common::run(&["config", "--check"], &[("SEARCH_BACKEND", "elastic")]);
    assert_fails_with(&out, &["`search_backend`", "`dev`", "elastic"]);
    let out = common::run(&["config", "--check"], &[("LOGLEVEL", "loud")]);
    assert_fails_with(&out, &["`loglevel`", "loud"]);

    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "ftp.yml", "dev:\n  storage: ftp\n");
    let out = common::run(
        &["config", "--check"],
        &[("DOCKER_REGISTRY_CONFIG", path.to_str().unwrap())],
    );
    assert_fails_with(&out, &["`storage`", "`dev`", "ftp", path.to_str().unwrap()]);
}

#[test]
fn storages_this_build_lacks_still_load() {
    for flavor in [
        "swift",
        "glance",
        "openstack-swift",
        "elliptics",
        "azureblob",
        "oss",
    ] {
        let out = common::run(&["config", "--check"], &[("SETTINGS_FLAVOR", flavor)]);
        assert!(out.status.success(), "{flavor}: {}", stderr(&out));
    }
}

#[test]
fn serve_refuses_a_bad_configuration_before_listening() {
    let out = common::run(&["serve"], &[("STANDALONE", "maybe please")]);
    assert_fails_with(&out, &["`standalone`", "`dev`", "STANDALONE"]);
}

#[test]
fn help_documents_the_environment() {
    let out = common::run(&["--help"], &[]);
    assert!(out.status.success());
    let text = stdout(&out);
    for var in [
        "DOCKER_REGISTRY_CONFIG",
        "SETTINGS_FLAVOR",
        "REGISTRY_HOST",
        "REGISTRY_PORT",
        "GUNICORN_WORKERS",
        "RUST_LOG",
        "_env:",
    ] {
        assert!(text.contains(var), "{var} not in --help:\n{text}");
    }
    let out = common::run(&["config", "--help"], &[]);
    assert!(stdout(&out).contains("--json") && stdout(&out).contains("--check"));
}

/// Every `NAME` of `_env:NAME` in a file.
fn env_names(text: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(r"_env:([A-Za-z0-9_]+)").unwrap();
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| {
            re.captures_iter(l)
                .map(|c| c[1].to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn every_example_in_flavors_loads_and_documents_its_variables() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(flavors_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let header: String = text
            .lines()
            .filter(|l| l.trim_start().starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        for var in env_names(&text) {
            assert!(
                header.contains(&var),
                "{}: {var} not described",
                file.display()
            );
        }
        let flavors = registry_v1::config::flavors(&text).unwrap();
        assert!(
            flavors.iter().any(|f| f == "dev"),
            "{}: no dev flavor",
            file.display()
        );
        for flavor in &flavors {
            let out = common::run(
                &["config", "--check"],
                &[
                    ("DOCKER_REGISTRY_CONFIG", file.to_str().unwrap()),
                    ("SETTINGS_FLAVOR", flavor),
                ],
            );
            assert!(
                out.status.success(),
                "{} {flavor}: {}",
                file.display(),
                stderr(&out)
            );
        }
    }
}

#[test]
fn the_object_store_examples_give_s3_settings() {
    use registry_v1::config::{from_text, lookup_from, ConfigSource, StorageKind};
    let load = |name: &str, env: &[(&str, &str)]| {
        let path = flavors_dir().join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        from_text(&text, ConfigSource::File(path), "prod", &lookup_from(env)).unwrap()
    };
    let s = load(
        "s3.yml",
        &[("AWS_BUCKET", "b"), ("AWS_REGION", "eu-west-1")],
    );
    let s3 = s.storage.s3.unwrap();
    assert_eq!(
        (s3.bucket.as_str(), s3.region.as_deref()),
        ("b", Some("eu-west-1"))
    );
    assert!(s3.secure && s3.encrypt && s3.host.is_none());

    let s = load(
        "s3-compatible.yml",
        &[("AWS_BUCKET", "r"), ("AWS_PORT", "7480")],
    );
    let s3 = s.storage.s3.unwrap();
    assert_eq!(
        (s3.host.as_deref(), s3.port, s3.secure),
        (Some("localhost"), Some(7480), false)
    );

    let s = load("gcs.yml", &[("GCS_BUCKET", "g")]);
    assert_eq!(s.storage.kind, StorageKind::Gcs);
    assert_eq!(
        s.storage.s3.unwrap().host.as_deref(),
        Some("storage.googleapis.com")
    );

    let s = load("behind-nginx.yml", &[]);
    assert_eq!(
        s.storage.nginx_x_accel_redirect.as_deref(),
        Some("/registry-files")
    );
}

const MISSPELLED: &str = "\
common: &common
    loglevel: info
    standalone: true
prod:
    <<: *common
    storage: local
    storage_pth: /data
    serach_backend: sqlalchemy
    bugsnag: 0123abcd
    upstreams:
        hub:
            url: https://registry-1.docker.io
            tag_tll: 60
";

#[test]
fn unknown_keys_are_warned_about_and_strict_refuses_them() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "registry.yml", MISSPELLED);
    let env = [
        ("DOCKER_REGISTRY_CONFIG", file.to_str().unwrap()),
        ("SETTINGS_FLAVOR", "prod"),
    ];
    let out = common::run(&["config", "--check"], &env);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(out.stdout.is_empty());
    let place = format!("of flavor `prod` in {}", file.display());
    for needle in [
        format!("unknown setting `storage_pth` {place}, line 7"),
        "did you mean `storage_path`?".to_owned(),
        format!("unknown setting `serach_backend` {place}, line 8"),
        "did you mean `search_backend`?".to_owned(),
        format!("setting `bugsnag` {place}, line 9: Bugsnag is not supported"),
        format!("unknown setting `upstreams.hub.tag_tll` {place}, line 13"),
        "did you mean `upstreams.*.tag_ttl`?".to_owned(),
    ] {
        assert!(err.contains(&needle), "{needle:?} not in:\n{err}");
    }
    assert_eq!(err.lines().count(), 4, "{err}");
    assert!(err.lines().all(|l| l.starts_with("registry-v1: warning: ")));
    // The key of bugsnag is a secret: not shown.
    assert!(!err.contains("0123abcd"), "{err}");

    let out = common::run(&["config", "--check", "--strict"], &env);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("registry-v1: 3 unknown setting(s) in flavor `prod`"),
        "{err}"
    );

    // Printing still prints, the warnings beside it.
    let out = common::run(&["config"], &env);
    assert!(out.status.success());
    assert!(stdout(&out).contains("storage_pth: /data"));
    assert!(stderr(&out).contains("did you mean `storage_path`?"));

    // --strict is for --check.
    let out = common::run(&["config", "--strict"], &env);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn the_sample_and_the_examples_pass_strict() {
    let out = common::run(&["config", "--check", "--strict"], &[]);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        stderr(&out)
    );
    for entry in std::fs::read_dir(flavors_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for flavor in registry_v1::config::flavors(&text).unwrap() {
            let out = common::run(
                &["config", "--check", "--strict"],
                &[
                    ("DOCKER_REGISTRY_CONFIG", path.to_str().unwrap()),
                    ("SETTINGS_FLAVOR", &flavor),
                ],
            );
            let err = stderr(&out);
            assert!(
                out.status.success() && !err.contains("unknown setting"),
                "{} {flavor}: {err}",
                path.display()
            );
        }
    }
}

#[test]
fn serve_says_each_setting_it_does_not_act_on_once() {
    let dir = tempfile::tempdir().unwrap();
    let text = MISSPELLED.replace("/data", &dir.path().join("data").display().to_string());
    let file = write(dir.path(), "registry.yml", &text);
    let mut registry = common::Registry::start(&[
        ("DOCKER_REGISTRY_CONFIG", file.to_str().unwrap()),
        ("SETTINGS_FLAVOR", "prod"),
    ]);
    registry.terminate();
    let log = registry.log();
    for needle in [
        "unknown setting `storage_pth`",
        "unknown setting `serach_backend`",
        "setting `bugsnag`",
        "unknown setting `upstreams.hub.tag_tll`",
    ] {
        assert_eq!(log.matches(needle).count(), 1, "{needle:?} once in:\n{log}");
    }
}

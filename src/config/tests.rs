//! The configuration engine end to end, below the binary: the sample's
//! flavors, typing, and the errors.

use std::collections::BTreeSet;
use std::time::Duration;

use super::*;

fn load_sample(flavor: &str, env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    from_text(SAMPLE, ConfigSource::BuiltIn, flavor, &lookup_from(env))
}

fn load_text(text: &str, flavor: &str, env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    let source = ConfigSource::File("test.yml".into());
    from_text(text, source, flavor, &lookup_from(env))
}

/// The flavors of the old registry's sample file.
const SAMPLE_FLAVORS: &[&str] = &[
    "common",
    "local",
    "s3",
    "cloudfronts3",
    "azureblob",
    "ceph-s3",
    "gcs",
    "swift",
    "glance",
    "openstack",
    "glance-swift",
    "openstack-swift",
    "elliptics",
    "oss",
    "dev",
    "test",
    "prod",
];

/// Every variable the sample reads, set to a value a deployment might use.
fn full_environment(key_file: &str) -> Vec<(&'static str, String)> {
    let pairs: &[(&str, &str)] = &[
        ("LOGLEVEL", "WARNING"),
        ("DEBUG", "no"),
        ("STANDALONE", "false"),
        ("INDEX_ENDPOINT", "https://index.example.com/"),
        ("STORAGE_REDIRECT", "on"),
        ("DISABLE_TOKEN_AUTH", "True"),
        ("DELETE_ENABLED", "off"),
        ("WEB_UI", "false"),
        ("WEB_UI_PREFIX", "/registry-ui/"),
        ("BODY_IDLE_TIMEOUT", "7"),
        ("MAX_CONCURRENT_UPLOADS", "3"),
        ("GC_INTERVAL", "600"),
        ("GC_GRACE_PERIOD", "120"),
        ("GC_UPLOAD_MAX_AGE", "86400"),
        ("GC_DELETE_UNTAGGED", "yes"),
        ("MAX_UPLOAD_SESSIONS_PER_REPOSITORY", "7"),
        ("MAX_UPLOAD_SESSIONS", "70"),
        ("SEARCH_BACKEND", "SQLAlchemy"),
        (
            "SQLALCHEMY_INDEX_DATABASE",
            "sqlite:////var/lib/registry/search.db",
        ),
        ("MIRROR_SOURCE", "https://registry-1.docker.io"),
        ("MIRROR_SOURCE_INDEX", "https://index.docker.io"),
        ("MIRROR_TAGS_CACHE_TTL", "3600"),
        ("MIRROR_USERNAME", "mirror-user"),
        ("MIRROR_PASSWORD", "mirror-secret"),
        ("MIRROR_TIMEOUT", "12"),
        ("MIRROR_MAX_CONCURRENT", "4"),
        ("MIRROR_MAX_AGE", "0"),
        ("MIRROR_MAX_SIZE", "1073741824"),
        ("CACHE_REDIS_HOST", "redis"),
        ("CACHE_REDIS_PORT", "6379"),
        ("CACHE_REDIS_DB", "1"),
        ("CACHE_REDIS_PASSWORD", "cachepw"),
        ("CACHE_LRU_REDIS_HOST", "redis-lru"),
        ("CACHE_LRU_REDIS_PORT", "6380"),
        ("CACHE_LRU_REDIS_DB", "2"),
        ("CACHE_LRU_REDIS_PASSWORD", "lrupw"),
        ("SMTP_HOST", "mail.example.com"),
        ("SMTP_PORT", "587"),
        ("SMTP_LOGIN", "registry"),
        ("SMTP_PASSWORD", "smtppw"),
        ("SMTP_SECURE", "true"),
        ("SMTP_FROM_ADDR", "registry@example.com"),
        ("SMTP_TO_ADDR", "ops@example.com"),
        ("SMTP_MIN_INTERVAL", "300"),
        ("BUGSNAG", "0123abcd"),
        (
            "CORS_ORIGINS",
            "[https://a.example.com, https://b.example.com]",
        ),
        ("CORS_METHODS", "GET, HEAD"),
        ("CORS_HEADERS", "[Content-Type, Authorization]"),
        ("CORS_EXPOSE_HEADERS", "X-Docker-Token"),
        ("CORS_SUPPORTS_CREDENTIALS", "yes"),
        ("CORS_MAX_AGE", "600"),
        ("CORS_SEND_WILDCARD", "false"),
        ("CORS_ALWAYS_SEND", "true"),
        ("CORS_AUTOMATIC_OPTIONS", "true"),
        ("CORS_VARY_HEADER", "true"),
        ("CORS_RESOURCES", "'/v1/*'"),
        ("STORAGE_PATH", "/srv/registry"),
        ("AWS_REGION", "eu-west-1"),
        ("AWS_BUCKET", "my-bucket"),
        ("AWS_ENCRYPT", "false"),
        ("AWS_SECURE", "false"),
        ("AWS_KEY", "AKIAEXAMPLE"),
        ("AWS_SECRET", "s3cr3t/with+chars"),
        ("AWS_USE_SIGV4", "true"),
        ("AWS_HOST", "minio.local"),
        ("AWS_PORT", "9000"),
        (
            "AWS_CALLING_FORMAT",
            "boto.s3.connection.OrdinaryCallingFormat",
        ),
        ("AWS_DEBUG", "1"),
        ("CF_BASE_URL", "https://d111111abcdef8.cloudfront.net"),
        ("CF_KEYID", "APKAEXAMPLE"),
        ("CF_KEYSECRET", "/etc/cf.pem"),
        ("AZURE_STORAGE_ACCOUNT_NAME", "acct"),
        ("AZURE_STORAGE_ACCOUNT_KEY", "azkey"),
        ("AZURE_STORAGE_CONTAINER", "images"),
        ("AZURE_USE_HTTPS", "false"),
        ("GCS_BUCKET", "gcs-bucket"),
        ("GCS_SECURE", "false"),
        ("GCS_KEY", "GOOGEXAMPLE"),
        ("GCS_SECRET", "gcssecret"),
        ("GCS_OAUTH2", "false"),
        ("OS_AUTH_URL", "https://keystone.example.com/v2.0"),
        ("OS_CONTAINER", "registry"),
        ("OS_USERNAME", "user"),
        ("OS_PASSWORD", "ospw"),
        ("OS_TENANT_NAME", "tenant"),
        ("OS_REGION_NAME", "region1"),
        ("GLANCE_STORAGE_ALTERNATE", "swift"),
        ("ELLIPTICS_NODES", "[node1:1025:2, node2:1025:2]"),
        ("ELLIPTICS_WAIT_TIMEOUT", "30"),
        ("ELLIPTICS_CHECK_TIMEOUT", "30"),
        ("ELLIPTICS_IO_THREAD_NUM", "4"),
        ("ELLIPTICS_NET_THREAD_NUM", "4"),
        ("ELLIPTICS_NONBLOCKING_IO_THREAD_NUM", "4"),
        ("ELLIPTICS_GROUPS", "[1, 2]"),
        ("ELLIPTICS_VERBOSITY", "2"),
        ("ELLIPTICS_LOGFILE", "/var/log/elliptics.log"),
        ("ELLIPTICS_ADDR_FAMILY", "10"),
        ("OSS_HOST", "oss.aliyuncs.com"),
        ("OSS_BUCKET", "oss-bucket"),
        ("OSS_KEY", "osskey"),
        ("OSS_SECRET", "osssecret"),
    ];
    let mut env: Vec<(&'static str, String)> =
        pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    env.push(("PRIVILEGED_KEY", key_file.to_owned()));
    env.push(("AUTH_HTPASSWD", key_file.to_owned()));
    env.push(("TLS_CERTIFICATE", key_file.to_owned()));
    env.push(("TLS_KEY", key_file.to_owned()));
    env.push(("TLS_CLIENT_CA", key_file.to_owned()));
    env.push(("METRICS_ADDRESS", "127.0.0.1:9090".to_owned()));
    env.push(("METRICS_PATH", "/prometheus".to_owned()));
    // One login mode at a time: the token ones are set, to nothing
    // (`logins_are_off_by_default_and_typed` covers them).
    for var in [
        "AUTH_TOKEN_REALM",
        "AUTH_TOKEN_SERVICE",
        "AUTH_TOKEN_ISSUER",
        "AUTH_TOKEN_ROOTCERTBUNDLE",
    ] {
        env.push((var, String::new()));
    }
    env.push(("AUTH_REALM", "Corp Registry".to_owned()));
    env.push(("AUTH_REQUIRED", "write".to_owned()));
    env.push(("AUTH_MAX_FAILED_LOGINS", "5".to_owned()));
    env
}

/// Every `NAME` of `_env:NAME` in a tree, not expanded.
fn env_names(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::String(s) => {
            if let Some(rest) = s.strip_prefix("_env:") {
                out.insert(rest.split(':').next().unwrap_or("").to_owned());
            }
        }
        Value::Mapping(m) => m.values().for_each(|v| env_names(v, out)),
        Value::Sequence(items) => items.iter().for_each(|v| env_names(v, out)),
        _ => {}
    }
}

#[test]
fn the_sample_defines_the_old_flavors_in_order() {
    assert_eq!(flavors(SAMPLE).unwrap(), SAMPLE_FLAVORS);
}

#[test]
fn every_sample_flavor_resolves_without_environment() {
    for flavor in SAMPLE_FLAVORS {
        let settings = load_sample(flavor, &[]).unwrap_or_else(|e| panic!("{flavor}: {e}"));
        assert_eq!(settings.flavor, *flavor);
        assert_eq!(settings.issue, "\"docker-registry server\"");
        assert!(settings.standalone, "{flavor}");
        assert_eq!(
            settings.index_endpoint.as_deref(),
            Some(if *flavor == "test" {
                "https://registry-stage.hub.docker.com"
            } else {
                "https://index.docker.io"
            })
        );
        assert_eq!(settings.cors.headers, ["Content-Type"], "{flavor}");
        assert_eq!(settings.cors.origins, None);
        assert!(!settings.mirroring);
        assert!(
            settings.delete_enabled,
            "{flavor}: deletes are on by default"
        );
        assert_eq!(
            settings.body_idle_timeout,
            Duration::from_secs(60),
            "{flavor}"
        );
        assert_eq!(settings.max_concurrent_uploads, 100, "{flavor}");
        assert_eq!(
            settings.web_ui,
            WebUiSettings {
                enabled: true,
                prefix: String::new()
            },
            "{flavor}: the pages are on, at /"
        );
        assert_eq!(settings.gc.interval, None, "{flavor}: gc is off by default");
        assert_eq!(settings.gc.grace_period, Duration::from_secs(3600));
        assert_eq!(settings.gc.upload_max_age, Duration::from_secs(604_800));
        assert!(!settings.gc.delete_untagged);
        assert!(settings.raw["email_exceptions"]["smtp_port"] == Value::Number(25.into()));
    }
}

#[test]
fn every_sample_flavor_resolves_with_its_whole_environment() {
    let key = tempfile::NamedTempFile::new().unwrap();
    let key_path = key.path().to_str().unwrap().to_owned();
    let env = full_environment(&key_path);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();

    // The table covers every variable the sample reads.
    let mut names = BTreeSet::new();
    env_names(&yaml::parse(SAMPLE).unwrap(), &mut names);
    let covered: BTreeSet<String> = env.iter().map(|(k, _)| (*k).to_owned()).collect();
    let missing: Vec<_> = names.difference(&covered).collect();
    assert!(
        missing.is_empty(),
        "variables without a test value: {missing:?}"
    );

    for flavor in SAMPLE_FLAVORS {
        let s = load_sample(flavor, &env).unwrap_or_else(|e| panic!("{flavor}: {e}"));
        assert_eq!(s.loglevel, LogLevel::Warn);
        assert!(!s.delete_enabled, "{flavor}");
        assert!(!s.web_ui.enabled, "{flavor}");
        assert_eq!(s.web_ui.prefix, "/registry-ui", "{flavor}");
        assert_eq!(s.body_idle_timeout, Duration::from_secs(7), "{flavor}");
        assert_eq!(s.max_concurrent_uploads, 3, "{flavor}");
        assert_eq!(
            s.gc,
            GcSettings {
                interval: Some(Duration::from_secs(600)),
                grace_period: Duration::from_secs(120),
                upload_max_age: Duration::from_secs(86400),
                delete_untagged: true,
            },
            "{flavor}"
        );
        assert!(!s.debug && s.disable_token_auth);
        // `test` sets standalone itself.
        assert_eq!(s.standalone, *flavor == "test");
        assert_eq!(
            s.index_endpoint.as_deref(),
            Some(if *flavor == "test" {
                "https://registry-stage.hub.docker.com"
            } else {
                "https://index.example.com"
            })
        );
        assert_eq!(s.privileged_key.as_deref(), Some(key.path()));
        assert_eq!(
            s.login,
            LoginSettings {
                mode: Some(LoginMode::Htpasswd(key.path().to_owned())),
                required: LoginRequired::Write,
                realm: "Corp Registry".into(),
                max_failed_logins: 5,
            }
        );
        assert_eq!(s.search.backend, SearchBackend::Sqlalchemy);
        assert_eq!(
            s.search.database.as_deref(),
            Some("sqlite:////var/lib/registry/search.db")
        );
        assert!(s.mirroring);
        let hub = &s.mirror.upstreams[0];
        assert_eq!(
            (hub.url.as_str(), hub.prefix.as_str(), hub.default),
            ("https://registry-1.docker.io", "docker.io", true)
        );
        assert_eq!(hub.index_url.as_deref(), Some("https://index.docker.io"));
        assert_eq!(hub.tag_ttl, Duration::from_secs(3600));
        assert_eq!(hub.username.as_deref(), Some("mirror-user"));
        assert_eq!(hub.password.as_deref(), Some("mirror-secret"));
        assert_eq!(s.mirror.timeout, Duration::from_secs(12), "{flavor}");
        assert_eq!(s.mirror.max_concurrent, 4, "{flavor}");
        assert_eq!(
            s.mirror.max_age, None,
            "{flavor}: 0 keeps copies however old"
        );
        assert_eq!(s.mirror.max_size, Some(1 << 30), "{flavor}");
        assert!(s.storage.redirect);
        // Flavors without a storage_path get their driver's own default.
        let path = match (s.raw.get("storage_path"), &s.storage.kind) {
            (Some(_), _) => "/srv/registry",
            (None, StorageKind::Local) => "./tmp",
            (None, _) => "/test",
        };
        assert_eq!(s.storage.path, path, "{flavor}");
        assert_eq!(
            s.cors.origins.as_deref(),
            Some(
                &[
                    "https://a.example.com".to_owned(),
                    "https://b.example.com".to_owned()
                ][..]
            )
        );
        assert_eq!(
            s.cors.methods.as_deref(),
            Some(&["GET".to_owned(), "HEAD".to_owned()][..])
        );
        assert_eq!(s.cors.headers, ["Content-Type", "Authorization"]);
        assert_eq!(s.cors.expose_headers, ["X-Docker-Token"]);
        assert!(s.cors.supports_credentials);
        assert_eq!(s.cors.max_age, Some(600));
        // Unknown keys survive, typed as YAML 1.1 reads them.
        assert_eq!(s.raw["cache"]["port"], Value::Number(6379.into()));
        assert_eq!(
            s.cache,
            Some(CacheSettings {
                host: "redis".into(),
                port: 6379,
                db: 1,
                password: Some("cachepw".into()),
                section: "cache",
            })
        );
        assert!(
            !format!("{s:?}").contains("cachepw"),
            "the password in Debug"
        );
        assert_eq!(s.raw["cors"]["resources"], Value::String("/v1/*".into()));
        assert_eq!(s.raw["email_exceptions"]["smtp_secure"], Value::Bool(true));
    }
}

#[test]
fn storage_kinds_of_the_sample() {
    let kinds: Vec<(&str, StorageKind)> = SAMPLE_FLAVORS
        .iter()
        .map(|f| (*f, load_sample(f, &[]).unwrap().storage.kind))
        .collect();
    let unsupported = |n: &str| StorageKind::Unsupported(n.to_owned());
    assert_eq!(
        kinds,
        [
            ("common", StorageKind::Local),
            ("local", StorageKind::Local),
            ("s3", StorageKind::S3),
            ("cloudfronts3", StorageKind::S3),
            ("azureblob", unsupported("azureblob")),
            ("ceph-s3", StorageKind::S3),
            ("gcs", StorageKind::Gcs),
            ("swift", StorageKind::Swift),
            ("glance", unsupported("glance")),
            ("openstack", unsupported("glance")),
            ("glance-swift", unsupported("glance")),
            ("openstack-swift", unsupported("glance")),
            ("elliptics", unsupported("elliptics")),
            ("oss", unsupported("oss")),
            ("dev", StorageKind::Local),
            ("test", StorageKind::Local),
            ("prod", StorageKind::S3),
        ]
    );
}

#[test]
fn dev_is_local_verbose_and_searchable() {
    let s = load_sample("dev", &[]).unwrap();
    assert_eq!(s.source, ConfigSource::BuiltIn);
    assert_eq!(s.loglevel, LogLevel::Debug);
    assert!(s.debug);
    assert_eq!(s.storage.kind, StorageKind::Local);
    assert_eq!(s.storage.path, "/tmp/registry");
    assert!(s.storage.s3.is_none() && !s.storage.redirect);
    assert_eq!(s.search.backend, SearchBackend::Sqlalchemy);
    assert_eq!(
        s.search.database.as_deref(),
        Some("sqlite:////tmp/docker-registry.db")
    );
    // `common` alone: search off, info.
    let c = load_sample("common", &[]).unwrap();
    assert_eq!(c.search.backend, SearchBackend::Disabled);
    assert_eq!(c.loglevel, LogLevel::Info);
    assert!(!c.debug);
}

#[test]
fn inheritance_three_levels_deep() {
    // test → dev → local → common: each level's own keys win.
    let t = load_sample("test", &[]).unwrap();
    assert_eq!(t.storage.path, "./tmp/test"); // test's own
    assert_eq!(t.loglevel, LogLevel::Debug); // dev's
    assert_eq!(t.storage.kind, StorageKind::Local); // local's
    assert_eq!(t.issue, DEFAULT_ISSUE); // common's
    assert_eq!(
        t.index_endpoint.as_deref(),
        Some("https://registry-stage.hub.docker.com")
    );
    // A merged chain in a user file, where a deeper level overrides.
    let text = "base: &base\n  loglevel: error\n  debug: false\n  storage_path: /a\n\
                mid: &mid\n  <<: *base\n  debug: true\n  storage_path: /b\n\
                top:\n  <<: *mid\n  storage_path: /c\n";
    let s = load_text(text, "top", &[]).unwrap();
    assert_eq!(
        (s.loglevel, s.debug, s.storage.path.as_str()),
        (LogLevel::Error, true, "/c")
    );
}

#[test]
fn prod_with_aws_variables_gives_typed_s3_settings() {
    let s = load_sample(
        "prod",
        &[
            ("AWS_BUCKET", "my-bucket"),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_KEY", "AKIAEXAMPLE"),
            ("AWS_SECRET", "secret/key+x"),
        ],
    )
    .unwrap();
    assert_eq!(s.storage.kind, StorageKind::S3);
    assert_eq!(s.storage.path, "/prod");
    assert_eq!(
        s.storage.s3,
        Some(S3Settings {
            bucket: "my-bucket".into(),
            region: Some("eu-west-1".into()),
            access_key: Some("AKIAEXAMPLE".into()),
            secret_key: Some("secret/key+x".into()),
            encrypt: true,
            secure: true,
            host: None,
            port: None,
        })
    );
    // The secret never shows in Debug, of the S3 part or of the whole.
    assert!(!format!("{:?}", s.storage.s3).contains("secret/key"));
    assert!(!format!("{s:?}").contains("secret/key"));
    assert!(!format!("{s:?}").contains("AKIAEXAMPLE"));
    // Without a bucket the flavor loads; `serve` reports what is missing.
    assert_eq!(load_sample("prod", &[]).unwrap().storage.s3, None);
}

#[test]
fn ceph_s3_talks_plain_http_to_its_own_host() {
    let s = load_sample(
        "ceph-s3",
        &[
            ("AWS_BUCKET", "b"),
            ("AWS_HOST", "rgw.local"),
            ("AWS_PORT", "7480"),
        ],
    )
    .unwrap();
    let s3 = s.storage.s3.unwrap();
    assert_eq!((s3.secure, s3.encrypt, s3.region), (false, false, None));
    assert_eq!(
        (s3.host.as_deref(), s3.port),
        (Some("rgw.local"), Some(7480))
    );
}

#[test]
fn bucket_is_s3_bucket_else_boto_bucket() {
    let text = "a:\n  storage: s3\n  boto_bucket: boto\nb:\n  storage: s3\n  s3_bucket: s3b\n  boto_bucket: boto\n";
    assert_eq!(
        load_text(text, "a", &[])
            .unwrap()
            .storage
            .s3
            .unwrap()
            .bucket,
        "boto"
    );
    assert_eq!(
        load_text(text, "b", &[])
            .unwrap()
            .storage
            .s3
            .unwrap()
            .bucket,
        "s3b"
    );
}

#[test]
fn gcs_uses_the_interoperability_endpoint() {
    let s = load_sample(
        "gcs",
        &[
            ("GCS_BUCKET", "g"),
            ("GCS_KEY", "GOOG1"),
            ("GCS_SECRET", "sec"),
        ],
    )
    .unwrap();
    assert_eq!(s.storage.kind, StorageKind::Gcs);
    assert_eq!(
        s.storage.s3,
        Some(S3Settings {
            bucket: "g".into(),
            region: None,
            access_key: Some("GOOG1".into()),
            secret_key: Some("sec".into()),
            encrypt: false,
            secure: true,
            host: Some(GCS_HOST.into()),
            port: None,
        })
    );
}

#[test]
fn the_swift_flavor_logs_in_as_the_url_says() {
    let swift = |env: &[(&str, &str)]| load_sample("swift", env).map(|s| s.storage);
    // Without an auth URL the configuration loads; `serve` says what is
    // missing.
    let s = swift(&[]).unwrap();
    assert_eq!(s.kind, StorageKind::Swift);
    assert!(s.swift.is_none());
    let login = [
        ("OS_USERNAME", "test:tester"),
        ("OS_PASSWORD", "testing"),
        ("OS_CONTAINER", "images"),
        ("OS_TENANT_NAME", "demo"),
        ("OS_REGION_NAME", "RegionOne"),
    ];
    let with_url = |url: &str| {
        let mut env = login.to_vec();
        env.push(("OS_AUTH_URL", url));
        swift(&env).unwrap().swift.unwrap()
    };
    let v1 = with_url("http://127.0.0.1:8080/auth/v1.0");
    assert!(
        matches!(&v1.auth, SwiftAuth::V1 { user, key, .. } if user == "test:tester" && key == "testing")
    );
    assert_eq!(v1.container, "images");
    assert_eq!(v1.region.as_deref(), Some("RegionOne"));
    assert!(matches!(
        &with_url("http://keystone:5000/v3").auth,
        SwiftAuth::V3 { project: Some(p), domain, .. } if p == "demo" && domain == "Default"
    ));
    // The old driver's default: Keystone v2.0.
    assert!(matches!(
        &with_url("http://keystone:5000/").auth,
        SwiftAuth::V2 { tenant: Some(t), .. } if t == "demo"
    ));
    // The password never shows, even in a debug print.
    let shown = format!("{v1:?}");
    assert!(
        !shown.contains("testing") && shown.contains("test:tester"),
        "{shown}"
    );
}

#[test]
fn swift_settings_are_checked() {
    let load = |keys: &str| load_text(&format!("f:\n  storage: swift\n{keys}"), "f", &[]);
    let e = load("  swift_authurl: http://k/v3\n  swift_user: u\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`swift_authurl`") && e.contains("swift_password"),
        "{e}"
    );
    let e = load("  swift_auth_token: t0k\n").unwrap_err().to_string();
    assert!(
        e.contains("swift_object_storage_url") && !e.contains("t0k"),
        "{e}"
    );
    let e = load("  swift_authurl: http://k\n  swift_user: u\n  swift_password: p\n  swift_auth_version: 4\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`swift_auth_version`") && e.contains("1, 2 or 3"),
        "{e}"
    );
    let e = load("  swift_authurl: http://k\n  swift_user: u\n  swift_password: p\n  swift_endpoint_type: private\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("`swift_endpoint_type`"), "{e}");
    // A set token and its storage URL: no login at all. The defaults:
    // the old driver's container and `storage_path`.
    let s = load("  swift_auth_token: t0k\n  swift_object_storage_url: http://s/v1/AUTH_a\n")
        .unwrap()
        .storage;
    assert_eq!(s.path, "/");
    let swift = s.swift.unwrap();
    assert_eq!(swift.container, "dev_container");
    assert!(matches!(swift.auth, SwiftAuth::Preset { ref token, .. } if token == "t0k"));
    let e = load(
        "  swift_auth_token: t\n  swift_object_storage_url: http://s\n  swift_container: a/b\n",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("`swift_container`"), "{e}");
    // `2.0` unquoted is YAML's number 2.0: Keystone v2.0.
    let s = load("  swift_authurl: http://k/v3\n  swift_user: u\n  swift_password: p\n  swift_auth_version: 2.0\n")
        .unwrap()
        .storage;
    assert!(matches!(s.swift.unwrap().auth, SwiftAuth::V2 { .. }));
    // An explicit version wins over the URL's path.
    let s = load("  swift_authurl: http://k/auth/v1.0\n  swift_user: u\n  swift_password: p\n  swift_auth_version: 3\n")
        .unwrap()
        .storage;
    assert!(matches!(s.swift.unwrap().auth, SwiftAuth::V3 { .. }));
}

#[test]
fn storage_names_and_defaults() {
    let with = |storage: &str| load_text(&format!("f:\n  storage: {storage}\n"), "f", &[]);
    assert_eq!(with("file").unwrap().storage.kind, StorageKind::Local);
    assert_eq!(with("LOCAL").unwrap().storage.kind, StorageKind::Local);
    assert_eq!(with("S3").unwrap().storage.kind, StorageKind::S3);
    assert_eq!(
        with("dumb").unwrap().storage.kind,
        StorageKind::Unsupported("dumb".into())
    );
    // The old drivers' own default paths.
    assert_eq!(with("local").unwrap().storage.path, "./tmp");
    assert_eq!(with("s3").unwrap().storage.path, "/test");
    let e = with("ftp").unwrap_err().to_string();
    assert!(
        e.contains("`storage`") && e.contains("`f`") && e.contains("\"ftp\""),
        "{e}"
    );
    // No storage key: the local disk.
    assert_eq!(
        load_text("f: {}\n", "f", &[]).unwrap().storage.kind,
        StorageKind::Local
    );
    assert_eq!(
        load_text("f:\n", "f", &[]).unwrap().storage.kind,
        StorageKind::Local
    );
}

#[test]
fn search_backend_values() {
    let with = |v: &str| {
        load_text(
            &format!("f:\n  search_backend: {v}\n  sqlalchemy_index_database: sqlite://\n"),
            "f",
            &[],
        )
    };
    assert_eq!(with("~").unwrap().search.backend, SearchBackend::Disabled);
    assert_eq!(with("''").unwrap().search.backend, SearchBackend::Disabled);
    assert_eq!(
        with("sqlalchemy").unwrap().search.backend,
        SearchBackend::Sqlalchemy
    );
    let e = with("elasticsearch").unwrap_err().to_string();
    assert!(
        e.contains("search_backend") && e.contains("elasticsearch"),
        "{e}"
    );
    let e = load_text("f:\n  search_backend: sqlalchemy\n", "f", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("sqlalchemy_index_database"), "{e}");
}

#[test]
fn an_old_style_file_loads() {
    // Keys set directly in the flavor, and an empty default written quoted.
    let text = r#"
dev:
    loglevel: debug
    storage: local
    storage_path: /tmp/registry
    search_backend: "_env:SEARCH_BACKEND:"
    sqlalchemy_index_database: "_env:SQLALCHEMY_INDEX_DATABASE:sqlite:////tmp/docker-registry.db"
    smtp_host: localhost
    smtp_login: ~
    from_addr: docker-registry@localdomain.local
    to_addr: noise+dockerregistry@localdomain.local
    secret_key: REPLACEME
"#;
    let s = load_text(text, "dev", &[]).unwrap();
    assert_eq!(s.search.backend, SearchBackend::Disabled);
    assert_eq!(s.raw["smtp_host"], Value::String("localhost".into()));
    assert_eq!(
        s.raw["to_addr"],
        Value::String("noise+dockerregistry@localdomain.local".into())
    );
    let s = load_text(text, "dev", &[("SEARCH_BACKEND", "sqlalchemy")]).unwrap();
    assert_eq!(s.search.backend, SearchBackend::Sqlalchemy);
}

#[test]
fn misc_settings() {
    let text = "f:\n  index_endpoint: https://index.example.com///\n  issue: '\"hello\"'\n  \
                registry_endpoints: reg.example.com\n  nginx_x_accel_redirect: /registry\n  \
                mirroring: {source: 'https://registry-1.docker.io'}\n  cors: {origins: '*'}\n";
    let s = load_text(text, "f", &[]).unwrap();
    assert_eq!(
        s.index_endpoint.as_deref(),
        Some("https://index.example.com")
    );
    assert_eq!(s.issue, "\"hello\"");
    assert_eq!(s.registry_endpoints.as_deref(), Some("reg.example.com"));
    assert_eq!(
        s.storage.nginx_x_accel_redirect.as_deref(),
        Some("/registry")
    );
    assert!(s.mirroring);
    assert_eq!(s.cors.origins.as_deref(), Some(&["*".to_owned()][..]));
    assert_eq!(s.cors.headers, ["Content-Type"]);
    // Absent and null booleans are false, as `is True` had them.
    assert!(!s.standalone && !s.debug && !s.disable_token_auth);
}

#[test]
fn loglevels() {
    for (text, level) in [
        ("debug", LogLevel::Debug),
        ("INFO", LogLevel::Info),
        ("warn", LogLevel::Warn),
        ("Warning", LogLevel::Warn),
        ("error", LogLevel::Error),
        ("CRITICAL", LogLevel::Critical),
    ] {
        let s = load_sample("dev", &[("LOGLEVEL", text)]).unwrap();
        assert_eq!(s.loglevel, level, "{text}");
    }
    assert_eq!(LogLevel::Critical.as_filter(), log::LevelFilter::Error);
    let e = load_sample("dev", &[("LOGLEVEL", "verbose")])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`loglevel`") && e.contains("verbose") && e.contains("LOGLEVEL"),
        "{e}"
    );
}

#[test]
fn wrong_types_name_the_key_the_flavor_and_the_variable() {
    let cases: &[(&str, &str, &str)] = &[
        ("DEBUG", "'true'", "`debug`"),
        ("DEBUG", "1", "`debug`"),
        ("STANDALONE", "\"yes\"", "`standalone`"),
        ("CORS_MAX_AGE", "soon", "`cors.max_age`"),
        (
            "CORS_SUPPORTS_CREDENTIALS",
            "'on'",
            "`cors.supports_credentials`",
        ),
        ("CORS_ORIGINS", "{a: b}", "`cors.origins`"),
        ("STORAGE_PATH", "[a, b]", "`storage_path`"),
    ];
    for (var, value, key) in cases {
        let e = load_sample("dev", &[(var, value)]).unwrap_err().to_string();
        assert!(
            e.contains(key) && e.contains("`dev`") && e.contains(var),
            "{e}"
        );
        assert!(e.contains("built-in config_sample.yml"), "{e}");
    }
    let e = load_sample("prod", &[("AWS_BUCKET", "b"), ("AWS_PORT", "http")])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`boto_port`") && e.contains("`prod`") && e.contains("port"),
        "{e}"
    );
    let e = load_sample("prod", &[("AWS_BUCKET", "b"), ("AWS_PORT", "70000")]).unwrap_err();
    assert!(e.to_string().contains("70000"), "{e}");
    // In a file: a quoted boolean is a string.
    let e = load_text("f:\n  storage_redirect: \"true\"\n", "f", &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`storage_redirect`") && e.contains("test.yml"),
        "{e}"
    );
}

#[test]
fn body_timeout_and_upload_cap_are_typed_and_bounded() {
    // Unset (a file of the old registry): the defaults.
    let s = load_text("f:\n  loglevel: info\n", "f", &[]).unwrap();
    assert_eq!(s.body_idle_timeout, Duration::from_secs(60));
    assert_eq!(s.max_concurrent_uploads, 100);
    let s = load_text(
        "f:\n  body_idle_timeout: 5\n  max_concurrent_uploads: 1\n",
        "f",
        &[],
    )
    .unwrap();
    assert_eq!(s.body_idle_timeout, Duration::from_secs(5));
    assert_eq!(s.max_concurrent_uploads, 1);
    let s = load_text(
        "f:\n  body_idle_timeout: _env:T:30\n  max_concurrent_uploads: _env:U:10\n",
        "f",
        &[("T", "90"), ("U", "")],
    );
    // An empty variable without a default is null: the default.
    let s = s.unwrap();
    assert_eq!(s.body_idle_timeout, Duration::from_secs(90));
    assert_eq!(s.max_concurrent_uploads, 100);
    for (key, bad) in [
        ("body_idle_timeout", "0"),
        ("body_idle_timeout", "86401"),
        ("body_idle_timeout", "\"60\""),
        ("body_idle_timeout", "1.5"),
        ("body_idle_timeout", "-1"),
        ("max_concurrent_uploads", "0"),
        ("max_concurrent_uploads", "yes"),
        ("max_concurrent_uploads", "[1]"),
    ] {
        let e = load_text(&format!("f:\n  {key}: {bad}\n"), "f", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("`{key}`")), "{key}: {bad}: {e}");
    }
    let e = load_text(
        "f:\n  body_idle_timeout: _env:BODY_IDLE_TIMEOUT:60\n",
        "f",
        &[("BODY_IDLE_TIMEOUT", "0")],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("BODY_IDLE_TIMEOUT"), "{e}");
}

#[test]
fn gc_settings_are_typed_and_bounded() {
    let s = load_text("f:\n  loglevel: info\n", "f", &[]).unwrap();
    assert_eq!(s.gc.interval, None);
    assert_eq!(s.gc.grace_period, Duration::from_secs(3600));
    let s = load_text(
        "f:\n  gc_interval: 0\n  gc_grace_period: 0\n  gc_upload_max_age: 60\n",
        "f",
        &[],
    )
    .unwrap();
    assert_eq!(s.gc.interval, None, "0 is off");
    assert_eq!(s.gc.grace_period, Duration::ZERO);
    assert_eq!(s.gc.upload_max_age, Duration::from_secs(60));
    for (key, bad) in [
        ("gc_interval", "-1"),
        ("gc_interval", "\"60\""),
        ("gc_grace_period", "1.5"),
        ("gc_grace_period", "31536001"),
        ("gc_upload_max_age", "[1]"),
        ("gc_delete_untagged", "sometimes"),
    ] {
        let e = load_text(&format!("f:\n  {key}: {bad}\n"), "f", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("`{key}`")), "{key}: {bad}: {e}");
    }
    let e = load_text(
        "f:\n  gc_grace_period: _env:GC_GRACE_PERIOD:3600\n",
        "f",
        &[("GC_GRACE_PERIOD", "soon")],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("GC_GRACE_PERIOD"), "{e}");
}

#[test]
fn deletes_are_on_unless_switched_off() {
    // A file written for the old registry has no such key.
    assert!(
        load_text("f:\n  loglevel: info\n", "f", &[])
            .unwrap()
            .delete_enabled
    );
    assert!(
        !load_text("f:\n  delete_enabled: no\n", "f", &[])
            .unwrap()
            .delete_enabled
    );
    let e = load_text("f:\n  delete_enabled: \"false\"\n", "f", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("`delete_enabled`"), "{e}");
}

#[test]
fn the_web_ui_prefix_is_a_path_beside_the_apis() {
    let prefix = |value: &str| {
        load_text(&format!("f:\n  web_ui_prefix: {value:?}\n"), "f", &[])
            .map(|s| s.web_ui.prefix)
            .map_err(|e| e.to_string())
    };
    assert_eq!(prefix("/ui/").unwrap(), "/ui");
    assert_eq!(prefix("/tools/registry-ui").unwrap(), "/tools/registry-ui");
    assert_eq!(prefix("/").unwrap(), "");
    for bad in [
        "ui", "/v2", "/v1/x", "/_ping", "/a//b", "/a b", "/<x>", "/a?b",
    ] {
        let e = prefix(bad).unwrap_err();
        assert!(
            e.contains("`web_ui_prefix`") && e.contains("URL path"),
            "{bad}: {e}"
        );
    }
    let e = load_text("f:\n  web_ui: maybe\n", "f", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("`web_ui`"), "{e}");
}

#[test]
fn secrets_stay_out_of_type_errors() {
    let e = load_sample("prod", &[("AWS_BUCKET", "b"), ("AWS_SECRET", "[hunter2]")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("s3_secret_key") && !e.contains("hunter2"), "{e}");
}

#[test]
fn integers_serve_as_text_where_text_is_expected() {
    let s = load_sample("prod", &[("AWS_BUCKET", "123456"), ("AWS_KEY", "0x10")]).unwrap();
    let s3 = s.storage.s3.unwrap();
    assert_eq!(s3.bucket, "123456");
    // YAML 1.1 reads 0x10 as 16, as the old registry did; quote to keep text.
    assert_eq!(s3.access_key.as_deref(), Some("16"));
}

#[test]
fn logins_are_off_by_default_and_typed() {
    for flavor in SAMPLE_FLAVORS {
        let login = load_sample(flavor, &[]).unwrap().login;
        assert_eq!(login.mode, None, "{flavor}");
        assert_eq!(login.required, LoginRequired::All);
        assert_eq!(login.realm, DEFAULT_AUTH_REALM);
        assert_eq!(login.max_failed_logins, 10);
    }
    let bundle = tempfile::NamedTempFile::new().unwrap();
    let bundle_path = bundle.path().to_str().unwrap();
    let token_env = [
        ("AUTH_TOKEN_REALM", "https://auth.example.com/token"),
        ("AUTH_TOKEN_SERVICE", "registry.example.com"),
        ("AUTH_TOKEN_ISSUER", "auth.example.com"),
        ("AUTH_TOKEN_ROOTCERTBUNDLE", bundle_path),
    ];
    let s = load_sample("dev", &token_env).unwrap();
    assert_eq!(
        s.login.mode,
        Some(LoginMode::Token(TokenSettings {
            realm: "https://auth.example.com/token".into(),
            service: "registry.example.com".into(),
            issuer: "auth.example.com".into(),
            rootcertbundle: bundle.path().to_owned(),
        }))
    );
    // Each of the four alone is an error naming the first missing one.
    for (i, (var, _)) in token_env.iter().enumerate() {
        let e = load_sample("dev", &[token_env[i]]).unwrap_err().to_string();
        let missing = if i == 0 {
            "auth_token_service"
        } else {
            "auth_token_realm"
        };
        assert!(e.contains(&format!("`{missing}`")), "{var}: {e}");
    }
    // Both modes at once.
    let mut both = token_env.to_vec();
    both.push(("AUTH_HTPASSWD", bundle_path));
    let e = load_sample("dev", &both).unwrap_err().to_string();
    assert!(e.contains("`auth_htpasswd`") && e.contains("token"), "{e}");
    // Files that cannot be read name the setting and the path.
    for var in ["AUTH_HTPASSWD", "AUTH_TOKEN_ROOTCERTBUNDLE"] {
        let mut env = token_env.to_vec();
        env.retain(|(v, _)| var == "AUTH_TOKEN_ROOTCERTBUNDLE" && *v != var);
        env.push((var, "/nonexistent/logins"));
        let e = load_sample("dev", &env).unwrap_err().to_string();
        assert!(
            e.contains(&format!("`{}`", var.to_ascii_lowercase()))
                && e.contains("/nonexistent/logins")
                && e.contains(var),
            "{e}"
        );
    }
    for (var, bad, key) in [
        ("AUTH_REQUIRED", "pull", "auth_required"),
        ("AUTH_MAX_FAILED_LOGINS", "0", "auth_max_failed_logins"),
        ("AUTH_REALM", "a\"b", "auth_realm"),
        (
            "AUTH_TOKEN_REALM",
            "auth.example.com/token",
            "auth_token_realm",
        ),
    ] {
        let e = load_sample("dev", &[(var, bad)]).unwrap_err().to_string();
        assert!(e.contains(&format!("`{key}`")), "{var}={bad}: {e}");
    }
    let s = load_sample("dev", &[("AUTH_REQUIRED", "WRITE")]).unwrap();
    assert_eq!(s.login.required, LoginRequired::Write);
}

#[test]
fn privileged_key_must_be_readable() {
    let e = load_sample("dev", &[("PRIVILEGED_KEY", "/nonexistent/key.pem")])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("privileged_key") && e.contains("/nonexistent/key.pem"),
        "{e}"
    );
}

#[test]
fn flavor_errors() {
    let e = load_sample("staging", &[]).unwrap_err().to_string();
    assert!(
        e.starts_with(
            "The specified flavor (staging) is missing in your config file \
             (built-in config_sample.yml)"
        ),
        "{e}"
    );
    assert!(e.contains("dev, test, prod"), "{e}");
    let e = load_text("- a\n- b\n", "dev", &[]).unwrap_err().to_string();
    assert!(e.contains("no flavors") && e.contains("test.yml"), "{e}");
    let e = load_text("", "dev", &[]).unwrap_err().to_string();
    assert!(e.contains("no flavors"), "{e}");
    let e = load_text("dev: local\n", "dev", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("`dev`") && e.contains("mapping"), "{e}");
    let e = load_text("dev: {a: 1\n", "dev", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("test.yml") && e.contains("line 2"), "{e}");
}

#[test]
fn env_errors_name_key_flavor_variable_and_value() {
    let e = load_sample("dev", &[("CORS_HEADERS", "[Content-Type")])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`cors.headers`")
            && e.contains("`dev`")
            && e.contains("CORS_HEADERS")
            && e.contains("`[Content-Type`"),
        "{e}"
    );
}

#[test]
fn environment_errors_name_the_variable() {
    let env = |pairs: &[(&str, &str)]| Environment::from_lookup(&lookup_from(pairs));
    let e = env(&[("REGISTRY_PORT", "abc")]).unwrap_err().to_string();
    assert!(e.contains("REGISTRY_PORT") && e.contains("abc"), "{e}");
    let e = env(&[("GUNICORN_WORKERS", "many")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("GUNICORN_WORKERS"), "{e}");
    assert!(env(&[("GUNICORN_WORKERS", "0")]).is_err());
    let ok = env(&[
        ("REGISTRY_PORT", "8080"),
        ("SETTINGS_FLAVOR", ""),
        ("DOCKER_REGISTRY_CONFIG", "/etc/registry.yml"),
        ("GUNICORN_WORKERS", "3"),
    ])
    .unwrap();
    assert_eq!(ok.registry_port, 8080);
    assert_eq!(ok.settings_flavor, "dev");
    assert_eq!(ok.registry_host, "0.0.0.0");
    assert_eq!(ok.gunicorn_workers, Some(3));
    assert_eq!(
        ok.docker_registry_config.as_deref(),
        Some(std::path::Path::new("/etc/registry.yml"))
    );
}

#[test]
fn render_masks_secrets_and_reads_back() {
    let s = load_sample(
        "prod",
        &[
            ("AWS_BUCKET", "b"),
            ("AWS_KEY", "AKIAXXXX"),
            ("AWS_SECRET", "topsecret"),
        ],
    )
    .unwrap();
    let text = render(&s, false).unwrap();
    assert!(
        !text.contains("topsecret") && !text.contains("AKIAXXXX"),
        "{text}"
    );
    assert!(text.starts_with("# registry-v1: flavor `prod`"), "{text}");
    assert_eq!(yaml::parse(&text).unwrap(), mask(&s.raw));
    let json: serde_json::Value = serde_json::from_str(&render(&s, true).unwrap()).unwrap();
    assert_eq!(json["s3_secret_key"], MASK);
    assert_eq!(json["s3_bucket"], "b");
    assert_eq!(json["s3_encrypt"], true);
    assert_eq!(json["cors"]["headers"][0], "Content-Type");
}

#[test]
fn render_falls_back_to_json_form_when_yaml_would_misread() {
    let s = load_text("f:\n  odd: '1_000'\n  n: 3\n", "f", &[]).unwrap();
    let text = render(&s, false).unwrap();
    assert_eq!(yaml::parse(&text).unwrap(), s.raw, "{text}");
}

// Keys this build does not know, and keys it knows but does not act on
// (issue 35 item 3, issue 26).

fn unknown_notices(settings: &Settings) -> Vec<String> {
    settings
        .notices
        .iter()
        .filter(|n| n.unknown)
        .map(|n| n.message.clone())
        .collect()
}

/// The book's configuration reference cannot drift from the code: its
/// tables name every key of `KNOWN_KEYS`, and under its last heading
/// every key of `LEGACY_KEYS`, each once, each with a type, a default,
/// an environment variable (or `—`) and a meaning; and no key the code
/// does not know.
#[test]
fn the_configuration_reference_names_every_key_and_no_other() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/src/configuration-reference.md"
    );
    let page = std::fs::read_to_string(path).expect("docs/src/configuration-reference.md");
    let legacy_heading = "## Keys of the old registry not acted on";
    let (known_part, legacy_part) = page
        .split_once(legacy_heading)
        .unwrap_or_else(|| panic!("{path}: no heading `{legacy_heading}`"));
    let rows = |text: &str| -> Vec<String> {
        let mut keys = Vec::new();
        for line in text.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            assert_eq!(cells.len(), 5, "{path}: a row of 5 cells: {line}");
            assert!(
                cells.iter().all(|c| !c.is_empty()),
                "{path}: an empty cell (write `—`): {line}"
            );
            let key = cells[0]
                .strip_prefix('`')
                .and_then(|k| k.strip_suffix('`'))
                .unwrap_or_else(|| panic!("{path}: the key alone in backticks: {line}"));
            assert!(!keys.contains(&key.to_owned()), "{path}: `{key}` twice");
            keys.push(key.to_owned());
        }
        keys
    };
    let documented = rows(known_part);
    for key in KNOWN_KEYS {
        assert!(
            documented.iter().any(|d| d == key),
            "{path} does not document `{key}`: add a row for it"
        );
    }
    for key in &documented {
        assert!(
            KNOWN_KEYS.contains(&key.as_str()),
            "{path} documents `{key}`, which the code does not read"
        );
    }
    let legacy = rows(legacy_part);
    let mut expected: Vec<String> = keys::LEGACY_KEYS.iter().map(|k| k.to_string()).collect();
    let mut found = legacy.clone();
    expected.sort();
    found.sort();
    assert_eq!(found, expected, "{path}: the keys of the old registry");
}

/// The known keys cannot drift from the code: every key settings.rs reads
/// (the first argument, a literal, of a reading method) is listed in
/// `KNOWN_KEYS`, and every listed key is read there.
#[test]
fn every_key_read_is_known() {
    let source = include_str!("settings.rs");
    let read = regex::Regex::new(r#"\b([a-z_]+)\(\s*"([a-z][a-z0-9_]*)""#).unwrap();
    let mut literals = BTreeSet::new();
    for c in read.captures_iter(source) {
        // Debug and Display output name fields and values, not keys.
        if !["field", "write_str"].contains(&&c[1]) {
            literals.insert(c[2].to_owned());
        }
    }
    assert!(literals.contains("storage_path") && literals.contains("origins"));
    for literal in &literals {
        let known = KNOWN_KEYS.iter().any(|k| {
            *k == literal
                || k.ends_with(&format!(".{literal}"))
                || k.starts_with(&format!("{literal}."))
        });
        assert!(
            known,
            "settings.rs reads `{literal}`, which KNOWN_KEYS does not list: add it there"
        );
    }
    for key in KNOWN_KEYS {
        let name = key.rsplit('.').next().unwrap();
        assert!(
            literals.contains(name),
            "KNOWN_KEYS lists `{key}`, which settings.rs does not read"
        );
        assert!(
            !keys::LEGACY_KEYS.contains(key),
            "`{key}` is both read and listed as not read"
        );
    }
}

#[test]
fn the_sample_says_nothing_when_nothing_is_set() {
    for flavor in SAMPLE_FLAVORS {
        let s = load_sample(flavor, &[]).unwrap();
        assert!(s.notices.is_empty(), "{flavor}: {:?}", s.notices);
    }
}

#[test]
fn the_sample_knows_every_key_it_carries() {
    let key = tempfile::NamedTempFile::new().unwrap();
    let env = full_environment(key.path().to_str().unwrap());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    for flavor in SAMPLE_FLAVORS {
        let s = load_sample(flavor, &env).unwrap();
        assert_eq!(unknown_notices(&s), Vec::<String>::new(), "{flavor}");
    }
    // With every variable set, each setting not acted on has its line.
    let s = load_sample("cloudfronts3", &env).unwrap();
    let text: Vec<String> = s.notices.iter().map(|n| n.to_string()).collect();
    for key in [
        "`bugsnag`",
        "`cache_lru.host`",
        "`cors.send_wildcard`",
        "`cors.always_send`",
        "`cors.automatic_options`",
        "`cors.vary_header`",
        "`cors.resources`",
        "`boto_calling_format`",
        "`cloudfront`",
    ] {
        assert_eq!(
            text.iter().filter(|t| t.contains(key)).count(),
            1,
            "{key} once in {text:#?}"
        );
    }
    // A redirect local storage cannot make.
    let s = load_sample("dev", &env).unwrap();
    assert!(
        s.notices
            .iter()
            .any(|n| n.message.contains("`storage_redirect`") && !n.unknown),
        "{:?}",
        s.notices
    );
    // SIGV4 is what this build does; a false switch is nothing to say.
    assert!(!text.iter().any(|t| t.contains("s3_use_sigv4")));

    assert!(text
        .iter()
        .any(|t| t.contains("bugsnag") && t.contains("metrics")));
    // The GCS flavor: oauth2 false is silent; on, it is said.
    let s = load_sample("gcs", &env).unwrap();
    assert!(!s.notices.iter().any(|n| n.message.contains("oauth2")));
    let mut with_oauth = env.clone();
    with_oauth.retain(|(k, _)| *k != "GCS_OAUTH2");
    with_oauth.push(("GCS_OAUTH2", "true"));
    let s = load_sample("gcs", &with_oauth).unwrap();
    assert!(s
        .notices
        .iter()
        .any(|n| n.message.contains("`oauth2`") && n.message.contains("HMAC")));
}

#[test]
fn misspelled_keys_are_named_with_file_line_flavor_and_nearest_key() {
    let text = "\
common: &common
    loglevel: info
    serach_backend: sqlalchemy
prod:
    <<: *common
    storage: local
    storage_pth: /data
    cors:
        orgins: '*'
    my_own_note: kept
";
    let s = load_text(text, "prod", &[]).unwrap();
    let unknown = unknown_notices(&s);
    assert_eq!(unknown.len(), 4, "{unknown:#?}");
    let find = |key: &str| {
        unknown
            .iter()
            .find(|m| m.contains(&format!("`{key}`")))
            .unwrap_or_else(|| panic!("{key} in {unknown:#?}"))
            .clone()
    };
    let m = find("storage_pth");
    assert!(
        m.contains("flavor `prod` in test.yml, line 7")
            && m.contains("did you mean `storage_path`?"),
        "{m}"
    );
    let m = find("serach_backend");
    assert!(
        m.contains("line 3 (in `common`, merged in)")
            && m.contains("did you mean `search_backend`?"),
        "{m}"
    );
    let m = find("cors.orgins");
    assert!(
        m.contains("line 9") && m.contains("did you mean `cors.origins`?"),
        "{m}"
    );
    let m = find("my_own_note");
    assert!(m.contains("line 10") && !m.contains("did you mean"), "{m}");
    // Still a working configuration: the typo'd value is not used.
    assert_eq!(s.storage.path, "./tmp");
}

#[test]
fn mail_settings_are_typed_and_checked() {
    let text = "\
prod:
    email_exceptions:
        smtp_host: mail.example.com
        smtp_port: 2525
        smtp_login: registry
        smtp_password: hunter2
        smtp_secure: true
        from_addr: registry@example.com
        to_addr: [ops@example.com, dev@example.com]
        min_interval: 5
";
    let s = load_text(text, "prod", &[]).unwrap();
    assert_eq!(
        s.email,
        Some(EmailSettings {
            host: "mail.example.com".into(),
            port: 2525,
            login: Some(("registry".into(), "hunter2".into())),
            secure: true,
            ca: None,
            from: "registry@example.com".into(),
            to: vec!["ops@example.com".into(), "dev@example.com".into()],
            min_interval: Duration::from_secs(5),
            prefix: "email_exceptions.",
        })
    );
    assert!(
        !format!("{s:?}").contains("hunter2"),
        "the password in Debug"
    );
    assert!(s.notices.is_empty(), "{:?}", s.notices);

    // The older style: the keys directly in the flavor, defaults as the
    // sample's.
    let old = "prod:\n    smtp_host: localhost\n    from_addr: docker@myself.com\n    to_addr: my@myself.com\n";
    let s = load_text(old, "prod", &[]).unwrap();
    let email = s.email.unwrap();
    assert_eq!(
        (email.host.as_str(), email.port, email.secure),
        ("localhost", 25, false)
    );
    assert_eq!(email.min_interval, Duration::from_secs(60));
    assert_eq!(email.prefix, "");

    let ca_file = tempfile::NamedTempFile::new().unwrap();
    let ca = ca_file.path().display();
    for (bad, needles) in [
        (
            "prod:\n    email_exceptions:\n        smtp_host: h\n        from_addr: a@b.c\n",
            &["email_exceptions.to_addr", "must be set too"][..],
        ),
        (
            "prod:\n    email_exceptions:\n        smtp_host: h\n        from_addr: a@b.c\n        to_addr: not an address\n",
            &["email_exceptions.to_addr", "mail address"][..],
        ),
        (
            "prod:\n    email_exceptions:\n        smtp_host: h\n        smtp_password: hunter2\n        from_addr: a@b.c\n        to_addr: d@e.f\n",
            &["email_exceptions.smtp_login", "must be set too"][..],
        ),
        (
            "prod:\n    email_exceptions:\n        smtp_host: h\n        smtp_ca: /no/such/ca.pem\n        smtp_secure: true\n        from_addr: a@b.c\n        to_addr: d@e.f\n",
            &["email_exceptions.smtp_ca", "/no/such/ca.pem", "cannot be read"][..],
        ),
        (
            &format!("prod:\n    email_exceptions:\n        smtp_host: h\n        smtp_ca: {ca}\n        from_addr: a@b.c\n        to_addr: d@e.f\n"),
            &["email_exceptions.smtp_ca", "smtp_secure: true"][..],
        ),
        (
            "prod:\n    email_exceptions:\n        smtp_host: h\n        smtp_secure: 'yes'\n        from_addr: a@b.c\n        to_addr: d@e.f\n",
            &[][..],
        ),
    ] {
        match load_text(bad, "prod", &[]) {
            Err(e) => {
                let e = e.to_string();
                assert!(!needles.is_empty(), "{bad}: {e}");
                for n in needles {
                    assert!(e.contains(n), "{n} not in {e}");
                }
                assert!(!e.contains("hunter2"), "{e}");
            }
            // A string smtp_secure was a client key file: STARTTLS, said.
            Ok(s) => {
                assert!(needles.is_empty(), "{bad} loaded");
                assert!(s.email.unwrap().secure);
                assert_eq!(s.notices.len(), 1, "{:?}", s.notices);
            }
        }
    }
}

#[test]
fn key_lines_follow_nesting_and_skip_lists() {
    let text = "a: &x\n  b: 1\n  c:\n    - d: 2\n  e: {f: 3}\ng:\n  <<: *x\n  h: 4\n";
    let lines = yaml::key_lines(text);
    let want: Vec<(Vec<String>, usize)> = [
        (&["a"][..], 1),
        (&["a", "b"], 2),
        (&["a", "c"], 3),
        (&["a", "e"], 5),
        (&["a", "e", "f"], 5),
        (&["g"], 6),
        (&["g", "<<"], 7),
        (&["g", "h"], 8),
    ]
    .iter()
    .map(|(p, l)| (p.iter().map(|s| s.to_string()).collect(), *l))
    .collect();
    assert_eq!(lines, want);
}

#[test]
fn upload_session_bounds_are_typed_and_bounded() {
    use super::settings::UploadSessionSettings;
    let s = load_text("f:\n  loglevel: info\n", "f", &[]).unwrap();
    assert_eq!(
        s.upload_sessions,
        UploadSessionSettings {
            per_repository: 1000,
            total: 10_000
        }
    );
    let s = load_sample(
        "dev",
        &[
            ("MAX_UPLOAD_SESSIONS_PER_REPOSITORY", "7"),
            ("MAX_UPLOAD_SESSIONS", "70"),
        ],
    )
    .unwrap();
    assert_eq!(
        s.upload_sessions,
        UploadSessionSettings {
            per_repository: 7,
            total: 70
        }
    );
    for (key, bad) in [
        ("max_upload_sessions_per_repository", "0"),
        ("max_upload_sessions_per_repository", "1000001"),
        ("max_upload_sessions_per_repository", "\"5\""),
        ("max_upload_sessions", "0"),
        ("max_upload_sessions", "10000001"),
        ("max_upload_sessions", "many"),
    ] {
        let e = load_text(&format!("f:\n  {key}: {bad}\n"), "f", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("`{key}`")), "{key}: {bad}: {e}");
    }
    let e = load_sample("dev", &[("MAX_UPLOAD_SESSIONS", "-3")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("MAX_UPLOAD_SESSIONS"), "{e}");
}

#[test]
fn the_old_mirroring_section_is_the_default_upstream() {
    let text = "f:\n  mirroring:\n    source: https://registry-1.docker.io/\n    \
                source_index: https://index.docker.io\n    tags_cache_ttl: 60\n";
    let s = load_text(text, "f", &[]).unwrap();
    assert!(s.mirroring);
    let up = s.mirror.default_upstream().unwrap();
    assert_eq!(up.name, "mirroring");
    assert_eq!(up.url, "https://registry-1.docker.io");
    assert_eq!(up.index_url.as_deref(), Some("https://index.docker.io"));
    assert_eq!(up.prefix, "docker.io");
    assert_eq!(up.namespaces, ["docker.io"]);
    assert_eq!(up.tag_ttl, Duration::from_secs(60));
    assert_eq!(
        s.mirror.timeout,
        Duration::from_secs(DEFAULT_MIRROR_TIMEOUT)
    );
    // The sample's own variables, with its default of two days.
    let s = load_sample("dev", &[("MIRROR_SOURCE", "http://127.0.0.1:5001")]).unwrap();
    let up = s.mirror.default_upstream().unwrap();
    assert_eq!(
        (up.prefix.as_str(), up.namespaces[0].as_str()),
        ("127.0.0.1", "127.0.0.1:5001")
    );
    assert_eq!(up.tag_ttl, Duration::from_secs(DEFAULT_TAGS_CACHE_TTL));
    assert!(load_sample("dev", &[]).unwrap().mirror.upstreams.is_empty());
}

#[test]
fn upstreams_are_typed_and_may_not_claim_the_same_requests() {
    let text = "f:\n  mirror_timeout: 5\n  mirror_max_concurrent: 3\n  upstreams:\n    \
                hub:\n      url: https://registry-1.docker.io\n      default: true\n      \
                username: _env:HUB_USER\n      password: _env:HUB_PASSWORD\n    \
                ghcr:\n      url: https://ghcr.io\n      tag_ttl: 0\n    \
                local-dist:\n      url: http://127.0.0.1:5001\n      prefix: dist/cache\n      \
                namespaces: [dist.example.com, 127.0.0.1:5001]\n";
    let s = load_text(text, "f", &[("HUB_USER", "me"), ("HUB_PASSWORD", "pw")]).unwrap();
    assert_eq!(s.mirror.timeout, Duration::from_secs(5));
    assert_eq!(s.mirror.max_concurrent, 3);
    let names: Vec<&str> = s.mirror.upstreams.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["hub", "ghcr", "local-dist"]);
    let hub = &s.mirror.upstreams[0];
    assert!(hub.default);
    assert_eq!(
        (hub.prefix.as_str(), hub.username.as_deref()),
        ("docker.io", Some("me"))
    );
    assert_eq!(hub.tag_ttl, Duration::from_secs(DEFAULT_UPSTREAM_TAG_TTL));
    // The password never reaches a debug print.
    assert!(!format!("{s:?}").contains("\"pw\""), "{s:?}");
    let ghcr = &s.mirror.upstreams[1];
    assert_eq!(
        (ghcr.prefix.as_str(), ghcr.tag_ttl),
        ("ghcr.io", Duration::ZERO)
    );
    assert!(!ghcr.default);
    let dist = &s.mirror.upstreams[2];
    assert_eq!(dist.prefix, "dist/cache");
    assert_eq!(dist.namespaces, ["dist.example.com", "127.0.0.1:5001"]);

    let fails = |text: &str, needles: &[&str]| {
        let err = load_text(text, "f", &[]).unwrap_err().to_string();
        for needle in needles {
            assert!(err.contains(needle), "{needle:?} not in {err}");
        }
    };
    let up = |body: &str| format!("f:\n  upstreams:\n{body}");
    fails(
        &up("    a: {prefix: x}\n"),
        &["upstreams.a.url", "must be set"],
    );
    fails(
        &up("    a: {url: ftp://x}\n"),
        &["upstreams.a.url", "not an http:// or https://"],
    );
    fails(&up("    a: {url: 'https://x/?q'}\n"), &["upstreams.a.url"]);
    fails(
        &up("    a: {url: https://x, prefix: Big}\n"),
        &["upstreams.a.prefix"],
    );
    fails(
        &up("    a: {url: https://x, username: u}\n"),
        &["upstreams.a.password"],
    );
    fails(
        &up("    a: {url: https://x, tag_ttl: soon}\n"),
        &["upstreams.a.tag_ttl"],
    );
    fails(
        &up("    a b: {url: https://x}\n"),
        &["upstreams.a b", "upstream name"],
    );
    fails("f:\n  upstreams: [a]\n", &["upstreams", "mapping"]);
    fails(
        &up("    a: {url: https://x, default: true}\n    b: {url: https://y, default: true}\n"),
        &["upstreams.b.default", "upstreams.a.default"],
    );
    fails(
        &up("    a: {url: https://x.io}\n    b: {url: https://y, prefix: x.io/more}\n"),
        &["upstreams.b.prefix", "x.io/more"],
    );
    fails(
        &up("    a: {url: https://x.io}\n    b: {url: https://y, namespaces: x.io}\n"),
        &["upstreams.b.namespaces", "x.io"],
    );
    // The old section's source is a default upstream: a second one clashes.
    fails(
        "f:\n  mirroring: {source: https://x}\n  upstreams:\n    a: {url: https://y, default: true}\n",
        &["upstreams.a.default", "mirroring.source"],
    );
    fails(
        "f:\n  mirror_timeout: 0\n",
        &["mirror_timeout", "from 1 to 3600"],
    );
}

#[test]
fn unknown_keys_of_an_upstream_are_named_with_a_suggestion() {
    let text = "f:\n  upstreams:\n    hub:\n      url: https://registry-1.docker.io\n      \
                tag_tll: 5\n";
    let s = load_text(text, "f", &[]).unwrap();
    let text: Vec<String> = unknown_notices(&s);
    assert_eq!(text.len(), 1, "{text:?}");
    assert!(text[0].contains("`upstreams.hub.tag_tll`"), "{text:?}");
    assert!(
        text[0].contains("did you mean `upstreams.*.tag_ttl`?"),
        "{text:?}"
    );
}

#[test]
fn notification_endpoints_read_as_distribution_writes_them() {
    let text = "f:\n  notifications:\n    events:\n      includereferences: false\n    \
                endpoints:\n      - name: ci\n        url: _env:HOOK_URL\n        headers:\n          \
                Authorization: [Bearer t0k]\n          X-One: _env:HOOK_ONE\n        timeout: 500ms\n        \
                threshold: 5\n        backoff: 2s\n        ignoredmediatypes:\n          - \
                application/octet-stream\n        ignore:\n          mediatypes: [a/b]\n          \
                actions: [pull]\n      - name: audit\n        url: https://audit.example.com/e\n        \
                pulls: true\n        queue_limit: 10\n      - name: paused\n        disabled: true\n        \
                url: http://x\n";
    let env = [
        ("HOOK_URL", "http://127.0.0.1:9/events"),
        ("HOOK_ONE", "single"),
    ];
    let s = load_text(text, "f", &env).unwrap();
    let n = &s.notifications;
    assert!(!n.include_references);
    assert_eq!(n.endpoints.len(), 2, "the disabled one is left out");
    let ci = &n.endpoints[0];
    assert_eq!(ci.url, "http://127.0.0.1:9/events");
    assert_eq!(
        ci.headers,
        [
            ("Authorization".to_owned(), "Bearer t0k".to_owned()),
            ("X-One".to_owned(), "single".to_owned())
        ]
    );
    assert_eq!(ci.timeout, Duration::from_millis(500));
    assert_eq!(ci.backoff, Duration::from_secs(2));
    assert_eq!(ci.ignored_media_types, ["application/octet-stream", "a/b"]);
    assert_eq!(ci.ignored_actions, ["pull"]);
    assert!(!ci.pulls);
    let audit = &n.endpoints[1];
    assert!(audit.pulls);
    assert_eq!(audit.queue_limit, 10);
    assert_eq!(audit.timeout, DEFAULT_NOTIFICATION_TIMEOUT);
    // The token is in no output meant for people.
    assert!(!format!("{s:?}").contains("t0k"));
    // `threshold` and the disabled endpoint are said, not silently dropped;
    // nothing is unknown.
    let said: Vec<String> = s.notices.iter().map(|n| n.message.clone()).collect();
    assert!(said.iter().any(|m| m.contains("threshold")), "{said:?}");
    assert!(
        said.iter().any(|m| m.contains("`paused` is disabled")),
        "{said:?}"
    );
    assert!(unknown_notices(&s).is_empty(), "{said:?}");
    assert!(load_text("f:\n  x: 1\n", "f", &[])
        .unwrap()
        .notifications
        .endpoints
        .is_empty());
}

#[test]
fn bad_notification_settings_name_the_endpoint_key() {
    let endpoint = |body: &str| format!("f:\n  notifications:\n    endpoints:\n      - {body}\n");
    let cases = [
        ("name: ci", "endpoints[0].url"),
        ("url: http://x", "endpoints[0].name"),
        ("{name: ci, url: 'ftp://x'}", "endpoints[0].url"),
        ("{name: 'a b', url: 'http://x'}", "endpoints[0].name"),
        (
            "{name: ci, url: 'http://x', timeout: 500}",
            "endpoints[0].timeout",
        ),
        (
            "{name: ci, url: 'http://x', backoff: soon}",
            "endpoints[0].backoff",
        ),
        (
            "{name: ci, url: 'http://x', ignore: {actions: [fetch]}}",
            "ignore.actions",
        ),
        (
            "{name: ci, url: 'http://x', headers: {'Bad Name': x}}",
            "headers.Bad Name",
        ),
        ("{name: ci, url: 'http://x', queue_limit: 0}", "queue_limit"),
    ];
    for (body, key) in cases {
        let err = load_text(&endpoint(body), "f", &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!(
                "notifications.{}",
                key.trim_start_matches("endpoints[0].")
            )) || err.contains(key),
            "{body}: {err}"
        );
    }
    let twice = "f:\n  notifications:\n    endpoints:\n      - {name: ci, url: 'http://x'}\n      \
                 - {name: ci, url: 'http://y'}\n";
    let err = load_text(twice, "f", &[]).unwrap_err().to_string();
    assert!(err.contains("names two endpoints"), "{err}");
    // Unknown keys of an endpoint are named, with the nearest known one.
    let typo = "f:\n  notifications:\n    endpoints:\n      - {name: ci, url: 'http://x', \
                timout: 1s}\n";
    let s = load_text(typo, "f", &[]).unwrap();
    let text = unknown_notices(&s);
    assert_eq!(text.len(), 1, "{text:?}");
    assert!(
        text[0].contains("notifications.endpoints[0].timout"),
        "{text:?}"
    );
}

#[test]
fn rules_take_globs_and_regular_expressions() {
    let text = "f:\n  rules:\n    - repositories: prod/*\n      immutable_tags: ['v*', \
                'regex:release-\\d+']\n    - repositories: ['team/**', 'regex:ops/.+']\n      \
                immutable_tags: 'stable-{a,b}'\n    - repositories: idle\n";
    let s = load_text(text, "f", &[]).unwrap();
    assert_eq!(s.rules.len(), 3);
    let prod = &s.rules[0];
    assert!(prod.repositories[0].matches("prod/app"));
    assert!(!prod.repositories[0].matches("prod/a/b"));
    assert!(prod.immutable_tags[1].matches("release-12"));
    // One string is one pattern, commas and all.
    assert_eq!(s.rules[1].immutable_tags.len(), 1);
    assert!(s.rules[1].immutable_tags[0].matches("stable-b"));
    assert!(s.rules[1].repositories[1].matches("ops/x"));
    // A rule that sets nothing is said; nothing is unknown.
    let said: Vec<String> = s.notices.iter().map(|n| n.message.clone()).collect();
    assert!(
        said.iter().any(|m| m.contains("`rules[2]` sets nothing")),
        "{said:?}"
    );
    assert!(unknown_notices(&s).is_empty(), "{said:?}");
    let typo = "f:\n  rules:\n    - {repositories: x, immutable_tag: [v1]}\n";
    let text = unknown_notices(&load_text(typo, "f", &[]).unwrap());
    assert_eq!(text.len(), 1, "{text:?}");
    assert!(text[0].contains("rules[0].immutable_tag"), "{text:?}");
}

#[test]
fn retention_keys_take_counts_spans_and_patterns() {
    let text = "f:\n  rules:\n    - repositories: ci/*\n      keep_last: 10\n      \
                keep_within: 1d 12h\n      untagged_after: 2w\n    - repositories: x\n      \
                keep_within: 30d\n      keep_tags: ['stable', 'v*']\n";
    let s = load_text(text, "f", &[]).unwrap();
    let day = std::time::Duration::from_secs(86_400);
    let ci = s.rules[0].retention.as_ref().unwrap();
    assert_eq!(ci.keep_last, Some(10));
    assert_eq!(ci.keep_within, Some(day * 3 / 2));
    assert_eq!(ci.untagged_after, Some(day * 14));
    // `latest` unless the rule lists its own.
    assert_eq!(ci.keep_tags.len(), 1);
    assert!(ci.keep_tags[0].matches("latest"));
    let x = s.rules[1].retention.as_ref().unwrap();
    assert_eq!(x.keep_within, Some(day * 30));
    assert!(x.keep_tags[1].matches("v2") && !x.keep_tags.iter().any(|p| p.matches("latest")));
    assert!(s.notices.is_empty(), "{:?}", s.notices);
}

#[test]
fn quotas_take_sizes_with_their_units() {
    let text = "f:\n  rules:\n    - {repositories: a, quota: 50MiB}\n    \
                - {repositories: b, quota: 10GB}\n    - {repositories: c, quota: 1234}\n    \
                - {repositories: d, quota: ' 2 TiB '}\n    - {repositories: e, quota: '7'}\n";
    let s = load_text(text, "f", &[]).unwrap();
    let quotas: Vec<Option<u64>> = s.rules.iter().map(|r| r.quota).collect();
    assert_eq!(
        quotas,
        [
            Some(50 << 20),
            Some(10_000_000_000),
            Some(1234),
            Some(2 << 40),
            Some(7)
        ]
    );
    assert!(s.notices.is_empty(), "{:?}", s.notices);
}

#[test]
fn bad_rules_name_the_rule_and_its_key() {
    let rule = |body: &str| format!("f:\n  rules:\n    - {body}\n");
    let cases = [
        (
            "{immutable_tags: [v1]}",
            "rules[0].repositories",
            "must be set",
        ),
        (
            "{repositories: 'prod/[a'}",
            "rules[0].repositories",
            "not a glob",
        ),
        (
            "{repositories: x, immutable_tags: ['regex:v(']}",
            "rules[0].immutable_tags",
            "not a regular expression",
        ),
        (
            "{repositories: x, immutable_tags: [1]}",
            "rules[0].immutable_tags",
            "pattern",
        ),
        ("just-a-string", "rules[0]", "a mapping"),
        (
            "{repositories: x, keep_last: 0}",
            "rules[0].keep_last",
            "a whole number from 1",
        ),
        (
            "{repositories: x, keep_within: 30}",
            "rules[0].keep_within",
            "a span of time with its unit",
        ),
        (
            "{repositories: x, untagged_after: 10s}",
            "rules[0].untagged_after",
            "a span of time",
        ),
        (
            "{repositories: x, keep_tags: [stable]}",
            "rules[0].keep_tags",
            "neither is set",
        ),
        ("{repositories: x, quota: 50mb}", "rules[0].quota", "a size"),
        ("{repositories: x, quota: 0}", "rules[0].quota", "a size"),
        ("{repositories: x, quota: -5}", "rules[0].quota", "a size"),
        ("{repositories: x, quota: 2EiB}", "rules[0].quota", "a size"),
        (
            "{repositories: x, quota: 9999999TiB}",
            "rules[0].quota",
            "a size",
        ),
    ];
    for (body, key, why) in cases {
        let err = load_text(&rule(body), "f", &[]).unwrap_err().to_string();
        assert!(err.contains(key) && err.contains(why), "{body}: {err}");
    }
    let err = load_text("f:\n  rules: {repositories: x}\n", "f", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("a list of rules"), "{err}");
}

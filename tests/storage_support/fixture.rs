//! A fresh, empty storage per test, and a way to look at what it left
//! outside its root.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use registry_v1::config::{S3Settings, StorageKind, SwiftAuth, SwiftSettings};
use registry_v1::storage::cache::{CachedStorage, RedisCache};
use registry_v1::storage::local::LocalStorage;
use registry_v1::storage::memory::MemoryStorage;
use registry_v1::storage::s3::S3Storage;
use registry_v1::storage::swift::SwiftStorage;
use registry_v1::storage::Storage;
use s3::creds::Credentials;
use s3::{Bucket, BucketConfiguration, Region};

use super::{s3_server, swift_server};

pub struct Fixture {
    pub storage: Arc<dyn Storage>,
    /// Whether the driver should give redirect URLs.
    pub redirects: bool,
    place: Place,
}

enum Place {
    Local {
        dir: tempfile::TempDir,
        root: PathBuf,
    },
    Bucket {
        bucket: Box<Bucket>,
        prefix: String,
        /// What the driver was built from, to build another.
        kind: StorageKind,
        settings: S3Settings,
        storage_path: String,
    },
    /// A container of its own on the test Swift.
    Swift {
        settings: SwiftSettings,
        storage_path: String,
        prefix: String,
    },
    Memory(MemoryStorage),
    /// The memory driver behind the Redis cache, every path cached.
    Cached {
        memory: MemoryStorage,
        cache: Arc<RedisCache>,
    },
}

/// Settings for a bucket of the local S3 server.
pub fn s3_settings(port: u16, bucket: &str, encrypt: bool) -> S3Settings {
    S3Settings {
        bucket: bucket.to_owned(),
        region: Some("eu-west-1".to_owned()),
        access_key: Some("test-access".to_owned()),
        secret_key: Some("test-secret".to_owned()),
        encrypt,
        secure: false,
        host: Some("127.0.0.1".to_owned()),
        port: Some(port),
    }
}

/// A new, empty bucket on the local S3 server, for inspecting it directly.
pub async fn new_bucket(port: u16) -> Box<Bucket> {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "t{}-{}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::SeqCst)
    );
    let region = Region::Custom {
        region: "eu-west-1".to_owned(),
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    let creds = Credentials::new(Some("test-access"), Some("test-secret"), None, None, None)
        .expect("credentials");
    let created =
        Bucket::create_with_path_style(&name, region, creds, BucketConfiguration::default())
            .await
            .expect("create bucket");
    assert!(
        created.success(),
        "create bucket {name}: {} {}",
        created.response_code,
        created.response_text
    );
    created.bucket
}

impl Fixture {
    pub async fn local() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        let storage = LocalStorage::new(root.to_str().expect("utf-8 temp path")).expect("local");
        Fixture {
            storage: Arc::new(storage),
            redirects: false,
            place: Place::Local { dir, root },
        }
    }

    pub async fn memory() -> Fixture {
        let storage = MemoryStorage::new();
        Fixture {
            storage: Arc::new(storage.clone()),
            redirects: false,
            place: Place::Memory(storage),
        }
    }

    /// The memory driver behind the Redis cache of the shared test Redis,
    /// with every path cached (the registry caches only files it never
    /// rewrites: here every write exercises the invalidation); `None`
    /// without redis-server.
    pub async fn cached_memory() -> Option<Fixture> {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let server = super::redis_server::shared()?;
        let settings = registry_v1::config::CacheSettings {
            host: "127.0.0.1".into(),
            port: server.port,
            db: 0,
            password: None,
            section: "cache",
        };
        let namespace = format!(
            "suite-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::SeqCst)
        );
        let cache = Arc::new(RedisCache::new(&settings, &namespace).expect("cache"));
        let memory = MemoryStorage::new();
        Some(Fixture {
            storage: Arc::new(CachedStorage::new(
                Arc::new(memory.clone()),
                cache.clone(),
                |_| true,
            )),
            redirects: false,
            place: Place::Cached { memory, cache },
        })
    }

    /// S3 (or GCS, through the same interface) on the local S3 server, in
    /// a bucket of its own; `None` when the server is not installed.
    pub async fn bucket(kind: StorageKind, storage_path: &str, encrypt: bool) -> Option<Fixture> {
        let server = s3_server::server()?;
        let bucket = new_bucket(server.port).await;
        let settings = s3_settings(server.port, &bucket.name(), encrypt);
        let storage = S3Storage::new(&kind, &settings, storage_path).expect("s3 driver");
        let storage_path = storage_path.to_owned();
        storage.check().await.expect("bucket check");
        let trimmed = storage_path.trim_matches('/');
        Some(Fixture {
            storage: Arc::new(storage),
            redirects: true,
            place: Place::Bucket {
                bucket,
                prefix: if trimmed.is_empty() {
                    String::new()
                } else {
                    format!("{trimmed}/")
                },
                kind,
                settings,
                storage_path,
            },
        })
    }

    /// Swift on the test server, in a container of its own; `None` when
    /// Swift is not installed.
    pub async fn swift(storage_path: &str) -> Option<Fixture> {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let server = swift_server::server()?;
        let settings = swift_settings(
            server,
            &format!(
                "t{}-{}",
                std::process::id(),
                COUNT.fetch_add(1, Ordering::SeqCst)
            ),
        );
        let storage = SwiftStorage::new(&settings, storage_path).expect("swift driver");
        // Makes the containers.
        storage.check().await.expect("swift check");
        set_temp_url_key(server).await;
        let storage = SwiftStorage::new(&settings, storage_path).expect("swift driver");
        storage.check().await.expect("swift check");
        let trimmed = storage_path.trim_matches('/');
        Some(Fixture {
            storage: Arc::new(storage),
            redirects: true,
            place: Place::Swift {
                settings,
                storage_path: storage_path.to_owned(),
                prefix: if trimmed.is_empty() {
                    String::new()
                } else {
                    format!("{trimmed}/")
                },
            },
        })
    }

    /// Another driver on the same place, as another instance of the
    /// registry (or the same one after a restart) would open it. The
    /// memory driver's place is its map: the same one.
    pub fn reopen(&self) -> Arc<dyn Storage> {
        match &self.place {
            Place::Local { root, .. } => {
                Arc::new(LocalStorage::new(root.to_str().expect("utf-8 temp path")).expect("local"))
            }
            Place::Bucket {
                kind,
                settings,
                storage_path,
                ..
            } => Arc::new(S3Storage::new(kind, settings, storage_path).expect("s3 driver")),
            Place::Swift {
                settings,
                storage_path,
                ..
            } => Arc::new(SwiftStorage::new(settings, storage_path).expect("swift driver")),
            Place::Memory(storage) => Arc::new(storage.clone()),
            Place::Cached { memory, cache } => Arc::new(CachedStorage::new(
                Arc::new(memory.clone()),
                cache.clone(),
                |_| true,
            )),
        }
    }

    /// The container behind a Swift fixture.
    pub fn container(&self) -> &str {
        match &self.place {
            Place::Swift { settings, .. } => &settings.container,
            _ => panic!("not a Swift fixture"),
        }
    }

    /// The bucket behind an S3 fixture.
    pub fn raw_bucket(&self) -> Option<&Bucket> {
        match &self.place {
            Place::Bucket { bucket, .. } => Some(bucket),
            Place::Local { .. } | Place::Swift { .. } | Place::Memory(_) | Place::Cached { .. } => {
                None
            }
        }
    }

    /// Whatever the tests wrote outside the storage root: must stay empty.
    pub async fn outside(&self) -> Vec<String> {
        match &self.place {
            Place::Local { dir, root } => walk(dir.path())
                .into_iter()
                .filter(|p| !p.starts_with(root))
                .map(|p| p.display().to_string())
                .collect(),
            Place::Bucket { bucket, prefix, .. } => all_keys(bucket)
                .await
                .into_iter()
                .filter(|k| !k.starts_with(prefix.as_str()))
                .collect(),
            Place::Swift {
                settings, prefix, ..
            } => swift_names(&settings.container, "")
                .await
                .into_iter()
                .filter(|k| !k.starts_with(prefix.as_str()))
                .collect(),
            // A map has no outside.
            Place::Memory(_) | Place::Cached { .. } => Vec::new(),
        }
    }

    /// Temporary files or unfinished uploads: must be empty after any
    /// write, finished or failed.
    pub async fn leftovers(&self) -> Vec<String> {
        match &self.place {
            Place::Local { root, .. } => walk(root)
                .into_iter()
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with('.'))
                })
                .map(|p| p.display().to_string())
                .collect(),
            Place::Bucket { bucket, .. } => bucket
                .list_multiparts_uploads(None, None)
                .await
                .expect("list uploads")
                .into_iter()
                .flat_map(|page| page.uploads)
                .map(|u| format!("unfinished upload of {}", u.key))
                .collect(),
            Place::Swift { settings, .. } => swift_leftovers(&settings.container).await,
            Place::Memory(storage)
            | Place::Cached {
                memory: storage, ..
            } => storage
                .unfinished()
                .into_iter()
                .map(|p| format!("unfinished write of {p}"))
                .collect(),
        }
    }
}

/// Settings of the driver for `container` on the test Swift (auth v1).
pub fn swift_settings(server: &swift_server::SwiftServer, container: &str) -> SwiftSettings {
    SwiftSettings {
        container: container.to_owned(),
        auth: SwiftAuth::V1 {
            url: server.auth_url(),
            user: swift_server::USER.to_owned(),
            key: swift_server::KEY.to_owned(),
        },
        region: None,
        endpoint_type: "public".to_owned(),
        storage_url: None,
        temp_url_key: None,
        cacert: None,
    }
}

/// The temp-URL key of the test account (the driver reads it at start).
pub const TEMP_URL_KEY: &str = "suite-temp-url-key";

/// A token and the storage URL of the test account.
pub async fn swift_login() -> (String, String) {
    let server = swift_server::server().expect("the Swift server");
    let response = reqwest::Client::new()
        .get(server.auth_url())
        .header("X-Auth-User", swift_server::USER)
        .header("X-Auth-Key", swift_server::KEY)
        .send()
        .await
        .expect("Swift auth");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .expect(name)
            .to_owned()
    };
    (header("X-Auth-Token"), header("X-Storage-Url"))
}

async fn set_temp_url_key(_server: &swift_server::SwiftServer) {
    let (token, url) = swift_login().await;
    let status = reqwest::Client::new()
        .post(url)
        .header("X-Auth-Token", token)
        .header("X-Account-Meta-Temp-URL-Key", TEMP_URL_KEY)
        .send()
        .await
        .expect("set the temp-URL key")
        .status();
    assert!(status.is_success(), "set the temp-URL key: {status}");
}

/// Every object of a container of the test Swift (`[]` when it does not
/// exist), with the fields of its listing.
pub async fn swift_listing(container: &str, prefix: &str) -> Vec<serde_json::Value> {
    let (token, url) = swift_login().await;
    let client = reqwest::Client::new();
    let mut all: Vec<serde_json::Value> = Vec::new();
    loop {
        let mut request = client
            .get(format!("{url}/{container}"))
            .header("X-Auth-Token", &token)
            .query(&[("format", "json"), ("prefix", prefix)]);
        if let Some(last) = all.last() {
            request = request.query(&[("marker", last["name"].as_str().unwrap())]);
        }
        let response = request.send().await.expect("Swift listing");
        if response.status() == 404 {
            return all;
        }
        let page: Vec<serde_json::Value> = response.json().await.expect("a JSON listing");
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

/// The names of [`swift_listing`].
pub async fn swift_names(container: &str, prefix: &str) -> Vec<String> {
    swift_listing(container, prefix)
        .await
        .iter()
        .map(|o| o["name"].as_str().unwrap().to_owned())
        .collect()
}

/// What a write left behind in Swift: segments no manifest uses, and
/// writers' state objects (an upload neither committed nor cancelled).
async fn swift_leftovers(container: &str) -> Vec<String> {
    let (token, url) = swift_login().await;
    let client = reqwest::Client::new();
    let segments = format!("{container}_segments");
    let mut used = std::collections::HashSet::new();
    let mut left = Vec::new();
    for object in swift_listing(container, "").await {
        let name = object["name"].as_str().unwrap();
        if name.ends_with(".writer") {
            left.push(format!("unfinished writer {name}"));
        }
        if object.get("slo_etag").is_none() {
            continue;
        }
        let manifest: Vec<serde_json::Value> = client
            .get(format!("{url}/{container}/{name}"))
            .query(&[("multipart-manifest", "get")])
            .header("X-Auth-Token", &token)
            .send()
            .await
            .expect("a manifest")
            .json()
            .await
            .expect("a JSON manifest");
        for segment in manifest {
            used.insert(segment["name"].as_str().unwrap().to_owned());
        }
    }
    for name in swift_names(&segments, "").await {
        if !name.starts_with("_locks/")
            && !used.contains(&format!("/{segments}/{name}"))
            && swift_expiry(&segments, &name).await.is_none()
        {
            left.push(format!("segment {name} of no manifest"));
        }
    }
    left
}

/// When Swift's object expirer removes `name` of `container` (its
/// `X-Delete-At`, seconds since the epoch), if ever.
pub async fn swift_expiry(container: &str, name: &str) -> Option<u64> {
    let (token, url) = swift_login().await;
    let response = reqwest::Client::new()
        .head(format!("{url}/{container}/{name}"))
        .header("X-Auth-Token", &token)
        .send()
        .await
        .expect("HEAD a segment");
    response
        .headers()
        .get("X-Delete-At")
        .and_then(|v| v.to_str().ok()?.parse().ok())
}

/// Every key in a bucket.
pub async fn all_keys(bucket: &Bucket) -> Vec<String> {
    bucket
        .list(String::new(), None)
        .await
        .expect("list bucket")
        .into_iter()
        .flat_map(|page| page.contents)
        .map(|o| o.key)
        .collect()
}

/// Every file (not folder) under `dir`.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

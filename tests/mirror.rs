//! The pull-through cache (issue 27) through the real binary, in front of
//! real upstreams on loopback: distribution 2.8.2 behind htpasswd,
//! registry-v1 behind token auth (a token service of the test's own), and
//! an upstream of the test's own where a fault must be made on purpose (a
//! blob cut off mid-body, a slow blob that 16 clients ask for at once).
//! Clients: curl-like requests (reqwest), containerd's `ctr` with a
//! `hosts.toml` mirror, skopeo and podman with a `registries.conf` mirror.

mod common;
mod login_support;
mod v2_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use login_support::*;
use v2_support::distribution::Distribution;
use v2_support::*;

const USER: &str = "alice";
const PASSWORD: &str = "up stream:pw";

#[derive(Clone)]
/// A small image whose layer is a real gzip'd tar (ctr and podman unpack
/// what they pull).
struct Image {
    config: Vec<u8>,
    layer: Vec<u8>,
    manifest: Vec<u8>,
}

impl Image {
    fn new(label: &str) -> Image {
        let tar = rootfs_tar(label);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let layer = gz.finish().unwrap();
        let config = json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Cmd": ["/bin/true"], "Env": [format!("LABEL={label}")]},
            "rootfs": {"type": "layers", "diff_ids": [sha256(&tar)]},
        });
        Image::of(&config, layer)
    }

    /// The one-layer image of `config` and `layer`.
    fn of(config: &Value, layer: Vec<u8>) -> Image {
        let config = serde_json::to_vec(config).unwrap();
        let manifest = manifest_bytes(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, &config),
            "layers": [descriptor(OCI_LAYER, &layer)],
        }));
        Image {
            config,
            layer,
            manifest,
        }
    }

    fn digest(&self) -> String {
        sha256(&self.manifest)
    }

    /// Pushed to an open registry-v1 on `backend`'s storage, which the
    /// upstream under test then serves.
    fn seed(&self, backend: &Backend, name: &str, tag: &str) {
        let writer = backend.start(&[]);
        let v2 = V2::new(&writer);
        v2.push_blob(name, &self.config);
        v2.push_blob(name, &self.layer);
        v2.push_manifest(name, tag, OCI_MANIFEST, &self.manifest);
    }
}

/// distribution 2.8.2 on a folder, behind htpasswd (alice only).
struct HtpasswdUpstream {
    backend: Backend,
    _dir: tempfile::TempDir,
    port: u16,
    distribution: Option<Distribution>,
}

impl HtpasswdUpstream {
    fn start() -> HtpasswdUpstream {
        let dir = tempfile::tempdir().unwrap();
        let mut upstream = HtpasswdUpstream {
            backend: Backend::local(),
            _dir: dir,
            port: common::free_port(),
            distribution: None,
        };
        upstream.resume();
        upstream
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        self.distribution = None;
    }

    /// Starts it again, on the same port and folder.
    fn resume(&mut self) {
        let file = self._dir.path().join("htpasswd");
        let entry = format!("{USER}:{}\n", bcrypt::hash(PASSWORD, 4).unwrap());
        std::fs::write(&file, entry).unwrap();
        let auth = format!(
            "auth:\n  htpasswd:\n    realm: upstream\n    path: {}\n",
            file.display()
        );
        let root = self.backend.storage_path().unwrap();
        self.distribution = Some(Distribution::start_with(&root, &auth, self.port));
    }
}

/// A registry-v1 in front of upstreams, from a flavor file of the test's.
fn mirror_with(backend: &Backend, flavor: &str, env: &[(&str, &str)]) -> common::Registry {
    let dir = backend.storage_path().unwrap();
    let file = dir.parent().unwrap().join("mirror.yml");
    std::fs::write(
        &file,
        format!(
            "mirror:\n  storage: local\n  storage_path: {}\n  search_backend: sqlalchemy\n  sqlalchemy_index_database: _env:SQLALCHEMY_INDEX_DATABASE\n  standalone: true\n  metrics_address: _env:METRICS_ADDRESS\n{flavor}",
            dir.display()
        ),
    )
    .unwrap();
    let mut all = vec![
        ("DOCKER_REGISTRY_CONFIG", file.to_str().unwrap()),
        ("SETTINGS_FLAVOR", "mirror"),
    ];
    all.extend_from_slice(env);
    common::Registry::start(&all)
}

fn cache_state(resp: &reqwest::blocking::Response) -> String {
    header(resp, "x-registry-cache").unwrap_or_default()
}

/// Files of the blob `digest` in the v2 tree.
fn blob_stored(backend: &Backend, digest: &str) -> bool {
    let hex = hex_of(digest);
    backend
        .stored_keys()
        .iter()
        .any(|k| k == &format!("{V2_ROOT}/blobs/sha256/{}/{hex}/data", &hex[..2]))
}

/// Whether the blob is stored within a few seconds: a client's pull ends
/// once the digest checks out, while the cache makes its copy durable.
fn blob_stored_soon(backend: &Backend, digest: &str) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !blob_stored(backend, digest) {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// The old section as the original's sample has it (`MIRROR_SOURCE`,
/// `MIRROR_TAGS_CACHE_TTL`), plus the login this upstream needs: a pull of
/// a name this registry does not hold goes to the source, is kept, and is
/// served again with the source stopped; a tag moved upstream is seen once
/// its trust time is over; a stopped source leaves the cached copy served,
/// said to be stale; pushes into the cache are refused, pushes beside it
/// are not.
#[test]
fn the_old_mirroring_section_caches_a_v2_source() {
    let mut upstream = HtpasswdUpstream::start();
    let first = Image::new("mirror-old-1");
    first.seed(&upstream.backend, "team/app", "v1");
    let mirror_store = Backend::local();
    let url = upstream.url();
    let registry = mirror_store.start(&[
        ("MIRROR_SOURCE", url.as_str()),
        ("MIRROR_TAGS_CACHE_TTL", "2"),
        ("MIRROR_USERNAME", USER),
        ("MIRROR_PASSWORD", PASSWORD),
    ]);
    let v2 = V2::new(&registry);
    let ping = common::client().get(registry.url("/_ping")).send().unwrap();
    assert_eq!(
        header(&ping, "x-docker-registry-standalone").as_deref(),
        Some("mirror")
    );

    // The docker engine's way: the name as the client wrote it.
    let resp = v2.get_manifest("/v2/team/app/manifests/v1");
    assert_eq!(resp.status(), 200, "{}", registry.log());
    assert_eq!(cache_state(&resp), "miss");
    assert_eq!(header(&resp, "docker-content-digest"), Some(first.digest()));
    assert_eq!(resp.bytes().unwrap(), first.manifest);
    let layer_path = format!("/v2/team/app/blobs/{}", sha256(&first.layer));
    let resp = v2.get(&layer_path);
    assert_eq!(resp.status(), 200);
    assert_eq!(cache_state(&resp), "miss");
    assert_eq!(resp.bytes().unwrap(), first.layer);
    assert!(blob_stored_soon(&mirror_store, &sha256(&first.layer)));
    let resp = v2.get(&layer_path);
    assert_eq!(cache_state(&resp), "hit");
    assert_eq!(resp.bytes().unwrap(), first.layer);
    // Kept under the source's prefix, beside the registry's own.
    let resp = v2.get_manifest("/v2/127.0.0.1/team/app/manifests/v1");
    assert_eq!(resp.status(), 200);
    assert_eq!(cache_state(&resp), "hit");

    // Moved upstream: trusted for 2 s, then checked with a HEAD.
    let second = Image::new("mirror-old-2");
    second.seed(&upstream.backend, "team/app", "v1");
    let resp = v2.get_manifest("/v2/team/app/manifests/v1");
    assert_eq!(header(&resp, "docker-content-digest"), Some(first.digest()));
    std::thread::sleep(Duration::from_millis(2200));
    let resp = v2.get_manifest("/v2/team/app/manifests/v1");
    assert_eq!(cache_state(&resp), "miss");
    assert_eq!(
        header(&resp, "docker-content-digest"),
        Some(second.digest())
    );
    std::thread::sleep(Duration::from_millis(2200));
    let resp = v2.head_manifest("/v2/team/app/manifests/v1");
    assert_eq!(cache_state(&resp), "revalidated");

    // The source stops: what is cached is still served, and said so.
    upstream.stop();
    let resp = v2.get(&layer_path);
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().unwrap(), first.layer);
    std::thread::sleep(Duration::from_millis(2200));
    let resp = v2.get_manifest("/v2/team/app/manifests/v1");
    assert_eq!(resp.status(), 200);
    assert_eq!(cache_state(&resp), "stale");
    assert!(header(&resp, "warning").is_some_and(|w| w.starts_with("110 ")));
    assert_eq!(
        header(&resp, "docker-content-digest"),
        Some(second.digest())
    );
    let by_digest = format!("/v2/team/app/manifests/{}", first.digest());
    assert_eq!(cache_state(&v2.get_manifest(&by_digest)), "hit");
    // What is not cached: a clear 502, never a hang.
    let started = std::time::Instant::now();
    v2.expect_error(
        v2.get_manifest("/v2/team/other/manifests/v1"),
        502,
        "UNKNOWN",
        "an uncached tag with the source down",
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        registry.log().contains("serving the cached copy"),
        "{}",
        registry.log()
    );

    // The cache is the source's: no pushes into it; beside it, as ever.
    v2.expect_error(
        v2.request("POST", "/v2/127.0.0.1/team/app/blobs/uploads/")
            .header("content-length", "0")
            .send()
            .unwrap(),
        403,
        "DENIED",
        "a push into the cache",
    );
    v2.expect_error(
        v2.delete(&format!(
            "/v2/127.0.0.1/team/app/manifests/{}",
            first.digest()
        )),
        403,
        "DENIED",
        "a delete in the cache",
    );
    let mine = Image::new("mirror-old-mine");
    v2.push_blob("mine/app", &mine.config);
    v2.push_blob("mine/app", &mine.layer);
    v2.push_manifest("mine/app", "v1", OCI_MANIFEST, &mine.manifest);
    let resp = v2.get_manifest("/v2/mine/app/manifests/v1");
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-registry-cache"), None);

    // Back up: the catalog lists the cached repository.
    upstream.resume();
    let catalog: Value = v2.get("/v2/_catalog").json().unwrap();
    let names = catalog["repositories"].as_array().unwrap();
    assert!(names.contains(&json!("127.0.0.1/team/app")), "{catalog}");
    assert!(names.contains(&json!("mine/app")), "{catalog}");
}

/// A token service: alice (Basic) gets pull on whatever she asks;
/// tokens live `life` seconds. Counts the tokens it gave.
struct TokenService {
    port: u16,
    given: Arc<AtomicUsize>,
    _dir: tempfile::TempDir,
    cert: std::path::PathBuf,
}

impl TokenService {
    fn start(life: u64) -> TokenService {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("token.key");
        let cert = dir.path().join("token.crt");
        expect_ok(
            try_run(
                "openssl",
                &[
                    "req",
                    "-x509",
                    "-nodes",
                    "-days",
                    "2",
                    "-newkey",
                    "rsa:2048",
                    "-subj",
                    "/CN=token",
                    "-keyout",
                    key.to_str().unwrap(),
                    "-out",
                    cert.to_str().unwrap(),
                ],
            ),
            "openssl req",
        );
        let der = expect_ok(
            try_run(
                "openssl",
                &[
                    "pkey",
                    "-in",
                    key.to_str().unwrap(),
                    "-pubout",
                    "-outform",
                    "DER",
                ],
            ),
            "openssl pkey",
        )
        .stdout;
        let kid = libtrust_kid(&der);
        let signing =
            jsonwebtoken::EncodingKey::from_rsa_pem(&std::fs::read(&key).unwrap()).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let given = Arc::new(AtomicUsize::new(0));
        let counter = given.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (target, headers, _) = read_request(&stream);
                let basic = format!(
                    "Basic {}",
                    base64::Engine::encode(
                        &base64::engine::general_purpose::STANDARD,
                        format!("{USER}:{PASSWORD}")
                    )
                );
                if !headers
                    .iter()
                    .any(|(k, v)| k == "authorization" && *v == basic)
                {
                    respond(stream, 401, "application/json", b"{}", &[]);
                    continue;
                }
                let scopes: Vec<String> = target
                    .split_once('?')
                    .map_or("", |(_, q)| q)
                    .split('&')
                    .filter_map(|kv| kv.strip_prefix("scope="))
                    .map(|s| {
                        percent_encoding::percent_decode_str(s)
                            .decode_utf8_lossy()
                            .into_owned()
                    })
                    .collect();
                let access: Vec<Value> = scopes
                    .iter()
                    .filter_map(|s| {
                        let (_, rest) = s.split_once(':')?;
                        let (name, _) = rest.rsplit_once(':')?;
                        Some(json!({"type": "repository", "name": name, "actions": ["pull"]}))
                    })
                    .collect();
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
                header.kid = Some(kid.clone());
                let claims = json!({
                    "iss": "token-service.test", "sub": USER, "aud": "upstream.test",
                    "exp": now + life, "nbf": now - 1, "iat": now - 1,
                    "jti": rand_suffix(), "access": access,
                });
                let token = jsonwebtoken::encode(&header, &claims, &signing).unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                let body = json!({"token": token, "expires_in": life}).to_string();
                respond(stream, 200, "application/json", body.as_bytes(), &[]);
            }
        });
        TokenService {
            port,
            given,
            _dir: dir,
            cert,
        }
    }

    fn given(&self) -> usize {
        self.given.load(Ordering::SeqCst)
    }

    /// A registry-v1 on `backend` that asks for this service's tokens.
    fn registry(&self, backend: &Backend) -> common::Registry {
        let realm = format!("http://127.0.0.1:{}/token", self.port);
        backend.start(&[
            ("AUTH_TOKEN_REALM", realm.as_str()),
            ("AUTH_TOKEN_SERVICE", "upstream.test"),
            ("AUTH_TOKEN_ISSUER", "token-service.test"),
            ("AUTH_TOKEN_ROOTCERTBUNDLE", self.cert.to_str().unwrap()),
        ])
    }
}

/// One HTTP/1.1 request: its target, its headers (names lower-cased) and
/// its body.
fn read_request(stream: &TcpStream) -> (String, Vec<(String, String)>, Vec<u8>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    let _ = reader.read_line(&mut line);
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or("/").to_owned();
    let mut headers = vec![(":method".to_owned(), method)];
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let length = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0usize);
    let mut body = vec![0; length.min(1 << 20)];
    let _ = reader.read_exact(&mut body);
    (target, headers, body)
}

fn respond(mut stream: TcpStream, status: u16, kind: &str, body: &[u8], extra: &[(&str, &str)]) {
    let mut head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\
         Docker-Distribution-API-Version: registry/2.0\r\n",
        body.len()
    );
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
}

/// Two upstreams in one registry: distribution behind htpasswd (by
/// containerd's `ns` and by its prefix) and registry-v1 behind token auth
/// (by its prefix), with tokens that live 2 s renewed between the
/// requests of a pull; an `ns` no upstream serves is refused, and nothing
/// is asked of it.
#[test]
fn two_upstreams_picked_by_ns_and_prefix_with_basic_and_token_logins() {
    if !tool_available("openssl", INSTALL_AUTH) {
        return;
    }
    let dist = HtpasswdUpstream::start();
    let dist_image = Image::new("mirror-dist");
    dist_image.seed(&dist.backend, "team/app", "v1");
    let tokens = TokenService::start(2);
    let tok_store = Backend::local();
    let tok_image = Image::new("mirror-tok");
    tok_image.seed(&tok_store, "org/tool", "1.0");
    let tok = tokens.registry(&tok_store);
    assert_eq!(
        V2::new(&tok)
            .get_manifest("/v2/org/tool/manifests/1.0")
            .status(),
        401,
        "the token upstream asks for a login"
    );

    let store = Backend::local();
    let registry = mirror_with(
        &store,
        &format!(
            "  upstreams:\n    dist:\n      url: {}\n      username: {USER}\n      password: '{PASSWORD}'\n      \
             prefix: dist\n    tok:\n      url: {}\n      username: {USER}\n      password: '{PASSWORD}'\n      \
             prefix: tok/cache\n      namespaces: [tok.test]\n",
            dist.url(),
            tok.url("")
        ),
        &[],
    );
    let v2 = V2::new(&registry);
    let ns = dist.host();

    let path = format!("/v2/team/app/manifests/v1?ns={ns}");
    let resp = v2.get_manifest(&path);
    assert_eq!(resp.status(), 200, "{}", registry.log());
    assert_eq!(header(&resp, "oci-namespace"), Some(ns.clone()));
    assert_eq!(resp.bytes().unwrap(), dist_image.manifest);
    let resp = v2.get(&format!(
        "/v2/team/app/blobs/{}?ns={ns}",
        sha256(&dist_image.layer)
    ));
    assert_eq!(header(&resp, "oci-namespace"), Some(ns.clone()));
    assert_eq!(resp.bytes().unwrap(), dist_image.layer);
    // The same copy by the prefix.
    let resp = v2.get_manifest("/v2/dist/team/app/manifests/v1");
    assert_eq!(cache_state(&resp), "hit");
    let tags: Value = v2
        .get(&format!("/v2/team/app/tags/list?ns={ns}"))
        .json()
        .unwrap();
    assert_eq!(tags["tags"], json!(["v1"]), "{tags}");

    // Token auth, tokens of 2 s: the second request comes after the
    // first token is gone.
    let resp = v2.get_manifest("/v2/tok/cache/org/tool/manifests/1.0");
    assert_eq!(resp.status(), 200, "{}", registry.log());
    assert_eq!(resp.bytes().unwrap(), tok_image.manifest);
    let asked = tokens.given();
    assert!(asked >= 1);
    std::thread::sleep(Duration::from_millis(2500));
    let resp = v2.get(&format!(
        "/v2/org/tool/blobs/{}?ns=tok.test",
        sha256(&tok_image.layer)
    ));
    assert_eq!(resp.status(), 200, "{}", registry.log());
    assert_eq!(resp.bytes().unwrap(), tok_image.layer);
    assert!(
        tokens.given() > asked,
        "a fresh token for the request after expiry"
    );

    // No upstream for that namespace: refused, nothing fetched.
    v2.expect_error(
        v2.get_manifest("/v2/library/busybox/manifests/latest?ns=docker.io"),
        404,
        "NAME_UNKNOWN",
        "an ns nobody configured",
    );
    // Without ns, prefix or default upstream: the registry's own.
    v2.expect_error(
        v2.get_manifest("/v2/team/app/manifests/v1"),
        404,
        "NAME_UNKNOWN",
        "no default upstream",
    );
    // The copies are found by search as pushed repositories are.
    let found = common::search_names(&registry, "app");
    assert!(found.contains(&"dist/team/app".to_owned()), "{found:?}");
    let found = common::search_names(&registry, "tool");
    assert!(
        found.contains(&"tok/cache/org/tool".to_owned()),
        "{found:?}"
    );
}

/// containerd with a `hosts.toml` mirror, podman and skopeo with a
/// `registries.conf` mirror: each pulls an image of an upstream that asks
/// for a login they do not have, so only the mirror can have served it.
#[test]
fn ctr_podman_and_skopeo_pull_through_the_mirror() {
    let dist = HtpasswdUpstream::start();
    let image = Image::new("mirror-clients");
    dist_seed_three(&dist, &image);
    let store = Backend::local();
    let registry = mirror_with(
        &store,
        &format!(
            "  upstreams:\n    dist:\n      url: {}\n      username: {USER}\n      password: '{PASSWORD}'\n",
            dist.url()
        ),
        &[],
    );
    let mirror_host = format!("127.0.0.1:{}", registry.port);
    let work = tempfile::tempdir().unwrap();

    if tool_available("skopeo", INSTALL_CLIENTS) {
        let conf = registries_conf(
            work.path(),
            &dist.host(),
            &format!("{mirror_host}/127.0.0.1"),
        );
        let out = try_run_env(
            "skopeo",
            &[
                // skopeo 1.9 reads only this flag; later ones the variable too.
                "--registries-conf",
                conf.to_str().unwrap(),
                "copy",
                &format!("docker://{}/team/skopeo:v1", dist.host()),
                &format!("oci:{}:v1", work.path().join("skopeo-oci").display()),
            ],
            &[("CONTAINERS_REGISTRIES_CONF", conf.to_str().unwrap())],
        );
        expect_ok(out, "skopeo copy through the mirror");
        let resp = V2::new(&registry).get_manifest("/v2/127.0.0.1/team/skopeo/manifests/v1");
        assert_eq!(cache_state(&resp), "hit", "skopeo's pull stored the copy");
    }
    if tool_available("podman", INSTALL_CLIENTS) {
        let conf = registries_conf(
            work.path(),
            &dist.host(),
            &format!("{mirror_host}/127.0.0.1"),
        );
        let podman = Podman::new();
        let reference = format!("{}/team/podman:v1", dist.host());
        let root = podman.root.path().join("root");
        let runroot = podman.root.path().join("run");
        let out = try_run_env(
            "podman",
            &[
                "--storage-driver=vfs",
                &format!("--root={}", root.display()),
                &format!("--runroot={}", runroot.display()),
                "--cgroup-manager=cgroupfs",
                "--events-backend=file",
                "pull",
                &reference,
            ],
            &[("CONTAINERS_REGISTRIES_CONF", conf.to_str().unwrap())],
        );
        expect_ok(out, "podman pull through the mirror");
        let resp = V2::new(&registry).get_manifest("/v2/127.0.0.1/team/podman/manifests/v1");
        assert_eq!(cache_state(&resp), "hit", "podman's pull stored the copy");
    }
    match containerd::socket() {
        Some(socket) => {
            let namespace = containerd::Namespace::new(socket, "registry-v1-mirror");
            let hosts = work.path().join("hosts");
            let dir = hosts.join(dist.host());
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(
                dir.join("hosts.toml"),
                format!(
                    "server = \"{}\"\n\n[host.\"http://{mirror_host}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
                    dist.url()
                ),
            )
            .unwrap();
            let reference = format!("{}/team/ctr:v1", dist.host());
            let hosts_dir = hosts.to_str().unwrap();
            let out = namespace.try_ctr(&["images", "pull", "--hosts-dir", hosts_dir, &reference]);
            drop(namespace);
            expect_ok(out, "ctr pull through the mirror");
            let resp = V2::new(&registry).get_manifest("/v2/127.0.0.1/team/ctr/manifests/v1");
            assert_eq!(cache_state(&resp), "hit", "ctr's pull stored the copy");
        }
        None => {
            let _ = writeln!(
                std::io::stderr(),
                "\nSKIPPED: containerd (ctr) not available: the ctr part of \
                 ctr_podman_and_skopeo_pull_through_the_mirror did not run\n"
            );
        }
    }
}

/// The image under three names, one for each client.
fn dist_seed_three(dist: &HtpasswdUpstream, image: &Image) {
    let writer = dist.backend.start(&[]);
    let v2 = V2::new(&writer);
    for name in ["team/skopeo", "team/podman", "team/ctr"] {
        v2.push_blob(name, &image.config);
        v2.push_blob(name, &image.layer);
        v2.push_manifest(name, "v1", OCI_MANIFEST, &image.manifest);
    }
}

/// A `registries.conf` whose `prefix` registry has a mirror at `location`.
fn registries_conf(dir: &Path, prefix: &str, location: &str) -> std::path::PathBuf {
    let file = dir.join("registries.conf");
    std::fs::write(
        &file,
        format!(
            "unqualified-search-registries = []\n\n[[registry]]\nprefix = \"{prefix}\"\n\
             location = \"{prefix}\"\ninsecure = true\n\n[[registry.mirror]]\n\
             location = \"{location}\"\ninsecure = true\n"
        ),
    )
    .unwrap();
    file
}

/// An upstream of the test's own that serves one image, whose layer is
/// `layer`: the first GET of the layer is cut off halfway when `cut`, and
/// every GET sends it in slow blocks. Counts the layer's GETs.
struct FaultyUpstream {
    port: u16,
    layer_gets: Arc<AtomicUsize>,
}

impl FaultyUpstream {
    fn start(image: &Image, cut: bool) -> FaultyUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let layer_gets = Arc::new(AtomicUsize::new(0));
        let counter = layer_gets.clone();
        let manifest = Arc::new(image.manifest.clone());
        let layer = Arc::new(image.layer.clone());
        let layer_path = format!("/v2/faulty/app/blobs/{}", sha256(&image.layer));
        let digest = sha256(&image.manifest);
        let cuts = Arc::new(Mutex::new(cut));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (manifest, layer, counter) = (manifest.clone(), layer.clone(), counter.clone());
                let (layer_path, digest, cuts) = (layer_path.clone(), digest.clone(), cuts.clone());
                std::thread::spawn(move || {
                    let (target, headers, _) = read_request(&stream);
                    let head = headers[0].1 == "HEAD";
                    let digest_header = [("Docker-Content-Digest", digest.as_str())];
                    if target == "/v2/" {
                        respond(stream, 200, "application/json", b"{}", &[]);
                    } else if target.starts_with("/v2/faulty/app/manifests/") {
                        let body: &[u8] = if head { b"" } else { &manifest };
                        respond(stream, 200, OCI_MANIFEST, body, &digest_header);
                    } else if target == layer_path && !head {
                        counter.fetch_add(1, Ordering::SeqCst);
                        let cut = std::mem::take(&mut *cuts.lock().unwrap());
                        slow_body(stream, &layer, cut);
                    } else {
                        respond(stream, 404, "application/json", b"{}", &[]);
                    }
                });
            }
        });
        FaultyUpstream { port, layer_gets }
    }

    fn gets(&self) -> usize {
        self.layer_gets.load(Ordering::SeqCst)
    }
}

/// The layer in blocks of 64 KiB, 10 ms apart; only half of it, then the
/// connection closed, when `cut`.
fn slow_body(mut stream: TcpStream, layer: &[u8], cut: bool) {
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        layer.len()
    );
    if stream.write_all(head.as_bytes()).is_err() {
        return;
    }
    let end = if cut { layer.len() / 2 } else { layer.len() };
    for block in layer[..end].chunks(64 << 10) {
        if stream.write_all(block).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// A large image for the fault tests: a 4 MiB layer (incompressible).
fn large_image(label: &str) -> Image {
    let layer = unique_bytes(label, 4 << 20);
    let config = json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [sha256(&layer)]},
    });
    Image::of(&config, layer)
}

/// An upstream that breaks off mid-blob: the client gets an error (never
/// the whole length of wrong bytes), nothing is stored, and the next pull
/// fetches and keeps the blob.
#[test]
fn a_blob_cut_off_upstream_is_not_kept_and_the_next_pull_works() {
    let image = large_image("mirror-cut");
    let upstream = FaultyUpstream::start(&image, true);
    let store = Backend::local();
    let registry = mirror_with(
        &store,
        &format!(
            "  upstreams:\n    faulty:\n      url: http://127.0.0.1:{}\n      prefix: f\n",
            upstream.port
        ),
        &[],
    );
    let v2 = V2::new(&registry);
    let path = format!("/v2/f/faulty/app/blobs/{}", sha256(&image.layer));
    let resp = v2.get(&path);
    assert_eq!(resp.status(), 200, "the body starts before the cut");
    let body = resp.bytes();
    assert!(
        body.as_ref().map_or(true, |b| b.len() < image.layer.len()),
        "a cut blob never arrives whole"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !blob_stored(&store, &sha256(&image.layer)),
        "nothing half-stored"
    );
    let leftovers: Vec<String> = store
        .stored_keys()
        .into_iter()
        .filter(|k| k.contains("/_uploads/"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let resp = v2.get(&path);
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().unwrap(), image.layer);
    assert!(blob_stored_soon(&store, &sha256(&image.layer)));
    assert_eq!(upstream.gets(), 2);
}

/// A client that asks for an uncached blob and then reads nothing holds
/// the fetch back for `mirror_timeout` at most: it is let go (its body
/// ends short, never with a hole), the blob is stored, and a second
/// client, which waited on the fetch, gets it whole.
#[test]
fn a_client_that_stops_reading_is_let_go_after_the_timeout() {
    // Larger than what the queue and both sockets' buffers hold.
    let layer = unique_bytes("mirror-stuck", 24 << 20);
    let config = json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [sha256(&layer)]},
    });
    let image = Image::of(&config, layer);
    let upstream = FaultyUpstream::start(&image, false);
    let store = Backend::local();
    let registry = mirror_with(
        &store,
        &format!(
            "  upstreams:\n    faulty:\n      url: http://127.0.0.1:{}\n      prefix: f\n  \
             mirror_timeout: 2\n",
            upstream.port
        ),
        &[],
    );
    let expected = sha256(&image.layer);
    let path = format!("/v2/f/faulty/app/blobs/{expected}");
    let mut stuck = TcpStream::connect(("127.0.0.1", registry.port)).unwrap();
    write!(stuck, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    // The stuck client's request starts the fetch.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while upstream.gets() == 0 {
        assert!(std::time::Instant::now() < deadline, "{}", registry.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = std::time::Instant::now();
    let resp = common::client().get(registry.url(&path)).send().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(sha256(&resp.bytes().unwrap()), expected);
    // 24 MiB at the upstream's pace (~4 s) and the 2 s timeout, not more.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the waiting client took {:?}",
        started.elapsed()
    );
    assert!(blob_stored_soon(&store, &expected));
    assert_eq!(upstream.gets(), 1);
    // What the stuck client gets when it reads at last: the answer cut
    // short, the connection closed.
    stuck
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = Vec::new();
    let _ = stuck.read_to_end(&mut got);
    let head = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(got.starts_with(b"HTTP/1.1 200"));
    assert!(
        got.len() - head < image.layer.len(),
        "{} bytes of {}",
        got.len() - head,
        image.layer.len()
    );
}

/// 16 clients at once ask for one blob nobody has pulled: one fetch
/// upstream, and every client gets the blob whole.
#[test]
fn sixteen_clients_pulling_one_uncached_blob_cause_one_fetch() {
    let image = large_image("mirror-herd");
    let upstream = FaultyUpstream::start(&image, false);
    let store = Backend::local();
    let metrics = format!("127.0.0.1:{}", common::free_port());
    let registry = mirror_with(
        &store,
        &format!(
            "  upstreams:\n    faulty:\n      url: http://127.0.0.1:{}\n      prefix: f\n",
            upstream.port
        ),
        &[("METRICS_ADDRESS", metrics.as_str())],
    );
    let path = format!("/v2/f/faulty/app/blobs/{}", sha256(&image.layer));
    let url = registry.url(&path);
    let expected = sha256(&image.layer);
    let barrier = Arc::new(std::sync::Barrier::new(16));
    let pulls: Vec<_> = (0..16)
        .map(|_| {
            let (url, barrier) = (url.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let resp = common::client().get(&url).send().unwrap();
                (resp.status().as_u16(), sha256(&resp.bytes().unwrap()))
            })
        })
        .collect();
    for pull in pulls {
        assert_eq!(pull.join().unwrap(), (200, expected.clone()));
    }
    assert_eq!(upstream.gets(), 1, "one upstream fetch for 16 clients");
    assert!(blob_stored_soon(&store, &expected));
    assert_eq!(
        header(&V2::new(&registry).get(&path), "x-registry-cache").as_deref(),
        Some("hit")
    );
    let scrape = common::client()
        .get(format!("http://{metrics}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let line = |name: &str| {
        scrape
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} in {scrape}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        line("registry_mirror_fetched_bytes_total{upstream=\"faulty\"}"),
        (4 << 20).to_string()
    );
    assert_eq!(
        line("registry_mirror_requests_total{kind=\"blob\",result=\"miss\",upstream=\"faulty\"}"),
        "16"
    );
    assert_eq!(
        line("registry_mirror_requests_total{kind=\"blob\",result=\"hit\",upstream=\"faulty\"}"),
        "1"
    );
}

/// Three cached repositories of 4 MiB each under a bound of 9 MiB: the
/// collector (every second, inside `serve`) evicts the one used longest
/// ago, its blobs with it, while a client keeps pulling another; what is
/// left is served with the upstream stopped, what went is fetched again
/// when the upstream is back.
#[test]
fn the_collector_evicts_the_least_recently_used_copy_beyond_the_size_bound() {
    let mut upstream = HtpasswdUpstream::start();
    let images: Vec<Image> = (0..3)
        .map(|i| large_image(&format!("mirror-evict-{i}")))
        .collect();
    {
        let writer = upstream.backend.start(&[]);
        let v2 = V2::new(&writer);
        for (i, image) in images.iter().enumerate() {
            let name = format!("team/evict-{i}");
            v2.push_blob(&name, &image.config);
            v2.push_blob(&name, &image.layer);
            v2.push_manifest(&name, "v1", OCI_MANIFEST, &image.manifest);
        }
    }
    let store = Backend::local();
    let registry = mirror_with(
        &store,
        &format!(
            "  upstreams:\n    dist:\n      url: {}\n      username: {USER}\n      password: '{PASSWORD}'\n      \
             prefix: dist\n  mirror_max_size: {}\n  gc_interval: 1\n  gc_grace_period: 1\n",
            upstream.url(),
            9 << 20
        ),
        &[],
    );
    let v2 = V2::new(&registry);
    let pull = |v2: &V2, i: usize, image: &Image| -> String {
        let resp = v2.get_manifest(&format!("/v2/dist/team/evict-{i}/manifests/v1"));
        assert_eq!(resp.status(), 200);
        let state = cache_state(&resp);
        assert_eq!(resp.bytes().unwrap(), image.manifest);
        for blob in [&image.config, &image.layer] {
            let resp = v2.get(&format!("/v2/dist/team/evict-{i}/blobs/{}", sha256(blob)));
            assert_eq!(resp.status(), 200);
            assert_eq!(&resp.bytes().unwrap(), blob);
        }
        state
    };
    for (i, image) in images.iter().enumerate() {
        assert_eq!(pull(&v2, i, image), "miss");
        std::thread::sleep(Duration::from_millis(50));
    }
    let listed = |names: &[&str]| {
        let found = common::search_names(&registry, "evict");
        let wanted: Vec<String> = names.iter().map(|n| format!("dist/team/{n}")).collect();
        assert_eq!(found, wanted, "search");
    };
    listed(&["evict-0", "evict-1", "evict-2"]);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let puller = {
        let (stop, v2, image) = (stop.clone(), V2::new(&registry), images[2].clone());
        std::thread::spawn(move || {
            let mut pulls = 0;
            while !stop.load(Ordering::SeqCst) {
                pull(&v2, 2, &image);
                pulls += 1;
            }
            pulls
        })
    };
    let evicted_manifests = format!("{V2_ROOT}/repositories/dist/team/evict-0/_manifests");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while store
        .stored_keys()
        .iter()
        .any(|k| k.starts_with(&evicted_manifests))
        || blob_stored(&store, &sha256(&images[0].layer))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "not evicted in 30 s:\n{}",
            registry.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::SeqCst);
    assert!(puller.join().unwrap() > 0);
    assert!(
        registry.log().contains("cached repositories evicted"),
        "{}",
        registry.log()
    );
    // Search hears of it after the run's report.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !registry
        .log()
        .contains("gc: dist/team/evict-0 left the registry")
    {
        assert!(std::time::Instant::now() < deadline, "{}", registry.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    listed(&["evict-1", "evict-2"]);

    upstream.stop();
    for (i, image) in images.iter().enumerate().skip(1) {
        assert_eq!(pull(&v2, i, image), "hit", "evict-{i} is kept");
    }
    v2.expect_error(
        v2.get_manifest("/v2/dist/team/evict-0/manifests/v1"),
        502,
        "UNKNOWN",
        "the evicted copy with the upstream stopped",
    );
    upstream.resume();
    assert_eq!(pull(&v2, 0, &images[0]), "miss", "fetched again");
}

/// A docker engine of the test's own (its own data, socket, containerd and
/// bridge, no iptables rules), started with `--registry-mirror`: the
/// machine's daemon is not touched. Stopped and removed when dropped.
///
/// Its bridge is one the test makes: a daemon started with `--bridge=none`
/// deletes `docker0` (moby removes the default bridge's interface when the
/// bridge is off), which takes the network from the machine's own
/// daemon's containers.
struct MirroredDockerd {
    child: std::process::Child,
    dir: tempfile::TempDir,
    bridge: String,
}

impl MirroredDockerd {
    /// `None` (and a line saying why) when no daemon can be started here:
    /// not root, no dockerd.
    fn start(mirror: &str, test: &str) -> Option<MirroredDockerd> {
        let skip = |why: &str| {
            let _ = writeln!(
                std::io::stderr(),
                "\nSKIPPED: {why}: the docker engine's registry-mirrors part of {test} did not run\n"
            );
            None
        };
        if !try_run("id", &["-u"]).stdout.starts_with(b"0\n") {
            return skip("a docker daemon of the test's own needs root");
        }
        // A name of at most 15 bytes, an address in the benchmarking range
        // (RFC 2544: never routed).
        let pid = std::process::id();
        let bridge = format!("rv1d{:x}", pid & 0xff_ffff);
        let address = format!("198.18.{}.1/24", pid % 250);
        for args in [
            vec!["link", "add", "name", &bridge, "type", "bridge"],
            vec!["addr", "add", &address, "dev", &bridge],
        ] {
            if !try_run("ip", &args).status.success() {
                let _ = try_run("ip", &["link", "del", &bridge]);
                return skip("no bridge of the test's own could be made (`ip link add`)");
            }
        }
        // A short path: the socket's must fit in 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("dkd")
            .tempdir_in("/tmp")
            .unwrap();
        let config = dir.path().join("daemon.json");
        std::fs::write(&config, "{}").unwrap();
        let spawned = std::process::Command::new("dockerd")
            .arg(format!("--config-file={}", config.display()))
            .arg(format!("--data-root={}", dir.path().join("data").display()))
            .arg(format!("--exec-root={}", dir.path().join("x").display()))
            .arg(format!("--pidfile={}", dir.path().join("pid").display()))
            .arg(format!(
                "--host=unix://{}",
                dir.path().join("sock").display()
            ))
            .arg(format!("--bridge={bridge}"))
            .args(["--storage-driver=vfs", "--iptables=false"])
            .args(["--ip6tables=false", "--ip-masq=false"])
            .arg(format!("--registry-mirror={mirror}"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("log")).unwrap())
            .spawn();
        let Ok(child) = spawned else {
            let _ = try_run("ip", &["link", "del", &bridge]);
            return skip("dockerd not found");
        };
        let daemon = MirroredDockerd { child, dir, bridge };
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            if daemon.try_run(&["info"]).status.success() {
                return Some(daemon);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        let log = std::fs::read_to_string(daemon.dir.path().join("log")).unwrap_or_default();
        panic!("a docker daemon of the test's own did not start in 60 s:\n{log}");
    }

    fn try_run(&self, args: &[&str]) -> std::process::Output {
        let host = format!("unix://{}", self.dir.path().join("sock").display());
        let mut all = vec!["-H", host.as_str()];
        all.extend_from_slice(args);
        try_run("docker", &all)
    }
}

impl Drop for MirroredDockerd {
    fn drop(&mut self) {
        // SIGTERM lets it stop its containerd; then its files go.
        let _ = try_run("kill", &["-TERM", &self.child.id().to_string()]);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = try_run(
            "umount",
            &["-R", &self.dir.path().join("x").display().to_string()],
        );
        let _ = try_run("ip", &["link", "del", &self.bridge]);
    }
}

/// The docker engine's `registry-mirrors` (a daemon of the test's own):
/// `docker pull mirrored:v1` asks the mirror for Docker Hub's
/// `library/mirrored` with no `ns` and no prefix; the default upstream
/// (the old `mirroring.source`) fills it. There is no way to Docker Hub
/// from here, so the pull succeeds only through the mirror.
#[test]
fn the_docker_engine_pulls_through_registry_mirrors() {
    if !docker_engine_answers("the_docker_engine_pulls_through_registry_mirrors") {
        return;
    }
    let dist = HtpasswdUpstream::start();
    let image = Image::new("docker-engine");
    let writer = dist.backend.start(&[]);
    let v2 = V2::new(&writer);
    v2.push_blob("library/mirrored", &image.config);
    v2.push_blob("library/mirrored", &image.layer);
    v2.push_manifest("library/mirrored", "v1", OCI_MANIFEST, &image.manifest);
    drop(writer);
    let store = Backend::local();
    let url = dist.url();
    // The sample's `mirroring` section, as the old mirror was set up.
    let registry = store.start(&[
        ("MIRROR_SOURCE", url.as_str()),
        ("MIRROR_USERNAME", USER),
        ("MIRROR_PASSWORD", PASSWORD),
    ]);
    let Some(daemon) = MirroredDockerd::start(
        &format!("http://127.0.0.1:{}", registry.port),
        "the_docker_engine_pulls_through_registry_mirrors",
    ) else {
        return;
    };
    let out = daemon.try_run(&["pull", "mirrored:v1"]);
    let inspect = daemon.try_run(&["image", "inspect", "--format", "{{.Id}}", "mirrored:v1"]);
    let _ = daemon.try_run(&["rmi", "-f", "mirrored:v1"]);
    if !out.status.success() {
        let log = std::fs::read_to_string(daemon.dir.path().join("log")).unwrap_or_default();
        let _ = writeln!(std::io::stderr(), "the test's dockerd said:\n{log}");
    }
    expect_ok(out, "docker pull through registry-mirrors");
    let id = String::from_utf8_lossy(&inspect.stdout).trim().to_owned();
    assert_eq!(
        id,
        sha256(&image.config),
        "the engine holds the image's config"
    );
    let resp = V2::new(&registry).get_manifest("/v2/127.0.0.1/library/mirrored/manifests/v1");
    assert_eq!(
        cache_state(&resp),
        "hit",
        "the engine's pull stored the copy"
    );
}

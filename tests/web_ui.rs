//! The web pages, in a real browser: Debian's chromium, headless, driven
//! through its chromedriver (installed by `.ci/install-browser.sh`),
//! against the real binary holding images pushed by real clients.
//!
//! Outside CI a missing chromium or skopeo skips its test with a message
//! on stderr; under CI it fails.

mod common;
mod login_support;
mod v2_support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use common::Registry;
use login_support::token_service::{World, ISSUER, PASSWORD, SERVICE, USER};
use v2_support::*;

const INSTALL_BROWSER: &str = ".ci/install-browser.sh";
const INSTALL_CLIENTS: &str = ".ci/install-v2-clients.sh";

/// What a label, an annotation and a history command hold: markup that
/// would run if a page put it in unescaped.
const HOSTILE: &str =
    "<script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\">";

/// A chromedriver on a free loopback port and one headless session of it;
/// both end when dropped.
struct Browser {
    runtime: tokio::runtime::Runtime,
    client: Option<Client>,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Option<Browser> {
        if !tool_available("chromium", INSTALL_BROWSER)
            || !tool_available("chromedriver", INSTALL_BROWSER)
        {
            return None;
        }
        let port = common::free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            json!({"args": [
                "--headless",
                // Root in a container: no sandbox to drop into.
                "--no-sandbox",
                "--disable-dev-shm-usage",
                "--disable-gpu",
                "--window-size=1280,900",
                format!("--user-data-dir={}", profile.path().display()),
            ]}),
        );
        let client = runtime
            .block_on(
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(capabilities)
                    .connect(&format!("http://127.0.0.1:{port}")),
            )
            .expect("a chromium session");
        Some(Browser {
            runtime,
            client: Some(client),
            driver,
            _profile: profile,
        })
    }

    fn run<T>(&self, f: impl AsyncFnOnce(&Client) -> T) -> T {
        self.runtime.block_on(f(self.client.as_ref().unwrap()))
    }

    fn goto(&self, url: &str) {
        self.run(async |c| c.goto(url).await.unwrap());
    }

    /// The texts of every element `css` finds.
    fn texts(&self, css: &str) -> Vec<String> {
        self.try_texts(css).unwrap_or_else(|e| panic!("{css}: {e}"))
    }

    /// [`Browser::texts`], or the error of an element that went while it
    /// was read (a script replaced it).
    fn try_texts(&self, css: &str) -> Result<Vec<String>, String> {
        self.run(async |c| {
            let mut texts = Vec::new();
            let found = c.find_all(Locator::Css(css)).await;
            for element in found.map_err(|e| e.to_string())? {
                texts.push(element.text().await.map_err(|e| e.to_string())?);
            }
            Ok(texts)
        })
    }

    /// Waits (up to 10 s) until `css` finds elements whose texts satisfy
    /// `done`, and returns them.
    fn wait_for(&self, css: &str, done: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let texts = self.try_texts(css);
            if let Ok(texts) = &texts {
                if done(texts) {
                    return texts.clone();
                }
            }
            assert!(Instant::now() < deadline, "{css}: still {texts:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn click(&self, css: &str) {
        self.run(async |c| {
            c.find(Locator::Css(css))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
        });
    }

    fn type_into(&self, css: &str, text: &str) {
        self.run(async |c| {
            c.find(Locator::Css(css))
                .await
                .unwrap()
                .send_keys(text)
                .await
                .unwrap();
        });
    }

    fn title(&self) -> String {
        self.run(async |c| c.title().await.unwrap())
    }

    fn path(&self) -> String {
        self.run(async |c| c.current_url().await.unwrap().path().to_owned())
    }

    /// Waits (up to 10 s) for the browser to be at `path` (a click may
    /// answer before the page it leads to has loaded).
    fn wait_at(&self, path: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.path() != path {
            assert!(
                Instant::now() < deadline,
                "still at {}, not {path}",
                self.path()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.run(async |c| c.wait().for_element(Locator::Css("footer")).await.unwrap());
    }

    /// The size the list shows for the one repository `term` finds: its
    /// bytes (the cell's title) and the figure shown. A size the page had
    /// no time to count shows as not known and is counted further at each
    /// load (up to 20).
    fn listed_size(&self, registry: &Registry, term: &str) -> (String, String) {
        for _ in 0..20 {
            self.goto(&registry.url(&format!("/?q={term}")));
            let title = self.eval("return document.querySelector('#repositories td.size').title");
            let title = title.as_str().unwrap_or_default().to_owned();
            if title.ends_with(" bytes") {
                return (title, self.texts("#repositories td.size").remove(0));
            }
            assert!(title.starts_with("Not counted yet"), "{title}");
        }
        panic!("{term}: its size not counted in 20 loads");
    }

    /// A script's answer (the page's own scripts are ours; this one is
    /// the test's, through WebDriver).
    fn eval(&self, script: &str) -> Value {
        self.run(async |c| c.execute(script, Vec::new()).await.unwrap())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = self.runtime.block_on(client.close());
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// An OCI layout of one image per architecture, tagged `<arch>`, and
/// their index tagged `multi`; each image's config has a label, an
/// environment variable and history commands holding [`HOSTILE`], and
/// its manifest an annotation holding it.
fn write_layout(dir: &Path, label: &str, arches: &[&str]) {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let blob = |data: &[u8]| {
        std::fs::write(dir.join("blobs/sha256").join(hex_of(&sha256(data))), data).unwrap();
    };
    let mut refs = Vec::new();
    let mut children = Vec::new();
    for arch in arches {
        let tar = rootfs_tar(&format!("{label} {arch}"));
        let layer = gzip(&tar);
        let config = serde_json::to_vec(&json!({
            "architecture": arch, "os": "linux",
            "created": "2026-11-30T10:00:00Z",
            "config": {
                "Entrypoint": ["/bin/true"],
                "Cmd": ["--serve"],
                "Env": [format!("HOSTILE={HOSTILE}")],
                "ExposedPorts": {"8080/tcp": {}},
                "Labels": {"org.example.hostile": HOSTILE, "org.example.arch": arch},
            },
            "rootfs": {"type": "layers", "diff_ids": [sha256(&tar)]},
            "history": [
                {"created": "2026-11-30T09:00:00Z", "created_by": "ADD rootfs.tar / # web ui test"},
                {"created": "2026-11-30T10:00:00Z", "created_by": format!("LABEL hostile={HOSTILE}"), "empty_layer": true},
            ],
        }))
        .unwrap();
        let manifest = manifest_bytes(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, &config),
            "layers": [descriptor(OCI_LAYER, &layer)],
            "annotations": {"org.example.note": HOSTILE},
        }));
        blob(&layer);
        blob(&config);
        blob(&manifest);
        let mut d = descriptor(OCI_MANIFEST, &manifest);
        d["annotations"] = json!({"org.opencontainers.image.ref.name": arch});
        d["platform"] = json!({"architecture": arch, "os": "linux"});
        refs.push(d);
        children.push((arch.to_string(), manifest));
    }
    let list: Vec<(&str, &[u8], &str)> = children
        .iter()
        .map(|(arch, m)| (OCI_MANIFEST, m.as_slice(), arch.as_str()))
        .collect();
    let index = index_of(OCI_INDEX, &list);
    blob(&index);
    let mut d = descriptor(OCI_INDEX, &index);
    d["annotations"] = json!({"org.opencontainers.image.ref.name": "multi"});
    refs.push(d);
    let top = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": refs});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
}

fn skopeo_copy(from: &str, to: &str) {
    let out = Command::new("skopeo")
        .args(["copy", "--all", "--dest-tls-verify=false", from, to])
        .stdin(Stdio::null())
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo copy {from} {to}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two repositories pushed with skopeo, `web/findme-<suffix>` (a
/// two-platform index `multi` and its `amd64` image) and `web/other`;
/// the first one's name and the bytes it holds (every blob of the
/// layout: skopeo copies them as they are).
fn push_images(registry: &Registry) -> (String, u64) {
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    write_layout(&layout, "web ui", &["amd64", "arm64"]);
    let host = format!("127.0.0.1:{}", registry.port);
    let name = format!("web/findme-{}", rand_suffix());
    for tag in ["multi", "amd64"] {
        skopeo_copy(
            &format!("oci:{}:{tag}", layout.display()),
            &format!("docker://{host}/{name}:{tag}"),
        );
    }
    skopeo_copy(
        &format!("oci:{}:arm64", layout.display()),
        &format!("docker://{host}/web/other:v1"),
    );
    let bytes = std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|entry| entry.unwrap().metadata().unwrap().len())
        .sum();
    (name, bytes)
}

#[test]
fn a_person_finds_inspects_and_deletes_an_image() {
    if !tool_available("skopeo", INSTALL_CLIENTS) {
        return;
    }
    let Some(browser) = Browser::start() else {
        return;
    };
    let (_storage, registry) = start(&[]);
    let (name, bytes) = push_images(&registry);

    // Found by typing part of its name: the rows change without a page load.
    browser.goto(&registry.url("/"));
    let all = browser.wait_for("#repositories a.repository", |t| t.len() >= 2);
    assert!(
        all.contains(&name) && all.contains(&"web/other".to_owned()),
        "{all:?}"
    );
    browser.type_into("#search", "findm");
    let found = browser.wait_for("#repositories a.repository", |t| t.len() == 1);
    assert_eq!(found, std::slice::from_ref(&name));
    assert_eq!(browser.texts("#repositories td.tags"), ["2"], "its tags");
    let pushed = browser.texts("#repositories td.time");
    assert!(pushed[0].ends_with(" UTC"), "its last push: {pushed:?}");
    assert_eq!(browser.path(), "/", "searching loads no page");
    // Its size: every blob of both images and the index, each once.
    let (exact, shown) = browser.listed_size(&registry, "findm");
    assert_eq!(exact, format!("{bytes} bytes"));
    assert!(shown.ends_with(" kB"), "{shown}");

    // Its tags, newest push first.
    browser.click("#repositories a.repository");
    browser.wait_at(&format!("/repository/{name}"));
    assert_eq!(browser.texts("#tags a.tag"), ["amd64", "multi"]);
    let rows = browser.texts("#tags tbody tr");
    assert!(rows[0].contains("linux/amd64"), "{rows:?}");
    assert!(rows[1].contains("linux/amd64, linux/arm64"), "{rows:?}");
    assert!(browser.texts("#pull-docker")[0]
        .contains(&format!("docker pull 127.0.0.1:{}/{name}:", registry.port)));
    browser.click("a.sort[href='?sort=name']");
    browser.wait_for("a.sort", |t| t.iter().any(|s| s.ends_with('↑')));
    assert_eq!(browser.texts("#tags a.tag"), ["amd64", "multi"]);

    // The index shows both platforms.
    browser.goto(&registry.url(&format!("/image/{name}/multi")));
    let platforms = browser.texts("#platforms tbody td:first-child");
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    let sizes = browser.texts("#platforms tbody td:nth-child(3)");
    assert!(
        sizes.iter().all(|s| s.ends_with(" kB")),
        "each image's own size: {sizes:?}"
    );

    // The image: config, labels, history, annotations, all as text.
    browser.goto(&registry.url(&format!("/image/{name}/amd64")));
    let config = browser.texts("#config")[0].clone();
    assert!(
        config.contains("[\"/bin/true\"]") && config.contains("8080/tcp"),
        "{config}"
    );
    assert!(config.contains(&format!("HOSTILE={HOSTILE}")), "{config}");
    let labels = browser.texts("#labels")[0].clone();
    assert!(
        labels.contains(HOSTILE),
        "the label shows as text: {labels}"
    );
    let history = browser.texts("#history tbody tr");
    assert_eq!(history.len(), 2, "{history:?}");
    assert!(
        history[0].contains("ADD rootfs.tar") && !history[0].contains('—'),
        "{history:?}"
    );
    assert!(
        history[1].contains(HOSTILE) && history[1].contains('—'),
        "{history:?}"
    );
    assert!(browser.texts("#annotations")[0].contains(HOSTILE));
    assert!(browser.texts("#manifest")[0].contains("org.example.note"));
    // Nothing ran: the title is the page's, no element came from a label.
    assert_eq!(browser.title(), format!("{name}:amd64 · registry-v1"));
    assert_eq!(
        browser.eval("return document.querySelectorAll('main script, main img').length"),
        json!(0)
    );

    // Delete the tag: a confirmation that says what goes, then the
    // repository's page without it; the API agrees.
    browser.click("#delete");
    browser.wait_at(&format!("/delete/{name}/amd64"));
    assert!(browser.texts("main")[0].contains("next garbage collection"));
    browser.click("#delete button");
    browser.wait_at(&format!("/repository/{name}"));
    assert_eq!(browser.texts("#tags a.tag"), ["multi"]);
    let gone = common::client()
        .get(registry.url(&format!("/v2/{name}/manifests/amd64")))
        .header("Accept", OCI_MANIFEST)
        .send()
        .unwrap();
    assert_eq!(gone.status(), 404);
}

#[test]
fn a_v1_image_shows_its_history() {
    let Some(browser) = Browser::start() else {
        return;
    };
    let (_storage, registry) = start(&[]);
    let (base_json, base_tar) =
        common::v1_fixture("511136ea3c5a64f264b78b5433614aec563103b4d4702f3ba7d4d2698e22c158");
    let (child_json, child_tar) =
        common::v1_fixture("46af0962ab5afeb5ce6740d4d91652e69206fc991fd5328c1a94d364ad00e457");
    let (base, child) = (random_id(), random_id());
    let base_json = common::v1_json(base_json, &base, None);
    let child_json = common::v1_json(child_json, &child, Some(&base));
    common::push_v1(
        &|path: &str| registry.url(path),
        "legacy/app",
        &[
            common::V1Upload {
                id: &base,
                json: &base_json,
                layer: &base_tar,
            },
            common::V1Upload {
                id: &child,
                json: &child_json,
                layer: &child_tar,
            },
        ],
        "old",
    );
    browser.goto(&registry.url("/repository/legacy/app"));
    assert_eq!(browser.texts("#tags a.tag"), ["old"]);
    browser.click("#tags a.tag");
    browser.wait_at("/image/legacy/app/old");
    let history = browser.texts("#history tbody tr");
    assert_eq!(history.len(), 2, "{history:?}");
    assert!(
        history[1].contains("sed -ri"),
        "the command that made the layer: {history:?}"
    );
    assert_eq!(browser.texts("#layers tbody tr").len(), 2);
    let facts = browser.texts("#config")[0].clone();
    assert!(facts.contains("linux/amd64"), "{facts}");
    // The list counts both layers, as stored.
    let (exact, _) = browser.listed_size(&registry, "legacy/app");
    assert_eq!(exact, format!("{} bytes", base_tar.len() + child_tar.len()));
}

/// The registry on a storage folder of its own (not the `dev` flavor's
/// shared /tmp/registry), kept while the pair lives.
fn start(env: &[(&str, &str)]) -> (Backend, Registry) {
    let storage = Backend::local();
    let registry = storage.start(env);
    (storage, registry)
}

fn random_id() -> String {
    format!("{:0>64}", hex_of(&sha256(rand_suffix().as_bytes())))
}

/// What the old registry answers at `GET /`: its `issue` setting,
/// encoded as JSON once more.
const ISSUE: &str = r#""\"docker-registry server\"""#;

const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

fn get(registry: &Registry, path: &str, accept: &str) -> reqwest::blocking::Response {
    common::client()
        .get(registry.url(path))
        .header("Accept", accept)
        .send()
        .unwrap()
}

fn header(resp: &reqwest::blocking::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[test]
fn the_root_answers_clients_json_and_browsers_a_page() {
    let (_storage, registry) = start(&[]);
    for accept in ["*/*", "application/json", ""] {
        let resp = get(&registry, "/", accept);
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "vary"), "Accept");
        assert!(header(&resp, "content-type").starts_with("application/json"));
        assert_eq!(resp.text().unwrap(), ISSUE, "{accept:?}");
    }
    let page = get(&registry, "/", BROWSER_ACCEPT);
    assert_eq!(page.status(), 200);
    assert!(header(&page, "content-type").starts_with("text/html"));
    let policy = header(&page, "content-security-policy");
    assert!(
        policy.contains("default-src 'none'") && policy.contains("script-src 'self'"),
        "{policy}"
    );
    assert_eq!(header(&page, "x-content-type-options"), "nosniff");
    assert!(page.text().unwrap().contains("id=\"search\""));
    for asset in ["/-/ui.js", "/-/ui.css"] {
        let resp = get(&registry, asset, "*/*");
        assert_eq!(resp.status(), 200, "{asset}");
        assert!(!header(&resp, "content-security-policy").is_empty());
    }
    assert_eq!(get(&registry, "/-/other.js", "*/*").status(), 404);
    // The APIs are as they were.
    assert_eq!(get(&registry, "/v2/", BROWSER_ACCEPT).status(), 200);
    let ping = get(&registry, "/_ping", BROWSER_ACCEPT);
    assert!(header(&ping, "content-type").starts_with("application/json"));
    assert!(header(&ping, "content-security-policy").is_empty());
    // Hostile names and references are answered, never rendered.
    for path in [
        "/repository/..%2f..%2fetc",
        "/repository/<b>",
        "/image/web/x/<b>",
        "/image/a/b/sha256:zz",
    ] {
        let resp = get(&registry, path, BROWSER_ACCEPT);
        assert_eq!(resp.status(), 404, "{path}");
        assert!(!resp.text().unwrap().contains("<b>"), "{path}");
    }
}

#[test]
fn the_pages_move_under_a_prefix_or_go() {
    let (_storage, registry) = start(&[("WEB_UI_PREFIX", "/registry-ui")]);
    let resp = get(&registry, "/", BROWSER_ACCEPT);
    assert_eq!(resp.text().unwrap(), ISSUE);
    assert_eq!(
        header(&get(&registry, "/", "*/*"), "vary"),
        "",
        "one answer at / now"
    );
    let resp = get(&registry, "/registry-ui", BROWSER_ACCEPT);
    assert_eq!(resp.status(), 308);
    assert_eq!(header(&resp, "location"), "/registry-ui/");
    let page = get(&registry, "/registry-ui/", "*/*").text().unwrap();
    assert!(
        page.contains("href=\"/registry-ui/-/ui.css"),
        "links carry the prefix"
    );
    assert!(page.contains("data-fragment=\"/registry-ui/-/search\""));
    assert_eq!(get(&registry, "/registry-ui/-/ui.js", "*/*").status(), 200);
    assert_eq!(
        get(&registry, "/repository/x", BROWSER_ACCEPT).status(),
        404
    );
    drop(registry);

    let (_storage, registry) = start(&[("WEB_UI", "false")]);
    let resp = get(&registry, "/", BROWSER_ACCEPT);
    assert_eq!(resp.text().unwrap(), ISSUE);
    assert_eq!(get(&registry, "/-/ui.js", "*/*").status(), 404);
    assert_eq!(
        get(&registry, "/repository/x", BROWSER_ACCEPT).status(),
        404
    );
}

#[test]
fn deletes_need_a_user_who_may_and_a_page_of_ours() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(
        &htpasswd,
        format!("admin:{}\n", bcrypt::hash("s3cret", 4).unwrap()),
    )
    .unwrap();
    let (_storage, registry) = start(&[
        ("AUTH_HTPASSWD", htpasswd.to_str().unwrap()),
        ("AUTH_REQUIRED", "write"),
    ]);
    let v2 = V2::new(&registry);
    let image = ImageBlobs::new("web ui delete", "amd64");
    let push = |tag: &str| {
        let resp = common::client()
            .put(registry.url(&format!("/v2/web/keep/manifests/{tag}")))
            .basic_auth("admin", Some("s3cret"))
            .header("Content-Type", OCI_MANIFEST)
            .body(image.oci_manifest())
            .send()
            .unwrap();
        assert_eq!(resp.status(), 201, "push {tag}");
    };
    for blob in [&image.config, &image.layer] {
        let location = common::client()
            .post(registry.url("/v2/web/keep/blobs/uploads/"))
            .basic_auth("admin", Some("s3cret"))
            .send()
            .unwrap();
        let location = header(&location, "location");
        let resp = common::client()
            .put(with_query(
                &v2.url(&path_of(&location)),
                &format!("digest={}", sha256(blob)),
            ))
            .basic_auth("admin", Some("s3cret"))
            .body(blob.clone())
            .send()
            .unwrap();
        assert_eq!(resp.status(), 201);
    }
    push("v1");
    push("v2");
    let url = registry.url("/delete/web/keep/v1");
    let same_origin = format!("http://127.0.0.1:{}", registry.port);
    let tag_left = || {
        common::client()
            .get(registry.url("/v2/web/keep/manifests/v1"))
            .header("Accept", OCI_MANIFEST)
            .send()
            .unwrap()
            .status()
            == 200
    };

    // Anonymous: may look (pulls are open), is offered a login, not a delete.
    let page = get(&registry, "/image/web/keep/v1", BROWSER_ACCEPT)
        .text()
        .unwrap();
    assert!(
        page.contains("id=\"login\"") && !page.contains("id=\"delete\""),
        "{page}"
    );
    let resp = common::client()
        .post(&url)
        .header("Origin", &same_origin)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(header(&resp, "www-authenticate").starts_with("Basic realm="));
    let resp = common::client()
        .post(&url)
        .basic_auth("admin", Some("wrong"))
        .header("Origin", &same_origin)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(tag_left());

    // The login sends the browser back where it was, and only there.
    let login = |to: &str| {
        common::client()
            .get(registry.url(&format!("/login?to={to}")))
            .basic_auth("admin", Some("s3cret"))
            .send()
            .unwrap()
    };
    let back_to = |to: &str| {
        let page = login(to).text().unwrap();
        let start = page.find("url=").expect("a refresh") + 4;
        page[start..page[start..].find('"').unwrap() + start].to_owned()
    };
    assert_eq!(back_to("/image/web/keep/v1"), "/image/web/keep/v1");
    assert_eq!(back_to("//evil.example/"), "/");
    assert_eq!(back_to("http://evil.example/"), "/");
    assert_eq!(back_to("/a%22%3E%3Cscript%3E"), "/");
    assert_eq!(
        common::client()
            .get(registry.url("/login"))
            .send()
            .unwrap()
            .status(),
        401
    );

    // Logged in: offered; a forged request from another site is refused.
    let page = common::client()
        .get(registry.url("/image/web/keep/v1"))
        .basic_auth("admin", Some("s3cret"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(page.contains("id=\"delete\""), "{page}");
    for (name, value) in [
        ("Origin", "http://evil.example"),
        ("Sec-Fetch-Site", "cross-site"),
        ("X-Nothing", "no origin at all"),
    ] {
        let resp = common::client()
            .post(&url)
            .basic_auth("admin", Some("s3cret"))
            .header(name, value)
            .send()
            .unwrap();
        assert_eq!(resp.status(), 403, "{name}: {value}");
        assert!(tag_left(), "{name}: {value}");
    }
    let resp = common::client()
        .post(&url)
        .basic_auth("admin", Some("s3cret"))
        .header("Origin", &same_origin)
        .header("Sec-Fetch-Site", "same-origin")
        .send()
        .unwrap();
    assert_eq!(resp.status(), 303);
    assert!(!tag_left());

    // The same in a browser, logged in as the browser is given a login.
    if let Some(browser) = Browser::start() {
        browser.goto(&registry.url("/image/web/keep/v2"));
        browser.click("#login");
        // The browser's prompt, answered as a login in the address answers it.
        browser.goto(&format!(
            "http://admin:s3cret@127.0.0.1:{}/login?to=/image/web/keep/v2",
            registry.port
        ));
        browser.wait_at("/image/web/keep/v2");
        // Back at the page (from an address without the login in it, as
        // after a prompt): the browser now sends the login by itself.
        browser.goto(&registry.url("/image/web/keep/v2"));
        browser.click("#delete");
        browser.wait_at("/delete/web/keep/v2");
        browser.click("#delete button");
        browser.wait_at("/");
        let gone = common::client()
            .get(registry.url("/v2/web/keep/manifests/v2"))
            .header("Accept", OCI_MANIFEST)
            .send()
            .unwrap();
        assert_eq!(gone.status(), 404, "the browser's delete went through");
    }
}

#[test]
fn ten_thousand_tags_page_without_stalling() {
    let (_storage, registry) = start(&[]);
    let v2 = V2::new(&registry);
    let image = ImageBlobs::new("web ui many tags", "amd64");
    image.push(&v2, "web/many");
    let manifest = image.oci_manifest();
    const TAGS: usize = 10_000;
    std::thread::scope(|s| {
        for worker in 0..4 {
            let (v2, manifest) = (&v2, &manifest);
            s.spawn(move || {
                for i in (worker..TAGS).step_by(4) {
                    let resp =
                        v2.put_manifest("web/many", &format!("t{i:05}"), OCI_MANIFEST, manifest);
                    assert_eq!(resp.status(), 201);
                }
            });
        }
    });
    let timed = |path: &str| {
        let started = Instant::now();
        let resp = get(&registry, path, BROWSER_ACCEPT);
        assert_eq!(resp.status(), 200, "{path}");
        let body = resp.text().unwrap();
        (started.elapsed(), body)
    };
    let (newest, body) = timed("/repository/web/many");
    assert!(body.contains("10000 tags"));
    assert_eq!(body.matches("class=\"tag\"").count(), 100);
    assert!(body.contains("rel=\"next\" href=\"?sort=pushed&amp;page=2\""));
    let (by_name, body) = timed("/repository/web/many?sort=name&page=100");
    assert_eq!(body.matches("class=\"tag\"").count(), 100);
    assert!(
        body.contains(">t09999<") && body.contains(">t09900<") && !body.contains("rel=\"next\"")
    );
    eprintln!("10,000 tags: newest first {newest:?}, by name (page 100) {by_name:?}");

    if let Some(browser) = Browser::start() {
        browser.goto(&registry.url("/repository/web/many?sort=name"));
        assert_eq!(browser.texts("#tags a.tag").len(), 100);
        browser.click("a[rel=next]");
        browser.wait_for("#tags a.tag", |t| t.first().is_some_and(|t| t == "t00100"));
    }
}

/// Pushes `image` as `<name>:v1` through an open registry on `storage`.
fn push_open(storage: &Backend, names: &[&str]) {
    let registry = storage.start(&[]);
    let v2 = V2::new(&registry);
    let image = ImageBlobs::new("web ui logins", "amd64");
    for name in names {
        image.push(&v2, name);
        let resp = v2.put_manifest(name, "v1", OCI_MANIFEST, &image.oci_manifest());
        assert_eq!(resp.status(), 201, "{name}");
    }
}

#[test]
fn the_pages_log_in_through_a_token_service() {
    let Some(world) = World::new() else {
        return;
    };
    let storage = Backend::local();
    push_open(&storage, &["web/open", "locked/secret"]);
    let realm = world.service.realm();
    let registry = storage.start(&[
        ("AUTH_TOKEN_REALM", realm.as_str()),
        ("AUTH_TOKEN_SERVICE", SERVICE),
        ("AUTH_TOKEN_ISSUER", ISSUER),
        ("AUTH_TOKEN_ROOTCERTBUNDLE", world.bundle.to_str().unwrap()),
        ("AUTH_MAX_FAILED_LOGINS", "3"),
    ]);
    let page = |path: &str, login: Option<(&str, &str)>| {
        let mut req = common::client()
            .get(registry.url(path))
            .header("Accept", BROWSER_ACCEPT);
        if let Some((user, password)) = login {
            req = req.basic_auth(user, Some(password));
        }
        req.send().unwrap()
    };
    // No login: the page's own password prompt (the browser shows it).
    let resp = page("/", None);
    assert_eq!(resp.status(), 401);
    assert!(header(&resp, "www-authenticate").starts_with("Basic realm="));
    assert_eq!(page("/", Some((USER, "wrong"))).status(), 401);

    // alice's login: the page gets her tokens as docker would, and shows
    // only what they let her pull (the service grants nothing under locked/).
    let list = page("/", Some((USER, PASSWORD)));
    assert_eq!(list.status(), 200);
    let list = list.text().unwrap();
    assert!(
        list.contains(">web/open<") && !list.contains("locked/secret"),
        "{list}"
    );
    assert_eq!(
        page("/repository/locked/secret", Some((USER, PASSWORD))).status(),
        403
    );
    let image = page("/image/web/open/v1", Some((USER, PASSWORD)))
        .text()
        .unwrap();
    assert!(
        image.contains("id=\"delete\""),
        "her token may delete: {image}"
    );
    let asked = world.service.asked();
    assert!(
        asked
            .iter()
            .any(|(who, scopes)| who.as_deref() == Some(USER)
                && scopes == &["registry:catalog:*".to_owned()]),
        "{asked:?}"
    );
    // Tokens are kept: the list again asks the service nothing.
    let before = world.service.asked().len();
    assert_eq!(page("/", Some((USER, PASSWORD))).status(), 200);
    assert_eq!(world.service.asked().len(), before);

    // And in a browser, the login given as the browser gives it.
    if let Some(browser) = Browser::start() {
        let with_login = format!(
            "http://{USER}:{}@127.0.0.1:{}/",
            PASSWORD.replace(' ', "%20"),
            registry.port
        );
        browser.goto(&with_login);
        let found = browser.wait_for("#repositories a.repository", |t| !t.is_empty());
        assert_eq!(found, ["web/open"]);
        browser.type_into("#search", "ope");
        browser.wait_for("#count", |t| t.first().is_some_and(|t| t.contains("“ope”")));
    }

    // Guessing passwords through the pages is bounded as for clients.
    for _ in 0..2 {
        assert_eq!(page("/", Some((USER, "guess"))).status(), 401);
    }
    let refused = page("/", Some((USER, "guess again")));
    assert_eq!(
        refused.status(),
        429,
        "the third refusal of the minute and on"
    );
    assert!(!header(&refused, "retry-after").is_empty());
}

#[test]
fn a_cached_repository_is_not_deleted_from_the_pages() {
    let storage = Backend::local();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "cached:\n  standalone: true\n{}  upstreams:\n    up:\n      url: http://127.0.0.1:9\n      prefix: cache\n",
            storage.flavor_storage()
        ),
    )
    .unwrap();
    let env = storage.env();
    let registry = Registry::start(&[
        ("STORAGE_PATH", env[0].1.as_str()),
        ("DOCKER_REGISTRY_CONFIG", config.to_str().unwrap()),
        ("SETTINGS_FLAVOR", "cached"),
    ]);
    let origin = format!("http://127.0.0.1:{}", registry.port);
    for method in [reqwest::Method::GET, reqwest::Method::POST] {
        let resp = common::client()
            .request(
                method.clone(),
                registry.url("/delete/cache/library/x/latest"),
            )
            .header("Origin", &origin)
            .send()
            .unwrap();
        assert_eq!(resp.status(), 403, "{method}");
        assert!(resp
            .text()
            .unwrap()
            .contains("is a cache of http://127.0.0.1:9"));
    }
}

//! htpasswd logins through the real binary (issue 12): reqwest on v2 and
//! v1, `skopeo --creds`, `podman login`, `docker login` (where `docker
//! info` works), `auth_required: write`, a file changed while serving,
//! the failed-login limit, and what reaches the log.

mod common;
mod login_support;
mod v2_support;

use std::path::{Path, PathBuf};

use base64::Engine;
use reqwest::blocking::RequestBuilder;
use serde_json::Value;

use login_support::*;
use v2_support::*;

const ALICE: &str = "alice";
/// A colon and a space: a password is everything after the first colon.
const ALICE_PW: &str = "wonder land:42";

/// `user:bcrypt` at the lowest cost (the tests check behaviour, not
/// strength); `htpasswd -B` itself where it is installed.
fn entry(user: &str, password: &str) -> String {
    let out = std::process::Command::new("htpasswd")
        .args(["-nbB", "-C", "4", user, password])
        .output();
    match out {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8(out.stdout).unwrap();
            assert!(text.contains(":$2y$04$"), "{text}");
            format!("{}\n", text.trim())
        }
        _ => {
            if std::env::var_os("CI").is_some() {
                panic!("htpasswd is required under CI ({INSTALL_AUTH})");
            }
            format!("{user}:{}\n", bcrypt::hash(password, 4).unwrap())
        }
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    file: PathBuf,
    backend: Backend,
}

fn setup(entries: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("htpasswd");
    std::fs::write(&file, entries).unwrap();
    Setup {
        _dir: dir,
        file,
        backend: Backend::local(),
    }
}

impl Setup {
    fn start(&self, extra: &[(&str, &str)]) -> common::Registry {
        let mut env = vec![("AUTH_HTPASSWD", self.file.to_str().unwrap())];
        env.extend_from_slice(extra);
        self.backend.start(&env)
    }
}

fn basic(req: RequestBuilder, user: &str, password: &str) -> RequestBuilder {
    req.basic_auth(user, Some(password))
}

fn challenge(resp: &reqwest::blocking::Response) -> String {
    header(resp, "www-authenticate").unwrap_or_default()
}

#[test]
fn v2_and_v1_answer_logins_with_their_own_errors() {
    let s = setup(&entry(ALICE, ALICE_PW));
    let registry = s.start(&[("AUTH_REALM", "Test Realm")]);
    let v2 = V2::new(&registry);

    // No credentials, wrong ones, a user nobody knows: 401 and the challenge.
    for req in [
        v2.request("GET", "/v2/"),
        basic(v2.request("GET", "/v2/"), ALICE, "wrong"),
        basic(v2.request("GET", "/v2/"), "mallory", ALICE_PW),
        v2.request("GET", "/v2/")
            .header("Authorization", "Basic !!notbase64"),
        v2.request("GET", "/v2/").bearer_auth("a.b.c"),
    ] {
        let resp = v2.send(req);
        assert_eq!(challenge(&resp), r#"Basic realm="Test Realm""#);
        v2.expect_error(resp, 401, "UNAUTHORIZED", "GET /v2/ without a login");
    }
    let ok = v2.send(basic(v2.request("GET", "/v2/"), ALICE, ALICE_PW));
    assert_eq!(ok.status(), 200);

    // Every route is behind it: a pull, a push, a catalog.
    let resp = v2.get_manifest("/v2/team/app/manifests/v1");
    v2.expect_error(resp, 401, "UNAUTHORIZED", "anonymous pull");
    let resp = v2.send(v2.request("POST", "/v2/team/app/blobs/uploads/"));
    v2.expect_error(resp, 401, "UNAUTHORIZED", "anonymous push");
    let resp = v2.get("/v2/_catalog");
    v2.expect_error(resp, 401, "UNAUTHORIZED", "anonymous catalog");
    let blob = unique_bytes("htpasswd", 1000);
    let digest = sha256(&blob);
    let resp = v2.send(
        basic(
            v2.request(
                "POST",
                &format!("/v2/team/app/blobs/uploads/?digest={digest}"),
            ),
            ALICE,
            ALICE_PW,
        )
        .body(blob.clone()),
    );
    assert_eq!(resp.status(), 201);
    let resp = v2.send(basic(
        v2.request("GET", &format!("/v2/team/app/blobs/{digest}")),
        ALICE,
        ALICE_PW,
    ));
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().unwrap(), blob);
    let resp = v2.send(basic(v2.request("GET", "/v2/_catalog"), ALICE, ALICE_PW));
    assert_eq!(resp.status(), 200);
    let catalog: Value = resp.json().unwrap();
    assert_eq!(catalog["repositories"], serde_json::json!(["team/app"]));

    // v1: its own JSON error and a Basic challenge; basic auth works.
    let http = common::client();
    let tags = registry.url("/v1/repositories/team/app/tags");
    let resp = http.get(&tags).send().unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(challenge(&resp), r#"Basic realm="Test Realm""#);
    let body: Value = resp.json().unwrap();
    assert_eq!(body["error"], "Requires authorization");
    let resp = http.get(registry.url("/v1/search?q=app")).send().unwrap();
    assert_eq!(resp.status(), 401, "search needs a login too");
    let resp = http
        .get(registry.url("/v1/search?q=app"))
        .basic_auth(ALICE, Some(ALICE_PW))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    // The status routes stay open.
    assert_eq!(
        http.get(registry.url("/v1/_ping")).send().unwrap().status(),
        200
    );

    // A v1 push with basic auth, then a pull of it.
    let image = common::fixtures().join(BASE);
    let json = std::fs::read(image.join("json")).unwrap();
    let layer = std::fs::read(image.join("layer.tar")).unwrap();
    let url = |what: &str| registry.url(&format!("/v1/images/{BASE}/{what}"));
    let put = |url: String, body: Vec<u8>| {
        http.put(url)
            .basic_auth(ALICE, Some(ALICE_PW))
            .body(body)
            .send()
            .unwrap()
            .status()
    };
    let anonymous = http.put(url("json")).body(json.clone()).send().unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(put(url("json"), json.clone()), 200);
    assert_eq!(put(url("layer"), layer.clone()), 200);
    let checksum = common::v1_checksum(&json, &layer);
    let resp = http
        .put(url("checksum"))
        .basic_auth(ALICE, Some(ALICE_PW))
        .header("X-Docker-Checksum-Payload", checksum)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        put(
            registry.url("/v1/repositories/team/v1app/tags/latest"),
            format!("\"{BASE}\"").into_bytes()
        ),
        200
    );
    let resp = http
        .get(registry.url("/v1/repositories/team/v1app/tags/latest"))
        .basic_auth(ALICE, Some(ALICE_PW))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().unwrap(), serde_json::json!(BASE));
    let resp = http.get(url("layer")).send().unwrap();
    assert_eq!(resp.status(), 401);
}

const BASE: &str = "511136ea3c5a64f264b78b5433614aec563103b4d4702f3ba7d4d2698e22c158";

#[test]
fn write_mode_lets_anonymous_pulls_through_but_not_pushes() {
    let s = setup(&entry(ALICE, ALICE_PW));
    let registry = s.start(&[("AUTH_REQUIRED", "write")]);
    let v2 = V2::new(&registry);
    let blob = unique_bytes("write-mode", 500);
    let digest = sha256(&blob);
    let push = |v2: &V2, req: RequestBuilder| v2.send(req.body(blob.clone()));
    let path = format!("/v2/team/app/blobs/uploads/?digest={digest}");
    let resp = push(&v2, v2.request("POST", &path));
    v2.expect_error(resp, 401, "UNAUTHORIZED", "anonymous push");
    let resp = push(&v2, basic(v2.request("POST", &path), ALICE, "wrong"));
    v2.expect_error(resp, 401, "UNAUTHORIZED", "push with a wrong password");
    let resp = push(&v2, basic(v2.request("POST", &path), ALICE, ALICE_PW));
    assert_eq!(resp.status(), 201);
    // Anonymous pulls, catalog and search.
    let resp = v2.get(&format!("/v2/team/app/blobs/{digest}"));
    assert_eq!(resp.status(), 200);
    assert_eq!(v2.get("/v2/_catalog").status(), 200);
    let http = common::client();
    let search = http.get(registry.url("/v1/search?q=x")).send().unwrap();
    assert_eq!(search.status(), 200);
    // A wrong password on a pull is still refused, not ignored.
    let resp = v2.send(basic(
        v2.request("GET", &format!("/v2/team/app/blobs/{digest}")),
        ALICE,
        "wrong",
    ));
    v2.expect_error(resp, 401, "UNAUTHORIZED", "pull with a wrong password");
    // Deletes need a login.
    let resp = v2.delete(&format!("/v2/team/app/blobs/{digest}"));
    v2.expect_error(resp, 401, "UNAUTHORIZED", "anonymous delete");
    // `/v2/` asks for one: `docker login` checks credentials there.
    let resp = v2.get("/v2/");
    v2.expect_error(resp, 401, "UNAUTHORIZED", "GET /v2/");

    // skopeo: anonymous push refused, push with creds, anonymous pull.
    // (podman pulls anonymously the same way; the docker engine cannot:
    // once challenged for Basic credentials it has none of, it stops with
    // `no basic auth credentials` rather than send the request.)
    if !tool_available("skopeo", INSTALL_CLIENTS) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let layout = Layout::write(&work.path().join("src"), "write mode");
    let dest = format!("docker://127.0.0.1:{}/team/skopeo:v1", registry.port);
    let copy = |extra: &[&str], from: &str, to: &str| {
        let mut args = vec!["copy", "--src-tls-verify=false", "--dest-tls-verify=false"];
        args.extend_from_slice(extra);
        args.extend([from, to]);
        try_run("skopeo", &args)
    };
    let refused = expect_refused(copy(&[], &layout.reference(), &dest), "anonymous push");
    assert!(
        refused.contains("401") || refused.to_lowercase().contains("unauthorized"),
        "{refused}"
    );
    let creds = format!("{ALICE}:{ALICE_PW}");
    expect_ok(
        copy(&["--dest-creds", &creds], &layout.reference(), &dest),
        "push with creds",
    );
    let out = work.path().join("pulled");
    let pulled = format!("oci:{}:v1", out.display());
    expect_ok(copy(&[], &dest, &pulled), "anonymous pull");
    assert!(out
        .join("blobs/sha256")
        .join(hex_of(&layout.manifest_digest))
        .exists());
}

#[test]
fn skopeo_and_podman_log_in_push_and_pull() {
    let s = setup(&entry(ALICE, ALICE_PW));
    let registry = s.start(&[]);
    let host = format!("127.0.0.1:{}", registry.port);
    let creds = format!("{ALICE}:{ALICE_PW}");
    let work = tempfile::tempdir().unwrap();

    if tool_available("skopeo", INSTALL_CLIENTS) {
        let layout = Layout::write(&work.path().join("src"), "skopeo creds");
        let dest = format!("docker://{host}/team/skopeo:v1");
        let wrong = try_run(
            "skopeo",
            &[
                "copy",
                "--dest-tls-verify=false",
                "--dest-creds",
                &format!("{ALICE}:nope"),
                &layout.reference(),
                &dest,
            ],
        );
        let stderr = expect_refused(wrong, "skopeo with a wrong password");
        assert!(!stderr.contains("nope"), "the password is echoed: {stderr}");
        run(
            "skopeo",
            &[
                "copy",
                "--dest-tls-verify=false",
                "--dest-creds",
                &creds,
                &layout.reference(),
                &dest,
            ],
        );
        let info: Value = serde_json::from_slice(
            &run(
                "skopeo",
                &["inspect", "--tls-verify=false", "--creds", &creds, &dest],
            )
            .stdout,
        )
        .unwrap();
        assert_eq!(info["Digest"], layout.manifest_digest.as_str());
        expect_refused(
            try_run("skopeo", &["inspect", "--tls-verify=false", &dest]),
            "anonymous inspect",
        );
        let out = work.path().join("pulled");
        run(
            "skopeo",
            &[
                "copy",
                "--src-tls-verify=false",
                "--src-creds",
                &creds,
                &dest,
                &format!("oci:{}:v1", out.display()),
            ],
        );
        let layer = std::fs::read(
            out.join("blobs/sha256")
                .join(hex_of(&sha256(&layout.layer))),
        );
        assert_eq!(layer.unwrap(), layout.layer, "the layer pulled back");
    }

    if tool_available("podman", INSTALL_CLIENTS) {
        let podman = Podman::new();
        let tar = work.path().join("rootfs.tar");
        std::fs::write(&tar, rootfs_tar("podman login")).unwrap();
        podman.run(&["import", tar.to_str().unwrap(), "localhost/imported:v1"]);
        let image = format!("{host}/team/podman:v1");
        let refused = podman.try_run(&[
            "push",
            "--tls-verify=false",
            "localhost/imported:v1",
            &image,
        ]);
        expect_refused(refused, "podman push before login");
        let wrong = podman.try_run(&[
            "login",
            "--tls-verify=false",
            "--username",
            ALICE,
            "--password",
            "nope",
            &host,
        ]);
        expect_refused(wrong, "podman login with a wrong password");
        podman.run(&[
            "login",
            "--tls-verify=false",
            "--username",
            ALICE,
            "--password",
            ALICE_PW,
            &host,
        ]);
        podman.run(&[
            "push",
            "--tls-verify=false",
            "localhost/imported:v1",
            &image,
        ]);
        let v2 = V2::new(&registry);
        let resp = v2.send(basic(
            v2.request("HEAD", "/v2/team/podman/manifests/v1")
                .header("accept", ALL_MANIFESTS),
            ALICE,
            ALICE_PW,
        ));
        assert_eq!(resp.status(), 200, "podman pushed v1");
        podman.run(&["rmi", "-a", "-f"]);
        podman.run(&["pull", "--tls-verify=false", &image]);
        podman.run(&["logout", &host]);
        podman.run(&["rmi", "-a", "-f"]);
        expect_refused(
            podman.try_run(&["pull", "--tls-verify=false", &image]),
            "podman pull after logout",
        );
    }
}

#[test]
fn docker_login_push_pull() {
    if !docker_engine_answers("docker_login_push_pull") {
        return;
    }
    let s = setup(&entry(ALICE, ALICE_PW));
    let registry = s.start(&[]);
    let host = format!("127.0.0.1:{}", registry.port);
    let mut docker = Docker::new();
    let image = format!("{host}/team/docker-{}:v1", rand_suffix());
    docker.images.push(image.clone());
    let work = tempfile::tempdir().unwrap();
    let tar = work.path().join("rootfs.tar");
    std::fs::write(&tar, rootfs_tar("docker login")).unwrap();
    docker.run(&["import", tar.to_str().unwrap(), &image]);

    let refused = docker.try_run(&["push", &image]);
    expect_refused(refused, "docker push before login");
    let wrong = docker.login(&host, ALICE, "nope");
    expect_refused(wrong, "docker login with a wrong password");
    expect_ok(docker.login(&host, ALICE, ALICE_PW), "docker login");
    docker.run(&["push", &image]);
    let v2 = V2::new(&registry);
    let name = image.split_once('/').unwrap().1.replace(":v1", "");
    let resp = v2.send(basic(
        v2.request("HEAD", &format!("/v2/{name}/manifests/v1"))
            .header("accept", ALL_MANIFESTS),
        ALICE,
        ALICE_PW,
    ));
    assert_eq!(resp.status(), 200, "docker pushed v1");
    docker.run(&["rmi", "-f", &image]);
    docker.run(&["pull", &image]);
    docker.run(&["logout", &host]);
    docker.logged_in.clear();
    docker.run(&["rmi", "-f", &image]);
    expect_refused(
        docker.try_run(&["pull", &image]),
        "docker pull after logout",
    );
}

#[test]
fn a_changed_file_is_picked_up_while_serving() {
    let s = setup(&entry(ALICE, ALICE_PW));
    let registry = s.start(&[]);
    let v2 = V2::new(&registry);
    let status = |user: &str, pw: &str| {
        v2.send(basic(v2.request("GET", "/v2/"), user, pw))
            .status()
            .as_u16()
    };
    assert_eq!(status(ALICE, ALICE_PW), 200);
    assert_eq!(status("bob", "builder"), 401);
    // Added, as an operator does with `htpasswd -B file bob`.
    append(&s.file, &entry("bob", "builder"));
    assert_eq!(status("bob", "builder"), 200);
    // A new password for alice: the old one stops working at once, even
    // though it was just checked (and remembered).
    std::fs::write(&s.file, entry(ALICE, "second") + &entry("bob", "builder")).unwrap();
    assert_eq!(status(ALICE, ALICE_PW), 401);
    assert_eq!(status(ALICE, "second"), 200);
    // A broken rewrite (an empty file) leaves nobody able to log in, and
    // the server running.
    std::fs::write(&s.file, "").unwrap();
    assert_eq!(status(ALICE, "second"), 401);
    assert_eq!(status("bob", "builder"), 401);
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::File::options().append(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

#[test]
fn failed_logins_are_limited_per_address() {
    let s = setup(&entry(ALICE, ALICE_PW));
    let registry = s.start(&[("AUTH_MAX_FAILED_LOGINS", "3")]);
    let v2 = V2::new(&registry);
    for n in 0..3 {
        let resp = v2.send(basic(
            v2.request("GET", "/v2/"),
            ALICE,
            &format!("guess{n}"),
        ));
        assert_eq!(resp.status(), 401, "guess {n}");
    }
    // The fourth try, even with the right password: 429 until the minute
    // is over.
    let resp = v2.send(basic(v2.request("GET", "/v2/"), ALICE, ALICE_PW));
    let wait: u64 = header(&resp, "retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    v2.expect_error(resp, 429, "TOOMANYREQUESTS", "a login after 3 failures");
    // v1 says it in its own JSON.
    let resp = common::client()
        .get(registry.url("/v1/repositories/team/app/tags"))
        .basic_auth(ALICE, Some(ALICE_PW))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    let body: Value = resp.json().unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("Too many failed logins"),
        "{body}"
    );
    // Requests without credentials are no login attempts: still the
    // challenge, so a client can learn how to log in.
    let resp = v2.get("/v2/");
    v2.expect_error(resp, 401, "UNAUTHORIZED", "GET /v2/ without credentials");
}

#[test]
fn passwords_and_authorization_headers_stay_out_of_the_log() {
    let s = setup(&entry(ALICE, ALICE_PW));
    let registry = s.start(&[("LOGLEVEL", "debug")]);
    let v2 = V2::new(&registry);
    let secret = "Sup3r-s3cret-guess";
    for pw in [ALICE_PW, secret] {
        v2.send(basic(
            v2.request("GET", "/v2/team/app/tags/list"),
            ALICE,
            pw,
        ));
        common::client()
            .get(registry.url("/v1/repositories/team/app/tags"))
            .basic_auth(ALICE, Some(pw))
            .send()
            .unwrap();
    }
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{ALICE}:{secret}"));
    // The log is written as the requests are answered.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let log = loop {
        let log = registry.log();
        if log.contains("failed login") || std::time::Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(log.contains("failed login of user \"alice\""), "{log}");
    for needle in [secret, ALICE_PW, encoded.as_str(), "Basic ", "uthorization"] {
        assert!(!log.contains(needle), "{needle:?} in the log:\n{log}");
    }
}

#[test]
fn startup_errors_name_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("storage");
    let storage = storage.to_str().unwrap();
    let out = common::run(
        &[],
        &[
            ("STORAGE_PATH", storage),
            ("AUTH_HTPASSWD", "/nonexistent/htpasswd"),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("auth_htpasswd") && stderr.contains("/nonexistent/htpasswd"),
        "{stderr}"
    );
    // Logins replace the central index's token checks: both at once is
    // a mistake to say, not to guess at.
    let file = dir.path().join("htpasswd");
    std::fs::write(&file, entry(ALICE, ALICE_PW)).unwrap();
    let out = common::run(
        &[],
        &[
            ("STORAGE_PATH", storage),
            ("AUTH_HTPASSWD", file.to_str().unwrap()),
            ("STANDALONE", "false"),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("auth_htpasswd") && stderr.contains("standalone"),
        "{stderr}"
    );
}

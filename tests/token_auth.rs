//! Token auth through the real binary (issue 12), with a token service of
//! the test's own: a few lines of HTTP on a loopback port that checks a
//! password and signs JWTs with key pairs openssl makes here. The flow is
//! docker's: a request, its 401 `Bearer realm,service,scope` challenge, a
//! token for that scope, the request again. Real clients do it too:
//! skopeo and podman with credentials, and the docker engine (login, push,
//! pull, search) where `docker info` works.

mod common;
mod login_support;
mod v2_support;

use std::collections::HashMap;

use base64::Engine;
use reqwest::blocking::{RequestBuilder, Response};
use serde_json::{json, Value};

use login_support::token_service::*;
use login_support::*;
use v2_support::*;

/// The parameters of a `Bearer` challenge.
fn challenge_of(resp: &Response) -> HashMap<String, String> {
    let value = header(resp, "www-authenticate").expect("a challenge");
    let rest = value
        .strip_prefix("Bearer ")
        .unwrap_or_else(|| panic!("{value}"));
    let mut params = HashMap::new();
    let re = regex::Regex::new(r#"(\w+)="([^"]*)""#).unwrap();
    for c in re.captures_iter(rest) {
        params.insert(c[1].to_owned(), c[2].to_owned());
    }
    params
}

/// docker's flow: send, read the challenge, get a token for its scope as
/// alice, send again with it.
fn with_token_flow(
    http: &reqwest::blocking::Client,
    build: impl Fn() -> RequestBuilder,
) -> Response {
    let first = build().send().unwrap();
    if first.status() != 401 {
        return first;
    }
    let c = challenge_of(&first);
    let mut query = vec![("service", c["service"].clone())];
    if let Some(scope) = c.get("scope") {
        query.push(("scope", scope.clone()));
    }
    let token: Value = http
        .get(&c["realm"])
        .query(&query)
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .unwrap()
        .json()
        .unwrap();
    build()
        .bearer_auth(token["token"].as_str().unwrap())
        .send()
        .unwrap()
}

#[test]
fn challenges_name_the_scope_each_request_needs() {
    let Some(world) = World::new() else { return };
    let (_backend, registry) = world.start(&[]);
    let http = common::client();
    let realm = world.service.realm();
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("GET", "/v2/", None),
        (
            "GET",
            "/v2/team/app/manifests/v1",
            Some("repository:team/app:pull"),
        ),
        (
            "HEAD",
            "/v2/team/app/blobs/sha256:00",
            Some("repository:team/app:pull"),
        ),
        (
            "POST",
            "/v2/team/app/blobs/uploads/",
            Some("repository:team/app:pull,push"),
        ),
        (
            "PUT",
            "/v2/team/app/manifests/v1",
            Some("repository:team/app:pull,push"),
        ),
        (
            "DELETE",
            "/v2/team/app/manifests/v1",
            Some("repository:team/app:delete"),
        ),
        (
            "POST",
            "/v2/team/app/blobs/uploads/?mount=sha256:00&from=base/os",
            Some("repository:team/app:pull,push repository:base/os:pull"),
        ),
        ("GET", "/v2/_catalog", Some("registry:catalog:*")),
        ("GET", "/v1/search?q=app", Some("registry:catalog:search")),
        (
            "GET",
            "/v1/repositories/team/app/tags",
            Some("repository:team/app:pull"),
        ),
    ];
    for (method, path, scope) in cases {
        let resp = http
            .request(method.parse().unwrap(), registry.url(path))
            .send()
            .unwrap();
        let what = format!("{method} {path}");
        assert_eq!(resp.status(), 401, "{what}");
        let c = challenge_of(&resp);
        assert_eq!(c["realm"], realm, "{what}");
        assert_eq!(c["service"], SERVICE, "{what}");
        assert_eq!(c.get("scope").map(String::as_str), *scope, "{what}");
        assert!(!c.contains_key("error"), "{what}: no token, no error");
        if *method != "HEAD" {
            let body: Value = resp.json().unwrap();
            if path.starts_with("/v2/") {
                assert_eq!(body["errors"][0]["code"], "UNAUTHORIZED", "{what}");
            } else {
                assert_eq!(body["error"], "Requires authorization", "{what}");
            }
        }
    }
}

#[test]
fn the_token_flow_pushes_pulls_lists_and_searches() {
    let Some(world) = World::new() else { return };
    let (_backend, registry) = world.start(&[]);
    let http = common::client();
    let blob = unique_bytes("token flow", 2000);
    let digest = sha256(&blob);
    let push = with_token_flow(&http, || {
        http.post(registry.url(&format!("/v2/team/app/blobs/uploads/?digest={digest}")))
            .body(blob.clone())
    });
    assert_eq!(push.status(), 201);
    let image = ImageBlobs::new("token flow", "amd64");
    for data in [&image.config, &image.layer] {
        let d = sha256(data);
        let resp = with_token_flow(&http, || {
            http.post(registry.url(&format!("/v2/team/app/blobs/uploads/?digest={d}")))
                .body(data.clone())
        });
        assert_eq!(resp.status(), 201);
    }
    let manifest = image.oci_manifest();
    let resp = with_token_flow(&http, || {
        http.put(registry.url("/v2/team/app/manifests/v1"))
            .header("content-type", OCI_MANIFEST)
            .body(manifest.clone())
    });
    assert_eq!(resp.status(), 201);
    let pull = with_token_flow(&http, || {
        http.get(registry.url(&format!("/v2/team/app/blobs/{digest}")))
    });
    assert_eq!(pull.status(), 200);
    assert_eq!(pull.bytes().unwrap(), blob);
    let catalog = with_token_flow(&http, || http.get(registry.url("/v2/_catalog")));
    assert_eq!(catalog.status(), 200);
    assert_eq!(
        catalog.json::<Value>().unwrap()["repositories"],
        json!(["team/app"])
    );
    let search = with_token_flow(&http, || http.get(registry.url("/v1/search?q=app")));
    assert_eq!(search.status(), 200);
    let found: Value = search.json().unwrap();
    assert!(found["results"].is_array(), "{found}");
    // A mount asks for the source too.
    let mount = with_token_flow(&http, || {
        http.post(registry.url(&format!(
            "/v2/team/copy/blobs/uploads/?mount={digest}&from=team/app"
        )))
    });
    assert_eq!(mount.status(), 201);
    let asked = world.service.asked();
    assert!(
        asked.iter().any(|(_, s)| s
            == &[
                "repository:team/copy:pull,push".to_owned(),
                "repository:team/app:pull".to_owned()
            ]),
        "{asked:?}"
    );
    // Denied by the token service: the token lacks the scope.
    let locked = with_token_flow(&http, || http.get(registry.url("/v2/locked/app/tags/list")));
    assert_eq!(locked.status(), 401);
    assert_eq!(challenge_of(&locked)["error"], "insufficient_scope");
}

#[test]
fn bad_tokens_are_refused() {
    let Some(world) = World::new() else { return };
    let (_backend, registry) = world.start(&[]);
    let http = common::client();
    let path = "/v2/team/app/tags/list";
    let pull = json!([{"type": "repository", "name": "team/app", "actions": ["pull"]}]);
    let status_with = |token: &str, path: &str, method: &str| {
        let resp = http
            .request(method.parse().unwrap(), registry.url(path))
            .bearer_auth(token)
            .send()
            .unwrap();
        let status = resp.status().as_u16();
        let error = (status == 401)
            .then(|| challenge_of(&resp).get("error").cloned())
            .flatten();
        (status, error)
    };
    let good = Claims::granting(pull.clone());
    // Valid: signed by each kind of bundle key, with and without `kid`,
    // with a `kid` the bundle does not know.
    for (key, kid) in [
        (&*world.rsa, Some(world.rsa.kid.as_str())),
        (&*world.rsa, None),
        (&*world.rsa, Some("UNKN:OWNK:EYID")),
        (&world.ec, Some(world.ec.kid.as_str())),
        (&world.ed, None),
    ] {
        let token = mint(key, kid, &good);
        // The repository has no tags yet: 404 is past the gate.
        assert_eq!(
            status_with(&token, path, "GET").0,
            404,
            "{:?} {kid:?}",
            key.alg
        );
    }
    // The leaf certificate in `x5c`, as distribution reads it: a bundle
    // certificate itself, or one a bundle certificate issued.
    for key in [&*world.rsa, &world.ec, &world.issued] {
        let token = mint_with(key, None, Some(&key.x5c), &good);
        assert_eq!(
            status_with(&token, path, "GET").0,
            404,
            "x5c {:?}",
            key.cert
        );
    }
    let invalid = (401, Some("invalid_token".to_owned()));
    let mut expired = good.clone();
    expired.expires = now() - 600;
    expired.not_before = now() - 1200;
    let mut early = good.clone();
    early.not_before = now() + 600;
    let mut audience = good.clone();
    audience.audience = "another.registry".into();
    let mut issuer = good.clone();
    issuer.issuer = "someone else".into();
    for (what, token) in [
        ("expired", mint(&world.rsa, None, &expired)),
        ("not yet valid", mint(&world.rsa, None, &early)),
        ("wrong audience", mint(&world.rsa, None, &audience)),
        ("wrong issuer", mint(&world.rsa, None, &issuer)),
        ("wrong key", mint(&world.stranger, None, &good)),
        (
            "wrong key, a trusted kid",
            mint(&world.stranger, Some(&world.rsa.kid), &good),
        ),
        ("not a JWT", "abc.def.ghi".to_owned()),
        ("tampered", tamper(&mint(&world.rsa, None, &good))),
        ("unsigned", unsigned(&good)),
        (
            "x5c of a certificate outside the bundle",
            mint_with(&world.stranger, None, Some(&world.stranger.x5c), &good),
        ),
        (
            "x5c of a bundle certificate, signed by another key",
            mint_with(&world.stranger, None, Some(&world.rsa.x5c), &good),
        ),
        (
            "x5c issued by a CA outside the bundle",
            mint_with(
                &world.issued_elsewhere,
                None,
                Some(&world.issued_elsewhere.x5c),
                &good,
            ),
        ),
        (
            "x5c issued by a bundle CA, signed by another key",
            mint_with(&world.stranger, None, Some(&world.issued.x5c), &good),
        ),
    ] {
        assert_eq!(status_with(&token, path, "GET"), invalid, "{what}");
    }
    // Valid tokens outside their scope.
    let insufficient = (401, Some("insufficient_scope".to_owned()));
    let token = mint(&world.rsa, None, &good);
    assert_eq!(
        status_with(&token, "/v2/team/other/tags/list", "GET"),
        insufficient
    );
    assert_eq!(
        status_with(&token, "/v2/team/app/blobs/uploads/", "POST"),
        insufficient,
        "a pull token pushing"
    );
    assert_eq!(
        status_with(&token, "/v2/team/app/manifests/v1", "DELETE"),
        insufficient
    );
    assert_eq!(status_with(&token, "/v2/_catalog", "GET"), insufficient);
    assert_eq!(status_with(&token, "/v1/search?q=x", "GET"), insufficient);
    // A mount needs pull on its source as well.
    let push = json!([{"type": "repository", "name": "team/app", "actions": ["pull", "push"]}]);
    let token = mint(&world.rsa, None, &Claims::granting(push));
    let mount = "/v2/team/app/blobs/uploads/?mount=sha256:00&from=other/base";
    assert_eq!(status_with(&token, mount, "POST"), insufficient);
    assert_eq!(
        status_with(&token, "/v2/team/app/blobs/uploads/", "POST").0,
        202
    );
    // Wildcards grant everything on their resource.
    let all = json!([
        {"type": "repository", "name": "team/app", "actions": ["*"]},
        {"type": "registry", "name": "catalog", "actions": ["*"]},
    ]);
    let token = mint(&world.rsa, None, &Claims::granting(all));
    assert_eq!(
        status_with(&token, "/v2/team/app/manifests/v1", "DELETE").0,
        404
    );
    assert_eq!(status_with(&token, "/v2/_catalog", "GET").0, 200);
    assert_eq!(status_with(&token, "/v1/search?q=x", "GET").0, 200);
    // v1 image routes name no repository: the action on a repository the
    // image belongs to (none does: refused, not 404, issue 26).
    let image = format!("/v1/images/{}/json", "a".repeat(64));
    let token = mint(&world.rsa, None, &good);
    assert_eq!(
        status_with(&token, &image, "PUT"),
        insufficient,
        "a pull token"
    );
    assert_eq!(status_with(&token, &image, "GET"), insufficient);
    // Nothing of the tokens reaches the log: not the token, not its
    // signature, not the header.
    let log = registry.log();
    let signature = token.rsplit('.').next().unwrap();
    for needle in [token.as_str(), signature, "uthorization"] {
        assert!(!log.contains(needle), "{needle} in the log:\n{log}");
    }
}

/// The token with one byte of its payload changed.
fn tamper(token: &str) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut payload: Value = serde_json::from_slice(&engine.decode(parts[1]).unwrap()).unwrap();
    payload["access"][0]["name"] = json!("team/app");
    payload["sub"] = json!("mallory");
    format!(
        "{}.{}.{}",
        parts[0],
        engine.encode(payload.to_string()),
        parts[2]
    )
}

/// `alg: none`.
fn unsigned(claims: &Claims) -> String {
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = engine.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let body = engine.encode(
        json!({"iss": claims.issuer, "aud": claims.audience, "exp": claims.expires, "access": claims.access})
            .to_string(),
    );
    format!("{header}.{body}.")
}

#[test]
fn write_mode_pulls_without_a_token() {
    let Some(world) = World::new() else { return };
    let (_backend, registry) = world.start(&[("AUTH_REQUIRED", "write")]);
    let http = common::client();
    let resp = http
        .get(registry.url("/v2/team/app/tags/list"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 404, "anonymous pull passes the gate");
    let resp = http
        .post(registry.url("/v2/team/app/blobs/uploads/"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        challenge_of(&resp)["scope"],
        "repository:team/app:pull,push"
    );
}

#[test]
fn skopeo_and_podman_do_the_token_flow() {
    let Some(world) = World::new() else { return };
    let (_backend, registry) = world.start(&[]);
    let host = format!("127.0.0.1:{}", registry.port);
    let creds = format!("{USER}:{PASSWORD}");
    let work = tempfile::tempdir().unwrap();
    if tool_available("skopeo", INSTALL_CLIENTS) {
        let layout = Layout::write(&work.path().join("src"), "skopeo token");
        let dest = format!("docker://{host}/team/skopeo:v1");
        let copy = |creds: Option<&str>| {
            let mut args = vec!["copy", "--dest-tls-verify=false"];
            if let Some(c) = creds {
                args.extend(["--dest-creds", c]);
            }
            let from = layout.reference();
            args.extend([from.as_str(), dest.as_str()]);
            try_run("skopeo", &args)
        };
        expect_refused(copy(None), "anonymous push");
        expect_refused(copy(Some(&format!("{USER}:wrong"))), "a wrong password");
        expect_ok(copy(Some(&creds)), "push with creds");
        let info: Value = serde_json::from_slice(
            &run(
                "skopeo",
                &["inspect", "--tls-verify=false", "--creds", &creds, &dest],
            )
            .stdout,
        )
        .unwrap();
        assert_eq!(info["Digest"], layout.manifest_digest.as_str());
        let asked = world.service.asked();
        assert!(
            asked
                .iter()
                .any(|(who, scopes)| who.as_deref() == Some(USER)
                    && scopes
                        .iter()
                        .any(|s| s == "repository:team/skopeo:pull,push")),
            "{asked:?}"
        );
    }
    if tool_available("podman", INSTALL_CLIENTS) {
        let podman = Podman::new();
        let tar = work.path().join("rootfs.tar");
        std::fs::write(&tar, rootfs_tar("podman token")).unwrap();
        podman.run(&["import", tar.to_str().unwrap(), "localhost/imported:v1"]);
        let image = format!("{host}/team/podman:v1");
        expect_refused(
            podman.try_run(&[
                "push",
                "--tls-verify=false",
                "localhost/imported:v1",
                &image,
            ]),
            "podman push before login",
        );
        podman.run(&[
            "login",
            "--tls-verify=false",
            "--username",
            USER,
            "--password",
            PASSWORD,
            &host,
        ]);
        podman.run(&[
            "push",
            "--tls-verify=false",
            "localhost/imported:v1",
            &image,
        ]);
        podman.run(&["rmi", "-a", "-f"]);
        podman.run(&["pull", "--tls-verify=false", &image]);
        podman.run(&["logout", &host]);
    }
}

#[test]
fn docker_login_push_pull_search() {
    if !docker_engine_answers("docker_login_push_pull_search") {
        return;
    }
    let Some(world) = World::new() else { return };
    let (_backend, registry) = world.start(&[]);
    let host = format!("127.0.0.1:{}", registry.port);
    let mut docker = Docker::new();
    let repo = format!("team/docker-{}", rand_suffix());
    let image = format!("{host}/{repo}:v1");
    docker.images.push(image.clone());
    let work = tempfile::tempdir().unwrap();
    let tar = work.path().join("rootfs.tar");
    std::fs::write(&tar, rootfs_tar("docker token")).unwrap();
    docker.run(&["import", tar.to_str().unwrap(), &image]);
    expect_refused(
        docker.try_run(&["push", &image]),
        "docker push before login",
    );
    expect_refused(docker.login(&host, USER, "wrong"), "a wrong password");
    expect_ok(docker.login(&host, USER, PASSWORD), "docker login");
    docker.run(&["push", &image]);
    docker.run(&["rmi", "-f", &image]);
    docker.run(&["pull", &image]);
    let found = docker.try_run(&["search", &format!("{host}/docker")]);
    let asked = world.service.asked();
    let found = expect_ok(
        found,
        &format!("docker search; asked {asked:?}\n{}", registry.log()),
    );
    let found = String::from_utf8_lossy(&found.stdout).into_owned();
    assert!(
        asked.iter().any(|(who, s)| who.as_deref() == Some(USER)
            && s.iter().any(|s| s == "registry:catalog:search")),
        "docker search asked {asked:?}; found {found}"
    );
    assert!(found.contains(&repo), "{found}");
}

#[test]
fn startup_errors_name_the_setting() {
    let Some(world) = World::new() else { return };
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("storage");
    let realm = world.service.realm();
    let private = dir.path().join("private.pem");
    std::fs::write(&private, &world.rsa.private_pem).unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    for (bundle, words) in [
        ("/nonexistent/bundle.pem", &["/nonexistent/bundle.pem"][..]),
        (
            private.to_str().unwrap(),
            &["PRIVATE KEY", "private.pem"][..],
        ),
        (
            empty.to_str().unwrap(),
            &["no CERTIFICATE or PUBLIC KEY"][..],
        ),
    ] {
        let out = common::run(
            &[],
            &[
                ("STORAGE_PATH", storage.to_str().unwrap()),
                ("AUTH_TOKEN_REALM", &realm),
                ("AUTH_TOKEN_SERVICE", SERVICE),
                ("AUTH_TOKEN_ISSUER", ISSUER),
                ("AUTH_TOKEN_ROOTCERTBUNDLE", bundle),
            ],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bundle}");
        assert!(stderr.contains("auth_token_rootcertbundle"), "{stderr}");
        for word in words {
            assert!(stderr.contains(word), "{word}: {stderr}");
        }
        // The private key's text never reaches the message.
        let pem = String::from_utf8_lossy(&world.rsa.private_pem);
        let body_line = pem.lines().nth(1).unwrap();
        assert!(!stderr.contains(body_line), "{stderr}");
    }
}

/// A v1 image of the tests: its id, its json (naming `parent`) and a
/// layer (a real tar).
struct V1Image {
    id: String,
    json: Vec<u8>,
    layer: Vec<u8>,
}

impl V1Image {
    fn new(parent: Option<&str>) -> V1Image {
        let id = hex_of(&sha256(&unique_bytes("v1 image", 32))).to_owned();
        let mut json = json!({"id": id, "created": "2014-04-07T02:45:52Z"});
        if let Some(p) = parent {
            json["parent"] = json!(p);
        }
        let layer = std::fs::read(
            common::fixtures()
                .join("511136ea3c5a64f264b78b5433614aec563103b4d4702f3ba7d4d2698e22c158")
                .join("layer.tar"),
        )
        .unwrap();
        V1Image {
            id,
            json: json.to_string().into_bytes(),
            layer,
        }
    }
}

/// A token of the test's key granting `actions` on each repository.
fn token_for(world: &World, repositories: &[&str], actions: &[&str]) -> String {
    let access: Vec<Value> = repositories
        .iter()
        .map(|r| json!({"type": "repository", "name": r, "actions": actions}))
        .collect();
    mint(&world.rsa, None, &Claims::granting(json!(access)))
}

/// A docker 1.x push of `images` (those not stored yet) into
/// `repository` with `token`: the list, the images, the tag, the list
/// with checksums.
fn push_v1(
    http: &reqwest::blocking::Client,
    registry: &common::Registry,
    token: &str,
    repository: &str,
    images: &[&V1Image],
    tag: &str,
) {
    let list: Vec<Value> = images.iter().map(|i| json!({"id": i.id})).collect();
    let resp = http
        .put(registry.url(&format!("/v1/repositories/{repository}/")))
        .bearer_auth(token)
        .json(&list)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200, "list of {repository}");
    for image in images {
        let url = |what: &str| registry.url(&format!("/v1/images/{}/{what}", image.id));
        let exists = http.get(url("json")).bearer_auth(token).send().unwrap();
        if exists.status() == 200 {
            continue;
        }
        assert_eq!(exists.status(), 404, "{repository}: {}", image.id);
        for (what, body) in [("json", &image.json), ("layer", &image.layer)] {
            let resp = http
                .put(url(what))
                .bearer_auth(token)
                .body(body.clone())
                .send()
                .unwrap();
            assert_eq!(resp.status(), 200, "{repository}: {what} of {}", image.id);
        }
        let resp = http
            .put(url("checksum"))
            .bearer_auth(token)
            .header(
                "X-Docker-Checksum-Payload",
                common::v1_checksum(&image.json, &image.layer),
            )
            .send()
            .unwrap();
        assert_eq!(resp.status(), 200, "{repository}: checksum of {}", image.id);
    }
    let top = images.last().unwrap();
    let resp = http
        .put(registry.url(&format!("/v1/repositories/{repository}/tags/{tag}")))
        .bearer_auth(token)
        .json(&json!(top.id))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200, "tag of {repository}");
    let resp = http
        .put(registry.url(&format!("/v1/repositories/{repository}/images")))
        .bearer_auth(token)
        .json(&list)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 204, "final list of {repository}");
}

/// Issue 26: a token reaches the v1 images of the repositories it grants
/// (listed, tagged, or an ancestor of those), and no other, whether the
/// image exists or not.
#[test]
fn v1_images_are_reached_only_through_the_tokens_repositories() {
    let Some(world) = World::new() else { return };
    let (_backend, registry) = world.start(&[]);
    let http = common::client();
    let base = V1Image::new(None);
    let secret = V1Image::new(Some(&base.id));
    let app = V1Image::new(Some(&base.id));
    let push_all = token_for(
        &world,
        &["bob/secret", "alice/app", "carol/tagged"],
        &["pull", "push"],
    );
    push_v1(
        &http,
        &registry,
        &push_all,
        "bob/secret",
        &[&base, &secret],
        "latest",
    );
    push_v1(
        &http,
        &registry,
        &push_all,
        "alice/app",
        &[&base, &app],
        "latest",
    );

    let get = |token: &str, id: &str, what: &str| {
        http.get(registry.url(&format!("/v1/images/{id}/{what}")))
            .bearer_auth(token)
            .send()
            .unwrap()
    };
    let refused = |token: &str, id: &str, what: &str| {
        let resp = get(token, id, what);
        assert_eq!(resp.status(), 401, "{what} of {id}");
        assert_eq!(
            challenge_of(&resp).get("error").map(String::as_str),
            Some("insufficient_scope"),
            "{what} of {id}"
        );
        let body: Value = resp.json().unwrap();
        assert_eq!(body["error"], "Requires authorization", "{what} of {id}");
    };
    let pulls = |token: &str, image: &V1Image| {
        let json = get(token, &image.id, "json");
        assert_eq!(json.status(), 200, "json of {}", image.id);
        let ancestry = get(token, &image.id, "ancestry");
        assert_eq!(ancestry.status(), 200, "ancestry of {}", image.id);
        let layer = get(token, &image.id, "layer");
        assert_eq!(layer.status(), 200, "layer of {}", image.id);
        assert_eq!(layer.bytes().unwrap(), image.layer);
    };
    let alice = token_for(&world, &["alice/app"], &["pull"]);
    let bob = token_for(&world, &["bob/secret"], &["pull"]);
    for what in ["json", "layer", "ancestry", "files"] {
        refused(&alice, &secret.id, what);
        refused(&bob, &app.id, what);
        // No image at all: the same answer, so nothing is learnt.
        refused(&alice, &"f".repeat(64), what);
    }
    pulls(&alice, &app);
    pulls(&alice, &base);
    pulls(&bob, &secret);
    pulls(&bob, &base);
    // A token for both reaches both.
    let both = token_for(&world, &["bob/secret", "alice/app"], &["pull"]);
    pulls(&both, &secret);
    pulls(&both, &app);
    // A push token reads what it may push; push rights on one
    // repository do not reach another's images.
    let alice_push = token_for(&world, &["alice/app"], &["pull", "push"]);
    refused(&alice_push, &secret.id, "json");

    // A repository that only tags an image (no list) reaches it and its
    // ancestors, from the moment the tag is written.
    let carol = token_for(&world, &["carol/tagged"], &["pull"]);
    refused(&carol, &app.id, "json");
    let resp = http
        .put(registry.url("/v1/repositories/carol/tagged/tags/v1"))
        .bearer_auth(&push_all)
        .json(&json!(app.id))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    pulls(&carol, &app);
    pulls(&carol, &base);
    refused(&carol, &secret.id, "ancestry");

    // Pushes: only an image the repository's list names. alice cannot
    // write into an image bob's list names and bob has not sent yet.
    let pending = V1Image::new(Some(&base.id));
    let resp = http
        .put(registry.url("/v1/repositories/bob/secret/"))
        .bearer_auth(&push_all)
        .json(&json!([{"id": pending.id}]))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    for what in ["json", "layer", "checksum"] {
        let resp = http
            .put(registry.url(&format!("/v1/images/{}/{what}", pending.id)))
            .bearer_auth(&alice_push)
            .body(pending.json.clone())
            .send()
            .unwrap();
        assert_eq!(resp.status(), 401, "alice pushing {what} of bob's image");
        assert_eq!(challenge_of(&resp)["error"], "insufficient_scope");
    }
    let bob_push = token_for(&world, &["bob/secret"], &["pull", "push"]);
    let resp = http
        .put(registry.url(&format!("/v1/images/{}/json", pending.id)))
        .bearer_auth(&bob_push)
        .body(pending.json.clone())
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200, "bob pushes what his list names");
    // A pull token pushes nothing, even of its own repository.
    let resp = http
        .put(registry.url(&format!("/v1/images/{}/layer", pending.id)))
        .bearer_auth(&bob)
        .body(pending.layer.clone())
        .send()
        .unwrap();
    assert_eq!(resp.status(), 401);
}

/// The docker-style v1 pull still works: with a token the challenge of the
/// repository route asks for, and anonymously where pulls need no login.
#[test]
fn v1_pulls_through_the_token_flow_and_anonymously() {
    let Some(world) = World::new() else { return };
    let base = V1Image::new(None);
    let app = V1Image::new(Some(&base.id));
    for required in ["all", "write"] {
        let (_backend, registry) = world.start(&[("AUTH_REQUIRED", required)]);
        let http = common::client();
        let push = token_for(&world, &["team/app"], &["pull", "push"]);
        push_v1(
            &http,
            &registry,
            &push,
            "team/app",
            &[&base, &app],
            "latest",
        );
        // The token a client gets for the repository route serves the
        // image routes of the same pull.
        let tags = http
            .get(registry.url("/v1/repositories/team/app/tags"))
            .send()
            .unwrap();
        let token = match required {
            "all" => {
                assert_eq!(tags.status(), 401);
                let c = challenge_of(&tags);
                assert_eq!(c["scope"], "repository:team/app:pull");
                let token: Value = http
                    .get(&c["realm"])
                    .query(&[("service", &c["service"]), ("scope", &c["scope"])])
                    .basic_auth(USER, Some(PASSWORD))
                    .send()
                    .unwrap()
                    .json()
                    .unwrap();
                Some(token["token"].as_str().unwrap().to_owned())
            }
            _ => {
                assert_eq!(tags.status(), 200, "anonymous");
                None
            }
        };
        let get = |path: &str| {
            let req = http.get(registry.url(path));
            match &token {
                Some(t) => req.bearer_auth(t),
                None => req,
            }
            .send()
            .unwrap()
        };
        let tags: Value = get("/v1/repositories/team/app/tags").json().unwrap();
        assert_eq!(tags["latest"], json!(app.id), "{required}");
        let ancestry: Value = get(&format!("/v1/images/{}/ancestry", app.id))
            .json()
            .unwrap();
        assert_eq!(ancestry, json!([app.id, base.id]), "{required}");
        for image in [&app, &base] {
            let json = get(&format!("/v1/images/{}/json", image.id));
            assert_eq!(json.status(), 200, "{required}");
            let layer = get(&format!("/v1/images/{}/layer", image.id));
            assert_eq!(layer.status(), 200, "{required}");
            assert_eq!(layer.bytes().unwrap(), image.layer, "{required}");
        }
        if required == "all" {
            let anonymous = http
                .get(registry.url(&format!("/v1/images/{}/json", app.id)))
                .send()
                .unwrap();
            assert_eq!(anonymous.status(), 401);
            assert!(!challenge_of(&anonymous).contains_key("error"));
        }
    }
}

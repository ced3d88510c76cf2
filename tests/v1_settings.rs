//! Settings that change how the v1 API answers: token authorisation
//! against a central index, privileged signatures, nginx's X-Accel-Redirect,
//! CORS. Each test writes the configuration file a user would.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;

use base64::Engine;
use reqwest::blocking::Response;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use rsa::signature::{SignatureEncoding, Signer};
use rsa::RsaPrivateKey;
use serde_json::Value;
use sha1::Sha1;

const BASE: &str = "511136ea3c5a64f264b78b5433614aec563103b4d4702f3ba7d4d2698e22c158";
const CHILD: &str = "46af0962ab5afeb5ce6740d4d91652e69206fc991fd5328c1a94d364ad00e457";

/// Starts the registry with `config` (YAML of the `prod` flavor's body,
/// indented by four spaces) in a file of its own.
fn start_with(dir: &Path, config: &str) -> common::Registry {
    let file = dir.join("config.yml");
    std::fs::write(&file, format!("prod:\n{config}")).unwrap();
    common::Registry::start(&[
        ("DOCKER_REGISTRY_CONFIG", file.to_str().unwrap()),
        ("SETTINGS_FLAVOR", "prod"),
    ])
}

/// A central index that knows one good token, for `ns/app`, whose
/// repository holds the image `BASE`. Answers until the test ends.
fn stand_in_central_index() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut request = String::new();
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                request.push_str(&line);
                line.clear();
            }
            let good = request.starts_with("GET /v1/repositories/ns/app/images ")
                && request.contains("signature=GOOD");
            let (status, body) = if good {
                ("200 OK", format!(r#"[{{"id": "{BASE}"}}]"#))
            } else {
                ("401 Unauthorized", r#"{"error": "nope"}"#.to_owned())
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

fn token(repository: &str, access: &str, signature: &str) -> String {
    format!(r#"Token signature={signature},repository="{repository}",access={access}"#)
}

fn error_of(resp: Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let body: Value = resp.json().unwrap();
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
    )
}

#[test]
fn tokens_are_checked_with_the_central_index() {
    let dir = tempfile::tempdir().unwrap();
    let index = stand_in_central_index();
    let registry = start_with(
        dir.path(),
        &format!(
            "    storage: local\n    storage_path: {}\n    standalone: false\n    index_endpoint: http://127.0.0.1:{index}/\n",
            dir.path().join("data").display()
        ),
    );
    let http = common::client();
    let json = std::fs::read(common::fixtures().join(BASE).join("json")).unwrap();

    // No token.
    let resp = http
        .get(registry.url("/v1/repositories/ns/app/tags"))
        .send()
        .unwrap();
    assert_eq!(resp.headers()["www-authenticate"], "Token");
    assert_eq!(error_of(resp), (401, "Requires authorization".into()));

    let put_json = |auth: &str, id: &str| {
        http.put(registry.url(&format!("/v1/images/{id}/json")))
            .header("Authorization", auth)
            .body(json.clone())
            .send()
            .unwrap()
    };
    // A good write token for the image the index listed.
    let resp = put_json(&token("ns/app", "write", "GOOD"), BASE);
    assert_eq!(resp.status(), 200);
    // An image the index did not list for the repository.
    assert_eq!(
        error_of(put_json(&token("ns/app", "write", "GOOD"), CHILD)),
        (400, "This image does not belong to the repository".into())
    );
    // A token the index does not know, a read token for a write, a token
    // for another repository.
    assert_eq!(
        put_json(&token("ns/app", "write", "BAD"), BASE).status(),
        401
    );
    assert_eq!(
        put_json(&token("ns/app", "read", "GOOD"), BASE).status(),
        401
    );
    let other = http
        .get(registry.url("/v1/repositories/ns/other/tags"))
        .header("Authorization", token("ns/app", "read", "GOOD"))
        .send()
        .unwrap();
    assert_eq!(other.status(), 401);
    let read = http
        .get(registry.url("/v1/repositories/ns/app/tags"))
        .header("Authorization", token("ns/app", "read", "GOOD"))
        .send()
        .unwrap();
    // The repository folder exists now: it keeps the index's image list.
    assert_eq!(read.status(), 200);
    assert_eq!(read.json::<Value>().unwrap(), serde_json::json!({}));

    // Not standalone: the stand-in index routes are not served.
    assert_eq!(
        http.get(registry.url("/v1/users")).send().unwrap().status(),
        404
    );
    let ping = http.get(registry.url("/v1/_ping")).send().unwrap();
    assert_eq!(ping.headers()["x-docker-registry-standalone"], "False");
}

#[test]
fn privileged_signatures_are_authorised() {
    let dir = tempfile::tempdir().unwrap();
    let key = RsaPrivateKey::new(&mut rand::thread_rng(), 1024).unwrap();
    let pem = key
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let key_file = dir.path().join("privileged.pem");
    std::fs::write(&key_file, pem).unwrap();
    let registry = start_with(
        dir.path(),
        &format!(
            "    storage: local\n    storage_path: {}\n    standalone: false\n    index_endpoint: http://127.0.0.1:9/\n    privileged_key: {}\n",
            dir.path().join("data").display(),
            key_file.display()
        ),
    );
    let signer = SigningKey::<Sha1>::new(key);
    let sign = |message: &str| {
        let raw = signer.sign(message.as_bytes()).to_vec();
        format!(
            "data={};v=1",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    };
    let http = common::client();
    let signed = http
        .get(registry.url("/v1/repositories/ns/app/tags"))
        .header("X-Docker-Token", "true")
        .header(
            "X-Signature",
            sign("GET,/v1/repositories/ns/app/tags,X-Docker-Token:true"),
        )
        .send()
        .unwrap();
    assert_eq!(error_of(signed), (404, "Repository not found".into()));
    let forged = http
        .get(registry.url("/v1/repositories/ns/app/tags"))
        .header("X-Signature", sign("GET,/v1/repositories/ns/other/tags"))
        .send()
        .unwrap();
    assert_eq!(forged.status(), 401);
}

#[test]
fn nginx_serves_layers_when_asked_to() {
    let dir = tempfile::tempdir().unwrap();
    let registry = start_with(
        dir.path(),
        &format!(
            "    standalone: true\n    storage: local\n    storage_path: {}\n    nginx_x_accel_redirect: /registry-files\n",
            dir.path().join("data").display()
        ),
    );
    let http = common::client();
    let image = common::fixtures().join(BASE);
    let json = std::fs::read(image.join("json")).unwrap();
    let layer = std::fs::read(image.join("layer.tar")).unwrap();
    let url = |what: &str| registry.url(&format!("/v1/images/{BASE}/{what}"));
    assert_eq!(
        http.put(url("json"))
            .body(json.clone())
            .send()
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.put(url("layer"))
            .body(layer.clone())
            .send()
            .unwrap()
            .status(),
        200
    );
    let checksum = common::v1_checksum(&json, &layer);
    let resp = http
        .put(url("checksum"))
        .header("X-Docker-Checksum-Payload", checksum)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);

    let resp = http.get(url("layer")).send().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["x-accel-redirect"],
        format!("/registry-files/images/{BASE}/layer").as_str()
    );
    assert!(resp.bytes().unwrap().is_empty());
}

#[test]
fn cors_is_answered_as_configured() {
    let dir = tempfile::tempdir().unwrap();
    let registry = start_with(
        dir.path(),
        &format!(
            "    standalone: true\n    storage: local\n    storage_path: {}\n    cors:\n        origins: ['https://ui.example']\n        methods: [GET, PUT]\n        headers: [Content-Type, X-Docker-Token]\n        max_age: 600\n        supports_credentials: true\n",
            dir.path().join("data").display()
        ),
    );
    let http = common::client();
    let preflight = http
        .request(reqwest::Method::OPTIONS, registry.url("/v1/search"))
        .header("Origin", "https://ui.example")
        .header("Access-Control-Request-Method", "GET")
        .send()
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let h = preflight.headers();
    assert_eq!(h["access-control-allow-origin"], "https://ui.example");
    assert_eq!(h["access-control-max-age"], "600");
    assert_eq!(h["access-control-allow-credentials"], "true");
    let methods = h["access-control-allow-methods"].to_str().unwrap();
    assert!(
        methods.contains("GET") && methods.contains("PUT"),
        "{methods}"
    );

    let plain = http
        .get(registry.url("/v1/_ping"))
        .header("Origin", "https://ui.example")
        .send()
        .unwrap();
    assert_eq!(
        plain.headers()["access-control-allow-origin"],
        "https://ui.example"
    );
    let stranger = http
        .request(reqwest::Method::OPTIONS, registry.url("/v1/search"))
        .header("Origin", "https://evil.example")
        .header("Access-Control-Request-Method", "GET")
        .send()
        .unwrap();
    assert!(!stranger
        .headers()
        .contains_key("access-control-allow-origin"));
}

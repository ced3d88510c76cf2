//! https through the real binary (issue 12): a CA of the test's own, both
//! APIs over HTTP/1.1 and HTTP/2, skopeo, podman and the docker engine
//! with logins over it, client certificates, startup errors that name the
//! file, and a certificate replaced under load with SIGHUP.

mod common;
mod login_support;
mod v2_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use serde_json::Value;

use login_support::*;
use v2_support::*;

/// A certificate authority of the test's own.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A certificate for loopback, signed by this CA: (certificate, key).
    fn server(&self, params: impl FnOnce(&mut CertificateParams)) -> (String, String) {
        let mut p =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "registry-v1 test");
        params(&mut p);
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A client certificate signed by this CA, as one PEM (cert + key).
    fn client(&self) -> String {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "a client");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        format!("{}{}", cert.pem(), key.serialize_pem())
    }
}

/// The files of one https setup in a folder of its own.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new(cert: &str, key: &str) -> Files {
        let dir = tempfile::tempdir().unwrap();
        let files = Files { dir };
        files.replace(cert, key);
        files
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("server.crt")
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }

    /// Writes both files whole (a rename each), as a certificate tool does.
    fn replace(&self, cert: &str, key: &str) {
        for (path, text) in [(self.cert(), cert), (self.key(), key)] {
            let tmp = path.with_extension("new");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, &path).unwrap();
        }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("TLS_CERTIFICATE", self.cert().display().to_string()),
            ("TLS_KEY", self.key().display().to_string()),
        ]
    }
}

fn start(backend: &Backend, files: &Files, extra: &[(&str, &str)]) -> common::Registry {
    let env = files.env();
    let mut all: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    all.extend_from_slice(extra);
    backend.start(&all)
}

/// A client that trusts `roots` (PEM) only.
fn https_client(roots: &[&str], identity: Option<&str>) -> reqwest::blocking::Client {
    let mut builder = reqwest::blocking::Client::builder()
        .tls_built_in_root_certs(false)
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none());
    for pem in roots {
        builder =
            builder.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap());
    }
    if let Some(pem) = identity {
        builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    builder.build().unwrap()
}

fn https(registry: &common::Registry, path: &str) -> String {
    format!("https://127.0.0.1:{}{path}", registry.port)
}

/// `curl` over https: the HTTP version it spoke and the status.
fn curl_version(url: &str, ca: &Path, flag: &str) -> (String, String) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
        ])
        .args([flag, "--cacert", ca.to_str().unwrap(), url])
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (version, status) = text.split_once(' ').unwrap();
    (version.to_owned(), status.to_owned())
}

#[test]
fn both_apis_answer_over_http1_and_http2_and_plain_http_is_refused() {
    let ca = Ca::new("test CA");
    let (cert, key) = ca.server(|_| {});
    let files = Files::new(&cert, &key);
    let ca_file = files.dir.path().join("ca.crt");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let registry = start(&Backend::local(), &files, &[]);

    for flag in ["--http1.1", "--http2"] {
        let expected = if flag == "--http2" { "2" } else { "1.1" };
        for path in ["/v2/", "/v1/_ping", "/healthz", "/readyz"] {
            let (version, status) = curl_version(&https(&registry, path), &ca_file, flag);
            assert_eq!(
                (version.as_str(), status.as_str()),
                (expected, "200"),
                "{flag} {path}"
            );
        }
    }

    // A blob pushed and pulled back whole, and a v1 search, over https.
    let http = https_client(&[&ca.pem()], None);
    let blob = unique_bytes("tls", 3 << 20);
    let digest = sha256(&blob);
    let resp = http
        .post(https(
            &registry,
            &format!("/v2/team/app/blobs/uploads/?digest={digest}"),
        ))
        .body(blob.clone())
        .send()
        .unwrap();
    assert_eq!(resp.status(), 201);
    let resp = http
        .get(https(&registry, &format!("/v2/team/app/blobs/{digest}")))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().unwrap(), blob);
    let resp = http
        .get(https(&registry, "/v1/search?q=app"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);

    // Plain http to the https port gets no http answer.
    let plain = common::client().get(registry.url("/v2/")).send();
    assert!(plain.is_err(), "plain http answered: {plain:?}");
    // A client that does not trust the CA refuses the certificate.
    let stranger = https_client(&[&Ca::new("other CA").pem()], None);
    assert!(stranger.get(https(&registry, "/v2/")).send().is_err());
    // The container's probe finds the registry over https.
    let out = common::run(
        &["healthcheck"],
        &[
            ("REGISTRY_HOST", "127.0.0.1"),
            ("REGISTRY_PORT", &registry.port.to_string()),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("https://127.0.0.1"));
}

/// Runs `serve` with the files and expects it to refuse to start with a
/// message naming `names`.
fn refused_start(env: &[(&str, String)], names: &Path, says: &str) {
    let storage = tempfile::tempdir().unwrap();
    let port = common::free_port().to_string();
    let mut all: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    all.extend_from_slice(&[
        ("REGISTRY_HOST", "127.0.0.1"),
        ("REGISTRY_PORT", &port),
        ("STORAGE_PATH", storage.path().to_str().unwrap()),
        ("SEARCH_BACKEND", ""),
    ]);
    let mut child = common::command()
        .envs(all.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("started although {says}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains(&names.display().to_string()) && stderr.contains(says),
        "the error names {} and says {says:?}: {stderr}",
        names.display()
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn broken_certificates_and_keys_stop_the_start_naming_the_file() {
    let ca = Ca::new("test CA");
    let (cert, key) = ca.server(|_| {});
    let (_, other_key) = ca.server(|_| {});

    // Not PEM at all; a key where the certificate should be.
    let files = Files::new("not a certificate\n", &key);
    refused_start(&files.env(), &files.cert(), "no PEM CERTIFICATE block");
    let files = Files::new(&key, &key);
    refused_start(&files.env(), &files.cert(), "no PEM CERTIFICATE block");
    // No key in the key file.
    let files = Files::new(&cert, &cert);
    refused_start(&files.env(), &files.key(), "no private key");
    // The key of another certificate.
    let files = Files::new(&cert, &other_key);
    refused_start(&files.env(), &files.key(), "does not match");
    // Expired, and not valid yet.
    let (expired, expired_key) = ca.server(|p| {
        p.not_before = rcgen::date_time_ymd(2019, 1, 1);
        p.not_after = rcgen::date_time_ymd(2020, 1, 1);
    });
    let files = Files::new(&expired, &expired_key);
    refused_start(&files.env(), &files.cert(), "expired on");
    let (future, future_key) = ca.server(|p| {
        p.not_before = rcgen::date_time_ymd(2999, 1, 1);
        p.not_after = rcgen::date_time_ymd(3000, 1, 1);
    });
    let files = Files::new(&future, &future_key);
    refused_start(&files.env(), &files.cert(), "not valid before");
    // A file that is not there: the config names the setting and the file.
    let files = Files::new(&cert, &key);
    let mut env = files.env();
    let missing = files.dir.path().join("missing.key");
    env[1].1 = missing.display().to_string();
    refused_start(&env, &missing, "tls_key");
    // Half a setup.
    let env = vec![("TLS_CERTIFICATE", files.cert().display().to_string())];
    refused_start(&env, Path::new("tls_key"), "must be set too");
}

#[test]
fn client_certificates_are_checked_against_the_client_ca() {
    let ca = Ca::new("server CA");
    let clients = Ca::new("client CA");
    let (cert, key) = ca.server(|_| {});
    let files = Files::new(&cert, &key);
    let client_ca = files.dir.path().join("clients.crt");
    std::fs::write(&client_ca, clients.pem()).unwrap();
    let registry = start(
        &Backend::local(),
        &files,
        &[("TLS_CLIENT_CA", client_ca.to_str().unwrap())],
    );
    let url = https(&registry, "/v2/");
    let anonymous = https_client(&[&ca.pem()], None).get(&url).send();
    assert!(
        anonymous.is_err(),
        "no client certificate, answered: {anonymous:?}"
    );
    let stranger = Ca::new("another CA").client();
    let refused = https_client(&[&ca.pem()], Some(&stranger)).get(&url).send();
    assert!(
        refused.is_err(),
        "a certificate of another CA, answered: {refused:?}"
    );
    let known = https_client(&[&ca.pem()], Some(&clients.client()));
    assert_eq!(known.get(&url).send().unwrap().status(), 200);
}

/// The subject's common name of the certificate a new connection gets.
fn served_certificate(port: u16) -> String {
    let out = Command::new("sh")
        .args([
            "-c",
            &format!(
                "openssl s_client -connect 127.0.0.1:{port} -servername localhost </dev/null 2>/dev/null \
                 | openssl x509 -noout -issuer"
            ),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn sighup_swaps_the_certificate_under_load_and_no_request_fails() {
    let old_ca = Ca::new("old CA");
    let new_ca = Ca::new("new CA");
    let (cert, key) = old_ca.server(|_| {});
    let files = Files::new(&cert, &key);
    let registry = start(&Backend::local(), &files, &[]);
    let port = registry.port;
    assert!(served_certificate(port).contains("old CA"));

    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let both = [old_ca.pem(), new_ca.pem()];
    std::thread::scope(|threads| {
        for n in 0..4 {
            let (stop, done, both) = (&stop, &done, &both);
            let registry = &registry;
            threads.spawn(move || {
                // Two threads keep their connection, two make a new one
                // for each request.
                let mut client = https_client(&[&both[0], &both[1]], None);
                while !stop.load(Ordering::Relaxed) {
                    if n % 2 == 1 {
                        client = https_client(&[&both[0], &both[1]], None);
                    }
                    let resp = client.get(https(registry, "/v2/")).send();
                    let status = resp.map(|r| r.status().as_u16());
                    assert!(matches!(status, Ok(200)), "a request failed: {status:?}");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        std::thread::sleep(Duration::from_millis(500));
        // A broken file first: kept as it was, and said so.
        std::fs::write(files.cert(), "garbage").unwrap();
        sighup(registry.pid());
        std::thread::sleep(Duration::from_millis(300));
        assert!(served_certificate(port).contains("old CA"));
        let (cert, key) = new_ca.server(|_| {});
        files.replace(&cert, &key);
        sighup(registry.pid());
        let deadline = Instant::now() + Duration::from_secs(10);
        while !served_certificate(port).contains("new CA") {
            assert!(
                Instant::now() < deadline,
                "SIGHUP did not swap the certificate"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
    });
    assert!(done.load(Ordering::Relaxed) > 20, "too few requests made");
    let only_new = https_client(&[&new_ca.pem()], None);
    assert_eq!(
        only_new
            .get(https(&registry, "/v2/"))
            .send()
            .unwrap()
            .status(),
        200
    );
    let log = registry.log();
    assert!(log.contains("TLS files kept as they were"), "{log}");
    assert!(log.contains("TLS certificate reloaded"), "{log}");
}

fn sighup(pid: u32) {
    let status = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

const ALICE: &str = "alice";
const ALICE_PW: &str = "tls pass:7";

/// skopeo, podman and the docker engine log in, push and pull over https
/// with the test's CA; a wrong password is refused.
#[test]
fn clients_push_and_pull_over_https_with_logins() {
    let ca = Ca::new("test CA");
    let (cert, key) = ca.server(|_| {});
    let files = Files::new(&cert, &key);
    let htpasswd = files.dir.path().join("htpasswd");
    std::fs::write(
        &htpasswd,
        format!("{ALICE}:{}\n", bcrypt::hash(ALICE_PW, 4).unwrap()),
    )
    .unwrap();
    let registry = start(
        &Backend::local(),
        &files,
        &[("AUTH_HTPASSWD", htpasswd.to_str().unwrap())],
    );
    let host = format!("127.0.0.1:{}", registry.port);
    let creds = format!("{ALICE}:{ALICE_PW}");
    // skopeo and podman read `ca.crt` from a certificate folder.
    let certs = tempfile::tempdir().unwrap();
    std::fs::write(certs.path().join("ca.crt"), ca.pem()).unwrap();
    let cert_dir = certs.path().to_str().unwrap();
    let work = tempfile::tempdir().unwrap();

    if tool_available("skopeo", INSTALL_CLIENTS) {
        let layout = Layout::write(&work.path().join("src"), "skopeo tls");
        let dest = format!("docker://{host}/team/skopeo:v1");
        let wrong = format!("{ALICE}:nope");
        let refused = try_run(
            "skopeo",
            &[
                "copy",
                "--dest-cert-dir",
                cert_dir,
                "--dest-creds",
                &wrong,
                &layout.reference(),
                &dest,
            ],
        );
        expect_refused(refused, "skopeo with a wrong password");
        // Without the CA: the certificate is refused.
        let untrusted = try_run(
            "skopeo",
            &["copy", "--dest-creds", &creds, &layout.reference(), &dest],
        );
        expect_refused(untrusted, "skopeo without the CA");
        run(
            "skopeo",
            &[
                "copy",
                "--dest-cert-dir",
                cert_dir,
                "--dest-creds",
                &creds,
                &layout.reference(),
                &dest,
            ],
        );
        let out = work.path().join("pulled");
        run(
            "skopeo",
            &[
                "copy",
                "--src-cert-dir",
                cert_dir,
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
        std::fs::write(&tar, rootfs_tar("podman tls")).unwrap();
        podman.run(&["import", tar.to_str().unwrap(), "localhost/imported:v1"]);
        let image = format!("{host}/team/podman:v1");
        let wrong = podman.try_run(&[
            "login",
            "--cert-dir",
            cert_dir,
            "-u",
            ALICE,
            "-p",
            "nope",
            &host,
        ]);
        expect_refused(wrong, "podman login with a wrong password");
        podman.run(&[
            "login",
            "--cert-dir",
            cert_dir,
            "-u",
            ALICE,
            "-p",
            ALICE_PW,
            &host,
        ]);
        podman.run(&[
            "push",
            "--cert-dir",
            cert_dir,
            "localhost/imported:v1",
            &image,
        ]);
        podman.run(&["rmi", "-f", "localhost/imported:v1", &image]);
        podman.run(&["pull", "--cert-dir", cert_dir, &image]);
    }

    if docker_engine_answers("clients_push_and_pull_over_https_with_logins (docker)") {
        // The engine reads the CA of a registry from this folder.
        let certs_d = PathBuf::from(format!("/etc/docker/certs.d/{host}"));
        if std::fs::create_dir_all(&certs_d).is_err() {
            eprintln!("SKIPPED: cannot write {} (docker part)", certs_d.display());
            return;
        }
        struct Remove(PathBuf);
        impl Drop for Remove {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
        let _remove = Remove(certs_d.clone());
        std::fs::write(certs_d.join("ca.crt"), ca.pem()).unwrap();
        let mut docker = Docker::new();
        let out = docker.login(&host, ALICE, "nope");
        assert!(!out.status.success(), "docker login with a wrong password");
        let out = docker.login(&host, ALICE, ALICE_PW);
        assert!(
            out.status.success(),
            "docker login: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let tar = work.path().join("docker-rootfs.tar");
        std::fs::write(&tar, rootfs_tar("docker tls")).unwrap();
        let image = format!("{host}/team/docker:v1");
        docker.images.push(image.clone());
        docker.run(&["import", tar.to_str().unwrap(), &image]);
        docker.run(&["push", &image]);
        docker.run(&["rmi", "-f", &image]);
        docker.run(&["pull", &image]);
        let inspect: Value =
            serde_json::from_slice(&docker.run(&["image", "inspect", &image]).stdout).unwrap();
        assert_eq!(inspect[0]["RepoTags"][0], image.as_str());
    }
}

//! `email_exceptions`: server errors mailed to a real SMTP server (aiosmtpd,
//! installed by .ci/install-smtp.sh) on loopback, at most one mail per
//! `min_interval`, without holding up a request, and without the request's
//! secrets.

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An aiosmtpd server writing each message it accepts into a maildir.
struct SmtpServer {
    port: u16,
    maildir: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const CHECK: &str = "import aiosmtpd.handlers, aiosmtpd.smtp";

fn python() -> Option<String> {
    let candidates = [
        std::env::var("SMTP_TEST_PYTHON").ok(),
        Some("/opt/registry-v1-smtp-test/bin/python3".to_owned()),
        Some("python3".to_owned()),
    ];
    candidates.into_iter().flatten().find(|python| {
        Command::new(python)
            .args(["-c", CHECK])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// The Python that runs aiosmtpd, or `None` (said on stderr) when it is
/// not installed; under CI a missing server fails the test instead.
fn python_or_skip() -> Option<String> {
    let found = python();
    if found.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!("the mail tests need aiosmtpd under CI (run .ci/install-smtp.sh)");
        }
        let _ = writeln!(
            std::io::stderr(),
            "\nSKIPPING the mail tests: aiosmtpd is not installed (.ci/install-smtp.sh)\n"
        );
    }
    found
}

impl SmtpServer {
    /// Plain SMTP, no login; `None` as [`python_or_skip`].
    fn start() -> Option<SmtpServer> {
        let python = python_or_skip()?;
        let dir = tempfile::tempdir().unwrap();
        let maildir = dir.path().join("maildir");
        let port = common::free_port();
        let child = Command::new(python)
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("smtpd.log")).unwrap())
            .spawn()
            .expect("start aiosmtpd");
        Some(SmtpServer::listening(port, maildir, child, dir))
    }

    /// STARTTLS required with `cert` and `key` (PEM files), and a login;
    /// `None` as [`python_or_skip`].
    fn start_tls(cert: &Path, key: &Path, login: &str, password: &str) -> Option<SmtpServer> {
        let python = python_or_skip()?;
        let dir = tempfile::tempdir().unwrap();
        let maildir = dir.path().join("maildir");
        let port = common::free_port();
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/email_support/smtpd_tls_auth.py"
        );
        let child = Command::new(python)
            .arg(script)
            .arg(port.to_string())
            .arg(&maildir)
            .arg(cert)
            .arg(key)
            .args([login, password])
            // Held open: the server stops when it closes.
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("smtpd.log")).unwrap())
            .spawn()
            .expect("start aiosmtpd");
        Some(SmtpServer::listening(port, maildir, child, dir))
    }

    fn listening(port: u16, maildir: PathBuf, child: Child, dir: tempfile::TempDir) -> SmtpServer {
        let server = SmtpServer {
            port,
            maildir,
            child,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "aiosmtpd did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// The messages received so far, oldest first, as [`readable`].
    fn messages(&self) -> Vec<String> {
        let mut files: Vec<(std::time::SystemTime, String)> =
            std::fs::read_dir(self.maildir.join("new"))
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| {
                    let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                    let modified = e.metadata().and_then(|m| m.modified()).unwrap();
                    (modified, readable(&text))
                })
                .collect();
        files.sort();
        files.into_iter().map(|(_, text)| text).collect()
    }

    /// Waits up to `within` for at least `n` messages.
    fn wait_for(&self, n: usize, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        loop {
            let messages = self.messages();
            if messages.len() >= n || Instant::now() > deadline {
                return messages;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A message with its folded header lines unfolded and its body decoded
/// (quoted-printable, as lettre sends long lines).
fn readable(message: &str) -> String {
    let message = message.replace("\r\n", "\n");
    let (head, body) = message.split_once("\n\n").unwrap_or((&message, ""));
    let head = head.replace("\n ", " ").replace("\n\t", " ");
    if !head.contains("Content-Transfer-Encoding: quoted-printable") {
        return format!("{head}\n\n{body}");
    }
    let body = body.replace("=\n", "");
    let mut bytes = Vec::new();
    let mut rest = body.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        match (
            first,
            tail.get(..2).and_then(|h| std::str::from_utf8(h).ok()),
        ) {
            (b'=', Some(hex)) if u8::from_str_radix(hex, 16).is_ok() => {
                bytes.push(u8::from_str_radix(hex, 16).unwrap());
                rest = &tail[2..];
            }
            _ => {
                bytes.push(first);
                rest = tail;
            }
        }
    }
    format!("{head}\n\n{}", String::from_utf8_lossy(&bytes))
}

/// A registry on local storage at `storage` mailing through `port`.
fn registry(storage: &Path, port: u16, min_interval: u64) -> (common::Registry, tempfile::TempDir) {
    registry_with(storage, port, &format!("min_interval: {min_interval}"))
}

/// The same, with more `email_exceptions` settings (`key: value` lines).
fn registry_with(storage: &Path, port: u16, email: &str) -> (common::Registry, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yml");
    let email: String = email
        .lines()
        .map(|line| format!("        {line}\n"))
        .collect();
    std::fs::write(
        &config,
        format!(
            "prod:\n    standalone: true\n    loglevel: debug\n    storage: local\n    \
             storage_path: {}\n    email_exceptions:\n        smtp_host: 127.0.0.1\n        \
             smtp_port: {port}\n        from_addr: registry@example.com\n        to_addr: \
             ops@example.com\n{email}",
            storage.display()
        ),
    )
    .unwrap();
    let registry = common::Registry::start(&[
        ("DOCKER_REGISTRY_CONFIG", config.to_str().unwrap()),
        ("SETTINGS_FLAVOR", "prod"),
    ]);
    (registry, dir)
}

/// An image whose json storage cannot read (a link to itself, which
/// even root cannot open): its `GET /v1/images/<id>/json` answers 500.
fn broken_image(storage: &Path, n: usize) -> String {
    let id = format!("{n:064x}");
    let folder = storage.join("images").join(&id);
    std::fs::create_dir_all(&folder).unwrap();
    std::os::unix::fs::symlink("json", folder.join("json")).unwrap();
    id
}

fn get_broken(registry: &common::Registry, id: &str) -> reqwest::blocking::Response {
    common::client()
        .get(registry.url(&format!("/v1/images/{id}/json?token=query-secret")))
        .header("Authorization", "Token signature=header-secret,access=read")
        .send()
        .unwrap()
}

#[test]
fn server_errors_are_mailed_at_most_once_per_interval() {
    let Some(smtp) = SmtpServer::start() else {
        return;
    };
    let storage = tempfile::tempdir().unwrap();
    let (registry, _config) = registry(storage.path(), smtp.port, 3);

    // A client error is not mailed; a server error is, at once.
    let missing = format!("{:064x}", 999);
    let resp = common::client()
        .get(registry.url(&format!("/v1/images/{missing}/json")))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 404);
    let first = broken_image(storage.path(), 1);
    let started = Instant::now();
    assert_eq!(get_broken(&registry, &first).status(), 500);
    let mails = smtp.wait_for(1, Duration::from_secs(10));
    assert_eq!(mails.len(), 1, "{}", registry.log());
    let took = started.elapsed();
    let mail = &mails[0];
    for needle in [
        "From: registry@example.com",
        "To: ops@example.com",
        "Subject: Docker registry exception: 500 GET",
        &format!("Z 500 GET /v1/images/{first}/json HTTP/1.1\n    storage I/O error on images/{first}/json"),
        "1 server error(s) (5xx answers) since the last mail",
    ] {
        assert!(mail.contains(needle), "{needle:?} not in:\n{mail}");
    }
    for secret in ["query-secret", "header-secret", "token="] {
        assert!(!mail.contains(secret), "{secret} in:\n{mail}");
    }
    assert!(!mail.contains(&missing), "{mail}");

    // A storm within the interval: one more mail, after the interval,
    // counting every error, listing the first 50.
    let storm_started = Instant::now();
    for n in 0..60 {
        let id = broken_image(storage.path(), 100 + n);
        assert_eq!(get_broken(&registry, &id).status(), 500);
    }
    let storm = storm_started.elapsed();
    let mails = smtp.wait_for(2, Duration::from_secs(15));
    assert_eq!(mails.len(), 2, "{}", registry.log());
    let second = &mails[1];
    assert!(
        second.contains("Subject: Docker registry exception: 60 server errors"),
        "{second}"
    );
    assert!(second.contains("60 server error(s)"), "{second}");
    assert!(
        second.contains("...and 10 more not listed here."),
        "{second}"
    );
    assert_eq!(second.matches(" 500 GET /v1/images/").count(), 50);
    // Nothing more comes: the storm is over.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(smtp.messages().len(), 2);
    let log = registry.log();
    assert!(
        log.contains("server errors are mailed to ops@example.com"),
        "{log}"
    );
    eprintln!(
        "first mail {} ms after its error; 60 failing requests in {} ms",
        took.as_millis(),
        storm.as_millis()
    );
}

/// An SMTP server that accepts connections and never says a word: the
/// mailer waits on it, requests must not.
#[test]
fn a_silent_mail_server_holds_up_no_request() {
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let storage = tempfile::tempdir().unwrap();
    let (registry, _config) = registry(storage.path(), port, 1);
    let started = Instant::now();
    for n in 0..400 {
        let id = broken_image(storage.path(), n);
        assert_eq!(get_broken(&registry, &id).status(), 500);
    }
    let took = started.elapsed();
    // 400 errors, more than the queue holds, each answered at once.
    assert!(took < Duration::from_secs(20), "{took:?}");
    eprintln!(
        "400 failing requests, mail server silent: {} ms",
        took.as_millis()
    );
    assert_eq!(
        common::client()
            .get(registry.url("/_ping"))
            .send()
            .unwrap()
            .status(),
        200
    );
    drop(silent);
}

/// `smtp_secure` (STARTTLS, the server's certificate checked against
/// `smtp_ca`) with a login: the mail arrives; a wrong password is a log
/// line, and no password is in the log, whatever the level.
#[test]
fn starttls_with_a_login() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let files = tempfile::tempdir().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&server_key, &ca, &ca_key)
        .unwrap();
    let write = |name: &str, text: String| {
        let path = files.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let ca_file = write("ca.pem", ca.pem());
    let cert_file = write("server.pem", server.pem());
    let key_file = write("server.key", server_key.serialize_pem());
    let Some(smtp) = SmtpServer::start_tls(&cert_file, &key_file, "registry", "s3cret-pw") else {
        return;
    };
    let storage = tempfile::tempdir().unwrap();
    let settings = |password: &str| {
        format!(
            "smtp_secure: true\nsmtp_ca: {}\nsmtp_login: registry\nsmtp_password: {password}\n\
             min_interval: 1",
            ca_file.display()
        )
    };
    let (registry, _config) = registry_with(storage.path(), smtp.port, &settings("s3cret-pw"));
    let id = broken_image(storage.path(), 1);
    assert_eq!(get_broken(&registry, &id).status(), 500);
    let mails = smtp.wait_for(1, Duration::from_secs(10));
    assert_eq!(mails.len(), 1, "{}", registry.log());
    assert!(mails[0].contains(&format!("500 GET /v1/images/{id}/json")));
    // The mailer logs once the server has said goodbye.
    wait_for_log(&registry, "mailed 1 server error(s)");
    let log = registry.log();
    assert!(log.contains("(STARTTLS)"), "{log}");
    assert!(!log.contains("s3cret-pw"), "{log}");
    drop(registry);

    let (registry, _config) = registry_with(storage.path(), smtp.port, &settings("wrong-pw"));
    assert_eq!(get_broken(&registry, &id).status(), 500);
    wait_for_log(&registry, "cannot mail 1 server error(s)");
    let log = registry.log();
    assert!(
        log.contains("(535): 5.7.8 Authentication credentials invalid"),
        "{log}"
    );
    assert!(!log.contains("wrong-pw"), "{log}");
    assert_eq!(smtp.messages().len(), 1);
}

fn wait_for_log(registry: &common::Registry, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !registry.log().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "{needle:?} not in:\n{}",
            registry.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

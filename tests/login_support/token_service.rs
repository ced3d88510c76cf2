//! A token service of the tests' own (docker's token flow): a few lines
//! of HTTP on a loopback port that checks alice's password and signs JWTs
//! with key pairs openssl makes here; the keys, the bundle the registry
//! trusts, and a registry started to use them ([`World`]).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use super::{expect_ok, libtrust_kid, try_run, INSTALL_AUTH};
use crate::common;
use crate::v2_support::*;

pub const SERVICE: &str = "registry.test";
pub const ISSUER: &str = "token-service.test";
pub const USER: &str = "alice";
pub const PASSWORD: &str = "token pw";
/// The refresh token alice's logins get.
pub const REFRESH: &str = "refresh-alice-0123";

/// A key pair made with openssl: its private key (PEM) and certificate.
pub struct KeyPair {
    pub alg: Algorithm,
    pub private_pem: Vec<u8>,
    pub cert: PathBuf,
    /// The public key as a `PUBLIC KEY` block.
    pub public_pem: String,
    /// libtrust's id of the key, as docker_auth puts it in `kid`.
    pub kid: String,
    /// The certificate, as an `x5c` header carries it.
    pub x5c: String,
}

pub fn openssl(args: &[&str]) -> std::process::Output {
    expect_ok(
        try_run("openssl", args),
        &format!("openssl {}", args.join(" ")),
    )
}

impl KeyPair {
    pub fn make(dir: &Path, name: &str, alg: Algorithm) -> KeyPair {
        let key = dir.join(format!("{name}.key"));
        let cert = dir.join(format!("{name}.crt"));
        let mut args = vec!["req", "-x509", "-nodes", "-days", "2"];
        args.extend(match alg {
            Algorithm::RS256 => &["-newkey", "rsa:2048"][..],
            Algorithm::ES256 => &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"][..],
            Algorithm::EdDSA => &["-newkey", "ed25519"][..],
            other => panic!("no key for {other:?}"),
        });
        let subject = format!("/CN={name}");
        let (k, c) = (key.to_str().unwrap(), cert.to_str().unwrap());
        args.extend(["-subj", &subject, "-keyout", k, "-out", c]);
        openssl(&args);
        let public_pem = String::from_utf8(openssl(&["pkey", "-in", k, "-pubout"]).stdout).unwrap();
        let der = openssl(&["pkey", "-in", k, "-pubout", "-outform", "DER"]).stdout;
        let kid = libtrust_kid(&der);
        let cert_der = openssl(&["x509", "-in", c, "-outform", "DER"]).stdout;
        KeyPair {
            x5c: base64::engine::general_purpose::STANDARD.encode(cert_der),
            alg,
            private_pem: std::fs::read(&key).unwrap(),
            cert,
            public_pem,
            kid,
        }
    }

    /// An RSA key pair whose certificate `ca` issued (a v3 end-entity
    /// certificate, as token services are given).
    pub fn issued(dir: &Path, name: &str, ca: &KeyPair) -> KeyPair {
        let key = dir.join(format!("{name}.key"));
        let csr = dir.join(format!("{name}.csr"));
        let cert = dir.join(format!("{name}.crt"));
        let ext = dir.join(format!("{name}.ext"));
        let ca_key = dir.join(format!("{name}-ca.key"));
        std::fs::write(&ca_key, &ca.private_pem).unwrap();
        std::fs::write(
            &ext,
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n",
        )
        .unwrap();
        let p = |p: &PathBuf| p.to_str().unwrap().to_owned();
        let subject = format!("/CN={name}");
        openssl(&[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &subject,
            "-keyout",
            &p(&key),
            "-out",
            &p(&csr),
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            &p(&csr),
            "-CA",
            ca.cert.to_str().unwrap(),
            "-CAkey",
            &p(&ca_key),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &p(&ext),
            "-out",
            &p(&cert),
        ]);
        let cert_der = openssl(&["x509", "-in", &p(&cert), "-outform", "DER"]).stdout;
        KeyPair {
            alg: Algorithm::RS256,
            private_pem: std::fs::read(&key).unwrap(),
            cert,
            public_pem: String::new(),
            kid: String::new(),
            x5c: base64::engine::general_purpose::STANDARD.encode(cert_der),
        }
    }

    pub fn encoding_key(&self) -> EncodingKey {
        match self.alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&self.private_pem),
            Algorithm::ES256 => EncodingKey::from_ec_pem(&self.private_pem),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(&self.private_pem),
            _ => unreachable!(),
        }
        .unwrap()
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// What a token says, changed field by field by the tests.
#[derive(Clone)]
pub struct Claims {
    pub issuer: String,
    pub audience: String,
    pub not_before: u64,
    pub expires: u64,
    pub access: Value,
}

impl Claims {
    pub fn granting(access: Value) -> Claims {
        Claims {
            issuer: ISSUER.into(),
            audience: SERVICE.into(),
            not_before: now() - 5,
            expires: now() + 300,
            access,
        }
    }
}

pub fn mint(key: &KeyPair, kid: Option<&str>, claims: &Claims) -> String {
    mint_with(key, kid, None, claims)
}

pub fn mint_with(key: &KeyPair, kid: Option<&str>, x5c: Option<&str>, claims: &Claims) -> String {
    let mut header = Header::new(key.alg);
    header.kid = kid.map(str::to_owned);
    header.x5c = x5c.map(|c| vec![c.to_owned()]);
    let body = json!({
        "iss": claims.issuer, "sub": USER, "aud": claims.audience,
        "exp": claims.expires, "nbf": claims.not_before, "iat": claims.not_before,
        "jti": rand_suffix(), "access": claims.access,
    });
    jsonwebtoken::encode(&header, &body, &key.encoding_key()).unwrap()
}

/// The keys of the test, the bundle the registry trusts, and the token
/// service.
pub struct World {
    pub _dir: tempfile::TempDir,
    pub rsa: Arc<KeyPair>,
    pub ec: KeyPair,
    pub ed: KeyPair,
    pub stranger: KeyPair,
    /// Issued by a CA of the bundle, and by one that is not.
    pub issued: KeyPair,
    pub issued_elsewhere: KeyPair,
    pub bundle: PathBuf,
    pub service: TokenService,
}

impl World {
    pub fn new() -> Option<World> {
        if !tool_available("openssl", INSTALL_AUTH) {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let rsa = Arc::new(KeyPair::make(dir.path(), "rsa", Algorithm::RS256));
        let ec = KeyPair::make(dir.path(), "ec", Algorithm::ES256);
        let ed = KeyPair::make(dir.path(), "ed", Algorithm::EdDSA);
        let stranger = KeyPair::make(dir.path(), "stranger", Algorithm::RS256);
        let ca = KeyPair::make(dir.path(), "ca", Algorithm::RS256);
        let issued = KeyPair::issued(dir.path(), "issued", &ca);
        let issued_elsewhere = KeyPair::issued(dir.path(), "issued-elsewhere", &stranger);
        // Certificates, and a bare public key: both kinds of block.
        let bundle = dir.path().join("bundle.pem");
        let mut text = String::new();
        for cert in [&rsa.cert, &ec.cert, &ca.cert] {
            text.push_str(&std::fs::read_to_string(cert).unwrap());
        }
        text.push_str(&ed.public_pem);
        std::fs::write(&bundle, text).unwrap();
        let service = TokenService::start(rsa.clone());
        Some(World {
            _dir: dir,
            rsa,
            ec,
            ed,
            stranger,
            issued,
            issued_elsewhere,
            bundle,
            service,
        })
    }

    pub fn start(&self, extra: &[(&str, &str)]) -> (Backend, common::Registry) {
        let backend = Backend::local();
        let realm = self.service.realm();
        let mut env = vec![
            ("AUTH_TOKEN_REALM", realm.as_str()),
            ("AUTH_TOKEN_SERVICE", SERVICE),
            ("AUTH_TOKEN_ISSUER", ISSUER),
            ("AUTH_TOKEN_ROOTCERTBUNDLE", self.bundle.to_str().unwrap()),
        ];
        env.extend_from_slice(extra);
        let registry = backend.start(&env);
        (backend, registry)
    }
}

/// The token service: `GET /token?service=&scope=...` with basic auth
/// (or none: anonymous), and the OAuth2 form of it docker uses once it
/// holds a refresh token (`POST /token`, `grant_type=refresh_token` or
/// `password`). alice gets what she asks for, except on repositories
/// under `locked/`; anonymous callers get nothing. A login asking
/// `offline_token=true` gets a refresh token too (docker keeps it as its
/// identity token, and only with one does `docker search` do the token
/// flow). Every request is recorded (scopes asked, who asked).
pub struct TokenService {
    pub port: u16,
    pub asked: Arc<Asked>,
}

/// Who asked (`None`: anonymous) for which scopes.
pub type Asked = Mutex<Vec<(Option<String>, Vec<String>)>>;

impl TokenService {
    pub fn start(key: Arc<KeyPair>) -> TokenService {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let log = asked.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let key = key.clone();
                let log = log.clone();
                std::thread::spawn(move || serve_token(stream, &key, &log));
            }
        });
        TokenService { port, asked }
    }

    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    pub fn asked(&self) -> Vec<(Option<String>, Vec<String>)> {
        self.asked.lock().unwrap().clone()
    }
}

pub fn serve_token(stream: TcpStream, key: &KeyPair, log: &Asked) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut authorization = None;
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("authorization") {
                authorization = Some(value.trim().to_owned());
            }
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; length.min(65536)];
    if std::io::Read::read_exact(&mut reader, &mut body).is_err() {
        return;
    }
    let target = request_line.split(' ').nth(1).unwrap_or("/");
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let mut params: Vec<(String, String)> = url_pairs(query);
    params.extend(url_pairs(&String::from_utf8_lossy(&body)));
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let scopes: Vec<String> = params
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').map(str::to_owned).collect::<Vec<_>>())
        .collect();
    let user = authorization.as_deref().and_then(|h| {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(h.strip_prefix("Basic ")?)
            .ok()?;
        String::from_utf8(raw).ok()
    });
    let user = match param("grant_type").as_deref() {
        Some("refresh_token") if param("refresh_token").as_deref() == Some(REFRESH) => {
            Some(format!("{USER}:{PASSWORD}"))
        }
        Some("password") => Some(format!(
            "{}:{}",
            param("username").unwrap_or_default(),
            param("password").unwrap_or_default()
        )),
        Some(_) => Some(String::new()),
        None => user,
    };
    let who = match user.as_deref() {
        None => None,
        Some(creds) if creds == format!("{USER}:{PASSWORD}") => Some(USER.to_owned()),
        Some(_) => {
            respond(stream, 401, &json!({"details": "wrong password"}));
            return;
        }
    };
    log.lock().unwrap().push((who.clone(), scopes.clone()));
    let service = params
        .iter()
        .find(|(k, _)| k == "service")
        .map(|(_, v)| v.as_str());
    if service != Some(SERVICE) {
        respond(stream, 400, &json!({"details": "unknown service"}));
        return;
    }
    let access: Vec<Value> = if who.is_some() {
        scopes
            .iter()
            .filter_map(|s| {
                let (kind, rest) = s.split_once(':')?;
                let (name, actions) = rest.rsplit_once(':')?;
                (!name.starts_with("locked/")).then(|| {
                    json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()})
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    let token = mint(key, Some(&key.kid), &Claims::granting(json!(access)));
    let mut answer = json!({"token": token, "access_token": token, "expires_in": 300});
    if who.is_some() && param("offline_token").as_deref() == Some("true") {
        answer["refresh_token"] = json!(REFRESH);
    }
    respond(stream, 200, &answer);
}

pub fn url_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (!k.is_empty()).then(|| (decode(k), decode(v)))
        })
        .collect()
}

pub fn respond(mut stream: TcpStream, status: u16, body: &Value) {
    let body = body.to_string();
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

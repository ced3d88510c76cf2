//! Who may do what.
//!
//! A request with an `X-Signature` made with the `privileged_key` may do
//! anything. Otherwise, one of:
//! - logins of the v2 era (`auth_htpasswd` or `auth_token_*`, issue 12):
//!   `Authorization: Basic` checked against an htpasswd file
//!   ([`htpasswd`]), or `Authorization: Bearer` tokens of a token service
//!   ([`token`]) granting the actions the request needs ([`scope`]);
//!   `auth_required: write` lets pulls through without one; failed logins
//!   are rate-limited per client address ([`limiter`]);
//! - standalone (the usual private registry) or `disable_token_auth`:
//!   anyone;
//! - otherwise an `Authorization: Token ...` that names the repository of
//!   the URL, grants the access the method needs, and that the central
//!   index (`index_endpoint`) confirms.
//!
//! Decisions only: given what a request carries (method, path, headers)
//! and what it targets, [`Auth::decide`] grants or denies. It writes
//! nothing: what a grant carries (the image list a central index gave the
//! token) is the caller's to record. The HTTP side, checking every request
//! once before its handler runs, is `http::gate`.

pub mod htpasswd;
pub mod limiter;
pub mod scope;
pub mod token;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::LazyLock;
use std::time::Duration;

use actix_web::http::header::HeaderMap;
use actix_web::http::Method;
use anyhow::Context;
use base64::Engine;
use regex::Regex;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::signature::Verifier;
use rsa::RsaPublicKey;
use sha1::Sha1;

use crate::config::{LoginMode, LoginRequired, Settings};
use crate::names::{ImageId, RepositoryName};

/// The authorisation policy, built once at startup.
pub struct Auth {
    mode: Mode,
    privileged_key: Option<VerifyingKey<Sha1>>,
}

enum Mode {
    /// Everything is allowed.
    Open,
    /// Logins: an htpasswd file or a token service.
    Login(Box<Login>),
    /// Tokens are checked against a central index.
    Token {
        index_endpoint: String,
        client: reqwest::Client,
    },
}

impl Auth {
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        let privileged_key = match &settings.privileged_key {
            None => None,
            Some(path) => {
                let pem = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read privileged_key {}", path.display()))?;
                Some(VerifyingKey::new(parse_public_key(&pem).with_context(
                    || {
                        format!(
                            "privileged_key {} is not an RSA public key (PEM)",
                            path.display()
                        )
                    },
                )?))
            }
        };
        let index_checks = !(settings.standalone || settings.disable_token_auth);
        let mode = if let Some(login) = Login::from_settings(settings)? {
            if index_checks {
                anyhow::bail!(
                    "flavor `{}`: logins ({}) replace the central index's token checks: set \
                     standalone: true (or disable_token_auth: true) to use them",
                    settings.flavor,
                    match login.kind {
                        LoginKind::Basic(_) => "auth_htpasswd",
                        LoginKind::Bearer(_) => "auth_token_realm",
                    }
                );
            }
            Mode::Login(Box::new(login))
        } else if !index_checks {
            Mode::Open
        } else {
            let index_endpoint = settings.index_endpoint.clone().with_context(|| {
                format!(
                    "flavor `{}` is not standalone, so it needs an index_endpoint to check tokens with",
                    settings.flavor
                )
            })?;
            Mode::Token {
                index_endpoint: index_endpoint.trim_end_matches('/').to_owned(),
                client: reqwest::Client::builder()
                    .timeout(std::time::Duration::from_secs(30))
                    .build()
                    .context("cannot build the HTTP client for the index")?,
            }
        };
        Ok(Self {
            mode,
            privileged_key,
        })
    }

    /// Grants or denies `request` on `target`.
    pub async fn decide(&self, request: &Request<'_>, target: Target<'_>) -> Result<Grant, Denial> {
        self.admit(request, target).await.map(|(grant, _)| grant)
    }

    /// [`Auth::decide`], and who the request comes from: the user of a
    /// password or the subject of a token, `None` when anonymous or when
    /// the registry has no logins (an index's token names no user).
    pub async fn admit(
        &self,
        request: &Request<'_>,
        target: Target<'_>,
    ) -> Result<(Grant, Option<String>), Denial> {
        if self.signature_valid(request) {
            return Ok((Grant::Everything, None));
        }
        let (index_endpoint, client) = match &self.mode {
            Mode::Open => return Ok((Grant::Everything, None)),
            Mode::Login(login) => return login.decide(request, target).await,
            Mode::Token {
                index_endpoint,
                client,
            } => (index_endpoint, client),
        };
        // The index's tokens name one repository; the routes of neither
        // API beyond that are theirs to gate (search stays open, as it was).
        let target = match target {
            Target::Search => return Ok((Grant::Everything, None)),
            Target::Named { repository, .. } => Target::Repository(repository),
            Target::Base | Target::Catalog => Target::Unnamed,
            other => other,
        };
        let token = Token::from_headers(request.headers).ok_or(Denial::Unauthorized)?;
        if let Target::Repository(repository) = target {
            if token.repository != repository.to_string() {
                log::debug!("token for {} used on {repository}", token.repository);
                return Err(Denial::Unauthorized);
            }
        }
        if !token.allows(request.method) {
            return Err(Denial::Unauthorized);
        }
        let name = RepositoryName::parse(&token.repository).map_err(|_| Denial::Unauthorized)?;
        // The index answers the image list of the repository to a valid token.
        let url = format!(
            "{index_endpoint}/v1/repositories/{}/{}/images",
            name.namespace(),
            name.repository()
        );
        let answer = client
            .get(&url)
            .header("Authorization", token.header)
            .send()
            .await
            .map_err(|e| Denial::IndexUnavailable(format!("{url}: {e}")))?;
        if !answer.status().is_success() {
            log::debug!("index refused the token: {}", answer.status());
            return Err(Denial::Unauthorized);
        }
        let images: Vec<serde_json::Value> =
            answer.json().await.map_err(|_| Denial::Unauthorized)?;
        let images = images
            .iter()
            .filter_map(|i| i.get("id").and_then(|v| v.as_str()).map(str::to_owned))
            .collect();
        let grant = Grant::Token {
            repository: name,
            images,
        };
        Ok((grant, None))
    }

    /// `X-Signature: data=<base64>;...` over
    /// `METHOD,PATH,X-Docker-A:value,X-Docker-B:value` (headers sorted),
    /// RSA PKCS#1 v1.5 with SHA-1, as the old registry verified it.
    fn signature_valid(&self, req: &Request<'_>) -> bool {
        let Some(key) = &self.privileged_key else {
            return false;
        };
        let Some(header) = req.headers.get("X-Signature").and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let fields: HashMap<&str, &str> = header
            .split(';')
            .filter_map(|kv| kv.trim().split_once('='))
            .collect();
        let Some(signature) = fields
            .get("data")
            .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
            .and_then(|raw| Signature::try_from(raw.as_slice()).ok())
        else {
            return false;
        };
        key.verify(signed_message(req).as_bytes(), &signature)
            .is_ok()
    }
}

/// What a request carries that the policy reads.
pub struct Request<'a> {
    pub method: &'a Method,
    /// The URL path, without the query (a signature covers it).
    pub path: &'a str,
    /// The query (a mount's `from`).
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    /// The client's address, whose failed logins are counted.
    pub peer: Option<IpAddr>,
}

/// What a request acts on, as far as the policy cares.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// A v1 repository named in the URL: a token must be for that one.
    Repository(&'a RepositoryName),
    /// A v2 repository: `name` as the URL spells it (what token scopes
    /// name), `repository` as the v1 policy reads it.
    Named {
        name: &'a str,
        repository: &'a RepositoryName,
    },
    /// Something not tied to a repository in the URL (a v1 image): the
    /// token's own repository counts (with a token service's tokens, the
    /// repositories it grants, through [`Grant::ImagesOf`]).
    Unnamed,
    /// `/v2/`: where clients check that they may talk to the registry.
    Base,
    /// `/v2/_catalog`.
    Catalog,
    /// `/v1/search`.
    Search,
}

/// How a client is to log in: what a 401's `WWW-Authenticate` says (the
/// gates render it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic {
        realm: String,
    },
    Bearer {
        realm: String,
        service: String,
        /// The scope the request needs (none for `/v2/`).
        scope: Option<String>,
        /// `invalid_token` or `insufficient_scope`, when a token was sent.
        error: Option<&'static str>,
    },
}

/// The logins of issue 12.
struct Login {
    kind: LoginKind,
    required: LoginRequired,
    /// Failed htpasswd logins per client address.
    limiter: limiter::Limiter,
}

enum LoginKind {
    Basic(Basic),
    Bearer(Bearer),
}

struct Basic {
    realm: String,
    file: htpasswd::Htpasswd,
}

struct Bearer {
    realm: String,
    service: String,
    tokens: token::TokenAuth,
}

/// The most repositories of one token a v1 image is looked up in (each
/// may cost storage reads on a miss).
const MAX_IMAGE_REPOSITORIES: usize = 64;

/// Failed logins are counted per client address over this window.
const LOGIN_WINDOW: Duration = Duration::from_secs(60);

impl Login {
    fn from_settings(settings: &Settings) -> anyhow::Result<Option<Self>> {
        let login = &settings.login;
        let kind = match &login.mode {
            None => return Ok(None),
            Some(LoginMode::Htpasswd(path)) => LoginKind::Basic(Basic {
                realm: login.realm.clone(),
                file: htpasswd::Htpasswd::open(path)?,
            }),
            Some(LoginMode::Token(t)) => LoginKind::Bearer(Bearer {
                realm: t.realm.clone(),
                service: t.service.clone(),
                tokens: token::TokenAuth::open(&t.issuer, &t.service, &t.rootcertbundle)?,
            }),
        };
        Ok(Some(Self {
            kind,
            required: login.required,
            limiter: limiter::Limiter::new(login.max_failed_logins, LOGIN_WINDOW),
        }))
    }

    /// The grant, and who logged in (the user of a password, the subject of
    /// a token; `None`: anonymous).
    async fn decide(
        &self,
        request: &Request<'_>,
        target: Target<'_>,
    ) -> Result<(Grant, Option<String>), Denial> {
        let needs = scope::needs(request.method, request.query, target);
        // Anonymous pulls, where allowed: credentials a client sends are
        // still checked (a wrong password is better told than ignored), a
        // token's scope is not (the request needs none).
        let anonymous_ok =
            self.required == LoginRequired::Write && !needs.writes && !needs.login_check;
        let authorization = request
            .headers
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let credentials = authorization.and_then(|h| {
            let (scheme, value) = h.trim().split_once(' ')?;
            Some((scheme, value.trim()))
        });
        match &self.kind {
            LoginKind::Basic(basic) => {
                let challenge = || {
                    Denial::Login(Challenge::Basic {
                        realm: basic.realm.clone(),
                    })
                };
                let Some((user, password)) = credentials
                    .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
                    .and_then(|(_, value)| basic_credentials(value))
                else {
                    return if anonymous_ok {
                        Ok((Grant::Everything, None))
                    } else {
                        Err(challenge())
                    };
                };
                if let Some(wait) = request.peer.and_then(|ip| self.limiter.blocked(ip)) {
                    return Err(Denial::TooManyLogins { retry_after: wait });
                }
                if basic.file.verify(&user, &password).await {
                    return Ok((Grant::Everything, Some(user)));
                }
                if let Some(ip) = request.peer {
                    self.limiter.failed(ip);
                }
                // The user name helps an operator; the password never
                // appears anywhere.
                log::info!(
                    "failed login of user {:?} from {}",
                    user.chars().take(64).collect::<String>(),
                    request.peer.map_or("?".to_owned(), |ip| ip.to_string())
                );
                Err(challenge())
            }
            LoginKind::Bearer(bearer) => {
                let challenge = |error| {
                    Denial::Login(Challenge::Bearer {
                        realm: bearer.realm.clone(),
                        service: bearer.service.clone(),
                        scope: needs.challenge_scope(),
                        error,
                    })
                };
                let Some((_, jwt)) =
                    credentials.filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                else {
                    return if anonymous_ok {
                        Ok((Grant::Everything, None))
                    } else {
                        Err(challenge(None))
                    };
                };
                // No rate limit: passwords are the token service's to
                // check, and no number of guesses forges a signature.
                let granted = match bearer.tokens.verify(jwt) {
                    Ok(granted) => granted,
                    Err(e) => {
                        log::info!(
                            "{e} from {}",
                            request.peer.map_or("?".to_owned(), |ip| ip.to_string())
                        );
                        return Err(challenge(Some("invalid_token")));
                    }
                };
                let actor = granted.subject().map(str::to_owned);
                if anonymous_ok {
                    return Ok((Grant::Everything, actor));
                }
                if !granted.covers(&needs) {
                    return Err(challenge(Some("insufficient_scope")));
                }
                match needs.any_repository {
                    None => Ok((Grant::Everything, actor)),
                    // A v1 image: only through a repository it belongs to,
                    // which the caller looks up (it reads the storage).
                    Some(action) => {
                        let repositories = granted.repositories(action, MAX_IMAGE_REPOSITORIES);
                        if repositories.is_empty() {
                            return Err(challenge(Some("insufficient_scope")));
                        }
                        let grant = Grant::ImagesOf {
                            repositories,
                            push: action != scope::Action::Pull,
                            refused: Challenge::Bearer {
                                realm: bearer.realm.clone(),
                                service: bearer.service.clone(),
                                scope: None,
                                error: Some("insufficient_scope"),
                            },
                        };
                        Ok((grant, actor))
                    }
                }
            }
        }
    }
}

/// `user:password` of a `Basic` value (RFC 7617); the user part ends at
/// the first colon. An empty user is nobody: skopeo and podman send
/// `Basic Og==` (`:`) when they have no credentials for a registry that
/// challenged them, and mean an anonymous request.
fn basic_credentials(value: &str) -> Option<(String, String)> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(value)
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, password) = text.split_once(':')?;
    (!user.is_empty()).then(|| (user.to_owned(), password.to_owned()))
}

/// What a granted request may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// Open registry or a privileged signature: anything.
    Everything,
    /// A token the central index confirmed, for `repository`, listing the
    /// images a push may write.
    Token {
        repository: RepositoryName,
        images: Vec<String>,
    },
    /// A token for a v1 image route (`/v1/images/<id>/...`): granted only
    /// if the image belongs to one of `repositories` (a pull: listed,
    /// tagged or an ancestor of either; a push: listed, as a docker push
    /// lists its images before it sends them), which the caller checks;
    /// otherwise a denial with `refused`.
    ImagesOf {
        repositories: Vec<RepositoryName>,
        push: bool,
        refused: Challenge,
    },
}

impl Grant {
    /// Whether image `id` may be pushed under this grant: with a token,
    /// only the images the central index listed for its repository.
    pub fn may_push_image(&self, id: &ImageId) -> bool {
        match self {
            Grant::Everything => true,
            Grant::Token { images, .. } => images.iter().any(|i| i == id.as_str()),
            // The gate let it through only for an image the repositories list.
            Grant::ImagesOf { push, .. } => *push,
        }
    }
}

/// Why a request is refused.
#[derive(Debug, thiserror::Error)]
pub enum Denial {
    /// No credentials, or credentials that do not cover the request.
    #[error("requires authorization")]
    Unauthorized,
    /// The central index could not be asked.
    #[error("index unavailable: {0}")]
    IndexUnavailable(String),
    /// No login, or one that does not cover the request: a 401 with this
    /// challenge.
    #[error("requires a login")]
    Login(Challenge),
    /// Too many failed logins from this address: 429 for `retry_after`
    /// seconds.
    #[error("too many failed logins, retry in {retry_after} s")]
    TooManyLogins { retry_after: u64 },
}

/// The text a privileged client signs for a request.
pub fn signed_message(req: &Request<'_>) -> String {
    let mut docker_headers: Vec<(String, String)> = req
        .headers
        .iter()
        .filter_map(|(name, value)| {
            let title = title_case(name.as_str());
            title
                .starts_with("X-Docker")
                .then(|| (title, value.to_str().unwrap_or("").to_owned()))
        })
        .collect();
    docker_headers.sort();
    let mut parts = vec![req.method.to_string(), req.path.to_owned()];
    parts.extend(docker_headers.into_iter().map(|(k, v)| format!("{k}:{v}")));
    parts.join(",")
}

/// `x-docker-token` → `X-Docker-Token`, the spelling the old (WSGI) server
/// gave header names.
fn title_case(name: &str) -> String {
    name.split('-')
        .map(|word| {
            let mut chars = word.chars();
            match chars.next() {
                Some(first) => {
                    first.to_ascii_uppercase().to_string() + &chars.as_str().to_ascii_lowercase()
                }
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

fn parse_public_key(pem: &str) -> anyhow::Result<RsaPublicKey> {
    use rsa::pkcs1::DecodeRsaPublicKey;
    use rsa::pkcs8::DecodePublicKey;
    RsaPublicKey::from_public_key_pem(pem)
        .or_else(|_| RsaPublicKey::from_pkcs1_pem(pem))
        .context("no PUBLIC KEY or RSA PUBLIC KEY block")
}

/// `Authorization: Token signature=...,repository="ns/repo",access=write`.
struct Token {
    header: String,
    repository: String,
    access: String,
}

static TOKEN_FIELD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"(\w+)[:=][\s"]?([^",]+)"?"#).expect("static regex"));

impl Token {
    fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let header = headers.get("Authorization")?.to_str().ok()?;
        let (scheme, rest) = header.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("token") {
            return None;
        }
        let fields: HashMap<&str, &str> = TOKEN_FIELD
            .captures_iter(rest)
            .filter_map(|c| Some((c.get(1)?.as_str(), c.get(2)?.as_str())))
            .collect();
        Some(Self {
            header: header.to_owned(),
            repository: fields.get("repository")?.to_string(),
            access: fields.get("access").unwrap_or(&"").to_string(),
        })
    }

    fn allows(&self, method: &Method) -> bool {
        match self.access.as_str() {
            "write" => method == Method::PUT || method == Method::POST,
            "read" => method == Method::GET || method == Method::HEAD,
            "delete" => method == Method::DELETE,
            _ => false,
        }
    }
}

/// A made-up token for the stand-in index: `Token signature=<16 random
/// A-Z0-9>,repository="ns/repo",access=<access>`.
pub fn stand_in_token(name: &RepositoryName, access: &str) -> String {
    use rand::distributions::{Distribution, Uniform};
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let pick = Uniform::from(0..ALPHABET.len());
    let mut rng = rand::thread_rng();
    let signature: String = (0..16)
        .map(|_| ALPHABET[pick.sample(&mut rng)] as char)
        .collect();
    format!("Token signature={signature},repository=\"{name}\",access={access}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn tokens_are_read_like_the_old_registry() {
        let req = TestRequest::default()
            .insert_header((
                "Authorization",
                r#"Token signature=ABC,repository="ns/app",access=write"#,
            ))
            .to_http_request();
        let token = Token::from_headers(req.headers()).unwrap();
        assert_eq!(token.repository, "ns/app");
        assert!(token.allows(&Method::PUT) && token.allows(&Method::POST));
        assert!(!token.allows(&Method::GET) && !token.allows(&Method::DELETE));
        let basic = TestRequest::default()
            .insert_header(("Authorization", "Basic Zm9vOmJhcg=="))
            .to_http_request();
        assert!(Token::from_headers(basic.headers()).is_none());
    }

    #[test]
    fn basic_credentials_split_at_the_first_colon() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        assert_eq!(
            basic_credentials(&b64("alice:pass:word")),
            Some(("alice".into(), "pass:word".into()))
        );
        assert_eq!(basic_credentials(&b64(":")), None, "nobody");
        assert_eq!(basic_credentials(&b64("nocolon")), None);
        assert_eq!(basic_credentials("!!"), None);
    }

    #[test]
    fn stand_in_tokens_look_like_the_old_ones() {
        let name = RepositoryName::parse("ns/app").unwrap();
        let token = stand_in_token(&name, "read");
        let re = Regex::new(r#"^Token signature=[A-Z0-9]{16},repository="ns/app",access=read$"#)
            .unwrap();
        assert!(re.is_match(&token), "{token}");
    }

    #[test]
    fn the_signed_message_sorts_docker_headers() {
        let req = TestRequest::put()
            .uri("/v1/images/abc/json?x=1")
            .insert_header(("x-docker-token", "true"))
            .insert_header(("X-Docker-Checksum-Payload", "sha256:00"))
            .insert_header(("Content-Type", "application/json"))
            .to_http_request();
        let request = Request {
            method: req.method(),
            path: req.path(),
            query: req.query_string(),
            headers: req.headers(),
            peer: None,
        };
        assert_eq!(
            signed_message(&request),
            "PUT,/v1/images/abc/json,X-Docker-Checksum-Payload:sha256:00,X-Docker-Token:true"
        );
    }

    fn auth(extra: &str) -> Auth {
        use crate::config::{from_text, lookup_from, ConfigSource};
        let text = format!("prod:\n    storage: local\n    storage_path: /tmp/unused\n{extra}");
        let settings = from_text(&text, ConfigSource::BuiltIn, "prod", &lookup_from(&[])).unwrap();
        Auth::from_settings(&settings).unwrap()
    }

    async fn decide(auth: &Auth, req: TestRequest, repository: &str) -> Result<Grant, Denial> {
        let req = req.to_http_request();
        let request = Request {
            method: req.method(),
            path: req.path(),
            query: req.query_string(),
            headers: req.headers(),
            peer: None,
        };
        let name = RepositoryName::parse(repository).unwrap();
        auth.decide(&request, Target::Repository(&name)).await
    }

    #[actix_web::test]
    async fn an_open_registry_grants_everything() {
        let open = auth("    standalone: true\n");
        let grant = decide(&open, TestRequest::put(), "ns/app").await.unwrap();
        assert_eq!(grant, Grant::Everything);
        assert!(grant.may_push_image(&ImageId::parse(&"a".repeat(64)).unwrap()));
    }

    #[actix_web::test]
    async fn tokens_that_do_not_cover_the_request_are_denied_before_asking_the_index() {
        // Port 9 (discard) answers nothing: a denial here never asked it.
        let checked = auth("    standalone: false\n    index_endpoint: http://127.0.0.1:9/\n");
        let none = decide(&checked, TestRequest::get(), "ns/app").await;
        assert!(matches!(none, Err(Denial::Unauthorized)));
        let other = TestRequest::get().insert_header((
            "Authorization",
            r#"Token signature=X,repository="ns/other",access=read"#,
        ));
        assert!(matches!(
            decide(&checked, other, "ns/app").await,
            Err(Denial::Unauthorized)
        ));
        let read_for_write = TestRequest::put().insert_header((
            "Authorization",
            r#"Token signature=X,repository="ns/app",access=read"#,
        ));
        assert!(matches!(
            decide(&checked, read_for_write, "ns/app").await,
            Err(Denial::Unauthorized)
        ));
    }

    #[test]
    fn a_token_grant_covers_only_the_listed_images() {
        let listed = "a".repeat(64);
        let grant = Grant::Token {
            repository: RepositoryName::parse("ns/app").unwrap(),
            images: vec![listed.clone()],
        };
        assert!(grant.may_push_image(&ImageId::parse(&listed).unwrap()));
        assert!(!grant.may_push_image(&ImageId::parse(&"b".repeat(64)).unwrap()));
    }
}

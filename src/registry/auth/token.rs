//! Bearer tokens of a token service, as docker's token specification
//! describes them: JWTs signed (RS256/384/512, PS256/384/512, ES256/384,
//! EdDSA) by a key of `auth_token_rootcertbundle`, naming our issuer and
//! our service as audience, within their `nbf`/`exp`, granting actions in
//! their `access` claim.
//!
//! The key is chosen as distribution chooses it: an `x5c` header's leaf
//! certificate, when its key is one of the bundle's or its chain verifies
//! up to a certificate of the bundle (as distribution's x509 check: any
//! key usage); a `kid` header that is the libtrust id of a bundle key
//! (what docker_auth and Harbor put there) picks that key; otherwise
//! every bundle key of the token's algorithm is tried.

use std::path::Path;

use anyhow::{bail, Context};
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use x509_cert::der::{Decode, Encode};
use x509_cert::spki::SubjectPublicKeyInfoOwned;

use super::scope::{Action, Needs};
use crate::names::RepositoryName;

/// Clock skew allowed on `exp` and `nbf`, in seconds.
const LEEWAY: u64 = 60;

pub struct TokenAuth {
    issuer: String,
    service: String,
    keys: Vec<TrustedKey>,
    /// The bundle's certificates, as roots of `x5c` chains.
    anchors: Vec<rustls_pki_types::TrustAnchor<'static>>,
}

struct TrustedKey {
    /// libtrust key id: base32 of the first 240 bits of the SHA-256 of
    /// the key's DER, in groups of four.
    id: String,
    spki_der: Vec<u8>,
    kind: KeyKind,
    key: DecodingKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyKind {
    fn signs(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            KeyKind::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            KeyKind::P256 => alg == ES256,
            KeyKind::P384 => alg == ES384,
            KeyKind::Ed25519 => alg == EdDSA,
        }
    }
}

/// Why a token is refused (for the log at debug level and the
/// challenge's `error`; never the token itself).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("invalid token: {0}")]
    Invalid(String),
}

#[derive(Debug, Deserialize)]
struct Claims {
    #[serde(default)]
    access: Vec<ResourceActions>,
    /// Who the token service issued it to: the actor of notifications.
    #[serde(default)]
    sub: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ResourceActions {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    #[serde(default)]
    actions: Vec<String>,
}

/// What a verified token grants, and to whom (`sub`).
pub struct Granted(Vec<ResourceActions>, Option<String>);

impl Granted {
    /// The token's subject: who the token service issued it to.
    pub fn subject(&self) -> Option<&str> {
        self.1.as_deref()
    }

    /// Whether every action `needs` lists is granted.
    pub fn covers(&self, needs: &Needs) -> bool {
        let scopes_ok = needs.scopes.iter().all(|scope| {
            self.0.iter().any(|ra| {
                ra.kind == scope.kind
                    && ra.name == scope.name
                    && ra.actions.iter().any(|a| scope.action.granted_by(a))
            })
        });
        let any_ok = needs.any_repository.is_none_or(|action: Action| {
            self.0.iter().any(|ra| {
                ra.kind == "repository" && ra.actions.iter().any(|a| action.granted_by(a))
            })
        });
        scopes_ok && any_ok
    }
}

impl Granted {
    /// The repositories granting `action`, as v1 names them (a name v1
    /// cannot spell is no v1 repository and is left out); at most
    /// `limit`, in the token's order.
    pub fn repositories(&self, action: Action, limit: usize) -> Vec<RepositoryName> {
        let mut names: Vec<RepositoryName> = Vec::new();
        for ra in &self.0 {
            if ra.kind != "repository" || !ra.actions.iter().any(|a| action.granted_by(a)) {
                continue;
            }
            if names.len() == limit {
                log::debug!("a token grants {action:?} on more than {limit} repositories: the rest do not reach v1 images");
                break;
            }
            if let Ok(name) = RepositoryName::parse(&ra.name) {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        names
    }
}

impl TokenAuth {
    /// Reads the bundle; errors name `auth_token_rootcertbundle`.
    pub fn open(issuer: &str, service: &str, bundle: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(bundle).with_context(|| {
            format!(
                "auth_token_rootcertbundle: cannot read {}",
                bundle.display()
            )
        })?;
        let (keys, certificates) = parse_bundle(&text)
            .with_context(|| format!("auth_token_rootcertbundle: {}", bundle.display()))?;
        let anchors = certificates
            .into_iter()
            .filter_map(|der| {
                let der = rustls_pki_types::CertificateDer::from(der);
                webpki::anchor_from_trusted_cert(&der)
                    .ok()
                    .map(|a| a.to_owned())
            })
            .collect();
        Ok(Self {
            issuer: issuer.to_owned(),
            service: service.to_owned(),
            keys,
            anchors,
        })
    }

    /// Verifies `token`'s signature, issuer, audience and times.
    pub fn verify(&self, token: &str) -> Result<Granted, TokenError> {
        let invalid = |m: &str| TokenError::Invalid(m.to_owned());
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid("malformed"))?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.service]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY;

        let chained;
        let candidates: Vec<&TrustedKey> = if let Some(chain) = &header.x5c {
            let engine = base64::engine::general_purpose::STANDARD;
            let ders = chain
                .iter()
                .map(|c| engine.decode(c))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| invalid("unreadable x5c"))?;
            let leaf = ders.first().ok_or_else(|| invalid("empty x5c"))?;
            let spki = leaf_spki(leaf).ok_or_else(|| invalid("unreadable x5c"))?;
            let spki_der = spki.to_der().map_err(|_| invalid("unreadable x5c"))?;
            let known: Vec<&TrustedKey> = self
                .keys
                .iter()
                .filter(|k| k.spki_der == spki_der)
                .collect();
            if !known.is_empty() {
                known
            } else {
                self.verify_chain(&ders)
                    .map_err(|e| TokenError::Invalid(format!("x5c chain: {e}")))?;
                chained = trusted(&spki).map_err(|_| invalid("x5c key of no usable algorithm"))?;
                vec![&chained]
            }
        } else {
            match header
                .kid
                .as_deref()
                .and_then(|kid| self.keys.iter().find(|k| k.id == kid))
            {
                Some(key) => vec![key],
                None => self.keys.iter().collect(),
            }
        };
        let mut last = invalid("signed by no key of the bundle");
        for key in candidates.into_iter().filter(|k| k.kind.signs(header.alg)) {
            match jsonwebtoken::decode::<Claims>(token, &key.key, &validation) {
                Ok(data) => return Ok(Granted(data.claims.access, data.claims.sub)),
                Err(e) => {
                    use jsonwebtoken::errors::ErrorKind;
                    match e.kind() {
                        // Another key may have signed it.
                        ErrorKind::InvalidSignature => {}
                        ErrorKind::ExpiredSignature => return Err(invalid("expired")),
                        ErrorKind::ImmatureSignature => return Err(invalid("not valid yet")),
                        ErrorKind::InvalidAudience => return Err(invalid("wrong audience")),
                        ErrorKind::InvalidIssuer => return Err(invalid("wrong issuer")),
                        ErrorKind::MissingRequiredClaim(c) => {
                            return Err(TokenError::Invalid(format!("no {c} claim")))
                        }
                        _ => last = invalid("unreadable"),
                    }
                }
            }
        }
        Err(last)
    }
}

impl TokenAuth {
    /// Whether the chain `ders` (leaf first) leads to a bundle certificate.
    fn verify_chain(&self, ders: &[Vec<u8>]) -> Result<(), webpki::Error> {
        let leaf = rustls_pki_types::CertificateDer::from(ders[0].as_slice());
        let leaf = webpki::EndEntityCert::try_from(&leaf)?;
        let intermediates: Vec<rustls_pki_types::CertificateDer<'_>> = ders[1..]
            .iter()
            .map(|d| rustls_pki_types::CertificateDer::from(d.as_slice()))
            .collect();
        leaf.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &self.anchors,
            &intermediates,
            rustls_pki_types::UnixTime::now(),
            AnyUsage,
            None,
            None,
        )
        .map(|_| ())
    }
}

/// Distribution verifies x5c chains for any extended key usage: token
/// signing certificates rarely name one.
struct AnyUsage;

impl webpki::ExtendedKeyUsageValidator for AnyUsage {
    fn validate(&self, iter: webpki::KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        for id in iter {
            id?;
        }
        Ok(())
    }
}

fn leaf_spki(der: &[u8]) -> Option<SubjectPublicKeyInfoOwned> {
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    Some(cert.tbs_certificate.subject_public_key_info)
}

const RSA: &str = "1.2.840.113549.1.1.1";
const EC: &str = "1.2.840.10045.2.1";
const P256: &str = "1.2.840.10045.3.1.7";
const P384: &str = "1.3.132.0.34";
const ED25519: &str = "1.3.101.112";

/// The keys of every `CERTIFICATE` and `PUBLIC KEY` block of a PEM text,
/// and the certificates themselves (DER).
fn parse_bundle(text: &str) -> anyhow::Result<(Vec<TrustedKey>, Vec<Vec<u8>>)> {
    let mut keys = Vec::new();
    let mut certificates = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let block = &rest[start..];
        let label_end = block[11..]
            .find("-----")
            .context("a PEM block's BEGIN line does not end")?
            + 11;
        let label = &block[11..label_end];
        let end_marker = format!("-----END {label}-----");
        let end = block
            .find(&end_marker)
            .with_context(|| format!("a {label} block has no END line"))?
            + end_marker.len();
        let pem = &block[..end];
        rest = &block[end..];
        let (label, der) = x509_cert::der::pem::decode_vec(pem.as_bytes())
            .map_err(|e| anyhow::anyhow!("a {label} block is not valid PEM: {e}"))?;
        let spki = match label {
            "CERTIFICATE" => {
                let spki = x509_cert::Certificate::from_der(&der)
                    .map_err(|e| anyhow::anyhow!("a certificate does not parse: {e}"))?
                    .tbs_certificate
                    .subject_public_key_info;
                certificates.push(der);
                spki
            }
            "PUBLIC KEY" => SubjectPublicKeyInfoOwned::from_der(&der)
                .map_err(|e| anyhow::anyhow!("a public key does not parse: {e}"))?,
            // Private keys and the like have no business here; say so
            // rather than skip them silently.
            other => {
                bail!("holds a {other} block: only CERTIFICATE and PUBLIC KEY blocks belong in it")
            }
        };
        keys.push(trusted(&spki)?);
    }
    if keys.is_empty() {
        bail!("holds no CERTIFICATE or PUBLIC KEY block");
    }
    Ok((keys, certificates))
}

fn trusted(spki: &SubjectPublicKeyInfoOwned) -> anyhow::Result<TrustedKey> {
    let spki_der = spki.to_der().context("a public key does not encode")?;
    let raw = spki.subject_public_key.raw_bytes();
    let oid = spki.algorithm.oid.to_string();
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<x509_cert::der::asn1::ObjectIdentifier>().ok())
        .map(|o| o.to_string());
    let (kind, key) = match (oid.as_str(), curve.as_deref()) {
        (RSA, _) => (KeyKind::Rsa, DecodingKey::from_rsa_der(raw)),
        (EC, Some(P256)) => (KeyKind::P256, DecodingKey::from_ec_der(raw)),
        (EC, Some(P384)) => (KeyKind::P384, DecodingKey::from_ec_der(raw)),
        (ED25519, _) => (KeyKind::Ed25519, DecodingKey::from_ed_der(raw)),
        (other, curve) => bail!(
            "holds a key of algorithm {other}{}: RSA, EC P-256/P-384 and Ed25519 keys sign tokens",
            curve.map(|c| format!(" (curve {c})")).unwrap_or_default()
        ),
    };
    Ok(TrustedKey {
        id: libtrust_key_id(&spki_der),
        spki_der,
        kind,
        key,
    })
}

/// The key id docker's libtrust gives a public key.
pub fn libtrust_key_id(spki_der: &[u8]) -> String {
    let digest = Sha256::digest(spki_der);
    let b32 = data_encoding::BASE32_NOPAD.encode(&digest[..30]);
    b32.as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::super::scope::{needs, Action};
    use super::super::Target;
    use super::*;
    use crate::names::RepositoryName;
    use actix_web::http::Method;

    fn granted(access: serde_json::Value) -> Granted {
        Granted(serde_json::from_value(access).unwrap(), None)
    }

    #[test]
    fn grants_cover_exactly_their_resources_and_actions() {
        let repo = RepositoryName::parse("team/app").unwrap();
        let named = Target::Named {
            name: "team/app",
            repository: &repo,
        };
        let pull = granted(serde_json::json!([
            {"type": "repository", "name": "team/app", "actions": ["pull"]}
        ]));
        assert!(pull.covers(&needs(&Method::GET, "", named)));
        assert!(!pull.covers(&needs(&Method::PUT, "", named)));
        assert!(!pull.covers(&needs(&Method::DELETE, "", named)));
        assert!(!pull.covers(&needs(&Method::GET, "", Target::Catalog)));
        // The same name as another type is another resource.
        let registry_app = granted(serde_json::json!([
            {"type": "registry", "name": "team/app", "actions": ["*"]}
        ]));
        assert!(!registry_app.covers(&needs(&Method::GET, "", named)));
        let mount = needs(&Method::POST, "mount=sha256:00&from=base/os", named);
        let push = granted(serde_json::json!([
            {"type": "repository", "name": "team/app", "actions": ["pull", "push"]}
        ]));
        assert!(!push.covers(&mount));
        let both = granted(serde_json::json!([
            {"type": "repository", "name": "team/app", "actions": ["push"]},
            {"type": "repository", "name": "base/os", "actions": ["pull"]}
        ]));
        assert!(both.covers(&mount));
        // v1 image routes: the action on some repository (which images it
        // reaches, the v1 gate looks up).
        let image = needs(&Method::PUT, "", Target::Unnamed);
        assert_eq!(image.any_repository, Some(Action::Push));
        assert!(!pull.covers(&image));
        assert!(push.covers(&image));
        // No access claim at all covers only what needs nothing.
        let none = granted(serde_json::json!([]));
        assert!(none.covers(&needs(&Method::GET, "", Target::Base)));
        assert!(!none.covers(&needs(&Method::GET, "", named)));
    }

    #[test]
    fn the_repositories_a_token_reaches_v1_images_through() {
        let token = granted(serde_json::json!([
            {"type": "repository", "name": "alice/app", "actions": ["pull"]},
            {"type": "repository", "name": "base", "actions": ["*"]},
            {"type": "repository", "name": "alice/app", "actions": ["pull", "push"]},
            {"type": "registry", "name": "catalog", "actions": ["*"]},
            {"type": "repository", "name": "bad\"name", "actions": ["pull"]},
            {"type": "repository", "name": "bob/secret", "actions": ["push"]},
        ]));
        let names = |action, limit| -> Vec<String> {
            token
                .repositories(action, limit)
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        // v1's spelling (`base` is `library/base`), each once, registry
        // resources and unspellable names left out.
        assert_eq!(names(Action::Pull, 64), ["alice/app", "library/base"]);
        assert_eq!(
            names(Action::Push, 64),
            ["library/base", "alice/app", "bob/secret"]
        );
        assert_eq!(names(Action::Pull, 1), ["alice/app"]);
    }

    #[test]
    fn libtrust_ids_are_twelve_groups_of_base32() {
        let id = libtrust_key_id(b"any key");
        let groups: Vec<&str> = id.split(':').collect();
        assert_eq!(groups.len(), 12, "{id}");
        assert!(groups.iter().all(|g| g.len() == 4
            && g.chars()
                .all(|c| c.is_ascii_uppercase() || ('2'..='7').contains(&c))));
    }

    #[test]
    fn bundles_without_keys_or_with_private_keys_are_refused() {
        let e = parse_bundle("nothing here").err().unwrap().to_string();
        assert!(e.contains("no CERTIFICATE or PUBLIC KEY"), "{e}");
        let private =
            "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n";
        let e = parse_bundle(private).err().unwrap().to_string();
        assert!(e.contains("PRIVATE KEY block"), "{e}");
        let broken = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(parse_bundle(broken).is_err());
        let unterminated = "-----BEGIN CERTIFICATE-----\nAAAA\n";
        assert!(parse_bundle(unterminated).is_err());
    }
}

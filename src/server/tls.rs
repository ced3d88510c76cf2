//! https: rustls over the certificate files the settings name.
//!
//! The certificate, its key and the client CA are read at startup, where
//! anything wrong with them stops the start with the file named, and again
//! on SIGHUP. A reload swaps what new handshakes get; connections already
//! open keep the certificate they were made with, so none is dropped. A
//! reload that finds broken files keeps the previous ones and logs why.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use anyhow::{bail, Context};
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

use crate::config::TlsSettings;

/// What the listener serves with, and what SIGHUP reloads.
pub struct Tls {
    settings: TlsSettings,
    provider: Arc<CryptoProvider>,
    certificate: Arc<Current<CertifiedKey>>,
    clients: Option<Arc<Current<dyn ClientCertVerifier>>>,
}

impl Tls {
    /// Reads and checks the files: an error names the file and what is
    /// wrong with it.
    pub fn load(settings: &TlsSettings) -> anyhow::Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certificate = Arc::new(Current::new(Arc::new(certified_key(settings, &provider)?)));
        let clients = match &settings.client_ca {
            Some(path) => Some(Arc::new(Current::new(client_verifier(path, &provider)?))),
            None => None,
        };
        Ok(Self {
            settings: settings.clone(),
            provider,
            certificate,
            clients,
        })
    }

    /// The rustls configuration of the listener; actix adds the ALPN
    /// protocols (h2, http/1.1).
    pub fn server_config(&self) -> anyhow::Result<ServerConfig> {
        let builder = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS versions")?;
        let builder = match &self.clients {
            Some(clients) => {
                builder.with_client_cert_verifier(Arc::new(Reloadable(clients.clone())))
            }
            None => builder.with_no_client_auth(),
        };
        Ok(builder.with_cert_resolver(Arc::new(Reloadable(self.certificate.clone()))))
    }

    /// Reads the files again; on success new handshakes use them.
    pub fn reload(&self) -> anyhow::Result<()> {
        let key = certified_key(&self.settings, &self.provider)?;
        let clients = match (&self.settings.client_ca, &self.clients) {
            (Some(path), Some(_)) => Some(client_verifier(path, &self.provider)?),
            _ => None,
        };
        self.certificate.set(Arc::new(key));
        if let (Some(verifier), Some(current)) = (clients, &self.clients) {
            current.set(verifier);
        }
        Ok(())
    }

    /// Reloads on every SIGHUP for as long as the server runs.
    pub fn reload_on_sighup(self: Arc<Self>) -> anyhow::Result<()> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangups = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
        actix_web::rt::spawn(async move {
            while hangups.recv().await.is_some() {
                match self.reload() {
                    Ok(()) => log::info!(
                        "SIGHUP: TLS certificate reloaded from {}",
                        self.settings.certificate.display()
                    ),
                    Err(e) => log::error!("SIGHUP: TLS files kept as they were: {e:#}"),
                }
            }
        });
        Ok(())
    }
}

/// A value swapped whole by a reload while handshakes read it.
struct Current<T: ?Sized>(RwLock<Arc<T>>);

impl<T: ?Sized> Current<T> {
    fn new(value: Arc<T>) -> Self {
        Self(RwLock::new(value))
    }

    fn get(&self) -> Arc<T> {
        // A poisoned lock still holds a whole value: only `set` writes.
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, value: Arc<T>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = value;
    }
}

/// What rustls is given: reads the current value at each handshake.
struct Reloadable<T: ?Sized>(Arc<Current<T>>);

impl<T: ?Sized> std::fmt::Debug for Reloadable<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reloadable")
    }
}

impl ResolvesServerCert for Reloadable<CertifiedKey> {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.get())
    }
}

impl ClientCertVerifier for Reloadable<dyn ClientCertVerifier> {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // The hints borrow from the verifier, which a reload may replace:
        // none are sent, and clients offer whatever certificate they have
        // (curl, docker and Go clients do so anyway).
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0
            .get()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.get().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.get().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.get().supported_verify_schemes()
    }
}

/// The certificate chain and its key, checked: parseable, in their
/// validity period, and belonging together.
fn certified_key(
    settings: &TlsSettings,
    provider: &CryptoProvider,
) -> anyhow::Result<CertifiedKey> {
    let chain = certificates(&settings.certificate, "TLS certificate")?;
    check_validity(&settings.certificate, &chain[0])?;
    let key = PrivateKeyDer::from_pem_file(&settings.key).map_err(|e| {
        anyhow::anyhow!(
            "TLS key {}: no private key read ({})",
            settings.key.display(),
            pem_error(e)
        )
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => anyhow::anyhow!(
            "TLS key {} does not match the certificate {}",
            settings.key.display(),
            settings.certificate.display()
        ),
        e => anyhow::anyhow!("TLS key {}: {e}", settings.key.display()),
    })
}

/// `what`: the setting's words for the file, for the error.
fn certificates(path: &Path, what: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let chain = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("{what} {}: {}", path.display(), pem_error(e)))?;
    if chain.is_empty() {
        bail!(
            "{what} {}: no PEM CERTIFICATE block in the file",
            path.display()
        );
    }
    Ok(chain)
}

fn pem_error(e: rustls_pki_types::pem::Error) -> String {
    match e {
        rustls_pki_types::pem::Error::Io(e) => format!("cannot be read: {e}"),
        rustls_pki_types::pem::Error::NoItemsFound => {
            "no PEM block of that kind in the file".into()
        }
        e => format!("not valid PEM: {e:?}"),
    }
}

/// An expired certificate is refused at startup: clients would refuse
/// every connection anyway, with an error far from the cause.
fn check_validity(path: &Path, certificate: &CertificateDer<'_>) -> anyhow::Result<()> {
    use x509_cert::der::Decode;
    let parsed = x509_cert::Certificate::from_der(certificate)
        .map_err(|e| anyhow::anyhow!("TLS certificate {}: not X.509: {e}", path.display()))?;
    let validity = &parsed.tbs_certificate.validity;
    let now = SystemTime::now();
    let not_after = validity.not_after.to_system_time();
    let not_before = validity.not_before.to_system_time();
    if not_after < now {
        bail!(
            "TLS certificate {} expired on {}",
            path.display(),
            httpdate::fmt_http_date(not_after)
        );
    }
    if not_before > now {
        bail!(
            "TLS certificate {} is not valid before {}",
            path.display(),
            httpdate::fmt_http_date(not_before)
        );
    }
    Ok(())
}

fn client_verifier(
    path: &Path,
    provider: &Arc<CryptoProvider>,
) -> anyhow::Result<Arc<dyn ClientCertVerifier>> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in certificates(path, "TLS client CA")? {
        roots
            .add(certificate)
            .map_err(|e| anyhow::anyhow!("TLS client CA {}: {e}", path.display()))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| anyhow::anyhow!("TLS client CA {}: {e}", path.display()))
}

//! Server errors by mail (`email_exceptions`), as the old registry mailed
//! each error its log recorded. A request only queues its error (a bounded
//! queue, never waited on); one task mails them, at most one mail per
//! `min_interval`: the first error of a quiet spell goes at once, those
//! that follow within the interval go together in the next mail, and a
//! storm of errors is a mail a minute listing the first of them and
//! counting the rest.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use anyhow::Context;
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::sync::mpsc;

use crate::config::EmailSettings;

/// Errors waiting for the mailer; more are only counted.
const QUEUE: usize = 256;
/// Errors one mail lists; more are counted.
const LISTED: usize = 50;
/// The most characters of an error's text a mail keeps.
const DETAIL_MAX: usize = 1000;
/// One SMTP exchange, connection included.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Kept from the old registry's mails, which filters may match.
const SUBJECT: &str = "Docker registry exception";

/// One answer with a 5xx status.
#[derive(Debug)]
struct ServerError {
    at: jiff::Timestamp,
    status: u16,
    /// Method, path (no query: it may carry tokens) and version.
    request: String,
    /// The error's text, when the answer was made from one.
    detail: Option<String>,
}

/// The queue of errors to mail; cheap to clone into every worker.
#[derive(Clone)]
pub struct Mailer {
    queue: mpsc::Sender<ServerError>,
    /// Errors the full queue turned away, since the last mail.
    dropped: Arc<AtomicU64>,
}

impl Mailer {
    /// Checks the addresses, and starts the task that mails (on the
    /// current runtime).
    pub fn start(settings: &EmailSettings, flavor: &str) -> anyhow::Result<Mailer> {
        let from: Mailbox = settings.from.parse()?;
        let to = settings
            .to
            .iter()
            .map(|a| a.parse::<Mailbox>())
            .collect::<Result<Vec<_>, _>>()?;
        let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&settings.host);
        if settings.secure {
            // STARTTLS, required: the login and the mail never travel in clear.
            let mut tls = TlsParameters::builder(settings.host.clone());
            if let Some(ca) = &settings.ca {
                let pem = std::fs::read(ca)
                    .with_context(|| format!("cannot read smtp_ca {}", ca.display()))?;
                let roots = Certificate::from_pem(&pem).with_context(|| {
                    format!("smtp_ca {} is not a PEM file of certificates", ca.display())
                })?;
                tls = tls.add_root_certificate(roots);
            }
            transport = transport.tls(Tls::Required(tls.build()?));
        }
        let mut transport = transport.port(settings.port).timeout(Some(SEND_TIMEOUT));
        if let Ok(name) = hostname::get() {
            if let Some(name) = name.to_str().filter(|n| !n.is_empty()) {
                transport = transport.hello_name(ClientId::Domain(name.to_owned()));
            }
        }
        if let Some((login, password)) = &settings.login {
            transport = transport.credentials(Credentials::new(login.clone(), password.clone()));
        }
        let (queue, errors) = mpsc::channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let task = Task {
            transport: transport.build(),
            from,
            to,
            min_interval: settings.min_interval,
            server: format!(
                "registry-v1 {} on {}, flavor {flavor}",
                env!("CARGO_PKG_VERSION"),
                hostname::get().map_or_else(|_| "?".into(), |h| h.to_string_lossy().into_owned()),
            ),
            relay: format!("{}:{}", settings.host, settings.port),
            dropped: dropped.clone(),
        };
        actix_web::rt::spawn(task.run(errors));
        log::info!(
            "server errors are mailed to {} through {}:{}{}, at most one mail every {} s",
            settings.to.join(", "),
            settings.host,
            settings.port,
            if settings.secure { " (STARTTLS)" } else { "" },
            settings.min_interval.as_secs()
        );
        Ok(Mailer { queue, dropped })
    }

    fn report(&self, error: ServerError) {
        if self.queue.try_send(error).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

struct Task {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    min_interval: Duration,
    server: String,
    relay: String,
    dropped: Arc<AtomicU64>,
}

impl Task {
    async fn run(self, mut errors: mpsc::Receiver<ServerError>) {
        let mut last_mail: Option<tokio::time::Instant> = None;
        while let Some(first) = errors.recv().await {
            let mut batch = Batch::default();
            batch.add(first);
            // Until the interval since the last mail is over, errors join
            // this mail.
            if let Some(last) = last_mail {
                let until = last + self.min_interval;
                loop {
                    tokio::select! {
                        biased;
                        _ = tokio::time::sleep_until(until) => break,
                        next = errors.recv() => match next {
                            Some(e) => batch.add(e),
                            None => break,
                        },
                    }
                }
            }
            while let Ok(e) = errors.try_recv() {
                batch.add(e);
            }
            batch.dropped = self.dropped.swap(0, Ordering::Relaxed);
            self.send(&batch).await;
            last_mail = Some(tokio::time::Instant::now());
        }
    }

    async fn send(&self, batch: &Batch) {
        let total = batch.total();
        let subject = match &batch.listed[..] {
            [only] if total == 1 => format!("{SUBJECT}: {} {}", only.status, only.request),
            _ => format!("{SUBJECT}: {total} server errors"),
        };
        let mut builder = Message::builder().from(self.from.clone()).subject(subject);
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        let message = match builder
            .header(ContentType::TEXT_PLAIN)
            .body(batch.body(&self.server))
        {
            Ok(message) => message,
            Err(e) => {
                log::warn!("cannot write the mail of {total} server error(s): {e}");
                return;
            }
        };
        // lettre's own timeout does not bound every wait of an exchange (a
        // server that never answers AUTH held it for good): the whole
        // exchange is bounded here, or one such server would stop all mail.
        match tokio::time::timeout(SEND_TIMEOUT, self.transport.send(message)).await {
            Ok(Ok(_)) => log::info!("mailed {total} server error(s) through {}", self.relay),
            // lettre's errors carry the server's answer, never the password.
            Ok(Err(e)) => log::warn!(
                "cannot mail {total} server error(s) through {}: {e}",
                self.relay
            ),
            Err(_) => log::warn!(
                "cannot mail {total} server error(s) through {}: no answer within {} s",
                self.relay,
                SEND_TIMEOUT.as_secs()
            ),
        }
    }
}

#[derive(Default)]
struct Batch {
    listed: Vec<ServerError>,
    /// Received but not listed (beyond [`LISTED`]).
    unlisted: u64,
    /// Never received: the queue was full.
    dropped: u64,
}

impl Batch {
    fn add(&mut self, error: ServerError) {
        if self.listed.len() < LISTED {
            self.listed.push(error);
        } else {
            self.unlisted += 1;
        }
    }

    fn total(&self) -> u64 {
        self.listed.len() as u64 + self.unlisted + self.dropped
    }

    fn body(&self, server: &str) -> String {
        use std::fmt::Write;
        let total = self.total();
        let mut body =
            format!("{server}: {total} server error(s) (5xx answers) since the last mail.\n\n");
        for e in &self.listed {
            let _ = writeln!(body, "{} {} {}", e.at, e.status, e.request);
            if let Some(detail) = &e.detail {
                let _ = writeln!(body, "    {detail}");
            }
        }
        if self.unlisted + self.dropped > 0 {
            let _ = writeln!(
                body,
                "\n...and {} more not listed here.",
                self.unlisted + self.dropped
            );
        }
        body.push_str("\nThe registry's log (level error) has the details.\n");
        body
    }
}

/// Queues every 5xx answer for the [`Mailer`] of the app data; the request
/// goes on at once.
pub async fn report_server_errors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mailer = req.app_data::<Option<Mailer>>().cloned().flatten();
    // Headers (Authorization) and the query (tokens) stay out.
    let request =
        super::middleware::bounded_request_line(req.method().as_str(), req.path(), req.version());
    let result = next.call(req).await;
    let Some(mailer) = mailer else {
        return result;
    };
    let (status, detail) = match &result {
        Ok(resp) => (
            resp.status(),
            resp.response().error().map(|e| e.to_string()),
        ),
        Err(e) => (e.as_response_error().status_code(), Some(e.to_string())),
    };
    if status.is_server_error() {
        mailer.report(ServerError {
            at: jiff::Timestamp::now(),
            status: status.as_u16(),
            request,
            detail: detail.map(|d| {
                let d = d.replace(['\r', '\n'], " ");
                match d.char_indices().nth(DETAIL_MAX) {
                    Some((cut, _)) => format!("{}...", &d[..cut]),
                    None => d,
                }
            }),
        });
    }
    result
}

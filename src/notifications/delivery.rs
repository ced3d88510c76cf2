//! Sending one endpoint's queue: in order, a batch at a time, each event
//! removed only once the endpoint answered 2xx (at least once, never
//! lost); a failure waits `backoff`, doubled after each further one, and
//! tries the same events again. One instance among those sharing the
//! storage sends each queue: the one holding its lease.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Notify;

use super::envelope;
use super::queue::{Backlog, Queue, Waiting};
use crate::config::{EndpointSettings, MAX_NOTIFICATION_BACKOFF};
use crate::storage::layout::notifications as layout;
use crate::storage::lease::{self, Acquired, Lease};
use crate::storage::{Storage, StorageError};

/// How long a deliverer's lease lasts unless renewed, at least: an
/// instance that died is replaced after this (at once when it restarts
/// with the same address). Three times the endpoint's `timeout` when that
/// is longer, so that a POST waiting out its timeout never outlives the
/// lease it was sent under.
const LEASE_TTL: Duration = Duration::from_secs(10);

fn lease_ttl(settings: &EndpointSettings) -> Duration {
    LEASE_TTL.max(settings.timeout.saturating_mul(3))
}
/// How often an idle deliverer looks for events other instances queued.
const POLL: Duration = Duration::from_secs(1);
/// The most events in one POST.
const MAX_BATCH: usize = 50;

/// An endpoint: its settings, its queue, and the bell its deliverer waits on.
pub struct Endpoint {
    pub settings: EndpointSettings,
    pub queue: Queue,
    pub wake: Notify,
}

/// Delivers `endpoint`'s queue whenever this instance (named `holder`)
/// holds the queue's lease, until `stop` is cancelled: the lease is then
/// given back, so that another instance takes over at once rather than
/// after the lease ran out. A POST cut short is sent again by the next
/// holder (at least once).
pub async fn run(
    endpoint: Arc<Endpoint>,
    storage: Arc<dyn Storage>,
    holder: String,
    stop: tokio_util::sync::CancellationToken,
) {
    let settings = &endpoint.settings;
    let client = match reqwest::Client::builder()
        // Only the configured host is ever asked.
        .redirect(reqwest::redirect::Policy::none())
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout)
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            log::error!(
                "notifications to `{}` not sent: no HTTP client: {e}",
                settings.name
            );
            return;
        }
    };
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in &settings.headers {
        // Checked at startup.
        if let (Ok(name), Ok(mut value)) = (
            reqwest::header::HeaderName::from_bytes(name.as_bytes()),
            reqwest::header::HeaderValue::from_str(value),
        ) {
            value.set_sensitive(true);
            headers.append(name, value);
        }
    }
    let sender = Sender {
        endpoint: endpoint.clone(),
        client,
        headers,
    };
    let path = layout::lease(&settings.name);
    let ttl = lease_ttl(settings);
    loop {
        let acquired = tokio::select! {
            _ = stop.cancelled() => return,
            acquired = Lease::acquire(&*storage, &path, &holder, ttl) => acquired,
        };
        let wait = match acquired {
            Ok(Acquired::Held(lease)) => {
                log::info!(
                    "notifications to `{}`: this instance delivers",
                    settings.name
                );
                let mut held = Held {
                    lease,
                    ttl,
                    renewed: Instant::now(),
                    storage: storage.clone(),
                };
                tokio::select! {
                    _ = stop.cancelled() => {
                        match held.lease.release(&*storage).await {
                            Ok(()) => log::info!(
                                "notifications to `{}`: stopping, lease given back",
                                settings.name
                            ),
                            Err(e) => log::warn!(
                                "notifications to `{}`: stopping, lease not given back \
                                 (another instance takes over once it runs out): {e}",
                                settings.name
                            ),
                        }
                        return;
                    }
                    _ = sender.deliver(&mut held) => {}
                }
                log::warn!(
                    "notifications to `{}`: lease lost, another instance delivers",
                    settings.name
                );
                continue;
            }
            Ok(Acquired::Busy { .. }) => ttl / 2,
            Err(e) => {
                log::warn!("notifications to `{}`: lease not read: {e}", settings.name);
                ttl / 2
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// The lease while it is held, renewed as time goes.
struct Held {
    lease: Lease,
    ttl: Duration,
    renewed: Instant,
    storage: Arc<dyn Storage>,
}

impl Held {
    /// Whether the lease is still this instance's, renewed when a third of
    /// it has passed.
    async fn keep(&mut self) -> bool {
        if self.renewed.elapsed() < self.ttl / 3 {
            return true;
        }
        match self.lease.renew(&*self.storage).await {
            Ok(true) => {
                self.renewed = Instant::now();
                true
            }
            Ok(false) => false,
            // The storage may be back before the lease runs out.
            Err(e) => {
                log::warn!("notification lease not renewed: {e}");
                self.renewed.elapsed() < self.ttl * 2 / 3
            }
        }
    }

    /// Waits `time`, keeping the lease; `false`: it was lost.
    async fn pause(&mut self, time: Duration) -> bool {
        let end = Instant::now() + time;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            tokio::time::sleep(left.min(self.ttl / 4)).await;
            if !self.keep().await {
                return false;
            }
        }
    }
}

struct Sender {
    endpoint: Arc<Endpoint>,
    client: reqwest::Client,
    headers: reqwest::header::HeaderMap,
}

impl Sender {
    fn name(&self) -> &str {
        &self.endpoint.settings.name
    }

    /// Sends the queue until the lease is lost.
    async fn deliver(&self, held: &mut Held) {
        let metrics = crate::metrics::get();
        let label = [self.name()];
        let mut backlog = loop {
            match self.endpoint.queue.backlog().await {
                Ok(backlog) => break backlog,
                Err(e) => {
                    log::warn!("notifications to `{}`: queue not opened: {e}", self.name());
                    if !held.pause(self.backoff(1)).await {
                        return;
                    }
                }
            }
        };
        let mut failures: u32 = 0;
        loop {
            if !held.keep().await {
                return;
            }
            let (waiting, batch) = match self.look(&mut *backlog).await {
                Ok(found) => found,
                Err(e) => {
                    log::warn!("notifications to `{}`: queue not read: {e}", self.name());
                    if !held.pause(self.backoff(1)).await {
                        return;
                    }
                    continue;
                }
            };
            metrics
                .notification_pending
                .with_label_values(&label)
                .set(waiting as i64);
            if waiting == 0 {
                tokio::select! {
                    _ = self.endpoint.wake.notified() => {}
                    _ = tokio::time::sleep(POLL) => {}
                }
                continue;
            }
            // What is not JSON goes with the batch, unsent.
            let bodies: Vec<Bytes> = batch
                .iter()
                .map(|w| w.event.clone())
                .filter(|b| is_json(b))
                .collect();
            let damaged = batch.len() - bodies.len();
            let sent = if bodies.is_empty() {
                Ok(())
            } else {
                self.post(envelope::envelope(&bodies)).await
            };
            match sent {
                Ok(()) => {
                    failures = 0;
                    if let Err(e) = backlog.remove(&batch).await {
                        // Sent again later: at least once.
                        log::warn!(
                            "notifications to `{}`: delivered events not removed: {e}",
                            self.name()
                        );
                    }
                    if damaged > 0 {
                        log::error!(
                            "notifications to `{}`: {damaged} queued events are not JSON: dropped",
                            self.name()
                        );
                        metrics
                            .notification_events
                            .with_label_values(&[self.name(), "dropped"])
                            .inc_by(damaged as u64);
                    }
                    let now = lease::now_ms();
                    for waiting in batch.iter().filter(|w| is_json(&w.event)) {
                        metrics
                            .notification_events
                            .with_label_values(&[self.name(), "delivered"])
                            .inc();
                        if waiting.ms > 0 {
                            metrics
                                .notification_latency
                                .with_label_values(&label)
                                .observe(now.saturating_sub(waiting.ms) as f64 / 1000.0);
                        }
                    }
                }
                Err(why) => {
                    failures = failures.saturating_add(1);
                    metrics
                        .notification_failures
                        .with_label_values(&label)
                        .inc();
                    let wait = self.backoff(failures);
                    log::warn!(
                        "notifications to `{}`: {} events not delivered ({why}); attempt {failures}, \
                         next in {} ms",
                        self.name(),
                        bodies.len(),
                        wait.as_millis()
                    );
                    if !held.pause(wait).await {
                        return;
                    }
                }
            }
        }
    }

    /// The wait after the `failures`th failure in a row.
    fn backoff(&self, failures: u32) -> Duration {
        let first = self.endpoint.settings.backoff;
        let factor = 1u32 << failures.saturating_sub(1).min(16);
        first
            .saturating_mul(factor)
            .min(MAX_NOTIFICATION_BACKOFF.max(first))
    }

    /// How many events wait, and the oldest batch of them.
    async fn look(&self, backlog: &mut dyn Backlog) -> Result<(usize, Vec<Waiting>), StorageError> {
        let waiting = self.refresh(backlog).await?;
        if waiting == 0 {
            return Ok((0, Vec::new()));
        }
        Ok((waiting, backlog.oldest(MAX_BATCH).await?))
    }

    /// Looks at the queue again, dropping the oldest events beyond the
    /// endpoint's `queue_limit`; returns how many wait.
    async fn refresh(&self, backlog: &mut dyn Backlog) -> Result<usize, StorageError> {
        let waiting = backlog.refresh().await?;
        let limit = self.endpoint.settings.queue_limit;
        if waiting <= limit {
            return Ok(waiting);
        }
        let dropped = backlog.drop_oldest(waiting - limit).await?;
        log::error!(
            "notifications to `{}`: {waiting} events waiting, more than queue_limit {limit}: the \
             {dropped} oldest are dropped",
            self.name(),
        );
        crate::metrics::get()
            .notification_events
            .with_label_values(&[self.name(), "dropped"])
            .inc_by(dropped as u64);
        Ok(waiting - dropped)
    }

    /// One POST; `Err` says why it failed, never with the URL or headers
    /// (they may hold secrets).
    async fn post(&self, body: Vec<u8>) -> Result<(), String> {
        let answer = self
            .client
            .post(&self.endpoint.settings.url)
            .headers(self.headers.clone())
            .header(reqwest::header::CONTENT_TYPE, envelope::MEDIA_TYPE)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                let e = e.without_url();
                if e.is_timeout() {
                    format!(
                        "no answer within {} ms",
                        self.endpoint.settings.timeout.as_millis()
                    )
                } else if e.is_connect() {
                    "cannot connect".to_owned()
                } else {
                    e.to_string()
                }
            })?;
        let status = answer.status();
        if status.is_success() {
            Ok(())
        } else if status.is_redirection() {
            Err(format!("answered {status}: redirects are not followed"))
        } else {
            Err(format!("answered {status}"))
        }
    }
}

fn is_json(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_post_never_outlives_its_lease() {
        let mut settings = endpoint_settings();
        assert_eq!(lease_ttl(&settings), LEASE_TTL);
        settings.timeout = Duration::from_secs(30);
        assert_eq!(lease_ttl(&settings), Duration::from_secs(90));
    }

    fn endpoint_settings() -> EndpointSettings {
        EndpointSettings {
            name: "e".into(),
            url: "http://127.0.0.1:1/".into(),
            headers: vec![],
            timeout: Duration::from_secs(1),
            backoff: Duration::from_millis(100),
            ignored_media_types: vec![],
            ignored_actions: vec![],
            pulls: false,
            queue_limit: 10,
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_bound() {
        let settings = endpoint_settings();
        let storage: Arc<dyn Storage> = Arc::new(crate::storage::memory::MemoryStorage::new());
        let sender = Sender {
            endpoint: Arc::new(Endpoint {
                queue: Queue::open(storage, "e", "abc"),
                settings,
                wake: Notify::new(),
            }),
            client: reqwest::Client::new(),
            headers: Default::default(),
        };
        assert_eq!(sender.backoff(1), Duration::from_millis(100));
        assert_eq!(sender.backoff(2), Duration::from_millis(200));
        assert_eq!(sender.backoff(4), Duration::from_millis(800));
        assert_eq!(sender.backoff(40), MAX_NOTIFICATION_BACKOFF);
    }
}

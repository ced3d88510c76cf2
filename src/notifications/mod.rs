//! Webhook notifications: each push, delete, mount (and pull, when asked
//! for) of a manifest or blob is told to the endpoints of the
//! `notifications` section, in distribution's envelope ([`envelope`]).
//!
//! A listener on [`crate::events`], as the search index is. An activity is
//! written to each endpoint's queue in the storage ([`queue`]) before the
//! request that caused it answers, and sent from there in the background
//! ([`delivery`]): a slow or dead endpoint never slows a push, and a kill,
//! a restart or a second instance on the same bucket loses nothing.

pub mod delivery;
pub mod envelope;
pub mod journal;
pub mod queue;

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use bytes::Bytes;

use crate::config::NotificationSettings;
use crate::events::{Action, Activity, Subscriber, Unrecorded};
use crate::storage::Storage;
use delivery::Endpoint;

/// How long a stopping server waits for its deliverers to give their
/// leases back (a write to the storage each).
const STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The endpoints, their queues, and who this instance is.
pub struct Notifications {
    endpoints: Vec<Arc<Endpoint>>,
    storage: Arc<dyn Storage>,
    include_references: bool,
    /// Random, new at each start: the events' `source.instanceID`.
    instance: String,
    /// `<hostname>:<port>`: the events' `source.addr`, and the name this
    /// instance holds leases under (so that it takes its own back at once
    /// after a restart).
    addr: OnceLock<String>,
    /// Cancelled by [`Notifications::stop`]; each deliverer then gives its
    /// lease back.
    stopping: tokio_util::sync::CancellationToken,
    deliverers: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Notifications {
    pub fn new(settings: &NotificationSettings, storage: Arc<dyn Storage>) -> Arc<Self> {
        let instance = envelope::new_id();
        let short = instance.replace('-', "")[..12].to_owned();
        let endpoints = settings
            .endpoints
            .iter()
            .map(|e| {
                Arc::new(Endpoint {
                    settings: e.clone(),
                    queue: queue::Queue::open(storage.clone(), &e.name, &short),
                    wake: tokio::sync::Notify::new(),
                })
            })
            .collect();
        Arc::new(Self {
            endpoints,
            storage,
            include_references: settings.include_references,
            instance,
            addr: OnceLock::new(),
            stopping: tokio_util::sync::CancellationToken::new(),
            deliverers: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// Starts delivering, as the instance listening on `port`.
    pub fn start(self: &Arc<Self>, port: u16) {
        let host = hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "localhost".to_owned());
        let addr = self.addr.get_or_init(|| format!("{host}:{port}")).clone();
        for endpoint in &self.endpoints {
            log::info!(
                "notifications to `{}` ({}), timeout {} ms, backoff {} ms{}",
                endpoint.settings.name,
                crate::config::masked_url(&endpoint.settings.url),
                endpoint.settings.timeout.as_millis(),
                endpoint.settings.backoff.as_millis(),
                if endpoint.settings.pulls {
                    ", pulls included"
                } else {
                    ""
                }
            );
            let deliverer = actix_web::rt::spawn(delivery::run(
                endpoint.clone(),
                self.storage.clone(),
                addr.clone(),
                self.stopping.clone(),
            ));
            self.deliverers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(deliverer);
        }
    }

    /// Stops delivering (the server is stopping): each deliverer gives its
    /// lease back, so that another instance takes over at once. Waits for
    /// them, [`STOP_WAIT`] at most.
    pub async fn stop(&self) {
        self.stopping.cancel();
        let deliverers: Vec<_> = self
            .deliverers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        let all = futures_util::future::join_all(deliverers);
        if tokio::time::timeout(STOP_WAIT, all).await.is_err() {
            log::warn!(
                "notifications: leases not all given back within {} s; other instances take \
                 over once they run out",
                STOP_WAIT.as_secs()
            );
        }
    }

    /// Whether any endpoint may want an activity of `action`: when none
    /// does, the API need not build it.
    pub fn wants(&self, action: Action) -> bool {
        self.endpoints.iter().any(|e| takes(&e.settings, action))
    }

    fn wanted_by(endpoint: &Endpoint, activity: &Activity) -> bool {
        let settings = &endpoint.settings;
        takes(settings, activity.action)
            && !activity
                .target
                .media_type
                .as_ref()
                .is_some_and(|t| settings.ignored_media_types.contains(t))
    }
}

/// Whether an endpoint takes activities of `action` (pulls only when asked
/// for, none of the actions it ignores).
fn takes(settings: &crate::config::EndpointSettings, action: Action) -> bool {
    (action != Action::Pull || settings.pulls)
        && !settings
            .ignored_actions
            .iter()
            .any(|a| a == action.as_str())
}

#[async_trait(?Send)]
impl Subscriber for Notifications {
    async fn on_activity(&self, activity: &Activity) -> Result<(), Unrecorded> {
        let wanted: Vec<&Arc<Endpoint>> = self
            .endpoints
            .iter()
            .filter(|e| Self::wanted_by(e, activity))
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let source = envelope::Source {
            addr: self
                .addr
                .get()
                .cloned()
                .unwrap_or_else(|| "localhost".to_owned()),
            instance_id: self.instance.clone(),
        };
        let event = envelope::Event::of(activity, source, self.include_references);
        let bytes = Bytes::from(serde_json::to_vec(&event).map_err(|e| Unrecorded(e.to_string()))?);
        let written = futures_util::future::join_all(
            wanted
                .iter()
                .map(|endpoint| endpoint.queue.push(bytes.clone())),
        )
        .await;
        let mut outcome = Ok(());
        for (endpoint, result) in wanted.iter().zip(written) {
            match result {
                Ok(()) => {
                    crate::metrics::get()
                        .notification_events
                        .with_label_values(&[&endpoint.settings.name, "queued"])
                        .inc();
                    endpoint.wake.notify_one();
                }
                Err(e) => {
                    log::error!(
                        "event {} for `{}` not queued: {e}",
                        event.id,
                        endpoint.settings.name
                    );
                    outcome = Err(Unrecorded(format!(
                        "the event could not be queued for notification endpoint `{}`",
                        endpoint.settings.name
                    )));
                }
            }
        }
        outcome
    }
}

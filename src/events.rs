//! What happened to repositories and tags, published by the API and heard by
//! whoever subscribed (the search index, the webhook notifications), so
//! that handlers do not call those parts directly.

use std::sync::{Arc, RwLock};

use async_trait::async_trait;

use crate::names::digest::Digest;
use crate::names::{ImageId, RepositoryName, Tag};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A repository was pushed to for the first time.
    RepositoryCreated {
        name: RepositoryName,
        description: Option<String>,
    },
    /// A repository that existed was pushed to again, or its description set.
    RepositoryUpdated {
        name: RepositoryName,
        description: Option<String>,
    },
    /// A repository and all its tags were deleted.
    RepositoryDeleted {
        name: RepositoryName,
    },
    TagPushed {
        name: RepositoryName,
        tag: Tag,
        target: TagTarget,
    },
    TagDeleted {
        name: RepositoryName,
        tag: Tag,
    },
}

/// An action on a manifest or blob, with the request that did it, in the
/// words of distribution's notifications (their `action`, `target` and
/// `request`): what webhooks carry. Unlike an [`Event`], it must be
/// recorded before the request answers (see [`Events::record`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    pub action: Action,
    pub target: Target,
    pub request: RequestInfo,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Push,
    Pull,
    Delete,
    /// A blob made part of a repository from another one's.
    Mount,
}

impl Action {
    /// As the envelope and the settings spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Push => "push",
            Action::Pull => "pull",
            Action::Delete => "delete",
            Action::Mount => "mount",
        }
    }
}

/// What an action was done to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Target {
    /// The repository as the client named it (`library/x` or `x`).
    pub repository: String,
    /// `None` for a delete by tag, which names no manifest.
    pub digest: Option<Digest>,
    pub media_type: Option<String>,
    pub size: Option<u64>,
    /// Where the target can be fetched (`<scheme>://<host>/v2/...`).
    pub url: Option<String>,
    pub tag: Option<String>,
    /// A mount's source repository.
    pub from_repository: Option<String>,
    /// What a manifest references: a config and layers, or the manifests
    /// of an index.
    pub references: Vec<Reference>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

/// The request behind an action.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestInfo {
    pub id: String,
    /// The client's address (`ip:port`).
    pub addr: String,
    /// The `Host` the client asked for.
    pub host: String,
    pub method: String,
    pub user_agent: String,
    /// Who logged in, `None` when anonymous.
    pub actor: Option<String>,
}

/// What a tag points at: a v1 image (pushed over v1) or a manifest (v2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagTarget {
    Image(ImageId),
    Manifest(Digest),
}

/// A part of the registry that wants to hear about events. Its futures
/// run on the worker that published (the storage's are not `Send`).
#[async_trait(?Send)]
pub trait Subscriber: Send + Sync {
    /// Called once per event, in publication order. A subscriber's failure
    /// is its own: it logs it, the request that published still succeeds.
    async fn on_event(&self, _event: &Event) {}

    /// Called once per activity. `Err`: it could not be kept, and the
    /// request must not answer as if all went well.
    async fn on_activity(&self, _activity: &Activity) -> Result<(), Unrecorded> {
        Ok(())
    }
}

/// An activity a subscriber could not keep, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unrecorded(pub String);

/// The in-process event bus.
#[derive(Default, Clone)]
pub struct Events {
    subscribers: Arc<RwLock<Vec<Arc<dyn Subscriber>>>>,
}

impl Events {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn subscribe(&self, subscriber: Arc<dyn Subscriber>) {
        self.subscribers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(subscriber);
    }

    /// Delivers `event` to every subscriber and waits for them, so that what
    /// a client did is visible (to search, say) once its request returns.
    pub async fn publish(&self, event: Event) {
        log::debug!("event: {event:?}");
        let subscribers = self
            .subscribers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for subscriber in subscribers {
            subscriber.on_event(&event).await;
        }
    }

    /// Hands `activity` to every subscriber and waits for them; the first
    /// that could not keep it makes this an `Err` (the others still hear it).
    pub async fn record(&self, activity: Activity) -> Result<(), Unrecorded> {
        let subscribers = self
            .subscribers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut outcome = Ok(());
        for subscriber in subscribers {
            if let Err(e) = subscriber.on_activity(&activity).await {
                outcome = outcome.and(Err(e));
            }
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<Event>>);

    #[async_trait(?Send)]
    impl Subscriber for Recorder {
        async fn on_event(&self, event: &Event) {
            self.0.lock().unwrap().push(event.clone());
        }
    }

    /// Keeps activities, or refuses them all.
    struct Keeper(Mutex<usize>, bool);

    #[async_trait(?Send)]
    impl Subscriber for Keeper {
        async fn on_activity(&self, _: &Activity) -> Result<(), Unrecorded> {
            if self.1 {
                return Err(Unrecorded("full".into()));
            }
            *self.0.lock().unwrap() += 1;
            Ok(())
        }
    }

    #[actix_web::test]
    async fn an_activity_one_subscriber_cannot_keep_is_an_error_the_others_still_keep() {
        let events = Events::new();
        let (refusing, keeping) = (
            Arc::new(Keeper(Mutex::new(0), true)),
            Arc::new(Keeper(Mutex::new(0), false)),
        );
        events.subscribe(refusing);
        events.subscribe(keeping.clone());
        let activity = Activity {
            action: Action::Push,
            target: Target::default(),
            request: RequestInfo::default(),
        };
        assert_eq!(
            events.record(activity.clone()).await,
            Err(Unrecorded("full".into()))
        );
        assert_eq!(*keeping.0.lock().unwrap(), 1);
        // Subscribers of events alone keep activities by default.
        let plain = Events::new();
        plain.subscribe(Arc::new(Recorder::default()));
        assert_eq!(plain.record(activity).await, Ok(()));
    }

    #[actix_web::test]
    async fn every_subscriber_hears_every_event_in_order() {
        let events = Events::new();
        let (a, b) = (Arc::new(Recorder::default()), Arc::new(Recorder::default()));
        events.subscribe(a.clone());
        events.subscribe(b.clone());
        let name = RepositoryName::parse("ns/app").unwrap();
        events
            .publish(Event::RepositoryCreated {
                name: name.clone(),
                description: None,
            })
            .await;
        events
            .publish(Event::RepositoryDeleted { name: name.clone() })
            .await;
        for r in [a, b] {
            let seen = r.0.lock().unwrap();
            assert_eq!(seen.len(), 2);
            assert_eq!(seen[1], Event::RepositoryDeleted { name: name.clone() });
        }
    }
}

//! What happened to repositories and tags, published by the API and heard by
//! whoever subscribed (the search index today; webhooks or a v2 catalog
//! tomorrow), so that handlers do not call those parts directly.

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

/// What a tag points at: a v1 image (pushed over v1) or a manifest (v2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagTarget {
    Image(ImageId),
    Manifest(Digest),
}

/// A part of the registry that wants to hear about events.
#[async_trait]
pub trait Subscriber: Send + Sync {
    /// Called once per event, in publication order. A subscriber's failure
    /// is its own: it logs it, the request that published still succeeds.
    async fn on_event(&self, event: &Event);
}

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
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<Event>>);

    #[async_trait]
    impl Subscriber for Recorder {
        async fn on_event(&self, event: &Event) {
            self.0.lock().unwrap().push(event.clone());
        }
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

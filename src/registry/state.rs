//! The application state: what every handler of either API can reach.

use std::sync::Arc;

use crate::config::Settings;
use crate::events::Events;
use crate::search::SearchIndex;
use crate::storage::Storage;

/// What every handler can reach. Cheap to clone: all shared.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub storage: Arc<dyn Storage>,
    pub search: Arc<dyn SearchIndex>,
    pub events: Events,
    pub auth: Arc<crate::registry::auth::Auth>,
    /// Which v1 images each repository owns, for tokens on image routes.
    pub owners: Arc<crate::registry::legacy::Owners>,
    /// The open v2 upload sessions and their bounds.
    pub upload_sessions: Arc<crate::registry::oci::sessions::Sessions>,
    /// The pull-through cache's upstreams (none when not configured).
    pub mirror: Arc<crate::registry::mirror::Mirror>,
    /// The webhooks' queues (see [`crate::notifications`]); `serve` starts
    /// their delivery.
    pub notifications: Arc<crate::notifications::Notifications>,
    /// The operator's rules (immutable tags), which the models ask.
    pub rules: Arc<crate::registry::rules::Rules>,
    /// What each manifest references, kept for the pages' repository sizes.
    pub sizes: Arc<crate::registry::inspect::Sizes>,
}

impl AppState {
    /// Opens the storage and the search index the settings name, and wires
    /// the index to the events of the API.
    pub async fn open(settings: Settings) -> anyhow::Result<Self> {
        let auth = Arc::new(crate::registry::auth::Auth::from_settings(&settings)?);
        let storage = crate::storage::from_settings(&settings).await?;
        // In the background: the server serves while the tree is swept.
        let sweep = storage.clone();
        actix_web::rt::spawn(async move {
            let age = crate::storage::STALE_TEMPORARY_FILE_AGE;
            match sweep.remove_stale_temporary_files(age).await {
                Ok(0) => {}
                Ok(n) => log::warn!(
                    "removed {n} temporary files left by a crash (older than {} h)",
                    age.as_secs() / 3600
                ),
                Err(e) => log::warn!("temporary files left by a crash not removed: {e}"),
            }
        });
        let search = crate::search::from_settings(&settings, storage.clone()).await?;
        let events = Events::new();
        events.subscribe(crate::search::subscriber(search.clone()));
        let owners = Arc::new(crate::registry::legacy::Owners::new());
        events.subscribe(owners.clone());
        let notifications =
            crate::notifications::Notifications::new(&settings.notifications, storage.clone());
        events.subscribe(notifications.clone());
        let upload_sessions = Arc::new(crate::registry::oci::sessions::Sessions::new(
            crate::registry::oci::sessions::Limits {
                per_repository: settings.upload_sessions.per_repository,
                total: settings.upload_sessions.total,
                max_age: settings.gc.upload_max_age,
            },
        ));
        let mirror = Arc::new(crate::registry::mirror::Mirror::new(&settings.mirror)?);
        for upstream in &settings.mirror.upstreams {
            log::info!(
                "pull-through cache of {} as {}/...{}",
                upstream.url,
                upstream.prefix,
                if upstream.default {
                    ", and for every repository this registry does not hold"
                } else {
                    ""
                }
            );
        }
        let rules = Arc::new(crate::registry::rules::Rules::new(&settings.rules));
        for rule in &settings.rules {
            log::info!(
                "rule for {:?}: immutable tags {:?}",
                rule.repositories,
                rule.immutable_tags
            );
        }
        Ok(Self {
            rules,
            sizes: Default::default(),
            notifications,
            mirror,
            upload_sessions,
            settings: Arc::new(settings),
            storage,
            search,
            events,
            auth,
            owners,
        })
    }
}

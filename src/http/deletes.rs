//! Deleting a tag or a manifest, with what follows every delete: the
//! activity recorded for the notifications (before the answer, so none is
//! lost) and the events the search index follows. The APIs' `DELETE`s and
//! the pages' delete go through here, so each tells the same.

use actix_web::HttpRequest;

use crate::events::{Action, Activity, Event, Target, Unrecorded};
use crate::names::{RepositoryName, Tag};
use crate::registry::oci::{self, manifests, Name, Reference};
use crate::registry::{bridge, legacy, mirror, AppState};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Oci(#[from] oci::Error),
    #[error(transparent)]
    Legacy(#[from] legacy::Error),
    #[error(transparent)]
    Mirror(#[from] mirror::Error),
    /// Done, but the notifications' queue could not take the activity.
    #[error("{0}")]
    Unrecorded(#[from] Unrecorded),
}

/// `DELETE /v2/<name>/manifests/<reference>`: a tag (the manifest stays)
/// or a manifest with every tag on it.
pub async fn manifest(
    state: &AppState,
    req: &HttpRequest,
    name: &Name,
    reference: &Reference,
) -> Result<(), Error> {
    let deleted = manifests::delete(&*state.storage, &state.rules, name, reference).await?;
    if state.notifications.wants(Action::Delete) {
        let target = match reference {
            Reference::Tag(tag) => Target {
                tag: Some(tag.to_string()),
                ..Default::default()
            },
            Reference::Digest(digest) => Target {
                digest: Some(digest.clone()),
                ..Default::default()
            },
        };
        let target = Target {
            repository: name.to_string(),
            url: Some(super::activity::url(
                req,
                &format!("/v2/{name}/manifests/{reference}"),
            )),
            ..target
        };
        record(state, req, target).await?;
    }
    let Some(repo) = RepositoryName::parse(name.as_str())
        .inspect_err(|e| log::warn!("no events for {name}: {e}"))
        .ok()
    else {
        return Ok(());
    };
    for tag in deleted.tags.iter().filter_map(|t| Tag::parse(t.as_str())) {
        state
            .events
            .publish(Event::TagDeleted {
                name: repo.clone(),
                tag,
            })
            .await;
    }
    // Its last manifest: gone from search unless the v1 tree (or the other
    // v2 spelling of `library/x`) still holds it.
    if deleted.repository_empty && !bridge::still_held(&*state.storage, &repo).await {
        state
            .events
            .publish(Event::RepositoryDeleted { name: repo })
            .await;
    }
    Ok(())
}

/// `DELETE /v1/repositories/<name>/tags/<tag>`.
pub async fn v1_tag(
    state: &AppState,
    req: &HttpRequest,
    name: &RepositoryName,
    tag: &Tag,
) -> Result<(), Error> {
    legacy::delete_tag(&*state.storage, &state.rules, name, tag).await?;
    mirror::legacy::forget_copy(&*state.storage, name, tag).await?;
    v1_recorded(state, req, name, Some(tag)).await?;
    state
        .events
        .publish(Event::TagDeleted {
            name: name.clone(),
            tag: tag.clone(),
        })
        .await;
    Ok(())
}

/// The activity of a v1 delete: of tag `tag` of `name`, or of the whole
/// repository.
pub async fn v1_recorded(
    state: &AppState,
    req: &HttpRequest,
    name: &RepositoryName,
    tag: Option<&Tag>,
) -> Result<(), Unrecorded> {
    if !state.notifications.wants(Action::Delete) {
        return Ok(());
    }
    let target = Target {
        repository: name.to_string(),
        tag: tag.map(|t| t.to_string()),
        ..Default::default()
    };
    record(state, req, target).await
}

async fn record(state: &AppState, req: &HttpRequest, target: Target) -> Result<(), Unrecorded> {
    let repository = target.repository.clone();
    let activity = Activity {
        action: Action::Delete,
        target,
        request: super::activity::request(req),
    };
    state.events.record(activity).await.inspect_err(|e| {
        log::error!("delete of {repository}: {e}");
    })
}

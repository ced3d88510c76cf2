//! `/v1/repositories/<ns>/<repo>/...`: tags, the repository and tag JSON,
//! properties, and deleting a repository.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::error::{Error, Result};
use super::http::{self, JSON_BODY_LIMIT};
use super::response;
use crate::events::{Action, Activity, Event, TagTarget};
use crate::http::cache;
use crate::names::{ImageId, RepositoryName, Tag};
use crate::registry::legacy as store;
use crate::registry::{bridge, mirror, AppState};

pub async fn list(state: web::Data<AppState>, repo: web::Path<String>) -> Result<HttpResponse> {
    let name = http::repository(&repo)?;
    // This registry's tags, with a v1 source's copied in (see
    // `registry::mirror::legacy`).
    let (tags, freshness) = state.mirror.v1_tags(&*state.storage, &name).await?;
    let mut resp = response::json_builder(StatusCode::OK);
    cache::freshness(&mut resp, freshness);
    Ok(response::json_on(resp, &tags))
}

pub async fn get(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse> {
    let (repo, tag) = path.into_inner();
    let name = http::repository(&repo)?;
    let (image, freshness) = state.mirror.v1_tag(&*state.storage, &name, &tag).await?;
    let mut resp = response::json_builder(StatusCode::OK);
    cache::freshness(&mut resp, freshness);
    Ok(response::json_on(resp, &image))
}

pub async fn put(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let (repo, tag) = path.into_inner();
    let name = http::repository(&repo)?;
    let tag = Tag::parse(&tag).ok_or(Error::InvalidTag)?;
    let body = http::read_body(payload, JSON_BODY_LIMIT).await?;
    let user_agent = http::user_agent_pairs(&req);
    let image = store::put_tag(
        &*state.storage,
        &state.rules,
        &name,
        &tag,
        &body,
        &user_agent,
    )
    .await?;
    // Pushed here: this registry's own from now on, never the source's.
    mirror::legacy::forget_copy(&*state.storage, &name, &tag).await?;
    if state.notifications.wants(Action::Push) {
        notify_push(&state, &req, &name, &tag, &image).await?;
    }
    state
        .events
        .publish(Event::TagPushed {
            name,
            tag,
            target: TagTarget::Image(image),
        })
        .await;
    Ok(response::ok_true())
}

/// A v1 tag push is told as the push of the manifest the bridge serves for
/// it over v2, so that a consumer sees one kind of push whatever the
/// client spoke.
async fn notify_push(
    state: &AppState,
    req: &HttpRequest,
    name: &RepositoryName,
    tag: &Tag,
    image: &ImageId,
) -> Result<()> {
    let bridged = match bridge::tagged_image(&*state.storage, name, image).await {
        Ok(bridged) => bridged,
        Err(e) => {
            // The tag is pushed; a v2 client could not pull it either.
            log::warn!("no notification of the v1 push of {name}:{tag}: not servable over v2: {e}");
            return Ok(());
        }
    };
    let references = bridge::references(&bridged)
        .into_iter()
        .map(Into::into)
        .collect();
    let digest = bridged.manifest_digest.clone();
    let activity = Activity {
        action: Action::Push,
        target: crate::events::Target {
            repository: name.to_string(),
            digest: Some(digest.clone()),
            media_type: Some(bridge::image::OCI_MANIFEST.to_owned()),
            size: Some(bridged.manifest.len() as u64),
            url: Some(crate::http::activity::url(
                req,
                &format!("/v2/{name}/manifests/{digest}"),
            )),
            tag: Some(tag.to_string()),
            from_repository: None,
            references,
        },
        request: crate::http::activity::request(req),
    };
    record(state, activity).await
}

/// Queues `activity` for the notifications before the answer (a 503 when
/// it cannot be: the client tries again).
async fn record(state: &AppState, activity: Activity) -> Result<()> {
    let what = format!(
        "{} of {}",
        activity.action.as_str(),
        activity.target.repository
    );
    state.events.record(activity).await.map_err(|e| {
        log::error!("{what}: {e}");
        e.into()
    })
}

pub async fn delete(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse> {
    let (repo, tag) = path.into_inner();
    let name = http::repository(&repo)?;
    crate::http::deletes::v1_tag(&state, &req, &name, &Tag::unchecked(&tag)).await?;
    Ok(response::ok_true())
}

pub async fn tag_json(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse> {
    let (repo, tag) = path.into_inner();
    let name = http::repository(&repo)?;
    let json = store::tag_json(&*state.storage, &name, &Tag::unchecked(&tag)).await?;
    Ok(response::json_raw(StatusCode::OK, json))
}

pub async fn repository_json(
    state: web::Data<AppState>,
    repo: web::Path<String>,
) -> Result<HttpResponse> {
    let name = http::repository(&repo)?;
    let json = store::repository_json(&*state.storage, &name).await?;
    Ok(response::json_raw(StatusCode::OK, json))
}

pub async fn delete_repository(
    state: web::Data<AppState>,
    req: HttpRequest,
    repo: web::Path<String>,
) -> Result<HttpResponse> {
    let name = http::repository(&repo)?;
    store::delete_repository(&*state.storage, &state.rules, &name).await?;
    mirror::legacy::forget_repository(&*state.storage, &name).await?;
    crate::http::deletes::v1_recorded(&state, &req, &name, None).await?;
    // The v1 tree only: a v2 tree that still holds it keeps it in search.
    if !bridge::still_held(&*state.storage, &name).await {
        state
            .events
            .publish(Event::RepositoryDeleted { name })
            .await;
    }
    Ok(response::ok_true())
}

pub async fn get_properties(
    state: web::Data<AppState>,
    repo: web::Path<String>,
) -> Result<HttpResponse> {
    let name = http::repository(&repo)?;
    let access = if store::is_private(&*state.storage, &name).await? {
        "private"
    } else {
        "public"
    };
    Ok(response::json(StatusCode::OK, &json!({ "access": access })))
}

/// `{"access": "private"|"public"}` and/or `{"description": "..."}`; the
/// description is what search shows for the repository.
pub async fn put_properties(
    state: web::Data<AppState>,
    repo: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let name = http::repository(&repo)?;
    let body = http::read_body(payload, JSON_BODY_LIMIT).await?;
    let properties = store::Properties::parse(&body)?;
    let storage = &*state.storage;
    if let Some(description) = properties.description {
        // A description names a repository that exists; a typo must not
        // make up a search entry.
        if !store::repository_exists(storage, &name).await? {
            return Err(Error::RepositoryNotFound);
        }
        state
            .events
            .publish(Event::RepositoryUpdated {
                name: name.clone(),
                description: Some(description),
            })
            .await;
    }
    if let Some(private) = properties.private {
        store::set_private(storage, &name, private).await?;
    }
    Ok(response::ok_true())
}

//! `/v2/<name>/manifests/<reference>`: push, pull (GET and HEAD) and delete
//! by tag or digest, and the events a push or delete publishes.
//!
//! A pull answers with the bytes as stored and their own media type,
//! whatever the `Accept` header asks: the registry converts nothing, and a
//! client that cannot read the type says so itself.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;

use super::error::{Error, Result};
use crate::events::{Action, Event, TagTarget};
use crate::http::body::{self, BodyError};
use crate::names::RepositoryName;
use crate::registry::oci::name::InvalidReference;
use crate::registry::oci::{self, manifests, Name, Reference, Tag};
use crate::registry::AppState;

fn reference(req: &HttpRequest) -> Result<Reference> {
    let raw = req.match_info().get("reference").unwrap_or_default();
    Ok(Reference::parse(raw)?)
}

/// The body, refused as soon as it is known to pass `limit`: by its
/// `Content-Length` before a byte is read, else by the bytes received.
async fn read_bounded(req: &HttpRequest, payload: web::Payload, limit: usize) -> Result<Bytes> {
    let too_large = || {
        Error::from(oci::Error::TooLarge {
            limit: limit as u64,
        })
    };
    if body::declared_length(req.headers()).is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    body::read_body(payload, limit).await.map_err(|e| match e {
        BodyError::TooLarge(_) => too_large(),
        BodyError::Interrupted => Error::ManifestInvalid("the request body broke off".into()),
    })
}

/// GET and HEAD (actix sends the headers of a HEAD answer, not its body).
pub async fn get(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse> {
    let name = super::name(&req)?;
    // A reference that breaks the tag grammar names no manifest: a pull
    // answers 404, as the spec and distribution do (a push of one is a
    // 400). One with a `:` was meant as a digest: a bad one is a 400
    // DIGEST_INVALID, which tells the client what it got wrong.
    let raw = req.match_info().get("reference").unwrap_or_default();
    let reference = Reference::parse(raw).map_err(|e| match e {
        InvalidReference::Tag(_) => Error::ManifestUnknown(raw.chars().take(200).collect()),
        InvalidReference::Digest(d) => d.into(),
    })?;
    // The v2 tree's manifest, else the v1 tag's (see `registry::bridge`),
    // else the pull-through cache's copy.
    let accept = req
        .headers()
        .get_all(header::ACCEPT)
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(", ");
    let accept = if accept.is_empty() {
        ALL_MANIFESTS
    } else {
        &accept
    };
    let ns = super::namespace(&req);
    let served = state
        .mirror
        .manifest(&*state.storage, &name, ns.as_deref(), &reference, accept)
        .await?;
    if let Some(repo) = served.fetched_into.as_ref().and_then(repository_name) {
        let event = Event::RepositoryUpdated {
            name: repo,
            description: None,
        };
        publish(&state, vec![event]).await;
    }
    let stored = served.stored;
    if req.method() == actix_web::http::Method::GET {
        let target = crate::events::Target {
            digest: Some(stored.digest.clone()),
            media_type: Some(stored.media_type.clone()),
            size: Some(stored.bytes.len() as u64),
            tag: match &reference {
                Reference::Tag(tag) => Some(tag.to_string()),
                Reference::Digest(_) => None,
            },
            ..Default::default()
        };
        let path = format!("manifests/{}", stored.digest);
        super::record(&state, &req, Action::Pull, &name, &path, target).await?;
    }
    let digest = stored.digest.to_string();
    // The ETag is the quoted digest, as distribution sends it.
    let etag = format!("\"{digest}\"");
    let not_modified = unchanged(&req, &digest);
    let mut resp = if not_modified {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    super::cache_headers(&mut resp, served.freshness, served.namespace.as_deref());
    resp.insert_header(("Docker-Content-Digest", digest.as_str()))
        .insert_header((header::ETAG, etag));
    if not_modified {
        return Ok(resp.finish());
    }
    Ok(resp
        .insert_header((header::CONTENT_TYPE, stored.media_type))
        .body(stored.bytes))
}

/// What a pull through the cache asks the upstream for when the client
/// names no type: every manifest type this registry stores.
const ALL_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json";

/// Whether `If-None-Match` names the manifest the client already holds
/// (RFC 9110, 13.1.2: a list of entity tags, weak ones compared weakly,
/// or `*`). An unquoted digest is taken too, as distribution takes it.
fn unchanged(req: &HttpRequest, digest: &str) -> bool {
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim())
        .any(|tag| {
            let tag = tag.strip_prefix("W/").unwrap_or(tag);
            let tag = tag
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .unwrap_or(tag);
            tag == "*" || tag == digest
        })
}

/// The most tags one push may name with `?tag=` (the spec asks for at
/// least 10): each is two writes, and the answer lists each.
const MAX_TAGS: usize = 100;

/// The tags of `?tag=`, each checked against the grammar, duplicates
/// dropped.
fn query_tags(req: &HttpRequest) -> Result<Vec<Tag>> {
    let query = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default();
    let mut tags: Vec<Tag> = Vec::new();
    for (_, value) in query.iter().filter(|(k, _)| k == "tag") {
        let tag = Tag::parse(value).map_err(|e| Error::ManifestInvalid(e.to_string()))?;
        if !tags.contains(&tag) {
            tags.push(tag);
        }
        if tags.len() > MAX_TAGS {
            return Err(Error::TooManyTags(MAX_TAGS));
        }
    }
    Ok(tags)
}

pub async fn put(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let name = super::name(&req)?;
    let reference = reference(&req)?;
    let tags = query_tags(&req)?;
    let body = read_bounded(&req, payload, manifests::MAX_SIZE).await?;
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let storage = &*state.storage;
    let pushed = manifests::put_tagged(
        storage,
        &state.rules,
        &name,
        &reference,
        &tags,
        content_type,
        body,
    )
    .await?;

    let events = repository_name(&name).map(|repo| {
        let mut events = Vec::new();
        if pushed.first_in_repository {
            events.push(Event::RepositoryCreated {
                name: repo.clone(),
                description: None,
            });
        }
        for tag in pushed
            .tags
            .iter()
            .filter_map(|t| crate::names::Tag::parse(t.as_str()))
        {
            events.push(Event::TagPushed {
                name: repo.clone(),
                tag,
                target: TagTarget::Manifest(pushed.digest.clone()),
            });
        }
        events
    });
    publish(&state, events.unwrap_or_default()).await;
    let target = crate::events::Target {
        digest: Some(pushed.digest.clone()),
        media_type: Some(pushed.media_type.clone()),
        size: Some(pushed.size),
        references: pushed.references.iter().cloned().map(Into::into).collect(),
        ..Default::default()
    };
    let path = format!("manifests/{}", pushed.digest);
    // One event a tag, as distribution sends them; one without a tag for a
    // push by digest alone.
    let tags: Vec<Option<String>> = if pushed.tags.is_empty() {
        vec![None]
    } else {
        pushed.tags.iter().map(|t| Some(t.to_string())).collect()
    };
    for tag in tags {
        let target = crate::events::Target {
            tag,
            ..target.clone()
        };
        super::record(&state, &req, Action::Push, &name, &path, target).await?;
    }

    let digest = pushed.digest.to_string();
    let mut resp = HttpResponse::Created();
    resp.insert_header((header::LOCATION, format!("/v2/{name}/manifests/{digest}")))
        .insert_header(("Docker-Content-Digest", digest));
    for tag in &pushed.tags {
        // One header a tag: a client may look for each (spec: `OCI-Tag`).
        resp.append_header(("OCI-Tag", tag.as_str()));
    }
    if let Some(subject) = &pushed.subject {
        // Tells the client this registry keeps the referrers itself, so it
        // must not maintain the fallback tag.
        resp.insert_header(("OCI-Subject", subject.to_string()));
    }
    Ok(resp.finish())
}

pub async fn delete(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse> {
    if !state.settings.delete_enabled {
        return Ok(super::base::unsupported(
            "deletes are disabled on this registry",
            "GET, HEAD, PUT",
        ));
    }
    let name = super::name(&req)?;
    let reference = reference(&req)?;
    crate::http::deletes::manifest(&state, &req, &name, &reference).await?;
    Ok(HttpResponse::Accepted().finish())
}

/// The v1 name the events speak of (`a/b/c` is namespace `a`, repository
/// `b/c`; `x` is `library/x`).
fn repository_name(name: &Name) -> Option<RepositoryName> {
    RepositoryName::parse(name.as_str())
        .inspect_err(|e| log::warn!("no events for {name}: {e}"))
        .ok()
}

async fn publish(state: &AppState, events: Vec<Event>) {
    for event in events {
        state.events.publish(event).await;
    }
}

//! The v2 API: the OCI distribution specification 1.1, one file a resource
//! (`base`, `blobs`, `uploads`, `manifests`, `tags`, `catalog`,
//! `referrers`), and one request of ours (`repository`: delete one
//! whole). Handlers parse the request, call the model in
//! [`crate::registry::oci`], and map the result; every wire error lives
//! in [`error`]; who may do what is decided once, by the [`gate`], before
//! a handler runs.

mod base;
mod blobs;
mod catalog;
pub mod error;
mod gate;
mod manifests;
mod referrers;
mod repository;
mod tags;
mod uploads;

pub use error::Error;

use std::rc::Rc;

use actix_web::middleware::DefaultHeaders;
use actix_web::{web, HttpRequest};

use crate::config::Settings;
use crate::http::gate::gated;
use crate::registry::oci::Name;
use gate::Route;

/// The repository part of a route: one or more `/`-separated components.
/// The name's own grammar is checked by [`name`], not by the router, so a
/// bad name is a 400 `NAME_INVALID`, not a 404.
const NAME: &str = "/{name:.+}";

/// Registers every v2 route under `/v2`.
///
/// Every route is a gated resource ([`crate::http::gate::gated`]), so none
/// can skip the auth check.
/// `_catalog` comes before the name routes (it is no repository). The name
/// swallows any number of segments but must be followed by one of the
/// fixed suffixes, so the resources do not overlap.
pub fn routes(cfg: &mut web::ServiceConfig, _settings: &Settings) {
    let auth = Rc::new(gate::Auth);
    // Each resource names the methods it has: a 405 must list them in
    // `Allow` (RFC 9110), and a client retrying blindly learns nothing else.
    let in_repository = |allow: &'static str, paths: &[&str]| {
        gated(&auth, Route::Repository, paths)
            .default_service(web::to(move || base::method_not_allowed(allow)))
    };
    let registry = |route: Route, allow: &'static str, paths: &[&str]| {
        gated(&auth, route, paths).default_service(web::to(move || base::method_not_allowed(allow)))
    };
    cfg.service(
        web::scope("/v2")
            // Clients (docker since 1.6) look for it on every answer to tell
            // a v2 registry from anything else on the port.
            .wrap(DefaultHeaders::new().add(("Docker-Distribution-Api-Version", "registry/2.0")))
            // HEAD goes wherever GET does (HTTP requires it of every
            // server; clients probe `/v2/` with it): actix strips the body
            // and keeps the GET's Content-Length.
            .service(
                registry(Route::Base, "GET, HEAD", &["", "/"])
                    .route(web::get().to(base::check))
                    .route(web::head().to(base::check)),
            )
            .service(
                registry(Route::Catalog, "GET, HEAD", &["/_catalog"])
                    .route(web::get().to(catalog::list))
                    .route(web::head().to(catalog::list)),
            )
            .service(
                in_repository(
                    "POST",
                    &[
                        &format!("{NAME}/blobs/uploads/"),
                        &format!("{NAME}/blobs/uploads"),
                    ],
                )
                .route(web::post().to(uploads::start)),
            )
            .service(
                in_repository(
                    "GET, HEAD, PATCH, PUT, DELETE",
                    &[&format!("{NAME}/blobs/uploads/{{uuid}}")],
                )
                .route(web::get().to(uploads::status))
                .route(web::head().to(uploads::status))
                .route(web::patch().to(uploads::patch))
                .route(web::put().to(uploads::put))
                .route(web::delete().to(uploads::cancel)),
            )
            .service(
                in_repository("GET, HEAD, DELETE", &[&format!("{NAME}/blobs/{{digest}}")])
                    .route(web::get().to(blobs::get))
                    .route(web::head().to(blobs::get))
                    .route(web::delete().to(blobs::delete)),
            )
            .service(
                in_repository(
                    "GET, HEAD, PUT, DELETE",
                    &[&format!("{NAME}/manifests/{{reference}}")],
                )
                .route(web::get().to(manifests::get))
                .route(web::head().to(manifests::get))
                .route(web::put().to(manifests::put))
                .route(web::delete().to(manifests::delete)),
            )
            .service(
                in_repository("GET, HEAD", &[&format!("{NAME}/tags/list")])
                    .route(web::get().to(tags::list))
                    .route(web::head().to(tags::list)),
            )
            .service(
                in_repository("GET, HEAD", &[&format!("{NAME}/referrers/{{digest}}")])
                    .route(web::get().to(referrers::list))
                    .route(web::head().to(referrers::list)),
            )
            .service(
                in_repository("DELETE", &[&format!("{NAME}/{}", repository::PATH)])
                    .route(web::delete().to(repository::delete)),
            )
            .default_service(web::to(base::not_found)),
    );
}

/// containerd's `?ns=<registry host>`: which upstream a mirror request is
/// for (OCI distribution spec, main).
pub(crate) fn namespace(req: &HttpRequest) -> Option<String> {
    web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .ok()?
        .into_inner()
        .into_iter()
        .find(|(k, _)| k == "ns")
        .map(|(_, v)| v)
}

/// The headers of an answer the pull-through cache made: how
/// (`X-Registry-Cache: hit|miss|revalidated|stale`, a `Warning` when
/// stale) and, for a request that named one, the namespace it is for.
pub(crate) fn cache_headers(
    resp: &mut actix_web::HttpResponseBuilder,
    freshness: Option<crate::registry::mirror::Freshness>,
    namespace: Option<&str>,
) {
    crate::http::cache::freshness(resp, freshness);
    if let Some(ns) = namespace {
        resp.insert_header(("OCI-Namespace", ns));
    }
}

/// The repository a request names, checked against the spec's grammar.
pub(crate) fn name(req: &HttpRequest) -> Result<Name, Error> {
    let raw = req.match_info().get("name").unwrap_or_default();
    Ok(Name::parse(raw)?)
}

/// Tells the notifications what `req` did to `target` of the repository
/// `name` (at `path` below it: `blobs/<digest>`, `manifests/<digest>`).
/// Queued before the answer: when it cannot be, the client gets a 503 and
/// pushes again (what it pushed is stored, and a push is idempotent).
pub(crate) async fn record(
    state: &crate::registry::AppState,
    req: &HttpRequest,
    action: crate::events::Action,
    name: &Name,
    path: &str,
    target: crate::events::Target,
) -> Result<(), Error> {
    if !state.notifications.wants(action) {
        return Ok(());
    }
    let target = crate::events::Target {
        repository: name.to_string(),
        url: Some(crate::http::activity::url(
            req,
            &format!("/v2/{name}/{path}"),
        )),
        ..target
    };
    let activity = crate::events::Activity {
        action,
        target,
        request: crate::http::activity::request(req),
    };
    state.events.record(activity).await.map_err(|e| {
        log::error!("{} of {name}/{path}: {e}", action.as_str());
        Error::Unavailable
    })
}

/// What an activity on the blob `digest` of `size` bytes names.
pub(crate) fn blob_target(
    digest: &crate::registry::oci::Digest,
    size: Option<u64>,
) -> crate::events::Target {
    crate::events::Target {
        digest: Some(digest.clone()),
        media_type: Some("application/octet-stream".to_owned()),
        size,
        ..Default::default()
    }
}

//! The v2 API: the OCI distribution specification 1.1, one file a resource
//! (`base`, `blobs`, `uploads`, `manifests`, `tags`, `catalog`,
//! `referrers`). Handlers parse the request, call the model in
//! [`crate::registry::oci`], and map the result; every wire error lives in
//! [`error`].

mod base;
pub mod error;

pub use error::Error;

use actix_web::middleware::DefaultHeaders;
use actix_web::{web, HttpRequest};

use crate::config::Settings;
use crate::registry::oci::Name;

/// The repository part of a route: one or more `/`-separated components.
/// The name's own grammar is checked by [`name`], not by the router, so a
/// bad name is a 400 `NAME_INVALID`, not a 404.
const NAME: &str = "/{name:.+}";

/// Registers every v2 route under `/v2`.
///
/// Longer suffixes go first: the name swallows any number of segments, so
/// `/<name>/blobs/uploads/` must be tried before `/<name>/blobs/<digest>`.
pub fn routes(cfg: &mut web::ServiceConfig, _settings: &Settings) {
    cfg.service(
        web::scope("/v2")
            // Clients (docker since 1.6) look for it on every answer to tell
            // a v2 registry from anything else on the port.
            .wrap(DefaultHeaders::new().add(("Docker-Distribution-Api-Version", "registry/2.0")))
            .route("/", web::get().to(base::check))
            .route("", web::get().to(base::check))
            .default_service(web::to(base::not_found)),
    );
}

/// The repository a request names, checked against the spec's grammar.
pub(crate) fn name(req: &HttpRequest) -> Result<Name, Error> {
    let raw = req.match_info().get("name").unwrap_or_default();
    Ok(Name::parse(raw)?)
}

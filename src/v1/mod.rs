//! The v1 registry API, grouped as the API is: status (`ping`), `images`,
//! `tags` (and repositories), the stand-in `index`, `search`.
//!
//! Handlers parse the request, call the domain, map the result; the
//! statuses and messages of every error live in [`error`].

mod ping;
mod search;

use actix_web::web;

/// Registers every v1 route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(ping::root))
        .route("/_ping", web::get().to(ping::ping))
        .route("/v1/_ping", web::get().to(ping::ping))
        .route("/v1/search", web::get().to(search::search));
}

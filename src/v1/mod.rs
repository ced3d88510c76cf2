//! The v1 registry API, grouped as the API is: status (`ping`), `images`,
//! `tags` (and repositories), the stand-in `index`, `search`.
//!
//! Handlers parse the request, call the model in [`store`], and map the
//! result; the statuses and messages of every error live in [`error`].

pub mod auth;
mod error;
mod http;
mod images;
mod index;
mod layer_files;
mod legacy_json;
mod ping;
mod search;
mod store;
mod tags;

pub use error::Error;

use actix_web::web;

use crate::config::Settings;

/// A repository name in a URL: one or more path segments.
const REPO: &str = "/v1/repositories/{repository:.+}";

/// Registers every v1 route. The stand-in index only exists for a
/// standalone registry; otherwise a real index answers those.
pub fn routes(cfg: &mut web::ServiceConfig, settings: &Settings) {
    cfg.route("/", web::get().to(ping::root))
        .route("/_ping", web::get().to(ping::ping))
        .route("/v1/_ping", web::get().to(ping::ping))
        .route("/v1/search", web::get().to(search::search));

    cfg.service(
        web::resource("/v1/images/{id}/json")
            .route(web::get().to(images::get_json))
            .route(web::put().to(images::put_json)),
    )
    .service(
        web::resource("/v1/images/{id}/layer")
            .route(web::get().to(images::get_layer))
            .route(web::put().to(images::put_layer)),
    )
    .route(
        "/v1/images/{id}/checksum",
        web::put().to(images::put_checksum),
    )
    .route(
        "/v1/images/{id}/ancestry",
        web::get().to(images::get_ancestry),
    )
    .route("/v1/images/{id}/files", web::get().to(images::get_files));

    // Longest suffixes first: the repository part swallows any segments.
    cfg.route(
        &format!("{REPO}/tags/{{tag}}/json"),
        web::get().to(tags::tag_json),
    )
    .service(
        web::resource(format!("{REPO}/tags/{{tag}}"))
            .route(web::get().to(tags::get))
            .route(web::put().to(tags::put))
            .route(web::delete().to(tags::delete)),
    )
    .service(
        web::resource(format!("{REPO}/tags"))
            .route(web::get().to(tags::list))
            .route(web::delete().to(tags::delete_repository)),
    )
    .service(
        web::resource(format!("{REPO}/properties"))
            .route(web::get().to(tags::get_properties))
            .route(web::put().to(tags::put_properties)),
    )
    .route(
        &format!("{REPO}/json"),
        web::get().to(tags::repository_json),
    );

    if settings.standalone {
        cfg.service(
            web::resource(["/v1/users", "/v1/users/"])
                .route(web::get().to(index::get_users))
                .route(web::post().to(index::post_users)),
        )
        .route("/v1/users/{username}/", web::put().to(index::put_user))
        .service(
            web::resource(format!("{REPO}/images"))
                .route(web::get().to(index::get_images))
                .route(web::put().to(index::put_images))
                .route(web::delete().to(index::delete_images)),
        )
        .route(&format!("{REPO}/auth"), web::put().to(index::put_auth))
        .route(REPO, web::put().to(index::put_repository));
    }
    cfg.route(REPO, web::delete().to(tags::delete_repository));
}

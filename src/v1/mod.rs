//! The v1 registry API, grouped as the API is: status (`ping`), `images`,
//! `tags` (and repositories), the stand-in `index`, `search`.
//!
//! Handlers parse the request, call the model in
//! [`crate::registry::legacy`], and map the result; the statuses and
//! messages of every error live in [`error`].

pub mod auth;
mod error;
mod http;
mod images;
mod index;
mod ping;
mod search;
mod tags;

pub use error::Error;

use actix_web::web;

use crate::config::Settings;

/// A repository name in a URL, inside the `/v1/repositories` scope: one or
/// more path segments.
const REPO: &str = "/{repository:.+}";

/// Registers every v1 route. The stand-in index only exists for a
/// standalone registry; otherwise a real index answers those.
///
/// Images and repositories are scopes: a request is matched against the
/// patterns of its own scope only (each pattern is a regex run; they were
/// 5 to 8 % of the CPU of a small request when tried one after another).
pub fn routes(cfg: &mut web::ServiceConfig, settings: &Settings) {
    cfg.route("/", web::get().to(ping::root))
        .route("/_ping", web::get().to(ping::ping))
        .route("/v1/_ping", web::get().to(ping::ping))
        .route("/v1/search", web::get().to(search::search));

    cfg.service(
        web::scope("/v1/images")
            .service(
                web::resource("/{id}/json")
                    .route(web::get().to(images::get_json))
                    .route(web::put().to(images::put_json)),
            )
            .service(
                web::resource("/{id}/layer")
                    .route(web::get().to(images::get_layer))
                    .route(web::put().to(images::put_layer)),
            )
            .route("/{id}/checksum", web::put().to(images::put_checksum))
            .route("/{id}/ancestry", web::get().to(images::get_ancestry))
            .route("/{id}/files", web::get().to(images::get_files)),
    );

    if settings.standalone {
        cfg.service(
            web::resource(["/v1/users", "/v1/users/"])
                .route(web::get().to(index::get_users))
                .route(web::post().to(index::post_users)),
        )
        .route("/v1/users/{username}/", web::put().to(index::put_user));
    }
    cfg.service(
        web::scope("/v1/repositories")
            .configure(|repos| repository_routes(repos, settings.standalone)),
    );
}

/// The routes under `/v1/repositories`, longest suffixes first: the
/// repository part swallows any segments.
fn repository_routes(cfg: &mut web::ServiceConfig, standalone: bool) {
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

    if standalone {
        cfg.service(
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

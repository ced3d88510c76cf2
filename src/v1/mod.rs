//! The v1 registry API, grouped as the API is: status (`ping`), `images`,
//! `tags` (and repositories), the stand-in `index`, `search`.
//!
//! Handlers parse the request, call the model in
//! [`crate::registry::legacy`], and map the result; the statuses and
//! messages of every error live in [`error`].

mod error;
mod gate;
mod http;
mod images;
mod index;
mod ping;
pub mod response;
mod search;
mod tags;

pub use error::Error;

use std::rc::Rc;

use actix_web::{guard, web};

use crate::http::gate::gated;
use gate::Route;

use crate::config::Settings;

/// A repository name in a URL, inside the `/v1/repositories` scope: one or
/// more path segments.
const REPO: &str = "/{repository:.+}";

/// Registers every v1 route.
///
/// Every route that acts on images or repositories is a [`gated`]
/// resource: the auth gate checks the request before its handler runs.
/// Only the status routes and the stand-in index's user and auth routes
/// are open, as they were in the old registry; search is gated too, open
/// unless logins (issue 12) are on.
///
/// Images and repositories are scopes: a request is matched against the
/// patterns of its own scope only (each pattern is a regex run; they were
/// 5 to 8 % of the CPU of a small request when tried one after another).
pub fn routes(cfg: &mut web::ServiceConfig, settings: &Settings) {
    let auth = Rc::new(gate::Auth);
    cfg.route("/", web::get().to(ping::root))
        .route("/_ping", web::get().to(ping::ping))
        .route("/v1/_ping", web::get().to(ping::ping))
        .service(
            gated(&auth, Route::Search, &["/v1/search"])
                .guard(guard::Get())
                .route(web::get().to(search::search)),
        );

    let image = |path: &str| gated(&auth, Route::Image, &[path]);
    cfg.service(
        web::scope("/v1/images")
            .service(
                image("/{id}/json")
                    .route(web::get().to(images::get_json))
                    .route(web::put().to(images::put_json)),
            )
            .service(
                image("/{id}/layer")
                    .route(web::get().to(images::get_layer))
                    .route(web::put().to(images::put_layer)),
            )
            .service(
                image("/{id}/checksum")
                    .guard(guard::Put())
                    .route(web::put().to(images::put_checksum)),
            )
            .service(
                image("/{id}/ancestry")
                    .guard(guard::Get())
                    .route(web::get().to(images::get_ancestry)),
            )
            .service(
                image("/{id}/files")
                    .guard(guard::Get())
                    .route(web::get().to(images::get_files)),
            ),
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
            .configure(|repos| repository_routes(repos, &auth, settings.standalone)),
    );
}

/// The routes under `/v1/repositories`, longest suffixes first: the
/// repository part swallows any segments.
fn repository_routes(cfg: &mut web::ServiceConfig, auth: &Rc<gate::Auth>, standalone: bool) {
    let repository = |path: String| gated(auth, Route::Repository, &[&path]);
    cfg.service(
        repository(format!("{REPO}/tags/{{tag}}/json"))
            .guard(guard::Get())
            .route(web::get().to(tags::tag_json)),
    )
    .service(
        repository(format!("{REPO}/tags/{{tag}}"))
            .route(web::get().to(tags::get))
            .route(web::put().to(tags::put))
            .route(web::delete().to(tags::delete)),
    )
    .service(
        repository(format!("{REPO}/tags"))
            .route(web::get().to(tags::list))
            .route(web::delete().to(tags::delete_repository)),
    )
    .service(
        repository(format!("{REPO}/properties"))
            .route(web::get().to(tags::get_properties))
            .route(web::put().to(tags::put_properties)),
    )
    .service(
        repository(format!("{REPO}/json"))
            .guard(guard::Get())
            .route(web::get().to(tags::repository_json)),
    );

    if standalone {
        cfg.service(
            repository(format!("{REPO}/images"))
                .route(web::get().to(index::get_images))
                .route(web::put().to(index::put_images))
                .route(web::delete().to(index::delete_images)),
        )
        // The old registry asked no credentials here: the stand-in index
        // hands them out.
        .route(&format!("{REPO}/auth"), web::put().to(index::put_auth))
        .service(
            repository(REPO.to_owned())
                .guard(guard::Put())
                .route(web::put().to(index::put_repository)),
        );
    }
    cfg.service(
        repository(REPO.to_owned())
            .guard(guard::Delete())
            .route(web::delete().to(tags::delete_repository)),
    );
}

#[cfg(test)]
mod tests {
    use actix_web::{test, web, App};

    use crate::config::{from_text, lookup_from, ConfigSource};
    use crate::registry::AppState;

    /// Methods a gated resource does not serve fall through to the next
    /// resource and then to the JSON 404, as `ServiceConfig::route` did.
    #[actix_web::test]
    async fn gated_routes_match_as_plain_routes_did() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "prod:\n    storage: local\n    storage_path: {}\n    standalone: true\n",
            dir.path().display()
        );
        let settings = from_text(&text, ConfigSource::BuiltIn, "prod", &lookup_from(&[])).unwrap();
        let state = AppState::open(settings).await.unwrap();
        let settings = state.settings.clone();
        let app = test::init_service(
            App::new()
                .app_data(web::Data::new(state))
                .configure(|cfg| super::routes(cfg, &settings))
                .default_service(web::to(|| async {
                    super::response::error(actix_web::http::StatusCode::NOT_FOUND, "Not found")
                })),
        )
        .await;
        let status = |req: test::TestRequest| {
            let app = &app;
            async move { test::call_service(app, req.to_request()).await.status() }
        };
        let repo = "/v1/repositories/ns/app";
        assert_eq!(status(test::TestRequest::get().uri(repo)).await, 404);
        assert_eq!(status(test::TestRequest::delete().uri(repo)).await, 404);
        assert_eq!(
            status(test::TestRequest::put().uri(&format!("{repo}/auth"))).await,
            200
        );
        let id = "a".repeat(64);
        let checksum = format!("/v1/images/{id}/checksum");
        assert_eq!(status(test::TestRequest::get().uri(&checksum)).await, 404);
        // A method a resource does not serve: actix's 405, as before.
        let json = format!("/v1/images/{id}/json");
        assert_eq!(status(test::TestRequest::delete().uri(&json)).await, 405);
    }
}

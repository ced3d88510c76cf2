//! The web pages for people, the third face of the registry beside the v1
//! and v2 APIs: repositories found as one types, a repository's tags, an
//! image's config, history, layers and referrers.
//!
//! Server-rendered (askama templates in `templates/ui`, escaped there), a
//! little JavaScript of our own for searching as one types, nothing from
//! elsewhere: the binary serves its pages whole, offline. Every answer
//! carries a strict Content-Security-Policy (no inline script, nothing
//! from another origin), so that what a client wrote (a label, a history
//! command) shows as text and runs nothing even if a template forgot.
//!
//! `GET /` stays the old registry's JSON for clients: the page list takes
//! it only from browsers (`Accept: text/html`); `web_ui: false` leaves the
//! pages out, `web_ui_prefix` moves them under a path.

mod assets;
mod delete;
mod error;
mod gate;
mod image;
mod login;
mod page;
mod repositories;
mod repository;
mod tokens;

use std::rc::Rc;

use actix_web::http::header;
use actix_web::{guard, web};

use crate::config::Settings;
use crate::http::gate::gated;
use gate::Route;
pub use tokens::PageTokens;

/// The policy every page's answer carries: our own script and styles
/// only, no frames, forms only to us.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// A repository name, then (for an image) the reference, the last segment.
const NAME: &str = "{name:.+}";

/// Registers the pages, when they are on. Mounted before the APIs: the
/// list claims `GET /` of browsers only, the rest lives under paths
/// neither API uses (`/repository/`, `/image/`, `/delete/`, `/login`,
/// `/-/`), all under `web_ui_prefix`.
pub fn routes(
    cfg: &mut web::ServiceConfig,
    settings: &Settings,
    tokens: &web::Data<tokens::PageTokens>,
) {
    if !settings.web_ui.enabled {
        return;
    }
    cfg.app_data(tokens.clone());
    let prefix = settings.web_ui.prefix.clone();
    let auth = Rc::new(gate::Auth);
    let headers = actix_web::middleware::DefaultHeaders::new()
        .add((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::REFERRER_POLICY, "same-origin"))
        .add((header::X_FRAME_OPTIONS, "DENY"));
    let mut home = gated(&auth, Route::Catalog, &[&format!("{prefix}/")]).wrap(headers.clone());
    if prefix.is_empty() {
        // Clients asking `/` for JSON (curl's `*/*` included) get the old
        // answer: only a browser names text/html.
        home = home.guard(guard::fn_guard(|ctx| {
            page::wants_html(ctx.head().headers())
        }));
    } else {
        cfg.route(&prefix, web::get().to(page::to_home));
    }
    cfg.service(home.route(web::get().to(repositories::list)))
        .service(
            gated(&auth, Route::Catalog, &[&format!("{prefix}/-/search")])
                .wrap(headers.clone())
                .route(web::get().to(repositories::rows)),
        )
        .service(
            web::resource(format!("{prefix}/-/{{asset:ui\\.(?:js|css)}}"))
                .wrap(headers.clone())
                .route(web::get().to(assets::get)),
        )
        .service(
            gated(
                &auth,
                Route::Repository,
                &[&format!("{prefix}/repository/{NAME}")],
            )
            .wrap(headers.clone())
            .route(web::get().to(repository::tags)),
        )
        .service(
            gated(
                &auth,
                Route::Repository,
                &[&format!("{prefix}/image/{NAME}/{{reference}}")],
            )
            .wrap(headers.clone())
            .route(web::get().to(image::show)),
        )
        .service(
            gated(
                &auth,
                Route::Delete,
                &[&format!("{prefix}/delete/{NAME}/{{reference}}")],
            )
            .wrap(headers.clone())
            .route(web::get().to(delete::confirm))
            .route(web::post().to(delete::delete)),
        )
        .service(
            gated(&auth, Route::Login, &[&format!("{prefix}/login")])
                .wrap(headers)
                .route(web::get().to(login::login)),
        );
}

//! Logging in from the pages, with the browser's own password prompt:
//! `/login` answers the registry's `Basic` challenge until the browser
//! sends a password the registry takes, then goes back to the page that
//! asked. It sits at the top of the pages' paths on purpose: a browser
//! sends a password unasked only to the folder of the address that asked
//! for it and below (RFC 7617's protection space), so from there every
//! page gets it, as docker sends its login with every request.

use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::error::Error;
use super::page::{self, Page};
use crate::registry::AppState;

#[derive(Template)]
#[template(path = "ui/login.html")]
struct LoggedIn {
    page: Page,
    to: String,
}

#[derive(Deserialize)]
pub struct Params {
    to: Option<String>,
}

/// `GET /login?to=<page>`: reached only past the gate (see `Route::Login`).
///
/// Answered with a page that goes on by itself (a refresh, no script),
/// not a redirect: a browser sends the login it just gave with the
/// navigations that follow, not always with a redirect's.
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    params: web::Query<Params>,
) -> Result<HttpResponse, Error> {
    let prefix = &state.settings.web_ui.prefix;
    // Only back to one of our pages, never to another site: a path of
    // ours, of the characters our paths and queries use.
    let path_char = |c: char| c.is_ascii_alphanumeric() || "/-._~:@%?=&+".contains(c);
    let to = params
        .to
        .as_deref()
        .filter(|to| {
            to.starts_with(&format!("{prefix}/"))
                && !to.starts_with("//")
                && to.chars().all(path_char)
        })
        .map_or_else(|| format!("{prefix}/"), str::to_owned);
    page::html(&LoggedIn {
        page: Page::of(&state, &req),
        to,
    })
}

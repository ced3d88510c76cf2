//! Logging in from the pages, with the browser's own password prompt:
//! `/-/login` answers the registry's `Basic` challenge until the browser
//! sends a password the registry takes, then goes back to the page that
//! asked. The browser sends the password with every request from then on,
//! as docker does.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::error::Error;
use crate::registry::AppState;

#[derive(Deserialize)]
pub struct Params {
    to: Option<String>,
}

/// `GET /-/login?to=<page>`: reached only past the gate (see `Route::Login`).
pub async fn login(
    state: web::Data<AppState>,
    params: web::Query<Params>,
) -> Result<HttpResponse, Error> {
    let prefix = &state.settings.web_ui.prefix;
    // Only back to one of our pages: never a redirect to another site.
    let to = params
        .to
        .as_deref()
        .filter(|to| {
            to.starts_with(&format!("{prefix}/"))
                && !to.starts_with("//")
                && !to.contains('\\')
                && !to.chars().any(char::is_control)
        })
        .map_or_else(|| format!("{prefix}/"), str::to_owned);
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to))
        .finish())
}

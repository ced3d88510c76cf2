//! The pages' script and style sheet, built into the binary.

use actix_web::http::header;
use actix_web::{web, HttpResponse};

use super::error::Error;

const SCRIPT: &str = include_str!("assets/ui.js");
const STYLE: &str = include_str!("assets/ui.css");

/// `/-/ui.js`, `/-/ui.css`. Pages name them with the version in the
/// query, so a browser may keep them for a day.
pub async fn get(asset: web::Path<String>) -> Result<HttpResponse, Error> {
    let (body, content_type) = match asset.as_str() {
        "ui.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        "ui.css" => (STYLE, "text/css; charset=utf-8"),
        _ => return Err(Error::NotFound("No such file.".to_owned())),
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((header::CACHE_CONTROL, "public, max-age=86400"))
        .body(body))
}

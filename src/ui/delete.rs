//! Deleting a tag or a manifest from the pages: a confirmation page that
//! says what a delete does, then the delete itself, only from this
//! registry's own pages.
//!
//! A browser sends the password it holds with any request to the
//! registry, a forged one from another site too; so a delete must come
//! with `Sec-Fetch-Site: same-origin`, or else an `Origin` naming this
//! host. Browsers set both and no page of another site can; a request
//! with neither (not a browser) is refused too: clients have the API.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use super::error::Error;
use super::page::{self, Page};
use crate::http::deletes;
use crate::names::{RepositoryName, Tag};
use crate::registry::oci::{self, Name, Reference};
use crate::registry::{bridge, legacy, AppState};

#[derive(Template)]
#[template(path = "ui/delete.html")]
struct ConfirmPage {
    page: Page,
    name: String,
    reference: String,
    is_tag: bool,
    /// The tags that go with a manifest.
    tags: Vec<String>,
}

/// `GET /delete/<name>/<reference>`: what would go, and the button.
pub async fn confirm(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, Error> {
    let (name, reference) = target(&state, &req)?;
    let tags = match &reference {
        Reference::Tag(_) => Vec::new(),
        Reference::Digest(digest) => oci::tags::pointing_at(&*state.storage, &name, digest)
            .await?
            .into_iter()
            .map(|t| t.to_string())
            .collect(),
    };
    page::html(&ConfirmPage {
        page: Page::of(&state, &req),
        name: name.to_string(),
        reference: reference.to_string(),
        is_tag: matches!(reference, Reference::Tag(_)),
        tags,
    })
}

/// `POST /delete/<name>/<reference>`: the delete, then the repository's
/// page (or the list, when nothing of the repository is left).
pub async fn delete(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, Error> {
    if !same_origin(&req) {
        return Err(Error::Forbidden(
            "Deletes are made from this registry's own pages (the request named no origin, \
             or another one)."
                .to_owned(),
        ));
    }
    let (name, reference) = target(&state, &req)?;
    match &reference {
        Reference::Tag(tag) => delete_tag(&state, &req, &name, tag).await?,
        Reference::Digest(_) => deletes::manifest(&state, &req, &name, &reference).await?,
    }
    log::info!("web page: deleted {name}:{reference}");
    let prefix = &state.settings.web_ui.prefix;
    let left = match bridge::tags(&*state.storage, &name, Some(1), None).await {
        Ok(page) => !page.items.is_empty(),
        Err(oci::Error::NameUnknown(_)) => false,
        Err(e) => return Err(e.into()),
    };
    let to = if left {
        format!("{prefix}/repository/{name}")
    } else {
        format!("{prefix}/")
    };
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to))
        .finish())
}

/// A tag goes from whichever tree holds it (both, when both do: the page
/// showed one tag).
async fn delete_tag(
    state: &AppState,
    req: &HttpRequest,
    name: &Name,
    tag: &oci::Tag,
) -> Result<(), Error> {
    let mut found = false;
    match deletes::manifest(state, req, name, &Reference::Tag(tag.clone())).await {
        Ok(()) => found = true,
        Err(deletes::Error::Oci(oci::Error::ManifestUnknown(_) | oci::Error::NameUnknown(_))) => {}
        Err(e) => return Err(e.into()),
    }
    if let (Some(v1), Some(v1_tag)) = (bridge::v1_name(name), Tag::parse(tag.as_str())) {
        if v1_holds(state, &v1, &v1_tag).await? {
            deletes::v1_tag(state, req, &v1, &v1_tag).await?;
            found = true;
        }
    }
    if !found {
        return Err(Error::NotFound(format!("No tag {tag} in {name}.")));
    }
    Ok(())
}

async fn v1_holds(state: &AppState, name: &RepositoryName, tag: &Tag) -> Result<bool, Error> {
    match legacy::tag(&*state.storage, name, tag).await {
        Ok(_) => Ok(true),
        Err(legacy::Error::TagNotFound | legacy::Error::RepositoryNotFound) => Ok(false),
        Err(e) => Err(deletes::Error::Legacy(e).into()),
    }
}

fn target(state: &AppState, req: &HttpRequest) -> Result<(Name, Reference), Error> {
    if !state.settings.delete_enabled {
        return Err(Error::Forbidden(
            "Deletes are off on this registry (delete_enabled: false).".to_owned(),
        ));
    }
    let name = Name::parse(req.match_info().get("name").unwrap_or_default())
        .map_err(|e| Error::NotFound(e.to_string()))?;
    // The copies of a pull-through cache follow their upstream, as the
    // API's DELETE says.
    state
        .mirror
        .check_writable(&name)
        .map_err(deletes::Error::Mirror)?;
    let text = req.match_info().get("reference").unwrap_or_default();
    let reference = Reference::parse(text)
        .map_err(|_| Error::NotFound(format!("{text} is neither a tag nor a digest.")))?;
    Ok((name, reference))
}

/// The request comes from a page of this registry (see the module's note).
fn same_origin(req: &HttpRequest) -> bool {
    let headers = req.headers();
    if let Some(site) = headers.get("sec-fetch-site") {
        return site.as_bytes() == b"same-origin";
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let host = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    host.is_some_and(|host| host.eq_ignore_ascii_case(req.connection_info().host()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn only_requests_of_our_own_pages_delete() {
        let from = |headers: &[(&str, &str)]| {
            let mut req =
                TestRequest::post().insert_header((header::HOST, "registry.example:5000"));
            for (k, v) in headers {
                req = req.insert_header((*k, *v));
            }
            same_origin(&req.to_http_request())
        };
        assert!(from(&[("sec-fetch-site", "same-origin")]));
        assert!(!from(&[("sec-fetch-site", "cross-site")]));
        assert!(!from(&[("sec-fetch-site", "same-site")]));
        // The fetch metadata wins over an Origin that would pass.
        assert!(!from(&[
            ("sec-fetch-site", "cross-site"),
            ("origin", "http://registry.example:5000")
        ]));
        assert!(from(&[("origin", "http://registry.example:5000")]));
        assert!(from(&[("origin", "https://REGISTRY.example:5000")]));
        assert!(!from(&[("origin", "http://registry.example:5001")]));
        assert!(!from(&[("origin", "http://evil.example")]));
        assert!(!from(&[("origin", "null")]));
        assert!(!from(&[]));
    }
}

//! The pages' side of the auth gate ([`crate::http::gate`]): a page asks
//! what the API request behind it would ask (the list: the catalog; a
//! repository or image page: a pull of that repository; a delete: the
//! API's `DELETE`), so the pages show no more than a client may pull.
//!
//! With a token service, the page does the token flow for its user
//! ([`super::tokens`]): the browser's password prompt answers the page's
//! `Basic` challenge, a token of the scope the page needs comes from the
//! token service, and the decision is made with it.

use actix_web::dev::ServiceRequest;
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::Method;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use futures_util::future::LocalBoxFuture;

use super::error::Error;
use super::tokens::PageTokens;
use crate::http::activity::Actor;
use crate::http::gate::Policy;
use crate::names::RepositoryName;
use crate::registry::auth::{Challenge, Denial, Request, Target};
use crate::registry::oci::Name;
use crate::registry::AppState;

/// The realm of the page's own password prompt, with a token service.
const PAGE_REALM: &str = "registry-v1 (the token service's login)";

pub enum Route {
    /// The repository list and its search.
    Catalog,
    /// A page of the repository in the path (`name`).
    Repository,
    /// A delete in the repository in the path: asked as the API's
    /// `DELETE` is, for its confirmation page too.
    Delete,
    /// The login: whoever sends no valid password gets the challenge
    /// (the browser's prompt), as `/v2/` answers clients.
    Login,
}

pub struct Auth;

impl Policy for Auth {
    type Route = Route;

    fn admit<'a>(
        &'a self,
        route: &'a Route,
        req: &'a ServiceRequest,
    ) -> LocalBoxFuture<'a, Result<(), HttpResponse>> {
        Box::pin(async move { admit(route, req).await.map_err(|e| e.error_response()) })
    }
}

async fn admit(route: &Route, req: &ServiceRequest) -> Result<(), Error> {
    let (Some(state), Some(tokens)) = (
        req.app_data::<web::Data<AppState>>(),
        req.app_data::<web::Data<PageTokens>>(),
    ) else {
        log::error!("auth gate without application state");
        return Err(Error::Unauthorized);
    };
    let name = match route {
        Route::Repository | Route::Delete => {
            let text = req.match_info().get("name").unwrap_or_default();
            let name = Name::parse(text)
                .map_err(|_| Error::NotFound(format!("{text} is not a repository name.")))?;
            Some(name)
        }
        Route::Catalog | Route::Login => None,
    };
    let (method, target) = match (route, &name) {
        (Route::Delete, Some(name)) => (Method::DELETE, Asked::Repository(name)),
        (_, Some(name)) => (Method::GET, Asked::Repository(name)),
        (Route::Login, None) => (Method::GET, Asked::Login),
        (_, None) => (Method::GET, Asked::Catalog),
    };
    let actor = decide(
        state,
        tokens,
        req.request(),
        &method,
        target,
        Refusals::Count,
    )
    .await?;
    req.extensions_mut().insert(Actor(actor));
    Ok(())
}

/// What a page asks for.
#[derive(Clone, Copy)]
pub enum Asked<'a> {
    Catalog,
    Repository(&'a Name),
    /// A login check (`/v2/`'s).
    Login,
}

/// Whether a login the token service refuses counts as a failed one: on
/// the gate's own decision, once a request; not on the questions a page
/// asks besides (may this row be listed, may this be deleted), which a
/// valid login may well be refused.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Refusals {
    Count,
    Ignore,
}

/// Whether the request behind a page may do `method` on `asked`, and who
/// it comes from.
pub async fn decide(
    state: &AppState,
    tokens: &PageTokens,
    req: &HttpRequest,
    method: &Method,
    asked: Asked<'_>,
    refusals: Refusals,
) -> Result<Option<String>, Error> {
    let repository = match asked {
        Asked::Repository(name) => Some(
            RepositoryName::parse(name.as_str())
                .map_err(|_| Error::NotFound(format!("{name} is not a repository name.")))?,
        ),
        _ => None,
    };
    let target = match (asked, &repository) {
        (Asked::Repository(name), Some(repository)) => Target::Named {
            name: name.as_str(),
            repository,
        },
        (Asked::Login, _) => Target::Base,
        _ => Target::Catalog,
    };
    let ask = async |headers: &HeaderMap| {
        let request = Request {
            method,
            path: req.path(),
            query: "",
            headers,
            peer: req.peer_addr().map(|a| a.ip()),
        };
        state.auth.admit(&request, target).await
    };
    let denial = match ask(req.headers()).await {
        Ok((_, actor)) => return Ok(actor),
        Err(denial) => denial,
    };
    let Denial::Login(Challenge::Bearer {
        realm,
        service,
        scope,
        ..
    }) = denial
    else {
        return Err(denied(denial));
    };
    // A token service: the page asks it with the browser's login.
    let page_login = || {
        Error::Login(Challenge::Basic {
            realm: PAGE_REALM.to_owned(),
        })
    };
    let Some(basic) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() > 6 && v[..6].eq_ignore_ascii_case("basic "))
    else {
        return Err(page_login());
    };
    let peer = req.peer_addr().map(|a| a.ip());
    if let Some(retry_after) = peer.and_then(|ip| tokens.refused.blocked(ip)) {
        return Err(Error::TooManyLogins { retry_after });
    }
    let scope = scope.unwrap_or_default();
    let token = match tokens.token(basic, &realm, &service, &scope).await {
        Ok(token) => token,
        Err(crate::upstream::UpstreamError::Denied(why)) => {
            if let (Some(ip), Refusals::Count) = (peer, refusals) {
                tokens.refused.failed(ip);
            }
            log::info!(
                "web page login from {} refused by the token service: {why}",
                peer.map_or("?".to_owned(), |ip| ip.to_string())
            );
            return Err(page_login());
        }
        Err(e) => {
            log::error!("token service for the web pages: {e}");
            return Err(Error::Unavailable("the token service".to_owned()));
        }
    };
    let mut headers = req.headers().clone();
    let bearer = HeaderValue::try_from(format!("Bearer {token}"))
        .map_err(|_| Error::Unavailable("the token service".to_owned()))?;
    headers.insert(header::AUTHORIZATION, bearer);
    match ask(&headers).await {
        Ok((_, actor)) => Ok(actor),
        // The token service gave less than the page needs: this user may not.
        Err(Denial::Login(Challenge::Bearer { .. })) => Err(Error::Forbidden(
            "Your login does not give access to this.".to_owned(),
        )),
        Err(denial) => Err(denied(denial)),
    }
}

fn denied(denial: Denial) -> Error {
    match denial {
        Denial::Unauthorized => Error::Unauthorized,
        Denial::Login(challenge) => Error::Login(challenge),
        Denial::TooManyLogins { retry_after } => Error::TooManyLogins { retry_after },
        Denial::IndexUnavailable(reason) => {
            log::error!("central index unavailable: {reason}");
            Error::Unavailable("the central index".to_owned())
        }
    }
}

/// Whether the request behind a page may delete in repository `name`:
/// `Some(true)` yes, `Some(false)` after a login (the page offers one),
/// `None` no.
pub async fn may_delete(state: &AppState, req: &HttpRequest, name: &Name) -> Option<bool> {
    if !state.settings.delete_enabled || state.mirror.check_writable(name).is_err() {
        return None;
    }
    let tokens = req.app_data::<web::Data<PageTokens>>()?;
    let asked = Asked::Repository(name);
    match decide(state, tokens, req, &Method::DELETE, asked, Refusals::Ignore).await {
        Ok(_) => Some(true),
        // Anonymous where a password would do: worth a login.
        Err(Error::Login(Challenge::Basic { .. }))
            if !req.headers().contains_key(header::AUTHORIZATION) =>
        {
            Some(false)
        }
        Err(_) => None,
    }
}

/// Whether the request behind a page may pull from repository `name` (the
/// list leaves out what it may not).
pub async fn may_pull(state: &AppState, req: &HttpRequest, name: &Name) -> bool {
    let Some(tokens) = req.app_data::<web::Data<PageTokens>>() else {
        return false;
    };
    decide(
        state,
        tokens,
        req,
        &Method::GET,
        Asked::Repository(name),
        Refusals::Ignore,
    )
    .await
    .is_ok()
}

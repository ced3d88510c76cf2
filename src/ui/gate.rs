//! The pages' side of the auth gate ([`crate::http::gate`]): a page asks
//! what the API request behind it would ask (the list: the catalog; a
//! repository or image page: a pull of that repository), so the pages
//! show no more than a client may pull.

use actix_web::dev::ServiceRequest;
use actix_web::http::Method;
use actix_web::{web, HttpMessage, HttpResponse, ResponseError};
use futures_util::future::LocalBoxFuture;

use super::error::Error;
use crate::http::activity::Actor;
use crate::http::gate::Policy;
use crate::names::RepositoryName;
use crate::registry::auth::{Denial, Request, Target};
use crate::registry::oci::Name;
use crate::registry::AppState;

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
    let Some(state) = req.app_data::<web::Data<AppState>>() else {
        log::error!("auth gate without application state");
        return Err(Error::Unauthorized);
    };
    let name = match route {
        Route::Repository | Route::Delete => {
            let text = req.match_info().get("name").unwrap_or_default();
            let not_a_name = || Error::NotFound(format!("{text} is not a repository name."));
            let name = Name::parse(text).map_err(|_| not_a_name())?;
            let repository = RepositoryName::parse(name.as_str()).map_err(|_| not_a_name())?;
            Some((name, repository))
        }
        Route::Catalog | Route::Login => None,
    };
    // A page reads as a pull reads, whatever its own method.
    let method = match route {
        Route::Delete => Method::DELETE,
        _ => Method::GET,
    };
    let request = Request {
        method: &method,
        path: req.path(),
        query: "",
        headers: req.headers(),
        peer: req.peer_addr().map(|a| a.ip()),
    };
    let target = match &name {
        Some((name, repository)) => Target::Named {
            name: name.as_str(),
            repository,
        },
        None if matches!(route, Route::Login) => Target::Base,
        None => Target::Catalog,
    };
    match state.auth.admit(&request, target).await {
        Ok((_, actor)) => {
            req.extensions_mut().insert(Actor(actor));
            Ok(())
        }
        Err(Denial::Unauthorized) => Err(Error::Unauthorized),
        Err(Denial::Login(challenge)) => Err(Error::Login(challenge)),
        Err(Denial::TooManyLogins { retry_after }) => Err(Error::TooManyLogins { retry_after }),
        Err(Denial::IndexUnavailable(reason)) => {
            log::error!("central index unavailable: {reason}");
            Err(Error::Unavailable("the central index".to_owned()))
        }
    }
}

/// Whether the request behind a page may delete in repository `name`:
/// `Some(true)` yes, `Some(false)` after a login (the page offers one),
/// `None` no.
pub async fn may_delete(
    state: &AppState,
    req: &actix_web::HttpRequest,
    name: &Name,
) -> Option<bool> {
    if !state.settings.delete_enabled {
        return None;
    }
    let repository = RepositoryName::parse(name.as_str()).ok()?;
    let request = Request {
        method: &Method::DELETE,
        path: req.path(),
        query: "",
        headers: req.headers(),
        peer: req.peer_addr().map(|a| a.ip()),
    };
    let target = Target::Named {
        name: name.as_str(),
        repository: &repository,
    };
    match state.auth.admit(&request, target).await {
        Ok(_) => Some(true),
        // Anonymous where a password would do: worth a login.
        Err(Denial::Login(crate::registry::auth::Challenge::Basic { .. }))
            if !req
                .headers()
                .contains_key(actix_web::http::header::AUTHORIZATION) =>
        {
            Some(false)
        }
        Err(_) => None,
    }
}

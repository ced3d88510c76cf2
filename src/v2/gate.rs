//! v2's side of the auth gate ([`crate::http::gate`]): which routes target
//! a repository, and how a denial answers.
//!
//! The decision is the registry's one policy ([`crate::registry::auth`]),
//! the same for both APIs: an open (standalone) registry lets everything
//! through; logins (htpasswd, a token service) answer 401 with the
//! `Basic` or `Bearer` challenge the policy names; one that checks v1
//! tokens with a central index asks the same of v2 requests, which
//! today's clients cannot give, so they get a 401 rather than a way around
//! the index.

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

/// What a v2 route's requests act on.
pub enum Route {
    /// `/v2/<name>/...`: the repository the path names.
    Repository,
    /// `/v2/`: no repository; where clients check credentials.
    Base,
    /// `/v2/_catalog`.
    Catalog,
}

/// The v2 policy: the registry's auth, denials as v2 errors.
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
        // Assembly forgot the state: refuse rather than let through.
        log::error!("auth gate without application state");
        return Err(Error::Unauthorized);
    };
    // A name that breaks the grammar is answered as such, before auth: it
    // names nothing anyone could be allowed on.
    let name = match route {
        Route::Repository => {
            let name = Name::parse(req.match_info().get("name").unwrap_or_default())?;
            let repository = RepositoryName::parse(name.as_str())
                .map_err(|_| Error::NameInvalid(name.to_string()))?;
            Some((name, repository))
        }
        Route::Base | Route::Catalog => None,
    };
    let request = Request {
        method: req.method(),
        path: req.path(),
        query: req.query_string(),
        headers: req.headers(),
        peer: req.peer_addr().map(|a| a.ip()),
    };
    let target = match (route, &name) {
        (_, Some((name, repository))) => Target::Named {
            name: name.as_str(),
            repository,
        },
        (Route::Catalog, None) => Target::Catalog,
        (_, None) => Target::Base,
    };
    match state.auth.admit(&request, target).await {
        Ok((_, actor)) => match &name {
            // After auth, so that who may not push learns no more than that.
            Some((name, _)) if !matches!(*req.method(), Method::GET | Method::HEAD) => {
                state.mirror.check_writable(name)?;
                req.extensions_mut().insert(Actor(actor));
                Ok(())
            }
            _ => {
                req.extensions_mut().insert(Actor(actor));
                Ok(())
            }
        },
        Err(Denial::Unauthorized) => Err(Error::Unauthorized),
        Err(Denial::Login(challenge)) => Err(Error::Login(challenge)),
        Err(Denial::TooManyLogins { retry_after }) => Err(Error::TooManyLogins { retry_after }),
        Err(Denial::IndexUnavailable(reason)) => {
            log::error!("central index unavailable: {reason}");
            Err(Error::Unavailable)
        }
    }
}

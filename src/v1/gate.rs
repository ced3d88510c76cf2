//! v1's side of the auth gate ([`crate::http::gate`]): which routes target
//! a repository named in the URL, how a denial answers, and what a grant
//! leaves behind.

use actix_web::dev::ServiceRequest;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use futures_util::future::LocalBoxFuture;

use super::error::Error;
use crate::http::gate::Policy;
use crate::names::{ImageId, RepositoryName};
use crate::registry::auth::{Grant, Request, Target};
use crate::registry::{legacy, AppState};
use crate::storage::layout::legacy as layout;

/// What a v1 route's requests act on.
pub enum Route {
    /// `/v1/repositories/<repository>/...`: a token must be for that one.
    Repository,
    /// `/v1/images/<id>/...`: the token's own repository counts; a token
    /// service's token reaches only the images of the repositories it
    /// grants.
    Image,
    /// `/v1/search`: open unless logins are on.
    Search,
}

/// The v1 policy: the registry's [`crate::registry::auth::Auth`], denials
/// as v1 errors.
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
    // A name that does not parse is answered as such before auth, as the
    // old registry did.
    let name = match route {
        Route::Repository => Some(layout::storable(RepositoryName::parse(
            req.match_info().get("repository").unwrap_or_default(),
        )?)?),
        Route::Image | Route::Search => None,
    };
    let target = match (route, &name) {
        (Route::Search, _) => Target::Search,
        (_, Some(name)) => Target::Repository(name),
        (_, None) => Target::Unnamed,
    };
    let request = Request {
        method: req.method(),
        path: req.path(),
        query: req.query_string(),
        headers: req.headers(),
        peer: req.peer_addr().map(|a| a.ip()),
    };
    let (grant, actor) = state.auth.admit(&request, target).await?;
    req.extensions_mut()
        .insert(crate::http::activity::Actor(actor));
    if let Grant::ImagesOf {
        repositories,
        push,
        refused,
    } = &grant
    {
        // Unauthenticated requests are refused before the id is read, as
        // before; with a token, a bad id is answered as such.
        let id = ImageId::parse(req.match_info().get("id").unwrap_or_default())
            .ok_or(Error::InvalidImageId)?;
        // Refused alike whether the image exists or not: a token learns
        // nothing of the images beyond its repositories.
        if !state
            .owners
            .reaches(&*state.storage, repositories, &id, *push)
            .await?
        {
            log::debug!("image {id} is not in the token's repositories");
            return Err(Error::Login(refused.clone()));
        }
    }
    if let Grant::Token { repository, images } = &grant {
        // The old registry kept what the index granted in the
        // repository's `_images_list`; clients see the folder it makes
        // (the repository exists from then on), so the record stays.
        legacy::put_images_list(&*state.storage, repository, images).await?;
    }
    req.extensions_mut().insert(grant);
    Ok(())
}

/// Whether the gate's grant lets this request push image `id`. A request
/// the gate did not see has no grant and may not.
pub fn may_push_image(req: &HttpRequest, id: &ImageId) -> bool {
    req.extensions()
        .get::<Grant>()
        .is_some_and(|grant| grant.may_push_image(id))
}

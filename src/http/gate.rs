//! The auth gate: every request to a gated route is checked once, after
//! routing and before its handler runs, so that no handler can forget it.
//!
//! An API plugs in with its own [`Policy`]: what each route declares of
//! its requests (`Policy::Route`, e.g. "names a repository"), how a
//! request is decided (usually by calling `registry::auth::Auth::decide`),
//! and how a denial is rendered (v1: 401 `{"error": ...}` with
//! `WWW-Authenticate: Token`; v2: 401 `UNAUTHORIZED` in its own JSON shape).
//! A policy may leave what it granted in the request's extensions for the
//! handler to read (v1 leaves the `Grant`).
//!
//! Both APIs answer a login's 401 with the challenge the registry's policy
//! names; [`www_authenticate`] writes it.
//!
//! Wrap a resource (not the App: before routing, the route and its match
//! info are not known yet):
//! ```ignore
//! let gate = Gate::new(Rc::new(V2Policy), V2Route::Blob);
//! cfg.service(web::resource("/v2/{name:.+}/blobs/{digest}").wrap(gate).route(...));
//! ```

use std::future::{ready, Ready};
use std::rc::Rc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{
    forward_ready, Service, ServiceFactory, ServiceRequest, ServiceResponse, Transform,
};
use actix_web::{web, HttpResponse, Resource};
use futures_util::future::LocalBoxFuture;

use crate::registry::auth::Challenge;

/// The `WWW-Authenticate` value of a challenge (RFC 9110 parameters,
/// quoted; the settings hold no quote or backslash, names are escaped
/// anyway).
pub fn www_authenticate(challenge: &Challenge) -> String {
    let quoted = |v: &str| format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""));
    match challenge {
        Challenge::Basic { realm } => format!("Basic realm={}", quoted(realm)),
        Challenge::Bearer {
            realm,
            service,
            scope,
            error,
        } => {
            let mut value = format!("Bearer realm={},service={}", quoted(realm), quoted(service));
            if let Some(scope) = scope {
                value.push_str(&format!(",scope={}", quoted(scope)));
            }
            if let Some(error) = error {
                value.push_str(&format!(",error={}", quoted(error)));
            }
            value
        }
    }
}

/// An API's side of the gate.
pub trait Policy: 'static {
    /// What a route declares of its requests.
    type Route: 'static;

    /// Decides on a request that matched `route` (its match info is set).
    /// `Ok`: the handler runs. `Err`: this answer is sent instead.
    fn admit<'a>(
        &'a self,
        route: &'a Self::Route,
        req: &'a ServiceRequest,
    ) -> LocalBoxFuture<'a, Result<(), HttpResponse>>;
}

/// A resource at `paths` whose requests pass `policy` first, the one way
/// both APIs build their routes. A resource with only a method guard and
/// one route matches exactly as `ServiceConfig::route` does (other methods
/// fall through to the next resource).
pub fn gated<P: Policy>(
    policy: &Rc<P>,
    route: P::Route,
    paths: &[&str],
) -> Resource<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let paths: Vec<String> = paths.iter().map(|p| (*p).to_owned()).collect();
    web::resource(paths).wrap(Gate::new(policy.clone(), route))
}

/// The middleware: one per gated resource, sharing the API's policy.
pub struct Gate<P: Policy> {
    policy: Rc<P>,
    route: Rc<P::Route>,
}

impl<P: Policy> Gate<P> {
    pub fn new(policy: Rc<P>, route: P::Route) -> Self {
        Self {
            policy,
            route: Rc::new(route),
        }
    }
}

impl<S, B, P> Transform<S, ServiceRequest> for Gate<P>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
    P: Policy,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = GateService<S, P>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(GateService {
            service: Rc::new(service),
            policy: self.policy.clone(),
            route: self.route.clone(),
        }))
    }
}

pub struct GateService<S, P: Policy> {
    service: Rc<S>,
    policy: Rc<P>,
    route: Rc<P::Route>,
}

impl<S, B, P> Service<ServiceRequest> for GateService<S, P>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
    P: Policy,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let service = self.service.clone();
        let policy = self.policy.clone();
        let route = self.route.clone();
        Box::pin(async move {
            let decision = policy.admit(&route, &req).await;
            match decision {
                Ok(()) => service
                    .call(req)
                    .await
                    .map(ServiceResponse::map_into_left_body),
                Err(answer) => Ok(req.into_response(answer).map_into_right_body()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::{test, web, App, HttpMessage};

    /// Admits requests with `X-Pass: <route's word>`, recording the word.
    struct Words;

    impl Policy for Words {
        type Route = &'static str;

        fn admit<'a>(
            &'a self,
            route: &'a &'static str,
            req: &'a ServiceRequest,
        ) -> LocalBoxFuture<'a, Result<(), HttpResponse>> {
            Box::pin(async move {
                let pass = req.headers().get("x-pass").and_then(|v| v.to_str().ok());
                if pass == Some(*route) {
                    req.extensions_mut().insert(route.to_string());
                    Ok(())
                } else {
                    Err(HttpResponse::Unauthorized().body("no"))
                }
            })
        }
    }

    #[actix_web::test]
    async fn challenges_are_written_as_clients_read_them() {
        let basic = Challenge::Basic {
            realm: "my realm".into(),
        };
        assert_eq!(www_authenticate(&basic), r#"Basic realm="my realm""#);
        let bearer = Challenge::Bearer {
            realm: "https://auth.example.com/token".into(),
            service: "registry.example.com".into(),
            scope: Some("repository:a/b:pull,push".into()),
            error: Some("insufficient_scope"),
        };
        assert_eq!(
            www_authenticate(&bearer),
            r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push",error="insufficient_scope""#
        );
        let odd = Challenge::Basic {
            realm: r#"a"b\c"#.into(),
        };
        assert_eq!(www_authenticate(&odd), r#"Basic realm="a\"b\\c""#);
    }

    #[actix_web::test]
    async fn the_policy_decides_before_the_handler_runs() {
        let policy = Rc::new(Words);
        let app = test::init_service(
            App::new().service(
                web::resource("/a/{x}")
                    .wrap(Gate::new(policy.clone(), "open-a"))
                    .route(web::get().to(|req: actix_web::HttpRequest| async move {
                        req.extensions()
                            .get::<String>()
                            .cloned()
                            .unwrap_or_default()
                    })),
            ),
        )
        .await;
        let denied = test::call_service(&app, test::TestRequest::get().uri("/a/1").to_request());
        assert_eq!(denied.await.status(), 401);
        let allowed = test::TestRequest::get()
            .uri("/a/1")
            .insert_header(("X-Pass", "open-a"))
            .to_request();
        let body = test::call_and_read_body(&app, allowed).await;
        assert_eq!(&body[..], b"open-a");
    }
}

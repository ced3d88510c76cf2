//! Every way a page can fail, and the one place each becomes a status and
//! a page.

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use askama::Template;

use crate::http::gate::www_authenticate;
use crate::registry::auth::Challenge;
use crate::registry::{oci, Classify, Failure};
use crate::search::SearchError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    /// A login the browser can answer (Basic: it asks for a password) or
    /// one it cannot (a token service's).
    #[error("this registry asks for a login")]
    Login(Challenge),
    /// Tokens of a central index: nothing a browser holds.
    #[error("this registry admits only tokens of its central index")]
    Unauthorized,
    #[error("too many failed logins: try again in {retry_after} s")]
    TooManyLogins { retry_after: u64 },
    /// The storage, the search index or the central index cannot answer
    /// now.
    #[error("the registry cannot answer now ({0}); try again")]
    Unavailable(String),
    /// Our fault; the details go to the log.
    #[error("the page could not be made; the registry's log says why")]
    Internal(String),
    #[error("the page could not be made; the registry's log says why")]
    Render(String),
}

impl From<oci::Error> for Error {
    fn from(e: oci::Error) -> Self {
        match e {
            oci::Error::NameUnknown(name) => Error::NotFound(format!("No repository {name} here.")),
            oci::Error::ManifestUnknown(reference) => Error::NotFound(format!(
                "No tag or manifest {reference} in this repository."
            )),
            oci::Error::Storage(e) => match e.failure() {
                Failure::NotFound | Failure::InvalidPath => {
                    Error::NotFound("Not found.".to_owned())
                }
                Failure::Unavailable => Error::Unavailable(e.to_string()),
                _ => Error::Internal(e.to_string()),
            },
            other => Error::Internal(other.to_string()),
        }
    }
}

impl From<crate::http::deletes::Error> for Error {
    fn from(e: crate::http::deletes::Error) -> Self {
        use crate::http::deletes::Error as E;
        match e {
            E::Oci(oci::Error::Immutable(why)) => Error::Forbidden(why),
            E::Oci(e) => e.into(),
            E::Legacy(crate::registry::legacy::Error::Immutable(why)) => Error::Forbidden(why),
            E::Legacy(crate::registry::legacy::Error::Storage(e)) => oci::Error::Storage(e).into(),
            E::Legacy(e) => Error::Internal(e.to_string()),
            E::Mirror(crate::registry::mirror::Error::ReadOnly { name, upstream }) => {
                Error::Forbidden(format!(
                    "{name} is a cache of {upstream}: delete from the upstream itself."
                ))
            }
            E::Mirror(crate::registry::mirror::Error::Model(e)) => e.into(),
            E::Mirror(e) => Error::Unavailable(e.to_string()),
            E::Unrecorded(e) => Error::Unavailable(e.to_string()),
        }
    }
}

impl From<SearchError> for Error {
    fn from(e: SearchError) -> Self {
        match e.failure() {
            Failure::Unavailable => Error::Unavailable(e.to_string()),
            _ => Error::Internal(e.to_string()),
        }
    }
}

#[derive(Template)]
#[template(path = "ui/error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    message: String,
}

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        match self {
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::Login(_) | Error::Unauthorized => StatusCode::UNAUTHORIZED,
            Error::TooManyLogins { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Internal(_) | Error::Render(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if let Error::Internal(detail) | Error::Render(detail) = self {
            log::error!("web page: {detail}");
        }
        let message = match self {
            Error::Login(Challenge::Bearer { .. }) => {
                "Log in with your user of this registry's token service.".to_owned()
            }
            Error::Login(Challenge::Basic { .. }) => {
                "Log in with a user of this registry (the browser asks for it).".to_owned()
            }
            Error::NotFound(m) | Error::BadRequest(m) | Error::Forbidden(m) => m.clone(),
            other => other.to_string(),
        };
        let page = ErrorPage {
            title: status.canonical_reason().unwrap_or("Error"),
            message,
        };
        let mut answer = HttpResponse::build(status);
        answer.insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"));
        answer.insert_header((header::CACHE_CONTROL, "no-store"));
        // Only a password prompt is worth a challenge: a browser knows no
        // other scheme.
        if let Error::Login(challenge @ Challenge::Basic { .. }) = self {
            answer.insert_header((header::WWW_AUTHENTICATE, www_authenticate(challenge)));
        }
        if let Error::TooManyLogins { retry_after } = self {
            answer.insert_header((header::RETRY_AFTER, retry_after.to_string()));
        }
        answer.body(page.render().unwrap_or_else(|_| page.message.clone()))
    }
}

//! Every error the v1 API answers with, and its status and message, in one
//! place. The messages are the old registry's, word for word: clients and
//! scripts match on them.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use super::response;
use crate::http::blob::BlobError;
use crate::http::body::BodyError;
use crate::http::gate::www_authenticate;
use crate::http::range::Unsatisfiable;
use crate::names::{InvalidName, TAG_PATTERN};
use crate::registry::auth::{Challenge, Denial};
use crate::registry::{legacy, Classify, Failure};
use crate::search::SearchError;
use crate::storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Invalid image ID")]
    InvalidImageId,
    #[error("Image not found")]
    ImageNotFound,
    #[error("Image already exists")]
    ImageExists,
    #[error("Image is being uploaded, retry later")]
    ImageInProgress,
    #[error("Invalid JSON")]
    InvalidJson,
    #[error("Missing key `id' in JSON")]
    MissingId,
    #[error("JSON data contains invalid id")]
    WrongId,
    #[error("Image depends on a non existing parent")]
    MissingParent,
    #[error("This image does not belong to the repository")]
    NotInRepository,
    #[error("This endpoint does not support Docker daemons older than 0.10")]
    ClientTooOld,
    #[error(
        "X-Docker-Checksum-Payload not set.  If you are using the Docker daemon, \
         you should upgrade to version 0.10 or later"
    )]
    ChecksumHeaderMissing,
    #[error("Missing Image's checksum")]
    ChecksumEmpty,
    #[error("Cannot set this image checksum")]
    ChecksumNotExpected,
    #[error("Checksum mismatch")]
    ChecksumMismatch,
    #[error("Layer format not supported")]
    LayerFormat,
    /// A layer whose listing goes over a documented bound.
    #[error("Layer listing too large: {0}")]
    ListingTooLarge(String),
    #[error("Too many file listings at once, retry later")]
    ListingBusy,
    /// The size goes into `Content-Range: bytes */<size>`.
    #[error("Requested range not satisfiable")]
    RangeNotSatisfiable { size: u64 },
    #[error("Repository not found")]
    RepositoryNotFound,
    #[error("Invalid repository name")]
    InvalidRepositoryName,
    /// A name the old registry took but could not store (too long) or put
    /// in a token header: a 400 saying which rule.
    #[error("Invalid repository name: {0}")]
    RepositoryNameRefused(&'static str),
    #[error("Tag not found")]
    TagNotFound,
    /// `DELETE` of a tag names the tag, as the old registry did.
    #[error("Tag not found: {0}")]
    TagNotFoundNamed(String),
    #[error("Invalid tag name (must match {TAG_PATTERN})")]
    InvalidTag,
    #[error("Invalid data")]
    InvalidData,
    #[error("Description too long (at most {0} characters)")]
    DescriptionTooLong(usize),
    #[error("Error Decoding JSON")]
    JsonDecoding,
    #[error("images not found")]
    IndexImagesNotFound,
    #[error("Requires authorization")]
    Unauthorized,
    /// A login (issue 12) is missing or does not cover the request.
    #[error("Requires authorization")]
    Login(Challenge),
    #[error("Too many failed logins, retry in {0} s")]
    TooManyLogins(u64),
    #[error("Request body too large (at most {0} bytes)")]
    TooLarge(usize),
    #[error("Upload interrupted")]
    Interrupted,
    #[error("{0}")]
    BadQuery(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Search(#[from] SearchError),
    /// Talking to the central index failed.
    #[error("Index unavailable: {0}")]
    Index(String),
    /// The mirror's source (`mirroring.source`) could not give what this
    /// registry does not hold: down, slow, or answering nonsense.
    #[error("Mirror source unavailable: {0}")]
    MirrorSource(String),
    /// An operator's rule refuses: a tag it holds would move or go, or a
    /// push would pass its quota: 403.
    #[error("{0}")]
    Rule(String),
    /// The mirror's source asks to slow down, or too many requests to it
    /// are in flight.
    #[error("Mirror source busy, retry later: {0}")]
    MirrorSourceBusy(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The statuses of lower-layer failures, whoever reported them.
fn failure_status(failure: Failure) -> StatusCode {
    match failure {
        Failure::NotFound => StatusCode::NOT_FOUND,
        Failure::InvalidPath | Failure::Interrupted => StatusCode::BAD_REQUEST,
        Failure::InvalidRange { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
        Failure::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Failure::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The model's refusals, as the old registry worded them.
impl From<legacy::Error> for Error {
    fn from(e: legacy::Error) -> Self {
        use legacy::Error as E;
        match e {
            E::ImageNotFound => Error::ImageNotFound,
            E::ImageExists => Error::ImageExists,
            E::ImageInProgress => Error::ImageInProgress,
            E::InvalidJson => Error::InvalidJson,
            E::MissingId => Error::MissingId,
            E::WrongId => Error::WrongId,
            E::MissingParent => Error::MissingParent,
            E::ChecksumMissing => Error::ChecksumHeaderMissing,
            E::ChecksumEmpty => Error::ChecksumEmpty,
            E::ChecksumNotExpected => Error::ChecksumNotExpected,
            E::ChecksumMismatch => Error::ChecksumMismatch,
            E::LayerFormat => Error::LayerFormat,
            E::ListingTooLarge(why) => Error::ListingTooLarge(why),
            E::ListingBusy => Error::ListingBusy,
            E::Interrupted => Error::Interrupted,
            E::RepositoryNotFound => Error::RepositoryNotFound,
            E::TagNotFound => Error::TagNotFound,
            E::TagToDeleteNotFound(tag) => Error::TagNotFoundNamed(tag.to_string()),
            E::InvalidData => Error::InvalidData,
            E::DescriptionTooLong(max) => Error::DescriptionTooLong(max),
            E::JsonDecoding => Error::JsonDecoding,
            E::IndexImagesNotFound => Error::IndexImagesNotFound,
            E::Immutable(why) | E::QuotaExceeded(why) => Error::Rule(why),
            E::Storage(e) => Error::Storage(e),
        }
    }
}

/// The v1 pull-through cache's failures (see `registry::mirror::legacy`).
impl From<crate::registry::mirror::Error> for Error {
    fn from(e: crate::registry::mirror::Error) -> Self {
        use crate::registry::mirror::Error as E;
        use crate::upstream::UpstreamError as U;
        match e {
            E::Legacy(e) => e.into(),
            E::Model(crate::registry::oci::Error::Storage(e)) => Error::Storage(e),
            E::Upstream { upstream, error } => {
                log::warn!("v1 mirror: source {upstream}: {error}");
                crate::metrics::get().failure("upstream", error.kind());
                match error {
                    U::TooManyRequests(_) | U::Busy => {
                        Error::MirrorSourceBusy(format!("{upstream}: {error}"))
                    }
                    error => Error::MirrorSource(format!("{upstream}: {error}")),
                }
            }
            // Only v2 requests pick an upstream by `ns` or write to one.
            e @ (E::NamespaceUnknown(_) | E::ReadOnly { .. } | E::Model(_)) => {
                Error::MirrorSource(e.to_string())
            }
        }
    }
}

/// The notifications' queue could not take the activity: the client
/// tries again.
impl From<crate::events::Unrecorded> for Error {
    fn from(e: crate::events::Unrecorded) -> Self {
        Error::Storage(crate::storage::StorageError::Unavailable(e.to_string()))
    }
}

impl From<crate::http::deletes::Error> for Error {
    fn from(e: crate::http::deletes::Error) -> Self {
        use crate::http::deletes::Error as E;
        match e {
            E::Legacy(e) => e.into(),
            E::Mirror(e) => e.into(),
            E::Unrecorded(e) => e.into(),
            E::Oci(crate::registry::oci::Error::Storage(e)) => Error::Storage(e),
            E::Oci(e) => Error::Storage(crate::storage::StorageError::Unavailable(e.to_string())),
        }
    }
}

impl From<Denial> for Error {
    fn from(e: Denial) -> Self {
        match e {
            Denial::Unauthorized => Error::Unauthorized,
            Denial::IndexUnavailable(why) => Error::Index(why),
            Denial::Login(challenge) => Error::Login(challenge),
            Denial::TooManyLogins { retry_after } => Error::TooManyLogins(retry_after),
        }
    }
}

impl From<BodyError> for Error {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::TooLarge(limit) => Error::TooLarge(limit),
            BodyError::Interrupted => Error::Interrupted,
        }
    }
}

impl From<Unsatisfiable> for Error {
    fn from(e: Unsatisfiable) -> Self {
        Error::RangeNotSatisfiable { size: e.size }
    }
}

impl From<InvalidName> for Error {
    fn from(e: InvalidName) -> Self {
        match e {
            InvalidName::Malformed(_) => Error::InvalidRepositoryName,
            InvalidName::Refused(why) => Error::RepositoryNameRefused(why),
        }
    }
}

impl From<BlobError> for Error {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::Range(range) => range.into(),
            BlobError::Storage(storage) => storage.into(),
        }
    }
}

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        use Error::*;
        match self {
            InvalidImageId
            | ImageNotFound
            | RepositoryNotFound
            | InvalidRepositoryName
            | TagNotFound
            | TagNotFoundNamed(_)
            | IndexImagesNotFound => StatusCode::NOT_FOUND,
            ImageExists | ChecksumNotExpected => StatusCode::CONFLICT,
            ClientTooOld | ChecksumHeaderMissing => StatusCode::PRECONDITION_FAILED,
            RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            Unauthorized | Login(_) => StatusCode::UNAUTHORIZED,
            TooManyLogins(_) => StatusCode::TOO_MANY_REQUESTS,
            Rule(_) => StatusCode::FORBIDDEN,
            TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ImageInProgress
            | InvalidJson
            | MissingId
            | WrongId
            | MissingParent
            | NotInRepository
            | ChecksumEmpty
            | ChecksumMismatch
            | LayerFormat
            | ListingTooLarge(_)
            | InvalidTag
            | InvalidData
            | DescriptionTooLong(_)
            | JsonDecoding
            | Interrupted
            | RepositoryNameRefused(_)
            | BadQuery(_) => StatusCode::BAD_REQUEST,
            Storage(e) => failure_status(e.failure()),
            Search(e) => failure_status(e.failure()),
            Index(_) | ListingBusy | MirrorSourceBusy(_) => StatusCode::SERVICE_UNAVAILABLE,
            MirrorSource(_) => StatusCode::BAD_GATEWAY,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        match self {
            Error::Storage(e) => crate::metrics::get().failure("storage", e.failure().label()),
            Error::Search(e) => crate::metrics::get().failure("search", e.failure().label()),
            _ => {}
        }
        // Internal details go to the log, not to the client.
        let message = match self {
            Error::Storage(StorageError::Io { .. }) => {
                log::error!("{self}");
                "Internal server error".to_owned()
            }
            Error::Storage(StorageError::Unavailable(_)) | Error::Index(_) => {
                log::error!("{self}");
                "Service unavailable, retry later".to_owned()
            }
            Error::Search(SearchError::Busy(_)) => "Search index busy, retry later".to_owned(),
            Error::Search(SearchError::Unavailable(_)) => "Search index unavailable".to_owned(),
            Error::Storage(StorageError::NotFound(path)) => {
                log::debug!("not found in storage: {path}");
                "Not found".to_owned()
            }
            other => other.to_string(),
        };
        let mut resp = response::error(status, &message);
        match self {
            Error::Unauthorized => {
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Token"));
            }
            Error::Login(challenge) => {
                if let Ok(v) = HeaderValue::try_from(www_authenticate(challenge)) {
                    resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
                }
            }
            Error::TooManyLogins(wait) => {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*wait));
            }
            Error::RangeNotSatisfiable { size }
            | Error::Storage(StorageError::InvalidRange { size, .. }) => {
                if let Ok(v) = HeaderValue::try_from(format!("bytes */{size}")) {
                    resp.headers_mut().insert(header::CONTENT_RANGE, v);
                }
            }
            _ => {}
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_the_documented_ones() {
        assert_eq!(Error::MissingId.to_string(), "Missing key `id' in JSON");
        assert_eq!(
            Error::InvalidTag.to_string(),
            r"Invalid tag name (must match ^[\w][\w.-]{0,127}$)"
        );
        assert_eq!(
            Error::TagNotFoundNamed("x".into()).to_string(),
            "Tag not found: x"
        );
        assert_eq!(Error::ChecksumEmpty.to_string(), "Missing Image's checksum");
    }

    #[test]
    fn statuses_are_the_documented_ones() {
        assert_eq!(Error::InvalidImageId.status_code(), 404);
        assert_eq!(Error::ImageExists.status_code(), 409);
        assert_eq!(Error::ChecksumHeaderMissing.status_code(), 412);
        assert_eq!(Error::ImageInProgress.status_code(), 400);
        assert_eq!(Error::Unauthorized.status_code(), 401);
        assert_eq!(Error::RangeNotSatisfiable { size: 1 }.status_code(), 416);
        assert_eq!(Error::TooLarge(1).status_code(), 413);
        assert_eq!(Error::MirrorSource("x".into()).status_code(), 502);
        assert_eq!(Error::MirrorSourceBusy("x".into()).status_code(), 503);
    }

    #[test]
    fn internal_details_stay_out_of_the_answer() {
        let err = Error::Storage(StorageError::Io {
            path: "/secret/place".into(),
            source: std::io::Error::other("disk on fire"),
        });
        let resp = err.error_response();
        assert_eq!(resp.status(), 500);
    }
}

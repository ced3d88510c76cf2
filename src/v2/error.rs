//! The v2 API's wire errors: the spec's codes, statuses and JSON shape
//! `{"errors": [{"code", "message", "detail"}]}`, mapped in one place from
//! the model's errors. Details that help a client go in `detail`; causes
//! that only help an operator (storage paths, I/O errors) go to the log.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde_json::{json, Value};

use crate::http::gate::www_authenticate;
use crate::registry::auth::Challenge;
use crate::registry::{oci, Classify, Failure};
use crate::storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("blob unknown to registry")]
    BlobUnknown(String),
    #[error("blob upload invalid")]
    BlobUploadInvalid(String),
    #[error("blob upload unknown to registry")]
    BlobUploadUnknown,
    #[error("provided digest did not match uploaded content")]
    DigestInvalid(String),
    #[error("blob unknown to registry")]
    ManifestBlobUnknown(String),
    /// The reason is in the message too: clients (docker) print only the
    /// message, and a refused schema 1 push must say why.
    #[error("manifest invalid: {0}")]
    ManifestInvalid(String),
    #[error("manifest unknown")]
    ManifestUnknown(String),
    #[error("invalid repository name")]
    NameInvalid(String),
    #[error("repository name not known to registry")]
    NameUnknown(String),
    #[error("provided length did not match content length")]
    SizeInvalid(String),
    #[error("authentication required")]
    Unauthorized,
    /// A login (issue 12) is missing or does not cover the request: 401
    /// with the challenge.
    #[error("authentication required")]
    Login(Challenge),
    /// Too many failed logins from the client's address.
    #[error("too many failed login attempts")]
    TooManyLogins { retry_after: u64 },
    #[error("requested access to the resource is denied")]
    Denied,
    #[error("the operation is unsupported")]
    Unsupported(String),
    /// A query parameter the endpoint cannot use (`n` not a number). The
    /// spec has no code for it: 400 with the nearest, `UNSUPPORTED`.
    #[error("invalid query parameter")]
    BadQuery(String),
    /// A path under `/v2` that names no endpoint of the API.
    #[error("no such endpoint in the v2 API")]
    UnknownEndpoint,
    /// A chunk that does not start where the upload stands: 416 with the
    /// upload's current range, as the spec asks.
    #[error("requested range not satisfiable")]
    RangeNotSatisfiable { size: u64 },
    /// A `Range` of a blob GET that lies outside the blob: 416 with
    /// `Content-Range: bytes */<size>`.
    #[error("requested range not satisfiable")]
    RangeInvalid { size: u64 },
    #[error("request body too large")]
    TooLarge { limit: u64 },
    /// More `?tag=` in one manifest push than we take: 414, as the spec
    /// allows, with the nearest code.
    #[error("too many tags in one push")]
    TooManyTags(usize),
    /// More uploads at once than `max_concurrent_uploads`.
    #[error("too many requests")]
    TooManyRequests(String),
    #[error("storage backend unavailable")]
    Unavailable,
    /// A push or delete into a repository the pull-through cache keeps.
    #[error("{0}")]
    CacheReadOnly(String),
    /// A push or delete an operator's rule refuses: it would move or
    /// remove an immutable tag, or pass a quota.
    #[error("{0}")]
    Rule(String),
    /// `?ns=` names a registry no upstream is configured for.
    #[error("no upstream of this registry serves the namespace {0}")]
    NamespaceUnknown(String),
    /// The upstream could not give what the cache lacks: 502.
    #[error("the upstream registry could not be reached: {0}")]
    UpstreamFailed(String),
    /// The upstream (or the bound on requests to it) says wait: 503.
    #[error("the upstream registry is busy: {message}")]
    UpstreamBusy {
        message: String,
        retry_after: Option<u64>,
    },
    #[error("internal server error")]
    Internal,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The spec's code. Statuses the spec gives no code for (416, 413, 5xx)
    /// use the nearest one a client handles.
    pub fn code(&self) -> &'static str {
        use Error::*;
        match self {
            BlobUnknown(_) => "BLOB_UNKNOWN",
            BlobUploadInvalid(_) | RangeNotSatisfiable { .. } => "BLOB_UPLOAD_INVALID",
            BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            DigestInvalid(_) => "DIGEST_INVALID",
            ManifestBlobUnknown(_) => "MANIFEST_BLOB_UNKNOWN",
            ManifestInvalid(_) => "MANIFEST_INVALID",
            ManifestUnknown(_) => "MANIFEST_UNKNOWN",
            NameInvalid(_) => "NAME_INVALID",
            NameUnknown(_) => "NAME_UNKNOWN",
            SizeInvalid(_) | TooLarge { .. } => "SIZE_INVALID",
            Unauthorized | Login(_) => "UNAUTHORIZED",
            Denied | CacheReadOnly(_) | Rule(_) => "DENIED",
            NamespaceUnknown(_) => "NAME_UNKNOWN",
            UpstreamFailed(_) | UpstreamBusy { .. } => "UNKNOWN",
            Unsupported(_) | UnknownEndpoint | BadQuery(_) | TooManyTags(_) => "UNSUPPORTED",
            TooManyRequests(_) | TooManyLogins { .. } => "TOOMANYREQUESTS",
            RangeInvalid { .. } | Unavailable | Internal => "UNKNOWN",
        }
    }

    fn detail(&self) -> Value {
        use Error::*;
        match self {
            BlobUnknown(d) | ManifestBlobUnknown(d) => json!({ "digest": d }),
            ManifestUnknown(r) => json!({ "reference": r }),
            NameInvalid(n) | NameUnknown(n) => json!({ "name": n }),
            NamespaceUnknown(ns) => json!({ "namespace": ns }),
            CacheReadOnly(_) | Rule(_) | UpstreamFailed(_) | UpstreamBusy { .. } => Value::Null,
            BlobUploadInvalid(s) | DigestInvalid(s) | ManifestInvalid(s) | SizeInvalid(s)
            | Unsupported(s) | BadQuery(s) | TooManyRequests(s) => json!(s),
            RangeNotSatisfiable { size } | RangeInvalid { size } => json!({ "size": size }),
            TooLarge { limit } => json!({ "limit": limit }),
            TooManyTags(limit) => json!({ "limit": limit }),
            TooManyLogins { retry_after } => json!({ "retry_after": retry_after }),
            // What the request needs, as distribution details it.
            Login(Challenge::Bearer {
                scope: Some(scope), ..
            }) => json!(scope),
            Login(_) => Value::Null,
            BlobUploadUnknown | UnknownEndpoint | Unauthorized | Denied | Unavailable
            | Internal => Value::Null,
        }
    }
}

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        use Error::*;
        match self {
            BlobUnknown(_) | BlobUploadUnknown | ManifestUnknown(_) | NameUnknown(_)
            | UnknownEndpoint => StatusCode::NOT_FOUND,
            BlobUploadInvalid(_)
            | DigestInvalid(_)
            | ManifestBlobUnknown(_)
            | ManifestInvalid(_)
            | NameInvalid(_)
            | SizeInvalid(_)
            | BadQuery(_) => StatusCode::BAD_REQUEST,
            Unauthorized | Login(_) => StatusCode::UNAUTHORIZED,
            TooManyLogins { .. } => StatusCode::TOO_MANY_REQUESTS,
            Denied | CacheReadOnly(_) | Rule(_) => StatusCode::FORBIDDEN,
            NamespaceUnknown(_) => StatusCode::NOT_FOUND,
            UpstreamFailed(_) => StatusCode::BAD_GATEWAY,
            UpstreamBusy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Unsupported(_) => StatusCode::METHOD_NOT_ALLOWED,
            RangeNotSatisfiable { .. } | RangeInvalid { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            TooManyTags(_) => StatusCode::URI_TOO_LONG,
            TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let body = json!({
            "errors": [{
                "code": self.code(),
                "message": self.to_string(),
                "detail": self.detail(),
            }]
        });
        let mut resp = HttpResponse::build(self.status_code());
        resp.insert_header((header::CONTENT_TYPE, "application/json"));
        if let Error::Unauthorized = self {
            // The scheme the registry's one policy understands today (v1
            // tokens confirmed by the central index).
            resp.insert_header((header::WWW_AUTHENTICATE, "Token realm=\"registry\""));
        }
        if let Error::Login(challenge) = self {
            resp.insert_header((header::WWW_AUTHENTICATE, www_authenticate(challenge)));
        }
        if let Error::UpstreamBusy {
            retry_after: Some(seconds),
            ..
        } = self
        {
            resp.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        if let Error::TooManyLogins { retry_after } = self {
            resp.insert_header((header::RETRY_AFTER, retry_after.to_string()));
        }
        if let Error::RangeNotSatisfiable { size } = self {
            // Where the upload stands, so the client can resume from there.
            resp.insert_header((header::RANGE, range_header(*size)));
        }
        if let Error::RangeInvalid { size } = self {
            resp.insert_header((header::CONTENT_RANGE, format!("bytes */{size}")));
        }
        resp.body(body.to_string())
    }
}

/// The `Range` header of an upload holding `size` bytes: `0-<last>`
/// (`0-0` for an empty upload, as distribution and clients expect).
pub fn range_header(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

impl From<oci::Error> for Error {
    fn from(e: oci::Error) -> Self {
        use oci::Error as E;
        match e {
            E::BlobUnknown(d) => Error::BlobUnknown(d.to_string()),
            E::UploadUnknown => Error::BlobUploadUnknown,
            E::UploadInvalid(s) => Error::BlobUploadInvalid(s),
            E::RangeNotSatisfiable { size } => Error::RangeNotSatisfiable { size },
            E::DigestInvalid(s) => Error::DigestInvalid(s),
            E::SizeInvalid(s) => Error::SizeInvalid(s),
            E::ManifestUnknown(r) => Error::ManifestUnknown(r),
            E::ManifestInvalid(s) => Error::ManifestInvalid(s),
            E::ManifestBlobUnknown(d) => Error::ManifestBlobUnknown(d.to_string()),
            E::NameUnknown(n) => Error::NameUnknown(n),
            E::TooLarge { limit } => Error::TooLarge { limit },
            E::TooManyUploads(s) => Error::TooManyRequests(s),
            E::Immutable(why) | E::QuotaExceeded(why) => Error::Rule(why),
            E::Storage(e) => e.into(),
        }
    }
}

impl From<crate::registry::mirror::Error> for Error {
    fn from(e: crate::registry::mirror::Error) -> Self {
        use crate::registry::mirror::Error as E;
        use crate::upstream::UpstreamError as U;
        match e {
            E::NamespaceUnknown(ns) => Error::NamespaceUnknown(ns),
            e @ E::ReadOnly { .. } => Error::CacheReadOnly(e.to_string()),
            E::Model(e) => e.into(),
            // Only the v1 API copies v1 images.
            E::Legacy(crate::registry::legacy::Error::Storage(e)) => e.into(),
            E::Legacy(e) => Error::UpstreamFailed(e.to_string()),
            E::Upstream { upstream, error } => {
                log::warn!("pull-through cache: upstream {upstream}: {error}");
                crate::metrics::get().failure("upstream", error.kind());
                match error {
                    U::TooManyRequests(after) => Error::UpstreamBusy {
                        message: format!("{upstream} asks to slow down"),
                        retry_after: after.map(|d| d.as_secs()),
                    },
                    U::Busy => Error::UpstreamBusy {
                        message: format!("too many requests to {upstream} at once"),
                        retry_after: Some(1),
                    },
                    error => Error::UpstreamFailed(format!("{upstream}: {error}")),
                }
            }
        }
    }
}

impl From<crate::http::deletes::Error> for Error {
    fn from(e: crate::http::deletes::Error) -> Self {
        use crate::http::deletes::Error as E;
        match e {
            E::Oci(e) => e.into(),
            E::Mirror(e) => e.into(),
            // Never of a v2 delete; an outage if it were.
            E::Legacy(e) => {
                log::error!("v2 delete: {e}");
                Error::Unavailable
            }
            // Logged where it happened.
            E::Unrecorded(_) => Error::Unavailable,
        }
    }
}

impl From<StorageError> for Error {
    /// Through the failure classification v1 shares. The model turns every
    /// "not found" it expects into its own error; one that reaches here is
    /// a tree that changed under the request, which is ours to log.
    fn from(e: StorageError) -> Self {
        let failure = e.failure();
        crate::metrics::get().failure("storage", failure.label());
        match failure {
            Failure::Interrupted => Error::BlobUploadInvalid("the request body broke off".into()),
            Failure::InvalidRange { size } => Error::RangeInvalid { size },
            // Validated names never build such a path; the driver's check
            // stands behind that.
            Failure::InvalidPath => Error::NameInvalid("a name that cannot be stored".into()),
            Failure::Unavailable => {
                log::error!("storage unavailable: {e}");
                Error::Unavailable
            }
            Failure::NotFound | Failure::Internal => {
                log::error!("storage failure: {e}");
                Error::Internal
            }
        }
    }
}

impl From<oci::name::InvalidName> for Error {
    fn from(e: oci::name::InvalidName) -> Self {
        Error::NameInvalid(e.0)
    }
}

impl From<oci::digest::InvalidDigest> for Error {
    fn from(e: oci::digest::InvalidDigest) -> Self {
        Error::DigestInvalid(e.to_string())
    }
}

impl From<oci::name::InvalidReference> for Error {
    fn from(e: oci::name::InvalidReference) -> Self {
        match e {
            oci::name::InvalidReference::Digest(d) => d.into(),
            // The spec has no code for a tag that breaks the grammar: the
            // reference of the manifest request is what is invalid.
            oci::name::InvalidReference::Tag(t) => Error::ManifestInvalid(t.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;

    #[actix_web::test]
    async fn errors_have_the_spec_shape() {
        let resp = Error::BlobUnknown("sha256:00".into()).error_response();
        assert_eq!(resp.status(), 404);
        assert_eq!(
            resp.headers().get("content-type").unwrap(),
            "application/json"
        );
        let body: Value =
            serde_json::from_slice(&to_bytes(resp.into_body()).await.unwrap()).unwrap();
        assert_eq!(body["errors"][0]["code"], "BLOB_UNKNOWN");
        assert_eq!(body["errors"][0]["message"], "blob unknown to registry");
        assert_eq!(body["errors"][0]["detail"]["digest"], "sha256:00");

        let resp = Error::RangeNotSatisfiable { size: 10 }.error_response();
        assert_eq!(resp.status(), 416);
        assert_eq!(resp.headers().get("range").unwrap(), "0-9");
        assert_eq!(Error::Unsupported("x".into()).status_code(), 405);
    }
}

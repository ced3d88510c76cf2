//! Bearer tokens of an upstream's token service (the Docker token flow),
//! kept per scope and renewed before they expire, so that a request is
//! never sent with a token about to lapse.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Result, UpstreamError};

/// `expires_in` when the service sends none (the token specification's
/// default).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);

/// The longest a token service's answer may be.
const MAX_ANSWER: usize = 64 << 10;

struct Token {
    value: String,
    /// Past this, the token is fetched anew before use.
    renew_at: Instant,
}

/// Tokens by scope (`repository:library/busybox:pull`).
#[derive(Default)]
pub struct Tokens(Mutex<HashMap<String, Token>>);

/// What a token is asked for with.
pub struct Request<'a> {
    pub realm: &'a str,
    pub service: Option<&'a str>,
    pub scope: &'a str,
    /// `Authorization: Basic ...` when credentials are configured.
    pub basic: Option<String>,
    pub timeout: Duration,
}

/// When a token of `lifetime` is renewed: a fifth of its life before it
/// ends, at least 10 s before, and never later than half-way through.
pub fn renewal_margin(lifetime: Duration) -> Duration {
    (lifetime / 5)
        .max(Duration::from_secs(10))
        .min(lifetime / 2)
}

impl Tokens {
    /// The token of `scope`, while it need not be renewed.
    pub fn fresh(&self, scope: &str) -> Option<String> {
        let tokens = self.0.lock().unwrap_or_else(|e| e.into_inner());
        tokens
            .get(scope)
            .filter(|t| Instant::now() < t.renew_at)
            .map(|t| t.value.clone())
    }

    /// Keeps the token of `scope` under `alias` too.
    pub fn alias(&self, alias: &str, scope: &str) {
        let mut tokens = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(token) = tokens.get(scope) {
            let copy = Token {
                value: token.value.clone(),
                renew_at: token.renew_at,
            };
            tokens.insert(alias.to_owned(), copy);
        }
    }

    /// Asks the token service for a token and keeps it.
    pub async fn fetch(&self, http: &reqwest::Client, request: Request<'_>) -> Result<String> {
        let mut url = reqwest::Url::parse(request.realm)
            .map_err(|e| UpstreamError::Invalid(format!("token realm: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(UpstreamError::Invalid(
                "a token realm that is not http(s)".into(),
            ));
        }
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = request.service {
                query.append_pair("service", service);
            }
            query.append_pair("scope", request.scope);
        }
        let mut get = http.get(url);
        if let Some(basic) = &request.basic {
            get = get.header(reqwest::header::AUTHORIZATION, basic);
        }
        let started = Instant::now();
        let resp = match tokio::time::timeout(request.timeout, get.send()).await {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => {
                return Err(UpstreamError::Unavailable(format!(
                    "token service: {}",
                    super::without_url(&e)
                )))
            }
            Err(_) => {
                return Err(UpstreamError::Unavailable(
                    "token service: no answer in time".into(),
                ))
            }
        };
        let status = resp.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(UpstreamError::Denied(format!(
                "the token service refused the configured login ({status})"
            )));
        }
        if !status.is_success() {
            return Err(super::status_error(status, resp.headers()));
        }
        if resp.content_length().is_some_and(|n| n > MAX_ANSWER as u64) {
            return Err(UpstreamError::Invalid("token answer too large".into()));
        }
        let body = tokio::time::timeout(request.timeout, resp.bytes())
            .await
            .map_err(|_| UpstreamError::Unavailable("token service: body stalled".into()))?
            .map_err(|e| UpstreamError::Unavailable(super::without_url(&e)))?;
        let answer: Answer = serde_json::from_slice(&body)
            .map_err(|e| UpstreamError::Invalid(format!("token answer: {e}")))?;
        let value = answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| UpstreamError::Invalid("token answer without a token".into()))?;
        let lifetime = answer
            .expires_in
            .filter(|&s| s > 0)
            .map_or(DEFAULT_LIFETIME, Duration::from_secs);
        // Counted from when it was asked for: `issued_at` is the service's
        // clock, which need not agree with ours.
        let renew_at = started + lifetime - renewal_margin(lifetime);
        let mut tokens = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if tokens.len() >= 4096 {
            let now = Instant::now();
            tokens.retain(|_, t| t.renew_at > now);
        }
        tokens.insert(
            request.scope.to_owned(),
            Token {
                value: value.clone(),
                renew_at,
            },
        );
        Ok(value)
    }
}

#[derive(serde::Deserialize)]
struct Answer {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_renewed_well_before_they_end() {
        let s = Duration::from_secs;
        assert_eq!(renewal_margin(s(300)), s(60));
        assert_eq!(renewal_margin(s(60)), s(12));
        assert_eq!(renewal_margin(s(30)), s(10));
        // Short-lived tokens: half-way.
        assert_eq!(renewal_margin(s(4)), s(2));
    }
}

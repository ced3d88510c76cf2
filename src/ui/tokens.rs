//! Logins through a token service (`auth_token_*`): the pages do what
//! docker does for its user. The browser gives the page a user and a
//! password (its own prompt, answering the page's `Basic` challenge); the
//! registry asks the configured token service for a token of the scope
//! the page needs with them, as `docker login` would, and decides with
//! that token as it decides for clients. Tokens are kept per login and
//! scope until shortly before they expire, so a search as one types does
//! not ask the token service at each key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::registry::auth::limiter::Limiter;
use crate::upstream::token::{Request, Tokens};
use crate::upstream::UpstreamError;

/// How long the token service may take to answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Logins whose tokens are kept at once; past it, the oldest half goes.
const MAX_LOGINS: usize = 1024;

pub struct PageTokens {
    http: reqwest::Client,
    /// By the sha256 of the login's `Authorization` value: the password is
    /// kept by the browser, never here.
    logins: Mutex<HashMap<[u8; 32], Login>>,
    seq: std::sync::atomic::AtomicU64,
    /// Logins the token service refused, per client address: the pages
    /// must not make the registry a way to guess passwords faster than
    /// `auth_max_failed_logins` lets clients.
    pub refused: Limiter,
}

/// One login's tokens, and when it was last used (a sequence number).
struct Login {
    used: u64,
    tokens: Arc<Tokens>,
}

impl PageTokens {
    pub fn new(max_failed_logins: u32) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            logins: Mutex::new(HashMap::new()),
            seq: Default::default(),
            refused: Limiter::new(max_failed_logins, Duration::from_secs(60)),
        })
    }

    /// A token of `scope` for the login `basic` (an `Authorization: Basic`
    /// value), from the token service at `realm`.
    pub async fn token(
        &self,
        basic: &str,
        realm: &str,
        service: &str,
        scope: &str,
    ) -> Result<String, UpstreamError> {
        let tokens = self.of(basic);
        if let Some(token) = tokens.fresh(scope) {
            return Ok(token);
        }
        tokens
            .fetch(
                &self.http,
                Request {
                    realm,
                    service: Some(service),
                    scope,
                    basic: Some(basic.to_owned()),
                    timeout: TIMEOUT,
                },
            )
            .await
    }

    fn of(&self, basic: &str) -> Arc<Tokens> {
        let key: [u8; 32] = Sha256::digest(basic.as_bytes()).into();
        let seq = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut logins = self.logins.lock().unwrap_or_else(|e| e.into_inner());
        if logins.len() >= MAX_LOGINS && !logins.contains_key(&key) {
            let mut ages: Vec<u64> = logins.values().map(|l| l.used).collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 2];
            logins.retain(|_, l| l.used > cut);
        }
        let login = logins.entry(key).or_insert_with(|| Login {
            used: seq,
            tokens: Arc::new(Tokens::default()),
        });
        login.used = seq;
        login.tokens.clone()
    }
}

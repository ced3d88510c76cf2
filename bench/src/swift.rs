//! OpenStack Swift for the benchmark: the tests' one-node Swift (Debian's
//! servers, `tests/storage_support/swift_test_server.py`), and its
//! objects seen directly, without a registry: containers, listings,
//! clean-up, and temp URLs, so that the raw GET/PUT baseline goes through
//! the very client the registry figures use.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use hmac::{Hmac, Mac};

use crate::procs::{self, Server};

/// tempauth's user and key (the launcher's).
pub const USER: &str = "test:tester";
pub const KEY: &str = "testing";

/// The account's temp-URL key the baseline signs with.
const TEMP_URL_KEY: &str = "bench-temp-url-key";

/// Starts the one-node Swift in `dir` (its folder: data, rings, logs) and
/// waits until it hands out tokens.
pub fn start(dir: &Path) -> Result<Server> {
    let server = procs::swift(dir)?;
    let port = server.port;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let client = reqwest::Client::new();
    loop {
        let answered = runtime.block_on(
            client
                .get(auth_url(port))
                .header("X-Auth-User", USER)
                .header("X-Auth-Key", KEY)
                .send(),
        );
        if matches!(&answered, Ok(r) if r.status().is_success()) {
            return Ok(server);
        }
        if Instant::now() > deadline {
            bail!("Swift gave no token within 60 s:\n{}", server.log_tail());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The auth URL of the Swift on `port`.
pub fn auth_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}/auth/v1.0")
}

/// A container, reached with a token.
pub struct Container {
    client: reqwest::Client,
    token: String,
    /// `http://127.0.0.1:<port>/v1/AUTH_test`.
    storage_url: String,
    name: String,
}

impl Container {
    /// Makes container `name` on the Swift at `port` (and gives the
    /// account the temp-URL key).
    pub async fn create(port: u16, name: &str) -> Result<Container> {
        let client = reqwest::Client::new();
        let auth = client
            .get(auth_url(port))
            .header("X-Auth-User", USER)
            .header("X-Auth-Key", KEY)
            .send()
            .await?;
        let header = |h: &str| -> Result<String> {
            Ok(auth
                .headers()
                .get(h)
                .with_context(|| format!("no {h}"))?
                .to_str()?
                .to_owned())
        };
        let (token, storage_url) = (header("X-Auth-Token")?, header("X-Storage-Url")?);
        let made = client
            .put(format!("{storage_url}/{name}"))
            .header("X-Auth-Token", &token)
            .header("Content-Length", "0")
            .send()
            .await?;
        ensure!(
            made.status().is_success(),
            "container {name}: {}",
            made.status()
        );
        let keyed = client
            .post(&storage_url)
            .header("X-Auth-Token", &token)
            .header("X-Account-Meta-Temp-URL-Key", TEMP_URL_KEY)
            .send()
            .await?;
        ensure!(
            keyed.status().is_success(),
            "temp-URL key: {}",
            keyed.status()
        );
        Ok(Container {
            client,
            token,
            storage_url,
            name: name.to_owned(),
        })
    }

    /// A temp URL for `method` on object `object` of this container, valid
    /// for hours.
    pub fn temp_url(&self, method: &str, object: &str) -> Result<String> {
        let expires = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() + 6 * 3600;
        let base = reqwest::Url::parse(&self.storage_url)?;
        let path = format!("{}/{}/{object}", base.path(), self.name);
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(TEMP_URL_KEY.as_bytes())?;
        mac.update(format!("{method}\n{expires}\n{path}").as_bytes());
        let sig = hex::encode(mac.finalize().into_bytes());
        Ok(format!(
            "{}/{}/{object}?temp_url_sig={sig}&temp_url_expires={expires}",
            self.storage_url, self.name
        ))
    }

    /// Every object name under `prefix`, with whether it is a Static
    /// Large Object.
    pub async fn objects(&self, prefix: &str) -> Result<Vec<(String, bool)>> {
        let mut all: Vec<(String, bool)> = Vec::new();
        loop {
            let mut request = self
                .client
                .get(format!("{}/{}", self.storage_url, self.name))
                .header("X-Auth-Token", &self.token)
                .query(&[("format", "json"), ("prefix", prefix)]);
            if let Some((last, _)) = all.last() {
                request = request.query(&[("marker", last.as_str())]);
            }
            let page: Vec<serde_json::Value> = request.send().await?.json().await?;
            if page.is_empty() {
                return Ok(all);
            }
            all.extend(page.iter().filter_map(|o| {
                Some((o["name"].as_str()?.to_owned(), o.get("slo_etag").is_some()))
            }));
        }
    }

    /// Every object name under `prefix`.
    pub async fn keys(&self, prefix: &str) -> Result<Vec<String>> {
        Ok(self
            .objects(prefix)
            .await?
            .into_iter()
            .map(|(name, _)| name)
            .collect())
    }

    /// Deletes every object under `prefix`, large ones with their
    /// segments.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<()> {
        for (name, large) in self.objects(prefix).await? {
            let url = format!("{}/{}/{name}", self.storage_url, self.name);
            let mut request = self.client.delete(url).header("X-Auth-Token", &self.token);
            if large {
                request = request.query(&[("multipart-manifest", "delete")]);
            }
            let status = request.send().await?.status();
            ensure!(
                status.is_success() || status == 404,
                "delete {name}: {status}"
            );
        }
        Ok(())
    }
}

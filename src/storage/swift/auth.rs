//! The token the driver sends and the storage URL it sends it to, got the
//! ways Swift's own clients get them: auth v1 (tempauth, swauth: a user
//! and key in headers), Keystone v2.0 (what the old registry's driver
//! used by default) and v3 (a user and project, each in a domain), or a
//! token and storage URL the operator made beforehand.
//!
//! A token is renewed a minute before the expiry its service announced,
//! so that no request is refused for it; one refused anyway (revoked, a
//! service that announced no expiry, tempauth's, which hands out the same
//! token until it expires) is renewed and the request sent again once.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::config::{SwiftAuth, SwiftSettings};

/// Renewed this long before the service said it expires.
const RENEW_BEFORE: Duration = Duration::from_secs(60);

/// How long a login may take.
const AUTH_TIMEOUT: Duration = Duration::from_secs(30);

/// A token, where it is good, and until when.
#[derive(Clone)]
pub struct Session {
    pub token: String,
    /// `https://host/v1/AUTH_account`, no trailing `/`.
    pub storage_url: String,
    expires: Option<Instant>,
}

impl Session {
    /// Whether to keep using the token rather than log in again.
    pub fn fresh(&self) -> bool {
        self.expires
            .is_none_or(|at| Instant::now() + RENEW_BEFORE < at)
    }

    /// A session got by logging in again while `old` was held. A service
    /// that hands out the same token until it expires (tempauth does) is
    /// not asked again before then: the request it refuses at its expiry
    /// logs in and is sent once more.
    pub fn renewed(mut self, old: Option<&Session>) -> Session {
        if old.is_some_and(|old| old.token == self.token) {
            self.expires = self.expires.map(|at| at + RENEW_BEFORE);
        }
        self
    }
}

/// Why a login failed, for the startup error and the logs; never holds a
/// password or a token.
pub type Error = String;

/// Logs in as `settings` says.
pub async fn login(client: &reqwest::Client, settings: &SwiftSettings) -> Result<Session, Error> {
    let session = match &settings.auth {
        SwiftAuth::Preset { token, storage_url } => Ok(Session {
            token: token.clone(),
            storage_url: storage_url.trim_end_matches('/').to_owned(),
            expires: None,
        }),
        SwiftAuth::V1 { url, user, key } => v1(client, url, user, key).await,
        SwiftAuth::V2 {
            url,
            user,
            password,
            tenant,
        } => v2(client, settings, url, user, password, tenant.as_deref()).await,
        SwiftAuth::V3 {
            url,
            user,
            password,
            project,
            domain,
        } => {
            v3(
                client,
                settings,
                url,
                user,
                password,
                project.as_deref(),
                domain,
            )
            .await
        }
    }?;
    // An operator's own storage URL wins over the catalog's.
    Ok(match &settings.storage_url {
        Some(url) => Session {
            storage_url: url.trim_end_matches('/').to_owned(),
            ..session
        },
        None => session,
    })
}

fn expiring_in(seconds: Option<u64>) -> Option<Instant> {
    seconds.map(|s| Instant::now() + Duration::from_secs(s))
}

/// An RFC 3339 time (`2026-12-07T18:00:00.000000Z`), as an instant.
fn expiring_at(text: Option<&str>) -> Option<Instant> {
    let at: jiff::Timestamp = text?.parse().ok()?;
    let left = at.duration_since(jiff::Timestamp::now());
    let left = Duration::try_from(left).unwrap_or_default();
    Some(Instant::now() + left)
}

async fn v1(client: &reqwest::Client, url: &str, user: &str, key: &str) -> Result<Session, Error> {
    let response = client
        .get(url)
        .header("X-Auth-User", user)
        .header("X-Auth-Key", key)
        .timeout(AUTH_TIMEOUT)
        .send()
        .await
        .map_err(|e| format!("auth v1 at {url}: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("auth v1 at {url} refused user {user:?}: {status}"));
    }
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (Some(token), Some(storage_url)) = (header("X-Auth-Token"), header("X-Storage-Url")) else {
        return Err(format!(
            "auth v1 at {url} answered no X-Auth-Token or X-Storage-Url"
        ));
    };
    let expires = header("X-Auth-Token-Expires").and_then(|s| s.trim().parse().ok());
    Ok(Session {
        token,
        storage_url: storage_url.trim_end_matches('/').to_owned(),
        expires: expiring_in(expires),
    })
}

/// `url` with `path` after it, unless it already ends so.
fn endpoint(url: &str, version: &str, path: &str) -> String {
    let url = url.trim_end_matches('/');
    if url.ends_with(path) {
        url.to_owned()
    } else if url.ends_with(version) {
        format!("{url}{path}")
    } else {
        format!("{url}{version}{path}")
    }
}

async fn post_json(
    client: &reqwest::Client,
    url: &str,
    body: &Value,
    what: &str,
) -> Result<(reqwest::header::HeaderMap, Value), Error> {
    let response = client
        .post(url)
        .json(body)
        .timeout(AUTH_TIMEOUT)
        .send()
        .await
        .map_err(|e| format!("{what} at {url}: {e}"))?;
    let status = response.status();
    let headers = response.headers().clone();
    if !status.is_success() {
        return Err(format!("{what} at {url} refused the login: {status}"));
    }
    let body = response
        .json::<Value>()
        .await
        .map_err(|e| format!("{what} at {url}: an answer that is not JSON: {e}"))?;
    Ok((headers, body))
}

/// The object-store endpoint of a catalog: `endpoints` of the entry of
/// type `object-store`, in the region asked for (any when none is), the
/// interface's URL read by `url_of`.
fn object_store<'a>(
    catalog: &'a [Value],
    region: Option<&str>,
    url_of: impl Fn(&'a Value) -> Option<&'a str>,
) -> Option<&'a str> {
    catalog
        .iter()
        .filter(|entry| entry["type"] == "object-store")
        .flat_map(|entry| entry["endpoints"].as_array().into_iter().flatten())
        .filter(|e| {
            region.is_none_or(|r| {
                e["region"].as_str() == Some(r) || e["region_id"].as_str() == Some(r)
            })
        })
        .find_map(url_of)
}

async fn v2(
    client: &reqwest::Client,
    settings: &SwiftSettings,
    url: &str,
    user: &str,
    password: &str,
    tenant: Option<&str>,
) -> Result<Session, Error> {
    let url = endpoint(url, "/v2.0", "/tokens");
    let mut auth = json!({"passwordCredentials": {"username": user, "password": password}});
    if let Some(tenant) = tenant {
        auth["tenantName"] = json!(tenant);
    }
    let (_, body) = post_json(client, &url, &json!({ "auth": auth }), "Keystone v2.0").await?;
    let access = &body["access"];
    let token = access["token"]["id"]
        .as_str()
        .ok_or_else(|| format!("Keystone v2.0 at {url} answered no token"))?;
    let interface = match settings.endpoint_type.as_str() {
        "internal" | "internalURL" => "internalURL",
        "admin" | "adminURL" => "adminURL",
        _ => "publicURL",
    };
    let catalog = access["serviceCatalog"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let storage_url = match &settings.storage_url {
        Some(url) => url.clone(),
        None => object_store(&catalog, settings.region.as_deref(), |e| {
            e[interface].as_str()
        })
        .ok_or_else(|| no_endpoint(&url, settings))?
        .to_owned(),
    };
    Ok(Session {
        token: token.to_owned(),
        storage_url: storage_url.trim_end_matches('/').to_owned(),
        expires: expiring_at(access["token"]["expires"].as_str()),
    })
}

fn no_endpoint(url: &str, settings: &SwiftSettings) -> Error {
    format!(
        "{url}: the catalog has no object-store endpoint ({} interface{}); set \
         swift_object_storage_url",
        settings.endpoint_type,
        settings
            .region
            .as_deref()
            .map(|r| format!(", region {r}"))
            .unwrap_or_default()
    )
}

async fn v3(
    client: &reqwest::Client,
    settings: &SwiftSettings,
    url: &str,
    user: &str,
    password: &str,
    project: Option<&str>,
    domain: &str,
) -> Result<Session, Error> {
    let url = endpoint(url, "/v3", "/auth/tokens");
    let mut auth = json!({
        "identity": {
            "methods": ["password"],
            "password": {"user": {"name": user, "domain": {"name": domain}, "password": password}},
        }
    });
    if let Some(project) = project {
        auth["scope"] = json!({"project": {"name": project, "domain": {"name": domain}}});
    }
    let (headers, body) = post_json(client, &url, &json!({ "auth": auth }), "Keystone v3").await?;
    let token = headers
        .get("X-Subject-Token")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| format!("Keystone v3 at {url} answered no X-Subject-Token"))?;
    let interface = match settings.endpoint_type.as_str() {
        "internal" | "internalURL" => "internal",
        "admin" | "adminURL" => "admin",
        _ => "public",
    };
    let catalog = body["token"]["catalog"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let storage_url = match &settings.storage_url {
        Some(url) => url.clone(),
        None => object_store(&catalog, settings.region.as_deref(), |e| {
            (e["interface"] == interface)
                .then(|| e["url"].as_str())
                .flatten()
        })
        .ok_or_else(|| no_endpoint(&url, settings))?
        .to_owned(),
    };
    Ok(Session {
        token: token.to_owned(),
        storage_url: storage_url.trim_end_matches('/').to_owned(),
        expires: expiring_at(body["token"]["expires_at"].as_str()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_take_the_version_and_path_they_lack() {
        let v3 = |u| endpoint(u, "/v3", "/auth/tokens");
        assert_eq!(v3("http://k:5000"), "http://k:5000/v3/auth/tokens");
        assert_eq!(v3("http://k:5000/v3/"), "http://k:5000/v3/auth/tokens");
        assert_eq!(v3("http://k/v3/auth/tokens"), "http://k/v3/auth/tokens");
        let v2 = |u| endpoint(u, "/v2.0", "/tokens");
        assert_eq!(v2("http://k:5000/v2.0"), "http://k:5000/v2.0/tokens");
    }

    #[test]
    fn the_catalog_gives_the_object_store_of_the_region() {
        let catalog = json!([
            {"type": "identity", "endpoints": [{"interface": "public", "url": "http://id"}]},
            {"type": "object-store", "endpoints": [
                {"interface": "public", "region": "one", "url": "http://one/v1/AUTH_a"},
                {"interface": "internal", "region": "two", "url": "http://two-in/v1/AUTH_a"},
                {"interface": "public", "region": "two", "url": "http://two/v1/AUTH_a"},
            ]},
        ]);
        let catalog = catalog.as_array().unwrap();
        fn public(e: &Value) -> Option<&str> {
            (e["interface"] == "public")
                .then(|| e["url"].as_str())
                .flatten()
        }
        assert_eq!(
            object_store(catalog, Some("two"), public),
            Some("http://two/v1/AUTH_a")
        );
        assert_eq!(
            object_store(catalog, None, public),
            Some("http://one/v1/AUTH_a")
        );
        assert_eq!(object_store(catalog, Some("three"), public), None);
    }

    #[test]
    fn expiries_are_read_from_rfc_3339_times() {
        let later = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3600);
        let at = expiring_at(Some(&later.to_string())).unwrap();
        let left = at - Instant::now();
        assert!(left > Duration::from_secs(3590) && left <= Duration::from_secs(3600));
        assert!(expiring_at(Some("not a time")).is_none());
    }
}

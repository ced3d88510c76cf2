//! `registry-v1 healthcheck`: asks the registry running beside it whether
//! it answers, for the container image's `HEALTHCHECK`. The image holds no
//! shell and no curl, so the binary is its own probe.

use std::time::Duration;

use anyhow::{bail, Context};

use crate::config::Environment;

/// The request the probe sends: readiness, so that a container whose
/// storage or search index does not answer shows as unhealthy.
pub const HEALTH_PATH: &str = crate::http::health::READINESS_PATH;

/// A probe that hangs must fail before docker's own `--timeout` kills it,
/// so that the container's health log says why.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The URL of [`HEALTH_PATH`] on the registry this environment starts.
///
/// A wildcard listen address is reached on loopback, which every container
/// and host has; a specific one is asked where it listens.
pub fn health_url(env: &Environment) -> String {
    let host = match env.registry_host.trim() {
        "" | "0.0.0.0" => "127.0.0.1".to_owned(),
        "::" | "[::]" => "[::1]".to_owned(),
        h if h.contains(':') && !h.starts_with('[') => format!("[{h}]"),
        h => h.to_owned(),
    };
    // Plain http first; `probe` tries https when that gets no answer.
    format!("http://{host}:{}{HEALTH_PATH}", env.registry_port)
}

/// GETs [`health_url`]: `Ok` with the status line when the answer is a
/// 2xx, an error saying what went wrong otherwise.
///
/// A registry with `tls_*` set answers no plain http: then the same URL
/// is asked over https, without checking the certificate, which the probe
/// could not judge (the registry's own, on loopback, is what it asks).
pub fn probe(env: &Environment) -> anyhow::Result<String> {
    let url = health_url(env);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the health check")?;
    runtime.block_on(async {
        // No proxy: HTTP(S)_PROXY set for the registry's object store must
        // not send a loopback probe elsewhere.
        let client = |tls_trusted: bool| {
            reqwest::Client::builder()
                .no_proxy()
                .timeout(TIMEOUT)
                .danger_accept_invalid_certs(!tls_trusted)
                .build()
                .context("cannot build the health check's client")
        };
        let (url, response) = match client(true)?.get(&url).send().await {
            Ok(response) => (url, response),
            Err(plain) => {
                let https = url.replacen("http://", "https://", 1);
                match client(false)?.get(&https).send().await {
                    Ok(response) => (https, response),
                    Err(tls) => bail!("GET {url}: no answer ({plain}); over https neither ({tls})"),
                }
            }
        };
        let status = response.status();
        if !status.is_success() {
            bail!("GET {url}: {status}");
        }
        Ok(format!("GET {url}: {status}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(host: &str, port: &str) -> Environment {
        let vars = [("REGISTRY_HOST", host), ("REGISTRY_PORT", port)];
        Environment::from_lookup(&|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| std::ffi::OsString::from(v))
        })
        .unwrap()
    }

    #[test]
    fn wildcard_addresses_are_probed_on_loopback() {
        assert_eq!(health_url(&env("", "")), "http://127.0.0.1:5000/readyz");
        assert_eq!(
            health_url(&env("0.0.0.0", "6000")),
            "http://127.0.0.1:6000/readyz"
        );
        assert_eq!(health_url(&env("::", "5000")), "http://[::1]:5000/readyz");
    }

    #[test]
    fn a_specific_address_is_probed_where_it_listens() {
        assert_eq!(
            health_url(&env("10.1.2.3", "5000")),
            "http://10.1.2.3:5000/readyz"
        );
        assert_eq!(
            health_url(&env("fd00::1", "5000")),
            "http://[fd00::1]:5000/readyz"
        );
    }

    #[test]
    fn nothing_listening_is_unhealthy() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = probe(&env("127.0.0.1", &port.to_string())).unwrap_err();
        assert!(format!("{err:#}").contains("no answer"), "{err:#}");
    }
}

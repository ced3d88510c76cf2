//! The pull-through cache: images of other registries (the upstreams)
//! served as copies, fetched on first pull and kept in the v2 tree under
//! their upstream's prefix (`docker.io/library/busybox`).
//!
//! A request picks its upstream by containerd's `?ns=<host>`, by a path
//! that starts with an upstream's prefix (`/v2/docker.io/library/busybox`,
//! podman's and skopeo's mirrors), or else falls to the default upstream
//! (the docker engine's `registry-mirrors`; the old `mirroring.source`)
//! after this registry's own repositories missed. What is cached:
//! [`manifests`] (by digest forever, by tag for the upstream's `tag_ttl`,
//! then checked with a HEAD) and [`blobs`] (fetched once, verified,
//! streamed to the first client while stored). A default upstream that
//! speaks only v1 (the old Python registry) is cached as the old mirror
//! did, in the v1 tree: [`legacy`].

pub mod blobs;
pub mod legacy;
pub mod manifests;
pub mod tags;

use std::sync::Arc;

use crate::config::{MirrorSettings, UpstreamSettings};
use crate::registry::oci::{self, Name};
use crate::upstream::{Upstream, UpstreamConfig, UpstreamError};

/// One configured upstream and its client.
pub struct Cached {
    pub settings: UpstreamSettings,
    pub client: Upstream,
    /// Docker Hub: one-part names stand for `library/<name>`.
    docker_hub: bool,
}

/// Every upstream, and the blob fetches under way.
pub struct Mirror {
    upstreams: Vec<Cached>,
    fetches: blobs::Fetches,
    v1_images: legacy::ImageFetches,
}

/// How a request reaches an upstream.
pub struct Route<'a> {
    pub upstream: &'a Cached,
    /// The repository's name at the upstream.
    pub remote: String,
    /// The name its copy is stored under here.
    pub local: Name,
    /// The `ns` the request named, answered with `OCI-Namespace`.
    pub namespace: Option<String>,
}

/// Where a request for a repository goes.
pub enum Pick<'a> {
    /// This registry's own repositories only.
    Local,
    /// The cache of an upstream, which the request named.
    Cache(Route<'a>),
    /// This registry's own repository when it holds the content, else the
    /// default upstream's cache.
    Fallback(Route<'a>),
}

/// How a cached answer was made, for the `X-Registry-Cache` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Served from the cache without asking the upstream.
    Hit,
    /// Fetched from the upstream now.
    Miss,
    /// The upstream confirmed the cached copy (a HEAD).
    Revalidated,
    /// The upstream could not be asked: the cached copy, maybe outdated.
    Stale,
}

impl Freshness {
    pub fn as_str(self) -> &'static str {
        match self {
            Freshness::Hit => "hit",
            Freshness::Miss => "miss",
            Freshness::Revalidated => "revalidated",
            Freshness::Stale => "stale",
        }
    }
}

/// What the cache cannot do, in its words.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `?ns=` names a registry no upstream is configured for: this
    /// registry fetches only from the hosts its operator named.
    #[error("no upstream of this registry serves the namespace {0}")]
    NamespaceUnknown(String),
    /// A push or delete into a cached repository: the copies follow their
    /// upstream.
    #[error("{name} is a cache of {upstream}: push to and delete from the upstream itself")]
    ReadOnly { name: String, upstream: String },
    /// The upstream is down, slow, refuses or breaks the protocol, and
    /// nothing cached can stand in.
    #[error("upstream {upstream}: {error}")]
    Upstream {
        upstream: String,
        error: UpstreamError,
    },
    #[error(transparent)]
    Model(#[from] oci::Error),
    /// The v1 model's refusal, for a copy from a v1 source.
    #[error(transparent)]
    Legacy(#[from] crate::registry::legacy::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Mirror {
    /// The upstreams of the settings (none: every request is [`Pick::Local`]).
    pub fn new(settings: &MirrorSettings) -> anyhow::Result<Self> {
        let mut upstreams = Vec::new();
        for upstream in &settings.upstreams {
            let client = Upstream::new(UpstreamConfig {
                url: upstream.url.clone(),
                username: upstream.username.clone(),
                password: upstream.password.clone(),
                timeout: settings.timeout,
                max_concurrent: settings.max_concurrent,
            })?;
            upstreams.push(Cached {
                docker_hub: crate::config::is_docker_hub(&upstream.url),
                settings: upstream.clone(),
                client,
            });
        }
        Ok(Self {
            upstreams,
            fetches: blobs::Fetches::default(),
            v1_images: legacy::ImageFetches::default(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.upstreams.is_empty()
    }

    /// Where a request for `name` goes, `ns` being its `?ns=`.
    pub fn pick(&self, name: &Name, ns: Option<&str>) -> Result<Pick<'_>> {
        if self.upstreams.is_empty() {
            return Ok(Pick::Local);
        }
        if let Some(ns) = ns.filter(|ns| !ns.is_empty()) {
            let wanted = ns.to_ascii_lowercase();
            let upstream = self
                .upstreams
                .iter()
                .find(|u| u.settings.namespaces.contains(&wanted))
                .ok_or_else(|| Error::NamespaceUnknown(ns.chars().take(200).collect()))?;
            return Ok(Pick::Cache(self.route(
                upstream,
                name.as_str(),
                Some(wanted),
            )?));
        }
        if let Some((upstream, rest)) = self.under_prefix(name) {
            return Ok(Pick::Cache(self.route(upstream, rest, None)?));
        }
        match self.upstreams.iter().find(|u| u.settings.default) {
            Some(upstream) => Ok(Pick::Fallback(self.route(upstream, name.as_str(), None)?)),
            None => Ok(Pick::Local),
        }
    }

    /// The upstream whose copies `name` is stored among, and the rest of
    /// the name.
    fn under_prefix<'a>(&self, name: &'a Name) -> Option<(&Cached, &'a str)> {
        self.upstreams.iter().find_map(|u| {
            let rest = name.as_str().strip_prefix(u.settings.prefix.as_str())?;
            let rest = rest.strip_prefix('/')?;
            Some((u, rest))
        })
    }

    fn route<'a>(&self, upstream: &'a Cached, name: &str, ns: Option<String>) -> Result<Route<'a>> {
        let remote = if upstream.docker_hub && !name.contains('/') {
            format!("library/{name}")
        } else {
            name.to_owned()
        };
        let local = Name::parse(&format!("{}/{remote}", upstream.settings.prefix))
            .map_err(|e| oci::Error::NameUnknown(e.to_string()))?;
        Ok(Route {
            upstream,
            remote,
            local,
            namespace: ns,
        })
    }

    /// Refuses a write (push, delete) into a cached repository.
    pub fn check_writable(&self, name: &Name) -> Result<()> {
        match self.under_prefix(name) {
            Some((upstream, _)) => Err(Error::ReadOnly {
                name: name.to_string(),
                upstream: upstream.settings.url.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Whether `name` is stored as a copy of an upstream (the collector
    /// and the catalog tell cached repositories from pushed ones by it).
    pub fn caches(&self, name: &str) -> bool {
        self.upstreams.iter().any(|u| {
            name.strip_prefix(u.settings.prefix.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
        })
    }
}

impl Route<'_> {
    /// Counts an answer of the cache.
    fn count(&self, kind: &str, freshness: Freshness) {
        crate::metrics::get()
            .mirror_requests
            .with_label_values(&[
                self.upstream.settings.name.as_str(),
                kind,
                freshness.as_str(),
            ])
            .inc();
    }

    /// Counts a failed upstream request.
    fn count_error(&self, error: &UpstreamError) {
        crate::metrics::get()
            .mirror_errors
            .with_label_values(&[self.upstream.settings.name.as_str(), error.kind()])
            .inc();
    }

    fn upstream_error(&self, error: UpstreamError) -> Error {
        self.count_error(&error);
        Error::Upstream {
            upstream: self.upstream.settings.url.clone(),
            error,
        }
    }
}

/// Shared by every worker.
pub type Shared = Arc<Mirror>;

#[cfg(test)]
mod tests {
    use super::*;

    fn mirror(yaml: &str) -> Mirror {
        let settings = crate::config::from_text(
            &format!("f:\n{yaml}"),
            crate::config::ConfigSource::BuiltIn,
            "f",
            &crate::config::lookup_from(&[]),
        );
        Mirror::new(&settings.unwrap().mirror).unwrap()
    }

    fn name(n: &str) -> Name {
        Name::parse(n).unwrap()
    }

    #[test]
    fn requests_pick_their_upstream_by_ns_prefix_or_default() {
        let m = mirror(
            "  upstreams:\n    hub: {url: https://registry-1.docker.io, default: true}\n    \
             ghcr: {url: https://ghcr.io}\n",
        );
        let Pick::Cache(r) = m.pick(&name("library/busybox"), Some("docker.io")).unwrap() else {
            panic!("ns picks the cache")
        };
        assert_eq!(
            (r.remote.as_str(), r.local.as_str()),
            ("library/busybox", "docker.io/library/busybox")
        );
        assert_eq!(r.namespace.as_deref(), Some("docker.io"));
        let Pick::Cache(r) = m.pick(&name("docker.io/busybox"), None).unwrap() else {
            panic!("the prefix picks the cache")
        };
        assert_eq!(
            (r.remote.as_str(), r.local.as_str()),
            ("library/busybox", "docker.io/library/busybox")
        );
        let Pick::Cache(r) = m.pick(&name("ghcr.io/o/app"), None).unwrap() else {
            panic!("the prefix picks the cache")
        };
        assert_eq!(
            (r.remote.as_str(), r.local.as_str()),
            ("o/app", "ghcr.io/o/app")
        );
        // Only Docker Hub has `library/`.
        let Pick::Cache(r) = m.pick(&name("app"), Some("ghcr.io")).unwrap() else {
            panic!()
        };
        assert_eq!(r.remote, "app");
        let Pick::Fallback(r) = m.pick(&name("team/app"), None).unwrap() else {
            panic!("the rest falls back to the default upstream")
        };
        assert_eq!(r.local.as_str(), "docker.io/team/app");
        assert!(matches!(
            m.pick(&name("x"), Some("evil.example.com")),
            Err(Error::NamespaceUnknown(ns)) if ns == "evil.example.com"
        ));
        assert!(m
            .check_writable(&name("docker.io/library/busybox"))
            .is_err());
        assert!(m.check_writable(&name("docker.iox/app")).is_ok());
        assert!(m.check_writable(&name("team/app")).is_ok());
        assert!(m.caches("ghcr.io/o/app") && !m.caches("ghcr.iox/app"));
    }

    #[test]
    fn without_upstreams_everything_is_local() {
        let m = mirror("  loglevel: info\n");
        assert!(matches!(m.pick(&name("a/b"), None), Ok(Pick::Local)));
        assert!(matches!(
            m.pick(&name("a/b"), Some("docker.io")),
            Ok(Pick::Local)
        ));
        assert!(m.check_writable(&name("docker.io/a")).is_ok());
    }
}

//! What the registry holds, told for people (the web pages): a
//! repository's tags with when each was pushed and what it names, and an
//! image's platforms, config, history, layers and referrers; how many
//! bytes a repository holds ([`Sizes`]).
//!
//! Both trees, through the bridge: a v1 tag is shown as the manifest the
//! v2 API serves for it, so a page says what a client pulling it gets.
//! Everything here was written by clients; the pages escape it.

use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

mod sizes;

pub use sizes::Sizes;

use super::bridge;
use super::oci::{self, manifests, referrers, Digest, Name, Reference};
use crate::names::RepositoryName;
use crate::storage::{Storage, StorageError};

/// The largest image config read to be shown; a config is a few KiB, one
/// this large is shown as its descriptor only.
pub const MAX_CONFIG_SIZE: u64 = 1024 * 1024;

/// The most referrers listed on a page (the referrers API pages the rest).
pub const MAX_REFERRERS: usize = 100;

/// The name under which a repository of the search index is pulled: the
/// index spells a one-part v2 name (`x`) as `library/x`, as v1 did; `x`
/// reaches both that and the v1 `library/x`, so it is the one shown,
/// unless the v2 tree holds `library/x` itself.
pub async fn pull_name(storage: &dyn Storage, indexed: &str) -> oci::Result<Option<Name>> {
    let Ok(v1) = RepositoryName::parse(indexed) else {
        return Ok(None);
    };
    let Some(full) = bridge::v2_name(&v1) else {
        return Ok(None);
    };
    if v1.namespace() != RepositoryName::DEFAULT_NAMESPACE
        || manifests::has_any_revision(storage, &full).await?
    {
        return Ok(Some(full));
    }
    Ok(Name::parse(v1.repository()).ok().or(Some(full)))
}

/// One line of a repository's tag list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub digest: Digest,
    pub media_type: String,
    /// Config and layers, as the manifest declares them; `None` for an
    /// index (each child has its own).
    pub size: Option<u64>,
    /// `os/architecture[/variant]` of each child of an index, or of the
    /// image (from its config).
    pub platforms: Vec<String>,
    /// The config's `created`, as the image says (clocks of build hosts).
    pub created: Option<String>,
    pub artifact_type: Option<String>,
}

/// What an image's manifest declares of its config and layers, in bytes
/// (`None` for an index): its manifest only, nothing else read.
pub async fn declared_size(
    storage: &dyn Storage,
    name: &Name,
    reference: &Reference,
) -> oci::Result<Option<u64>> {
    let stored = bridge::manifest(storage, name, reference).await?;
    Ok(Parsed::of(&stored.bytes).size())
}

/// What `reference` names in the repository, briefly.
pub async fn summary(
    storage: &dyn Storage,
    name: &Name,
    reference: &Reference,
) -> oci::Result<Summary> {
    let stored = bridge::manifest(storage, name, reference).await?;
    let parsed = Parsed::of(&stored.bytes);
    let (size, platforms, created) = match &parsed.manifests {
        Some(children) => (
            None,
            children
                .iter()
                .filter_map(|c| c.platform.as_ref())
                .map(Platform::text)
                .collect(),
            None,
        ),
        None => {
            let config = match &parsed.config {
                Some(descriptor) if is_image_config(&descriptor.media_type) => {
                    read_config(storage, name, descriptor).await?
                }
                _ => None,
            };
            let size = parsed.size().unwrap_or_default();
            let platform = config.as_ref().and_then(Config::platform);
            (
                Some(size),
                platform.into_iter().collect(),
                config.and_then(|c| c.created),
            )
        }
    };
    Ok(Summary {
        digest: stored.digest,
        media_type: stored.media_type,
        size,
        platforms,
        created,
        artifact_type: parsed.artifact_type.or_else(|| {
            // An artifact without the field says what it is by its config.
            parsed
                .config
                .as_ref()
                .map(|c| c.media_type.clone())
                .filter(|t| !is_image_config(t))
        }),
    })
}

/// An image or index, as its page shows it.
#[derive(Debug, Clone)]
pub struct Image {
    pub digest: Digest,
    pub media_type: String,
    pub artifact_type: Option<String>,
    /// The manifest as stored, pretty-printed when it is JSON.
    pub raw: String,
    pub annotations: BTreeMap<String, String>,
    pub subject: Option<Descriptor>,
    /// An index's children.
    pub children: Vec<Descriptor>,
    /// An image's config descriptor, and what it holds when it could be
    /// read (see [`MAX_CONFIG_SIZE`]).
    pub config_descriptor: Option<Descriptor>,
    pub config: Option<Config>,
    pub layers: Vec<Descriptor>,
    pub referrers: Vec<referrers::Referrer>,
    /// More referrers than [`MAX_REFERRERS`].
    pub more_referrers: bool,
}

impl Image {
    /// The history, each step with the layer it made (steps that made no
    /// layer have none): the history's non-empty steps and the layers pair
    /// up in order, as docker's `history` pairs them.
    pub fn history(&self) -> Vec<(History, Option<&Descriptor>)> {
        let Some(config) = &self.config else {
            return Vec::new();
        };
        let mut layers = self.layers.iter();
        config
            .history
            .iter()
            .map(|step| {
                let layer = if step.empty_layer {
                    None
                } else {
                    layers.next()
                };
                (step.clone(), layer)
            })
            .collect()
    }

    /// Config and layers, as the manifest declares them.
    pub fn size(&self) -> u64 {
        self.config_descriptor
            .iter()
            .chain(&self.layers)
            .map(|d| d.size)
            .sum()
    }
}

/// What `reference` names in the repository, in full.
pub async fn image(
    storage: &dyn Storage,
    name: &Name,
    reference: &Reference,
) -> oci::Result<Image> {
    let stored = bridge::manifest(storage, name, reference).await?;
    let parsed = Parsed::of(&stored.bytes);
    let config = match &parsed.config {
        Some(descriptor) if is_image_config(&descriptor.media_type) => {
            read_config(storage, name, descriptor).await?
        }
        _ => None,
    };
    let page = referrers::page(
        storage,
        name,
        &stored.digest,
        None,
        None,
        MAX_REFERRERS,
        usize::MAX,
    )
    .await?;
    let raw = serde_json::from_slice::<Value>(&stored.bytes)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| String::from_utf8_lossy(&stored.bytes).into_owned());
    Ok(Image {
        digest: stored.digest,
        media_type: stored.media_type,
        artifact_type: parsed.artifact_type,
        raw,
        annotations: parsed.annotations.unwrap_or_default(),
        subject: parsed.subject,
        children: parsed.manifests.unwrap_or_default(),
        config_descriptor: parsed.config,
        config,
        layers: parsed.layers,
        referrers: page.index.manifests,
        more_referrers: page.next.is_some(),
    })
}

fn is_image_config(media_type: &str) -> bool {
    matches!(
        media_type,
        "application/vnd.oci.image.config.v1+json"
            | "application/vnd.docker.container.image.v1+json"
    )
}

/// The config blob, parsed; `None` when it is missing, too large or not
/// a config (a page shows the descriptor then).
async fn read_config(
    storage: &dyn Storage,
    name: &Name,
    descriptor: &Descriptor,
) -> oci::Result<Option<Config>> {
    let Ok(digest) = Digest::parse(&descriptor.digest) else {
        return Ok(None);
    };
    let source = match bridge::blob(storage, name, &digest).await {
        Ok(source) => source,
        Err(oci::Error::BlobUnknown(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    if source.xz || source.size > MAX_CONFIG_SIZE {
        return Ok(None);
    }
    let bytes = match storage.get(&source.path).await {
        Ok(bytes) => bytes,
        Err(StorageError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    Ok(serde_json::from_slice::<RawConfig>(&bytes)
        .ok()
        .map(Config::from))
}

/// A descriptor, as far as a page shows it (tolerant: a field of the
/// wrong type is left out, never an error).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    pub platform: Option<Platform>,
    pub artifact_type: Option<String>,
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn text(&self) -> String {
        match &self.variant {
            Some(variant) => format!("{}/{}/{variant}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }
}

/// The parts of a manifest or index a page shows; what does not parse is
/// left out (the raw manifest is shown anyway).
#[derive(Debug, Default)]
struct Parsed {
    config: Option<Descriptor>,
    layers: Vec<Descriptor>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    artifact_type: Option<String>,
    annotations: Option<BTreeMap<String, String>>,
}

impl Parsed {
    /// Config and layers; `None` for an index.
    fn size(&self) -> Option<u64> {
        self.manifests
            .is_none()
            .then(|| self.config.iter().chain(&self.layers).map(|d| d.size).sum())
    }

    fn of(bytes: &[u8]) -> Self {
        let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(bytes) else {
            return Self::default();
        };
        let take = |key: &str| fields.get(key).cloned();
        let one = |key: &str| take(key).and_then(|v| serde_json::from_value::<Descriptor>(v).ok());
        let many = |key: &str| {
            take(key).and_then(|v| match v {
                // One that does not parse keeps its place (layers pair
                // with history steps by position), shown empty.
                Value::Array(items) => Some(
                    items
                        .into_iter()
                        .map(|i| serde_json::from_value::<Descriptor>(i).unwrap_or_default())
                        .collect::<Vec<_>>(),
                ),
                _ => None,
            })
        };
        Self {
            config: one("config"),
            layers: many("layers").unwrap_or_default(),
            manifests: many("manifests"),
            subject: one("subject"),
            artifact_type: take("artifactType").and_then(|v| v.as_str().map(str::to_owned)),
            annotations: take("annotations").and_then(|v| serde_json::from_value(v).ok()),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawConfig {
    os: Option<String>,
    architecture: Option<String>,
    variant: Option<String>,
    created: Option<String>,
    author: Option<String>,
    config: Option<RawRuntime>,
    history: Vec<History>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct RawRuntime {
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    env: Option<Vec<String>>,
    labels: Option<BTreeMap<String, String>>,
    exposed_ports: Option<BTreeMap<String, Value>>,
    working_dir: Option<String>,
    user: Option<String>,
}

/// An image config, as `docker inspect` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    pub os: Option<String>,
    pub architecture: Option<String>,
    pub variant: Option<String>,
    pub created: Option<String>,
    pub author: Option<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub exposed_ports: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub history: Vec<History>,
}

impl Config {
    pub fn platform(&self) -> Option<String> {
        let (os, architecture) = (self.os.as_ref()?, self.architecture.as_ref()?);
        Some(
            Platform {
                os: os.clone(),
                architecture: architecture.clone(),
                variant: self.variant.clone(),
            }
            .text(),
        )
    }
}

impl From<RawConfig> for Config {
    fn from(raw: RawConfig) -> Self {
        let runtime = raw.config.unwrap_or_default();
        Self {
            os: raw.os,
            architecture: raw.architecture,
            variant: raw.variant,
            created: raw.created,
            author: raw.author,
            entrypoint: runtime.entrypoint.unwrap_or_default(),
            cmd: runtime.cmd.unwrap_or_default(),
            env: runtime.env.unwrap_or_default(),
            labels: runtime.labels.unwrap_or_default(),
            exposed_ports: runtime
                .exposed_ports
                .unwrap_or_default()
                .into_keys()
                .collect(),
            working_dir: runtime.working_dir.filter(|d| !d.is_empty()),
            user: runtime.user.filter(|u| !u.is_empty()),
            history: raw.history,
        }
    }
}

/// One step of an image's history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct History {
    pub created: Option<String>,
    pub created_by: Option<String>,
    pub comment: Option<String>,
    pub empty_layer: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_steps_pair_with_the_layers_they_made() {
        let layer = |d: &str| Descriptor {
            digest: d.to_owned(),
            size: 1,
            ..Default::default()
        };
        let step = |by: &str, empty: bool| History {
            created_by: Some(by.to_owned()),
            empty_layer: empty,
            ..Default::default()
        };
        let image = Image {
            digest: Digest::of(oci::Algorithm::Sha256, b"x"),
            media_type: manifests::OCI_MANIFEST.to_owned(),
            artifact_type: None,
            raw: String::new(),
            annotations: BTreeMap::new(),
            subject: None,
            children: Vec::new(),
            config_descriptor: None,
            config: Some(Config {
                history: vec![step("ADD", false), step("ENV", true), step("RUN", false)],
                ..Default::default()
            }),
            layers: vec![layer("a"), layer("b")],
            referrers: Vec::new(),
            more_referrers: false,
        };
        let paired: Vec<_> = image
            .history()
            .into_iter()
            .map(|(h, l)| (h.created_by.unwrap(), l.map(|l| l.digest.clone())))
            .collect();
        assert_eq!(
            paired,
            [
                ("ADD".to_owned(), Some("a".to_owned())),
                ("ENV".to_owned(), None),
                ("RUN".to_owned(), Some("b".to_owned()))
            ]
        );
    }

    #[test]
    fn a_manifest_of_the_wrong_shape_shows_what_parses() {
        let parsed = Parsed::of(br#"{"layers": [{"digest": "sha256:x", "size": 3}, 7], "config": "no", "annotations": {"a": "<b>"}}"#);
        assert_eq!(parsed.layers.len(), 2, "the broken one keeps its place");
        assert_eq!(parsed.layers[0].size, 3);
        assert!(parsed.config.is_none());
        assert_eq!(parsed.annotations.unwrap()["a"], "<b>");
        assert!(Parsed::of(b"not json").layers.is_empty());
    }
}

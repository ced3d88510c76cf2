//! Tag lists through the cache. The upstream's list is the truth (a
//! client lists tags to choose one to pull, most of which are not cached
//! yet); when the upstream cannot answer, the tags cached here are listed.

use super::{Error, Mirror, Pick, Result};
use crate::registry::bridge;
use crate::registry::oci::{self, tags, Name};
use crate::upstream::UpstreamError;

/// A page of tags, and the `ns` it answers.
pub struct Listed {
    pub page: tags::Page,
    pub namespace: Option<String>,
}

impl Mirror {
    /// `GET /v2/<name>/tags/list[?ns=]`.
    pub async fn tags(
        &self,
        storage: &dyn crate::storage::Storage,
        name: &Name,
        ns: Option<&str>,
        n: Option<usize>,
        last: Option<&str>,
    ) -> Result<Listed> {
        let route = match self.pick(name, ns)? {
            Pick::Local => None,
            Pick::Cache(route) => Some(route),
            Pick::Fallback(route) => {
                // A default upstream that speaks only v1: its tags copied
                // into the v1 tree, which the bridge lists (see `legacy`).
                self.v1_sync_tags(storage, name).await?;
                match bridge::tags(storage, name, n, last).await {
                    Ok(page) => {
                        return Ok(Listed {
                            page,
                            namespace: None,
                        })
                    }
                    Err(oci::Error::NameUnknown(_)) => Some(route),
                    Err(e) => return Err(e.into()),
                }
            }
        };
        let Some(route) = route else {
            return Ok(Listed {
                page: bridge::tags(storage, name, n, last).await?,
                namespace: None,
            });
        };
        let mut all = match route.upstream.client.tags(&route.remote).await {
            Ok(all) => all,
            Err(UpstreamError::NotFound) => {
                return Err(oci::Error::NameUnknown(name.to_string()).into())
            }
            Err(error) => match tags::all(storage, &route.local).await {
                Ok(cached) => {
                    log::warn!(
                        "upstream {} could not list the tags of {} ({error}): listing the cached ones",
                        route.upstream.settings.url,
                        route.remote
                    );
                    cached
                }
                Err(oci::Error::NameUnknown(_)) => return Err(route.upstream_error(error)),
                Err(e) => return Err(Error::Model(e)),
            },
        };
        all.retain(|t| oci::Tag::parse(t).is_ok());
        all.sort();
        all.dedup();
        Ok(Listed {
            page: tags::page(all, n, last, |a, b| a < b),
            namespace: route.namespace.clone(),
        })
    }
}

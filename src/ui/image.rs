//! An image's page (or an index's, or an artifact's): what `docker
//! inspect` and `docker history` would say, its layers, annotations,
//! referrers and the manifest itself.

use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use super::error::Error;
use super::page::{self, Page};
use crate::registry::inspect::{self, Image};
use crate::registry::oci::{self, Digest, Name, Reference};

/// The children of an index whose images are read for their size.
const MAX_CHILDREN_SIZED: usize = 64;
use crate::registry::AppState;

pub struct Child {
    pub platform: String,
    pub digest: String,
    pub short_digest: String,
    pub size: String,
    pub media_type: String,
}

pub struct Step {
    pub created: String,
    pub command: String,
    /// The size of the layer the step made, or `—`.
    pub layer: String,
}

pub struct Layer {
    pub digest: String,
    pub short_digest: String,
    pub size: String,
    pub media_type: String,
}

#[derive(Template)]
#[template(path = "ui/image.html")]
struct ImagePage {
    page: Page,
    name: String,
    reference: String,
    size: String,
    platform: Option<String>,
    created: Option<String>,
    entrypoint: String,
    cmd: String,
    children: Vec<Child>,
    history: Vec<Step>,
    layers: Vec<Layer>,
    image: Image,
    /// A delete is offered (`Some(true)`), or a login first.
    delete: Option<bool>,
    /// This page's path, to come back to after a login.
    here: String,
}

/// `GET /image/<name>/<tag or digest>`.
pub async fn show(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, Error> {
    let name = Name::parse(req.match_info().get("name").unwrap_or_default())
        .map_err(|e| Error::NotFound(e.to_string()))?;
    let text = req.match_info().get("reference").unwrap_or_default();
    let reference = Reference::parse(text)
        .map_err(|_| Error::NotFound(format!("{text} is neither a tag nor a digest.")))?;
    let image = inspect::image(&*state.storage, &name, &reference).await?;
    let delete = super::gate::may_delete(&state, &req, &name).await;
    let mut children = Vec::with_capacity(image.children.len());
    for (i, child) in image.children.iter().enumerate() {
        // An image's own size (config and layers) where its manifest is
        // here to say it; an index of many children shows the first ones'.
        let size = match Digest::parse(&child.digest) {
            Ok(digest) if i < MAX_CHILDREN_SIZED => {
                match inspect::declared_size(&*state.storage, &name, &Reference::Digest(digest))
                    .await
                {
                    Ok(size) => size,
                    Err(oci::Error::ManifestUnknown(_)) => None,
                    Err(e) => return Err(e.into()),
                }
            }
            _ => None,
        };
        children.push(Child {
            platform: child
                .platform
                .as_ref()
                .map(|p| p.text())
                .unwrap_or_else(|| {
                    child
                        .artifact_type
                        .clone()
                        .unwrap_or_else(|| "—".to_owned())
                }),
            short_digest: page::short_digest(&child.digest),
            digest: child.digest.clone(),
            size: size.map(page::size).unwrap_or_else(|| "—".to_owned()),
            media_type: child.media_type.clone(),
        });
    }
    let history = image
        .history()
        .into_iter()
        .map(|(step, layer)| Step {
            created: step
                .created
                .as_deref()
                .map(page::created)
                .unwrap_or_default(),
            command: step.created_by.or(step.comment).unwrap_or_default(),
            layer: layer.map_or_else(|| "—".to_owned(), |l| page::size(l.size)),
        })
        .collect();
    let layers = image
        .layers
        .iter()
        .map(|l| Layer {
            short_digest: page::short_digest(&l.digest),
            digest: l.digest.clone(),
            size: page::size(l.size),
            media_type: l.media_type.clone(),
        })
        .collect();
    let config = image.config.as_ref();
    let json = |words: Option<&Vec<String>>| {
        words
            .map(|w| serde_json::to_string(w).unwrap_or_default())
            .unwrap_or_default()
    };
    page::html(&ImagePage {
        page: Page::of(&state, &req),
        name: name.to_string(),
        reference: reference.to_string(),
        size: page::size(image.size()),
        platform: config.and_then(inspect::Config::platform),
        created: config.and_then(|c| c.created.as_deref()).map(page::created),
        entrypoint: json(config.map(|c| &c.entrypoint)),
        cmd: json(config.map(|c| &c.cmd)),
        children,
        history,
        layers,
        image,
        delete,
        here: req.path().to_owned(),
    })
}

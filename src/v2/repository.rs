//! `DELETE /v2/<name>/_registry-v1/repository`: a repository deleted whole,
//! in both trees. The OCI specification has no such request; its
//! extensions' rule gives the path a `_<extension>/<component>` of its own
//! after the name, which no repository name can hold (a component never
//! starts with `_`), so no client of the specification's routes meets it.

use actix_web::{web, HttpRequest, HttpResponse};

use super::error::Result;
use crate::events::{Action, Event};
use crate::names::RepositoryName;
use crate::registry::{bridge, AppState};

/// The path of the request below `/v2/<name>/`.
pub const PATH: &str = "_registry-v1/repository";

/// 202 as a manifest's delete: the tags, manifests and links are gone,
/// the bytes go with the next collection.
pub async fn delete(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse> {
    if !state.settings.delete_enabled {
        return Ok(super::base::unsupported(
            "deletes are disabled on this registry",
            "",
        ));
    }
    let name = super::name(&req)?;
    let deleted = bridge::repository::delete(&*state.storage, &state.rules, &name).await?;
    log::info!(
        "repository {name} deleted: {} tags and {} manifests of the v2 tree{}",
        deleted.v2.tags.len(),
        deleted.v2.manifests.len(),
        match &deleted.v1 {
            Some(v1) => format!(", the v1 repository {v1}"),
            None => String::new(),
        }
    );
    let target = crate::events::Target::default();
    super::record(&state, &req, Action::Delete, &name, PATH, target).await?;
    // Out of search unless the other v2 spelling (`library/x` for `x`)
    // still holds it.
    if let Ok(repo) = RepositoryName::parse(name.as_str()) {
        if !bridge::still_held(&*state.storage, &repo).await {
            state
                .events
                .publish(Event::RepositoryDeleted { name: repo })
                .await;
        }
    }
    Ok(HttpResponse::Accepted().finish())
}

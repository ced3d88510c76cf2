//! Tags and repositories: what a tag points to, its JSON, a repository's
//! properties, deleting either.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::{image_exists, json, parse_json, remove_if_present, Error, OrNotFound, Result};
use crate::names::{ImageId, RepositoryName, Tag};
use crate::registry::rules::{self, Rules};
use crate::storage::layout::legacy;
use crate::storage::{Storage, StorageError};

/// Every tag of a repository and the image it points to.
pub async fn tags(
    storage: &dyn Storage,
    name: &RepositoryName,
) -> Result<BTreeMap<String, String>> {
    let files = storage
        .list(&legacy::repository_dir(name))
        .await
        .or_not_found(Error::RepositoryNotFound)?;
    let mut tags = BTreeMap::new();
    for file in files {
        let Some(tag) = legacy::tag_from_file_name(&file) else {
            continue;
        };
        // A tag deleted between the listing and the read is simply gone.
        match storage.get(&legacy::tag(name, &tag)).await {
            Ok(image) => {
                tags.insert(
                    tag.to_string(),
                    String::from_utf8_lossy(&image).into_owned(),
                );
            }
            Err(StorageError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(tags)
}

/// Every tag of a repository and when it was pushed (its file written):
/// a listing and a stat each, no read.
pub async fn tags_pushed(
    storage: &dyn Storage,
    name: &RepositoryName,
) -> Result<Vec<(Tag, std::time::SystemTime)>> {
    let files = storage
        .list(&legacy::repository_dir(name))
        .await
        .or_not_found(Error::RepositoryNotFound)?;
    let mut tags = Vec::new();
    for tag in files.iter().filter_map(|f| legacy::tag_from_file_name(f)) {
        match storage.stat(&legacy::tag(name, &tag)).await {
            Ok(info) => tags.push((tag, info.modified)),
            // Deleted since the listing.
            Err(StorageError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(tags)
}

pub async fn tag(storage: &dyn Storage, name: &RepositoryName, tag: &Tag) -> Result<String> {
    let image = storage
        .get(&legacy::tag(name, tag))
        .await
        .or_not_found(Error::TagNotFound)?;
    Ok(String::from_utf8_lossy(&image).into_owned())
}

/// Points `tag` at an image, recording what the pushing client said of
/// itself in its User-Agent, unless the `rules` hold the tag and it points
/// at another image already.
pub async fn put_tag(
    storage: &dyn Storage,
    rules: &Rules,
    name: &RepositoryName,
    tag: &Tag,
    body: &[u8],
    user_agent: &[(String, String)],
) -> Result<ImageId> {
    let Some(Value::String(image)) = parse_json(body) else {
        return Err(Error::InvalidData);
    };
    if image.is_empty() {
        return Err(Error::InvalidData);
    }
    let image = ImageId::parse(&image).ok_or(Error::ImageNotFound)?;
    // Before the check, for the collector (see `collector::records`).
    announce_images(storage, [image.to_string()]).await?;
    if !image_exists(storage, &image).await? {
        return Err(Error::ImageNotFound);
    }
    // Held until the tag is written: of two first pushes at once, one wins.
    let mut _held = None;
    if let Some(immutable) = rules.immutable(&name.to_string(), tag.as_str()) {
        _held = Some(storage.lock(&legacy::tag(name, tag)).await?);
        match storage.get(&legacy::tag(name, tag)).await {
            Ok(current) if *current != *image.as_str().as_bytes() => {
                let current = String::from_utf8_lossy(&current).into_owned();
                return Err(Error::Immutable(rules::refuse_push(immutable, &current)));
            }
            Ok(_) | Err(StorageError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    // Before the tag: past the quota, the push leaves no tag.
    super::quota::charge_tag(storage, rules, name, &image).await?;
    storage
        .put(&legacy::tag(name, tag), Bytes::from(image.to_string()))
        .await?;
    let props = json::to_bytes(&tag_properties(user_agent));
    storage
        .put(&legacy::tag_json(name, tag), props.clone())
        .await?;
    if tag.as_str() == "latest" {
        storage.put(&legacy::repository_json(name), props).await?;
    }
    Ok(image)
}

/// A tag copied from the v1 pull-through cache's source: the image it
/// names may not be stored yet (a pull fetches it when it asks for it),
/// and there is no client's User-Agent to record.
pub async fn put_tag_copy(
    storage: &dyn Storage,
    name: &RepositoryName,
    tag: &Tag,
    image: &ImageId,
) -> Result<()> {
    // Before the tag, for the collector (see `collector::records`).
    announce_images(storage, [image.to_string()]).await?;
    storage
        .put(&legacy::tag(name, tag), Bytes::from(image.to_string()))
        .await?;
    Ok(())
}

/// Records that a push references these images and their ancestry.
pub(super) async fn announce_images(
    storage: &dyn Storage,
    images: impl IntoIterator<Item = String>,
) -> Result<()> {
    let record = crate::registry::collector::records::Record {
        images: images.into_iter().collect(),
        ..Default::default()
    };
    Ok(crate::registry::collector::records::announce(storage, &record).await?)
}

/// `tag<tag>_json`: when and by which client a tag was pushed, keys in the
/// old registry's order.
fn tag_properties(user_agent: &[(String, String)]) -> Value {
    let mut props = Map::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    props.insert("last_update".into(), json!(now));
    // A product named twice: the last one counts, as in a Python dict.
    let find = |product: &str| {
        user_agent
            .iter()
            .rev()
            .find(|(k, _)| k == product)
            .map(|(_, v)| v.clone())
    };
    for (field, product, lower) in [
        ("docker_version", "docker", false),
        ("docker_go_version", "go", false),
        ("arch", "arch", true),
        ("kernel", "kernel", true),
        ("os", "os", true),
    ] {
        if let Some(value) = find(product) {
            let value = if lower { value.to_lowercase() } else { value };
            props.insert(field.to_owned(), Value::String(value));
        }
    }
    Value::Object(props)
}

/// The JSON of a tag that has none stored.
fn default_tag_json() -> Bytes {
    json::to_bytes(&json!({
        "last_update": null,
        "docker_version": null,
        "docker_go_version": null,
        "arch": "amd64",
        "os": "linux",
        "kernel": null,
    }))
}

pub async fn tag_json(storage: &dyn Storage, name: &RepositoryName, tag: &Tag) -> Result<Bytes> {
    stored_or_default(storage, &legacy::tag_json(name, tag)).await
}

pub async fn repository_json(storage: &dyn Storage, name: &RepositoryName) -> Result<Bytes> {
    stored_or_default(storage, &legacy::repository_json(name)).await
}

async fn stored_or_default(storage: &dyn Storage, path: &str) -> Result<Bytes> {
    match storage.get(path).await {
        Ok(data) if parse_json(&data).is_some() => Ok(data),
        Ok(_) | Err(StorageError::NotFound(_)) => Ok(default_tag_json()),
        Err(e) => Err(e.into()),
    }
}

/// Removes a tag and its JSON (and the repository JSON for `latest`),
/// unless the `rules` hold it.
pub async fn delete_tag(
    storage: &dyn Storage,
    rules: &Rules,
    name: &RepositoryName,
    tag: &Tag,
) -> Result<()> {
    if let Some(immutable) = rules.immutable(&name.to_string(), tag.as_str()) {
        return Err(Error::Immutable(rules::refuse_delete(immutable)));
    }
    storage
        .remove(&legacy::tag(name, tag))
        .await
        .or_not_found(Error::TagToDeleteNotFound(tag.clone()))?;
    remove_if_present(storage, &legacy::tag_json(name, tag)).await?;
    if tag.as_str() == "latest" {
        remove_if_present(storage, &legacy::repository_json(name)).await?;
    }
    Ok(())
}

/// Removes every tag and the repository's folder; the images stay (other
/// repositories may share them). Where a folder goes at once (local disk)
/// so does the repository: a delete cut short leaves it whole or gone.
/// Elsewhere (S3) its tags go first, one at a time, each whole: a cut
/// leaves some tags, each served with its image index, and a second
/// delete finishes. Nothing goes when the `rules` hold one of its tags.
pub async fn delete_repository(
    storage: &dyn Storage,
    rules: &Rules,
    name: &RepositoryName,
) -> Result<()> {
    let tags = tags(storage, name).await?;
    let repository = name.to_string();
    if let Some(immutable) = rules.first_immutable(&repository, tags.keys().map(String::as_str)) {
        return Err(Error::Immutable(rules::refuse_delete(immutable)));
    }
    let counted = super::quota::repository_total(storage, rules, name).await?;
    if !storage.removes_folders_at_once() {
        for tag in tags.into_keys() {
            match delete_tag(storage, &Rules::default(), name, &Tag::unchecked(&tag)).await {
                Ok(()) | Err(Error::TagToDeleteNotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
    }
    // Whatever is left (index files, the private flag, the quota's
    // markers). In a bucket the folder may be gone with its last tag
    // already.
    remove_if_present(storage, &legacy::repository_dir(name)).await?;
    super::quota::give_back(storage, rules, name, counted).await
}

/// Whether the repository's folder exists (it has been pushed to).
pub async fn repository_exists(storage: &dyn Storage, name: &RepositoryName) -> Result<bool> {
    match storage.list(&legacy::repository_dir(name)).await {
        Ok(_) => Ok(true),
        Err(StorageError::NotFound(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

pub async fn is_private(storage: &dyn Storage, name: &RepositoryName) -> Result<bool> {
    Ok(storage.exists(&legacy::private_flag(name)).await?)
}

/// The width of the search index's `description VARCHAR(100)` column, which
/// the old registry's databases (and other engines than SQLite) enforce.
pub const MAX_DESCRIPTION_CHARS: usize = 100;

/// What a client may set through `PUT .../properties`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Properties {
    pub private: Option<bool>,
    pub description: Option<String>,
}

impl Properties {
    /// `{"access": "private"|"public", "description": "..."}`, either key
    /// optional but not both.
    pub fn parse(body: &[u8]) -> Result<Self> {
        let Some(Value::Object(map)) = parse_json(body) else {
            return Err(Error::InvalidData);
        };
        let private = match map.get("access") {
            None => None,
            Some(Value::String(s)) if s == "private" => Some(true),
            Some(Value::String(s)) if s == "public" => Some(false),
            Some(_) => return Err(Error::InvalidData),
        };
        let description = match map.get("description") {
            None => None,
            Some(Value::String(s)) if s.chars().count() > MAX_DESCRIPTION_CHARS => {
                return Err(Error::DescriptionTooLong(MAX_DESCRIPTION_CHARS))
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(Error::InvalidData),
        };
        if private.is_none() && description.is_none() {
            return Err(Error::InvalidData);
        }
        Ok(Self {
            private,
            description,
        })
    }
}

pub async fn set_private(
    storage: &dyn Storage,
    name: &RepositoryName,
    private: bool,
) -> Result<()> {
    let flag = legacy::private_flag(name);
    if private {
        storage.put(&flag, Bytes::new()).await?;
    } else {
        remove_if_present(storage, &flag).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_properties_come_from_the_user_agent() {
        let ua = [
            ("docker".to_owned(), "1.3.0".to_owned()),
            ("go".to_owned(), "go1.3.3".to_owned()),
            ("kernel".to_owned(), "3.16-Generic".to_owned()),
            ("os".to_owned(), "Linux".to_owned()),
            ("arch".to_owned(), "AMD64".to_owned()),
            ("git-commit".to_owned(), "c78088f".to_owned()),
        ];
        let props = tag_properties(&ua);
        assert_eq!(props["docker_version"], "1.3.0");
        assert_eq!(props["docker_go_version"], "go1.3.3");
        assert_eq!(props["kernel"], "3.16-generic");
        assert_eq!(props["os"], "linux");
        assert_eq!(props["arch"], "amd64");
        assert!(props["last_update"].as_u64().unwrap() > 1_600_000_000);
        let keys: Vec<&String> = props.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "last_update",
                "docker_version",
                "docker_go_version",
                "arch",
                "kernel",
                "os"
            ]
        );
        assert!(props.get("git-commit").is_none());
    }

    #[test]
    fn properties_take_access_and_description() {
        assert_eq!(
            Properties::parse(br#"{"access": "private"}"#).unwrap(),
            Properties {
                private: Some(true),
                description: None
            }
        );
        assert_eq!(
            Properties::parse(br#"{"description": "x"}"#)
                .unwrap()
                .description
                .as_deref(),
            Some("x")
        );
        let long = format!(r#"{{"description": "{}"}}"#, "é".repeat(101));
        assert!(matches!(
            Properties::parse(long.as_bytes()),
            Err(Error::DescriptionTooLong(100))
        ));
        let fits = format!(r#"{{"description": "{}"}}"#, "é".repeat(100));
        assert!(Properties::parse(fits.as_bytes()).is_ok());
        for bad in [&b"[]"[..], b"{}", br#"{"access": "secret"}"#, b"nope"] {
            assert!(Properties::parse(bad).is_err());
        }
    }
}

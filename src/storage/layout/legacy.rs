//! Every path the registry stores, in the legacy layout, relative to
//! `storage_path`.
//!
//! ```text
//! images/<id>/
//!   json                                  the image JSON exactly as pushed
//!   layer                                 the layer exactly as pushed
//!   ancestry                              JSON list: the id, its parent, grandparent, ...
//!   _checksum                             JSON list of `sha256:<hex>`
//!   _inprogress                           present while the push is not verified
//!   _files                                the cached `/files` listing
//!   _files_failure                        OURS: why the layer cannot be listed
//!   _v2                                   OURS: the layer as a v2 blob: digest, diff_id, sizes, compression
//!   _v2_manifest                          OURS: a tagged image's OCI manifest, bytes as served
//!   _v2_config                            OURS: its OCI config, bytes as served
//!   _v2_layers                            OURS: JSON list: the image ids behind the manifest's layers
//!   .registry-v1-tmp-layer-<token>        OURS: a layer still streaming in
//! repositories/<namespace>/<repository>/
//!   tag_<tag>                             the image id the tag points at
//!   tag<tag>_json                         the tag's JSON (`{"last_update": ...}`)
//!   json                                  the same for `latest`
//!   _index_images                         the stand-in index's image list
//!   _images_list                          the images a token granted
//!   _private                              present: the repository is private
//!   _v2_digests/<alg>/<hex>               OURS: which image serves v2 digest <hex> here
//!                                         (`{"image": <id>, "kind": "layer"|"config"|"manifest"}`)
//!   _counted/<id>                         OURS: image <id>'s layer counts in the repository's
//!                                         quota; its size, in decimal
//! ```
//!
//! The `_v2*` files are the v1-to-v2 bridge's (`registry::bridge`): what
//! an image's v2 form is, kept inside the image's own folder so that it
//! goes with the image; `_v2_digests` finds an image by a digest a v2
//! client names, and an entry whose image is gone names nothing.
//!
//! Files marked OURS are never read by the old registry; any other write
//! goes to a `.registry-v1-tmp-*` file first and is renamed into place.
//!
//! An existing folder or bucket written by the Python registry must read as
//! it is, so the escaping below reproduces the old one byte for byte: each
//! component from a request goes through Python's `quote_plus`, `.` and `..`
//! become `%2E` and `%2E%2E`, and the repository part is escaped twice
//! (once when the old registry parsed the URL, once when it built the path).
//! Plain names (`[a-z0-9._-]`) come out unchanged.

use std::borrow::Cow;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::names::{ImageId, InvalidName, RepositoryName, Tag, NAME_PART_MAX};

pub const IMAGES: &str = "images";
pub const REPOSITORIES: &str = "repositories";

/// What `quote_plus` leaves alone besides letters and digits.
const QUOTE_PLUS: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'_')
    .remove(b'.')
    .remove(b'-')
    .remove(b'~')
    .remove(b' ');

/// Python's `quote_plus`: unreserved bytes kept, space as `+`, all else `%XX`.
pub fn quote_plus(s: &str) -> Cow<'_, str> {
    let encoded: Cow<'_, str> = utf8_percent_encode(s, QUOTE_PLUS).into();
    if encoded.contains(' ') {
        Cow::Owned(encoded.replace(' ', "+"))
    } else {
        encoded
    }
}

/// One path component from a request, escaped as the old storage drivers did.
pub fn escape(component: &str) -> String {
    match component {
        ".." => "%2E%2E".to_owned(),
        "." => "%2E".to_owned(),
        other => quote_plus(other).into_owned(),
    }
}

/// Reverses [`escape`] for a component read back from storage, so a
/// repository listed from disk has the name a client would use.
pub fn unescape(component: &str) -> String {
    let spaced = component.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

pub fn image_dir(id: &ImageId) -> String {
    format!("{IMAGES}/{}", escape(id.as_str()))
}

fn image_file(id: &ImageId, file: &str) -> String {
    format!("{}/{file}", image_dir(id))
}

/// The image JSON exactly as pushed.
pub fn image_json(id: &ImageId) -> String {
    image_file(id, "json")
}

/// The layer exactly as pushed.
pub fn image_layer(id: &ImageId) -> String {
    image_file(id, "layer")
}

/// JSON list: the image id, its parent, grandparent, ...
/// Where a layer streams in before it may become the image's layer (see
/// `put_image_layer`): one per upload, named like the local driver's
/// temporary files so that no listing takes it for content.
pub fn image_layer_upload(id: &ImageId, token: &str) -> String {
    image_file(id, &format!(".registry-v1-tmp-layer-{token}"))
}

pub fn image_ancestry(id: &ImageId) -> String {
    image_file(id, "ancestry")
}

/// JSON list of `sha256:<hex>` strings (older data: one bare string).
pub fn image_checksum(id: &ImageId) -> String {
    image_file(id, "_checksum")
}

/// Present while a push of the image is unfinished.
pub fn image_mark(id: &ImageId) -> String {
    image_file(id, "_inprogress")
}

/// The cached `/files` listing of the layer.
pub fn image_files(id: &ImageId) -> String {
    image_file(id, "_files")
}

/// Ours, not the old registry's: why the layer cannot be listed (not a
/// tar, or over a bound), kept so the next `/files` costs one read. Beside
/// `_files`, not in it: the old registry reading the same storage would
/// serve whatever `_files` holds as the listing.
pub fn image_files_failure(id: &ImageId) -> String {
    image_file(id, "_files_failure")
}

/// Ours: the image's layer as a v2 blob (its digest, diff_id, sizes and
/// compression), recorded once.
pub fn image_v2_layer(id: &ImageId) -> String {
    image_file(id, "_v2")
}

/// Ours: the OCI manifest of the chain this image tops, as served.
pub fn image_v2_manifest(id: &ImageId) -> String {
    image_file(id, "_v2_manifest")
}

/// Ours: the OCI config of the chain this image tops, as served.
pub fn image_v2_config(id: &ImageId) -> String {
    image_file(id, "_v2_config")
}

/// Ours: the ids of the images whose layers the manifest lists, in order.
pub fn image_v2_layers(id: &ImageId) -> String {
    image_file(id, "_v2_layers")
}

/// Ours: which image of the repository serves a v2 digest.
pub fn repository_v2_digest(name: &RepositoryName, algorithm: &str, hex: &str) -> String {
    repository_file(name, &format!("_v2_digests/{algorithm}/{hex}"))
}

/// Ours: image `id`'s layer counts in the repository's quota.
pub fn counted(name: &RepositoryName, id: &str) -> String {
    repository_file(name, &format!("_counted/{id}"))
}

/// Ours: the folder of what the repository counts in its quota.
pub fn counted_all(name: &RepositoryName) -> String {
    repository_file(name, "_counted")
}

/// The folder of a repository's namespace.
pub fn namespace_dir(namespace: &str) -> String {
    format!("{REPOSITORIES}/{}", escape(namespace))
}

/// The folder of a repository: its tags, json and index files.
pub fn repository_dir(name: &RepositoryName) -> String {
    format!(
        "{}/{}",
        namespace_dir(name.namespace()),
        escape(&quote_plus(name.repository()))
    )
}

fn repository_file(name: &RepositoryName, file: &str) -> String {
    format!("{}/{file}", repository_dir(name))
}

/// Prefix of the files that hold a repository's tags: `tag_<name>`.
pub const TAG_PREFIX: &str = "tag_";

/// The file holding the image id a tag points to.
pub fn tag(name: &RepositoryName, tag: &Tag) -> String {
    repository_file(name, &format!("{TAG_PREFIX}{}", escape(tag.as_str())))
}

/// The JSON the client's User-Agent gave when it pushed the tag.
pub fn tag_json(name: &RepositoryName, tag: &Tag) -> String {
    repository_file(name, &format!("tag{}_json", escape(tag.as_str())))
}

/// The same JSON for the tag `latest`, kept as the repository's own.
pub fn repository_json(name: &RepositoryName) -> String {
    repository_file(name, "json")
}

/// JSON list of `{"id": ..., "checksum"?: ...}` the stand-in index keeps.
pub fn index_images(name: &RepositoryName) -> String {
    repository_file(name, "_index_images")
}

/// Present: the repository is private.
pub fn private_flag(name: &RepositoryName) -> String {
    repository_file(name, "_private")
}

/// JSON list of image ids (token mode).
pub fn images_list(name: &RepositoryName) -> String {
    repository_file(name, "_images_list")
}

/// The tag a file name in a repository folder stands for, if it is a tag.
pub fn tag_from_file_name(file: &str) -> Option<Tag> {
    let escaped = file.strip_prefix(TAG_PREFIX)?;
    Some(Tag::unchecked(&unescape(escaped)))
}

/// A v1 name that fits this layout: namespace and repository at most
/// [`NAME_PART_MAX`] bytes each once escaped, the longest file name of the
/// filesystems and the key part the old registry stored under (the v1
/// routes store under these names; a v2 name is bounded by its own grammar
/// and stored in the other tree).
pub fn storable(name: RepositoryName) -> Result<RepositoryName, InvalidName> {
    let (namespace, repository) = (name.namespace(), name.repository());
    // The raw lengths first: they spare escaping a name of any length.
    if namespace.len() > NAME_PART_MAX
        || repository.len() > NAME_PART_MAX
        || escape(namespace).len() > NAME_PART_MAX
        || escape(&quote_plus(repository)).len() > NAME_PART_MAX
    {
        return Err(InvalidName::Refused(
            "namespace and repository may each take at most 255 bytes once escaped",
        ));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    /// What the v1 routes accept: the name, then its fit to this layout.
    fn parse_storable(s: &str) -> Result<RepositoryName, InvalidName> {
        RepositoryName::parse(s).and_then(storable)
    }

    #[test]
    fn names_no_path_or_header_can_hold_are_refused() {
        let refused = |s: &str| matches!(parse_storable(s), Err(InvalidName::Refused(_)));
        assert!(parse_storable(&format!("ns/{}", "a".repeat(255))).is_ok());
        // Any length for names not stored under the legacy layout.
        assert!(RepositoryName::parse(&format!("ns/{}", "a".repeat(256))).is_ok());
        assert!(refused(&format!("ns/{}", "a".repeat(256))));
        assert!(refused(&format!("{}/x", "a".repeat(256))));
        assert!(refused(&"a".repeat(10_000)));
        // `%` takes five bytes once escaped twice.
        assert!(parse_storable(&format!("ns/{}", "%".repeat(51))).is_ok());
        assert!(refused(&format!("ns/{}", "%".repeat(52))));
        assert!(refused("ns/x\",access=delete,y=\""));
        assert!(refused("ns/a,b"));
        assert!(refused("ns/a\r\nX-Evil: 1"));
        assert!(parse_storable("ns/a\\b").is_ok());
        assert!(refused("ns/\u{FFFD}"));
        assert!(parse_storable("ns/caf\u{e9}+x%$").is_ok());
    }

    use super::*;

    fn repo(ns: &str, r: &str) -> RepositoryName {
        RepositoryName::new(ns, r).unwrap()
    }

    #[test]
    fn quote_plus_matches_python() {
        assert_eq!(quote_plus("abc-_.~09AZ"), "abc-_.~09AZ");
        assert_eq!(quote_plus("a b+c/d"), "a+b%2Bc%2Fd");
        assert_eq!(quote_plus("ß"), "%C3%9F");
        assert_eq!(quote_plus("%$"), "%25%24");
    }

    #[test]
    fn plain_names_are_unchanged() {
        let id = ImageId::parse(&"ab".repeat(32)).unwrap();
        assert_eq!(image_json(&id), format!("images/{}/json", "ab".repeat(32)));
        let r = repo("library", "busy-box_1.0");
        assert_eq!(repository_dir(&r), "repositories/library/busy-box_1.0");
        assert_eq!(
            tag(&r, &Tag::parse("latest").unwrap()),
            "repositories/library/busy-box_1.0/tag_latest"
        );
        assert_eq!(
            tag_json(&r, &Tag::parse("1.0").unwrap()),
            "repositories/library/busy-box_1.0/tag1.0_json"
        );
    }

    #[test]
    fn the_repository_part_is_escaped_twice() {
        // The folder the old registry used for `abc%$_-test`.
        assert_eq!(
            repository_dir(&repo("library", "abc%$_-test")),
            "repositories/library/abc%2525%2524_-test"
        );
        assert_eq!(
            repository_dir(&repo("ns", "a b/c")),
            "repositories/ns/a%2Bb%252Fc"
        );
    }

    #[test]
    fn dot_components_cannot_climb() {
        assert_eq!(
            repository_dir(&repo("..", "..")),
            "repositories/%2E%2E/%2E%2E"
        );
        assert_eq!(repository_dir(&repo(".", ".")), "repositories/%2E/%2E");
        assert_eq!(namespace_dir("../.."), "repositories/..%2F..");
        for p in [
            repository_dir(&repo("..", "../x")),
            repository_dir(&repo("a\\b", "/abs")),
            tag(&repo("x", "y"), &Tag::unchecked("../../z")),
        ] {
            assert!(crate::storage::check_path(&p).is_ok(), "{p}");
        }
    }

    #[test]
    fn tag_file_names_round_trip() {
        let r = repo("ns", "app");
        for t in ["latest", "v1.0", "a b", "x%y"] {
            let path = tag(&r, &Tag::unchecked(t));
            let file = path.rsplit('/').next().unwrap();
            assert_eq!(tag_from_file_name(file).unwrap().as_str(), t);
        }
        assert!(tag_from_file_name("json").is_none());
        assert!(tag_from_file_name("taglatest_json").is_none());
    }
}

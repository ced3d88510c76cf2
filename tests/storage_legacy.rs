//! A folder written by the old (Python) registry reads as it is through the
//! local driver and the layout functions. The folder is built here by hand,
//! file by file, the way the old registry laid it out, from the shared
//! image fixtures.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::StreamExt;
use registry_v1::names::{ImageId, RepositoryName, Tag};
use registry_v1::storage::layout::legacy;
use registry_v1::storage::local::LocalStorage;
use registry_v1::storage::{ByteRange, Storage};

/// An image of the fixtures: its id, parent, json and layer bytes.
struct Fixture {
    id: String,
    parent: Option<String>,
    json: Vec<u8>,
    layer: Vec<u8>,
}

fn fixtures() -> Vec<Fixture> {
    let mut out = Vec::new();
    for entry in fs::read_dir(common::fixtures()).expect("fixtures") {
        let dir = entry.expect("fixture").path();
        let json = fs::read(dir.join("json")).expect("fixture json");
        let layer = fs::read(dir.join("layer.tar")).expect("fixture layer");
        let meta: serde_json::Value = serde_json::from_slice(&json).expect("fixture json parses");
        out.push(Fixture {
            id: meta["id"].as_str().expect("id").to_owned(),
            parent: meta["parent"].as_str().map(str::to_owned),
            json,
            layer,
        });
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    assert!(out.len() >= 3, "fixtures missing");
    out
}

fn write(root: &Path, rel: &str, data: &[u8]) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, data).unwrap();
}

/// The old registry's folder for the fixtures, in `library/busybox` (all
/// images, tags `latest` and `1.0`), `library/abc%$_-test` (escaped twice
/// on disk) and the private `team/secret`.
fn legacy_folder(root: &Path, images: &[Fixture]) {
    for (i, image) in images.iter().enumerate() {
        let dir = format!("images/{}", image.id);
        write(root, &format!("{dir}/json"), &image.json);
        write(root, &format!("{dir}/layer"), &image.layer);
        let mut ancestry = vec![image.id.clone()];
        ancestry.extend(image.parent.clone());
        write(
            root,
            &format!("{dir}/ancestry"),
            serde_json::to_string(&ancestry)
                .unwrap()
                .replace(",", ", ")
                .as_bytes(),
        );
        let checksum = common::v1_checksum(&image.json, &image.layer);
        // Older registries wrote one bare string, later ones a list.
        let stored = if i == 0 {
            checksum
        } else {
            format!("[\"{checksum}\"]")
        };
        write(root, &format!("{dir}/_checksum"), stored.as_bytes());
    }
    let info = br#"{"last_update": 1795352771, "docker_version": "1.3.2", "docker_go_version": "go1.3.3", "arch": "amd64", "kernel": "3.16.0-4-amd64", "os": "linux"}"#;
    let repo = "repositories/library/busybox";
    write(root, &format!("{repo}/tag_latest"), images[0].id.as_bytes());
    write(root, &format!("{repo}/tag_1.0"), images[1].id.as_bytes());
    write(root, &format!("{repo}/taglatest_json"), info);
    write(root, &format!("{repo}/json"), info);
    let index: Vec<String> = images
        .iter()
        .map(|i| format!("{{\"id\": \"{}\"}}", i.id))
        .collect();
    write(
        root,
        &format!("{repo}/_index_images"),
        format!("[{}]", index.join(", ")).as_bytes(),
    );
    write(
        root,
        "repositories/library/abc%2525%2524_-test/tag_v1",
        images[2].id.as_bytes(),
    );
    write(root, "repositories/team/secret/_private", b"");
    write(
        root,
        "repositories/team/secret/tag_latest",
        images[2].id.as_bytes(),
    );
}

fn setup() -> (tempfile::TempDir, PathBuf, Vec<Fixture>, LocalStorage) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("registry");
    let images = fixtures();
    legacy_folder(&root, &images);
    let storage = LocalStorage::new(root.to_str().unwrap()).unwrap();
    (dir, root, images, storage)
}

async fn read_stream(s: &dyn Storage, path: &str, range: Option<ByteRange>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut body = s.get_stream(path, range).await.unwrap();
    while let Some(chunk) = body.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

#[tokio::test]
async fn images_read_as_the_old_registry_wrote_them() {
    let (_dir, _root, images, s) = setup();
    let mut listed = s.list(legacy::IMAGES).await.unwrap();
    listed.sort();
    let ids: Vec<String> = images.iter().map(|i| i.id.clone()).collect();
    assert_eq!(listed, ids);
    for (n, image) in images.iter().enumerate() {
        let id = ImageId::parse(&image.id).expect("fixture id is valid");
        assert_eq!(s.get(&legacy::image_json(&id)).await.unwrap(), image.json);
        let layer = legacy::image_layer(&id);
        assert_eq!(s.size(&layer).await.unwrap(), image.layer.len() as u64);
        assert_eq!(read_stream(&s, &layer, None).await, image.layer);
        let last = image.layer.len() as u64 - 1;
        let tail = read_stream(&s, &layer, Some(ByteRange { first: 512, last })).await;
        assert_eq!(tail, &image.layer[512..]);
        let ancestry: Vec<String> =
            serde_json::from_slice(&s.get(&legacy::image_ancestry(&id)).await.unwrap()).unwrap();
        assert_eq!(ancestry[0], image.id);
        assert_eq!(ancestry.get(1), image.parent.as_ref());
        let checksum = s.get(&legacy::image_checksum(&id)).await.unwrap();
        let checksum: serde_json::Value = if n == 0 {
            serde_json::Value::String(String::from_utf8(checksum.to_vec()).unwrap())
        } else {
            serde_json::from_slice(&checksum).unwrap()
        };
        assert!(checksum.to_string().contains("sha256:"), "{checksum}");
        assert!(!s.exists(&legacy::image_mark(&id)).await.unwrap());
        assert!(!s.exists(&legacy::image_files(&id)).await.unwrap());
    }
}

#[tokio::test]
async fn repositories_and_tags_read_as_the_old_registry_wrote_them() {
    let (_dir, _root, images, s) = setup();
    assert_eq!(
        s.list(legacy::REPOSITORIES).await.unwrap(),
        ["library", "team"]
    );
    let busybox = RepositoryName::parse("busybox").unwrap();
    let mut tags: Vec<String> = s
        .list(&legacy::repository_dir(&busybox))
        .await
        .unwrap()
        .iter()
        .filter_map(|f| legacy::tag_from_file_name(f))
        .map(|t| t.as_str().to_owned())
        .collect();
    tags.sort();
    assert_eq!(tags, ["1.0", "latest"]);
    let latest = Tag::parse("latest").unwrap();
    assert_eq!(
        s.get(&legacy::tag(&busybox, &latest)).await.unwrap(),
        images[0].id
    );
    let info: serde_json::Value =
        serde_json::from_slice(&s.get(&legacy::tag_json(&busybox, &latest)).await.unwrap())
            .unwrap();
    assert_eq!(info["docker_version"], "1.3.2");
    assert_eq!(
        s.get(&legacy::repository_json(&busybox)).await.unwrap(),
        s.get(&legacy::tag_json(&busybox, &latest)).await.unwrap()
    );
    let index: serde_json::Value =
        serde_json::from_slice(&s.get(&legacy::index_images(&busybox)).await.unwrap()).unwrap();
    assert_eq!(index.as_array().unwrap().len(), images.len());
    // The twice-escaped folder of a name with special characters.
    let odd = RepositoryName::new("library", "abc%$_-test").unwrap();
    let v1 = Tag::parse("v1").unwrap();
    assert_eq!(s.get(&legacy::tag(&odd, &v1)).await.unwrap(), images[2].id);
    let secret = RepositoryName::parse("team/secret").unwrap();
    assert!(s.exists(&legacy::private_flag(&secret)).await.unwrap());
    assert!(!s.exists(&legacy::private_flag(&busybox)).await.unwrap());
    assert!(!s.exists(&legacy::images_list(&busybox)).await.unwrap());
}

#[tokio::test]
async fn new_writes_keep_the_old_format() {
    let (_dir, root, images, s) = setup();
    let busybox = RepositoryName::parse("busybox").unwrap();
    let tag = Tag::parse("2.0").unwrap();
    s.put(
        &legacy::tag(&busybox, &tag),
        Bytes::from(images[1].id.clone()),
    )
    .await
    .unwrap();
    // A plain file at the old place, readable by others as the old files
    // are (an nginx serving layers runs as another user).
    let on_disk = root.join("repositories/library/busybox/tag_2.0");
    assert_eq!(fs::read(&on_disk).unwrap(), images[1].id.as_bytes());
    let old = root.join("repositories/library/busybox/tag_latest");
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&on_disk), mode(&old));
    let id = ImageId::parse(&images[0].id).unwrap();
    let layer = legacy::image_layer(&id);
    let body = futures_util::stream::iter(
        images[0]
            .layer
            .chunks(1000)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    );
    s.put_stream(&layer, Box::pin(body)).await.unwrap();
    assert_eq!(fs::read(root.join(&layer)).unwrap(), images[0].layer);
    assert_eq!(mode(&root.join(&layer)), mode(&old));
    assert_eq!(s.local_path(&layer), Some(root.join(&layer)));
}

#[tokio::test]
async fn a_crash_leftover_is_not_content() {
    let (_dir, root, images, s) = setup();
    // What a crash in the middle of a write leaves: a temporary file.
    let dir = format!("images/{}", images[0].id);
    write(
        &root,
        &format!("{dir}/.registry-v1-tmp-abc123"),
        b"half a la",
    );
    assert_eq!(
        s.list(&dir).await.unwrap(),
        ["_checksum", "ancestry", "json", "layer"]
    );
    // A repository folder of that name is content, though.
    write(
        &root,
        "repositories/library/.registry-v1-tmp-x/tag_latest",
        b"id",
    );
    assert!(s
        .list("repositories/library")
        .await
        .unwrap()
        .contains(&".registry-v1-tmp-x".to_owned()));
}

//! What only the S3/GCS driver does, against the local S3 server: keys
//! under `storage_path`, server-side encryption, an existing bucket of the
//! old registry, unavailable backends, uploads abandoned midway.

mod storage_support;

use bytes::Bytes;
use registry_v1::config::StorageKind;
use registry_v1::names::{ImageId, RepositoryName, Tag};
use registry_v1::storage::layout::legacy;
use registry_v1::storage::s3::S3Storage;
use registry_v1::storage::{Storage, StorageError};
use s3::Bucket;
use storage_support::fixture::{all_keys, new_bucket, s3_settings};
use storage_support::{pattern, s3_server};

/// A driver on a new bucket of the local server, and the bucket.
async fn driver(
    kind: StorageKind,
    storage_path: &str,
    encrypt: bool,
) -> Option<(S3Storage, Box<Bucket>)> {
    let server = s3_server::server()?;
    let bucket = new_bucket(server.port).await;
    let settings = s3_settings(server.port, &bucket.name(), encrypt);
    let storage = S3Storage::new(&kind, &settings, storage_path).unwrap();
    storage.check().await.unwrap();
    Some((storage, bucket))
}

#[tokio::test]
async fn keys_are_storage_path_without_its_leading_slash() {
    for (storage_path, expected) in [
        ("/registry", "registry/images/abc/json"),
        ("/deep/er/", "deep/er/images/abc/json"),
        ("/", "images/abc/json"),
    ] {
        let Some((s, bucket)) = driver(StorageKind::S3, storage_path, false).await else {
            return;
        };
        s.put("images/abc/json", Bytes::from_static(b"{}"))
            .await
            .unwrap();
        assert_eq!(all_keys(&bucket).await, [expected]);
        assert_eq!(s.list("images").await.unwrap(), ["abc"]);
    }
}

#[tokio::test]
async fn encrypt_asks_for_server_side_encryption() {
    for encrypt in [true, false] {
        let Some((s, bucket)) = driver(StorageKind::S3, "/registry", encrypt).await else {
            return;
        };
        s.put("small", Bytes::from_static(b"x")).await.unwrap();
        let big = 9 * 1024 * 1024 + 5;
        s.put_stream("big", Box::pin(pattern::stream(1, big)))
            .await
            .unwrap();
        assert_eq!(s.size("big").await.unwrap(), big);
        for key in ["registry/small", "registry/big"] {
            let (head, status) = bucket.head_object(key).await.unwrap();
            assert_eq!(status, 200);
            let expected = encrypt.then(|| "AES256".to_owned());
            assert_eq!(head.server_side_encryption, expected, "{key}");
        }
        // Reads never send the header (S3 refuses it there).
        assert_eq!(&s.get("small").await.unwrap()[..], b"x");
    }
}

#[tokio::test]
async fn an_old_registry_bucket_reads_as_it_is() {
    let Some((s, bucket)) = driver(StorageKind::S3, "/registry", false).await else {
        return;
    };
    let id = "ab".repeat(32);
    // Keys as the old boto driver wrote them, and a folder marker object
    // that some tools create.
    for (key, value) in [
        (
            format!("registry/images/{id}/json"),
            "{\"id\": \"x\"}".to_owned(),
        ),
        (
            format!("registry/images/{id}/layer"),
            "layer-bytes".to_owned(),
        ),
        (
            format!("registry/images/{id}/ancestry"),
            format!("[\"{id}\"]"),
        ),
        (
            "registry/repositories/library/busybox/".to_owned(),
            String::new(),
        ),
        (
            "registry/repositories/library/busybox/tag_latest".to_owned(),
            id.clone(),
        ),
        (
            "registry/repositories/library/abc%2525%2524_-test/tag_v1".to_owned(),
            id.clone(),
        ),
    ] {
        let r = bucket.put_object(&key, value.as_bytes()).await.unwrap();
        assert_eq!(r.status_code(), 200, "{key}");
    }
    let image = ImageId::parse(&id).unwrap();
    assert_eq!(
        &s.get(&legacy::image_json(&image)).await.unwrap()[..],
        b"{\"id\": \"x\"}"
    );
    assert_eq!(s.size(&legacy::image_layer(&image)).await.unwrap(), 11);
    assert_eq!(s.list("images").await.unwrap(), std::slice::from_ref(&id));
    let busybox = RepositoryName::parse("busybox").unwrap();
    assert_eq!(
        s.list(&legacy::repository_dir(&busybox)).await.unwrap(),
        ["tag_latest"]
    );
    assert_eq!(
        s.get(&legacy::tag(&busybox, &Tag::parse("latest").unwrap()))
            .await
            .unwrap(),
        id
    );
    let odd = RepositoryName::new("library", "abc%$_-test").unwrap();
    assert_eq!(
        s.get(&legacy::tag(&odd, &Tag::parse("v1").unwrap()))
            .await
            .unwrap(),
        id
    );
    assert_eq!(
        s.list("repositories/library").await.unwrap(),
        ["abc%2525%2524_-test", "busybox"]
    );
    // Removing the repository takes the marker too.
    s.remove(&legacy::repository_dir(&busybox)).await.unwrap();
    assert!(all_keys(&bucket)
        .await
        .iter()
        .all(|k| !k.contains("busybox")));
}

fn assert_unavailable<T: std::fmt::Debug>(r: Result<T, StorageError>, what: &str) {
    match r {
        Err(StorageError::Unavailable(msg)) => {
            assert!(!msg.contains("test-secret"), "{what}: secret in {msg}");
        }
        other => panic!("{what}: expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn a_backend_that_does_not_answer_is_unavailable() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let settings = s3_settings(port, "bucket", false);
    for kind in [StorageKind::S3, StorageKind::Gcs] {
        let s = S3Storage::new(&kind, &settings, "/registry").unwrap();
        assert_unavailable(s.check().await, "check");
        assert_unavailable(s.get("a").await, "get");
        assert_unavailable(s.put("a", Bytes::from_static(b"x")).await, "put");
        assert_unavailable(
            s.put_stream("a", Box::pin(pattern::stream(1, 100))).await,
            "put_stream",
        );
        assert_unavailable(s.get_stream("a", None).await.map(|_| ()), "get_stream");
        assert_unavailable(s.size("a").await, "size");
        assert_unavailable(s.exists("a").await, "exists");
        assert_unavailable(s.list("a").await, "list");
        assert_unavailable(s.remove("a").await, "remove");
        assert_unavailable(s.redirect_url("a").await, "redirect_url");
    }
}

#[tokio::test]
async fn a_missing_bucket_is_unavailable() {
    let Some(server) = s3_server::server() else {
        return;
    };
    let settings = s3_settings(server.port, "no-such-bucket-here", false);
    let s = S3Storage::new(&StorageKind::S3, &settings, "/registry").unwrap();
    assert_unavailable(s.check().await, "check");
    assert_unavailable(s.get("images/x/json").await, "get");
    assert_unavailable(s.list("images").await, "list");
}

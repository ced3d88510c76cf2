//! The shared storage driver suite, run against every driver: local on a
//! temporary folder, memory, S3 and GCS against a real S3-compatible server on
//! loopback (see `storage_support::s3_server`), Swift against a real
//! OpenStack Swift on loopback (`storage_support::swift_server`).

mod storage_support;

use std::io::Write;

use registry_v1::config::StorageKind;
use storage_support::fixture::Fixture;
use storage_support::suite;

/// One test per suite function for a driver; `$make` gives a fresh
/// fixture, or `None` when the driver's server is unavailable (skipped,
/// never under CI).
macro_rules! driver_suite {
    ($driver:ident, $make:expr) => {
        mod $driver {
            use super::*;
            driver_suite!(@tests $make;
                small_round_trip,
                whole_files_of_any_size,
                large_round_trip,
                ranges_at_the_edges,
                listing_nested_folders,
                listing_many_entries,
                folders_holding,
                recursive_remove,
                folders_go_at_once_where_the_driver_says,
                not_found_for_each_method,
                overwrites,
                concurrent_writers,
                special_names_through_layout,
                invalid_paths_are_refused,
                interrupted_upload_keeps_old_content,
                abandoned_upload_leaves_nothing,
                redirect_urls,
                writer_resumes_across_writers,
                writer_across_flushes,
                resume_drops_bytes_after_the_last_close,
                resume_on_another_instance,
                resume_before_the_last_close,
                writer_errors,
                cancel_leaves_nothing,
                commit_makes_a_plain_file,
                rename_replaces_atomically,
                writes_racing_a_folder_remove,
                copy_leaves_the_source,
                stat_gives_size_and_time,
                lock_excludes_other_holders,
                locks_leave_no_files,
                lock_files_removed_under_contention_still_exclude,
                put_if_is_a_compare_and_swap,
                unsynced_puts_are_puts,
                lease_has_one_holder_at_a_time
            );
        }
    };
    (@tests $make:expr; $($test:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                let Some(fixture): Option<Fixture> = $make.await else {
                    return;
                };
                suite::$test(&fixture).await;
            }
        )*
    };
}

driver_suite!(local, async { Some(Fixture::local().await) });
driver_suite!(memory, async { Some(Fixture::memory().await) });
driver_suite!(cached_memory, Fixture::cached_memory());
driver_suite!(s3, Fixture::bucket(StorageKind::S3, "/registry", true));
driver_suite!(
    gcs,
    Fixture::bucket(StorageKind::Gcs, "/registry/gcs", false)
);
driver_suite!(swift, Fixture::swift("/registry"));

/// Past 5 GiB a rename copies in parts; the same copy, in 5 MiB parts,
/// on an object of a few parts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_copies_in_parts() {
    use registry_v1::storage::s3::{S3Storage, MIN_PART};
    use storage_support::pattern;
    let Some(fixture) = Fixture::bucket(StorageKind::S3, "/registry", false).await else {
        return;
    };
    let Some(server) = storage_support::s3_server::server() else {
        return;
    };
    let bucket = fixture.raw_bucket().expect("a bucket").name();
    let settings = storage_support::fixture::s3_settings(server.port, &bucket, false);
    let s3 = S3Storage::new(&StorageKind::S3, &settings, "/registry").unwrap();
    let s = &*fixture.storage;
    let len = 2 * MIN_PART as u64 + 12_345;
    s.put_stream("a/from", Box::pin(pattern::stream(61, len)))
        .await
        .unwrap();
    s3.copy_in_parts("a/from", "b/c d%/to", len, MIN_PART as u64)
        .await
        .unwrap();
    assert_eq!(s.size("b/c d%/to").await.unwrap(), len);
    let checked = pattern::verify(61, 0, s.get_stream("b/c d%/to", None).await.unwrap())
        .await
        .unwrap();
    assert_eq!(checked, len);
    assert!(s.exists("a/from").await.unwrap(), "a copy keeps its source");
    assert!(
        matches!(
            s3.copy_in_parts("a/none", "b/x", len, MIN_PART as u64)
                .await,
            Err(registry_v1::storage::StorageError::NotFound(_))
        ),
        "a missing source"
    );
    assert!(!s.exists("b/x").await.unwrap());
    assert!(
        fixture.leftovers().await.is_empty(),
        "{:?}",
        fixture.leftovers().await
    );
}

/// Each large object owns its segments: a rename moves the manifest
/// alone (the bytes stay where they are, the source goes), a copy gets
/// segments of its own (deleting one leaves the other whole), a delete
/// takes its segments along, an object written over gives its segments a
/// day more (read by the pulls that began before); a name with `%` and a
/// space travels intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swift_large_objects_own_their_segments() {
    use storage_support::fixture::{swift_expiry, swift_names};
    use storage_support::pattern;
    let Some(fixture) = Fixture::swift("/registry").await else {
        return;
    };
    let s = &*fixture.storage;
    let container = format!("{}_segments", fixture.container());
    // The segments that are to stay.
    let segments = || async {
        let mut names = Vec::new();
        for name in swift_names(&container, "").await {
            if !name.starts_with("_locks/") && swift_expiry(&container, &name).await.is_none() {
                names.push(name);
            }
        }
        names
    };
    let len = 20 * 1024 * 1024 + 123;
    let check = |path: &'static str| async move {
        assert_eq!(s.size(path).await.unwrap(), len);
        let checked = pattern::verify(71, 0, s.get_stream(path, None).await.unwrap())
            .await
            .unwrap();
        assert_eq!(checked, len, "{path}");
    };
    s.put_stream("up/a b%/data", Box::pin(pattern::stream(71, len)))
        .await
        .unwrap();
    let written = segments().await;
    assert_eq!(written.len(), 3, "{written:?}");

    s.rename("up/a b%/data", "blobs/x/data").await.unwrap();
    check("blobs/x/data").await;
    assert!(!s.exists("up/a b%/data").await.unwrap());
    assert_eq!(segments().await, written, "a rename moves no byte");

    s.copy("blobs/x/data", "blobs/y/data").await.unwrap();
    assert_eq!(segments().await.len(), 6, "a copy has segments of its own");
    s.remove("blobs/x/data").await.unwrap();
    check("blobs/y/data").await;
    assert_eq!(segments().await.len(), 3);

    // Replaced by a small file: the old segments stay a day, whole.
    let replaced = segments().await;
    s.put_stream("blobs/y/data", Box::pin(pattern::stream(72, 10)))
        .await
        .unwrap();
    assert!(segments().await.is_empty(), "{:?}", segments().await);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (token, url) = storage_support::fixture::swift_login().await;
    for name in &replaced {
        let at = swift_expiry(&container, name).await.expect("an end date");
        let life = registry_v1::storage::swift::REPLACED_SEGMENT_LIFE.as_secs();
        assert!(
            at >= now + life - 60 && at <= now + life + 60,
            "{name}: {at}"
        );
        let response = reqwest::Client::new()
            .get(format!("{url}/{container}/{name}"))
            .header("X-Auth-Token", &token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{name} still readable");
    }
    // A large object written over by another: the same.
    s.put_stream("blobs/w/data", Box::pin(pattern::stream(73, len)))
        .await
        .unwrap();
    let first = segments().await;
    s.put_stream("blobs/w/data", Box::pin(pattern::stream(71, len)))
        .await
        .unwrap();
    check("blobs/w/data").await;
    for name in &first {
        assert!(swift_expiry(&container, name).await.is_some(), "{name}");
    }
    // The new object's own stay.
    assert_eq!(segments().await.len(), 3, "{:?}", segments().await);
    s.remove("blobs/w").await.unwrap();
    // Removed with its folder.
    s.put_stream("blobs/z/data", Box::pin(pattern::stream(71, len)))
        .await
        .unwrap();
    s.remove("blobs").await.unwrap();
    assert!(segments().await.is_empty(), "{:?}", segments().await);
    assert!(
        fixture.leftovers().await.is_empty(),
        "{:?}",
        fixture.leftovers().await
    );
}

/// An upload in progress removed with its folder (the collector purging
/// an abandoned upload) takes the segments its writer sent along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swift_removing_an_upload_drops_its_segments() {
    use storage_support::fixture::swift_names;
    use storage_support::pattern;
    let Some(fixture) = Fixture::swift("/registry").await else {
        return;
    };
    let s = &*fixture.storage;
    let segments = format!("{}_segments", fixture.container());
    let mut w = s.writer("uploads/u1/data", None).await.unwrap();
    let len = 9 * 1024 * 1024;
    for chunk in pattern::bytes(81, 0, len).chunks(1024 * 1024) {
        w.write(bytes::Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    assert_eq!(w.close().await.unwrap(), len as u64);
    s.put("uploads/u1/startedat", bytes::Bytes::from_static(b"x"))
        .await
        .unwrap();
    assert_eq!(swift_names(&segments, "registry/").await.len(), 1);
    s.remove("uploads/u1").await.unwrap();
    assert!(swift_names(&segments, "registry/").await.is_empty());
    assert!(
        fixture.leftovers().await.is_empty(),
        "{:?}",
        fixture.leftovers().await
    );
}

/// distribution 2.8 writes every blob as a Dynamic Large Object (a
/// manifest object naming a prefix of segments): read whole and in ranges
/// by its real size, renamed into one object, and removed with its
/// segments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swift_reads_and_removes_distributions_dynamic_objects() {
    use storage_support::fixture::{swift_login, swift_names};
    use storage_support::pattern;
    let Some(fixture) = Fixture::swift("/registry").await else {
        return;
    };
    let s = &*fixture.storage;
    let container = fixture.container().to_owned();
    let (token, url) = swift_login().await;
    let client = reqwest::Client::new();
    let whole = pattern::bytes(91, 0, 3000);
    // As distribution lays them out: `<prefix>/segments/...`.
    let put = |name: String, body: Vec<u8>, manifest: Option<String>| {
        let mut request = client
            .put(format!("{url}/{container}/{name}"))
            .header("X-Auth-Token", &token)
            .header("Content-Length", body.len())
            .body(body);
        if let Some(m) = manifest {
            request = request.header("X-Object-Manifest", m);
        }
        async move {
            let status = request.send().await.unwrap().status();
            assert!(status.is_success(), "{status}");
        }
    };
    for (name, prefix) in [("a", "seg-a"), ("b", "seg-b"), ("c", "seg-c")] {
        for (i, part) in whole.chunks(1000).enumerate() {
            put(
                format!("registry/segments/{prefix}/{i:016}"),
                part.to_vec(),
                None,
            )
            .await;
        }
        let manifest = format!("{container}/registry/segments/{prefix}/");
        put(
            format!("registry/blobs/{name}/data"),
            Vec::new(),
            Some(manifest),
        )
        .await;
    }
    assert_eq!(s.size("blobs/a/data").await.unwrap(), 3000);
    assert_eq!(&s.get("blobs/a/data").await.unwrap()[..], &whole[..]);
    let range = registry_v1::storage::ByteRange {
        first: 990,
        last: 2009,
    };
    let mut got = Vec::new();
    let mut body = s.get_stream("blobs/a/data", Some(range)).await.unwrap();
    use futures_util::StreamExt;
    while let Some(chunk) = body.next().await {
        got.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(&got[..], &whole[990..2010]);

    s.rename("blobs/b/data", "moved/b/data").await.unwrap();
    assert_eq!(&s.get("moved/b/data").await.unwrap()[..], &whole[..]);
    assert!(swift_names(&container, "registry/segments/seg-b/")
        .await
        .is_empty());

    // Written over: its segments get a day more, as a static one's.
    s.put_stream("blobs/c/data", Box::pin(pattern::stream(92, 8)))
        .await
        .unwrap();
    assert_eq!(
        &s.get("blobs/c/data").await.unwrap()[..],
        &pattern::bytes(92, 0, 8)[..]
    );
    let left = swift_names(&container, "registry/segments/seg-c/").await;
    assert_eq!(left.len(), 3, "{left:?}");
    for name in &left {
        assert!(
            storage_support::fixture::swift_expiry(&container, name)
                .await
                .is_some(),
            "{name}"
        );
    }

    // Ones naming no segment area (a prefix over the whole tree): written
    // over, or removed, they take nothing of the tree along.
    for name in ["d", "e"] {
        put(
            format!("registry/other/{name}/data"),
            Vec::new(),
            Some(format!("{container}/registry/")),
        )
        .await;
    }
    s.put_stream("other/d/data", Box::pin(pattern::stream(93, 8)))
        .await
        .unwrap();
    s.remove("other").await.unwrap();
    assert_eq!(&s.get("blobs/a/data").await.unwrap()[..], &whole[..]);
    for name in swift_names(&container, "registry/segments/seg-a/").await {
        assert_eq!(
            storage_support::fixture::swift_expiry(&container, &name).await,
            None,
            "{name}"
        );
    }

    s.remove("blobs").await.unwrap();
    assert!(!s.exists("blobs/a/data").await.unwrap());
    assert!(swift_names(&container, "registry/segments/seg-a/")
        .await
        .is_empty());
}

/// A token that expires is renewed without a request failing: tempauth
/// hands out the same token until it expires, so the request it then
/// refuses logs in again and is sent once more. Tokens here live 2 s;
/// the driver works on for 7.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swift_tokens_that_expire_are_renewed() {
    use registry_v1::storage::swift::SwiftStorage;
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().to_str().unwrap();
    let Some(server) = swift_of_its_own(&["--dir", folder, "--token-life", "2"]).await else {
        return;
    };
    let settings = storage_support::fixture::swift_settings(&server, "renewed");
    let s = SwiftStorage::new(&settings, "/").unwrap();
    s.check().await.unwrap();
    work_for(&s, "r", 7, 200).await;
    // Three tokens at least, each got by a login.
    let log = std::fs::read_to_string(dir.path().join("log/proxy.log")).unwrap_or_default();
    let logins = log.matches("GET /auth/v1.0").count();
    assert!(logins >= 3, "{logins} logins:\n{log}");
    drop(server);
}

/// A token made beforehand (`swift_auth_token` with
/// `swift_object_storage_url`): no login, the requests carry it; a token
/// Swift refuses stops the start with its status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swift_a_token_made_beforehand_is_used_as_it_is() {
    use bytes::Bytes;
    use registry_v1::config::SwiftAuth;
    use registry_v1::storage::swift::SwiftStorage;
    use registry_v1::storage::Storage;
    let Some(server) = storage_support::swift_server::server() else {
        return;
    };
    let (token, storage_url) = storage_support::fixture::swift_login().await;
    let mut settings = storage_support::fixture::swift_settings(server, "preset");
    settings.auth = SwiftAuth::Preset {
        token,
        storage_url: storage_url.clone(),
    };
    // No auth service is named: nothing but the token is sent.
    let s = SwiftStorage::new(&settings, "/registry").unwrap();
    s.check().await.unwrap();
    s.put("p/file", Bytes::from_static(b"preset"))
        .await
        .unwrap();
    assert_eq!(&s.get("p/file").await.unwrap()[..], b"preset");

    settings.auth = SwiftAuth::Preset {
        token: "AUTH_tk-not-a-token".into(),
        storage_url,
    };
    let refused = refused_at_start(&settings).await;
    assert!(refused.contains("401"), "{refused}");
    assert!(!refused.contains("tk-not-a-token"), "{refused}");
}

/// A cluster whose `container_listing_limit` is lower than Swift's
/// default (here 3): the first listing learns the cluster's limit from its
/// refusal, and every listing pages through it to the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swift_listings_page_through_a_lower_cluster_limit() {
    use bytes::Bytes;
    use registry_v1::storage::swift::SwiftStorage;
    use registry_v1::storage::Storage;
    let Some(server) = swift_of_its_own(&["--listing-limit", "3"]).await else {
        return;
    };
    let settings = storage_support::fixture::swift_settings(&server, "limited");
    let s = SwiftStorage::new(&settings, "/registry").unwrap();
    s.check().await.unwrap();
    let mut tags: Vec<String> = (0..10).map(|n| format!("t{n}")).collect();
    tags.sort();
    for tag in &tags {
        s.put(
            &format!("tags/{tag}/current/link"),
            Bytes::from_static(b"x"),
        )
        .await
        .unwrap();
    }
    assert_eq!(s.list("tags").await.unwrap().len(), 10);
    assert_eq!(
        s.folders_holding("tags", "current/link").await.unwrap(),
        tags
    );
    s.remove("tags").await.unwrap();
    assert!(s.list("tags").await.is_err(), "all removed, page by page");
    drop(server);
}

/// A local removal cut short (kill -9 between the rename out of the tree
/// and the deletion) leaves a folder in the trash, outside every tree:
/// the start-up sweep deletes it, whatever its age.
#[tokio::test]
async fn local_a_removal_cut_short_is_swept_at_start() {
    use registry_v1::storage::local::LocalStorage;
    use registry_v1::storage::Storage;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let storage = LocalStorage::new(root.to_str().unwrap()).unwrap();
    storage
        .put(
            "repositories/ns/app/tag_x",
            bytes::Bytes::from_static(b"\"id\""),
        )
        .await
        .unwrap();
    storage.remove("repositories/ns/app").await.unwrap();
    let trash = root.join(".registry-v1-trash");
    assert_eq!(
        std::fs::read_dir(&trash).unwrap().count(),
        0,
        "deleted at once"
    );
    let cut = trash.join("4242-0-7/_manifests/tags/t/index/sha256/ab");
    std::fs::create_dir_all(&cut).unwrap();
    std::fs::write(cut.join("link"), "sha256:ab").unwrap();
    assert!(matches!(
        storage.list("repositories/ns").await,
        Err(registry_v1::storage::StorageError::NotFound(_))
    ));
    let swept = storage
        .remove_stale_temporary_files(registry_v1::storage::STALE_TEMPORARY_FILE_AGE)
        .await
        .unwrap();
    assert_eq!(swept, 1);
    assert_eq!(std::fs::read_dir(&trash).unwrap().count(), 0);
}

/// A folder of more children than one task stats (the stats shared among
/// the cores): every child holding the file is listed once, with its
/// time, and none that does not.
#[tokio::test]
async fn local_a_large_folder_lists_every_holder_once() {
    use registry_v1::storage::local::LocalStorage;
    use registry_v1::storage::Storage;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let storage = LocalStorage::new(root.to_str().unwrap()).unwrap();
    let tags = root.join("many");
    std::fs::create_dir_all(&tags).unwrap();
    // A file among the folders holds nothing.
    std::fs::write(tags.join("a-file"), "x").unwrap();
    let mut expected = Vec::new();
    for n in 0..5000 {
        let name = format!("t{n:05}");
        let current = tags.join(&name).join("current");
        std::fs::create_dir_all(&current).unwrap();
        // Every seventh holds no link; every eleventh a folder named like it.
        if n % 7 == 0 {
            continue;
        }
        if n % 11 == 0 {
            std::fs::create_dir(current.join("link")).unwrap();
            continue;
        }
        std::fs::write(current.join("link"), "sha256:ab").unwrap();
        expected.push(name);
    }
    let timed = storage
        .folders_holding_with_times("many", "current/link")
        .await
        .unwrap();
    let names: Vec<&str> = timed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, expected);
    let now = std::time::SystemTime::now();
    for (name, at) in &timed {
        let written = std::fs::metadata(tags.join(name).join("current/link"))
            .unwrap()
            .modified()
            .unwrap();
        assert_eq!(*at, written, "{name}");
        assert!(*at <= now);
    }
}

/// Keystone v3 (a real one, `swift_test_server.py --keystone`): the driver
/// logs in with a user and project by name, takes the object store of its
/// region and endpoint type from the catalog, and renews the token as it
/// expires (5 s here; the driver works on for 12) without a failed
/// request. What it writes is in the project's account, not tempauth's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swift_keystone_v3_logs_in_and_renews_its_token() {
    use registry_v1::config::SwiftAuth;
    use registry_v1::storage::swift::SwiftStorage;
    use registry_v1::storage::Storage;
    use storage_support::swift_server::{
        KEYSTONE_PASSWORD, KEYSTONE_PROJECT, KEYSTONE_REGION, KEYSTONE_USER,
    };
    let Some(server) = swift_of_its_own(&["--keystone", "--keystone-token-life", "5"]).await else {
        return;
    };
    let keystone = server.keystone_port.expect("Keystone's port");
    let mut settings = storage_support::fixture::swift_settings(&server, "by-keystone");
    settings.auth = SwiftAuth::V3 {
        url: format!("http://127.0.0.1:{keystone}/v3"),
        user: KEYSTONE_USER.into(),
        password: KEYSTONE_PASSWORD.into(),
        project: Some(KEYSTONE_PROJECT.into()),
        domain: "Default".into(),
    };
    settings.region = Some(KEYSTONE_REGION.into());
    settings.endpoint_type = "internal".into();
    let s = SwiftStorage::new(&settings, "/registry").unwrap();
    s.check().await.unwrap();
    let rounds = work_for(&s, "k", 12, 300).await;
    assert_eq!(s.list("k").await.unwrap().len(), rounds);
    let tempauth = tokio::task::spawn_blocking(move || {
        let names = server.names("by-keystone");
        drop(server);
        names
    })
    .await
    .unwrap();
    assert!(tempauth.is_empty(), "in tempauth's account: {tempauth:?}");

    // A wrong password is refused at the start, naming no secret.
    let Some(server) = swift_of_its_own(&["--keystone"]).await else {
        return;
    };
    settings.auth = SwiftAuth::V3 {
        url: format!("http://127.0.0.1:{}/v3", server.keystone_port.unwrap()),
        user: KEYSTONE_USER.into(),
        password: "not the password".into(),
        project: Some(KEYSTONE_PROJECT.into()),
        domain: "Default".into(),
    };
    let refused = refused_at_start(&settings).await;
    assert!(!refused.contains("not the password"), "{refused}");
    assert!(refused.contains("401"), "{refused}");
    tokio::task::spawn_blocking(move || drop(server))
        .await
        .unwrap();
}

/// Why a Swift driver with `settings` cannot start (the test fails if it
/// can).
async fn refused_at_start(settings: &registry_v1::config::SwiftSettings) -> String {
    registry_v1::storage::swift::SwiftStorage::new(settings, "/registry")
        .unwrap()
        .check()
        .await
        .unwrap_err()
        .to_string()
}

/// Writes and reads back a small file under `folder` every `pause_ms`
/// for `seconds` (across token lives); how many.
async fn work_for(
    s: &registry_v1::storage::swift::SwiftStorage,
    folder: &str,
    seconds: u64,
    pause_ms: u64,
) -> usize {
    use registry_v1::storage::Storage;
    let started = std::time::Instant::now();
    let mut round = 0;
    while started.elapsed() < std::time::Duration::from_secs(seconds) {
        let path = format!("{folder}/{round}");
        s.put(&path, bytes::Bytes::from(round.to_string()))
            .await
            .unwrap();
        assert_eq!(s.get(&path).await.unwrap(), round.to_string().as_bytes());
        round += 1;
        tokio::time::sleep(std::time::Duration::from_millis(pause_ms)).await;
    }
    round
}

/// A Swift of its own, started with the launcher's `args` (a folder, token
/// lives, a listing limit, Keystone), or `None` where Swift is not there
/// (outside CI); once the shared one starts, this one must.
async fn swift_of_its_own(args: &[&str]) -> Option<storage_support::swift_server::SwiftServer> {
    storage_support::swift_server::server()?;
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let started = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        storage_support::swift_server::start_with(&args).map_err(|why| format!("{args:?}: {why}"))
    })
    .await
    .unwrap();
    match started {
        Ok(server) => Some(server),
        Err(why) if std::env::var_os("CI").is_some() => {
            panic!("a Swift of its own (Keystone: .ci/install-keystone.sh): {why}")
        }
        Err(why) => {
            let _ = writeln!(
                std::io::stderr(),
                "\nSKIPPED: a Swift of its own did not start ({why}; Keystone: \
                 .ci/install-keystone.sh)\n"
            );
            None
        }
    }
}

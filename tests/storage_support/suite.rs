//! The tests every storage driver passes, written once against
//! `dyn Storage`; `tests/storage_drivers.rs` runs them per driver.

use std::io;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::StreamExt;
use registry_v1::names::{ImageId, RepositoryName, Tag};
use registry_v1::storage::layout::legacy;
use registry_v1::storage::{ByteRange, ByteStream, FileWriter, Storage, StorageError, Version};

use super::fixture::Fixture;
use super::pattern;

/// Past 64 MiB, and not a multiple of any buffer or part size.
pub const LARGE: u64 = 64 * 1024 * 1024 + 4_099;

fn body(s: impl futures_util::Stream<Item = io::Result<Bytes>> + 'static) -> ByteStream {
    Box::pin(s)
}

async fn read_all(storage: &dyn Storage, path: &str, range: Option<ByteRange>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut s = storage.get_stream(path, range).await.expect("get_stream");
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk.expect("chunk"));
    }
    out
}

fn assert_not_found<T: std::fmt::Debug>(r: Result<T, StorageError>, what: &str) {
    match r {
        Err(StorageError::NotFound(_)) => {}
        other => panic!("{what}: expected NotFound, got {other:?}"),
    }
}

fn assert_invalid<T: std::fmt::Debug>(r: Result<T, StorageError>, what: &str) {
    match r {
        Err(StorageError::InvalidPath(_)) => {}
        other => panic!("{what}: expected InvalidPath, got {other:?}"),
    }
}

pub async fn small_round_trip(f: &Fixture) {
    let s = &*f.storage;
    let path = "images/abc/json";
    assert!(!s.exists(path).await.unwrap());
    s.put(path, Bytes::from_static(b"{\"id\": \"abc\"}"))
        .await
        .unwrap();
    assert_eq!(&s.get(path).await.unwrap()[..], b"{\"id\": \"abc\"}");
    assert_eq!(s.size(path).await.unwrap(), 13);
    assert!(s.exists(path).await.unwrap());
    assert_eq!(read_all(s, path, None).await, b"{\"id\": \"abc\"}");
    // An empty file is a file.
    s.put("images/abc/_inprogress", Bytes::new()).await.unwrap();
    assert!(s.exists("images/abc/_inprogress").await.unwrap());
    assert_eq!(s.size("images/abc/_inprogress").await.unwrap(), 0);
    assert!(s.get("images/abc/_inprogress").await.unwrap().is_empty());
    assert!(read_all(s, "images/abc/_inprogress", None).await.is_empty());
    // A folder is not a file.
    assert!(!s.exists("images/abc").await.unwrap());
    assert!(!s.exists("images").await.unwrap());
    assert!(f.outside().await.is_empty());
}

/// `get` and `get_stream` read whole files and ranges of any size; the
/// local driver reads small ones on the calling thread and larger ones on
/// the blocking pool, so sizes around that bound are read back byte for
/// byte.
pub async fn whole_files_of_any_size(f: &Fixture) {
    let s = &*f.storage;
    let bound = registry_v1::storage::local::INLINE_READ as usize;
    for (seed, len) in [
        (1, 1),
        (2, bound - 1),
        (3, bound),
        (4, bound + 1),
        (5, 5 * bound + 3),
    ] {
        let path = format!("images/sized/{len}");
        let data = pattern::bytes(seed, 0, len);
        s.put(&path, Bytes::from(data.clone())).await.unwrap();
        let got = s.get(&path).await.unwrap();
        assert_eq!(got.len(), len, "{path}");
        assert!(got[..] == data[..], "{path}: other bytes came back");
        let streamed = read_all(s, &path, None).await;
        assert!(streamed == data, "{path}: other bytes streamed");
    }
    // Ranges of a length around the bound, inside a larger file.
    let path = format!("images/sized/{}", 5 * bound + 3);
    let data = pattern::bytes(5, 0, 5 * bound + 3);
    for (first, len) in [(7, bound - 1), (bound, bound), (3, bound + 1)] {
        let range = ByteRange {
            first: first as u64,
            last: (first + len - 1) as u64,
        };
        let got = read_all(s, &path, Some(range)).await;
        assert!(
            got[..] == data[first..first + len],
            "{path}: range of {len} bytes at {first} differs"
        );
    }
    assert_not_found(s.get("images/sized").await, "a folder read as a file");
}

pub async fn large_round_trip(f: &Fixture) {
    let s = &*f.storage;
    let path = "images/big/layer";
    let written = s
        .put_stream(path, body(pattern::stream(7, LARGE)))
        .await
        .unwrap();
    assert_eq!(written, LARGE);
    assert_eq!(s.size(path).await.unwrap(), LARGE);
    let checked = pattern::verify(7, 0, s.get_stream(path, None).await.unwrap())
        .await
        .unwrap();
    assert_eq!(checked, LARGE);
    // A range deep inside, crossing any buffer boundary.
    let r = ByteRange {
        first: 3 * 1024 * 1024 - 5,
        last: 40 * 1024 * 1024 + 17,
    };
    let checked = pattern::verify(7, r.first, s.get_stream(path, Some(r)).await.unwrap())
        .await
        .unwrap();
    assert_eq!(checked, r.len());
    assert_eq!(s.list("images/big").await.unwrap(), ["layer"]);
}

pub async fn ranges_at_the_edges(f: &Fixture) {
    let s = &*f.storage;
    let path = "images/r/layer";
    let len: u64 = 2 * 1024 * 1024 + 3;
    s.put_stream(path, body(pattern::stream(3, len)))
        .await
        .unwrap();
    let whole = pattern::bytes(3, 0, len as usize);
    for (first, last) in [
        (0, 0),
        (len - 1, len - 1),
        (0, len - 1),
        (1, len - 2),
        (1024 * 1024 - 1, 1024 * 1024),
        (1024 * 1024, 2 * 1024 * 1024 - 1),
    ] {
        let got = read_all(s, path, Some(ByteRange { first, last })).await;
        assert_eq!(got.len() as u64, last - first + 1, "range {first}-{last}");
        assert!(
            got[..] == whole[first as usize..=last as usize],
            "range {first}-{last} differs"
        );
    }
    // A range past the end (the file changed since the caller's size()).
    match s
        .get_stream(
            path,
            Some(ByteRange {
                first: len,
                last: len + 10,
            }),
        )
        .await
    {
        Err(StorageError::InvalidRange { size, .. }) => assert_eq!(size, len),
        Err(e) => panic!("range past the end: {e}"),
        Ok(_) => panic!("range past the end accepted"),
    }
    // A range reaching past the end is cut at the end.
    let got = read_all(
        s,
        path,
        Some(ByteRange {
            first: len - 2,
            last: len + 100,
        }),
    )
    .await;
    assert_eq!(got, whole[len as usize - 2..]);
}

pub async fn listing_nested_folders(f: &Fixture) {
    let s = &*f.storage;
    for p in [
        "repositories/library/a/tag_latest",
        "repositories/library/a/tag_1.0",
        "repositories/library/a/json",
        "repositories/library/b/tag_latest",
        "repositories/other/c/deep/er/file",
        "images/x/json",
    ] {
        s.put(p, Bytes::from(p.to_owned())).await.unwrap();
    }
    assert_eq!(s.list("repositories").await.unwrap(), ["library", "other"]);
    assert_eq!(s.list("repositories/library").await.unwrap(), ["a", "b"]);
    assert_eq!(
        s.list("repositories/library/a").await.unwrap(),
        ["json", "tag_1.0", "tag_latest"]
    );
    assert_eq!(s.list("repositories/other/c").await.unwrap(), ["deep"]);
    assert_eq!(
        s.list("repositories/other/c/deep/er").await.unwrap(),
        ["file"]
    );
    // Names sharing a prefix are not confused with children.
    s.put("repositories/library/ab", Bytes::from_static(b"x"))
        .await
        .unwrap();
    assert_eq!(
        s.list("repositories/library").await.unwrap(),
        ["a", "ab", "b"]
    );
    assert_eq!(s.list("repositories/library/a").await.unwrap().len(), 3);
    assert_not_found(s.list("repositories/none").await, "list missing folder");
    assert_not_found(s.list("repositories/librar").await, "list a name prefix");
    assert_not_found(s.list("images/x/json").await, "list a file");
    assert_eq!(
        s.get("repositories/other/c/deep/er/file").await.unwrap(),
        "repositories/other/c/deep/er/file"
    );
}

/// More entries than one listing page of an object store holds (1000).
pub async fn listing_many_entries(f: &Fixture) {
    let s = &*f.storage;
    let n = 1_150;
    let names: Vec<String> = (0..n).map(|i| format!("{i:05}")).collect();
    futures_util::stream::iter(names.iter())
        .for_each_concurrent(32, |name| async move {
            let file = if name.ends_with('7') { "json" } else { "layer" };
            s.put(&format!("images/{name}/{file}"), Bytes::from_static(b"1"))
                .await
                .unwrap();
        })
        .await;
    let listed = s.list("images").await.unwrap();
    assert_eq!(listed, names);
}

/// Which tag folders hold a current link: only those, not a folder that
/// holds the file deeper or a sibling named like it; a folder holding
/// nothing is `NotFound`, a path leaving the root refused.
pub async fn folders_holding(f: &Fixture) {
    let s = &*f.storage;
    for p in [
        "fh/t1/current/link",
        "fh/t1/index/sha256/ab/link",
        "fh/t2/index/sha256/cd/link",
        "fh/t3/current/link",
        "fh/t3/current/link.old",
        "fh/t4/x/current/link",
        "fh/t5/current/linked",
        "fh/current/link",
    ] {
        s.put(p, Bytes::from_static(b"x")).await.unwrap();
    }
    s.put("fh/t6/current/link/deeper", Bytes::from_static(b"x"))
        .await
        .unwrap();
    assert_eq!(
        s.folders_holding("fh", "current/link").await.unwrap(),
        ["t1", "t3"]
    );
    // The same children, each with when its file was written.
    let written = SystemTime::now();
    let mut timed = s
        .folders_holding_with_times("fh", "current/link")
        .await
        .unwrap();
    timed.sort();
    assert_eq!(
        timed.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>(),
        ["t1", "t3"]
    );
    for (child, at) in &timed {
        // The time stat gives (S3: a listing's to the millisecond, a HEAD's
        // to the second).
        let stat = s.stat(&format!("fh/{child}/current/link")).await.unwrap();
        let apart = at
            .duration_since(stat.modified)
            .or_else(|_| stat.modified.duration_since(*at))
            .unwrap();
        assert!(
            apart < Duration::from_secs(1),
            "{child}: {at:?} and {:?}",
            stat.modified
        );
        let age = written.duration_since(*at).unwrap_or_default();
        assert!(
            age < Duration::from_secs(600),
            "{child}: written {age:?} ago"
        );
    }
    assert_not_found(
        s.folders_holding_with_times("fh/none", "current/link")
            .await,
        "folders_holding_with_times of no folder",
    );
    assert_invalid(
        s.folders_holding_with_times("fh", "../../x").await,
        "folders_holding_with_times of a file outside",
    );
    assert_eq!(
        s.folders_holding("fh/t4", "current/link").await.unwrap(),
        ["x"]
    );
    assert!(s
        .folders_holding("fh/t2", "current/link")
        .await
        .unwrap()
        .is_empty());
    s.remove("fh/t1/current/link").await.unwrap();
    assert_eq!(
        s.folders_holding("fh", "current/link").await.unwrap(),
        ["t3"]
    );
    assert_not_found(
        s.folders_holding("fh/none", "current/link").await,
        "folders_holding of no folder",
    );
    assert_invalid(
        s.folders_holding("../fh", "current/link").await,
        "folders_holding outside",
    );
    assert_invalid(
        s.folders_holding("fh", "../../x").await,
        "folders_holding of a file outside",
    );
    s.remove("fh").await.unwrap();
}

pub async fn recursive_remove(f: &Fixture) {
    let s = &*f.storage;
    for p in ["r/a/1", "r/a/2", "r/a/b/3", "r/a/b/c/4", "r/keep", "r/ab"] {
        s.put(p, Bytes::from_static(b"x")).await.unwrap();
    }
    s.put_stream("r/a/b/big", body(pattern::stream(1, 6 * 1024 * 1024)))
        .await
        .unwrap();
    s.remove("r/a/1").await.unwrap();
    assert!(!s.exists("r/a/1").await.unwrap());
    assert!(s.exists("r/a/2").await.unwrap());
    s.remove("r/a").await.unwrap();
    for p in ["r/a/2", "r/a/b/3", "r/a/b/c/4", "r/a/b/big"] {
        assert!(!s.exists(p).await.unwrap(), "{p} left");
    }
    assert_not_found(s.list("r/a").await, "list removed folder");
    assert_eq!(s.list("r").await.unwrap(), ["ab", "keep"]);
    assert_not_found(s.remove("r/a").await, "remove removed folder");
    s.remove("r").await.unwrap();
    assert_not_found(s.list("r").await, "list removed root folder");
}

/// A folder removed while a reader looks: where the driver says folders go
/// at once, a reader that saw one of its files gone never sees another
/// one still there; on every driver the folder ends gone, its sibling
/// kept, nothing left behind.
pub async fn folders_go_at_once_where_the_driver_says(f: &Fixture) {
    let s = &*f.storage;
    let at_once = s.removes_folders_at_once();
    let files: Vec<String> = (0..240)
        .map(|i| format!("gone/t/{}/{i:03}", i % 6))
        .collect();
    for p in &files {
        s.put(p, Bytes::from_static(b"x")).await.unwrap();
    }
    s.put("gone/kept", Bytes::from_static(b"k")).await.unwrap();
    let sampled: Vec<&String> = files.iter().step_by(29).collect();
    let watch = async {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut passes = 0u32;
        loop {
            let mut first_gone: Option<&String> = None;
            let mut gone = 0;
            for p in &sampled {
                if !s.exists(p).await.unwrap() {
                    gone += 1;
                    first_gone.get_or_insert(p);
                } else if let Some(first) = first_gone.filter(|_| at_once) {
                    panic!("{p} still there after {first} went (pass {passes})");
                }
            }
            passes += 1;
            if gone == sampled.len() {
                return passes;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the folder never went"
            );
            tokio::task::yield_now().await;
        }
    };
    let (removed, passes) = tokio::join!(s.remove("gone/t"), watch);
    removed.unwrap();
    assert!(passes > 0);
    for p in &files {
        assert!(!s.exists(p).await.unwrap(), "{p} left");
    }
    assert_not_found(s.list("gone/t").await, "list removed folder");
    assert_eq!(s.list("gone").await.unwrap(), ["kept"]);
    assert!(f.leftovers().await.is_empty(), "{:?}", f.leftovers().await);
}

pub async fn not_found_for_each_method(f: &Fixture) {
    let s = &*f.storage;
    s.put("images/here/json", Bytes::from_static(b"{}"))
        .await
        .unwrap();
    for p in [
        "images/none/json",
        "images/here/layer",
        "images/here/json/deeper",
    ] {
        assert_not_found(s.get(p).await, "get");
        assert_not_found(s.get_stream(p, None).await.map(|_| ()), "get_stream");
        let r = Some(ByteRange { first: 0, last: 0 });
        assert_not_found(s.get_stream(p, r).await.map(|_| ()), "get_stream range");
        assert_not_found(s.size(p).await, "size");
        assert_not_found(s.list(p).await, "list");
        assert_not_found(s.remove(p).await, "remove");
        assert!(!s.exists(p).await.unwrap(), "exists {p}");
    }
    // A folder is not a file either.
    assert_not_found(s.get("images/here").await, "get of a folder");
    assert_not_found(s.size("images/here").await, "size of a folder");
}

pub async fn overwrites(f: &Fixture) {
    let s = &*f.storage;
    let p = "repositories/library/x/tag_latest";
    s.put(p, Bytes::from_static(b"a-long-first-value"))
        .await
        .unwrap();
    s.put(p, Bytes::from_static(b"short")).await.unwrap();
    assert_eq!(&s.get(p).await.unwrap()[..], b"short");
    assert_eq!(s.size(p).await.unwrap(), 5);
    let layer = "images/x/layer";
    s.put_stream(layer, body(pattern::stream(11, 7 * 1024 * 1024)))
        .await
        .unwrap();
    s.put_stream(layer, body(pattern::stream(12, 1000)))
        .await
        .unwrap();
    assert_eq!(s.size(layer).await.unwrap(), 1000);
    assert_eq!(read_all(s, layer, None).await, pattern::bytes(12, 0, 1000));
    s.put(layer, Bytes::from_static(b"")).await.unwrap();
    assert_eq!(s.size(layer).await.unwrap(), 0);
    assert_eq!(s.list("images/x").await.unwrap(), ["layer"]);
}

pub async fn concurrent_writers(f: &Fixture) {
    let s = &*f.storage;
    let p = "images/c/layer";
    let len: u64 = 6 * 1024 * 1024 + 77;
    let seeds: Vec<u64> = (100..106).collect();
    s.put_stream(p, body(pattern::stream(99, len)))
        .await
        .unwrap();
    let writers = futures_util::future::join_all(
        seeds
            .iter()
            .map(|&seed| s.put_stream(p, body(pattern::slow_stream(seed, len)))),
    );
    // A reader meanwhile sees some whole version each time.
    let reader = async {
        for _ in 0..4 {
            let got = read_all(s, p, None).await;
            assert_eq!(got.len() as u64, len);
            assert!(whole_version(&got, &[99, 100, 101, 102, 103, 104, 105]));
            tokio::task::yield_now().await;
        }
    };
    let (results, ()) = futures_util::join!(writers, reader);
    for r in results {
        assert_eq!(r.unwrap(), len);
    }
    let got = read_all(s, p, None).await;
    assert_eq!(got.len() as u64, len);
    assert!(whole_version(&got, &seeds), "result is not one whole write");
    assert_eq!(s.list("images/c").await.unwrap(), ["layer"]);
}

/// Whether `got` is all of one seed's bytes (the seed told by its start).
fn whole_version(got: &[u8], seeds: &[u64]) -> bool {
    let head = got.len().min(64);
    seeds
        .iter()
        .find(|&&seed| got[..head] == pattern::bytes(seed, 0, head)[..])
        .is_some_and(|&seed| got == &pattern::bytes(seed, 0, got.len())[..])
}

pub async fn special_names_through_layout(f: &Fixture) {
    let s = &*f.storage;
    let names = [
        ("library", "abc%$_-test"),
        ("..", ".."),
        ("%2e%2e", "%2e%2e"),
        ("ns", "../../etc"),
        ("a b", "c/d"),
        ("back\\slash", "\\..\\x"),
        ("/abs", "/etc/passwd"),
        ("uni", "ßü漢"),
        (".", "."),
    ];
    let tags = [
        "latest",
        "a b",
        "x%y",
        "..",
        "/",
        "../../z",
        "\\",
        "ø",
        "nul\0byte",
    ];
    let id = ImageId::parse(&"0123456789abcdef".repeat(4)).unwrap();
    for (ns, repo) in names {
        let name = RepositoryName::new(ns, repo).unwrap();
        for tag in tags {
            let path = legacy::tag(&name, &Tag::unchecked(tag));
            s.put(&path, Bytes::from(id.as_str().to_owned()))
                .await
                .unwrap_or_else(|e| panic!("{path}: {e}"));
        }
        s.put(&legacy::repository_json(&name), Bytes::from_static(b"{}"))
            .await
            .unwrap();
        let dir = legacy::repository_dir(&name);
        let mut listed: Vec<String> = s
            .list(&dir)
            .await
            .unwrap()
            .iter()
            .filter_map(|file| legacy::tag_from_file_name(file))
            .map(|t| t.as_str().to_owned())
            .collect();
        listed.sort();
        let mut expected: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        expected.sort();
        assert_eq!(listed, expected, "tags of {name}");
        let tag_path = legacy::tag(&name, &Tag::unchecked("../../z"));
        assert_eq!(s.get(&tag_path).await.unwrap(), id.as_str());
    }
    // Each namespace is one folder, spelled as the old registry did.
    let mut namespaces = s.list("repositories").await.unwrap();
    namespaces.sort();
    let mut expected: Vec<String> = names
        .iter()
        .map(|(ns, _)| legacy::escape(ns))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    expected.sort();
    assert_eq!(namespaces, expected);
    assert!(
        s.list("repositories/library").await.unwrap() == ["abc%2525%2524_-test"],
        "legacy spelling of abc%$_-test"
    );
    assert!(f.outside().await.is_empty(), "{:?}", f.outside().await);
}

pub async fn invalid_paths_are_refused(f: &Fixture) {
    let s = &*f.storage;
    s.put("images/ok/json", Bytes::from_static(b"{}"))
        .await
        .unwrap();
    for p in [
        "",
        "..",
        "../x",
        "images/../../x",
        "images/ok/../../../etc/passwd",
        "/etc/passwd",
        "/images/ok/json",
        "images//ok",
        "images/ok/",
        "./images",
        "images\\..\\..\\x",
        "..\\x",
        "images/a\0b",
        "\0",
    ] {
        assert_invalid(s.get(p).await, &format!("get {p:?}"));
        assert_invalid(
            s.put(p, Bytes::from_static(b"x")).await,
            &format!("put {p:?}"),
        );
        assert_invalid(
            s.put_stream(p, body(pattern::stream(1, 10))).await,
            &format!("put_stream {p:?}"),
        );
        assert_invalid(
            s.get_stream(p, None).await.map(|_| ()),
            &format!("get_stream {p:?}"),
        );
        assert_invalid(s.size(p).await, &format!("size {p:?}"));
        assert_invalid(s.exists(p).await, &format!("exists {p:?}"));
        assert_invalid(s.list(p).await, &format!("list {p:?}"));
        assert_invalid(s.remove(p).await, &format!("remove {p:?}"));
        assert_invalid(s.redirect_url(p).await, &format!("redirect_url {p:?}"));
    }
    // Percent signs are plain characters to a driver: `%2e%2e` is a name.
    s.put("%2e%2e/x", Bytes::from_static(b"y")).await.unwrap();
    assert_eq!(s.list("%2e%2e").await.unwrap(), ["x"]);
    assert!(s.exists("images/ok/json").await.unwrap());
    assert!(f.outside().await.is_empty(), "{:?}", f.outside().await);
}

pub async fn interrupted_upload_keeps_old_content(f: &Fixture) {
    let s = &*f.storage;
    let p = "images/i/layer";
    s.put_stream(p, body(pattern::stream(5, 3000)))
        .await
        .unwrap();
    // Enough bytes before the break that writes (and multipart parts) have
    // already gone out.
    let broken = pattern::stream(6, 12 * 1024 * 1024).chain(futures_util::stream::once(async {
        Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "client went away",
        ))
    }));
    match s.put_stream(p, body(broken)).await {
        Err(StorageError::Interrupted(e)) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset),
        other => panic!("expected Interrupted, got {other:?}"),
    }
    assert_eq!(s.size(p).await.unwrap(), 3000);
    assert_eq!(read_all(s, p, None).await, pattern::bytes(5, 0, 3000));
    assert_eq!(s.list("images/i").await.unwrap(), ["layer"]);
    // Nothing is left of a first upload that breaks off either.
    let broken = pattern::stream(6, 2 * 1024 * 1024).chain(futures_util::stream::once(async {
        Err(io::Error::new(io::ErrorKind::UnexpectedEof, "short body"))
    }));
    let fresh = "images/j/layer";
    assert!(matches!(
        s.put_stream(fresh, body(broken)).await,
        Err(StorageError::Interrupted(_))
    ));
    assert!(!s.exists(fresh).await.unwrap());
    assert!(f.leftovers().await.is_empty(), "{:?}", f.leftovers().await);
}

/// The request's future dropped midway (actix does so when the client
/// goes away): the old content stays, nothing is left behind.
pub async fn abandoned_upload_leaves_nothing(fixture: &Fixture) {
    let s = &*fixture.storage;
    s.put("images/a/layer", Bytes::from_static(b"old"))
        .await
        .unwrap();
    // A client that sends 20 MiB and then nothing, until the server gives
    // up on it and drops the request.
    let stalled: ByteStream = Box::pin(
        pattern::stream(2, 20 * 1024 * 1024)
            .chain(futures_util::stream::pending::<io::Result<Bytes>>()),
    );
    // Boxed, so that dropping it below drops the upload (as actix drops a
    // request's future).
    let mut upload = Box::pin(s.put_stream("images/a/layer", stalled));
    let started = async {
        while fixture.leftovers().await.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::select! {
        r = &mut upload => panic!("a stalled upload ended: {r:?}"),
        _ = tokio::time::timeout(Duration::from_secs(20), started) => {}
    }
    assert!(!fixture.leftovers().await.is_empty(), "no upload started");
    // Let the driver see its upload started (an object store's answer to
    // the start of a multipart upload may still be on its way) and send
    // what it has.
    tokio::select! {
        r = &mut upload => panic!("a stalled upload ended: {r:?}"),
        _ = tokio::time::sleep(Duration::from_secs(2)) => {}
    }
    drop(upload);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !fixture.leftovers().await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            fixture.leftovers().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(&s.get("images/a/layer").await.unwrap()[..], b"old");
}

/// A download the storage hands out itself, where it can.
pub async fn redirect_urls(f: &Fixture) {
    let s = &*f.storage;
    let p = "images/d/layer";
    s.put(p, Bytes::from_static(b"layer-bytes")).await.unwrap();
    match s.redirect_url(p).await.unwrap() {
        None => assert!(!f.redirects, "{} gave no redirect URL", s.name()),
        Some(url) => {
            assert!(f.redirects, "{} gave a redirect URL", s.name());
            let got = reqwest::get(&url).await.unwrap();
            assert!(got.status().is_success(), "{url}: {}", got.status());
            assert_eq!(&got.bytes().await.unwrap()[..], b"layer-bytes");
        }
    }
}

/// Appends `count` writes of `len` bytes of `seed` at the writer's end.
async fn write_pattern(w: &mut dyn FileWriter, seed: u64, len: usize, count: usize) {
    for _ in 0..count {
        let at = w.size();
        w.write(Bytes::from(pattern::bytes(seed, at, len)))
            .await
            .unwrap_or_else(|e| panic!("write at {at}: {e}"));
        assert_eq!(w.size(), at + len as u64);
    }
}

async fn resume(s: &dyn Storage, path: &str, n: u64) -> Box<dyn FileWriter> {
    let w = s
        .writer(path, Some(n))
        .await
        .unwrap_or_else(|e| panic!("resume {path} at {n}: {e}"));
    assert_eq!(w.size(), n, "a resumed writer starts at its offset");
    w
}

fn assert_invalid_range<T>(r: Result<T, StorageError>, expected: u64, what: &str) {
    match r {
        Err(StorageError::InvalidRange { size, .. }) => assert_eq!(size, expected, "{what}"),
        Err(e) => panic!("{what}: expected InvalidRange, got {e}"),
        Ok(_) => panic!("{what}: expected InvalidRange, got a writer"),
    }
}

const SMALL_WRITE: usize = 7 * 1024;
const BIG_WRITE: usize = 6 * 1024 * 1024;

/// A file written by several writers in turn, each closing, many small
/// writes and a few large ones: the committed file is every byte, once.
pub async fn writer_resumes_across_writers(f: &Fixture) {
    let s = &*f.storage;
    let p = "uploads/many/data";
    let mut w = s.writer(p, None).await.unwrap();
    assert_eq!(w.size(), 0);
    write_pattern(&mut *w, 21, SMALL_WRITE, 400).await;
    let mut closed = w.close().await.unwrap();
    assert_eq!(closed, 400 * SMALL_WRITE as u64);
    for (big, small) in [(1, 300), (2, 300), (0, 0), (0, 1)] {
        let mut w = resume(s, p, closed).await;
        write_pattern(&mut *w, 21, BIG_WRITE, big).await;
        write_pattern(&mut *w, 21, SMALL_WRITE, small).await;
        closed = w.close().await.unwrap();
    }
    let total = (1001 * SMALL_WRITE + 3 * BIG_WRITE) as u64;
    assert_eq!(closed, total);
    assert_invalid_range(s.writer(p, Some(total + 1)).await, total, "past the end");
    let w = resume(s, p, total).await;
    assert_eq!(w.commit().await.unwrap(), total);
    assert_eq!(s.size(p).await.unwrap(), total);
    assert_eq!(s.stat(p).await.unwrap().size, total);
    let checked = pattern::verify(21, 0, s.get_stream(p, None).await.unwrap())
        .await
        .unwrap();
    assert_eq!(checked, total);
    // Nothing of the writers is left beside the file.
    assert_eq!(s.list("uploads/many").await.unwrap(), ["data"]);
    assert!(f.leftovers().await.is_empty(), "{:?}", f.leftovers().await);
}

/// A writer past the local driver's early flush (32 MiB), with its batches
/// in flight while the next arrive: a writer dropped with a batch in
/// flight (a request broken off) lands nothing after the next writer's cut.
pub async fn writer_across_flushes(f: &Fixture) {
    let s = &*f.storage;
    let p = "uploads/flushes/data";
    let mut w = s.writer(p, None).await.unwrap();
    write_pattern(&mut *w, 41, BIG_WRITE + 1, 6).await;
    write_pattern(&mut *w, 41, SMALL_WRITE, 3).await;
    let first = w.close().await.unwrap();
    for round in 0..4 {
        let mut w = resume(s, p, first).await;
        // Other bytes than the file's, which must never appear in it.
        write_pattern(&mut *w, 50 + round, BIG_WRITE, 2).await;
        drop(w);
    }
    let mut w = resume(s, p, first).await;
    write_pattern(&mut *w, 41, 1024 * 1024 + 3, 2).await;
    let total = w.commit().await.unwrap();
    assert_eq!(total, first + 2 * (1024 * 1024 + 3));
    let checked = pattern::verify(41, 0, s.get_stream(p, None).await.unwrap())
        .await
        .unwrap();
    assert_eq!(checked, total);
    assert!(f.leftovers().await.is_empty(), "{:?}", f.leftovers().await);
}

/// Bytes a writer wrote and never closed (it was dropped, as a request
/// that breaks off drops it) are not part of the file; a resume at an
/// earlier close drops what came after it.
pub async fn resume_drops_bytes_after_the_last_close(f: &Fixture) {
    let s = &*f.storage;
    let p = "uploads/drop/data";
    let mut w = s.writer(p, None).await.unwrap();
    // One part of an object store and some.
    write_pattern(&mut *w, 31, 8 * 1024 * 1024 + 100 * 1024, 1).await;
    let first = w.close().await.unwrap();
    // Past another part, in other bytes.
    let mut w = resume(s, p, first).await;
    write_pattern(&mut *w, 32, 9 * 1024 * 1024 + 5, 1).await;
    drop(w);
    let mut w = resume(s, p, first).await;
    write_pattern(&mut *w, 31, 3000, 1).await;
    let second = w.close().await.unwrap();
    let mut w = resume(s, p, second).await;
    write_pattern(&mut *w, 33, 2000, 1).await;
    w.close().await.unwrap();
    // Back to the second close: the 2000 bytes after it go.
    let mut w = resume(s, p, second).await;
    write_pattern(&mut *w, 31, 1024 * 1024, 1).await;
    let total = w.commit().await.unwrap();
    assert_eq!(total, second + 1024 * 1024);
    assert_eq!(s.size(p).await.unwrap(), total);
    let checked = pattern::verify(31, 0, s.get_stream(p, None).await.unwrap())
        .await
        .unwrap();
    assert_eq!(checked, total);
    assert!(f.leftovers().await.is_empty(), "{:?}", f.leftovers().await);
}

/// A resume at an earlier offset than the last close: a disk or memory
/// cuts the file there; an object store can cut only where a part it
/// has sent ends, and names that offset.
pub async fn resume_before_the_last_close(f: &Fixture) {
    let s = &*f.storage;
    let p = "uploads/back/data";
    let mut w = s.writer(p, None).await.unwrap();
    write_pattern(&mut *w, 51, 9 * 1024 * 1024, 1).await;
    let closed = w.close().await.unwrap();
    // Inside the tail an object store keeps: every driver can.
    let w = resume(s, p, closed - 1000).await;
    w.close().await.unwrap();
    let early = 6 * 1024 * 1024;
    let mut w = match s.writer(p, Some(early)).await {
        Ok(w) => {
            assert_eq!(w.size(), early);
            w
        }
        Err(StorageError::InvalidRange { size, .. })
            if matches!(s.name(), "s3" | "gcs" | "swift") =>
        {
            // The first part holds the first 8 MiB.
            assert_eq!(size, 0);
            resume(s, p, size).await
        }
        Err(e) => panic!("resume at {early}: {e}"),
    };
    write_pattern(&mut *w, 51, 1024, 1).await;
    let total = w.commit().await.unwrap();
    let checked = pattern::verify(51, 0, s.get_stream(p, None).await.unwrap())
        .await
        .unwrap();
    assert_eq!(checked, total);
    assert!(total == early + 1024 || total == 1024, "{total}");
    assert!(f.leftovers().await.is_empty(), "{:?}", f.leftovers().await);
}

/// A file closed by one instance is resumed and committed by another.
pub async fn resume_on_another_instance(f: &Fixture) {
    let p = "uploads/moved/data";
    let mut w = f.storage.writer(p, None).await.unwrap();
    write_pattern(&mut *w, 41, BIG_WRITE, 1).await;
    write_pattern(&mut *w, 41, SMALL_WRITE, 5).await;
    let closed = w.close().await.unwrap();
    let other = f.reopen();
    let mut w = resume(&*other, p, closed).await;
    write_pattern(&mut *w, 41, BIG_WRITE, 2).await;
    let closed = w.close().await.unwrap();
    let mut w = resume(&*f.storage, p, closed).await;
    write_pattern(&mut *w, 41, SMALL_WRITE, 1).await;
    let closed = w.close().await.unwrap();
    let w = resume(&*other, p, closed).await;
    let total = w.commit().await.unwrap();
    assert_eq!(total, (3 * BIG_WRITE + 6 * SMALL_WRITE) as u64);
    let checked = pattern::verify(41, 0, f.storage.get_stream(p, None).await.unwrap())
        .await
        .unwrap();
    assert_eq!(checked, total);
    assert!(f.leftovers().await.is_empty(), "{:?}", f.leftovers().await);
}

pub async fn writer_errors(f: &Fixture) {
    let s = &*f.storage;
    for n in [0, 10] {
        assert_not_found(
            s.writer("uploads/none/data", Some(n)).await.map(|_| ()),
            "resume of a file never started",
        );
    }
    let mut w = s.writer("uploads/short/data", None).await.unwrap();
    write_pattern(&mut *w, 1, 10, 1).await;
    assert_eq!(w.close().await.unwrap(), 10);
    assert_invalid_range(
        s.writer("uploads/short/data", Some(11)).await,
        10,
        "resume past the closed bytes",
    );
    for p in ["", "../x", "uploads/../../x", "/abs", "a//b", "a\0b"] {
        assert_invalid(
            s.writer(p, None).await.map(|_| ()),
            &format!("writer {p:?}"),
        );
        assert_invalid(
            s.writer(p, Some(0)).await.map(|_| ()),
            &format!("resume {p:?}"),
        );
        assert_invalid(s.rename(p, "ok/x").await, &format!("rename from {p:?}"));
        assert_invalid(
            s.rename("uploads/short/data", p).await,
            &format!("rename to {p:?}"),
        );
        assert_invalid(s.stat(p).await, &format!("stat {p:?}"));
    }
    s.writer("uploads/short/data", Some(10))
        .await
        .unwrap()
        .cancel()
        .await
        .unwrap();
    assert!(f.outside().await.is_empty(), "{:?}", f.outside().await);
}

/// A cancelled file leaves nothing: no file, nothing listed, no state.
pub async fn cancel_leaves_nothing(f: &Fixture) {
    let s = &*f.storage;
    let p = "uploads/c/data";
    let mut w = s.writer(p, None).await.unwrap();
    write_pattern(&mut *w, 4, BIG_WRITE, 1).await;
    write_pattern(&mut *w, 4, SMALL_WRITE, 3).await;
    let closed = w.close().await.unwrap();
    let mut w = resume(s, p, closed).await;
    write_pattern(&mut *w, 4, BIG_WRITE, 1).await;
    w.cancel().await.unwrap();
    assert!(!s.exists(p).await.unwrap());
    assert_not_found(s.list("uploads/c").await, "list after cancel");
    assert_not_found(s.list("uploads").await, "list after cancel");
    assert_not_found(
        s.writer(p, Some(0)).await.map(|_| ()),
        "resume after cancel",
    );
    // A writer cancelled before any close.
    let mut w = s.writer(p, None).await.unwrap();
    write_pattern(&mut *w, 4, SMALL_WRITE, 2).await;
    w.cancel().await.unwrap();
    assert_not_found(s.list("uploads").await, "list after cancel");
    assert!(f.leftovers().await.is_empty(), "{:?}", f.leftovers().await);
}

/// A committed file is a plain file to every other method, and replaces
/// one that was there.
pub async fn commit_makes_a_plain_file(f: &Fixture) {
    let s = &*f.storage;
    let p = "uploads/plain/data";
    s.put(p, Bytes::from_static(b"an older, longer file"))
        .await
        .unwrap();
    let before = std::time::SystemTime::now() - Duration::from_secs(2);
    let mut w = s.writer(p, None).await.unwrap();
    w.write(Bytes::from_static(b"hello ")).await.unwrap();
    w.write(Bytes::from_static(b"world")).await.unwrap();
    assert_eq!(w.commit().await.unwrap(), 11);
    assert_eq!(&s.get(p).await.unwrap()[..], b"hello world");
    assert_eq!(s.size(p).await.unwrap(), 11);
    assert!(s.exists(p).await.unwrap());
    assert_eq!(read_all(s, p, None).await, b"hello world");
    assert_eq!(
        read_all(s, p, Some(ByteRange { first: 6, last: 10 })).await,
        b"world"
    );
    let info = s.stat(p).await.unwrap();
    assert_eq!(info.size, 11);
    assert!(info.modified >= before, "{info:?}");
    // An empty file.
    let empty = "uploads/plain/empty";
    assert_eq!(
        s.writer(empty, None).await.unwrap().commit().await.unwrap(),
        0
    );
    assert!(s.exists(empty).await.unwrap());
    assert_eq!(s.size(empty).await.unwrap(), 0);
    assert!(s.get(empty).await.unwrap().is_empty());
    // Larger than one part, committed by a resumed writer.
    let big = "uploads/plain/big";
    let mut w = s.writer(big, None).await.unwrap();
    write_pattern(&mut *w, 9, BIG_WRITE + 3, 2).await;
    let closed = w.close().await.unwrap();
    let w = resume(s, big, closed).await;
    assert_eq!(w.commit().await.unwrap(), closed);
    let r = ByteRange {
        first: 5 * 1024 * 1024 - 1,
        last: 9 * 1024 * 1024,
    };
    let checked = pattern::verify(9, r.first, s.get_stream(big, Some(r)).await.unwrap())
        .await
        .unwrap();
    assert_eq!(checked, r.len());
    assert_eq!(
        s.list("uploads/plain").await.unwrap(),
        ["big", "data", "empty"]
    );
    assert!(f.leftovers().await.is_empty(), "{:?}", f.leftovers().await);
}

pub async fn rename_replaces_atomically(f: &Fixture) {
    let s = &*f.storage;
    s.put("r/from", Bytes::from_static(b"new")).await.unwrap();
    s.put("r/to", Bytes::from_static(b"old, longer"))
        .await
        .unwrap();
    s.rename("r/from", "r/to").await.unwrap();
    assert_eq!(&s.get("r/to").await.unwrap()[..], b"new");
    assert!(!s.exists("r/from").await.unwrap());
    assert_eq!(s.list("r").await.unwrap(), ["to"]);
    s.rename("r/to", "r/to").await.unwrap();
    assert_eq!(&s.get("r/to").await.unwrap()[..], b"new");
    // Into folders that do not exist yet, with names that need escaping
    // on the wire.
    let len = 6 * 1024 * 1024 + 1;
    s.put_stream("r/big", body(pattern::stream(8, len)))
        .await
        .unwrap();
    let dest = "blobs/sha256/ab/a%2Fb c+d/data";
    s.rename("r/big", dest).await.unwrap();
    assert_eq!(s.size(dest).await.unwrap(), len);
    let checked = pattern::verify(8, 0, s.get_stream(dest, None).await.unwrap())
        .await
        .unwrap();
    assert_eq!(checked, len);
    assert!(!s.exists("r/big").await.unwrap());
    assert_not_found(s.rename("r/none", "r/x").await, "rename of a missing file");
    assert_not_found(s.rename("blobs/sha256", "r/x").await, "rename of a folder");
    assert!(!s.exists("r/x").await.unwrap());
    assert_eq!(&s.get("r/to").await.unwrap()[..], b"new");
    assert!(f.outside().await.is_empty(), "{:?}", f.outside().await);
}

/// A rename into a folder that a remove takes away meanwhile (a blob an
/// upload stores while the collector deletes it), or a put into it (a
/// link): neither fails for it; what it wrote is whole, or gone with the
/// folder. The rename races removes in a tight loop; a put, which syncs
/// its bytes in the folder before its rename, races a remove every few
/// milliseconds, as a sweep's are, not a loop no bounded retry outruns.
pub async fn writes_racing_a_folder_remove(f: &Fixture) {
    let s = &*f.storage;
    race_a_folder_remove(s, "rename", 0, || async {
        s.put("rr/upload/data", Bytes::from_static(b"blob"))
            .await
            .unwrap();
        s.rename("rr/upload/data", "rr/x/data").await?;
        Ok("data")
    })
    .await;
    race_a_folder_remove(s, "put", 24, || async {
        s.put("rr/x/link", Bytes::from_static(b"link")).await?;
        Ok("link")
    })
    .await;
    let _ = s.remove("rr").await;
    assert!(f.outside().await.is_empty(), "{:?}", f.outside().await);
}

/// Up to 200 rounds (10 s) of `write` while `rr/x` is removed, then a
/// pause of up to `pause_ms` (none: a yield), over and over.
async fn race_a_folder_remove<W, F>(s: &dyn Storage, what: &str, pause_ms: u64, write: W)
where
    W: Fn() -> F,
    F: std::future::Future<Output = Result<&'static str, StorageError>>,
{
    use std::sync::atomic::{AtomicBool, Ordering};
    let done = AtomicBool::new(false);
    let started = std::time::Instant::now();
    let writes = async {
        let mut round = 0;
        while round < 200 && started.elapsed() < Duration::from_secs(10) {
            round += 1;
            let written = write().await;
            let file = match written {
                Ok(file) => file,
                Err(e) => {
                    done.store(true, Ordering::Relaxed);
                    panic!("{what} {round} racing a remove: {e}");
                }
            };
            match s.get(&format!("rr/x/{file}")).await {
                Ok(data) => assert_eq!(&data[..], if file == "data" { b"blob" } else { b"link" }),
                Err(StorageError::NotFound(_)) => {}
                Err(e) => panic!("read after {what} {round}: {e}"),
            }
        }
        done.store(true, Ordering::Relaxed);
    };
    let removes = async {
        let mut pause = 0;
        while !done.load(Ordering::Relaxed) {
            match s.remove("rr/x").await {
                Ok(()) | Err(StorageError::NotFound(_)) => {}
                Err(e) => panic!("remove racing a {what}: {e}"),
            }
            if pause_ms == 0 {
                tokio::task::yield_now().await;
            } else {
                // Spread over pause_ms/4 to pause_ms, so that the race's
                // window falls at any point of the write.
                pause = (pause + 7_919) % (pause_ms * 750);
                let micros = pause_ms * 250 + pause;
                tokio::time::sleep(Duration::from_micros(micros)).await;
            }
        }
    };
    futures_util::future::join(writes, removes).await;
}

pub async fn copy_leaves_the_source(f: &Fixture) {
    let s = &*f.storage;
    s.put("c/from", Bytes::from_static(b"bytes")).await.unwrap();
    s.put("c/to", Bytes::from_static(b"old, longer"))
        .await
        .unwrap();
    s.copy("c/from", "c/to").await.unwrap();
    assert_eq!(&s.get("c/to").await.unwrap()[..], b"bytes");
    assert_eq!(&s.get("c/from").await.unwrap()[..], b"bytes");
    // Neither name changes the other afterwards (local: a hard link,
    // and every write replaces the file).
    s.put("c/from", Bytes::from_static(b"changed"))
        .await
        .unwrap();
    assert_eq!(&s.get("c/to").await.unwrap()[..], b"bytes");
    s.copy("c/to", "c/to").await.unwrap();
    assert_eq!(&s.get("c/to").await.unwrap()[..], b"bytes");
    // Large, into folders that do not exist yet.
    let len = 6 * 1024 * 1024 + 1;
    s.put_stream("c/big", body(pattern::stream(9, len)))
        .await
        .unwrap();
    let dest = "blobs/sha256/cd/c%2Fd e+f/data";
    s.copy("c/big", dest).await.unwrap();
    assert_eq!(s.size(dest).await.unwrap(), len);
    let checked = pattern::verify(9, 0, s.get_stream(dest, None).await.unwrap())
        .await
        .unwrap();
    assert_eq!(checked, len);
    assert_eq!(s.size("c/big").await.unwrap(), len);
    assert_not_found(s.copy("c/none", "c/x").await, "copy of a missing file");
    assert!(!s.exists("c/x").await.unwrap());
    assert_eq!(s.list("c").await.unwrap(), ["big", "from", "to"]);
    assert!(f.leftovers().await.is_empty(), "{:?}", f.leftovers().await);
    assert!(f.outside().await.is_empty(), "{:?}", f.outside().await);
}

pub async fn stat_gives_size_and_time(f: &Fixture) {
    let s = &*f.storage;
    // Object stores give whole seconds.
    let before = std::time::SystemTime::now() - Duration::from_secs(2);
    s.put("st/a", Bytes::from_static(b"12345")).await.unwrap();
    s.put_stream("st/b", body(pattern::stream(2, 2 * 1024 * 1024 + 1)))
        .await
        .unwrap();
    let after = std::time::SystemTime::now() + Duration::from_secs(2);
    for (p, size) in [("st/a", 5), ("st/b", 2 * 1024 * 1024 + 1)] {
        let info = s.stat(p).await.unwrap();
        assert_eq!(info.size, size, "{p}");
        assert!(
            info.modified >= before && info.modified <= after,
            "{p}: {info:?}"
        );
    }
    assert_not_found(s.stat("st/none").await, "stat of a missing file");
    assert_not_found(s.stat("st").await, "stat of a folder");
    assert_not_found(s.stat("st/a/deeper").await, "stat below a file");
}

/// `lock` excludes every other holder of the same path until dropped, and
/// only of that path; a read-modify-write under it loses no update.
pub async fn lock_excludes_other_holders(f: &Fixture) {
    let s = &f.storage;
    let held = s.lock("repositories/ns/app/_index_images").await.unwrap();
    // Another path is free meanwhile (and needs no file there).
    drop(s.lock("repositories/ns/other/_index_images").await.unwrap());
    let waiting = tokio::time::timeout(
        Duration::from_millis(200),
        s.lock("repositories/ns/app/_index_images"),
    )
    .await;
    assert!(waiting.is_err(), "a second holder got the lock");
    drop(held);
    drop(s.lock("repositories/ns/app/_index_images").await.unwrap());
    assert!(matches!(
        s.lock("../outside").await,
        Err(StorageError::InvalidPath(_))
    ));

    let path = "counter/value";
    s.put(path, Bytes::from_static(b"0")).await.unwrap();
    let bumps = (0..8).map(|_| {
        let s = s.clone();
        async move {
            for _ in 0..5 {
                let _lock = s.lock(path).await.unwrap();
                let n: u32 = std::str::from_utf8(&s.get(path).await.unwrap())
                    .unwrap()
                    .parse()
                    .unwrap();
                tokio::task::yield_now().await;
                s.put(path, Bytes::from((n + 1).to_string())).await.unwrap();
            }
        }
    });
    futures_util::future::join_all(bumps).await;
    assert_eq!(&s.get(path).await.unwrap()[..], b"40");
    assert!(f.leftovers().await.is_empty(), "{:?}", f.leftovers().await);
}

/// The files under the storage root that hold locks (local disk; other
/// drivers keep their locks in memory).
fn lock_files(f: &Fixture) -> Vec<String> {
    let Some(probe) = f.storage.local_path("probe") else {
        return Vec::new();
    };
    let root = probe.parent().expect("root").to_path_buf();
    super::fixture::walk(&root)
        .into_iter()
        .map(|p| p.strip_prefix(&root).unwrap_or(&p).display().to_string())
        .filter(|p| p.starts_with(".registry-v1-locks"))
        .collect()
}

/// A lock leaves nothing behind once given back: a driver's lock files do
/// not grow with every path ever locked.
pub async fn locks_leave_no_files(f: &Fixture) {
    let s = &f.storage;
    for i in 0..300 {
        drop(
            s.lock(&format!("repositories/ns/r{i}/_index_images"))
                .await
                .unwrap(),
        );
    }
    let paths: Vec<String> = (0..20).map(|i| format!("images/{i}/_inprogress")).collect();
    let held: Vec<_> = futures_util::future::join_all(paths.iter().map(|p| s.lock(p))).await;
    assert!(lock_files(f).len() <= 20, "{:?}", lock_files(f));
    drop(held);
    assert_eq!(lock_files(f), Vec::<String>::new());
}

/// Lock files removed as locks are given back still exclude: several
/// drivers on one folder (as several processes: each its own in-process
/// locks, the file lock alone between them), each on its own thread,
/// bump shared counters under the lock; none loses an update, and no lock
/// file is left. Drivers whose lock holds in one process only (memory,
/// S3) are not asked.
pub async fn lock_files_removed_under_contention_still_exclude(f: &Fixture) {
    if f.storage.local_path("probe").is_none() {
        return;
    }
    const THREADS: usize = 6;
    const ROUNDS: usize = 40;
    let paths = ["race/a", "race/b", "race/c"];
    for path in paths {
        f.storage.put(path, Bytes::from_static(b"0")).await.unwrap();
    }
    let started = std::time::Instant::now();
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let storage = f.reopen();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async {
                    for round in 0..ROUNDS {
                        let path = paths[(t + round) % paths.len()];
                        let _lock = storage.lock(path).await.unwrap();
                        let n: u32 = std::str::from_utf8(&storage.get(path).await.unwrap())
                            .unwrap()
                            .parse()
                            .unwrap();
                        // Room for another holder to slip in, were the lock broken.
                        std::thread::sleep(Duration::from_micros(200));
                        storage
                            .put(path, Bytes::from((n + 1).to_string()))
                            .await
                            .unwrap();
                    }
                });
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("a locking thread failed");
    }
    let mut total = 0;
    for path in paths {
        let n: usize = std::str::from_utf8(&f.storage.get(path).await.unwrap())
            .unwrap()
            .parse()
            .unwrap();
        total += n;
    }
    assert_eq!(total, THREADS * ROUNDS, "updates lost: the lock let two in");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(lock_files(f), Vec::<String>::new());
}

/// `put_if` writes only over the version read (or only where nothing is),
/// and of concurrent read-modify-writes through it none is lost, even
/// without `lock`.
pub async fn put_if_is_a_compare_and_swap(f: &Fixture) {
    compare_and_swap(f, "cas/value", false).await;
}

/// `put_unsynced` and `put_if_unsynced` are `put` and `put_if` to any
/// reader (only a power cut tells them apart).
pub async fn unsynced_puts_are_puts(f: &Fixture) {
    let s = &f.storage;
    s.put_unsynced("unsynced/a/b", Bytes::from_static(b"one"))
        .await
        .unwrap();
    assert_eq!(&s.get("unsynced/a/b").await.unwrap()[..], b"one");
    s.put_unsynced("unsynced/a/b", Bytes::from_static(b"two"))
        .await
        .unwrap();
    assert_eq!(&s.get("unsynced/a/b").await.unwrap()[..], b"two");
    assert_eq!(s.list("unsynced/a").await.unwrap(), vec!["b".to_owned()]);
    compare_and_swap(f, "unsynced/cas", true).await;
}

/// `put_if`, or `put_if_unsynced`.
async fn swap(
    s: &dyn Storage,
    unsynced: bool,
    path: &str,
    data: &[u8],
    expected: Option<&Version>,
) -> bool {
    let data = Bytes::copy_from_slice(data);
    let swapped = if unsynced {
        s.put_if_unsynced(path, data, expected).await
    } else {
        s.put_if(path, data, expected).await
    };
    swapped.unwrap()
}

async fn compare_and_swap(f: &Fixture, path: &str, unsynced: bool) {
    let s = &f.storage;
    assert!(swap(&**s, unsynced, path, b"1", None).await);
    assert!(!swap(&**s, unsynced, path, b"x", None).await);
    let (data, v1) = s.get_versioned(path).await.unwrap();
    assert_eq!(&data[..], b"1");
    assert!(swap(&**s, unsynced, path, b"2", Some(&v1)).await);
    // The version read before is stale now.
    assert!(!swap(&**s, unsynced, path, b"y", Some(&v1)).await);
    assert_eq!(&s.get(path).await.unwrap()[..], b"2");
    assert!(matches!(
        s.get_versioned("cas/missing").await,
        Err(StorageError::NotFound(_))
    ));

    s.put(path, Bytes::from_static(b"0")).await.unwrap();
    let bumps = (0..4).map(|_| {
        let s = s.clone();
        async move {
            for _ in 0..5 {
                loop {
                    let (data, version) = s.get_versioned(path).await.unwrap();
                    let n: u32 = std::str::from_utf8(&data).unwrap().parse().unwrap();
                    tokio::task::yield_now().await;
                    let next = (n + 1).to_string();
                    if swap(&*s, unsynced, path, next.as_bytes(), Some(&version)).await {
                        break;
                    }
                }
            }
        }
    });
    futures_util::future::join_all(bumps).await;
    assert_eq!(&s.get(path).await.unwrap()[..], b"20");
}

/// The collector's lease: one holder at a time, taken over once expired,
/// kept by renewing, given back by releasing.
pub async fn lease_has_one_holder_at_a_time(f: &Fixture) {
    use registry_v1::storage::lease::{Acquired, Lease};
    let s = &*f.storage;
    let path = "_gc/lease";
    // The time unit of this test: a lease step on Swift is several
    // requests and a settle time (its `put_if` holds a lock object), which
    // a loaded machine stretches past a 1.5 s lease; the collector's own
    // lease lasts minutes.
    let unit = if s.name() == "swift" { 4 } else { 1 };
    let ms = |n: u64| Duration::from_millis(n * unit);
    let ttl = ms(1500);
    let Acquired::Held(mut first) = Lease::acquire(s, path, "first", ttl).await.unwrap() else {
        panic!("a free lease is taken");
    };
    match Lease::acquire(s, path, "second", ttl).await.unwrap() {
        Acquired::Busy { holder, until } => {
            assert_eq!(holder, "first");
            assert!(until > std::time::SystemTime::now());
        }
        Acquired::Held(_) => panic!("a held lease is refused"),
    }
    // Renewing keeps it past its first expiry.
    tokio::time::sleep(ms(900)).await;
    assert!(first.renew(s).await.unwrap());
    tokio::time::sleep(ms(900)).await;
    assert!(matches!(
        Lease::acquire(s, path, "second", ttl).await.unwrap(),
        Acquired::Busy { .. }
    ));
    // Expired: the next one takes it over, and the first one has lost it.
    tokio::time::sleep(ms(1000)).await;
    let Acquired::Held(second) = Lease::acquire(s, path, "second", ttl).await.unwrap() else {
        panic!("an expired lease is taken over");
    };
    assert!(
        !first.renew(s).await.unwrap(),
        "a lost lease is not renewed"
    );
    first.release(s).await.unwrap();
    assert!(
        matches!(
            Lease::acquire(s, path, "third", ttl).await.unwrap(),
            Acquired::Busy { .. }
        ),
        "releasing a lost lease does not free the new holder's"
    );
    second.release(s).await.unwrap();
    assert!(matches!(
        Lease::acquire(s, path, "third", ttl).await.unwrap(),
        Acquired::Held(_)
    ));
    // Of several at once, one wins (for long enough that none expires
    // during the race, however slow the store).
    s.remove(path).await.unwrap();
    let tries = (0..4).map(|i| async move {
        matches!(
            Lease::acquire(s, path, &format!("racer{i}"), Duration::from_secs(60))
                .await
                .unwrap(),
            Acquired::Held(_)
        )
    });
    let won = futures_util::future::join_all(tries).await;
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
}

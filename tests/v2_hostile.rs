//! The v2 API against hostile or careless clients: malformed names,
//! digests, ranges, bodies and methods. Each answer is the documented
//! status with the spec's JSON error and the version header; nothing
//! panics, nothing is a 500, nothing half-written is served. Every test
//! runs on local disk and on S3.

#[macro_use]
mod common;
mod v2_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{json, Value};

use v2_support::*;

/// A raw request whose answer must be an error with `status` and `code`,
/// carrying the version header (for targets reqwest would normalize).
fn raw_error(port: u16, method: &str, target: &str, status: u16, code: &str) {
    let (got, text) = raw_request(port, method, target, b"");
    assert_eq!(got, status, "{method} {target}: {text}");
    let lower = text.to_ascii_lowercase();
    assert!(
        lower.contains("docker-distribution-api-version: registry/2.0"),
        "{method} {target}: version header: {text}"
    );
    if method == "HEAD" {
        return;
    }
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let codes = error_codes_of(body.as_bytes(), &format!("{method} {target}"));
    assert!(
        codes.iter().any(|c| c == code),
        "{method} {target}: {codes:?}"
    );
}

// --- Names, digests, references, upload ids ----------------------------------

fn bad_identifiers(backend: Backend) {
    let registry = backend.start(&[]);
    let v2 = V2::new(&registry);
    let port = registry.port;
    let name = "hostile/ids";
    let blob = v2.push_blob(name, &unique_bytes("ids", 100));
    let hex = hex_of(&blob).to_owned();
    let long = "a".repeat(300);
    for bad in [
        "a%2Fb",
        "a%2fb",
        "%2e%2e/a",
        "a/%2e%2e/b",
        "a/%2E%2E",
        "UPPER",
        "caf%C3%A9",
        "a%00b",
        long.as_str(),
        "_catalog",
        "a/_uploads",
        "_uploads",
    ] {
        for target in [
            format!("/v2/{bad}/tags/list"),
            format!("/v2/{bad}/manifests/latest"),
            format!("/v2/{bad}/blobs/{blob}"),
        ] {
            raw_error(port, "GET", &target, 400, "NAME_INVALID");
        }
        raw_error(
            port,
            "POST",
            &format!("/v2/{bad}/blobs/uploads/"),
            400,
            "NAME_INVALID",
        );
    }
    for bad in [
        format!("sha256:{}", &hex[..63]),
        format!("sha256:{hex}0"),
        format!("sha256:{}", hex.to_uppercase()),
        format!("SHA256:{hex}"),
        format!("md5:{}", &hex[..32]),
        format!("foo:{hex}"),
        "sha256:%2e%2e".to_owned(),
        "latest".to_owned(),
        format!("sha256:{hex}%00"),
    ] {
        let target = format!("/v2/{name}/blobs/{bad}");
        raw_error(port, "GET", &target, 400, "DIGEST_INVALID");
        raw_error(port, "HEAD", &target, 400, "DIGEST_INVALID");
        raw_error(port, "DELETE", &target, 400, "DIGEST_INVALID");
        let target = format!("/v2/{name}/blobs/uploads/?digest={bad}");
        raw_error(port, "POST", &target, 400, "DIGEST_INVALID");
    }
    // A digest where a tag goes is a digest (it has a `:`): a bad one is
    // DIGEST_INVALID; a tag of 129 characters breaks the grammar: no
    // manifest can be there (404), and none can be pushed there (400).
    let resp = v2.get(&format!("/v2/{name}/manifests/sha256:{}", &hex[..63]));
    v2.expect_error(resp, 400, "DIGEST_INVALID", "short digest as reference");
    let resp = v2.get(&format!("/v2/{name}/manifests/{}", "t".repeat(129)));
    v2.expect_error(resp, 404, "MANIFEST_UNKNOWN", "129-character tag");
    let resp = v2.put_manifest(name, &"t".repeat(129), OCI_MANIFEST, b"{}");
    v2.expect_error(resp, 400, "MANIFEST_INVALID", "PUT 129-character tag");
    raw_error(
        port,
        "GET",
        &format!("/v2/{name}/manifests/%2e%2e"),
        404,
        "MANIFEST_UNKNOWN",
    );

    // Upload ids: only ours, only in their repository.
    let location = v2.start_upload(name);
    let id = location.rsplit('/').next().unwrap().to_owned();
    let other = v2.start_upload("hostile/other");
    let other_id = other.rsplit('/').next().unwrap().to_owned();
    for bad in [
        id.to_uppercase(),
        format!("{id}%2F..%2F..%2F"),
        "%2e%2e".to_owned(),
        format!("{}0", id),
        other_id.clone(),
        "00000000-0000-0000-0000-000000000000".to_owned(),
    ] {
        let target = format!("/v2/{name}/blobs/uploads/{bad}");
        for method in ["GET", "PATCH", "PUT", "DELETE"] {
            raw_error(port, method, &target, 404, "BLOB_UPLOAD_UNKNOWN");
        }
    }
    // The other repository's upload is untouched by all that.
    assert_eq!(v2.get(&other).status(), 204);
    assert!(backend.outside().is_empty(), "{:?}", backend.outside());
}

// --- Uploads -----------------------------------------------------------------

fn upload_range(resp: &reqwest::blocking::Response) -> Option<String> {
    header(resp, "range")
}

fn upload_abuse(backend: Backend) {
    let registry = backend.start(&[]);
    let v2 = V2::new(&registry);
    let name = "hostile/uploads";
    let data = unique_bytes("abuse", 10);
    let digest = sha256(&data);

    // Malformed Content-Range: a 416 saying where the upload stands.
    let location = v2.start_upload(name);
    let resp = v2.send(
        v2.request("PATCH", &location)
            .header("content-range", "0-4")
            .body(data[..5].to_vec()),
    );
    assert_eq!(resp.status(), 202);
    for bad in [
        "5-",
        "-9",
        "9-5",
        "5-2",
        "x-y",
        "5",
        "",
        "18446744073709551615-18446744073709551615",
        "5-99999999999999999999999",
        "bytes */10",
    ] {
        let resp = v2.send(
            v2.request("PATCH", &location)
                .header("content-range", bad)
                .body(data[5..].to_vec()),
        );
        assert_eq!(resp.status(), 416, "Content-Range {bad:?}");
        assert_eq!(upload_range(&resp).as_deref(), Some("0-4"), "{bad:?}");
        error_codes_of(&resp.bytes().unwrap(), bad);
    }
    // `bytes=` as a prefix is tolerated.
    let resp = v2.send(
        v2.request("PATCH", &location)
            .header("content-range", "bytes=5-9")
            .body(data[5..].to_vec()),
    );
    assert_eq!(resp.status(), 202);
    assert_eq!(upload_range(&resp).as_deref(), Some("0-9"));
    // A range past the largest blob taken: 413 before a byte is written.
    let resp = v2.send(
        v2.request("PATCH", &location)
            .header("content-range", "10-18446744073709551615")
            .body(b"x".to_vec()),
    );
    v2.expect_error(resp, 413, "SIZE_INVALID", "huge Content-Range");

    // A Content-Range longer or shorter than the body: SIZE_INVALID, and
    // nothing of it acknowledged.
    for (range, body) in [("10-19", &b"short"[..]), ("10-11", &b"longer"[..])] {
        let resp = v2.send(
            v2.request("PATCH", &location)
                .header("content-range", range)
                .body(body.to_vec()),
        );
        v2.expect_error(resp, 400, "SIZE_INVALID", range);
        let resp = v2.get(&location);
        assert_eq!(resp.status(), 204);
        assert_eq!(upload_range(&resp).as_deref(), Some("0-9"), "{range}");
    }

    // A Content-Length shorter than what follows it: the upload takes the
    // announced bytes, the rest is no part of the request.
    let short = v2.start_upload(name);
    let mut conn = TcpStream::connect(("127.0.0.1", registry.port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let req = format!(
        "PATCH {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhelloWORLD",
        path_of(&short)
    );
    conn.write_all(req.as_bytes()).unwrap();
    let mut raw = String::new();
    let _ = conn.read_to_string(&mut raw);
    assert!(raw.starts_with("HTTP/1.1 202"), "{raw}");
    let resp = v2.get(&short);
    assert_eq!(upload_range(&resp).as_deref(), Some("0-4"));
    let hello = sha256(b"hello");
    let resp = v2.send(v2.request("PUT", &with_query(&short, &format!("digest={hello}"))));
    assert_eq!(resp.status(), 201);

    // PUT without ?digest= or with a malformed one: DIGEST_INVALID, and the
    // upload stays for a corrected PUT.
    for put in [location.clone(), with_query(&location, "digest=sha256:abc")] {
        let resp = v2.send(v2.request("PUT", &put));
        v2.expect_error(resp, 400, "DIGEST_INVALID", &put);
        assert_eq!(v2.get(&location).status(), 204);
    }
    let resp = v2.send(v2.request("PUT", &with_query(&location, &format!("digest={digest}"))));
    assert_eq!(resp.status(), 201);
    assert_eq!(
        v2.get(&format!("/v2/{name}/blobs/{digest}"))
            .bytes()
            .unwrap(),
        data
    );
    // Completed: the upload is no more.
    let resp = v2.send(
        v2.request("PATCH", &location)
            .header("content-range", "10-10")
            .body(b"x".to_vec()),
    );
    v2.expect_error(resp, 404, "BLOB_UPLOAD_UNKNOWN", "PATCH after PUT");
    let resp = v2.send(v2.request("PUT", &with_query(&location, &format!("digest={digest}"))));
    v2.expect_error(resp, 404, "BLOB_UPLOAD_UNKNOWN", "PUT after PUT");

    // Cancelled: the same.
    let location = v2.start_upload(name);
    assert_eq!(v2.delete(&location).status(), 204);
    let resp = v2.send(v2.request("PATCH", &location).body(b"x".to_vec()));
    v2.expect_error(resp, 404, "BLOB_UPLOAD_UNKNOWN", "PATCH after DELETE");
    let resp = v2.delete(&location);
    v2.expect_error(resp, 404, "BLOB_UPLOAD_UNKNOWN", "DELETE after DELETE");

    // A mount from the repository itself is a mount.
    let resp = v2.send(v2.request(
        "POST",
        &format!("/v2/{name}/blobs/uploads/?mount={digest}&from={name}"),
    ));
    assert_eq!(resp.status(), 201, "mount from itself");
    // A mount of a blob whose bytes were removed behind our back is an
    // upload, and the client pushes the bytes again.
    let gone = unique_bytes("gone", 50);
    let gone_digest = v2.push_blob("hostile/source", &gone);
    let hex = hex_of(&gone_digest);
    backend.remove_stored(&format!("{V2_ROOT}/blobs/sha256/{}/{hex}/data", &hex[..2]));
    let resp = v2.send(v2.request(
        "POST",
        &format!("/v2/{name}/blobs/uploads/?mount={gone_digest}&from=hostile/source"),
    ));
    assert_eq!(resp.status(), 202, "mount of a collected blob");
    let location = header(&resp, "location").unwrap();
    let resp = v2.send(
        v2.request(
            "PUT",
            &with_query(&location, &format!("digest={gone_digest}")),
        )
        .body(gone.clone()),
    );
    assert_eq!(resp.status(), 201);
    assert_eq!(
        v2.get(&format!("/v2/{name}/blobs/{gone_digest}"))
            .bytes()
            .unwrap(),
        gone
    );
    // Mount with a bad `from` or `mount`: a plain upload.
    for q in [
        format!("mount={digest}&from=..%2F.."),
        format!("mount=sha256:zz&from={name}"),
        format!("mount={digest}"),
    ] {
        let resp = v2.send(v2.request("POST", &format!("/v2/{name}/blobs/uploads/?{q}")));
        assert_eq!(resp.status(), 202, "{q}");
    }
    assert!(backend.outside().is_empty(), "{:?}", backend.outside());
}

fn empty_blob(backend: Backend) {
    let registry = backend.start(&[]);
    let v2 = V2::new(&registry);
    let empty = sha256(b"");
    assert!(empty.starts_with("sha256:e3b0c442"));
    // Monolithic, then POST + PUT in another repository, then a chunked
    // upload whose only PATCH is empty.
    let resp = v2.send(
        v2.request(
            "POST",
            &format!("/v2/empty/a/blobs/uploads/?digest={empty}"),
        )
        .header("content-length", "0"),
    );
    assert_eq!(resp.status(), 201);
    v2.push_blob("empty/b", b"");
    let location = v2.start_upload("empty/c");
    let resp = v2.send(v2.request("PATCH", &location).body(Vec::new()));
    assert_eq!(resp.status(), 202);
    assert_eq!(upload_range(&resp).as_deref(), Some("0-0"));
    let location = header(&resp, "location").unwrap();
    let resp = v2.send(v2.request("PUT", &with_query(&location, &format!("digest={empty}"))));
    assert_eq!(resp.status(), 201);
    for repo in ["empty/a", "empty/b", "empty/c"] {
        let path = format!("/v2/{repo}/blobs/{empty}");
        let resp = v2.get(&path);
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "content-length").as_deref(), Some("0"));
        assert!(resp.bytes().unwrap().is_empty());
        let resp = v2.head(&path);
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "content-length").as_deref(), Some("0"));
        // No byte to give: any range is unsatisfiable.
        for range in ["bytes=0-0", "bytes=0-", "bytes=-1"] {
            let resp = v2.send(v2.request("GET", &path).header("range", range));
            assert_eq!(resp.status(), 416, "{range}");
            assert_eq!(header(&resp, "content-range").as_deref(), Some("bytes */0"));
        }
    }
}

fn concurrent_monolithic_pushes(backend: Backend) {
    let registry = backend.start(&[]);
    let data = unique_bytes("race", 200_000);
    let digest = sha256(&data);
    for round in 0..3 {
        std::thread::scope(|scope| {
            for i in 0..4 {
                let (registry, data, digest) = (&registry, &data, &digest);
                scope.spawn(move || {
                    let v2 = V2::new(registry);
                    // Half of them into one repository, half into their own.
                    let name = format!("race/r{round}/t{}", i % 2 * i);
                    let resp = v2.send(
                        v2.request(
                            "POST",
                            &format!("/v2/{name}/blobs/uploads/?digest={digest}"),
                        )
                        .body(data.clone()),
                    );
                    assert_eq!(resp.status(), 201, "round {round} thread {i}");
                    let resp = v2.get(&format!("/v2/{name}/blobs/{digest}"));
                    assert_eq!(resp.status(), 200);
                    assert!(resp.bytes().unwrap() == *data);
                });
            }
        });
    }
}

/// Sends a PATCH announcing `announced` bytes, writes `sent` of them and
/// hangs up.
fn patch_and_hang_up(port: u16, location: &str, announced: usize, sent: &[u8]) {
    patch_like(port, "PATCH", &path_of(location), announced, sent)
}

fn patch_like(port: u16, method: &str, target: &str, announced: usize, sent: &[u8]) {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let head = format!(
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {announced}\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).unwrap();
    conn.write_all(sent).unwrap();
    conn.flush().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    drop(conn);
    // Let the server notice.
    std::thread::sleep(Duration::from_millis(300));
}

fn disconnect_mid_patch(backend: Backend) {
    let registry = backend.start(&[]);
    let v2 = V2::new(&registry);
    let name = "hostile/disconnect";
    let data = unique_bytes("disconnect", 300_000);
    let digest = sha256(&data);
    let location = v2.start_upload(name);
    let resp = v2.send(
        v2.request("PATCH", &location)
            .header("content-range", "0-99999")
            .body(data[..100_000].to_vec()),
    );
    assert_eq!(resp.status(), 202);
    let location = header(&resp, "location").unwrap();
    // The client hangs up 50 000 bytes into a 200 000-byte chunk.
    patch_and_hang_up(registry.port, &location, 200_000, &data[100_000..150_000]);
    let resp = v2.get(&location);
    assert_eq!(resp.status(), 204);
    assert_eq!(upload_range(&resp).as_deref(), Some("0-99999"));
    // Nothing of it is a blob: not the partial bytes, not the whole.
    for partial in [sha256(&data[..150_000]), digest.clone()] {
        let resp = v2.head(&format!("/v2/{name}/blobs/{partial}"));
        assert_eq!(resp.status(), 404);
    }
    // A PUT that claims to be done now is refused: the bytes are not all
    // there.
    let resp = v2.send(v2.request("PUT", &with_query(&location, &format!("digest={digest}"))));
    v2.expect_error(resp, 400, "DIGEST_INVALID", "PUT after a broken PATCH");

    // Again with a resumed upload: it goes on from the acknowledged offset.
    let location = v2.start_upload(name);
    let resp = v2.send(
        v2.request("PATCH", &location)
            .header("content-range", "0-99999")
            .body(data[..100_000].to_vec()),
    );
    let location = header(&resp, "location").unwrap();
    patch_and_hang_up(registry.port, &location, 200_000, &data[100_000..150_000]);
    let resp = v2.send(
        v2.request("PATCH", &location)
            .header("content-range", "100000-199999")
            .body(data[100_000..200_000].to_vec()),
    );
    assert_eq!(resp.status(), 202);
    assert_eq!(upload_range(&resp).as_deref(), Some("0-199999"));
    let resp = v2.send(
        v2.request("PUT", &with_query(&location, &format!("digest={digest}")))
            .header("content-range", "200000-299999")
            .body(data[200_000..].to_vec()),
    );
    assert_eq!(resp.status(), 201);
    let resp = v2.get(&format!("/v2/{name}/blobs/{digest}"));
    assert!(resp.bytes().unwrap() == data);

    // A monolithic push that breaks off leaves neither a blob nor an
    // upload behind.
    let data = unique_bytes("broken monolithic", 300_000);
    let digest = sha256(&data);
    let name = "hostile/broken";
    let target = format!("/v2/{name}/blobs/uploads/?digest={digest}");
    patch_like(registry.port, "POST", &target, 300_000, &data[..150_000]);
    let resp = v2.head(&format!("/v2/{name}/blobs/{digest}"));
    assert_eq!(resp.status(), 404);
    let left: Vec<String> = backend
        .stored_keys()
        .into_iter()
        .filter(|k| k.contains(&format!("repositories/{name}/_uploads/")))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

// --- Manifests ---------------------------------------------------------------

fn manifest_abuse(backend: Backend) {
    let registry = backend.start(&[]);
    let v2 = V2::new(&registry);
    let name = "hostile/manifests";
    let image = ImageBlobs::new("abuse", "amd64");
    image.push(&v2, name);
    let good = image.oci_manifest();
    let config = descriptor(OCI_CONFIG, &image.config);
    let layer = descriptor(OCI_LAYER, &image.layer);
    let with = |config: Value, layers: Value| {
        serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": config, "layers": layers,
        }))
        .unwrap()
    };
    let mut bad_digest = config.clone();
    bad_digest["digest"] = json!("sha256:abc");
    let mut negative = layer.clone();
    negative["size"] = json!(-1);
    let mut huge = layer.clone();
    huge["size"] = json!(1e30);
    let mut text_size = layer.clone();
    text_size["size"] = json!("12");
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    for (what, body) in [
        ("invalid JSON", b"{\"schemaVersion\": 2,".to_vec()),
        ("not UTF-8", b"\xff\xfe{}".to_vec()),
        ("an array", b"[]".to_vec()),
        ("a string", b"\"manifest\"".to_vec()),
        ("null", b"null".to_vec()),
        ("empty", Vec::new()),
        ("deeply nested", deep.into_bytes()),
        ("bad digest", with(bad_digest, json!([layer]))),
        ("negative size", with(config.clone(), json!([negative]))),
        ("huge size", with(config.clone(), json!([huge]))),
        ("size as text", with(config.clone(), json!([text_size]))),
        ("layers not a list", with(config.clone(), json!("x"))),
    ] {
        let resp = v2.put_manifest(name, "bad", OCI_MANIFEST, &body);
        v2.expect_error(resp, 400, "MANIFEST_INVALID", what);
    }
    // An unknown Content-Type that contradicts the body.
    let resp = v2.put_manifest(name, "bad", "text/plain", &good);
    v2.expect_error(resp, 400, "MANIFEST_INVALID", "text/plain");
    // No Content-Type: the body's own mediaType says what it is.
    let resp = v2.send(
        v2.request("PUT", &format!("/v2/{name}/manifests/untyped"))
            .body(good.clone()),
    );
    assert_eq!(resp.status(), 201, "no Content-Type");
    let resp = v2.get_manifest(&format!("/v2/{name}/manifests/untyped"));
    assert_eq!(header(&resp, "content-type").as_deref(), Some(OCI_MANIFEST));
    assert!(v2.get(&format!("/v2/{name}/tags/list")).status() == 200);

    // 4 MiB + 1 without a Content-Length (chunked): 413, read no further.
    let big = vec![b' '; 4 * 1024 * 1024 + 1];
    let resp = v2.send(
        v2.request("PUT", &format!("/v2/{name}/manifests/big"))
            .header("content-type", OCI_MANIFEST)
            .body(reqwest::blocking::Body::new(std::io::Cursor::new(big))),
    );
    v2.expect_error(resp, 413, "SIZE_INVALID", "chunked 4 MiB + 1");

    // Exactly 4 MiB is taken, as the spec asks (JSON may end in spaces).
    let mut exact = good.clone();
    exact.resize(4 * 1024 * 1024, b' ');
    let resp = v2.send(
        v2.request("PUT", &format!("/v2/{name}/manifests/exact"))
            .header("content-type", OCI_MANIFEST)
            .body(reqwest::blocking::Body::new(std::io::Cursor::new(
                exact.clone(),
            ))),
    );
    assert_eq!(resp.status(), 201, "chunked, exactly 4 MiB");
    let resp = v2.get_manifest(&format!("/v2/{name}/manifests/exact"));
    assert!(resp.bytes().unwrap() == exact);

    // A blob of another repository is unknown here, though its bytes are
    // in the shared store.
    let elsewhere = unique_bytes("elsewhere", 64);
    v2.push_blob("hostile/elsewhere", &elsewhere);
    let body = with(config.clone(), json!([descriptor(OCI_LAYER, &elsewhere)]));
    let resp = v2.put_manifest(name, "foreign", OCI_MANIFEST, &body);
    v2.expect_error(resp, 400, "MANIFEST_BLOB_UNKNOWN", "blob of another repo");
    // So is a child manifest of another repository.
    let other = ImageBlobs::new("other", "arm64");
    other.push(&v2, "hostile/elsewhere");
    let child = other.oci_manifest();
    v2.push_manifest("hostile/elsewhere", "x", OCI_MANIFEST, &child);
    let index = index_of(OCI_INDEX, &[(OCI_MANIFEST, &child, "arm64")]);
    let resp = v2.put_manifest(name, "idx", OCI_INDEX, &index);
    v2.expect_error(resp, 400, "MANIFEST_BLOB_UNKNOWN", "child of another repo");
    // A child that is a blob (not a manifest) of this repository.
    let index = index_of(OCI_INDEX, &[(OCI_MANIFEST, &image.layer, "amd64")]);
    let resp = v2.put_manifest(name, "idx", OCI_INDEX, &index);
    v2.expect_error(resp, 400, "MANIFEST_BLOB_UNKNOWN", "child that is a blob");

    // By digest: the body must have it.
    let resp = v2.put_manifest(name, &sha256(b"other bytes"), OCI_MANIFEST, &good);
    v2.expect_error(resp, 400, "DIGEST_INVALID", "PUT by a wrong digest");
    let resp = v2.put_manifest(name, &sha512(&good), OCI_MANIFEST, &good);
    assert_eq!(resp.status(), 201, "PUT by its sha512");

    // A tag whose manifest was deleted is gone with it.
    let digest = v2.push_manifest(name, "doomed", OCI_MANIFEST, &good);
    assert_eq!(
        v2.delete(&format!("/v2/{name}/manifests/{digest}"))
            .status(),
        202
    );
    for tag in ["doomed", "untyped"] {
        let resp = v2.get_manifest(&format!("/v2/{name}/manifests/{tag}"));
        v2.expect_error(resp, 404, "MANIFEST_UNKNOWN", tag);
    }
    // A tag left pointing at a manifest removed behind our back.
    let digest = v2.push_manifest(name, "dangling", DOCKER_MANIFEST, &image.docker_manifest());
    let hex = hex_of(&digest);
    backend.remove_stored(&format!(
        "{V2_ROOT}/repositories/{name}/_manifests/revisions/sha256/{hex}/link"
    ));
    let resp = v2.get_manifest(&format!("/v2/{name}/manifests/dangling"));
    v2.expect_error(resp, 404, "MANIFEST_UNKNOWN", "dangling tag");
    let resp = v2.head_manifest(&format!("/v2/{name}/manifests/dangling"));
    assert_eq!(resp.status(), 404);
}

// --- Tags and catalog --------------------------------------------------------

fn paging_abuse(backend: Backend) {
    let registry = backend.start(&[]);
    let v2 = V2::new(&registry);
    let name = "hostile/paging";
    let image = ImageBlobs::new("paging", "amd64");
    image.push(&v2, name);
    for tag in ["a", "b", "c"] {
        v2.push_manifest(name, tag, OCI_MANIFEST, &image.oci_manifest());
    }
    for base in [format!("/v2/{name}/tags/list"), "/v2/_catalog".to_owned()] {
        for bad in ["n=-1", "n=abc", "n=1.5", "n=99999999999999999999999", "n="] {
            let resp = v2.get(&format!("{base}?{bad}"));
            assert_eq!(resp.status(), 400, "{base}?{bad}");
            error_codes_of(&resp.bytes().unwrap(), bad);
        }
        let key = if base.contains("tags") {
            "tags"
        } else {
            "repositories"
        };
        for (query, expect_some) in [
            ("n=100000", true),
            ("last=zzzz", false),
            ("last=~~~", false),
            ("last=%2e%2e%2F..", true),
            ("n=2&last=%00", true),
        ] {
            let resp = v2.get(&format!("{base}?{query}"));
            assert_eq!(resp.status(), 200, "{base}?{query}");
            let doc: Value = resp.json().unwrap();
            let list = doc[key]
                .as_array()
                .unwrap_or_else(|| panic!("{base}?{query}: {doc}"));
            assert_eq!(!list.is_empty(), expect_some, "{base}?{query}: {doc}");
        }
    }
}

// --- Blob ranges -------------------------------------------------------------

fn range_abuse(backend: Backend) {
    let registry = backend.start(&[]);
    let v2 = V2::new(&registry);
    let name = "hostile/ranges";
    let data = unique_bytes("ranges", 10);
    let digest = v2.push_blob(name, &data);
    let path = format!("/v2/{name}/blobs/{digest}");
    let resp = v2.send(v2.request("GET", &path).header("range", "bytes=-0"));
    assert_eq!(resp.status(), 416, "bytes=-0");
    assert_eq!(
        header(&resp, "content-range").as_deref(),
        Some("bytes */10")
    );
    error_codes_of(&resp.bytes().unwrap(), "bytes=-0");
    // Ranges we may ignore: the whole blob.
    for range in [
        "bytes=0-1,3-4",
        "bytes=5-2",
        "bytes=x-y",
        "bytes=-",
        "bytes=99999999999999999999-",
        "lines=1-2",
    ] {
        let resp = v2.send(v2.request("GET", &path).header("range", range));
        assert_eq!(resp.status(), 200, "{range}");
        assert_eq!(resp.bytes().unwrap(), data, "{range}");
    }
    let resp = v2.send(
        v2.request("GET", &path)
            .header("range", "bytes=18446744073709551615-"),
    );
    assert_eq!(resp.status(), 416);
    let resp = v2.send(v2.request("HEAD", &path).header("range", "bytes=2-4"));
    assert_eq!(resp.status(), 206);
    assert_eq!(header(&resp, "content-length").as_deref(), Some("3"));
}

// --- HTTP --------------------------------------------------------------------

fn methods_and_heads(backend: Backend) {
    let registry = backend.start(&[]);
    let v2 = V2::new(&registry);
    let name = "hostile/methods";
    let image = ImageBlobs::new("methods", "amd64");
    image.push(&v2, name);
    let body = image.oci_manifest();
    let digest = v2.push_manifest(name, "t", OCI_MANIFEST, &body);
    let blob = sha256(&image.layer);
    let upload = path_of(&v2.start_upload(name));
    for (path, methods) in [
        (
            "/v2/".to_owned(),
            &["POST", "PUT", "DELETE", "PATCH", "FOO"][..],
        ),
        ("/v2/_catalog".to_owned(), &["POST", "PUT", "DELETE", "FOO"]),
        (
            format!("/v2/{name}/tags/list"),
            &["POST", "PUT", "DELETE", "FOO"],
        ),
        (format!("/v2/{name}/manifests/t"), &["POST", "PATCH", "FOO"]),
        (
            format!("/v2/{name}/blobs/{blob}"),
            &["POST", "PUT", "PATCH", "FOO"],
        ),
        (
            format!("/v2/{name}/blobs/uploads/"),
            &["GET", "PUT", "PATCH", "DELETE", "FOO"],
        ),
        (upload.clone(), &["POST", "FOO"][..]),
        (
            format!("/v2/{name}/referrers/{digest}"),
            &["POST", "PUT", "DELETE", "FOO"],
        ),
    ] {
        for method in methods {
            let resp = v2.send(v2.request(method, &path));
            // RFC 9110: a 405 lists the methods the resource has.
            let allow = header(&resp, "allow").unwrap_or_default();
            assert!(
                allow.contains("GET") || allow == "POST",
                "{method} {path}: Allow {allow:?}"
            );
            assert!(!allow.contains(method), "{method} {path}: Allow {allow:?}");
            v2.expect_error(resp, 405, "UNSUPPORTED", &format!("{method} {path}"));
        }
    }
    // HEAD: the GET's headers and Content-Length, no body.
    for path in [
        format!("/v2/{name}/manifests/t"),
        format!("/v2/{name}/manifests/{digest}"),
        format!("/v2/{name}/blobs/{blob}"),
        format!("/v2/{name}/manifests/nope"),
        format!("/v2/{name}/blobs/{}", sha256(b"nope")),
        // HTTP wants HEAD wherever GET is.
        "/v2/".to_owned(),
        "/v2/_catalog".to_owned(),
        format!("/v2/{name}/tags/list"),
        format!("/v2/{name}/referrers/{digest}"),
    ] {
        let get = v2.get_manifest(&path);
        let status = get.status();
        let length = get.bytes().unwrap().len().to_string();
        let (code, text) = raw_request(registry.port, "HEAD", &path, b"");
        assert_eq!(code, status.as_u16(), "HEAD {path}");
        let (head, rest) = text.split_once("\r\n\r\n").unwrap();
        assert!(rest.is_empty(), "HEAD {path} has a body: {rest:?}");
        let head = head.to_ascii_lowercase();
        assert!(
            head.contains(&format!("content-length: {length}\r\n"))
                || head.ends_with(&format!("content-length: {length}")),
            "HEAD {path}: Content-Length {length}: {head}"
        );
    }
    // Keep the connection honest: HEAD answers leave nothing behind.
    let mut conn = TcpStream::connect(("127.0.0.1", registry.port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let path = format!("/v2/{name}/manifests/t");
    let req = format!(
        "HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\nGET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    conn.write_all(req.as_bytes()).unwrap();
    let mut raw = String::new();
    let _ = conn.read_to_string(&mut raw);
    assert_eq!(raw.matches("HTTP/1.1 200").count(), 2, "{raw}");
}

for_each_backend!(
    bad_identifiers,
    upload_abuse,
    empty_blob,
    concurrent_monolithic_pushes,
    disconnect_mid_patch,
    manifest_abuse,
    paging_abuse,
    range_abuse,
    methods_and_heads,
    repeated_references,
    manifest_media_types,
    disconnect_mid_large_patch,
    deletes_disabled_allow,
    referrers_in_pages,
    upload_sessions_are_bounded,
);

/// Upload sessions a client opens and leaves: at most
/// `max_upload_sessions_per_repository` in one repository and `max_upload_sessions` in
/// all; beyond, `429 TOOMANYREQUESTS` and nothing written. A completed or
/// cancelled upload frees its slot at once, an expired one
/// (`gc_upload_max_age`) once its age is passed, and it is removed then.
fn upload_sessions_are_bounded(backend: Backend) {
    let registry = backend.start(&[
        ("MAX_UPLOAD_SESSIONS_PER_REPOSITORY", "3"),
        ("MAX_UPLOAD_SESSIONS", "5"),
        ("GC_UPLOAD_MAX_AGE", "10"),
    ]);
    let v2 = V2::new(&registry);
    let post = |name: &str| v2.send(v2.request("POST", &format!("/v2/{name}/blobs/uploads/")));
    let uploads_of = |repo: &str| {
        let prefix = format!("docker/registry/v2/repositories/{repo}/_uploads/");
        backend
            .stored_keys()
            .iter()
            .filter_map(|k| {
                k.strip_prefix(&prefix)?
                    .split('/')
                    .next()
                    .map(str::to_owned)
            })
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    };
    let a = "sessions/a";
    let b = "sessions/b";
    let mut open_a: Vec<String> = (0..3).map(|_| v2.start_upload(a)).collect();
    let refused = post(a);
    assert!(refused
        .headers()
        .get("content-type")
        .is_some_and(|v| v == "application/json"));
    v2.expect_error(
        refused,
        429,
        "TOOMANYREQUESTS",
        "a 4th upload in one repository",
    );
    assert_eq!(uploads_of(a), 3, "a refused POST writes nothing");
    // A monolithic push opens no session: it goes through at the bound.
    let data = unique_bytes("sessions-mono", 100);
    let resp = v2.send(
        v2.request(
            "POST",
            &format!("/v2/{a}/blobs/uploads/?digest={}", sha256(&data)),
        )
        .header("content-type", "application/octet-stream")
        .body(data),
    );
    assert_eq!(resp.status(), 201, "monolithic push at the bound");

    // A completed upload frees its slot.
    let data = unique_bytes("sessions-complete", 1000);
    let location = open_a.pop().unwrap();
    let resp = v2.send(
        v2.request(
            "PUT",
            &with_query(&location, &format!("digest={}", sha256(&data))),
        )
        .header("content-type", "application/octet-stream")
        .body(data),
    );
    assert_eq!(resp.status(), 201);
    open_a.push(v2.start_upload(a));
    v2.expect_error(post(a), 429, "TOOMANYREQUESTS", "full again");

    // The total: 3 in a, 2 in b, then nothing anywhere.
    v2.start_upload(b);
    v2.start_upload(b);
    let resp = post(b);
    let body = resp.text().unwrap();
    assert!(
        body.contains("TOOMANYREQUESTS") && body.contains("max_upload_sessions"),
        "{body}"
    );
    v2.expect_error(
        post("sessions/c"),
        429,
        "TOOMANYREQUESTS",
        "total, elsewhere",
    );
    // A cancelled upload frees its slot, for any repository.
    let location = open_a.pop().unwrap();
    assert_eq!(v2.delete(&path_of(&location)).status(), 204);
    v2.start_upload("sessions/c");
    v2.expect_error(post(b), 429, "TOOMANYREQUESTS", "total again");

    // Past gc_upload_max_age, sessions neither count nor stay.
    std::thread::sleep(Duration::from_millis(10_500));
    for _ in 0..3 {
        v2.start_upload(a);
    }
    assert_eq!(uploads_of(a), 3, "the expired uploads of {a} were removed");
}

/// A manifest that names the same layer over and over (a 4 MiB manifest
/// holds some 25 000 descriptors): each blob is looked up once, so the push
/// costs what its distinct blobs cost, not a storage request per line.
fn repeated_references(backend: Backend) {
    let registry = backend.start(&[]);
    let v2 = V2::new(&registry);
    let name = "hostile/repeated";
    let image = ImageBlobs::new("repeated", "amd64");
    image.push(&v2, name);
    let layer = descriptor(OCI_LAYER, &image.layer);
    let layers: Vec<Value> = (0..25_000).map(|_| layer.clone()).collect();
    let body = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, &image.config), "layers": layers,
    }))
    .unwrap();
    assert!(body.len() < 4 * 1024 * 1024, "{}", body.len());
    let started = std::time::Instant::now();
    v2.push_manifest(name, "many", OCI_MANIFEST, &body);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "the push took {took:?}");
}

/// A manifest's own `mediaType` becomes the `Content-Type` it is served
/// with: one that is no manifest type (HTML, a header break) is refused
/// at the push, so no pull can be turned into a page or a broken answer.
fn manifest_media_types(backend: Backend) {
    let registry = backend.start(&[]);
    let v2 = V2::new(&registry);
    let name = "hostile/types";
    let image = ImageBlobs::new("types", "amd64");
    image.push(&v2, name);
    for media_type in [
        "text/html",
        "application/xhtml+xml",
        "image/svg+xml",
        "application/vnd.x\r\nset-cookie: a=b",
        "application/vnd.x+json\u{0}",
        "application/vnd.x+json; charset=\"\u{7f}\"",
        "application/",
    ] {
        let body = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": descriptor(OCI_CONFIG, &image.config),
            "layers": [descriptor(OCI_LAYER, &image.layer)],
            "annotations": {"x": "<script>alert(1)</script>"},
        }))
        .unwrap();
        // No Content-Type: the body's mediaType is all there is to go by.
        let resp = v2.send(
            v2.request("PUT", &format!("/v2/{name}/manifests/typed"))
                .body(body),
        );
        let status = resp.status().as_u16();
        if status == 201 {
            let resp = v2.get_manifest(&format!("/v2/{name}/manifests/typed"));
            panic!(
                "mediaType {media_type:?} accepted; served as {} with {:?}",
                resp.status(),
                header(&resp, "content-type")
            );
        }
        v2.expect_error(resp, 400, "MANIFEST_INVALID", media_type);
    }
    // An artifact manifest type of its own, with the OCI shape, still goes.
    let body = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.example.thing.v1+json",
        "config": descriptor(OCI_CONFIG, &image.config),
        "layers": [],
    }))
    .unwrap();
    v2.push_manifest(
        name,
        "thing",
        "application/vnd.example.thing.v1+json",
        &body,
    );
    let resp = v2.get_manifest(&format!("/v2/{name}/manifests/thing"));
    assert_eq!(
        header(&resp, "content-type").as_deref(),
        Some("application/vnd.example.thing.v1+json")
    );
}

/// A client that hangs up in the middle of a chunk larger than an S3
/// part: the upload stands where the registry says (`Range`), the client
/// resumes from there and the blob is whole.
fn disconnect_mid_large_patch(backend: Backend) {
    const MIB: usize = 1024 * 1024;
    let registry = backend.start(&[]);
    let v2 = V2::new(&registry);
    let name = "hostile/large";
    let data = unique_bytes("large disconnect", 20 * MIB);
    let digest = sha256(&data);
    let location = v2.start_upload(name);
    let resp = v2.send(
        v2.request("PATCH", &location)
            .header("content-range", format!("0-{}", 6 * MIB - 1))
            .body(data[..6 * MIB].to_vec()),
    );
    assert_eq!(resp.status(), 202);
    let location = header(&resp, "location").unwrap();
    patch_and_hang_up(
        registry.port,
        &location,
        12 * MIB,
        &data[6 * MIB..6 * MIB + 8 * MIB],
    );
    let resp = v2.get(&location);
    assert_eq!(resp.status(), 204, "status after the hang-up");
    let range = upload_range(&resp).unwrap();
    let next: usize = range.strip_prefix("0-").unwrap().parse::<usize>().unwrap() + 1;
    assert!(
        next <= 6 * MIB,
        "acknowledged {range}, the client sent 6 MiB"
    );
    let resp = v2.send(
        v2.request("PATCH", &location)
            .header("content-range", format!("{next}-{}", 14 * MIB - 1))
            .body(data[next..14 * MIB].to_vec()),
    );
    assert_eq!(resp.status(), 202);
    let resp = v2.send(
        v2.request("PUT", &with_query(&location, &format!("digest={digest}")))
            .body(data[14 * MIB..].to_vec()),
    );
    assert_eq!(resp.status(), 201);
    let resp = v2.get(&format!("/v2/{name}/blobs/{digest}"));
    assert!(resp.bytes().unwrap() == data);
}

/// Deletes switched off: the 405 says which methods remain (`Allow`).
fn deletes_disabled_allow(backend: Backend) {
    let registry = backend.start(&[("DELETE_ENABLED", "false")]);
    let v2 = V2::new(&registry);
    let name = "hostile/nodelete";
    let image = ImageBlobs::new("nodelete", "amd64");
    image.push(&v2, name);
    v2.push_manifest(name, "t", OCI_MANIFEST, &image.oci_manifest());
    for (path, allow) in [
        (
            format!("/v2/{name}/blobs/{}", sha256(&image.layer)),
            "GET, HEAD",
        ),
        (format!("/v2/{name}/manifests/t"), "GET, HEAD, PUT"),
    ] {
        let resp = v2.delete(&path);
        assert_eq!(header(&resp, "allow").as_deref(), Some(allow), "{path}");
        v2.expect_error(resp, 405, "UNSUPPORTED", &path);
    }
}

/// Referrers heavy with annotations (each manifest up to 4 MiB): the
/// answer comes in pages of bounded size, linked by `Link`, and following
/// them yields every referrer once.
fn referrers_in_pages(backend: Backend) {
    let registry = backend.start(&[]);
    let v2 = V2::new(&registry);
    let name = "hostile/referrers";
    let image = ImageBlobs::new("referrers", "amd64");
    image.push(&v2, name);
    let subject_body = image.oci_manifest();
    let subject = v2.push_manifest(name, "subject", OCI_MANIFEST, &subject_body);
    let empty = v2.push_blob(name, b"{}");
    let mut pushed = Vec::new();
    for i in 0..4 {
        let body = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.example.heavy+json",
            "config": {"mediaType": OCI_EMPTY, "digest": empty, "size": 2},
            "layers": [],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": subject_body.len()},
            "annotations": {"n": i.to_string(), "pad": "x".repeat(3 * 1024 * 1024)},
        }))
        .unwrap();
        pushed.push(v2.push_manifest(name, &sha256(&body), OCI_MANIFEST, &body));
    }
    pushed.sort();
    for filter in ["", "?artifactType=application%2Fvnd.example.heavy%2Bjson"] {
        let mut next = Some(format!("/v2/{name}/referrers/{subject}{filter}"));
        let mut seen = Vec::new();
        let mut pages = 0;
        while let Some(path) = next.take() {
            pages += 1;
            assert!(pages <= 10, "too many pages");
            let resp = v2.get(&path);
            assert_eq!(resp.status(), 200, "{path}");
            next = header(&resp, "link").map(|l| {
                l.strip_prefix('<')
                    .and_then(|l| l.split_once('>'))
                    .map(|(u, _)| u.to_owned())
                    .unwrap_or_else(|| panic!("Link {l}"))
            });
            let body = resp.bytes().unwrap();
            assert!(
                body.len() <= 8 * 1024 * 1024,
                "{path}: a page of {} bytes",
                body.len()
            );
            let doc: Value = serde_json::from_slice(&body).unwrap();
            for m in doc["manifests"].as_array().unwrap() {
                seen.push(m["digest"].as_str().unwrap().to_owned());
            }
        }
        assert_eq!(seen, pushed, "filter {filter:?}");
        assert!(pages > 1, "one page of 12 MiB");
    }
}

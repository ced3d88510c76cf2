//! The v2 / OCI distribution 1.1 API through the real binary on loopback.
//! Every test runs on each storage (local disk, S3 on a real S3-compatible
//! server) from one body of code: the routes must answer identically.

#[macro_use]
mod common;
mod v2_support;

use serde_json::{json, Value};

use v2_support::*;

// --- Base, errors -----------------------------------------------------------

fn base_and_error_shape(backend: Backend) {
    let registry = backend.start(&[]);
    let v2 = V2::new(&registry);
    // `send` checks Docker-Distribution-Api-Version on every answer,
    // errors included; these are the answers of every kind.
    let resp = v2.get("/v2/");
    assert_eq!(resp.status(), 200);
    let resp = v2.get("/v2/nothing/here/manifests/latest");
    assert_eq!(resp.status(), 404);
    assert!(
        header(&resp, "content-type").is_some_and(|t| t.starts_with("application/json")),
        "errors are JSON"
    );
    let body: Value = resp.json().unwrap();
    let errors = body["errors"].as_array().expect("errors array");
    assert_eq!(errors.len(), 1, "{body}");
    let e = &errors[0];
    assert!(
        ["MANIFEST_UNKNOWN", "NAME_UNKNOWN"].contains(&e["code"].as_str().unwrap()),
        "{body}"
    );
    assert!(!e["message"].as_str().unwrap().is_empty(), "{body}");
    // Only these three keys belong in an entry.
    for key in e.as_object().unwrap().keys() {
        assert!(
            ["code", "message", "detail"].contains(&key.as_str()),
            "{body}"
        );
    }
    let resp = v2.head("/v2/nothing/here/manifests/latest");
    assert_eq!(resp.status(), 404);
}

// --- Blobs ------------------------------------------------------------------

fn monolithic_post_and_pull(backend: Backend) {
    let registry = backend.start(&[]);
    let v2 = V2::new(&registry);
    let name = "mono/blob";
    let data = unique_bytes("monolithic", 1000);
    let digest = sha256(&data);
    let resp = v2.send(
        v2.request(
            "POST",
            &format!("/v2/{name}/blobs/uploads/?digest={digest}"),
        )
        .header("content-type", "application/octet-stream")
        .body(data.clone()),
    );
    assert_eq!(resp.status(), 201, "single POST upload");
    assert_eq!(header(&resp, "docker-content-digest"), Some(digest.clone()));
    let location = header(&resp, "location").expect("Location");
    assert!(path_of(&location).ends_with(&format!("/v2/{name}/blobs/{digest}")));

    // The Location is a pullable URL.
    let resp = v2.get(&location);
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().unwrap(), data);

    let resp = v2.get(&format!("/v2/{name}/blobs/{digest}"));
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "docker-content-digest"), Some(digest.clone()));
    assert_eq!(header(&resp, "content-length"), Some("1000".into()));
    assert_eq!(resp.bytes().unwrap(), data);

    let resp = v2.head(&format!("/v2/{name}/blobs/{digest}"));
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "docker-content-digest"), Some(digest.clone()));
    assert_eq!(header(&resp, "content-length"), Some("1000".into()));
    assert!(resp.bytes().unwrap().is_empty());

    // Unknown blobs, in this repository and in one that does not exist.
    let missing = sha256(b"never pushed");
    for path in [
        format!("/v2/{name}/blobs/{missing}"),
        format!("/v2/no/such/repo/blobs/{missing}"),
    ] {
        let resp = v2.get(&path);
        assert!(resp.status() == 404, "{path}: {}", resp.status());
        let codes = error_codes_of(&resp.bytes().unwrap(), &path);
        assert!(
            codes
                .iter()
                .any(|c| c == "BLOB_UNKNOWN" || c == "NAME_UNKNOWN"),
            "{path}: {codes:?}"
        );
        assert_eq!(v2.head(&path).status(), 404, "HEAD {path}");
    }
    let resp = v2.get(&format!("/v2/{name}/blobs/{missing}"));
    v2.expect_error(
        resp,
        404,
        "BLOB_UNKNOWN",
        "unknown blob of a known repository",
    );
}

fn blob_ranges(backend: Backend) {
    let registry = backend.start(&[]);
    let v2 = V2::new(&registry);
    let name = "ranges";
    let data = unique_bytes("ranges", 100);
    let digest = v2.push_blob(name, &data);
    let path = format!("/v2/{name}/blobs/{digest}");
    for (range, from, to) in [
        ("bytes=0-0", 0, 0),
        ("bytes=10-19", 10, 19),
        ("bytes=90-", 90, 99),
        ("bytes=-5", 95, 99),
        ("bytes=50-1000", 50, 99),
    ] {
        let resp = v2.send(v2.request("GET", &path).header("range", range));
        assert_eq!(resp.status(), 206, "{range}");
        assert_eq!(
            header(&resp, "content-range"),
            Some(format!("bytes {from}-{to}/100")),
            "{range}"
        );
        assert_eq!(
            header(&resp, "content-length"),
            Some((to - from + 1).to_string()),
            "{range}"
        );
        assert_eq!(resp.bytes().unwrap(), data[from..=to], "{range}");
    }
    for range in ["bytes=100-", "bytes=200-300"] {
        let resp = v2.send(v2.request("GET", &path).header("range", range));
        assert_eq!(resp.status(), 416, "{range}");
        assert_eq!(
            header(&resp, "content-range"),
            Some("bytes */100".into()),
            "{range}"
        );
    }
    // A header this server does not understand is ignored: the whole blob.
    let resp = v2.send(v2.request("GET", &path).header("range", "pages=1-2"));
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().unwrap(), data);
}

fn blob_delete(backend: Backend) {
    let registry = backend.start(&[]);
    let v2 = V2::new(&registry);
    let name = "del/blob";
    let data = unique_bytes("delete me", 300);
    let digest = v2.push_blob(name, &data);
    let path = format!("/v2/{name}/blobs/{digest}");
    assert_eq!(v2.get(&path).status(), 200);
    assert_eq!(v2.delete(&path).status(), 202);
    v2.expect_error(v2.get(&path), 404, "BLOB_UNKNOWN", "deleted blob");
    assert_eq!(v2.head(&path).status(), 404);
    v2.expect_error(v2.delete(&path), 404, "BLOB_UNKNOWN", "deleted twice");
}

fn post_then_put(backend: Backend) {
    let registry = backend.start(&[]);
    let v2 = V2::new(&registry);
    let name = "post/put";
    let data = unique_bytes("post then put", 2000);
    let digest = sha256(&data);
    let resp = v2.send(v2.request("POST", &format!("/v2/{name}/blobs/uploads/")));
    assert_eq!(resp.status(), 202);
    let location = header(&resp, "location").expect("Location");
    let uuid = header(&resp, "docker-upload-uuid").expect("Docker-Upload-UUID");
    assert!(location.contains(&uuid), "{location} names {uuid}");

    let resp = v2.send(
        v2.request("PUT", &with_query(&location, &format!("digest={digest}")))
            .header("content-type", "application/octet-stream")
            .body(data.clone()),
    );
    assert_eq!(resp.status(), 201);
    assert_eq!(header(&resp, "docker-content-digest"), Some(digest.clone()));
    let blob = header(&resp, "location").expect("Location of the blob");
    assert_eq!(v2.get(&blob).bytes().unwrap(), data);
    let finished = location;
    // A session belongs to its repository.
    let location = v2.start_upload(name);
    let elsewhere = path_of(&location).replacen(&format!("/v2/{name}/"), "/v2/other/repo/", 1);
    assert_ne!(elsewhere, path_of(&location));
    let resp = v2.send(v2.request("PATCH", &elsewhere).body(vec![1, 2, 3]));
    v2.expect_error(
        resp,
        404,
        "BLOB_UPLOAD_UNKNOWN",
        "session of another repository",
    );
    assert_eq!(v2.delete(&location).status(), 204);
    // The session ended with the blob.
    v2.expect_error(
        v2.get(&finished),
        404,
        "BLOB_UPLOAD_UNKNOWN",
        "finished upload",
    );
}

fn chunked_upload(backend: Backend) {
    let registry = backend.start(&[]);
    let v2 = V2::new(&registry);
    let name = "chunked/upload";
    let data = unique_bytes("chunked", 3000);
    let digest = sha256(&data);
    let mut location = v2.start_upload(name);
    let mut uuid: Option<String> = None;

    for (from, to) in [(0usize, 999usize), (1000, 1999)] {
        let resp = v2.send(
            v2.request("PATCH", &location)
                .header("content-type", "application/octet-stream")
                .header("content-range", format!("{from}-{to}"))
                .header("content-length", (to - from + 1).to_string())
                .body(data[from..=to].to_vec()),
        );
        assert_eq!(resp.status(), 202, "PATCH {from}-{to}");
        assert_eq!(header(&resp, "range"), Some(format!("0-{to}")));
        let this = header(&resp, "docker-upload-uuid").expect("Docker-Upload-UUID");
        assert_eq!(uuid.get_or_insert(this.clone()), &this, "one session");
        location = header(&resp, "location").expect("Location after PATCH");

        let resp = v2.get(&location);
        assert_eq!(resp.status(), 204, "upload status");
        assert_eq!(header(&resp, "range"), Some(format!("0-{to}")));
        assert!(header(&resp, "location").is_some());
    }

    // Out of order: a gap, and a repeat of the last chunk.
    for (from, to) in [(2500usize, 2999usize), (1000, 1999)] {
        let resp = v2.send(
            v2.request("PATCH", &location)
                .header("content-range", format!("{from}-{to}"))
                .header("content-length", (to - from + 1).to_string())
                .body(data[from..=to].to_vec()),
        );
        assert_eq!(resp.status(), 416, "out-of-order PATCH {from}-{to}");
        let resp = v2.get(&location);
        assert_eq!(resp.status(), 204);
        assert_eq!(header(&resp, "range").as_deref(), Some("0-1999"));
    }

    // The blob is not there before the session is closed.
    assert_eq!(v2.head(&format!("/v2/{name}/blobs/{digest}")).status(), 404);

    // The last chunk comes with the closing PUT.
    let resp = v2.send(
        v2.request("PUT", &with_query(&location, &format!("digest={digest}")))
            .header("content-type", "application/octet-stream")
            .header("content-range", "2000-2999")
            .body(data[2000..].to_vec()),
    );
    assert_eq!(resp.status(), 201, "closing PUT");
    assert_eq!(header(&resp, "docker-content-digest"), Some(digest.clone()));
    let resp = v2.get(&format!("/v2/{name}/blobs/{digest}"));
    assert_eq!(resp.bytes().unwrap(), data);
}

fn streamed_patch_then_empty_put(backend: Backend) {
    let registry = backend.start(&[]);
    let v2 = V2::new(&registry);
    let name = "streamed";
    let data = unique_bytes("streamed", 70_000);
    let digest = sha256(&data);
    let location = v2.start_upload(name);
    // No Content-Range, no Content-Length: a chunked transfer.
    let body = reqwest::blocking::Body::new(std::io::Cursor::new(data[..50_000].to_vec()));
    let resp = v2.send(
        v2.request("PATCH", &location)
            .header("content-type", "application/octet-stream")
            .body(body),
    );
    assert_eq!(resp.status(), 202);
    assert_eq!(header(&resp, "range").as_deref(), Some("0-49999"));
    let location = header(&resp, "location").unwrap();
    // A second streamed PATCH appends.
    let resp = v2.send(
        v2.request("PATCH", &location)
            .body(reqwest::blocking::Body::new(std::io::Cursor::new(
                data[50_000..].to_vec(),
            ))),
    );
    assert_eq!(resp.status(), 202);
    assert_eq!(header(&resp, "range").as_deref(), Some("0-69999"));
    let location = header(&resp, "location").unwrap();
    let resp = v2.send(
        v2.request("PUT", &with_query(&location, &format!("digest={digest}")))
            .header("content-length", "0"),
    );
    assert_eq!(resp.status(), 201);
    assert_eq!(
        v2.get(&format!("/v2/{name}/blobs/{digest}"))
            .bytes()
            .unwrap(),
        data
    );
}

fn chunks_across_s3_part_size(backend: Backend) {
    // Chunks that are no multiple of (and straddle) S3's 5 MiB part size.
    let registry = backend.start(&[]);
    let v2 = V2::new(&registry);
    let name = "big/chunks";
    let mib = 1024 * 1024;
    let data = unique_bytes("big chunks", 11 * mib + 7);
    let digest = sha256(&data);
    let mut location = v2.start_upload(name);
    let mut from = 0;
    for len in [3 * mib, 3 * mib + 1, 4 * mib, mib + 5] {
        let to = from + len - 1;
        let resp = v2.send(
            v2.request("PATCH", &location)
                .header("content-range", format!("{from}-{to}"))
                .header("content-length", len.to_string())
                .body(data[from..=to].to_vec()),
        );
        assert_eq!(resp.status(), 202, "PATCH {from}-{to}");
        assert_eq!(header(&resp, "range"), Some(format!("0-{to}")));
        location = header(&resp, "location").unwrap();
        from = to + 1;
    }
    assert_eq!(from, data.len() - 1);
    let resp = v2.send(
        v2.request("PUT", &with_query(&location, &format!("digest={digest}")))
            .body(data[from..].to_vec()),
    );
    assert_eq!(resp.status(), 201);
    let resp = v2.get(&format!("/v2/{name}/blobs/{digest}"));
    assert_eq!(
        header(&resp, "content-length"),
        Some(data.len().to_string())
    );
    assert!(resp.bytes().unwrap() == data, "the blob comes back whole");
}

fn parallel_uploads_of_one_blob(backend: Backend) {
    // Four sessions finish the same digest at once: each is a success and
    // the blob is whole (it appears atomically, never half written).
    let registry = backend.start(&[]);
    let name = "parallel/uploads";
    let data = unique_bytes("parallel", 300_000);
    let digest = sha256(&data);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                let v2 = V2::new(&registry);
                let location = v2.start_upload(name);
                let resp = v2.send(
                    v2.request("PATCH", &location)
                        .header("content-range", "0-149999")
                        .header("content-length", "150000")
                        .body(data[..150_000].to_vec()),
                );
                assert_eq!(resp.status(), 202);
                let location = header(&resp, "location").unwrap();
                let resp = v2.send(
                    v2.request("PUT", &with_query(&location, &format!("digest={digest}")))
                        .body(data[150_000..].to_vec()),
                );
                assert_eq!(resp.status(), 201);
                let resp = v2.get(&format!("/v2/{name}/blobs/{digest}"));
                assert!(resp.bytes().unwrap() == data);
            });
        }
    });
}

fn cancel_upload(backend: Backend) {
    let registry = backend.start(&[]);
    let v2 = V2::new(&registry);
    let name = "cancel";
    let data = unique_bytes("cancel", 500);
    let location = v2.start_upload(name);
    let resp = v2.send(
        v2.request("PATCH", &location)
            .header("content-range", "0-499")
            .header("content-length", "500")
            .body(data.clone()),
    );
    assert_eq!(resp.status(), 202);
    let location = header(&resp, "location").unwrap();
    assert_eq!(v2.delete(&location).status(), 204);
    v2.expect_error(v2.get(&location), 404, "BLOB_UPLOAD_UNKNOWN", "status");
    let resp = v2.send(
        v2.request("PATCH", &location)
            .header("content-range", "500-501")
            .body(vec![1, 2]),
    );
    v2.expect_error(resp, 404, "BLOB_UPLOAD_UNKNOWN", "PATCH after cancel");
    let resp = v2.send(v2.request(
        "PUT",
        &with_query(&location, &format!("digest={}", sha256(&data))),
    ));
    v2.expect_error(resp, 404, "BLOB_UPLOAD_UNKNOWN", "PUT after cancel");
    v2.expect_error(v2.delete(&location), 404, "BLOB_UPLOAD_UNKNOWN", "twice");
    let resp = v2.get(&format!("/v2/{name}/blobs/{}", sha256(&data)));
    assert_eq!(resp.status(), 404);
    // A session id nobody handed out.
    let resp = v2.get(&format!(
        "/v2/{name}/blobs/uploads/4f6e1e7a-3c1b-4a51-9d3e-2b6f0d1c9a77"
    ));
    v2.expect_error(resp, 404, "BLOB_UPLOAD_UNKNOWN", "made-up session");
}

fn digest_errors(backend: Backend) {
    let registry = backend.start(&[]);
    let v2 = V2::new(&registry);
    let name = "digests";
    let data = unique_bytes("digest errors", 800);
    let wrong = sha256(b"something else");

    // Single POST with a digest of other bytes.
    let resp = v2.send(
        v2.request("POST", &format!("/v2/{name}/blobs/uploads/?digest={wrong}"))
            .body(data.clone()),
    );
    v2.expect_error(resp, 400, "DIGEST_INVALID", "single POST, wrong digest");

    // POST then PUT with a digest of other bytes.
    let location = v2.start_upload(name);
    let resp = v2.send(
        v2.request("PUT", &with_query(&location, &format!("digest={wrong}")))
            .body(data.clone()),
    );
    v2.expect_error(resp, 400, "DIGEST_INVALID", "PUT, wrong digest");

    // Neither digest is served: nothing was stored under a wrong name.
    for digest in [wrong.clone(), sha256(&data)] {
        assert_eq!(
            v2.head(&format!("/v2/{name}/blobs/{digest}")).status(),
            404,
            "{digest}"
        );
    }

    // Digests that are no digests, or of an algorithm we do not offer.
    for bad in [
        "sha256:xyz".to_owned(),
        "sha256:abcd".to_owned(),
        format!("md5:{}", "a".repeat(32)),
        "nocolon".to_owned(),
        format!("sha256:{}", "A".repeat(64)),
    ] {
        let resp = v2.send(
            v2.request("POST", &format!("/v2/{name}/blobs/uploads/?digest={bad}"))
                .body(data.clone()),
        );
        let status = resp.status().as_u16();
        let codes = error_codes_of(&resp.bytes().unwrap(), &bad);
        assert_eq!(status, 400, "POST ?digest={bad}");
        assert!(
            codes
                .iter()
                .any(|c| c == "DIGEST_INVALID" || c == "UNSUPPORTED"),
            "{bad}: {codes:?}"
        );
        let resp = v2.get(&format!("/v2/{name}/blobs/{bad}"));
        assert!(
            [400, 404].contains(&resp.status().as_u16()),
            "GET blob {bad}: {}",
            resp.status()
        );
    }
    // The PUT of a session needs a digest.
    let location = v2.start_upload(name);
    let resp = v2.send(v2.request("PUT", &location).body(data.clone()));
    assert_eq!(resp.status(), 400, "PUT without ?digest=");
}

fn sha512_blobs(backend: Backend) {
    let registry = backend.start(&[]);
    let v2 = V2::new(&registry);
    let name = "sha/512";
    let data = unique_bytes("sha512 monolithic", 1200);
    let digest = sha512(&data);
    let resp = v2.send(
        v2.request(
            "POST",
            &format!("/v2/{name}/blobs/uploads/?digest={digest}"),
        )
        .body(data.clone()),
    );
    assert_eq!(resp.status(), 201, "single POST, sha512");
    assert_eq!(header(&resp, "docker-content-digest"), Some(digest.clone()));
    let resp = v2.get(&format!("/v2/{name}/blobs/{digest}"));
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "docker-content-digest"), Some(digest.clone()));
    assert_eq!(resp.bytes().unwrap(), data);

    // POST then PUT with the body.
    let data = unique_bytes("sha512 post put", 900);
    let digest = sha512(&data);
    let location = v2.start_upload(name);
    let resp = v2.send(
        v2.request("PUT", &with_query(&location, &format!("digest={digest}")))
            .body(data.clone()),
    );
    assert_eq!(resp.status(), 201, "PUT, sha512");
    assert_eq!(
        v2.get(&format!("/v2/{name}/blobs/{digest}"))
            .bytes()
            .unwrap(),
        data
    );
    // A wrong sha512 is refused like a wrong sha256.
    let location = v2.start_upload(name);
    let resp = v2.send(
        v2.request(
            "PUT",
            &with_query(&location, &format!("digest={}", sha512(b"other"))),
        )
        .body(data.clone()),
    );
    v2.expect_error(resp, 400, "DIGEST_INVALID", "wrong sha512");
}

/// sha512 blobs sent in chunks or streamed: hashed as sha256 when the
/// client said nothing, and read back once at the `PUT`; hashed as sha512
/// from the start when the `POST` says `?digest-algorithm=sha512`.
fn sha512_chunked_and_streamed(backend: Backend) {
    let registry = backend.start(&[]);
    let v2 = V2::new(&registry);
    let name = "sha/chunks";
    let patch = |location: &str, range: Option<(usize, usize)>, data: &[u8]| {
        let mut req = v2
            .request("PATCH", location)
            .header("content-type", "application/octet-stream");
        if let Some((from, to)) = range {
            req = req
                .header("content-range", format!("{from}-{to}"))
                .header("content-length", (to - from + 1).to_string());
        }
        let resp = v2.send(req.body(data.to_vec()));
        assert_eq!(resp.status(), 202, "PATCH {range:?}");
        header(&resp, "location").unwrap()
    };
    let put = |location: &str, digest: &str, last: &[u8]| {
        v2.send(
            v2.request("PUT", &with_query(location, &format!("digest={digest}")))
                .header("content-type", "application/octet-stream")
                .body(last.to_vec()),
        )
    };
    let pulled = |digest: &str| {
        v2.get(&format!("/v2/{name}/blobs/{digest}"))
            .bytes()
            .unwrap()
            .to_vec()
    };
    let starts = [
        format!("/v2/{name}/blobs/uploads/"),
        format!("/v2/{name}/blobs/uploads/?digest-algorithm=sha512"),
    ];
    for start in &starts {
        let post = || {
            let resp = v2.send(v2.request("POST", start).header("content-length", "0"));
            assert_eq!(resp.status(), 202, "POST {start}");
            header(&resp, "location").unwrap()
        };
        // Chunks, then an empty PUT; chunks, the last with the PUT.
        let data = unique_bytes(&format!("sha512 chunks {start}"), 3000);
        let digest = sha512(&data);
        let mut location = post();
        for (from, to) in [(0, 999), (1000, 2999)] {
            location = patch(&location, Some((from, to)), &data[from..=to]);
        }
        let resp = put(&location, &digest, b"");
        assert_eq!(resp.status(), 201, "chunked sha512 after {start}");
        assert_eq!(header(&resp, "docker-content-digest"), Some(digest.clone()));
        assert_eq!(pulled(&digest), data);

        let data = unique_bytes(&format!("sha512 put chunk {start}"), 2000);
        let digest = sha512(&data);
        let location = patch(&post(), Some((0, 1199)), &data[..1200]);
        let resp = v2.send(
            v2.request("PUT", &with_query(&location, &format!("digest={digest}")))
                .header("content-range", "1200-1999")
                .body(data[1200..].to_vec()),
        );
        assert_eq!(resp.status(), 201, "last chunk with the PUT after {start}");
        assert_eq!(pulled(&digest), data);

        // Streamed (no Content-Range, no length), then an empty PUT.
        let data = unique_bytes(&format!("sha512 stream {start}"), 70_000);
        let digest = sha512(&data);
        let location = post();
        let resp = v2.send(
            v2.request("PATCH", &location)
                .body(reqwest::blocking::Body::new(std::io::Cursor::new(
                    data.clone(),
                ))),
        );
        assert_eq!(resp.status(), 202);
        let resp = put(&header(&resp, "location").unwrap(), &digest, b"");
        assert_eq!(resp.status(), 201, "streamed sha512 after {start}");
        assert_eq!(pulled(&digest), data);

        // A wrong sha512 after chunks: refused, nothing stored, and the
        // upload is gone.
        let location = patch(&post(), Some((0, 4)), b"12345");
        let wrong = sha512(b"12346");
        v2.expect_error(put(&location, &wrong, b""), 400, "DIGEST_INVALID", "wrong");
        assert_eq!(v2.get(&format!("/v2/{name}/blobs/{wrong}")).status(), 404);
        v2.expect_error(v2.get(&location), 404, "BLOB_UPLOAD_UNKNOWN", "after");

        // The sha256 digest of the same kind of upload, either way.
        let data = unique_bytes(&format!("sha256 chunks {start}"), 1500);
        let digest = sha256(&data);
        let location = patch(&post(), Some((0, 1499)), &data);
        assert_eq!(put(&location, &digest, b"").status(), 201);
        assert_eq!(pulled(&digest), data);
    }
    // An algorithm we cannot verify is refused when the upload starts.
    let resp = v2.send(
        v2.request(
            "POST",
            &format!("/v2/{name}/blobs/uploads/?digest-algorithm=md5"),
        )
        .header("content-length", "0"),
    );
    v2.expect_error(resp, 400, "DIGEST_INVALID", "digest-algorithm=md5");
}

fn cross_repository_mount(backend: Backend) {
    let registry = backend.start(&[]);
    let v2 = V2::new(&registry);
    let data = unique_bytes("mount me", 700);
    let digest = v2.push_blob("source/repo", &data);
    // A blob belongs to the repositories it was pushed or mounted to.
    let resp = v2.get(&format!("/v2/target/repo/blobs/{digest}"));
    v2.expect_error(resp, 404, "BLOB_UNKNOWN", "blob of another repository");

    let resp = v2.send(v2.request(
        "POST",
        &format!("/v2/target/repo/blobs/uploads/?mount={digest}&from=source/repo"),
    ));
    assert_eq!(resp.status(), 201, "mount from a repository that has it");
    assert_eq!(header(&resp, "docker-content-digest"), Some(digest.clone()));
    let location = header(&resp, "location").expect("Location");
    assert!(path_of(&location).ends_with(&format!("/v2/target/repo/blobs/{digest}")));
    assert_eq!(
        v2.get(&format!("/v2/target/repo/blobs/{digest}"))
            .bytes()
            .unwrap(),
        data
    );

    // The source repository lacks the blob (another one has it), or
    // nobody has it: a plain upload session starts instead.
    let unknown = sha256(b"nobody has this");
    for (mount, from) in [
        (digest.clone(), "empty/repo"),
        (unknown.clone(), "source/repo"),
    ] {
        let resp = v2.send(v2.request(
            "POST",
            &format!("/v2/third/repo/blobs/uploads/?mount={mount}&from={from}"),
        ));
        assert_eq!(resp.status(), 202, "mount {mount} from {from}");
        let location = header(&resp, "location").expect("upload Location");
        assert!(header(&resp, "docker-upload-uuid").is_some());
        let status = v2.get(&location);
        assert_eq!(status.status(), 204, "the session is real");
        assert_eq!(v2.delete(&location).status(), 204);
    }
    assert_eq!(
        v2.head(&format!("/v2/third/repo/blobs/{digest}")).status(),
        404,
        "nothing mounted from a repository without the blob"
    );
}

// --- Manifests --------------------------------------------------------------

/// Checks a manifest answers by tag (when given) and by digest, exactly.
fn assert_manifest(v2: &V2, name: &str, tag: Option<&str>, media_type: &str, body: &[u8]) {
    let digest = sha256(body);
    let mut refs = vec![digest.clone()];
    refs.extend(tag.map(str::to_owned));
    for reference in refs {
        let path = format!("/v2/{name}/manifests/{reference}");
        let resp = v2.send(v2.request("GET", &path).header("accept", ALL_MANIFESTS));
        assert_eq!(resp.status(), 200, "GET {path}");
        assert_eq!(header(&resp, "content-type").as_deref(), Some(media_type));
        assert_eq!(header(&resp, "docker-content-digest"), Some(digest.clone()));
        assert!(resp.bytes().unwrap() == body, "{path}: bytes as pushed");

        let resp = v2.send(v2.request("HEAD", &path).header("accept", ALL_MANIFESTS));
        assert_eq!(resp.status(), 200, "HEAD {path}");
        assert_eq!(header(&resp, "content-type").as_deref(), Some(media_type));
        assert_eq!(header(&resp, "docker-content-digest"), Some(digest.clone()));
        assert_eq!(
            header(&resp, "content-length"),
            Some(body.len().to_string())
        );
    }
}

fn manifests_of_every_kind(backend: Backend) {
    let registry = backend.start(&[]);
    let v2 = V2::new(&registry);
    let name = "kinds/of/manifest";

    let amd = ImageBlobs::new("amd64 image", "amd64");
    let arm = ImageBlobs::new("arm64 image", "arm64");
    amd.push(&v2, name);
    arm.push(&v2, name);

    // OCI image manifest, by tag.
    let oci_amd = amd.oci_manifest();
    let resp = v2.put_manifest(name, "oci", OCI_MANIFEST, &oci_amd);
    assert_eq!(resp.status(), 201);
    assert_eq!(
        header(&resp, "docker-content-digest"),
        Some(sha256(&oci_amd))
    );
    let location = header(&resp, "location").expect("Location");
    let resp = v2.send(v2.request("GET", &location).header("accept", ALL_MANIFESTS));
    assert_eq!(resp.bytes().unwrap(), oci_amd);
    assert_manifest(&v2, name, Some("oci"), OCI_MANIFEST, &oci_amd);

    // OCI image manifest by digest only (an index's child), then the index.
    let oci_arm = arm.oci_manifest();
    v2.push_manifest(name, &sha256(&oci_arm), OCI_MANIFEST, &oci_arm);
    assert_manifest(&v2, name, None, OCI_MANIFEST, &oci_arm);
    let index = index_of(
        OCI_INDEX,
        &[
            (OCI_MANIFEST, &oci_amd, "amd64"),
            (OCI_MANIFEST, &oci_arm, "arm64"),
        ],
    );
    v2.push_manifest(name, "index", OCI_INDEX, &index);
    assert_manifest(&v2, name, Some("index"), OCI_INDEX, &index);

    // Docker schema 2 and a manifest list of it.
    let docker_amd = amd.docker_manifest();
    let docker_arm = arm.docker_manifest();
    v2.push_manifest(name, "docker", DOCKER_MANIFEST, &docker_amd);
    v2.push_manifest(name, &sha256(&docker_arm), DOCKER_MANIFEST, &docker_arm);
    assert_manifest(&v2, name, Some("docker"), DOCKER_MANIFEST, &docker_amd);
    let list = index_of(
        DOCKER_LIST,
        &[
            (DOCKER_MANIFEST, &docker_amd, "amd64"),
            (DOCKER_MANIFEST, &docker_arm, "arm64"),
        ],
    );
    v2.push_manifest(name, "list", DOCKER_LIST, &list);
    assert_manifest(&v2, name, Some("list"), DOCKER_LIST, &list);

    // An OCI artifact: artifactType, the empty config `{}`.
    let empty = v2.push_blob(name, b"{}");
    assert_eq!(
        empty,
        "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    );
    let sbom = unique_bytes("sbom", 200);
    v2.push_blob(name, &sbom);
    let artifact = manifest_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sbom.v1",
        "config": descriptor(OCI_EMPTY, b"{}"),
        "layers": [descriptor("application/vnd.example.sbom.v1+json", &sbom)],
        "annotations": {"org.example.kind": "sbom"},
    }));
    v2.push_manifest(name, "sbom", OCI_MANIFEST, &artifact);
    assert_manifest(&v2, name, Some("sbom"), OCI_MANIFEST, &artifact);

    // An older OCI manifest without a mediaType field: the Content-Type
    // it was pushed with is the one it is served with.
    let bare = manifest_bytes(&json!({
        "schemaVersion": 2,
        "config": descriptor(OCI_CONFIG, &amd.config),
        "layers": [descriptor(OCI_LAYER, &amd.layer)],
        "annotations": {"no": "mediaType"},
    }));
    v2.push_manifest(name, "bare", OCI_MANIFEST, &bare);
    assert_manifest(&v2, name, Some("bare"), OCI_MANIFEST, &bare);

    // Retagging: a tag moves to another manifest.
    v2.push_manifest(name, "oci", DOCKER_MANIFEST, &docker_amd);
    assert_manifest(&v2, name, Some("oci"), DOCKER_MANIFEST, &docker_amd);
    // The manifest the tag left is still there by digest.
    assert_manifest(&v2, name, None, OCI_MANIFEST, &oci_amd);
}

fn manifest_refusals(backend: Backend) {
    let registry = backend.start(&[]);
    let v2 = V2::new(&registry);
    let name = "refused";
    let image = ImageBlobs::new("refusals", "amd64");
    image.push(&v2, name);
    let missing = unique_bytes("missing", 100);

    let missing_layer = manifest_bytes(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, &image.config),
        "layers": [descriptor(OCI_LAYER, &image.layer), descriptor(OCI_LAYER, &missing)],
    }));
    let missing_config = manifest_bytes(&json!({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": descriptor(DOCKER_CONFIG, &missing),
        "layers": [descriptor(DOCKER_LAYER, &image.layer)],
    }));
    let missing_child = index_of(
        OCI_INDEX,
        &[
            (OCI_MANIFEST, &image.oci_manifest(), "amd64"),
            (OCI_MANIFEST, &missing, "arm64"),
        ],
    );
    let missing_list_child = index_of(DOCKER_LIST, &[(DOCKER_MANIFEST, &missing, "amd64")]);
    for (what, media_type, body) in [
        ("missing layer", OCI_MANIFEST, &missing_layer),
        ("missing config", DOCKER_MANIFEST, &missing_config),
        ("missing child", OCI_INDEX, &missing_child),
        ("missing list child", DOCKER_LIST, &missing_list_child),
    ] {
        let resp = v2.put_manifest(name, "latest", media_type, body);
        v2.expect_error(resp, 400, "MANIFEST_BLOB_UNKNOWN", what);
        let resp = v2.put_manifest(name, &sha256(body), media_type, body);
        v2.expect_error(resp, 400, "MANIFEST_BLOB_UNKNOWN", what);
    }

    // Schema 1, signed or not: refused, and the message says why.
    let schema1 = manifest_bytes(&json!({
        "schemaVersion": 1, "name": name, "tag": "latest", "architecture": "amd64",
        "fsLayers": [{"blobSum": sha256(&image.layer)}],
        "history": [{"v1Compatibility": "{\"id\":\"x\"}"}],
    }));
    for media_type in [
        SCHEMA1,
        "application/vnd.docker.distribution.manifest.v1+json",
    ] {
        let resp = v2.put_manifest(name, "latest", media_type, &schema1);
        assert_eq!(resp.status(), 400, "{media_type}");
        let body: Value = resp.json().unwrap();
        let e = &body["errors"][0];
        assert_eq!(e["code"], "MANIFEST_INVALID", "{body}");
        let text = format!("{} {}", e["message"], e["detail"]).to_lowercase();
        assert!(
            text.contains("schema 1") || text.contains("schema1"),
            "{body}"
        );
    }

    // Not JSON, or JSON that is no manifest, or a mediaType that contradicts
    // the Content-Type.
    let not_json = b"this is not json".to_vec();
    let no_manifest = manifest_bytes(&json!({"hello": "world"}));
    let contradicting = image.oci_manifest();
    for (what, media_type, body) in [
        ("not JSON", OCI_MANIFEST, &not_json),
        ("no manifest", OCI_MANIFEST, &no_manifest),
        (
            "mediaType against Content-Type",
            DOCKER_MANIFEST,
            &contradicting,
        ),
    ] {
        let resp = v2.put_manifest(name, "latest", media_type, body);
        v2.expect_error(resp, 400, "MANIFEST_INVALID", what);
    }

    // A digest reference that is not the digest of the body.
    let body = image.oci_manifest();
    let resp = v2.put_manifest(name, &sha256(b"other"), OCI_MANIFEST, &body);
    v2.expect_error(resp, 400, "DIGEST_INVALID", "PUT by another digest");
    // Tags longer than 128 characters or of other characters.
    for tag in ["a".repeat(129), ".dot".to_owned(), "-dash".to_owned()] {
        let resp = v2.put_manifest(name, &tag, OCI_MANIFEST, &body);
        assert_eq!(resp.status(), 400, "tag {tag:?}");
    }

    // Nothing refused was stored.
    let resp = v2.get(&format!("/v2/{name}/manifests/latest"));
    v2.expect_error(resp, 404, "MANIFEST_UNKNOWN", "after refusals");

    // The size bound: 4 000 000 bytes are accepted, 4 MiB + 1 are not.
    let padded = |len: usize| {
        let mut doc = json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, &image.config),
            "layers": [descriptor(OCI_LAYER, &image.layer)],
            "annotations": {"pad": ""},
        });
        let base = serde_json::to_vec(&doc).unwrap().len();
        doc["annotations"]["pad"] = json!("x".repeat(len - base));
        let out = serde_json::to_vec(&doc).unwrap();
        assert_eq!(out.len(), len);
        out
    };
    let big = padded(4_000_000);
    v2.push_manifest(name, "big", OCI_MANIFEST, &big);
    assert_manifest(&v2, name, Some("big"), OCI_MANIFEST, &big);
    let too_big = padded(4 * 1024 * 1024 + 1);
    let resp = v2.put_manifest(name, "too-big", OCI_MANIFEST, &too_big);
    assert_eq!(resp.status(), 413, "manifest over 4 MiB");
    let resp = v2.get(&format!("/v2/{name}/manifests/too-big"));
    v2.expect_error(resp, 404, "MANIFEST_UNKNOWN", "the big one was not kept");
}

/// A reference that breaks the tag grammar names no manifest: a pull is a
/// 404 (the OCI conformance suite pulls `.INVALID_MANIFEST_NAME`), a push a
/// 400.
fn references_that_cannot_exist(backend: Backend) {
    let registry = backend.start(&[]);
    let v2 = V2::new(&registry);
    let name = "invalid/references";
    let image = ImageBlobs::new("invalid references", "amd64");
    image.push(&v2, name);
    let body = image.oci_manifest();
    v2.push_manifest(name, "latest", OCI_MANIFEST, &body);
    for reference in [
        ".INVALID_MANIFEST_NAME".to_owned(),
        "-dash".to_owned(),
        "a".repeat(129),
    ] {
        let path = format!("/v2/{name}/manifests/{reference}");
        v2.expect_error(v2.get_manifest(&path), 404, "MANIFEST_UNKNOWN", &path);
        assert_eq!(v2.head_manifest(&path).status(), 404, "HEAD {path}");
        let resp = v2.put_manifest(name, &reference, OCI_MANIFEST, &body);
        v2.expect_error(resp, 400, "MANIFEST_INVALID", &format!("PUT {path}"));
    }
    // One with a `:` was meant as a digest: the client learns what is
    // wrong with it.
    for reference in ["sha256:abc", "md5:d41d8cd98f00b204e9800998ecf8427e"] {
        let path = format!("/v2/{name}/manifests/{reference}");
        v2.expect_error(v2.get_manifest(&path), 400, "DIGEST_INVALID", &path);
    }
}

/// `PUT /v2/<name>/manifests/<digest>?tag=..`: the manifest keeps the
/// digest it was pushed by (sha512 too), each tag points at it, and the
/// answer names each in `OCI-Tag`.
fn manifest_tag_parameters(backend: Backend) {
    let registry = backend.start(&[]);
    let v2 = V2::new(&registry);
    let name = "tag/params";
    let image = ImageBlobs::new("tag params", "amd64");
    image.push(&v2, name);
    let body = image.oci_manifest();
    for digest in [sha512(&body), sha256(&body)] {
        let alg = &digest[..6];
        let tags = [format!("{alg}-a"), format!("{alg}-b")];
        let resp = v2.send(
            v2.request(
                "PUT",
                &format!(
                    "/v2/{name}/manifests/{digest}?tag={}&tag={}&tag={}",
                    tags[0], tags[1], tags[0]
                ),
            )
            .header("content-type", OCI_MANIFEST)
            .body(body.clone()),
        );
        assert_eq!(resp.status(), 201, "{digest}");
        assert_eq!(header(&resp, "docker-content-digest"), Some(digest.clone()));
        let oci_tags: Vec<String> = resp
            .headers()
            .get_all("oci-tag")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        assert_eq!(oci_tags, tags, "{digest}");
        for tag in &tags {
            let resp = v2.get_manifest(&format!("/v2/{name}/manifests/{tag}"));
            assert_eq!(resp.status(), 200, "{tag}");
            assert_eq!(header(&resp, "docker-content-digest"), Some(digest.clone()));
            assert_eq!(resp.bytes().unwrap(), body);
        }
    }
    let list: Value = v2.get(&format!("/v2/{name}/tags/list")).json().unwrap();
    assert_eq!(
        list["tags"],
        json!(["sha256-a", "sha256-b", "sha512-a", "sha512-b"])
    );

    // A bad tag refuses the whole push; so do too many.
    let digest = sha256(&body);
    let resp = v2.send(
        v2.request(
            "PUT",
            &format!("/v2/{name}/manifests/{digest}?tag=ok&tag=.bad"),
        )
        .header("content-type", OCI_MANIFEST)
        .body(body.clone()),
    );
    v2.expect_error(resp, 400, "MANIFEST_INVALID", "?tag=.bad");
    let many: Vec<String> = (0..101).map(|i| format!("tag={i}")).collect();
    let resp = v2.send(
        v2.request(
            "PUT",
            &format!("/v2/{name}/manifests/{digest}?{}", many.join("&")),
        )
        .header("content-type", OCI_MANIFEST)
        .body(body.clone()),
    );
    v2.expect_error(resp, 414, "UNSUPPORTED", "101 tags");
    let list: Value = v2.get(&format!("/v2/{name}/tags/list")).json().unwrap();
    assert_eq!(list["tags"].as_array().unwrap().len(), 4, "{list}");
}

/// `If-None-Match` with the digest a client holds: `304`, no body, the
/// same `ETag`; anything else: the manifest.
fn manifest_if_none_match(backend: Backend) {
    let registry = backend.start(&[]);
    let v2 = V2::new(&registry);
    let name = "conditional/pull";
    let image = ImageBlobs::new("conditional", "amd64");
    image.push(&v2, name);
    let body = image.oci_manifest();
    let digest = v2.push_manifest(name, "latest", OCI_MANIFEST, &body);
    let etag = format!("\"{digest}\"");
    for reference in ["latest", digest.as_str()] {
        let path = format!("/v2/{name}/manifests/{reference}");
        let resp = v2.get_manifest(&path);
        assert_eq!(header(&resp, "etag"), Some(etag.clone()));
        for method in ["GET", "HEAD"] {
            for held in [
                etag.clone(),
                format!("W/{etag}"),
                format!("\"sha256:{}\", {etag}", "0".repeat(64)),
                "*".to_owned(),
                digest.clone(),
            ] {
                let resp = v2.send(
                    v2.request(method, &path)
                        .header("accept", ALL_MANIFESTS)
                        .header("if-none-match", &held),
                );
                assert_eq!(resp.status(), 304, "{method} {path} If-None-Match {held}");
                assert_eq!(header(&resp, "etag"), Some(etag.clone()));
                assert_eq!(header(&resp, "docker-content-digest"), Some(digest.clone()));
                assert!(resp.bytes().unwrap().is_empty());
            }
            let other = format!("\"{}\"", sha256(b"other"));
            let resp = v2.send(
                v2.request(method, &path)
                    .header("accept", ALL_MANIFESTS)
                    .header("if-none-match", &other),
            );
            assert_eq!(resp.status(), 200, "{method} {path} If-None-Match {other}");
            if method == "GET" {
                assert_eq!(resp.bytes().unwrap(), body);
            }
        }
    }
    // Nothing there: still a 404, whatever the client holds.
    let resp = v2.send(
        v2.request("GET", &format!("/v2/{name}/manifests/gone"))
            .header("if-none-match", "*"),
    );
    v2.expect_error(resp, 404, "MANIFEST_UNKNOWN", "If-None-Match of nothing");
}

fn manifest_unknown_and_delete(backend: Backend) {
    let registry = backend.start(&[]);
    let v2 = V2::new(&registry);
    let name = "delete/manifests";
    let image = ImageBlobs::new("delete manifests", "amd64");
    image.push(&v2, name);
    let body = image.oci_manifest();
    let digest = v2.push_manifest(name, "one", OCI_MANIFEST, &body);
    v2.push_manifest(name, "two", OCI_MANIFEST, &body);

    for reference in ["nope".to_owned(), sha256(b"no manifest")] {
        let path = format!("/v2/{name}/manifests/{reference}");
        v2.expect_error(v2.get(&path), 404, "MANIFEST_UNKNOWN", &path);
        assert_eq!(v2.head(&path).status(), 404);
        v2.expect_error(v2.delete(&path), 404, "MANIFEST_UNKNOWN", &path);
    }

    // Deleting a tag leaves the manifest and the other tag.
    assert_eq!(
        v2.delete(&format!("/v2/{name}/manifests/one")).status(),
        202
    );
    let resp = v2.get(&format!("/v2/{name}/manifests/one"));
    v2.expect_error(resp, 404, "MANIFEST_UNKNOWN", "deleted tag");
    assert_manifest(&v2, name, Some("two"), OCI_MANIFEST, &body);
    let tags: Value = v2.get(&format!("/v2/{name}/tags/list")).json().unwrap();
    assert_eq!(tags["tags"], json!(["two"]));

    // Deleting the manifest takes every tag that points at it.
    assert_eq!(
        v2.delete(&format!("/v2/{name}/manifests/{digest}"))
            .status(),
        202
    );
    for reference in [digest.as_str(), "two"] {
        let resp = v2.get(&format!("/v2/{name}/manifests/{reference}"));
        v2.expect_error(resp, 404, "MANIFEST_UNKNOWN", reference);
    }
    // Its layers stay: they are blobs of their own.
    assert_eq!(
        v2.head(&format!("/v2/{name}/blobs/{}", sha256(&image.layer)))
            .status(),
        200
    );
    // And it can be pushed again.
    v2.push_manifest(name, "again", OCI_MANIFEST, &body);
    assert_manifest(&v2, name, Some("again"), OCI_MANIFEST, &body);
}

// --- Content discovery ------------------------------------------------------

/// The target of a `Link: <...>; rel="next"` header.
fn next_link(resp: &reqwest::blocking::Response) -> Option<String> {
    let link = header(resp, "link")?;
    assert!(link.contains("rel=\"next\""), "Link: {link}");
    let start = link.find('<')? + 1;
    let end = link.find('>')?;
    Some(link[start..end].to_owned())
}

fn tags_list(backend: Backend) {
    let registry = backend.start(&[]);
    let v2 = V2::new(&registry);
    let name = "tagged/repo";
    let image = ImageBlobs::new("tags", "amd64");
    image.push(&v2, name);
    let body = image.oci_manifest();
    // ASCII order puts upper case first.
    let tags = ["v2", "latest", "A1", "v1", "1.0", "v1.1", "_x", "b__c"];
    for tag in tags {
        v2.push_manifest(name, tag, OCI_MANIFEST, &body);
    }
    let mut sorted: Vec<&str> = tags.to_vec();
    sorted.sort();

    let resp = v2.get(&format!("/v2/{name}/tags/list"));
    assert_eq!(resp.status(), 200);
    assert!(next_link(&resp).is_none());
    let doc: Value = resp.json().unwrap();
    assert_eq!(doc, json!({"name": name, "tags": sorted}));

    // Pages of 3, following Link.
    let mut page = format!("/v2/{name}/tags/list?n=3");
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let resp = v2.get(&page);
        assert_eq!(resp.status(), 200, "{page}");
        let link = next_link(&resp);
        let doc: Value = resp.json().unwrap();
        let got: Vec<String> = serde_json::from_value(doc["tags"].clone()).unwrap();
        assert!(got.len() <= 3, "{page}: {got:?}");
        seen.extend(got.clone());
        pages += 1;
        match link {
            Some(next) => {
                assert_eq!(got.len(), 3, "a page before the last is full");
                assert!(next.contains("n=3"), "{next}");
                assert!(next.contains(&format!("last={}", got[2])), "{next}");
                page = next;
            }
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(seen, sorted);
    assert_eq!(pages, 3);

    // `last` alone, `last` with `n`, n=0, n larger than the list.
    let doc: Value = v2
        .get(&format!("/v2/{name}/tags/list?last=latest"))
        .json()
        .unwrap();
    let after: Vec<&str> = sorted.iter().copied().filter(|t| *t > "latest").collect();
    assert_eq!(doc["tags"], json!(after));
    let doc: Value = v2
        .get(&format!("/v2/{name}/tags/list?n=2&last=b__c"))
        .json()
        .unwrap();
    assert_eq!(doc["tags"], json!(["latest", "v1"]));
    let resp = v2.get(&format!("/v2/{name}/tags/list?n=0"));
    assert_eq!(resp.status(), 200);
    assert!(header(&resp, "link").is_none(), "n=0 has no Link");
    let doc: Value = resp.json().unwrap();
    assert_eq!(doc["tags"], json!([]));
    let resp = v2.get(&format!("/v2/{name}/tags/list?n=100"));
    assert!(header(&resp, "link").is_none());
    assert_eq!(resp.json::<Value>().unwrap()["tags"], json!(sorted));

    // A repository that does not exist.
    let resp = v2.get("/v2/no/such/repo/tags/list");
    v2.expect_error(resp, 404, "NAME_UNKNOWN", "tags of an unknown repository");
}

fn catalog(backend: Backend) {
    let registry = backend.start(&[]);
    let v2 = V2::new(&registry);
    let doc: Value = v2.get("/v2/_catalog").json().unwrap();
    assert_eq!(doc, json!({"repositories": []}));
    let mut repos = vec!["zeta", "alpha/one", "alpha/two", "beta", "alpha/one/deeper"];
    for repo in &repos {
        let image = ImageBlobs::new(repo, "amd64");
        image.push(&v2, repo);
        v2.push_manifest(repo, "latest", OCI_MANIFEST, &image.oci_manifest());
    }
    repos.sort();
    let doc: Value = v2.get("/v2/_catalog").json().unwrap();
    assert_eq!(doc["repositories"], json!(repos));

    let resp = v2.get("/v2/_catalog?n=2");
    assert_eq!(resp.status(), 200);
    let next = next_link(&resp).expect("Link to the next page");
    let doc: Value = resp.json().unwrap();
    assert_eq!(doc["repositories"], json!(repos[..2]));
    assert!(
        next.contains(&format!("last={}", repos[1])) || next.contains("last=alpha%2Fone%2Fdeeper"),
        "{next}"
    );
    let resp = v2.get(&next);
    let next = next_link(&resp).expect("a third page");
    assert_eq!(
        resp.json::<Value>().unwrap()["repositories"],
        json!(repos[2..4])
    );
    let resp = v2.get(&next);
    assert!(next_link(&resp).is_none());
    assert_eq!(
        resp.json::<Value>().unwrap()["repositories"],
        json!(repos[4..])
    );

    let doc: Value = v2.get("/v2/_catalog?last=beta").json().unwrap();
    assert_eq!(doc["repositories"], json!(["zeta"]));
    let resp = v2.get("/v2/_catalog?n=0");
    assert!(header(&resp, "link").is_none());
    assert_eq!(resp.json::<Value>().unwrap()["repositories"], json!([]));
}

// --- Referrers --------------------------------------------------------------

fn referrers(backend: Backend) {
    let registry = backend.start(&[]);
    let v2 = V2::new(&registry);
    let name = "with/referrers";
    let image = ImageBlobs::new("subject", "amd64");
    image.push(&v2, name);
    let subject_body = image.oci_manifest();
    let subject = v2.push_manifest(name, "v1", OCI_MANIFEST, &subject_body);
    v2.push_blob(name, b"{}");

    // An empty list for a subject nobody refers to, even an unknown one.
    for digest in [subject.clone(), sha256(b"unknown subject")] {
        let resp = v2.get(&format!("/v2/{name}/referrers/{digest}"));
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "content-type").as_deref(), Some(OCI_INDEX));
        let doc: Value = resp.json().unwrap();
        assert_eq!(doc["schemaVersion"], 2);
        assert_eq!(doc["mediaType"], OCI_INDEX);
        assert_eq!(doc["manifests"], json!([]));
    }

    let artifact = |artifact_type: Option<&str>, config: Value, note: &str| -> Vec<u8> {
        let payload = unique_bytes(note, 64);
        v2.push_blob(name, &payload);
        let mut doc = json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": config,
            "layers": [descriptor("application/octet-stream", &payload)],
            "subject": descriptor(OCI_MANIFEST, &subject_body),
            "annotations": {"org.example.note": note},
        });
        if let Some(t) = artifact_type {
            doc["artifactType"] = json!(t);
        }
        manifest_bytes(&doc)
    };
    let sbom = artifact(
        Some("application/vnd.example.sbom.v1"),
        descriptor(OCI_EMPTY, b"{}"),
        "sbom",
    );
    let sig = artifact(
        Some("application/vnd.example.signature.v1"),
        descriptor(OCI_EMPTY, b"{}"),
        "signature",
    );
    // No artifactType: the config's media type stands in for it.
    let config_type = "application/vnd.example.config.v1+json";
    v2.push_blob(name, b"{\"k\":1}");
    let typed_by_config = artifact(None, descriptor(config_type, b"{\"k\":1}"), "by config");

    for body in [&sbom, &sig, &typed_by_config] {
        let resp = v2.put_manifest(name, &sha256(body), OCI_MANIFEST, body);
        assert_eq!(resp.status(), 201);
        assert_eq!(header(&resp, "oci-subject"), Some(subject.clone()));
    }
    // A manifest without a subject gets no OCI-Subject.
    let other = ImageBlobs::new("no subject", "arm64");
    other.push(&v2, name);
    let resp = v2.put_manifest(name, "plain", OCI_MANIFEST, &other.oci_manifest());
    assert_eq!(resp.status(), 201);
    assert!(header(&resp, "oci-subject").is_none());

    let resp = v2.get(&format!("/v2/{name}/referrers/{subject}"));
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-type").as_deref(), Some(OCI_INDEX));
    assert!(header(&resp, "oci-filters-applied").is_none());
    let doc: Value = resp.json().unwrap();
    let mut got: Vec<Value> = doc["manifests"].as_array().unwrap().clone();
    got.sort_by_key(|d| d["digest"].as_str().unwrap().to_owned());
    let mut expected = vec![
        json!({"mediaType": OCI_MANIFEST, "digest": sha256(&sbom), "size": sbom.len(),
               "artifactType": "application/vnd.example.sbom.v1",
               "annotations": {"org.example.note": "sbom"}}),
        json!({"mediaType": OCI_MANIFEST, "digest": sha256(&sig), "size": sig.len(),
               "artifactType": "application/vnd.example.signature.v1",
               "annotations": {"org.example.note": "signature"}}),
        json!({"mediaType": OCI_MANIFEST, "digest": sha256(&typed_by_config),
               "size": typed_by_config.len(), "artifactType": config_type,
               "annotations": {"org.example.note": "by config"}}),
    ];
    expected.sort_by_key(|d| d["digest"].as_str().unwrap().to_owned());
    assert_eq!(got, expected);

    // Filtered by artifactType.
    let resp = v2.get(&format!(
        "/v2/{name}/referrers/{subject}?artifactType=application/vnd.example.sbom.v1"
    ));
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "oci-filters-applied").as_deref(),
        Some("artifactType")
    );
    let doc: Value = resp.json().unwrap();
    let digests: Vec<&str> = doc["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["digest"].as_str().unwrap())
        .collect();
    assert_eq!(digests, [sha256(&sbom)]);

    // A referrer pushed before its subject is accepted and listed.
    let later = ImageBlobs::new("later subject", "amd64");
    later.push(&v2, name);
    let later_body = later.oci_manifest();
    let payload = unique_bytes("early", 10);
    v2.push_blob(name, &payload);
    let early = manifest_bytes(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.early",
        "config": descriptor(OCI_EMPTY, b"{}"),
        "layers": [descriptor("application/octet-stream", &payload)],
        "subject": descriptor(OCI_MANIFEST, &later_body),
    }));
    let resp = v2.put_manifest(name, &sha256(&early), OCI_MANIFEST, &early);
    assert_eq!(resp.status(), 201, "a subject that is not there yet");
    assert_eq!(header(&resp, "oci-subject"), Some(sha256(&later_body)));
    let doc: Value = v2
        .get(&format!("/v2/{name}/referrers/{}", sha256(&later_body)))
        .json()
        .unwrap();
    assert_eq!(doc["manifests"][0]["digest"], json!(sha256(&early)));

    // Deleting a referrer takes it off the list.
    assert_eq!(
        v2.delete(&format!("/v2/{name}/manifests/{}", sha256(&sig)))
            .status(),
        202
    );
    let doc: Value = v2
        .get(&format!("/v2/{name}/referrers/{subject}"))
        .json()
        .unwrap();
    assert_eq!(doc["manifests"].as_array().unwrap().len(), 2);

    // Invalid digests are a 400.
    let resp = v2.get(&format!("/v2/{name}/referrers/sha256:nothex"));
    assert_eq!(resp.status(), 400);
}

// --- Names and storage ------------------------------------------------------

fn names(backend: Backend) {
    let registry = backend.start(&[]);
    let v2 = V2::new(&registry);
    let digest = sha256(b"x");
    let long = vec!["a".repeat(60); 5].join("/"); // 304 characters
    for bad in [
        "Upper",
        "-lead",
        "trail-",
        "a..b",
        "a_-b",
        "a___b",
        "a/.hidden",
        "a/_b",
        "with space",
        long.as_str(),
    ] {
        for path in [
            format!("/v2/{bad}/tags/list"),
            format!("/v2/{bad}/manifests/latest"),
            format!("/v2/{bad}/blobs/{digest}"),
        ] {
            let resp = v2.get(&path);
            v2.expect_error(resp, 400, "NAME_INVALID", &path);
        }
        let resp = v2.send(v2.request("POST", &format!("/v2/{bad}/blobs/uploads/")));
        v2.expect_error(resp, 400, "NAME_INVALID", "POST upload");
        let resp = v2.put_manifest(bad, "latest", OCI_MANIFEST, b"{}");
        v2.expect_error(resp, 400, "NAME_INVALID", "PUT manifest");
    }
    // The grammar's separators: one `.` or `_`, two `_`, any number of `-`.
    for good in ["a.b", "a_b", "a__b", "a---b", "0/1/2/3/4/5", "x9.y-z/u__v"] {
        let image = ImageBlobs::new(good, "amd64");
        image.push(&v2, good);
        v2.push_manifest(good, "t", OCI_MANIFEST, &image.oci_manifest());
        assert_eq!(v2.get(&format!("/v2/{good}/tags/list")).status(), 200);
    }
    // A name is NAME_UNKNOWN until something is pushed to it.
    let resp = v2.get("/v2/never/pushed/tags/list");
    v2.expect_error(resp, 404, "NAME_UNKNOWN", "unknown name");
}

fn traversal_stays_inside_storage(backend: Backend) {
    let registry = backend.start(&[]);
    let v2 = V2::new(&registry);
    // Something real to aim at.
    let image = ImageBlobs::new("target", "amd64");
    image.push(&v2, "inside/repo");
    let body = image.oci_manifest();
    v2.push_manifest("inside/repo", "latest", OCI_MANIFEST, &body);
    let digest = sha256(&image.layer);
    let marker = format!("escaped{}", rand::random::<u32>());

    let names = [
        format!("../../../{marker}"),
        format!("inside/../../../../{marker}"),
        format!("%2e%2e/%2e%2e/%2e%2e/{marker}"),
        format!("inside/%2E%2E/%2e%2E/{marker}"),
        format!("..%2f..%2f..%2f{marker}"),
        format!("inside%2f..%2f..%2f{marker}"),
        format!("inside/repo%2f..%2f..%2f{marker}"),
        format!("%2F{marker}"),
        format!("inside/.%2e/{marker}"),
        format!("inside%5c..%5c{marker}"),
        format!("inside/%00/{marker}"),
    ];
    let mut answers = Vec::new();
    for name in &names {
        for (method, target, body) in [
            ("PUT", format!("/v2/{name}/manifests/latest"), body.clone()),
            (
                "PUT",
                format!("/v2/inside/repo/manifests/..%2f..%2f{marker}"),
                body.clone(),
            ),
            (
                "POST",
                format!("/v2/{name}/blobs/uploads/?digest={digest}"),
                image.layer.clone(),
            ),
            (
                "POST",
                format!("/v2/{name}/blobs/uploads/?mount={digest}&from=inside/repo"),
                vec![],
            ),
            (
                "POST",
                format!("/v2/inside/repo/blobs/uploads/?mount={digest}&from={name}"),
                vec![],
            ),
            ("GET", format!("/v2/{name}/manifests/latest"), vec![]),
            ("GET", format!("/v2/{name}/tags/list"), vec![]),
            ("GET", format!("/v2/{name}/blobs/{digest}"), vec![]),
            (
                "GET",
                format!("/v2/inside/repo/blobs/uploads/..%2f..%2f{marker}"),
                vec![],
            ),
            (
                "PATCH",
                format!("/v2/inside/repo/blobs/uploads/..%2f..%2f..%2f{marker}"),
                vec![1],
            ),
            (
                "PUT",
                format!("/v2/inside/repo/blobs/uploads/%2e%2e?digest={digest}"),
                vec![1],
            ),
            ("DELETE", format!("/v2/{name}/manifests/latest"), vec![]),
            (
                "DELETE",
                format!("/v2/inside/repo/blobs/uploads/..%2f..%2f..%2f..%2f{marker}"),
                vec![],
            ),
        ] {
            let (status, text) = raw_request(registry.port, method, &target, &body);
            answers.push(format!("{status} {method} {target}"));
            // A mount of a name that is no name cannot succeed either: at
            // best it becomes a plain upload in the valid repository.
            let mount_into_valid = target.starts_with("/v2/inside/repo/blobs/uploads/?mount");
            // A redirect to the cleaned path (what Go's router does) is
            // no escape either.
            assert!(
                (300..500).contains(&status) || (mount_into_valid && status == 202),
                "{method} {target}: {status}\n{text}"
            );
        }
    }
    let outside = backend.outside();
    assert!(
        outside.is_empty(),
        "written outside storage_path: {outside:?}"
    );
    let named: Vec<String> = backend
        .stored_keys()
        .into_iter()
        .filter(|k| k.contains(&marker))
        .collect();
    assert!(named.is_empty(), "stored under a traversal name: {named:?}");
    for dir in ["/tmp", "/"] {
        assert!(
            !std::path::Path::new(dir).join(&marker).exists(),
            "{dir}/{marker} exists"
        );
    }
    // What was there is intact.
    assert_manifest(&v2, "inside/repo", Some("latest"), OCI_MANIFEST, &body);
}

fn distribution_layout(backend: Backend) {
    let registry = backend.start(&[]);
    let v2 = V2::new(&registry);
    let name = "layout/check";
    let image = ImageBlobs::new("layout", "amd64");
    image.push(&v2, name);
    let body = image.oci_manifest();
    let digest = v2.push_manifest(name, "v1", OCI_MANIFEST, &body);
    let layer = sha256(&image.layer);
    let blob_data = |d: &str| {
        let h = hex_of(d);
        format!("{V2_ROOT}/blobs/sha256/{}/{h}/data", &h[..2])
    };
    let repo = format!("{V2_ROOT}/repositories/{name}");
    let mhex = hex_of(&digest);
    for (key, expected) in [
        (blob_data(&layer), image.layer.clone()),
        (blob_data(&sha256(&image.config)), image.config.clone()),
        (blob_data(&digest), body.clone()),
        (
            format!("{repo}/_layers/sha256/{}/link", hex_of(&layer)),
            layer.clone().into_bytes(),
        ),
        (
            format!("{repo}/_manifests/revisions/sha256/{mhex}/link"),
            digest.clone().into_bytes(),
        ),
        (
            format!("{repo}/_manifests/tags/v1/current/link"),
            digest.clone().into_bytes(),
        ),
        (
            format!("{repo}/_manifests/tags/v1/index/sha256/{mhex}/link"),
            digest.clone().into_bytes(),
        ),
    ] {
        let got = backend.read_stored(&key);
        assert!(
            got.is_some(),
            "{key} is missing; stored: {:#?}",
            backend.stored_keys()
        );
        assert!(got.unwrap() == expected, "{key} holds other bytes");
    }
    // Uploads in progress live in the repository's _uploads.
    let location = v2.start_upload(name);
    let resp = v2.send(
        v2.request("PATCH", &location)
            .header("content-range", "0-2")
            .header("content-length", "3")
            .body(b"abc".to_vec()),
    );
    let uuid = header(&resp, "docker-upload-uuid").unwrap();
    let keys = backend.stored_keys();
    assert!(
        keys.iter()
            .any(|k| k.starts_with(&format!("{repo}/_uploads/{uuid}/"))),
        "no {repo}/_uploads/{uuid}/ in {keys:#?}"
    );
    // v2 content stays in the v2 tree: nothing new beside it but the v1
    // tree's own folders and the collector's push records (`_gc/`).
    for key in backend.stored_keys() {
        assert!(
            key.starts_with(&format!("{V2_ROOT}/"))
                || key.starts_with("images/")
                || key.starts_with("repositories/")
                || key.starts_with("_gc/pushes/"),
            "{key} outside the v2 tree"
        );
    }
}

fn deletes_disabled(backend: Backend) {
    let registry = backend.start(&[("DELETE_ENABLED", "false")]);
    let v2 = V2::new(&registry);
    let name = "no/deletes";
    let image = ImageBlobs::new("no deletes", "amd64");
    image.push(&v2, name);
    let body = image.oci_manifest();
    let digest = v2.push_manifest(name, "keep", OCI_MANIFEST, &body);
    let layer = sha256(&image.layer);
    for path in [
        format!("/v2/{name}/blobs/{layer}"),
        format!("/v2/{name}/manifests/keep"),
        format!("/v2/{name}/manifests/{digest}"),
    ] {
        v2.expect_error(v2.delete(&path), 405, "UNSUPPORTED", &path);
    }
    assert_manifest(&v2, name, Some("keep"), OCI_MANIFEST, &body);
    assert_eq!(v2.get(&format!("/v2/{name}/blobs/{layer}")).status(), 200);
}

fn upload_resumes_after_restart(backend: Backend) {
    let data = unique_bytes("restart", 5000);
    let digest = sha256(&data);
    let name = "resume/restart";
    let mut registry = backend.start(&[]);
    let v2 = V2::new(&registry);
    let location = v2.start_upload(name);
    let resp = v2.send(
        v2.request("PATCH", &location)
            .header("content-range", "0-2999")
            .header("content-length", "3000")
            .body(data[..3000].to_vec()),
    );
    assert_eq!(resp.status(), 202);
    let path = path_of(&header(&resp, "location").unwrap());
    registry.terminate();
    drop(registry);

    let registry = backend.start(&[]);
    let v2 = V2::new(&registry);
    let resp = v2.get(&path);
    assert_eq!(resp.status(), 204, "the upload outlives a restart");
    assert_eq!(header(&resp, "range").as_deref(), Some("0-2999"));
    let location = header(&resp, "location").unwrap();
    let resp = v2.send(
        v2.request("PATCH", &location)
            .header("content-range", "3000-4999")
            .header("content-length", "2000")
            .body(data[3000..].to_vec()),
    );
    assert_eq!(resp.status(), 202);
    let location = header(&resp, "location").unwrap();
    let resp = v2.send(v2.request("PUT", &with_query(&location, &format!("digest={digest}"))));
    assert_eq!(resp.status(), 201);
    assert_eq!(
        v2.get(&format!("/v2/{name}/blobs/{digest}"))
            .bytes()
            .unwrap(),
        data
    );
}

fn upload_moves_between_instances(backend: Backend) {
    if !backend.is_s3() {
        // Two processes on one local folder are not a setup we promise.
        return;
    }
    let mib = 1024 * 1024;
    let data = unique_bytes("two instances", 6 * mib + 3);
    let digest = sha256(&data);
    let name = "resume/elsewhere";
    let one = backend.start(&[]);
    let two = backend.start(&[]);
    let (a, b) = (V2::new(&one), V2::new(&two));
    let mut path = path_of(&a.start_upload(name));
    let mut from = 0;
    for (i, len) in [2 * mib, 3 * mib, mib].into_iter().enumerate() {
        let v2 = if i % 2 == 0 { &a } else { &b };
        let to = from + len - 1;
        let resp = v2.send(
            v2.request("PATCH", &path)
                .header("content-range", format!("{from}-{to}"))
                .header("content-length", len.to_string())
                .body(data[from..=to].to_vec()),
        );
        assert_eq!(resp.status(), 202, "PATCH {from}-{to} on instance {i}");
        path = path_of(&header(&resp, "location").unwrap());
        from = to + 1;
    }
    let resp = b.send(
        b.request("PUT", &with_query(&path, &format!("digest={digest}")))
            .body(data[from..].to_vec()),
    );
    assert_eq!(resp.status(), 201);
    for v2 in [&a, &b] {
        assert!(
            v2.get(&format!("/v2/{name}/blobs/{digest}"))
                .bytes()
                .unwrap()
                == data
        );
    }
}

for_each_backend!(
    base_and_error_shape,
    monolithic_post_and_pull,
    blob_ranges,
    blob_delete,
    post_then_put,
    chunked_upload,
    streamed_patch_then_empty_put,
    chunks_across_s3_part_size,
    parallel_uploads_of_one_blob,
    cancel_upload,
    digest_errors,
    sha512_blobs,
    sha512_chunked_and_streamed,
    cross_repository_mount,
    manifests_of_every_kind,
    manifest_refusals,
    references_that_cannot_exist,
    manifest_tag_parameters,
    manifest_if_none_match,
    manifest_unknown_and_delete,
    tags_list,
    catalog,
    referrers,
    names,
    traversal_stays_inside_storage,
    distribution_layout,
    deletes_disabled,
    upload_resumes_after_restart,
    upload_moves_between_instances,
);

//! Blobs and uploads through the real binary on local disk: the happy
//! paths of every way to push a blob, and the 416 of a chunk out of
//! order. The full endpoint suite is tests/v2_api.rs.

mod common;

use reqwest::blocking::{Client, Response};
use serde_json::Value;
use sha2::{Digest, Sha256, Sha512};

use common::Registry;

fn start(dir: &tempfile::TempDir, extra: &[(&str, &str)]) -> Registry {
    let path = dir.path().to_str().unwrap();
    let mut env = vec![("STORAGE_PATH", path), ("SETTINGS_FLAVOR", "dev")];
    env.extend_from_slice(extra);
    Registry::start(&env)
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn header(resp: &Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
        .to_owned()
}

fn code(resp: Response) -> String {
    let body: Value = resp.json().unwrap();
    body["errors"][0]["code"].as_str().unwrap().to_owned()
}

struct Api<'a> {
    registry: &'a Registry,
    client: Client,
}

impl Api<'_> {
    fn send(&self, method: &str, path: &str) -> reqwest::blocking::RequestBuilder {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            self.registry.url(path)
        };
        self.client.request(method.parse().unwrap(), url)
    }

    /// A new upload; its location.
    fn start(&self, name: &str) -> String {
        let resp = self
            .send("POST", &format!("/v2/{name}/blobs/uploads/"))
            .send()
            .unwrap();
        assert_eq!(resp.status(), 202);
        assert_eq!(header(&resp, "range"), "0-0");
        assert_eq!(header(&resp, "content-length"), "0");
        let location = header(&resp, "location");
        let uuid = header(&resp, "docker-upload-uuid");
        assert_eq!(location, format!("/v2/{name}/blobs/uploads/{uuid}"));
        location
    }

    fn pull(&self, name: &str, digest: &str) -> Response {
        self.send("GET", &format!("/v2/{name}/blobs/{digest}"))
            .send()
            .unwrap()
    }

    fn created(&self, resp: Response, name: &str, digest: &str) {
        assert_eq!(resp.status(), 201, "{:?}", resp.text());
        assert_eq!(
            header(&resp, "location"),
            format!("/v2/{name}/blobs/{digest}")
        );
        assert_eq!(header(&resp, "docker-content-digest"), digest);
    }
}

#[test]
fn every_way_to_push_a_blob_then_pull_it() {
    let dir = tempfile::tempdir().unwrap();
    let registry = start(&dir, &[]);
    let api = Api {
        registry: &registry,
        client: common::client(),
    };

    // Monolithic POST.
    let one = b"monolithic".to_vec();
    let d1 = sha256(&one);
    let resp = api
        .send("POST", &format!("/v2/a/b/blobs/uploads/?digest={d1}"))
        .body(one.clone())
        .send()
        .unwrap();
    api.created(resp, "a/b", &d1);
    let resp = api.pull("a/b", &d1);
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-type"), "application/octet-stream");
    assert_eq!(header(&resp, "docker-content-digest"), d1);
    assert_eq!(header(&resp, "accept-ranges"), "bytes");
    assert_eq!(header(&resp, "etag"), format!("\"{d1}\""));
    assert_eq!(
        header(&resp, "docker-distribution-api-version"),
        "registry/2.0"
    );
    assert_eq!(resp.bytes().unwrap(), one);
    // The blob is in distribution's place.
    let hex = &d1["sha256:".len()..];
    let data = dir.path().join(format!(
        "docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    ));
    assert_eq!(std::fs::read(data).unwrap(), one);

    // HEAD and a range.
    let resp = api
        .send("HEAD", &format!("/v2/a/b/blobs/{d1}"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-length"), one.len().to_string());
    let resp = api
        .send("GET", &format!("/v2/a/b/blobs/{d1}"))
        .header("Range", "bytes=1-3")
        .send()
        .unwrap();
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.bytes().unwrap(), &one[1..4]);
    let resp = api
        .send("GET", &format!("/v2/a/b/blobs/{d1}"))
        .header("Range", "bytes=100-")
        .send()
        .unwrap();
    assert_eq!(resp.status(), 416);

    // POST then PUT.
    let two = vec![7u8; 3 * 1024 * 1024 + 5];
    let d2 = sha256(&two);
    let location = api.start("c");
    let resp = api
        .send("PUT", &format!("{location}?digest={d2}"))
        .body(two.clone())
        .send()
        .unwrap();
    api.created(resp, "c", &d2);
    assert_eq!(api.pull("c", &d2).bytes().unwrap(), two);

    // Chunks, a stream, then a PUT with the last chunk.
    let three: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    let d3 = sha256(&three);
    let location = api.start("c");
    let resp = api
        .send("PATCH", &location)
        .header("Content-Range", "0-999999")
        .body(three[..1_000_000].to_vec())
        .send()
        .unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(header(&resp, "range"), "0-999999");
    assert_eq!(header(&resp, "location"), location);
    // The same chunk again, and one that skips ahead: 416 with the range.
    for range in ["0-999999", "1000001-1000010"] {
        let resp = api
            .send("PATCH", &location)
            .header("Content-Range", range)
            .body(three[..1_000_000].to_vec())
            .send()
            .unwrap();
        assert_eq!(resp.status(), 416, "{range}");
        assert_eq!(header(&resp, "range"), "0-999999");
        assert_eq!(header(&resp, "location"), location);
        assert_eq!(code(resp), "BLOB_UPLOAD_INVALID");
    }
    let resp = api
        .send("PATCH", &location)
        .body(three[1_000_000..1_500_000].to_vec())
        .send()
        .unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(header(&resp, "range"), "0-1499999");
    let resp = api.send("GET", &location).send().unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(header(&resp, "range"), "0-1499999");
    // A last chunk out of order is a 416 too, and the upload stays.
    let resp = api
        .send("PUT", &format!("{location}?digest={d3}"))
        .header("Content-Range", "1500001-2000000")
        .body(three[1_500_000..].to_vec())
        .send()
        .unwrap();
    assert_eq!(resp.status(), 416);
    assert_eq!(header(&resp, "range"), "0-1499999");
    let resp = api
        .send("PUT", &format!("{location}?digest={d3}"))
        .header("Content-Range", "1500000-1999999")
        .body(three[1_500_000..].to_vec())
        .send()
        .unwrap();
    api.created(resp, "c", &d3);
    assert_eq!(api.pull("c", &d3).bytes().unwrap(), three);
    let resp = api.send("GET", &location).send().unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(code(resp), "BLOB_UPLOAD_UNKNOWN");

    // sha512 in one request.
    let five = b"sha512 blob".to_vec();
    let d5 = format!("sha512:{}", hex::encode(Sha512::digest(&five)));
    let resp = api
        .send("POST", &format!("/v2/c/blobs/uploads/?digest={d5}"))
        .body(five.clone())
        .send()
        .unwrap();
    api.created(resp, "c", &d5);
    assert_eq!(api.pull("c", &d5).bytes().unwrap(), five);

    // A wrong digest.
    let location = api.start("c");
    let resp = api
        .send("PUT", &format!("{location}?digest={d1}"))
        .body(b"not it".to_vec())
        .send()
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(code(resp), "DIGEST_INVALID");

    // Mount, and the plain upload when the source lacks the blob.
    let resp = api
        .send("POST", &format!("/v2/d/blobs/uploads/?mount={d1}&from=a/b"))
        .send()
        .unwrap();
    api.created(resp, "d", &d1);
    assert_eq!(api.pull("d", &d1).bytes().unwrap(), one);
    let resp = api
        .send("POST", &format!("/v2/d/blobs/uploads/?mount={d2}&from=a/b"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 202);

    // Cancel.
    let location = api.start("d");
    let resp = api.send("DELETE", &location).send().unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(api.send("GET", &location).send().unwrap().status(), 404);

    // Delete from one repository; the other still serves the bytes.
    let resp = api
        .send("DELETE", &format!("/v2/a/b/blobs/{d1}"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 202);
    let resp = api.pull("a/b", &d1);
    assert_eq!(resp.status(), 404);
    assert_eq!(code(resp), "BLOB_UNKNOWN");
    assert_eq!(api.pull("d", &d1).status(), 200);
    let resp = api.pull("nowhere", &d1);
    assert_eq!(resp.status(), 404);
    assert_eq!(code(resp), "BLOB_UNKNOWN");
    let resp = api.pull("Bad..Name", &d1);
    assert_eq!(resp.status(), 400);
    assert_eq!(code(resp), "NAME_INVALID");
}

#[test]
fn deletes_can_be_switched_off() {
    let dir = tempfile::tempdir().unwrap();
    let registry = start(&dir, &[("DELETE_ENABLED", "false")]);
    let api = Api {
        registry: &registry,
        client: common::client(),
    };
    let blob = b"kept".to_vec();
    let digest = sha256(&blob);
    let resp = api
        .send("POST", &format!("/v2/x/blobs/uploads/?digest={digest}"))
        .body(blob)
        .send()
        .unwrap();
    api.created(resp, "x", &digest);
    let resp = api
        .send("DELETE", &format!("/v2/x/blobs/{digest}"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(code(resp), "UNSUPPORTED");
    assert_eq!(api.pull("x", &digest).status(), 200);
}

/// A pulled blob is sent out of a mapping of its file (storage/mapped.rs):
/// a file removed under a pull keeps its bytes for that pull, one cut
/// short by hand (a SIGBUS for a mapping) fails the pull and nothing else.
#[test]
fn a_blob_changed_on_disk_under_a_pull_never_takes_the_registry_down() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let registry = start(&dir, &[]);
    let api = Api {
        registry: &registry,
        client: common::client(),
    };
    for (round, cut) in [
        ("removed", None),
        ("truncated", Some(0)),
        ("halved", Some(16 << 20)),
    ] {
        let blob: Vec<u8> = (0..48usize << 20)
            .map(|i| (i % 251) as u8 ^ round.len() as u8)
            .collect();
        let digest = sha256(&blob);
        let resp = api
            .send("POST", &format!("/v2/cut/blobs/uploads/?digest={digest}"))
            .body(blob.clone())
            .send()
            .unwrap();
        api.created(resp, "cut", &digest);
        let hex = &digest["sha256:".len()..];
        let data = dir.path().join(format!(
            "docker/registry/v2/blobs/sha256/{}/{hex}/data",
            &hex[..2]
        ));

        let mut pull = api.pull("cut", &digest);
        assert_eq!(pull.status(), 200);
        let mut first = vec![0; 1 << 20];
        pull.read_exact(&mut first).unwrap();
        match cut {
            None => std::fs::remove_file(&data).unwrap(),
            Some(len) => std::fs::OpenOptions::new()
                .write(true)
                .open(&data)
                .unwrap()
                .set_len(len)
                .unwrap(),
        }
        let mut rest = Vec::new();
        let read = pull.read_to_end(&mut rest);
        let got = first.len() + rest.len();
        match cut {
            None => {
                read.unwrap();
                assert_eq!(got, blob.len());
                assert_eq!(sha256(&[first, rest].concat()), digest);
            }
            Some(_) => {
                assert!(
                    read.is_err() && got < blob.len(),
                    "{round}: {got} bytes, {read:?}"
                );
                // Said by the mapped path, after the pages it lost.
                let log = registry.log();
                assert!(
                    log.contains("shrank while it was being sent"),
                    "{round}:\n{log}"
                );
            }
        }
        // The registry lives on and serves.
        let resp = api.send("GET", "/v2/").send().unwrap();
        assert_eq!(resp.status(), 200, "{round}:\n{}", registry.log());
    }
}

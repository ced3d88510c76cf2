//! The client side: pulls and pushes over HTTP/1.1 to 127.0.0.1, timed,
//! each answer checked (status, byte count) so that a fast wrong answer
//! never counts as a figure.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use futures_util::future::try_join_all;
use reqwest::header::{CONTENT_LENGTH, RANGE};
use reqwest::{Body, Client, StatusCode};
use sha2::{Digest, Sha256};

use crate::data::Image;

/// Bytes a pushed layer is read from disk in.
const UPLOAD_CHUNK: usize = 1 << 20;

pub fn client() -> Result<Client> {
    Ok(Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(600))
        .build()?)
}

/// Downloads `url` (from byte `from` on, when given) and checks the status
/// and the length; with `sha256`, the bytes too. Returns the bytes read.
pub async fn download(
    client: &Client,
    url: &str,
    from: Option<u64>,
    expect_len: u64,
    sha256: Option<&str>,
) -> Result<u64> {
    let mut req = client.get(url);
    if let Some(from) = from {
        req = req.header(RANGE, format!("bytes={from}-"));
    }
    let mut resp = req.send().await.with_context(|| format!("GET {url}"))?;
    let want = if from.is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    if resp.status() != want {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        bail!("GET {url}: {status} (expected {want}): {body:.200}");
    }
    let mut hasher = sha256.map(|_| Sha256::new());
    let mut n = 0u64;
    while let Some(chunk) = resp.chunk().await.with_context(|| format!("GET {url}"))? {
        n += chunk.len() as u64;
        if let Some(h) = hasher.as_mut() {
            h.update(&chunk);
        }
    }
    ensure!(
        n == expect_len,
        "GET {url}: {n} bytes, expected {expect_len}"
    );
    if let (Some(h), Some(want)) = (hasher, sha256) {
        let got = hex::encode(h.finalize());
        ensure!(got == want, "GET {url}: sha256 {got}, expected {want}");
    }
    Ok(n)
}

/// `clients` concurrent downloads of `url`, each on its own connection;
/// the time runs from the first request to the last byte.
pub async fn parallel_download(
    client: &Client,
    url: &str,
    clients: usize,
    from: Option<u64>,
    expect_len: u64,
) -> Result<Duration> {
    let start = Instant::now();
    let tasks = (0..clients).map(|_| {
        let client = client.clone();
        let url = url.to_owned();
        tokio::spawn(async move { download(&client, &url, from, expect_len, None).await })
    });
    let results = try_join_all(tasks).await?;
    let elapsed = start.elapsed();
    for r in results {
        r?;
    }
    Ok(elapsed)
}

/// A file as a request body, streamed from disk with its length announced.
async fn file_body(path: &std::path::Path) -> Result<Body> {
    let file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("open {}", path.display()))?;
    Ok(Body::wrap_stream(
        tokio_util::io::ReaderStream::with_capacity(file, UPLOAD_CHUNK),
    ))
}

async fn expect(resp: reqwest::Response, what: &str, want: StatusCode) -> Result<()> {
    let status = resp.status();
    if status != want {
        let body = resp.text().await.unwrap_or_default();
        bail!("{what}: {status} (expected {want}): {body:.300}");
    }
    Ok(())
}

/// Streams a file to `url` with PUT (raw object stores: S3 answers 200,
/// Swift 201).
pub async fn upload(client: &Client, url: &str, path: &std::path::Path, len: u64) -> Result<()> {
    let resp = client
        .put(url)
        .header(CONTENT_LENGTH, len)
        .body(file_body(path).await?)
        .send()
        .await
        .with_context(|| format!("PUT {url}"))?;
    let want = match resp.status() {
        StatusCode::CREATED => StatusCode::CREATED,
        _ => StatusCode::OK,
    };
    expect(resp, &format!("PUT {url}"), want).await
}

/// Tags `image` as `repo:latest` and answers the repository's tag list, the
/// body the small-request figures fetch.
pub async fn tag_latest(
    client: &Client,
    base: &str,
    repo: &str,
    image: &Image,
) -> Result<bytes::Bytes> {
    let r = client
        .put(format!("{base}/v1/repositories/{repo}/tags/latest"))
        .body(format!("\"{}\"", image.id))
        .send()
        .await?;
    ensure!(r.status() == 200, "PUT tag: {}", r.status());
    let r = client
        .get(format!("{base}/v1/repositories/{repo}/tags"))
        .send()
        .await?;
    ensure!(r.status() == 200, "GET tags: {}", r.status());
    Ok(r.bytes().await?)
}

/// The three requests of an image push: json, layer (streamed from its
/// file), checksum.
pub async fn push_image(client: &Client, base: &str, image: &Image) -> Result<()> {
    let url = |what: &str| format!("{base}/v1/images/{}/{what}", image.id);
    let resp = client
        .put(url("json"))
        .body(image.json.clone())
        .send()
        .await?;
    expect(resp, "PUT json", StatusCode::OK).await?;
    let resp = client
        .put(url("layer"))
        .header(CONTENT_LENGTH, image.layer.size)
        .body(file_body(&image.layer.path).await?)
        .send()
        .await?;
    expect(resp, "PUT layer", StatusCode::OK).await?;
    let resp = client
        .put(url("checksum"))
        .header("X-Docker-Checksum-Payload", &image.checksum)
        .send()
        .await?;
    expect(resp, "PUT checksum", StatusCode::OK).await
}

/// The User-Agent of the docker 1.3 client whose requests we replay.
const DOCKER_UA: &str =
    "docker/1.3.0 go/go1.3.3 git-commit/c78088f kernel/3.16.0 os/linux arch/amd64";

/// A whole `docker push` of `images` (base first) to `repo` as docker 1.x
/// does it (legacy-registry.md 3.5), tagged `latest`.
pub async fn docker_push(client: &Client, base: &str, repo: &str, images: &[Image]) -> Result<()> {
    let list: Vec<_> = images
        .iter()
        .map(|i| serde_json::json!({"id": i.id}))
        .collect();
    let list = serde_json::to_vec(&list)?;
    let repo_url = format!("{base}/v1/repositories/{repo}/");
    let resp = client
        .put(&repo_url)
        .header("User-Agent", DOCKER_UA)
        .header("X-Docker-Token", "true")
        .body(list.clone())
        .send()
        .await?;
    expect(resp, "PUT repository", StatusCode::OK).await?;
    for image in images {
        let resp = client
            .get(format!("{base}/v1/images/{}/json", image.id))
            .header("User-Agent", DOCKER_UA)
            .send()
            .await?;
        expect(resp, "GET json before push", StatusCode::NOT_FOUND).await?;
        push_image(client, base, image).await?;
    }
    let top = images.last().context("no images to push")?;
    let resp = client
        .put(format!("{base}/v1/repositories/{repo}/tags/latest"))
        .header("User-Agent", DOCKER_UA)
        .body(format!("\"{}\"", top.id))
        .send()
        .await?;
    expect(resp, "PUT tag", StatusCode::OK).await?;
    let resp = client
        .put(format!("{base}/v1/repositories/{repo}/images"))
        .header("User-Agent", DOCKER_UA)
        .body(list)
        .send()
        .await?;
    expect(resp, "PUT images", StatusCode::NO_CONTENT).await
}

/// A whole `docker pull` of `repo:latest`: image list, tags, ancestry, then
/// each image's json and layer. Checks that it gets `images` back (with
/// `verify`, byte for byte). Returns the layer bytes read.
pub async fn docker_pull(
    client: &Client,
    base: &str,
    repo: &str,
    images: &[Image],
    verify: bool,
) -> Result<u64> {
    let get = |url: String| client.get(url).header("User-Agent", DOCKER_UA).send();
    let resp = get(format!("{base}/v1/repositories/{repo}/images")).await?;
    ensure!(
        resp.status() == StatusCode::OK,
        "GET images: {}",
        resp.status()
    );
    let resp = get(format!("{base}/v1/repositories/{repo}/tags")).await?;
    ensure!(
        resp.status() == StatusCode::OK,
        "GET tags: {}",
        resp.status()
    );
    let tags: serde_json::Value = serde_json::from_slice(&resp.bytes().await?)?;
    let top = tags["latest"].as_str().context("no latest tag")?.to_owned();
    let resp = get(format!("{base}/v1/images/{top}/ancestry")).await?;
    ensure!(
        resp.status() == StatusCode::OK,
        "GET ancestry: {}",
        resp.status()
    );
    let ancestry: Vec<String> = serde_json::from_slice(&resp.bytes().await?)?;
    ensure!(
        ancestry.len() == images.len(),
        "ancestry of {} images, expected {}",
        ancestry.len(),
        images.len()
    );
    let mut bytes = 0;
    for id in ancestry.iter().rev() {
        let image = images
            .iter()
            .find(|i| &i.id == id)
            .with_context(|| format!("unknown image {id} in the ancestry"))?;
        let resp = get(format!("{base}/v1/images/{id}/json")).await?;
        ensure!(
            resp.status() == StatusCode::OK,
            "GET json: {}",
            resp.status()
        );
        ensure!(resp.bytes().await? == image.json, "image {id}: other json");
        let sha = verify.then_some(image.layer.sha256.as_str());
        let url = format!("{base}/v1/images/{id}/layer");
        bytes += download(client, &url, None, image.layer.size, sha).await?;
    }
    Ok(bytes)
}

/// A v2 pull of `repo:tag` as today's clients do it: the manifest, the
/// config, each layer (with `verify`, checked against the digests the
/// manifest names). Returns the manifest's digest and the layer bytes.
pub async fn v2_pull(
    client: &Client,
    base: &str,
    repo: &str,
    tag: &str,
    verify: bool,
) -> Result<(String, u64)> {
    let url = format!("{base}/v2/{repo}/manifests/{tag}");
    let resp = client
        .get(&url)
        .header(
            "Accept",
            "application/vnd.oci.image.manifest.v1+json, \
             application/vnd.docker.distribution.manifest.v2+json",
        )
        .send()
        .await?;
    ensure!(
        resp.status() == StatusCode::OK,
        "GET {url}: {}",
        resp.status()
    );
    let digest = resp
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let manifest: serde_json::Value = serde_json::from_slice(&resp.bytes().await?)?;
    let mut blobs = vec![manifest["config"].clone()];
    blobs.extend(manifest["layers"].as_array().cloned().unwrap_or_default());
    let mut bytes = 0;
    for (i, blob) in blobs.iter().enumerate() {
        let digest = blob["digest"]
            .as_str()
            .context("a descriptor without digest")?;
        let size = blob["size"].as_u64().context("a descriptor without size")?;
        let url = format!("{base}/v2/{repo}/blobs/{digest}");
        let sha = verify.then(|| digest.trim_start_matches("sha256:").to_owned());
        let n = download(client, &url, None, size, sha.as_deref()).await?;
        if i > 0 {
            bytes += n;
        }
    }
    Ok((digest, bytes))
}

/// Pushes a blob over v2 in one request (`POST ?digest=`).
pub async fn v2_push_blob(
    client: &Client,
    base: &str,
    repo: &str,
    digest: &str,
    body: Body,
    len: u64,
) -> Result<()> {
    let resp = client
        .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={digest}"))
        .header(CONTENT_LENGTH, len)
        .header("Content-Type", "application/octet-stream")
        .body(body)
        .send()
        .await?;
    expect(resp, &format!("POST blob {digest}"), StatusCode::CREATED).await
}

/// Pushes `images`' layers and a manifest over v2, tagged `tag`.
pub async fn v2_push_image(
    client: &Client,
    base: &str,
    repo: &str,
    tag: &str,
    images: &[Image],
) -> Result<()> {
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for image in images {
        let digest = format!("sha256:{}", image.layer.sha256);
        let body = file_body(&image.layer.path).await?;
        v2_push_blob(client, base, repo, &digest, body, image.layer.size).await?;
        layers.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": digest, "size": image.layer.size,
        }));
        diff_ids.push(digest);
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))?;
    let config_digest = format!("sha256:{}", hex::encode(Sha256::digest(&config)));
    let len = config.len() as u64;
    v2_push_blob(client, base, repo, &config_digest, Body::from(config), len).await?;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": len},
        "layers": layers,
    }))?;
    let resp = client
        .put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest)
        .send()
        .await?;
    expect(resp, "PUT manifest", StatusCode::CREATED).await
}

/// A `Location` header as a URL: distribution answers absolute URLs,
/// registry-v1 paths.
fn absolute(base: &str, location: &str) -> String {
    if location.starts_with('/') {
        format!("{base}{location}")
    } else {
        location.to_owned()
    }
}

fn location(resp: &reqwest::Response, base: &str, what: &str) -> Result<String> {
    let loc = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .with_context(|| format!("{what}: no Location"))?;
    Ok(absolute(base, loc))
}

fn with_query(url: &str, query: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{query}")
}

/// `POST .../blobs/uploads/`: an upload session; answers its URL.
async fn v2_start_upload(client: &Client, base: &str, repo: &str) -> Result<String> {
    v2_start_upload_with(client, base, repo, "").await
}

/// The same `POST`, with a query (`?digest-algorithm=sha512`) when not empty.
async fn v2_start_upload_with(
    client: &Client,
    base: &str,
    repo: &str,
    query: &str,
) -> Result<String> {
    let resp = client
        .post(format!("{base}/v2/{repo}/blobs/uploads/{query}"))
        .header(CONTENT_LENGTH, 0)
        .send()
        .await?;
    let what = format!("POST /v2/{repo}/blobs/uploads/");
    let loc = location(&resp, base, &what);
    expect(resp, &what, StatusCode::ACCEPTED).await?;
    loc
}

/// A blob pushed whole the way docker and containerd push a layer: `POST`
/// an upload, then one `PUT ?digest=` with the whole body, streamed from
/// the file.
pub async fn v2_push_monolithic(
    client: &Client,
    base: &str,
    repo: &str,
    layer: &crate::data::Layer,
) -> Result<()> {
    let upload = v2_start_upload(client, base, repo).await?;
    let digest = format!("sha256:{}", layer.sha256);
    let resp = client
        .put(with_query(&upload, &format!("digest={digest}")))
        .header(CONTENT_LENGTH, layer.size)
        .header("Content-Type", "application/octet-stream")
        .body(file_body(&layer.path).await?)
        .send()
        .await?;
    expect(resp, "PUT blob (monolithic)", StatusCode::CREATED).await
}

/// A blob pushed in `chunk`-byte `PATCH`es, each with its `Content-Range`
/// and following the `Location` of the one before, then an empty `PUT
/// ?digest=`.
pub async fn v2_push_chunked(
    client: &Client,
    base: &str,
    repo: &str,
    layer: &crate::data::Layer,
    chunk: u64,
) -> Result<()> {
    let digest = format!("sha256:{}", layer.sha256);
    v2_push_chunked_as(client, base, repo, layer, chunk, "", &digest).await
}

/// A chunked push whose `POST` carries `post_query` (`?digest-algorithm=sha512`,
/// or empty) and whose last `PUT` names `digest` (`sha256:...`, `sha512:...`):
/// how a client says, or does not say, which hash the upload ends with.
pub async fn v2_push_chunked_as(
    client: &Client,
    base: &str,
    repo: &str,
    layer: &crate::data::Layer,
    chunk: u64,
    post_query: &str,
    digest: &str,
) -> Result<()> {
    use tokio::io::AsyncReadExt;
    let mut upload = v2_start_upload_with(client, base, repo, post_query).await?;
    let mut file = tokio::fs::File::open(&layer.path)
        .await
        .with_context(|| format!("open {}", layer.path.display()))?;
    let mut offset = 0u64;
    while offset < layer.size {
        let n = chunk.min(layer.size - offset);
        let mut buf = vec![0u8; n as usize];
        file.read_exact(&mut buf).await?;
        let resp = client
            .patch(&upload)
            .header(CONTENT_LENGTH, n)
            .header("Content-Type", "application/octet-stream")
            .header("Content-Range", format!("{offset}-{}", offset + n - 1))
            .body(buf)
            .send()
            .await?;
        let what = format!("PATCH {offset}+{n}");
        let next = location(&resp, base, &what);
        expect(resp, &what, StatusCode::ACCEPTED).await?;
        upload = next?;
        offset += n;
    }
    let resp = client
        .put(with_query(&upload, &format!("digest={digest}")))
        .header(CONTENT_LENGTH, 0)
        .send()
        .await?;
    expect(resp, "PUT ?digest= (chunked)", StatusCode::CREATED).await
}

/// A small blob (a config, the empty blob) pushed in one `PUT`.
pub async fn v2_push_bytes(client: &Client, base: &str, repo: &str, data: &[u8]) -> Result<String> {
    let upload = v2_start_upload(client, base, repo).await?;
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(data)));
    let resp = client
        .put(with_query(&upload, &format!("digest={digest}")))
        .header(CONTENT_LENGTH, data.len())
        .header("Content-Type", "application/octet-stream")
        .body(data.to_vec())
        .send()
        .await?;
    expect(resp, "PUT small blob", StatusCode::CREATED).await?;
    Ok(digest)
}

/// `HEAD` of a pushed blob: 200 with its whole length, or an error naming
/// `who` (what pushed it).
pub async fn v2_check_blob(
    client: &Client,
    base: &str,
    repo: &str,
    digest: &str,
    size: u64,
    who: &str,
) -> Result<()> {
    let r = client
        .head(format!("{base}/v2/{repo}/blobs/{digest}"))
        .send()
        .await?;
    let len = r
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    ensure!(
        r.status() == 200 && len == Some(size),
        "{who}: HEAD of the pushed blob: {} length {len:?}",
        r.status()
    );
    Ok(())
}

/// `DELETE` of a blob from a repository (202).
pub async fn v2_delete_blob(client: &Client, base: &str, repo: &str, digest: &str) -> Result<()> {
    let resp = client
        .delete(format!("{base}/v2/{repo}/blobs/{digest}"))
        .send()
        .await?;
    expect(resp, &format!("DELETE blob {digest}"), StatusCode::ACCEPTED).await
}

/// Pushes an OCI image manifest under `tag`; answers its digest.
pub async fn v2_put_manifest(
    client: &Client,
    base: &str,
    repo: &str,
    tag: &str,
    manifest: &[u8],
) -> Result<String> {
    let resp = client
        .put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.to_vec())
        .send()
        .await?;
    expect(resp, "PUT manifest", StatusCode::CREATED).await?;
    Ok(format!("sha256:{}", hex::encode(Sha256::digest(manifest))))
}

//! The layers the suite moves: random bytes (as incompressible as a real
//! gzipped layer), written once to a file, and the image JSON and checksum
//! that go with them.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rand::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};

/// A layer on disk and what a client sends with it.
#[derive(Debug, Clone)]
pub struct Layer {
    pub path: PathBuf,
    pub size: u64,
    /// `sha256` of the layer bytes alone, hex: to check pulled bytes.
    pub sha256: String,
}

/// An image ready to push: its JSON, its layer, and the checksum a v1
/// client sends, `sha256(json + "\n" + layer)`.
#[derive(Debug, Clone)]
pub struct Image {
    pub id: String,
    pub json: Vec<u8>,
    pub layer: Layer,
    pub checksum: String,
}

/// Writes `size` random bytes (the same bytes for the same `seed`) to `path`.
pub fn write_layer(path: &Path, size: u64, seed: u64) -> Result<Layer> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let file = File::create(path).with_context(|| format!("create {}", path.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut hasher = Sha256::new();
    let mut block = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        rng.fill_bytes(&mut block[..n]);
        hasher.update(&block[..n]);
        out.write_all(&block[..n])?;
        left -= n as u64;
    }
    out.flush()?;
    Ok(Layer {
        path: path.to_owned(),
        size,
        sha256: hex::encode(hasher.finalize()),
    })
}

/// A 64-hex image id, distinct for each `(run, n)`.
pub fn image_id(run: u64, n: u64) -> String {
    let digest = Sha256::digest(format!("registry-v1 bench image {run} {n}"));
    hex::encode(digest)
}

/// The JSON of an image as docker 1.x pushed it, with an optional parent.
pub fn image_json(id: &str, parent: Option<&str>, size: u64) -> Vec<u8> {
    let mut json = serde_json::json!({
        "id": id,
        "created": "2014-10-13T21:19:18.674353812Z",
        "container_config": {"Cmd": ["/bin/sh", "-c", "#(nop) ADD file in /"]},
        "docker_version": "1.3.0",
        "architecture": "amd64",
        "os": "linux",
        "Size": size,
    });
    if let Some(parent) = parent {
        json["parent"] = parent.into();
    }
    json.to_string().into_bytes()
}

/// Builds the image whose layer is `layer`: the checksum hashes the JSON
/// and then reads the layer file once.
pub fn image(id: &str, parent: Option<&str>, layer: &Layer) -> Result<Image> {
    let json = image_json(id, parent, layer.size);
    let mut hasher = Sha256::new();
    hasher.update(&json);
    hasher.update(b"\n");
    let mut file =
        File::open(&layer.path).with_context(|| format!("open {}", layer.path.display()))?;
    std::io::copy(&mut file, &mut hasher)?;
    Ok(Image {
        id: id.to_owned(),
        json,
        layer: layer.clone(),
        checksum: format!("sha256:{}", hex::encode(hasher.finalize())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_are_reproducible_and_checksums_match_the_v1_rule() {
        let dir = tempfile::tempdir().unwrap();
        let a = write_layer(&dir.path().join("a"), 3 << 20 | 5, 7).unwrap();
        let b = write_layer(&dir.path().join("b"), 3 << 20 | 5, 7).unwrap();
        assert_eq!(a.sha256, b.sha256);
        assert_eq!(std::fs::metadata(&a.path).unwrap().len(), 3 << 20 | 5);
        let id = image_id(1, 2);
        assert_eq!(id.len(), 64);
        let img = image(&id, None, &a).unwrap();
        let mut expected = img.json.clone();
        expected.push(b'\n');
        expected.extend(std::fs::read(&a.path).unwrap());
        assert_eq!(
            img.checksum,
            format!("sha256:{}", hex::encode(Sha256::digest(&expected)))
        );
    }
}

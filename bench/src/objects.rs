//! The S3-compatible server seen directly, without the registry: bucket
//! set-up, listings, clean-up, and presigned URLs so that the raw GET/PUT
//! baseline goes through the very client the registry figures use.

use anyhow::{Context, Result};
use s3::creds::Credentials;
use s3::{Bucket, BucketConfiguration, Region};

pub const ACCESS_KEY: &str = "bench-access-key";
pub const SECRET_KEY: &str = "bench-secret-key";
pub const REGION: &str = "us-east-1";

pub struct ObjectStore {
    bucket: Box<Bucket>,
}

/// How long a presigned URL stays valid: longer than any run.
const PRESIGN_SECS: u32 = 6 * 3600;

impl ObjectStore {
    /// Creates `name` on the server at `port` (path-style addressing).
    pub async fn create(port: u16, name: &str) -> Result<ObjectStore> {
        let region = Region::Custom {
            region: REGION.into(),
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let creds = Credentials::new(Some(ACCESS_KEY), Some(SECRET_KEY), None, None, None)?;
        let created =
            Bucket::create_with_path_style(name, region, creds, BucketConfiguration::default())
                .await
                .with_context(|| format!("create bucket {name}"))?;
        anyhow::ensure!(
            created.success(),
            "create bucket {name}: {} {}",
            created.response_code,
            created.response_text
        );
        Ok(ObjectStore {
            bucket: created.bucket,
        })
    }

    pub async fn get_url(&self, key: &str) -> Result<String> {
        Ok(self.bucket.presign_get(key, PRESIGN_SECS, None).await?)
    }

    pub async fn put_url(&self, key: &str) -> Result<String> {
        Ok(self
            .bucket
            .presign_put(key, PRESIGN_SECS, None, None)
            .await?)
    }

    pub async fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        let resp = self.bucket.put_object(key, data).await?;
        anyhow::ensure!(
            resp.status_code() == 200,
            "PUT {key}: {}",
            resp.status_code()
        );
        Ok(())
    }

    /// Every key under `prefix`.
    pub async fn keys(&self, prefix: &str) -> Result<Vec<String>> {
        let pages = self.bucket.list(prefix.to_owned(), None).await?;
        Ok(pages
            .into_iter()
            .flat_map(|p| p.contents)
            .map(|o| o.key)
            .collect())
    }

    /// Deletes every key under `prefix`.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<()> {
        for key in self.keys(prefix).await? {
            self.bucket.delete_object(&key).await?;
        }
        Ok(())
    }
}

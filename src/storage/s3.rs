//! INTERIM placeholder: the S3 driver is being written (issue 3).
use super::*;

pub struct S3Storage;

impl S3Storage {
    pub async fn new(_s3: &crate::config::S3Settings, _prefix: &str) -> anyhow::Result<Self> {
        anyhow::bail!("S3 storage not built yet")
    }
}

#[async_trait(?Send)]
impl Storage for S3Storage {
    fn name(&self) -> &'static str {
        "s3"
    }
    async fn get(&self, p: &str) -> Result<Bytes> {
        Err(StorageError::NotFound(p.into()))
    }
    async fn put(&self, p: &str, _d: Bytes) -> Result<()> {
        Err(StorageError::Unavailable(p.into()))
    }
    async fn put_stream(&self, p: &str, _b: ByteStream) -> Result<u64> {
        Err(StorageError::Unavailable(p.into()))
    }
    async fn get_stream(&self, p: &str, _r: Option<ByteRange>) -> Result<ByteStream> {
        Err(StorageError::NotFound(p.into()))
    }
    async fn size(&self, p: &str) -> Result<u64> {
        Err(StorageError::NotFound(p.into()))
    }
    async fn exists(&self, _p: &str) -> Result<bool> {
        Ok(false)
    }
    async fn list(&self, p: &str) -> Result<Vec<String>> {
        Err(StorageError::NotFound(p.into()))
    }
    async fn remove(&self, p: &str) -> Result<()> {
        Err(StorageError::NotFound(p.into()))
    }
}

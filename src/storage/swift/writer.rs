//! A file written across requests (an upload in progress): segments sent
//! as they fill, and one state object beside the file (`<path>.writer`)
//! naming them, with the closed bytes too few for a segment; any instance
//! resumes from it. The commit writes the manifest: the file appears
//! whole.

use bytes::{Bytes, BytesMut};

use super::{
    segment_name, segment_size, Segment, SwiftStorage, MAX_SEGMENTS, MIN_SEGMENT, WRITER_SUFFIX,
};
use crate::storage::{FileWriter, Result, StorageError};

/// The upload and the segments sent to it, in order.
#[derive(serde::Serialize, serde::Deserialize)]
struct State {
    upload: String,
    segments: Vec<Segment>,
}

impl State {
    /// The state as one line of JSON, then the tail's bytes.
    fn encode(&self, tail: &[u8]) -> Vec<u8> {
        let mut out = serde_json::to_vec(self).expect("plain JSON");
        out.push(b'\n');
        out.extend_from_slice(tail);
        out
    }

    fn decode(data: &Bytes) -> Option<(Self, Bytes)> {
        let end = data.iter().position(|&b| b == b'\n')?;
        let state = serde_json::from_slice(&data[..end]).ok()?;
        Some((state, data.slice(end + 1..)))
    }

    fn sent(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }
}

struct SwiftWriter {
    storage: SwiftStorage,
    path: String,
    key: String,
    state_key: String,
    state: State,
    sent: u64,
    /// The bytes after the sent segments, fewer than one segment.
    buffer: BytesMut,
}

async fn read_state(storage: &SwiftStorage, path: &str, state_key: &str) -> Result<(State, Bytes)> {
    let state_path = format!("{path}{WRITER_SUFFIX}");
    let response = storage
        .send(
            reqwest::Method::GET,
            &storage.main_object(state_key),
            &[],
            None,
        )
        .await?;
    let response = SwiftStorage::expect_success(&state_path, response).await?;
    let data = response
        .bytes()
        .await
        .map_err(|e| StorageError::Unavailable(format!("swift GET {state_path}: {e}")))?;
    State::decode(&data).ok_or_else(|| StorageError::Io {
        path: state_path,
        source: std::io::Error::other("a writer state that does not parse"),
    })
}

/// Deletes the segments the writer of the file at `key` sent (its state
/// object about to go: a folder of uploads removed).
pub async fn drop_segments(storage: &SwiftStorage, path: &str, key: &str) -> Result<()> {
    let state_key = format!("{key}{WRITER_SUFFIX}");
    match read_state(storage, path, &state_key).await {
        Ok((state, _)) => storage.drop_upload(path, key, &state.upload).await,
        Err(StorageError::NotFound(_)) => Ok(()),
        // A state that does not parse names no upload to drop.
        Err(StorageError::Io { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

pub async fn open(
    storage: &SwiftStorage,
    path: &str,
    resume: Option<u64>,
) -> Result<Box<dyn FileWriter>> {
    let key = storage.key(path)?;
    let state_key = format!("{key}{WRITER_SUFFIX}");
    let Some(n) = resume else {
        // A file in progress here before is dropped, segments and all.
        match read_state(storage, path, &state_key).await {
            Ok((old, _)) => storage.drop_upload(path, &key, &old.upload).await?,
            Err(StorageError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let writer = SwiftWriter {
            storage: storage.clone(),
            path: path.to_owned(),
            key,
            state_key,
            state: State {
                upload: crate::storage::lease::token(),
                segments: Vec::new(),
            },
            sent: 0,
            buffer: BytesMut::new(),
        };
        // Recorded at once, so that segments sent and never closed belong
        // to an upload `cancel` or a later writer finds.
        writer.save().await?;
        return Ok(Box::new(writer));
    };
    let (mut state, tail) = read_state(storage, path, &state_key).await?;
    let segments = state.segments.iter().map(|s| s.size);
    let (keep, kept) =
        crate::storage::resume_point(segments, tail.len() as u64, n).map_err(|size| {
            StorageError::InvalidRange {
                path: path.to_owned(),
                size,
            }
        })?;
    state.segments.truncate(keep);
    let buffer = BytesMut::from(&tail[..kept as usize]);
    Ok(Box::new(SwiftWriter {
        storage: storage.clone(),
        path: path.to_owned(),
        key,
        state_key,
        sent: state.sent(),
        state,
        buffer,
    }))
}

impl SwiftWriter {
    /// Sends the buffer as the next segment; kept until it is in, so that
    /// a failed one can be sent again.
    async fn send_segment(&mut self) -> Result<()> {
        let index = self.state.segments.len();
        if index >= MAX_SEGMENTS {
            return Err(StorageError::Io {
                path: self.path.clone(),
                source: std::io::Error::other(format!(
                    "larger than {MAX_SEGMENTS} segments, the most Swift joins"
                )),
            });
        }
        let name = segment_name(&self.key, &self.state.upload, index);
        let data = self.buffer.split().freeze();
        let segment = match self
            .storage
            .put_segment(&self.path, &name, data.clone())
            .await
        {
            Ok(segment) => segment,
            Err(e) => {
                self.buffer = BytesMut::from(&data[..]);
                return Err(e);
            }
        };
        self.sent += segment.size;
        self.state.segments.push(segment);
        Ok(())
    }

    async fn save(&self) -> Result<()> {
        let state = self.state.encode(&self.buffer);
        self.storage
            .put_key(&self.path, &self.state_key, Bytes::from(state))
            .await
    }
}

#[async_trait::async_trait(?Send)]
impl FileWriter for SwiftWriter {
    fn size(&self) -> u64 {
        self.sent + self.buffer.len() as u64
    }

    async fn write(&mut self, mut data: Bytes) -> Result<()> {
        loop {
            let target = segment_size(self.state.segments.len());
            if self.buffer.len() >= target {
                self.send_segment().await?;
                continue;
            }
            if data.is_empty() {
                return Ok(());
            }
            let take = (target - self.buffer.len()).min(data.len());
            self.buffer.extend_from_slice(&data.split_to(take));
        }
    }

    async fn close(mut self: Box<Self>) -> Result<u64> {
        // What the state object keeps stays under one small segment.
        if self.buffer.len() >= MIN_SEGMENT {
            self.send_segment().await?;
        }
        self.save().await?;
        Ok(self.size())
    }

    async fn commit(mut self: Box<Self>) -> Result<u64> {
        let size = self.size();
        let s = self.storage.clone();
        if self.state.segments.is_empty() {
            // Less than a segment in all: one PUT, atomic by itself.
            let data = self.buffer.split().freeze();
            s.replace(&self.path, data).await?;
        } else {
            if !self.buffer.is_empty() {
                self.send_segment().await?;
            }
            s.put_manifest(&self.path, &self.key, &self.state.segments)
                .await?;
        }
        // Segments a writer sent past its last close, and never closed,
        // or before the offset it was resumed at, are not in the file:
        // they go (a failure leaves them, logged: the file is whole).
        let prefix = format!("{}/{}/", self.key, self.state.upload);
        let named: std::collections::HashSet<String> = self
            .state
            .segments
            .iter()
            .map(|segment| segment.path.trim_start_matches('/').to_owned())
            .collect();
        match s.list_all(&s.0.segments, &prefix, false).await {
            Ok(listed) => {
                let unused: Vec<String> = listed
                    .iter()
                    .map(|l| format!("{}/{}", s.0.segments, l.name()))
                    .filter(|name| !named.contains(name))
                    .collect();
                s.drop_unused(&self.path, &unused).await;
            }
            Err(e) => log::warn!("swift: unused segments of {} left: {e}", self.path),
        }
        let state_path = format!("{}{WRITER_SUFFIX}", self.path);
        match s
            .delete_object(&state_path, &s.main_object(&self.state_key))
            .await
        {
            Ok(()) | Err(StorageError::NotFound(_)) => Ok(size),
            Err(e) => Err(e),
        }
    }

    async fn cancel(self: Box<Self>) -> Result<()> {
        let s = &self.storage;
        s.drop_upload(&self.path, &self.key, &self.state.upload)
            .await?;
        let state_path = format!("{}{WRITER_SUFFIX}", self.path);
        match s
            .delete_object(&state_path, &s.main_object(&self.state_key))
            .await
        {
            Ok(()) | Err(StorageError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

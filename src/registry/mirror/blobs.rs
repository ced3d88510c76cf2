//! Blobs through the cache: fetched from the upstream once however many
//! clients ask at once, hashed and stored as they stream to the first
//! client, and kept only when their digest checks out. The last block
//! reaches that client right after the check (not after the blob is made
//! durable), so a body that is not the blob never arrives whole.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot, watch};

use super::{Mirror, Pick, Result, Route};
use crate::registry::bridge::{self, BlobSource};
use crate::registry::oci::{self, blobs, links, uploads, Digest, Name};
use crate::storage::{ByteStream, Storage};
use crate::upstream::UpstreamError;

/// How a fetch ended, for the clients that waited on it.
type Outcome = Option<Result<(), String>>;

/// The fetches under way, by stored repository and digest.
#[derive(Default)]
pub struct Fetches(Arc<Mutex<HashMap<String, watch::Receiver<Outcome>>>>);

impl Fetches {
    /// Ends the fetch of `key`: removed before the waiters wake, so that a
    /// request after this one starts afresh (or finds the blob stored).
    fn finish(&self, key: &str, done: &watch::Sender<Outcome>, outcome: Result<(), String>) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
        let _ = done.send(Some(outcome));
    }
}

/// A blob to answer with.
pub enum Answer {
    /// Stored: served as any blob is.
    Stored(BlobSource),
    /// On its way from the upstream to this client and to storage.
    Streaming {
        length: Option<u64>,
        body: ByteStream,
    },
}

/// Blocks buffered between the upstream and the first client; a client
/// slower than the upstream slows the fetch, within the upstream's timeout
/// (see [`tee`]).
const QUEUED_BLOCKS: usize = 16;

impl Mirror {
    /// `GET`/`HEAD /v2/<name>/blobs/<digest>[?ns=]`: this registry's own
    /// blob, else the cache's. `stream`: the client wants the body whole
    /// (a GET without `Range`), so a fetch may feed it as it goes.
    pub async fn blob(
        &self,
        storage: &Arc<dyn Storage>,
        name: &Name,
        ns: Option<&str>,
        digest: &Digest,
        stream: bool,
    ) -> Result<(Answer, Option<super::Freshness>, Option<String>)> {
        let route = match self.pick(name, ns)? {
            Pick::Local => None,
            Pick::Cache(route) => Some(route),
            Pick::Fallback(route) => match bridge::blob(&**storage, name, digest).await {
                Ok(source) => return Ok((Answer::Stored(source), None, None)),
                Err(oci::Error::BlobUnknown(_)) => Some(route),
                Err(e) => return Err(e.into()),
            },
        };
        let Some(route) = route else {
            let source = bridge::blob(&**storage, name, digest).await?;
            return Ok((Answer::Stored(source), None, None));
        };
        let namespace = route.namespace.clone();
        let (answer, freshness) = self.cached_blob(storage, &route, digest, stream).await?;
        route.count("blob", freshness);
        Ok((answer, Some(freshness), namespace))
    }

    async fn cached_blob(
        &self,
        storage: &Arc<dyn Storage>,
        route: &Route<'_>,
        digest: &Digest,
        stream: bool,
    ) -> Result<(Answer, super::Freshness)> {
        use super::Freshness::{Hit, Miss};
        match bridge::blob(&**storage, &route.local, digest).await {
            Ok(source) => return Ok((Answer::Stored(source), Hit)),
            Err(oci::Error::BlobUnknown(_)) => {}
            Err(e) => return Err(e.into()),
        }
        // Another repository's copy (a base layer of many images): linked,
        // not fetched again.
        if storage
            .exists(&links::blob_data(digest))
            .await
            .map_err(oci::Error::from)?
        {
            blobs::link(&**storage, &route.local, digest).await?;
            return Ok((Answer::Stored(stored(storage, route, digest).await?), Hit));
        }
        let key = format!("{}@{digest}", route.local);
        let joined = {
            let mut fetches = self.fetches.0.lock().unwrap_or_else(|e| e.into_inner());
            match fetches.get(&key) {
                Some(outcome) => Err(outcome.clone()),
                None => {
                    let (done, outcome) = watch::channel(None);
                    fetches.insert(key.clone(), outcome);
                    Ok(done)
                }
            }
        };
        match joined {
            Err(outcome) => {
                wait(outcome)
                    .await
                    .map_err(|e| route.upstream_error(UpstreamError::Unavailable(e)))?;
                Ok((Answer::Stored(stored(storage, route, digest).await?), Miss))
            }
            Ok(done) => {
                let started = self
                    .start_fetch(storage, route, digest, done, key, stream)
                    .await?;
                match started {
                    Some((length, body)) => Ok((Answer::Streaming { length, body }, Miss)),
                    None => Ok((Answer::Stored(stored(storage, route, digest).await?), Miss)),
                }
            }
        }
    }

    /// Asks the upstream for the blob and stores it in a task of its own,
    /// which goes on when the client leaves. Returns the body for this
    /// client when it wants one, else waits for the blob to be stored.
    async fn start_fetch(
        &self,
        storage: &Arc<dyn Storage>,
        route: &Route<'_>,
        digest: &Digest,
        done: watch::Sender<Outcome>,
        key: String,
        stream: bool,
    ) -> Result<Option<(Option<u64>, ByteStream)>> {
        let fetches = Fetches(self.fetches.0.clone());
        let outcome = done.subscribe();
        let blob = match route
            .upstream
            .client
            .blob(&route.remote, &digest.to_string())
            .await
        {
            Ok(blob) => blob,
            Err(e) => {
                fetches.finish(&key, &done, Err(e.to_string()));
                return Err(match e {
                    UpstreamError::NotFound => oci::Error::BlobUnknown(digest.clone()).into(),
                    e => route.upstream_error(e),
                });
            }
        };
        let length = blob.length;
        let (to_client, from_fetch) = if stream {
            let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(QUEUED_BLOCKS);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        // The client's one sender, shared by the tee and the task below:
        // its body ends when the sender goes, and whoever gives up on the
        // client drops it, so that no later block leaves a hole.
        let client: ToClient = Rc::new(RefCell::new(to_client));
        let held: Rc<RefCell<Option<Bytes>>> = Rc::default();
        let fetched = crate::metrics::get()
            .mirror_fetched_bytes
            .with_label_values(&[route.upstream.settings.name.as_str()]);
        let patience = route.upstream.client.timeout();
        let tee = tee(blob.stream, client.clone(), held.clone(), fetched, patience);
        let storage = storage.clone();
        let local = route.local.clone();
        let digest = digest.clone();
        let upstream = route.upstream.settings.url.clone();
        actix_web::rt::spawn(async move {
            // The last block goes as soon as the digest checks out: the
            // client does not wait for the blob to be made durable and
            // linked.
            let (checked, heard) = oneshot::channel();
            let release = async {
                if heard.await.is_ok() {
                    let tx = client.borrow_mut().take();
                    let last = held.borrow_mut().take();
                    if let (Some(tx), Some(last)) = (tx, last) {
                        let _ = tokio::time::timeout(patience, tx.send(Ok(last))).await;
                    }
                }
            };
            // The waiting requests hear as soon as the blob is stored, not
            // after this client has taken its last block.
            let store = async {
                let stored =
                    uploads::push(&*storage, &local, &digest, length, tee, Some(checked)).await;
                let outcome = stored.map(|_| ()).map_err(|e| {
                    log::warn!(
                        "pull-through cache: {digest} of {local} from {upstream} not kept: {e}"
                    );
                    e.to_string()
                });
                fetches.finish(&key, &done, outcome.clone());
                if let Err(e) = outcome {
                    let tx = client.borrow_mut().take();
                    if let Some(tx) = tx {
                        let failed = std::io::Error::other(format!("the upstream's blob: {e}"));
                        let _ = tokio::time::timeout(patience, tx.send(Err(failed))).await;
                    }
                }
            };
            futures_util::join!(store, release);
        });
        match from_fetch {
            Some(rx) => {
                let body = futures_util::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|block| (block, rx))
                });
                Ok(Some((length, Box::pin(body))))
            }
            None => {
                wait(outcome)
                    .await
                    .map_err(|e| route.upstream_error(UpstreamError::Unavailable(e)))?;
                Ok(None)
            }
        }
    }
}

/// The sender of a client's body, while the fetch still feeds it.
type ToClient = Rc<RefCell<Option<mpsc::Sender<std::io::Result<Bytes>>>>>;

/// The upstream's body on its way to storage, each block also sent to the
/// client one block late: the last one waits in `held` for the digest
/// check. A client that leaves its blocks unread for `patience` (the
/// upstream's timeout: as long as the upstream may keep it waiting) is let
/// go: its sender is dropped, its body ends short, the fetch goes on for
/// storage and for the requests waiting on it.
fn tee(
    upstream: std::pin::Pin<Box<dyn futures_util::Stream<Item = std::io::Result<Bytes>> + Send>>,
    client: ToClient,
    held: Rc<RefCell<Option<Bytes>>>,
    fetched: prometheus::IntCounter,
    patience: Duration,
) -> ByteStream {
    let state = (upstream, client, held, fetched);
    Box::pin(futures_util::stream::unfold(
        state,
        move |(mut upstream, client, held, fetched)| async move {
            let block = upstream.next().await?;
            if let Ok(block) = &block {
                fetched.inc_by(block.len() as u64);
                let previous = held.borrow_mut().replace(block.clone());
                let tx = client.borrow().clone();
                if let (Some(tx), Some(previous)) = (tx, previous) {
                    let sent = tokio::time::timeout(patience, tx.send(Ok(previous))).await;
                    if !matches!(sent, Ok(Ok(()))) {
                        client.borrow_mut().take();
                    }
                }
            }
            Some((block, (upstream, client, held, fetched)))
        },
    ))
}

async fn wait(mut outcome: watch::Receiver<Outcome>) -> Result<(), String> {
    loop {
        if let Some(result) = outcome.borrow().clone() {
            return result;
        }
        if outcome.changed().await.is_err() {
            return Err("the fetch ended without a word".into());
        }
    }
}

async fn stored(
    storage: &Arc<dyn Storage>,
    route: &Route<'_>,
    digest: &Digest,
) -> Result<BlobSource> {
    Ok(bridge::blob(&**storage, &route.local, digest).await?)
}

//! Fit inputs that stay on the worker process that made them, and the
//! connections between worker processes that fetch them.
//!
//! A chain task whose stage feeds a gather fit, on a worker process that keeps
//! the partition's output too, keeps its rows for the fit where they were made
//! ([`KeptInputs`]) and sends the scheduler only where they are
//! ([`crate::exec::KeptInput`]). The fit's worker fetches them from their
//! holders ([`fetch_inputs`]), so a gather fit's inputs never pass through the
//! scheduler's process. Each worker process listens for its peers
//! ([`serve_peers`]) on the address by which it reaches the scheduler; a peer
//! proves it holds the cluster secret with the scheduler's own handshake, and
//! the connection is sealed beyond loopback (or when the scheduler's is).

use crate::exec::Contribution;
use crate::wire::auth::{build_identity, Secret};
use crate::wire::frame::encode_message;
use crate::wire::handshake::{scheduler_side, worker_side, Channel, WorkerIdentity};
use crate::wire::session::is_loopback;
use crate::wire::WireError;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Which rows: a partition's, made by a run's stage for the fit it feeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct InputKey {
    /// The run (scheduler-local id).
    pub run: u32,
    /// The stage that feeds the fit.
    pub stage: u16,
    /// The partition.
    pub partition: u32,
}

/// The fit inputs a worker process keeps for its peers, shared by its executor
/// (which keeps them) and its peer server (which serves them).
#[derive(Clone, Debug, Default)]
pub struct KeptInputs(Arc<Mutex<HashMap<InputKey, Arc<Contribution>>>>);

impl KeptInputs {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<InputKey, Arc<Contribution>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `rows` under `key` (a rebuilt partition's replace the earlier).
    pub fn keep(&self, key: InputKey, rows: impl Into<Arc<Contribution>>) {
        self.map().insert(key, rows.into());
    }

    /// The rows under `key`, when kept here.
    pub fn get(&self, key: &InputKey) -> Option<Arc<Contribution>> {
        self.map().get(key).cloned()
    }

    /// Takes the rows under `key` out (the fit's own worker, the last to need
    /// them).
    pub fn take(&self, key: &InputKey) -> Option<Arc<Contribution>> {
        self.map().remove(key)
    }

    /// Drops the rows of `run` (of its stage `stage` only, when given): their
    /// fit has its model, or the run ended.
    pub fn drop_run(&self, run: u32, stage: Option<u16>) {
        self.map()
            .retain(|k, _| k.run != run || stage.is_some_and(|s| s != k.stage));
    }

    /// How many inputs are kept.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A peer's request: these inputs, in this order.
#[derive(Debug, Serialize, Deserialize)]
struct PeerAsk {
    keys: Vec<InputKey>,
}

/// One input as it goes to a peer (`None`: not kept here).
#[derive(Serialize)]
struct PeerGiveRef<'a>(Option<&'a Contribution>);

/// One input as a peer receives it.
#[derive(Deserialize)]
struct PeerGive(Option<Contribution>);

/// How long a peer may take for its handshake, and for each frame after it.
const PEER_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves the inputs in `store` to peers connecting to `listener`, until the
/// task is dropped. `sealed`: seal every connection (else only those beyond
/// loopback).
pub async fn serve_peers(
    listener: tokio::net::TcpListener,
    secret: Secret,
    store: KeptInputs,
    max_message: u64,
    sealed: bool,
) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let (secret, store) = (secret.clone(), store.clone());
        let seal = sealed || !is_loopback(peer.ip());
        tokio::spawn(async move {
            if let Err(e) = serve_peer(stream, &secret, &store, max_message, seal).await {
                tracing::debug!(%peer, error = %e, "a peer's fetch ended");
            }
        });
    }
}

async fn serve_peer(
    mut stream: tokio::net::TcpStream,
    secret: &Secret,
    store: &KeptInputs,
    max_message: u64,
    sealed: bool,
) -> Result<(), WireError> {
    let _ = stream.set_nodelay(true);
    let handshake = scheduler_side(
        &mut stream,
        secret,
        build_identity(),
        0,
        sealed,
        max_message,
    );
    let admitted = tokio::time::timeout(PEER_TIMEOUT, handshake)
        .await
        .map_err(|_| WireError::Timeout)??;
    let Channel {
        mut outbound,
        mut inbound,
        ..
    } = admitted.channel;
    let ask: PeerAsk = inbound
        .read_msg_with(&mut stream, max_message, Some(PEER_TIMEOUT), &mut || {})
        .await?;
    for key in ask.keys {
        let rows = store.get(&key);
        // A large input is encoded off the event loop, which also carries the
        // worker's heartbeats to the scheduler.
        let message = tokio::task::spawn_blocking(move || {
            encode_message(&PeerGiveRef(rows.as_deref()), max_message)
        })
        .await
        .map_err(|e| WireError::Garbage(e.to_string()))??;
        outbound.write_message(&mut stream, message).await?;
    }
    stream.flush().await?;
    Ok(())
}

/// Fetches the inputs `keys` from the peer at `addr`, in order; an input the
/// peer does not keep is an error naming it.
pub async fn fetch_inputs(
    addr: &str,
    secret: &Secret,
    keys: Vec<InputKey>,
    max_message: u64,
) -> Result<Vec<Contribution>, String> {
    let fail = |why: String| format!("fetching fit inputs from the worker at {addr}: {why}");
    let connect = tokio::net::TcpStream::connect(addr);
    let mut stream = tokio::time::timeout(PEER_TIMEOUT, connect)
        .await
        .map_err(|_| fail("no connection in time".into()))?
        .map_err(|e| fail(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr().map_err(|e| fail(e.to_string()))?.ip();
    let me = WorkerIdentity {
        name: format!("peer-{}", std::process::id()),
        resources: crate::resources::Resources::none(),
        queue: None,
        job: None,
        label: None,
        memory: None,
    };
    let handshake = worker_side(&mut stream, peer, secret, build_identity(), me);
    let (_, channel) = tokio::time::timeout(PEER_TIMEOUT, handshake)
        .await
        .map_err(|_| fail("no handshake in time".into()))?
        .map_err(|e| fail(e.to_string()))?;
    let Channel {
        mut outbound,
        mut inbound,
        ..
    } = channel;
    let n = keys.len();
    let ask = encode_message(&PeerAsk { keys: keys.clone() }, max_message)
        .map_err(|e| fail(e.to_string()))?;
    outbound
        .write_message(&mut stream, ask)
        .await
        .map_err(|e| fail(e.to_string()))?;
    stream.flush().await.map_err(|e| fail(e.to_string()))?;
    let mut out = Vec::with_capacity(n);
    for key in keys {
        let PeerGive(rows) = inbound
            .read_msg_with(&mut stream, max_message, Some(PEER_TIMEOUT), &mut || {})
            .await
            .map_err(|e| fail(e.to_string()))?;
        out.push(rows.ok_or_else(|| {
            fail(format!(
                "it does not keep partition {} of stage {} (run {})",
                key.partition, key.stage, key.run
            ))
        })?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayD, IxDyn};

    fn rows(v: f64, n: usize) -> Contribution {
        Contribution::Data {
            x: ArrayD::from_elem(IxDyn(&[n, 3]), v),
            extra: crate::estimator::Extra::none(),
        }
    }

    fn key(partition: u32) -> InputKey {
        InputKey {
            run: 1,
            stage: 2,
            partition,
        }
    }

    async fn server(store: KeptInputs, secret: Secret) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(serve_peers(listener, secret, store, 1 << 30, false));
        addr
    }

    #[tokio::test]
    async fn a_peer_fetches_kept_inputs_in_order_and_is_told_which_one_is_missing() {
        let store = KeptInputs::default();
        store.keep(key(0), rows(1.0, 2));
        // Over one frame: it streams.
        store.keep(key(1), rows(2.0, 400_000));
        let secret = Secret::generate();
        let addr = server(store.clone(), secret.clone()).await;
        let got = fetch_inputs(&addr, &secret, vec![key(1), key(0)], 1 << 30)
            .await
            .unwrap();
        let firsts: Vec<(usize, f64)> = got
            .iter()
            .map(|c| match c {
                Contribution::Data { x, .. } => (x.shape()[0], x.iter().next().copied().unwrap()),
                _ => panic!("rows expected"),
            })
            .collect();
        assert_eq!(firsts, [(400_000, 2.0), (2, 1.0)]);
        let err = fetch_inputs(&addr, &secret, vec![key(0), key(7)], 1 << 30)
            .await
            .unwrap_err();
        assert!(err.contains("partition 7 of stage 2"), "{err}");
        assert!(err.contains(&addr), "{err}");
        // Dropped with their fit: gone.
        store.drop_run(1, Some(2));
        assert!(store.is_empty());
    }

    #[tokio::test]
    async fn a_peer_without_the_secret_gets_nothing() {
        let store = KeptInputs::default();
        store.keep(key(0), rows(1.0, 2));
        let addr = server(store, Secret::generate()).await;
        let err = fetch_inputs(&addr, &Secret::generate(), vec![key(0)], 1 << 30)
            .await
            .unwrap_err();
        assert!(err.contains("secret"), "{err}");
    }

    #[test]
    fn dropping_a_runs_inputs_keeps_other_runs_and_stages() {
        let store = KeptInputs::default();
        store.keep(key(0), rows(1.0, 1));
        store.keep(InputKey { stage: 3, ..key(0) }, rows(1.0, 1));
        store.keep(InputKey { run: 2, ..key(0) }, rows(1.0, 1));
        store.drop_run(1, Some(2));
        assert_eq!(store.len(), 2);
        store.drop_run(1, None);
        assert_eq!(store.len(), 1);
        assert!(store.get(&InputKey { run: 2, ..key(0) }).is_some());
    }
}

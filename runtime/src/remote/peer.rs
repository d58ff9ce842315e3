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

pub use super::peer_pool::PeerPool;
use crate::batch::Batch;
use crate::exec::Contribution;
use crate::wire::auth::{build_identity, Secret};
use crate::wire::handshake::{scheduler_side, Channel};
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

/// What a worker process keeps for its peers, by key: shared by its executor
/// (which puts things on it) and its peer server (which serves them).
#[derive(Debug)]
pub struct Shelf<K, V>(Arc<Mutex<HashMap<K, V>>>);

impl<K, V> Clone for Shelf<K, V> {
    fn clone(&self) -> Self {
        Shelf(self.0.clone())
    }
}

impl<K, V> Default for Shelf<K, V> {
    fn default() -> Self {
        Shelf(Arc::default())
    }
}

impl<K: std::hash::Hash + Eq, V: Clone> Shelf<K, V> {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<K, V>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts `value` under `key` (replacing an earlier one).
    pub fn put(&self, key: K, value: V) {
        self.map().insert(key, value);
    }

    /// The value under `key`, when there is one.
    pub fn get(&self, key: &K) -> Option<V> {
        self.map().get(key).cloned()
    }

    /// Takes the value under `key` off the shelf.
    pub fn take(&self, key: &K) -> Option<V> {
        self.map().remove(key)
    }

    /// Keeps only what `keep` says.
    pub fn retain(&self, mut keep: impl FnMut(&K) -> bool) {
        self.map().retain(|k, _| keep(k));
    }

    /// How many things are on it.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The rows a worker process keeps for gather fits.
pub type KeptInputs = Shelf<InputKey, Arc<Contribution>>;

/// The partitions a worker process holds between stages, by (run, partition):
/// its next stage runs here, or on a peer that fetches it (taking it).
pub type HeldPartitions = Shelf<(u32, u32), Arc<Batch>>;

impl KeptInputs {
    /// Drops the rows of `run` (of its stage `stage` only, when given): their
    /// fit has its model, or the run ended.
    pub fn drop_run(&self, run: u32, stage: Option<u16>) {
        self.retain(|k| k.run != run || stage.is_some_and(|s| s != k.stage));
    }
}

/// What a worker process serves its peers.
#[derive(Clone, Debug, Default)]
pub struct PeerStores {
    /// Rows kept for gather fits (served, kept until dropped).
    pub rows: KeptInputs,
    /// Partitions held between stages (served once: the fetching peer runs the
    /// next stage).
    pub held: HeldPartitions,
}

/// A peer's request.
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum PeerAsk {
    /// These rows, in this order.
    Rows(Vec<InputKey>),
    /// These held partitions (run, partition), in this order; each is handed
    /// over (no longer held here).
    Partitions(Vec<(u32, u32)>),
}

/// One thing as it goes to a peer and as the peer receives it (`None`: not
/// here).
#[derive(Serialize, Deserialize)]
pub(super) struct PeerGive<T>(pub(super) Option<T>);

/// How long a peer may take for its handshake, and for each frame after it.
pub(super) const PEER_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves what is in `stores` to peers connecting to `listener`, until the
/// task is dropped. `sealed`: seal every connection (else only those beyond
/// loopback).
pub async fn serve_peers(
    listener: tokio::net::TcpListener,
    secret: Secret,
    stores: PeerStores,
    max_message: u64,
    sealed: bool,
) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let (secret, stores) = (secret.clone(), stores.clone());
        let seal = sealed || !is_loopback(peer.ip());
        tokio::spawn(async move {
            if let Err(e) = serve_peer(stream, &secret, &stores, max_message, seal).await {
                tracing::debug!(%peer, error = %e, "a peer's fetch ended");
            }
        });
    }
}

/// Writes one thing for a peer (`data_bytes` of data), encoded off the event
/// loop (which also carries the worker's heartbeats to the scheduler) straight
/// into its frames.
async fn give<T: Serialize + Send + Sync + 'static>(
    stream: &mut tokio::net::TcpStream,
    outbound: &mut crate::wire::session::Outbound,
    thing: Option<Arc<T>>,
    data_bytes: u64,
    max_message: u64,
) -> Result<(), WireError> {
    let message = Arc::new(PeerGive(thing));
    outbound
        .write_streamed(stream, message, data_bytes, max_message, None)
        .await
}

async fn serve_peer(
    mut stream: tokio::net::TcpStream,
    secret: &Secret,
    stores: &PeerStores,
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
    // One connection serves its peer's asks one after another until the peer
    // closes it (or leaves it idle for PEER_TIMEOUT).
    loop {
        let ask: PeerAsk = match inbound
            .read_msg_with(&mut stream, max_message, Some(PEER_TIMEOUT), &mut || {})
            .await
        {
            Err(WireError::Closed) => return Ok(()),
            other => other?,
        };
        match ask {
            PeerAsk::Rows(keys) => {
                for key in keys {
                    let rows = stores.rows.get(&key);
                    let bytes = rows.as_ref().map_or(0, |r| r.data_bytes());
                    give(&mut stream, &mut outbound, rows, bytes, max_message).await?;
                }
            }
            PeerAsk::Partitions(keys) => {
                for key in keys {
                    let data = stores.held.take(&key);
                    let bytes = data.as_ref().map_or(0, |b| b.array_bytes());
                    give(&mut stream, &mut outbound, data, bytes, max_message).await?;
                }
            }
        }
        stream.flush().await?;
    }
}

/// Fetches the rows `keys` from the peer at `addr`, in order; rows the peer
/// does not keep are an error naming them.
pub async fn fetch_inputs(
    pool: &PeerPool,
    addr: &str,
    secret: &Secret,
    keys: Vec<InputKey>,
    max_message: u64,
) -> Result<Vec<Contribution>, String> {
    let name = |i: usize| {
        let k: InputKey = keys[i];
        format!(
            "partition {} of stage {} (run {})",
            k.partition, k.stage, k.run
        )
    };
    let ask = PeerAsk::Rows(keys.clone());
    pool.ask(addr, secret, ask, name, max_message).await
}

/// Takes partition `partition` of run `run`, held between stages by the peer
/// at `addr` (it holds it no more).
pub async fn fetch_partition(
    pool: &PeerPool,
    addr: &str,
    secret: &Secret,
    (run, partition): (u32, u32),
    max_message: u64,
) -> Result<Batch, String> {
    let name = |_| format!("partition {partition} of run {run}");
    let ask = PeerAsk::Partitions(vec![(run, partition)]);
    let mut got: Vec<Batch> = pool.ask(addr, secret, ask, name, max_message).await?;
    Ok(got.pop().expect("one asked, one given"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayD, IxDyn};

    fn rows(v: f64, n: usize) -> Contribution {
        Contribution::Data {
            x: ArrayD::from_elem(IxDyn(&[n, 3]), v).into(),
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

    async fn server(stores: PeerStores, secret: Secret) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(serve_peers(listener, secret, stores, 1 << 30, false));
        addr
    }

    #[tokio::test]
    async fn a_peer_fetches_kept_inputs_in_order_and_is_told_which_one_is_missing() {
        let stores = PeerStores::default();
        let store = stores.rows.clone();
        store.put(key(0), Arc::new(rows(1.0, 2)));
        // Over one frame: it streams.
        store.put(key(1), Arc::new(rows(2.0, 400_000)));
        let secret = Secret::generate();
        let addr = server(stores, secret.clone()).await;
        let pool = PeerPool::default();
        let fetch = |keys| fetch_inputs(&pool, &addr, &secret, keys, 1 << 30);
        let got = fetch(vec![key(1), key(0)]).await.unwrap();
        let firsts: Vec<(usize, f64)> = got
            .iter()
            .map(|c| match c {
                Contribution::Data { x, .. } => (x.shape()[0], x.iter().next().copied().unwrap()),
                _ => panic!("rows expected"),
            })
            .collect();
        assert_eq!(firsts, [(400_000, 2.0), (2, 1.0)]);
        let err = fetch(vec![key(0), key(7)]).await.unwrap_err();
        assert!(err.contains("partition 7 of stage 2"), "{err}");
        assert!(err.contains(&addr), "{err}");
        // Dropped with their fit: gone.
        store.drop_run(1, Some(2));
        assert!(store.is_empty());
    }

    #[tokio::test]
    async fn a_peer_without_the_secret_gets_nothing() {
        let stores = PeerStores::default();
        stores.rows.put(key(0), Arc::new(rows(1.0, 2)));
        let addr = server(stores, Secret::generate()).await;
        let err = fetch_inputs(
            &PeerPool::default(),
            &addr,
            &Secret::generate(),
            vec![key(0)],
            1 << 30,
        )
        .await
        .unwrap_err();
        assert!(err.contains("secret"), "{err}");
    }

    #[tokio::test]
    async fn a_held_partition_is_handed_to_the_peer_that_fetches_it_once() {
        let stores = PeerStores::default();
        let sample = |k: &str| {
            crate::data::sample::Sample::new(k.to_string(), ArrayD::from_elem(IxDyn(&[3]), 4.0))
        };
        let batch = Batch::from_samples(vec![sample("a"), sample("b")]).unwrap();
        stores.held.put((1, 5), Arc::new(batch.clone()));
        let secret = Secret::generate();
        let addr = server(stores.clone(), secret.clone()).await;
        let pool = PeerPool::default();
        let got = fetch_partition(&pool, &addr, &secret, (1, 5), 1 << 30)
            .await
            .unwrap();
        assert_eq!(got.keys(), batch.keys());
        assert!(stores.held.is_empty(), "handed over, no longer held");
        let err = fetch_partition(&pool, &addr, &secret, (1, 5), 1 << 30)
            .await
            .unwrap_err();
        assert!(err.contains("partition 5 of run 1"), "{err}");
    }

    #[tokio::test]
    async fn fetches_reuse_one_connection_and_one_the_peer_closed_is_replaced() {
        let stores = PeerStores::default();
        stores.rows.put(key(0), Arc::new(rows(1.0, 2)));
        let secret = Secret::generate();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (served_secret, served_stores, count) =
            (secret.clone(), stores.clone(), accepted.clone());
        // A peer that serves each connection for 300 ms, then closes it.
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let (secret, stores) = (served_secret.clone(), served_stores.clone());
                tokio::spawn(async move {
                    let serving = serve_peer(stream, &secret, &stores, 1 << 30, false);
                    let _ = tokio::time::timeout(Duration::from_millis(300), serving).await;
                });
            }
        });
        let pool = PeerPool::default();
        for _ in 0..3 {
            fetch_inputs(&pool, &addr, &secret, vec![key(0)], 1 << 30)
                .await
                .unwrap();
        }
        assert_eq!(
            accepted.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "one connection for three fetches"
        );
        assert_eq!(pool.open_connections(), 1);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let got = fetch_inputs(&pool, &addr, &secret, vec![key(0)], 1 << 30).await;
        assert!(got.is_ok(), "the closed connection was replaced: {got:?}");
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert_eq!(pool.open_connections(), 1);
    }

    #[test]
    fn dropping_a_runs_inputs_keeps_other_runs_and_stages() {
        let store = KeptInputs::default();
        store.put(key(0), Arc::new(rows(1.0, 1)));
        store.put(InputKey { stage: 3, ..key(0) }, Arc::new(rows(1.0, 1)));
        store.put(InputKey { run: 2, ..key(0) }, Arc::new(rows(1.0, 1)));
        store.drop_run(1, Some(2));
        assert_eq!(store.len(), 2);
        store.drop_run(1, None);
        assert_eq!(store.len(), 1);
        assert!(store.get(&InputKey { run: 2, ..key(0) }).is_some());
    }
}

//! Connections from a worker process to its peers, kept open between fetches:
//! a fetch over a kept connection costs its messages only, not a connection
//! and a handshake. A connection the peer has closed meanwhile (it closes one
//! left idle for 30 s) is replaced by a fresh one, once.

use super::peer::{PeerAsk, PeerGive, PEER_TIMEOUT};
use crate::wire::auth::{build_identity, Secret};
use crate::wire::frame::encode_message;
use crate::wire::handshake::{worker_side, Channel, WorkerIdentity};
use crate::wire::session::{Inbound, Outbound};
use crate::wire::WireError;
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::io::AsyncWriteExt;

/// An open, authenticated connection to one peer.
struct PeerConnection {
    stream: tokio::net::TcpStream,
    outbound: Outbound,
    inbound: Inbound,
}

/// Open connections to peers by address, kept for the next fetch. They belong
/// to the event loop that opened them: one pool per event loop.
#[derive(Default)]
pub struct PeerPool(Mutex<HashMap<String, Vec<PeerConnection>>>);

/// Why an ask failed, and whether a kept connection was merely stale.
enum AskError {
    /// The peer had closed the connection before the ask reached it.
    Stale(String),
    /// Anything else.
    Failed(String),
}

impl PeerPool {
    fn take(&self, addr: &str) -> Option<PeerConnection> {
        self.0.lock().ok()?.get_mut(addr)?.pop()
    }

    fn put(&self, addr: &str, conn: PeerConnection) {
        if let Ok(mut pool) = self.0.lock() {
            pool.entry(addr.to_string()).or_default().push(conn);
        }
    }

    /// How many connections are kept open.
    pub fn open_connections(&self) -> usize {
        self.0.lock().map_or(0, |p| p.values().map(Vec::len).sum())
    }

    /// Asks the peer at `addr` for things and reads them, in order; one the
    /// peer does not have is an error naming it (`name`).
    pub(super) async fn ask<T: serde::de::DeserializeOwned>(
        &self,
        addr: &str,
        secret: &Secret,
        ask: PeerAsk,
        name: impl Fn(usize) -> String,
        max_message: u64,
    ) -> Result<Vec<T>, String> {
        let fail = |why: String| format!("fetching from the worker at {addr}: {why}");
        if let Some(mut kept) = self.take(addr) {
            match kept.ask(&ask, &name, max_message).await {
                Ok(got) => {
                    self.put(addr, kept);
                    return Ok(got);
                }
                Err(AskError::Stale(why)) => {
                    tracing::debug!(%addr, %why, "a kept peer connection was closed; opening another");
                }
                Err(AskError::Failed(why)) => return Err(fail(why)),
            }
        }
        let mut conn = connect(addr, secret).await.map_err(fail)?;
        match conn.ask(&ask, &name, max_message).await {
            Ok(got) => {
                self.put(addr, conn);
                Ok(got)
            }
            Err(AskError::Stale(why) | AskError::Failed(why)) => Err(fail(why)),
        }
    }
}

/// Opens an authenticated connection to the peer at `addr`.
async fn connect(addr: &str, secret: &Secret) -> Result<PeerConnection, String> {
    let connect = tokio::net::TcpStream::connect(addr);
    let mut stream = tokio::time::timeout(PEER_TIMEOUT, connect)
        .await
        .map_err(|_| "no connection in time".to_string())?
        .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr().map_err(|e| e.to_string())?.ip();
    let me = WorkerIdentity {
        name: format!("peer-{}", std::process::id()),
        resources: crate::resources::Resources::none(),
        queue: None,
        job: None,
        label: None,
        memory: None,
        peer: None,
    };
    let handshake = worker_side(&mut stream, peer, secret, build_identity(), me);
    let (_, channel) = tokio::time::timeout(PEER_TIMEOUT, handshake)
        .await
        .map_err(|_| "no handshake in time".to_string())?
        .map_err(|e| e.to_string())?;
    let Channel {
        outbound, inbound, ..
    } = channel;
    Ok(PeerConnection {
        stream,
        outbound,
        inbound,
    })
}

impl PeerConnection {
    /// Sends `ask` and reads its answers. A connection that fails before the
    /// first answer begins is stale (the peer closed it while it was kept).
    async fn ask<T: serde::de::DeserializeOwned>(
        &mut self,
        ask: &PeerAsk,
        name: &impl Fn(usize) -> String,
        max_message: u64,
    ) -> Result<Vec<T>, AskError> {
        let n = match ask {
            PeerAsk::Rows(k) => k.len(),
            PeerAsk::Partitions(k) => k.len(),
        };
        let message =
            encode_message(ask, max_message).map_err(|e| AskError::Failed(e.to_string()))?;
        let sent = async {
            self.outbound
                .write_message(&mut self.stream, message)
                .await?;
            self.stream.flush().await?;
            Ok::<_, WireError>(())
        };
        sent.await.map_err(|e| AskError::Stale(e.to_string()))?;
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let read = self
                .inbound
                .read_msg_with(
                    &mut self.stream,
                    max_message,
                    Some(PEER_TIMEOUT),
                    &mut || {},
                )
                .await;
            let PeerGive(thing) = match read {
                Ok(given) => given,
                Err(e @ (WireError::Closed | WireError::Io(_))) if i == 0 => {
                    return Err(AskError::Stale(e.to_string()))
                }
                Err(e) => return Err(AskError::Failed(e.to_string())),
            };
            out.push(
                thing.ok_or_else(|| AskError::Failed(format!("it does not have {}", name(i))))?,
            );
        }
        Ok(out)
    }
}

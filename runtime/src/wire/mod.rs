//! The wire between the scheduler and worker processes: length-prefixed frames of
//! rmp-serde messages with a hard size limit, a versioned handshake, and mutual
//! authentication by challenge-response over a per-cluster secret (the secret itself
//! never crosses the wire), and frames sealed (encrypted and authenticated) on
//! every connection that leaves the host ([`session`]). Bulk arrays travel as raw little-endian blocks
//! ([`raw`]), not as per-element msgpack.

pub mod auth;
pub mod blocks;
pub(crate) mod compact;
pub mod frame;
pub mod handshake;
pub mod raw;
pub mod session;
pub mod stream;
pub mod streamed;
pub mod traffic;

use thiserror::Error;

/// The wire protocol version; both sides must speak the same one.
pub const PROTOCOL_VERSION: u32 = 9;

/// Something went wrong on a connection; the connection is closed, nothing else.
#[derive(Debug, Error)]
pub enum WireError {
    /// The peer closed the connection.
    #[error("connection closed by the peer")]
    Closed,
    /// A frame announced more bytes than the limit.
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    Oversized {
        /// Announced size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The connection ended inside a frame.
    #[error("connection ended inside a frame ({got} of {want} bytes)")]
    Truncated {
        /// Bytes received.
        got: usize,
        /// Bytes announced.
        want: usize,
    },
    /// A frame did not decode as the expected message.
    #[error("undecodable frame: {0}")]
    Garbage(String),
    /// The handshake failed (version, build or authentication).
    #[error("handshake refused: {0}")]
    Refused(String),
    /// Reading or writing the socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A sealed frame failed its check: changed, replayed, reordered or forged
    /// on the path (or sealed with another key).
    #[error("a sealed frame failed its authentication (changed, replayed or forged on the path)")]
    Forged,
    /// The peer did not answer in time.
    #[error("timed out waiting for the peer")]
    Timeout,
}

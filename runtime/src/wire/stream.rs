//! Messages as frames, after the handshake. A message of at most [`CHUNK`]
//! bytes is one frame; a larger one streams as several, so no frame limit
//! bounds the data a task carries (only [`crate::RuntimeConfig::max_message`]
//! does). A reader counts every frame as a sign of life, so a long transfer
//! never looks like a silent peer.
//!
//! ```text
//! frame = length (u32 LE, of what follows) | body | tag (16 bytes, sealed only) | mark (1 byte)
//! ```
//!
//! The mark is [`LAST`] on a message's last frame and [`MORE`] on the others;
//! a sealed frame's tag authenticates its body and its mark. Both sides work
//! in place: the writer seals each piece inside the encoded message and writes
//! it with its header, and the reader reads each frame straight into the
//! message it is putting together, so a large message is never copied piece by
//! piece.

use super::frame::decode;
use super::session::{Inbound, Outbound};
use super::WireError;
use serde::de::DeserializeOwned;
use std::io::IoSlice;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The most bytes of a message in one frame (4 MiB); a larger message streams
/// as several frames.
pub const CHUNK: usize = 4 << 20;

/// The default of the largest message between the scheduler and a worker
/// process (16 GiB): a task's input, its result, or a fit's inputs.
pub const DEFAULT_MAX_MESSAGE: u64 = 16 << 30;

/// A message carrying less data than this (256 KiB) is encoded where it is
/// sent: handing it to a blocking thread costs more than encoding it, and it
/// takes too little time to hold up a heartbeat.
pub const ENCODE_IN_PLACE: u64 = 256 << 10;

/// The largest message buffer a connection keeps for the next message (64 MiB);
/// a larger one is given back to the system once decoded.
const KEEP_BUFFER: usize = 64 << 20;

/// The mark of a message's last frame.
pub const LAST: u8 = 0;

/// The mark of a frame that more of its message follows.
pub const MORE: u8 = 1;

/// The mark of the last frame of a message's body that blocks follow
/// ([`super::blocks`]): a table of their lengths, then each block's frames.
pub const BLOCKS: u8 = 2;

impl Outbound {
    /// Makes a frame made by [`super::frame::encode`] (length prefix and body)
    /// a whole message's only frame, in place: sealed when the connection is,
    /// its mark appended and its length set. Frames must be protected in the
    /// order they are written.
    pub fn protect(&mut self, frame: &mut Vec<u8>) -> Result<(), WireError> {
        let tag = self.seal(&mut frame[4..], LAST)?;
        if let Some(tag) = tag {
            frame.extend_from_slice(&tag);
        }
        frame.push(LAST);
        let len = u32::try_from(frame.len() - 4)
            .map_err(|_| WireError::Garbage("a frame over 4 GiB".into()))?;
        frame[..4].copy_from_slice(&len.to_le_bytes());
        Ok(())
    }

    /// Writes a message encoded by [`super::frame::encode_message`] (four bytes
    /// of room, then the body): as one frame when its body fits in [`CHUNK`],
    /// else streamed as frames of at most [`CHUNK`] bytes of it each.
    pub async fn write_message<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut W,
        message: Vec<u8>,
    ) -> Result<(), WireError> {
        self.write_chunked(w, message, CHUNK).await
    }

    /// Runs `encode` (long, CPU-bound work such as encoding a large message) on
    /// a blocking thread and, while it runs, writes the message `heartbeat`
    /// makes at every tick of `beat`: a long encode is never silence to the
    /// peer, and the writer's thread stays free. A message with less than
    /// [`ENCODE_IN_PLACE`] bytes of data (`data_bytes`) is encoded in place.
    /// Returns what `encode` returned.
    pub async fn encode_beating<T, W>(
        &mut self,
        w: &mut W,
        data_bytes: u64,
        encode: impl FnOnce() -> Result<T, WireError> + Send + 'static,
        beat: &mut tokio::time::Interval,
        heartbeat: impl Fn() -> Result<Vec<u8>, WireError>,
    ) -> Result<T, WireError>
    where
        T: Send + 'static,
        W: AsyncWrite + Unpin,
    {
        if data_bytes < ENCODE_IN_PLACE {
            return encode();
        }
        let encoding = tokio::task::spawn_blocking(encode);
        tokio::pin!(encoding);
        loop {
            tokio::select! {
                done = &mut encoding => {
                    return done.unwrap_or_else(|e| Err(WireError::Garbage(e.to_string())));
                }
                _ = beat.tick() => self.write_message(w, heartbeat()?).await?,
            }
        }
    }

    pub(super) async fn write_chunked<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut W,
        mut message: Vec<u8>,
        chunk: usize,
    ) -> Result<(), WireError> {
        let end = message.len();
        let mut start = 4;
        loop {
            let stop = (start + chunk).min(end);
            let mark = if stop == end { LAST } else { MORE };
            self.write_frame(w, &mut message[start..stop], mark).await?;
            if stop == end {
                return Ok(());
            }
            start = stop;
        }
    }
}

/// Writes every byte of `parts`, in order, in as few writes as the stream
/// takes (a small header never goes out alone, to wait for an acknowledgement).
pub(super) async fn write_all_vectored<W: AsyncWrite + Unpin>(
    w: &mut W,
    parts: &[&[u8]],
) -> Result<(), WireError> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let mut done = 0;
    while done < total {
        let mut skip = done;
        let mut slices = Vec::with_capacity(parts.len());
        for p in parts {
            if skip >= p.len() {
                skip -= p.len();
                continue;
            }
            slices.push(IoSlice::new(&p[skip..]));
            skip = 0;
        }
        let n = w.write_vectored(&slices).await?;
        if n == 0 {
            return Err(WireError::Io(std::io::ErrorKind::WriteZero.into()));
        }
        done += n;
    }
    Ok(())
}

impl Inbound {
    /// Reads one message of at most `max` bytes (its frames opened when sealed)
    /// and decodes it. A frame that fails its check is [`WireError::Forged`].
    pub async fn read_msg<R: AsyncRead + Unpin, T: DeserializeOwned>(
        &mut self,
        r: &mut R,
        max: u64,
    ) -> Result<T, WireError> {
        self.read_msg_with(r, max, None, &mut || {}).await
    }

    /// Like [`Inbound::read_msg`], with liveness counted per frame: each frame
    /// must arrive within `per_frame` (else [`WireError::Timeout`]), and
    /// `on_frame` hears of each frame that more of its message follows.
    pub async fn read_msg_with<R: AsyncRead + Unpin, T: DeserializeOwned>(
        &mut self,
        r: &mut R,
        max: u64,
        per_frame: Option<Duration>,
        on_frame: &mut (dyn FnMut() + Send),
    ) -> Result<T, WireError> {
        let mut message = std::mem::take(&mut self.1);
        message.clear();
        let result = match self
            .read_message_into(r, &mut message, max, per_frame, on_frame)
            .await
        {
            Ok(false) => decode(&message),
            Ok(true) => {
                let budget = max.saturating_sub(message.len() as u64);
                match self.read_blocks(r, budget, per_frame, on_frame).await {
                    Ok(blocks) => super::blocks::providing(blocks, || decode(&message)),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        if message.capacity() <= KEEP_BUFFER {
            self.1 = message;
        }
        result
    }

    /// Reads a message's body; returns whether blocks follow it.
    async fn read_message_into<R: AsyncRead + Unpin>(
        &mut self,
        r: &mut R,
        message: &mut Vec<u8>,
        max: u64,
        per_frame: Option<Duration>,
        on_frame: &mut (dyn FnMut() + Send),
    ) -> Result<bool, WireError> {
        loop {
            let from = message.len();
            let read = self.read_frame_into(r, message, max);
            let mark = match per_frame {
                Some(t) => tokio::time::timeout(t, read)
                    .await
                    .map_err(|_| WireError::Timeout)??,
                None => read.await?,
            };
            self.open(message, from, mark)?;
            match mark {
                LAST => return Ok(false),
                BLOCKS => return Ok(true),
                MORE => on_frame(),
                _ => return Err(WireError::Garbage("a frame without its mark".into())),
            }
        }
    }

    /// Reads one frame onto the end of `message` (its body, and its tag when
    /// sealed); returns its mark. The frame may carry at most [`CHUNK`] bytes
    /// of the message, and the message at most `max` in all.
    pub(super) async fn read_frame_into<R: AsyncRead + Unpin>(
        &mut self,
        r: &mut R,
        message: &mut Vec<u8>,
        max: u64,
    ) -> Result<u8, WireError> {
        let len = read_length(r, message.is_empty()).await?;
        let size = u64::from(len);
        let overhead = (self.tag_len() + 1) as u64;
        let body = size.saturating_sub(overhead);
        let limit = max.min(CHUNK as u64);
        if size < overhead || body > limit {
            return Err(WireError::Oversized { size: body, limit });
        }
        let total = message.len() as u64 + body;
        if total > max {
            return Err(WireError::Oversized {
                size: total,
                limit: max,
            });
        }
        // Read into spare capacity: a large message is never zero-filled first.
        let want = message.len() + size as usize;
        message.reserve(size as usize);
        let mut rest = r.take(size);
        while message.len() < want {
            if rest.read_buf(message).await? == 0 {
                return Err(WireError::Truncated {
                    got: message.len() + size as usize - want,
                    want: size as usize,
                });
            }
        }
        Ok(message.pop().expect("a frame has its mark"))
    }
}

/// Reads a frame's 4-byte length. The connection closing before its first
/// byte is [`WireError::Closed`] when `between_messages`, else truncation.
pub(super) async fn read_length<R: AsyncRead + Unpin>(
    r: &mut R,
    between_messages: bool,
) -> Result<u32, WireError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut len[got..]).await?;
        if n == 0 {
            return Err(if got == 0 && between_messages {
                WireError::Closed
            } else {
                WireError::Truncated { got, want: 4 }
            });
        }
        got += n;
    }
    Ok(u32::from_le_bytes(len))
}

#[cfg(test)]
mod tests;

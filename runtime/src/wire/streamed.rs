//! Messages encoded straight into their frames: a large message (a task's
//! input partition, a result, a held partition for a peer) is never whole in
//! the sender's memory. Its size is counted first, without encoding it
//! anywhere, so a message over the limit is refused before a byte is written;
//! then a blocking thread encodes it into pieces of [`CHUNK`] bytes, each
//! sealed and written as a frame while the next is encoded. The sender holds
//! [`PIECES_AHEAD`] pieces at most, whatever the message's size.
//!
//! Its large arrays are not in those pieces: they follow the body as blocks
//! ([`super::blocks`]), written from the arrays' own memory, and the reader
//! reads each into the memory of the array it becomes:
//!
//! ```text
//! message with blocks = body frames (the last marked BLOCKS)
//!                       | table frame (the blocks' byte lengths, marked LAST)
//!                       | each block's frames (MORE.., LAST)
//! ```

use super::blocks::{capturing, BlockRef};
use super::frame::{decode, encode_message, write_body};
use super::session::{Inbound, Outbound};
use super::stream::{read_length, write_all_vectored, BLOCKS, CHUNK, ENCODE_IN_PLACE, LAST, MORE};
use super::WireError;
use serde::Serialize;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::mpsc;

/// Pieces the encoder may have made before the writer takes them.
pub const PIECES_AHEAD: usize = 2;

/// Heartbeats written while a message is encoded and before its first frame
/// (after it, each frame is a sign of life to the reader).
pub struct Beating<'a> {
    /// When to write one.
    pub beat: &'a mut tokio::time::Interval,
    /// The heartbeat message, encoded for [`Outbound::write_message`].
    pub heartbeat: &'a (dyn Fn() -> Result<Vec<u8>, WireError> + Sync),
}

/// The size of `msg` encoded (as every message, [`write_body`]), found without
/// keeping any of its bytes: a raw array counts its length.
pub fn encoded_size<T: Serialize + ?Sized>(msg: &T) -> Result<u64, WireError> {
    let mut counter = Counter(0);
    write_body(&mut counter, msg)?;
    Ok(counter.0)
}

/// A writer that only counts.
struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0 += bytes.len() as u64;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One frame's share of a message's body, and whether it is its last (then
/// with the blocks that follow the body).
struct Piece {
    body: Vec<u8>,
    last: bool,
    blocks: Vec<BlockRef>,
}

/// The encoder's end: fills a piece up to [`CHUNK`] bytes and hands it to the
/// writer when more bytes come (so the last piece is known for what it is).
struct PieceSink {
    piece: Vec<u8>,
    to_writer: mpsc::Sender<Piece>,
}

impl PieceSink {
    fn new(to_writer: mpsc::Sender<Piece>) -> Self {
        Self {
            piece: Vec::with_capacity(CHUNK),
            to_writer,
        }
    }

    fn hand_over(&mut self, last: bool, blocks: Vec<BlockRef>) -> std::io::Result<()> {
        let capacity = if last { 0 } else { CHUNK };
        let body = std::mem::replace(&mut self.piece, Vec::with_capacity(capacity));
        self.to_writer
            .blocking_send(Piece { body, last, blocks })
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the writer stopped"))
    }
}

impl Write for PieceSink {
    fn write(&mut self, mut bytes: &[u8]) -> std::io::Result<usize> {
        let given = bytes.len();
        while !bytes.is_empty() {
            if self.piece.len() == CHUNK {
                self.hand_over(false, Vec::new())?;
            }
            let take = (CHUNK - self.piece.len()).min(bytes.len());
            self.piece.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
        }
        Ok(given)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Encodes `msg` into pieces for the writer, after checking its size against
/// `max` (over it: [`WireError::Oversized`] and no piece made).
fn encode_in_pieces<T: Serialize + ?Sized>(
    msg: &T,
    max: u64,
    to_writer: mpsc::Sender<Piece>,
) -> Result<(), WireError> {
    let size = encoded_size(msg)?;
    if size > max {
        return Err(WireError::Oversized { size, limit: max });
    }
    let mut sink = PieceSink::new(to_writer);
    let (encoded, blocks) = capturing(|| write_body(&mut sink, msg));
    encoded?;
    sink.hand_over(true, blocks)?;
    Ok(())
}

impl Outbound {
    /// Writes `msg` (of at most `max` bytes) as one message, encoded into its
    /// frames as they are written when it carries [`ENCODE_IN_PLACE`] bytes
    /// of data or more (`data_bytes`), else encoded in place. A message over
    /// `max` is [`WireError::Oversized`] with nothing written: the connection
    /// stays usable. Any other error may leave a message half written.
    pub async fn write_streamed<W, T>(
        &mut self,
        w: &mut W,
        msg: Arc<T>,
        data_bytes: u64,
        max: u64,
        mut beating: Option<Beating<'_>>,
    ) -> Result<(), WireError>
    where
        W: AsyncWrite + Unpin,
        T: Serialize + Send + Sync + 'static + ?Sized,
    {
        if data_bytes < ENCODE_IN_PLACE {
            let message = encode_message(&*msg, max)?;
            return self.write_message(w, message).await;
        }
        let (to_writer, mut pieces) = mpsc::channel(PIECES_AHEAD);
        // The message stays here until its blocks, which point into it, are written.
        let owner = msg.clone();
        let encoding = tokio::task::spawn_blocking(move || encode_in_pieces(&*msg, max, to_writer));
        let mut started = false;
        let mut blocks = Vec::new();
        loop {
            let piece = match &mut beating {
                Some(b) if !started => tokio::select! {
                    piece = pieces.recv() => piece,
                    _ = b.beat.tick() => {
                        self.write_message(w, (b.heartbeat)()?).await?;
                        continue;
                    }
                },
                _ => pieces.recv().await,
            };
            let Some(mut piece) = piece else { break };
            started = true;
            let mark = match (piece.last, piece.blocks.is_empty()) {
                (false, _) => MORE,
                (true, true) => LAST,
                (true, false) => BLOCKS,
            };
            self.write_frame(w, &mut piece.body, mark).await?;
            if piece.last {
                blocks = piece.blocks;
                break;
            }
        }
        encoding
            .await
            .map_err(|e| WireError::Garbage(e.to_string()))??;
        if !blocks.is_empty() {
            self.write_blocks(w, &blocks).await?;
        }
        drop(owner);
        Ok(())
    }

    /// Writes the table of `blocks` and then each block, from its array's
    /// memory (through a scratch piece when sealing, which works in place).
    async fn write_blocks<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut W,
        blocks: &[BlockRef],
    ) -> Result<(), WireError> {
        let lengths: Vec<u64> = blocks.iter().map(|b| b.len() as u64).collect();
        let mut table =
            rmp_serde::to_vec(&lengths).map_err(|e| WireError::Garbage(e.to_string()))?;
        self.write_frame(w, &mut table, LAST).await?;
        let mut scratch = Vec::new();
        for block in blocks {
            // SAFETY: the caller holds the message the blocks point into.
            let bytes = unsafe { block.bytes() };
            let mut pieces = bytes.chunks(CHUNK).peekable();
            while let Some(piece) = pieces.next() {
                let mark = if pieces.peek().is_some() { MORE } else { LAST };
                if self.is_sealed() {
                    scratch.clear();
                    scratch.extend_from_slice(piece);
                    self.write_frame(w, &mut scratch, mark).await?;
                } else {
                    let header = frame_header(piece.len())?;
                    write_all_vectored(w, &[&header, piece, &[mark]]).await?;
                }
            }
        }
        Ok(())
    }

    /// Seals `body` (when the connection is) and writes it as one frame with
    /// `mark`.
    pub(super) async fn write_frame<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut W,
        body: &mut [u8],
        mark: u8,
    ) -> Result<(), WireError> {
        let tag = self.seal(body, mark)?;
        let tag: &[u8] = tag.as_ref().map_or(&[], |t| &t[..]);
        let header = frame_header(body.len() + tag.len())?;
        write_all_vectored(w, &[&header, body, tag, &[mark]]).await
    }
}

/// The length prefix of a frame of `bytes` (body and tag) and its mark.
fn frame_header(bytes: usize) -> Result<[u8; 4], WireError> {
    let len =
        u32::try_from(bytes + 1).map_err(|_| WireError::Garbage("a frame over 4 GiB".into()))?;
    Ok(len.to_le_bytes())
}

impl Inbound {
    /// Reads the blocks that follow a message's body: their table, then each
    /// block's frames straight into the values of the array it becomes. All
    /// of them together may be at most `budget` bytes.
    pub(super) async fn read_blocks<R: AsyncRead + Unpin>(
        &mut self,
        r: &mut R,
        budget: u64,
        per_frame: Option<Duration>,
        on_frame: &mut (dyn FnMut() + Send),
    ) -> Result<Vec<Vec<f64>>, WireError> {
        let mut table = Vec::new();
        let mark = within(per_frame, self.read_frame_into(r, &mut table, 1 << 20)).await?;
        self.open(&mut table, 0, mark)?;
        if mark != LAST {
            return Err(WireError::Garbage("a block table in several frames".into()));
        }
        let lengths: Vec<u64> = decode(&table)?;
        let total: u64 = lengths.iter().sum();
        if total > budget {
            return Err(WireError::Oversized {
                size: total,
                limit: budget,
            });
        }
        let mut blocks = Vec::with_capacity(lengths.len());
        for len in lengths {
            if len % 8 != 0 {
                return Err(WireError::Garbage(format!("a block of {len} bytes")));
            }
            // Mapped in one call, not a page fault per page as it is read into.
            let mut values = crate::data::fresh::zeroed_f64((len / 8) as usize);
            let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut values);
            let mut at = 0;
            loop {
                let (end, mark) = within(per_frame, self.read_block_frame(r, bytes, at)).await?;
                at = end;
                on_frame();
                if mark == LAST {
                    break;
                }
            }
            if at != bytes.len() {
                return Err(WireError::Truncated {
                    got: at,
                    want: bytes.len(),
                });
            }
            blocks.push(values);
        }
        Ok(blocks)
    }

    /// Reads one frame of a block into `dst` at `at`; returns where the block
    /// now ends and the frame's mark.
    async fn read_block_frame<R: AsyncRead + Unpin>(
        &mut self,
        r: &mut R,
        dst: &mut [u8],
        at: usize,
    ) -> Result<(usize, u8), WireError> {
        let size = read_length(r, false).await? as usize;
        let tag_len = self.tag_len();
        let body = size
            .checked_sub(tag_len + 1)
            .ok_or_else(|| WireError::Garbage("a frame shorter than its tag".into()))?;
        if body > CHUNK || body > dst.len() - at {
            return Err(WireError::Oversized {
                size: body as u64,
                limit: (dst.len() - at).min(CHUNK) as u64,
            });
        }
        let into = &mut dst[at..at + body];
        r.read_exact(into).await?;
        let mut tail = [0u8; 17];
        let tail = &mut tail[..tag_len + 1];
        r.read_exact(tail).await?;
        let (tag, mark) = tail.split_at(tag_len);
        let mark = mark[0];
        if mark != MORE && mark != LAST {
            return Err(WireError::Garbage("a block frame without its mark".into()));
        }
        self.open_slice(into, tag, mark)?;
        Ok((at + body, mark))
    }
}

/// `read`, failing with [`WireError::Timeout`] after `limit` when there is one.
async fn within<T>(
    limit: Option<Duration>,
    read: impl std::future::Future<Output = Result<T, WireError>>,
) -> Result<T, WireError> {
    match limit {
        Some(t) => tokio::time::timeout(t, read)
            .await
            .map_err(|_| WireError::Timeout)?,
        None => read.await,
    }
}

#[cfg(test)]
mod tests;

//! Messages encoded straight into their frames: a large message (a task's
//! input partition, a result, a held partition for a peer) is never whole in
//! the sender's memory. Its size is counted first, without encoding it
//! anywhere, so a message over the limit is refused before a byte is written;
//! then a blocking thread encodes it into pieces of [`CHUNK`] bytes, each
//! sealed and written as a frame while the next is encoded. The sender holds
//! [`PIECES_AHEAD`] pieces at most, whatever the message's size.

use super::frame::encode_message;
use super::session::Outbound;
use super::stream::{write_all_vectored, CHUNK, ENCODE_IN_PLACE, LAST, MORE};
use super::WireError;
use serde::Serialize;
use std::io::Write;
use std::sync::Arc;
use tokio::io::AsyncWrite;
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

/// The size of `msg` encoded (rmp-serde with field names, as every message),
/// found without keeping any of its bytes: a raw array counts its length.
pub fn encoded_size<T: Serialize + ?Sized>(msg: &T) -> Result<u64, WireError> {
    let mut counter = Counter(0);
    rmp_serde::encode::write_named(&mut counter, msg)
        .map_err(|e| WireError::Garbage(e.to_string()))?;
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

/// One frame's share of a message, and whether it is the message's last.
struct Piece {
    body: Vec<u8>,
    last: bool,
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

    fn hand_over(&mut self, last: bool) -> std::io::Result<()> {
        let capacity = if last { 0 } else { CHUNK };
        let body = std::mem::replace(&mut self.piece, Vec::with_capacity(capacity));
        self.to_writer
            .blocking_send(Piece { body, last })
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the writer stopped"))
    }
}

impl Write for PieceSink {
    fn write(&mut self, mut bytes: &[u8]) -> std::io::Result<usize> {
        let given = bytes.len();
        while !bytes.is_empty() {
            if self.piece.len() == CHUNK {
                self.hand_over(false)?;
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
    rmp_serde::encode::write_named(&mut sink, msg)
        .map_err(|e| WireError::Garbage(e.to_string()))?;
    sink.hand_over(true)?;
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
        let encoding = tokio::task::spawn_blocking(move || encode_in_pieces(&*msg, max, to_writer));
        let mut started = false;
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
            let mark = if piece.last { LAST } else { MORE };
            self.write_frame(w, &mut piece.body, mark).await?;
            if piece.last {
                break;
            }
        }
        encoding
            .await
            .map_err(|e| WireError::Garbage(e.to_string()))?
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
        let len = u32::try_from(body.len() + tag.len() + 1)
            .map_err(|_| WireError::Garbage("a frame over 4 GiB".into()))?;
        let header = len.to_le_bytes();
        write_all_vectored(w, &[&header, body, tag, &[mark]]).await
    }
}

#[cfg(test)]
mod tests;

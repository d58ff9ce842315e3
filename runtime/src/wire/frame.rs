//! Frames: a 4-byte little-endian length, then that many bytes of payload.

use super::WireError;
use serde::{de::DeserializeOwned, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The default hard limit of one frame (256 MiB).
pub const DEFAULT_MAX_FRAME: u64 = 256 * 1024 * 1024;

/// The 4-byte length prefix of a payload of `len` bytes, or an error when the
/// payload is above `max` (a frame the receiver would refuse; and the prefix
/// could not even say a length above 4 GiB).
pub fn frame_length(len: usize, max: u64) -> Result<u32, WireError> {
    let size = len as u64;
    let limit = max.min(u64::from(u32::MAX));
    if size > limit {
        return Err(WireError::Oversized { size, limit });
    }
    Ok(size as u32)
}

/// Writes `msg` as every message after the handshake is written: MessagePack
/// with structs as arrays of their fields, in order. Both ends run the same build
/// and protocol version (the handshake checks both), so field names would only
/// cost bytes and time; the decoder reads either form.
pub fn write_body<W: std::io::Write + ?Sized, T: Serialize + ?Sized>(
    w: &mut W,
    msg: &T,
) -> Result<(), WireError> {
    rmp_serde::encode::write(w, msg).map_err(|e| WireError::Garbage(e.to_string()))
}

/// Encodes a handshake message as one frame: with field names, so that a peer
/// of another version still reads what it needs to say so.
pub fn encode_self_describing<T: Serialize>(msg: &T) -> Result<Vec<u8>, WireError> {
    framed(DEFAULT_MAX_FRAME, |out| {
        rmp_serde::encode::write_named(out, msg).map_err(|e| WireError::Garbage(e.to_string()))
    })
}

/// One frame of at most `max` bytes: a length prefix, then what `write` writes.
fn framed(
    max: u64,
    write: impl FnOnce(&mut Vec<u8>) -> Result<(), WireError>,
) -> Result<Vec<u8>, WireError> {
    let mut out = vec![0u8; 4];
    write(&mut out)?;
    let len = frame_length(out.len() - 4, max)?;
    out[..4].copy_from_slice(&len.to_le_bytes());
    Ok(out)
}

/// Encodes a message as one frame (length prefix included); a message above
/// [`DEFAULT_MAX_FRAME`] is an error here, at the sender, never a frame the
/// receiver must refuse.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, WireError> {
    encode_limited(msg, DEFAULT_MAX_FRAME)
}

/// Like [`encode`], with the limit `max`.
pub fn encode_limited<T: Serialize>(msg: &T, max: u64) -> Result<Vec<u8>, WireError> {
    framed(max, |out| write_body(out, msg))
}

/// Encodes a message of at most `max` bytes for [`super::session::Outbound::write_message`],
/// which streams it in frames: four bytes left for a length, then the payload
/// (any size up to `max`, beyond a frame's 4 GiB too).
pub fn encode_message<T: Serialize + ?Sized>(msg: &T, max: u64) -> Result<Vec<u8>, WireError> {
    let mut out = vec![0u8; 4];
    write_body(&mut out, msg)?;
    let size = (out.len() - 4) as u64;
    if size > max {
        return Err(WireError::Oversized { size, limit: max });
    }
    Ok(out)
}

/// Encodes a slice of items as one frame under a limit.
pub type EncodeSome<'a, T> = dyn Fn(&[T], u64) -> Result<Vec<u8>, WireError> + 'a;

/// Items encoded in frames: the frames (in item order) and the items too big for
/// any frame, by index, with their encoded size.
#[derive(Debug, Default)]
pub struct Split {
    /// The frames, length prefix included.
    pub frames: Vec<Vec<u8>>,
    /// `(index, size)` of the items that exceed the limit on their own.
    pub oversized: Vec<(usize, u64)>,
}

/// Encodes `items` in as few frames as possible, each under `max`: the whole list
/// in one frame when it fits, else halves, recursively.
pub fn encode_split<T>(
    items: &[T],
    max: u64,
    encode_some: &EncodeSome<'_, T>,
) -> Result<Split, WireError> {
    let mut out = Split::default();
    split_into(items, 0, max, encode_some, &mut out)?;
    Ok(out)
}

fn split_into<T>(
    items: &[T],
    offset: usize,
    max: u64,
    encode_some: &EncodeSome<'_, T>,
    out: &mut Split,
) -> Result<(), WireError> {
    if items.is_empty() {
        return Ok(());
    }
    match encode_some(items, max) {
        Ok(frame) => out.frames.push(frame),
        Err(WireError::Oversized { size, .. }) if items.len() == 1 => {
            out.oversized.push((offset, size))
        }
        Err(WireError::Oversized { .. }) => {
            let half = items.len() / 2;
            split_into(&items[..half], offset, max, encode_some, out)?;
            split_into(&items[half..], offset + half, max, encode_some, out)?;
        }
        Err(e) => return Err(e),
    }
    Ok(())
}

/// Decodes a frame's payload.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, WireError> {
    rmp_serde::from_slice(payload).map_err(|e| WireError::Garbage(e.to_string()))
}

/// Writes one handshake message as a frame ([`encode_self_describing`]).
pub async fn write_msg<W: AsyncWrite + Unpin, T: Serialize>(
    w: &mut W,
    msg: &T,
) -> Result<(), WireError> {
    let bytes = encode_self_describing(msg)?;
    w.write_all(&bytes).await?;
    w.flush().await?;
    Ok(())
}

/// Reads one frame's payload, refusing frames above `max` bytes before reading them.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, max: u64) -> Result<Vec<u8>, WireError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut len[got..]).await?;
        if n == 0 {
            return Err(if got == 0 {
                WireError::Closed
            } else {
                WireError::Truncated { got, want: 4 }
            });
        }
        got += n;
    }
    let size = u64::from(u32::from_le_bytes(len));
    if size > max {
        return Err(WireError::Oversized { size, limit: max });
    }
    let want = size as usize;
    // Read into spare capacity: a large frame is never zero-filled first.
    let mut buf = Vec::with_capacity(want);
    let mut rest = r.take(size);
    while buf.len() < want {
        if rest.read_buf(&mut buf).await? == 0 {
            return Err(WireError::Truncated {
                got: buf.len(),
                want,
            });
        }
    }
    Ok(buf)
}

/// Reads and decodes one message.
pub async fn read_msg<R: AsyncRead + Unpin, T: DeserializeOwned>(
    r: &mut R,
    max: u64,
) -> Result<T, WireError> {
    decode(&read_frame(r, max).await?)
}

/// Splits a byte stream into frames incrementally (for callers that own a buffer).
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    max: u64,
}

impl FrameDecoder {
    /// A decoder refusing frames above `max` bytes.
    pub fn new(max: u64) -> Self {
        Self {
            buf: Vec::new(),
            max,
        }
    }

    /// Adds received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed, or an error
    /// (after which the connection must be closed).
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, WireError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let size = u64::from(u32::from_le_bytes(
            self.buf[..4].try_into().expect("4 bytes"),
        ));
        if size > self.max {
            return Err(WireError::Oversized {
                size,
                limit: self.max,
            });
        }
        let end = 4 + size as usize;
        if self.buf.len() < end {
            return Ok(None);
        }
        let frame = self.buf[4..end].to_vec();
        self.buf.drain(..end);
        Ok(Some(frame))
    }

    /// Bytes received but not yet part of a complete frame.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frames_round_trip_and_split_anywhere() {
        let msgs: Vec<Vec<u32>> = vec![vec![], vec![1, 2, 3], (0..1000).collect()];
        let mut stream = Vec::new();
        for m in &msgs {
            stream.extend(encode(m).unwrap());
        }
        for cut in [1, 3, 4, 7, 100, stream.len()] {
            let mut d = FrameDecoder::new(DEFAULT_MAX_FRAME);
            let mut out: Vec<Vec<u32>> = Vec::new();
            for chunk in stream.chunks(cut) {
                d.push(chunk);
                while let Some(f) = d.next_frame().unwrap() {
                    out.push(decode(&f).unwrap());
                }
            }
            assert_eq!(out, msgs);
            assert_eq!(d.pending(), 0);
        }
    }

    #[test]
    fn oversized_frames_are_refused_before_reading() {
        let mut d = FrameDecoder::new(16);
        d.push(&1000u32.to_le_bytes());
        assert!(matches!(
            d.next_frame(),
            Err(WireError::Oversized {
                size: 1000,
                limit: 16
            })
        ));
    }

    #[tokio::test]
    async fn async_reader_reports_truncation_and_size() {
        let mut bytes = encode(&vec![1u32, 2, 3]).unwrap();
        bytes.truncate(bytes.len() - 1);
        let mut r = &bytes[..];
        assert!(matches!(
            read_frame(&mut r, 1024).await,
            Err(WireError::Truncated { .. })
        ));
        let mut r = &[1u8, 0][..];
        assert!(matches!(
            read_frame(&mut r, 1024).await,
            Err(WireError::Truncated { got: 2, want: 4 })
        ));
        let big = 5000u32.to_le_bytes();
        let mut r = &big[..];
        assert!(matches!(
            read_frame(&mut r, 1024).await,
            Err(WireError::Oversized { .. })
        ));
        let mut r = &[][..];
        assert!(matches!(
            read_frame(&mut r, 1024).await,
            Err(WireError::Closed)
        ));
    }

    #[test]
    fn lengths_above_the_limit_or_4_gib_are_refused_at_the_sender() {
        assert_eq!(frame_length(10, 16).unwrap(), 10);
        assert!(matches!(
            frame_length(17, 16),
            Err(WireError::Oversized {
                size: 17,
                limit: 16
            })
        ));
        // 5 GiB would wrap to 1 GiB in a u32 prefix: refused, whatever the limit.
        let five_gib = 5usize << 30;
        assert!(matches!(
            frame_length(five_gib, u64::MAX),
            Err(WireError::Oversized { limit, .. }) if limit == u64::from(u32::MAX)
        ));
        let big: Vec<u32> = vec![70_000; 100];
        assert!(matches!(
            encode_limited(&big, 50),
            Err(WireError::Oversized { .. })
        ));
    }

    #[test]
    fn lists_split_into_frames_under_the_limit_and_name_what_cannot_fit() {
        // Items of 1, 2, 40 and 3 values; frames of at most 64 bytes.
        let items: Vec<Vec<u32>> = vec![vec![1], vec![2; 2], vec![u32::MAX; 40], vec![3; 3]];
        let enc = |some: &[Vec<u32>], max: u64| encode_limited(&some.to_vec(), max);
        let split = encode_split(&items, 64, &enc).unwrap();
        assert_eq!(split.oversized.len(), 1);
        assert_eq!(split.oversized[0].0, 2, "the third item alone is too big");
        let mut back: Vec<Vec<u32>> = Vec::new();
        for f in &split.frames {
            assert!(f.len() - 4 <= 64);
            back.extend(decode::<Vec<Vec<u32>>>(&f[4..]).unwrap());
        }
        assert_eq!(back, vec![vec![1], vec![2; 2], vec![3; 3]], "order kept");
        let split = encode_split(&items[..2], 64, &enc).unwrap();
        assert_eq!(
            (split.frames.len(), split.oversized.len()),
            (1, 0),
            "one frame when it fits"
        );
    }

    proptest! {
        /// Arbitrary bytes never panic the decoder: they give frames, need more
        /// bytes, or a clean error; decoded payloads never exceed the limit.
        #[test]
        fn decoder_survives_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048), max in 0u64..4096) {
            let mut d = FrameDecoder::new(max);
            d.push(&bytes);
            while let Ok(Some(f)) = d.next_frame() {
                prop_assert!(f.len() as u64 <= max);
                let _ = decode::<Vec<u32>>(&f);
            }
        }
    }
}

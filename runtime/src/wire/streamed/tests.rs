//! Messages encoded into their frames: whole on the other side, refused before
//! a byte when too big, and never encoded far ahead of the writer.

use super::*;
use crate::wire::auth::Secret;
use crate::wire::session::SessionKeys;
use ndarray::{ArrayD, IxDyn};
use serde::ser::SerializeSeq;
use serde::Deserialize;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Blob(#[serde(with = "crate::wire::raw::array")] ArrayD<f64>);

fn blob(values: usize, seed: f64) -> Blob {
    Blob(ArrayD::from_shape_fn(IxDyn(&[values]), |i| {
        seed + i[0] as f64
    }))
}

fn sealed_pair() -> (Outbound, crate::wire::session::Inbound) {
    let keys = SessionKeys::derive(&Secret::generate(), b"worker nonce", b"scheduler nonce");
    (keys.worker_halves().0, keys.scheduler_halves().1)
}

#[tokio::test]
async fn a_large_message_goes_in_frames_and_comes_back_whole_sealed() {
    let (mut out, mut inbound) = sealed_pair();
    // 20 MiB of data: five frames and a bit.
    let sent = Arc::new(vec![blob(1 << 20, 0.5), blob(1 << 20, 7.0), blob(5, 1.0)]);
    let size = encoded_size(&*sent).unwrap();
    assert_eq!(
        size,
        (encode_message(&*sent, u64::MAX).unwrap().len() - 4) as u64,
        "the counted size is the encoded size"
    );
    let mut wire = Vec::new();
    out.write_streamed(&mut wire, sent.clone(), 16 << 20, u64::MAX, None)
        .await
        .unwrap();
    let mut frames = 0;
    let mut r = &wire[..];
    let got: Vec<Blob> = inbound
        .read_msg_with(&mut r, u64::MAX, None, &mut || frames += 1)
        .await
        .unwrap();
    assert_eq!(got, *sent);
    assert_eq!(
        frames as u64,
        size / CHUNK as u64,
        "every full chunk but the last is a frame of its own"
    );
    assert!(r.is_empty(), "one message, nothing after it");
}

#[tokio::test]
async fn large_arrays_travel_as_blocks_read_straight_into_their_arrays() {
    let (mut out, mut inbound) = sealed_pair();
    let sent = Arc::new(vec![blob(3 << 20, 0.25), blob(100, 3.0)]);
    let mut wire = Vec::new();
    out.write_streamed(&mut wire, sent.clone(), 24 << 20, u64::MAX, None)
        .await
        .unwrap();
    let probe: Vec<u8> = bytemuck::cast_slice::<f64, u8>(&[0.25 + 1000.0, 0.25 + 1001.0]).to_vec();
    assert!(
        !wire.windows(16).any(|w| w == probe),
        "the blocks are sealed too"
    );
    let mut r = &wire[..];
    let got: Vec<Blob> = inbound.read_msg(&mut r, u64::MAX).await.unwrap();
    assert_eq!(got, *sent);
    assert!(
        inbound.1.capacity() < 1 << 20,
        "the reader's message buffer held the body only ({} bytes), never the 24 MiB",
        inbound.1.capacity()
    );
    // A changed byte inside a block is caught.
    let (mut out, mut inbound) = sealed_pair();
    let mut wire = Vec::new();
    out.write_streamed(&mut wire, sent.clone(), 24 << 20, u64::MAX, None)
        .await
        .unwrap();
    let n = wire.len();
    wire[n - 1000] ^= 1;
    let mut r = &wire[..];
    let changed = inbound.read_msg::<_, Vec<Blob>>(&mut r, u64::MAX).await;
    assert!(matches!(changed, Err(WireError::Forged)), "{changed:?}");
    // The limit counts the blocks.
    let (mut out, mut inbound) = sealed_pair();
    let mut wire = Vec::new();
    out.write_streamed(&mut wire, sent.clone(), 24 << 20, u64::MAX, None)
        .await
        .unwrap();
    let mut r = &wire[..];
    let over = inbound.read_msg::<_, Vec<Blob>>(&mut r, 1 << 20).await;
    assert!(matches!(over, Err(WireError::Oversized { .. })), "{over:?}");
}

#[test]
fn a_block_number_outside_a_message_with_blocks_is_an_error_not_an_array() {
    let big = blob(1 << 14, 1.0);
    let (encoded, blocks) = crate::wire::blocks::capturing(|| rmp_serde::to_vec_named(&big));
    assert_eq!(blocks.len(), 1, "a 128 KiB array is a block");
    let refused = rmp_serde::from_slice::<Blob>(&encoded.unwrap());
    assert!(
        refused
            .unwrap_err()
            .to_string()
            .contains("outside a message with blocks"),
        "named"
    );
    // Outside `capturing`, arrays stay inline (checkpoint files, models).
    let inline = rmp_serde::to_vec_named(&big).unwrap();
    assert_eq!(rmp_serde::from_slice::<Blob>(&inline).unwrap(), big);
}

#[tokio::test]
async fn a_message_over_the_limit_is_refused_before_a_byte_is_written() {
    let (mut out, mut inbound) = sealed_pair();
    let big = Arc::new(blob(1 << 20, 0.0));
    let size = encoded_size(&*big).unwrap();
    let mut wire = Vec::new();
    let refused = out
        .write_streamed(&mut wire, big, 8 << 20, 1 << 20, None)
        .await;
    assert!(
        matches!(refused, Err(WireError::Oversized { size: s, limit }) if s == size && limit == 1 << 20),
        "{refused:?}"
    );
    assert!(wire.is_empty(), "nothing of it was written");
    // The connection goes on: the next message arrives (sealing in order).
    let next = Arc::new(blob(40_000, 2.0));
    out.write_streamed(&mut wire, next.clone(), 320_000, 1 << 20, None)
        .await
        .unwrap();
    let mut r = &wire[..];
    let got: Blob = inbound.read_msg(&mut r, 1 << 20).await.unwrap();
    assert_eq!(got, *next);
}

/// Blobs small enough to stay inside their message, counting how many have
/// been encoded.
struct CountedBlobs {
    blobs: usize,
    encoded: Arc<AtomicUsize>,
    one: Blob,
}

impl Serialize for CountedBlobs {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.blobs))?;
        for _ in 0..self.blobs {
            seq.serialize_element(&self.one)?;
            self.encoded.fetch_add(1, Ordering::SeqCst);
        }
        seq.end()
    }
}

#[tokio::test]
async fn the_encoder_stays_a_few_pieces_ahead_of_a_slow_reader() {
    let encoded = Arc::new(AtomicUsize::new(0));
    // 2,048 blobs of 32 KiB (under BLOCK_MIN: encoded inline), 64 MiB.
    let blobs = 2048;
    let msg = Arc::new(CountedBlobs {
        blobs,
        encoded: encoded.clone(),
        one: blob(4096, 0.0),
    });
    // A pipe nobody reads: the writer blocks after 64 KiB.
    let (mut near, _far) = tokio::io::duplex(64 << 10);
    let mut out = Outbound::plain();
    let writing = out.write_streamed(&mut near, msg, 64 << 20, u64::MAX, None);
    let stalled = tokio::time::timeout(std::time::Duration::from_millis(300), writing).await;
    assert!(stalled.is_err(), "the write waits for the reader");
    // Pieces of CHUNK: one being written, PIECES_AHEAD waiting, one being
    // filled, and the blob that filled it.
    let per_piece = CHUNK / (32 << 10);
    let ahead = (PIECES_AHEAD + 2) * per_piece + 1;
    // The size is counted first: every blob passes through once for that.
    let made = encoded.load(Ordering::SeqCst) - blobs;
    assert!(
        made <= ahead,
        "{made} blobs of {blobs} encoded for a reader that took 64 KiB (at most {ahead})"
    );
}

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

/// Blobs of 1 MiB, counting how many have been encoded.
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
    let msg = Arc::new(CountedBlobs {
        blobs: 64,
        encoded: encoded.clone(),
        one: blob(1 << 17, 0.0),
    });
    // A pipe nobody reads: the writer blocks after 64 KiB.
    let (mut near, _far) = tokio::io::duplex(64 << 10);
    let mut out = Outbound::plain();
    let writing = out.write_streamed(&mut near, msg, 64 << 20, u64::MAX, None);
    let stalled = tokio::time::timeout(std::time::Duration::from_millis(300), writing).await;
    assert!(stalled.is_err(), "the write waits for the reader");
    // Blobs of 1 MiB into pieces of CHUNK: one piece being written, PIECES_AHEAD
    // waiting, one being filled, and the blob that filled it.
    let ahead = (PIECES_AHEAD + 2) * (CHUNK >> 20) + 1;
    // The size is counted first: every blob passes through once for that.
    let made = encoded.load(Ordering::SeqCst) - 64;
    assert!(
        made <= ahead,
        "{made} of 64 MiB encoded for a reader that took 64 KiB (at most {ahead})"
    );
}

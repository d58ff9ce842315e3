//! Frames of messages, sealed and plain: hidden, checked, streamed, and alive
//! while they come.

use super::*;
use crate::wire::auth::Secret;
use crate::wire::frame::{encode, encode_limited};
use crate::wire::session::SessionKeys;

fn halves() -> ((Outbound, Inbound), (Outbound, Inbound)) {
    let secret = Secret::generate();
    let keys = SessionKeys::derive(&secret, b"worker nonce", b"scheduler nonce");
    (keys.worker_halves(), keys.scheduler_halves())
}

async fn read(inbound: &mut Inbound, bytes: &[u8]) -> Result<String, WireError> {
    let mut r = bytes;
    inbound.read_msg(&mut r, 1024).await
}

#[tokio::test]
async fn a_sealed_frame_hides_its_payload_and_opens_on_the_other_side_only() {
    let ((mut w_out, _), (_, mut s_in)) = halves();
    let mut frame = encode(&"face-0001 is a sample key").unwrap();
    w_out.protect(&mut frame).unwrap();
    assert!(
        !frame.windows(9).any(|w| w == b"face-0001"),
        "the payload is hidden"
    );
    assert_eq!(
        read(&mut s_in, &frame).await.unwrap(),
        "face-0001 is a sample key"
    );
    // The worker's own inbound half uses the other direction's key.
    let ((mut w_out, mut w_in), _) = halves();
    let mut frame = encode(&"x").unwrap();
    w_out.protect(&mut frame).unwrap();
    assert!(matches!(
        read(&mut w_in, &frame).await,
        Err(WireError::Forged)
    ));
}

#[tokio::test]
async fn changed_replayed_and_reordered_frames_are_refused() {
    let ((mut w_out, _), (_, mut s_in)) = halves();
    let mut first = encode(&"first").unwrap();
    let mut second = encode(&"second").unwrap();
    w_out.protect(&mut first).unwrap();
    w_out.protect(&mut second).unwrap();
    let mut changed = first.clone();
    changed[6] ^= 1;
    assert!(matches!(
        read(&mut s_in, &changed).await,
        Err(WireError::Forged)
    ));
    // Reordered: the second frame where the first is expected.
    let ((mut w_out, _), (_, mut s_in)) = halves();
    let mut first = encode(&"first").unwrap();
    let mut second = encode(&"second").unwrap();
    w_out.protect(&mut first).unwrap();
    w_out.protect(&mut second).unwrap();
    assert!(matches!(
        read(&mut s_in, &second).await,
        Err(WireError::Forged)
    ));
    // Replayed: the first frame twice.
    let ((mut w_out, _), (_, mut s_in)) = halves();
    let mut first = encode(&"first").unwrap();
    w_out.protect(&mut first).unwrap();
    assert_eq!(read(&mut s_in, &first).await.unwrap(), "first");
    assert!(matches!(
        read(&mut s_in, &first).await,
        Err(WireError::Forged)
    ));
}

#[tokio::test]
async fn plain_halves_add_only_the_end_of_message_mark() {
    let mut out = Outbound::plain();
    let mut frame = encode(&"plain").unwrap();
    let before = frame.clone();
    out.protect(&mut frame).unwrap();
    assert_eq!(frame[4..frame.len() - 1], before[4..]);
    assert_eq!(frame.last(), Some(&LAST));
    assert_eq!(read(&mut Inbound::plain(), &frame).await.unwrap(), "plain");
}

/// A message streams as many frames, sealed or plain, each under the chunk
/// size; the reader puts it together, and a message over its limit is
/// refused however it is cut.
#[tokio::test]
async fn large_messages_stream_in_frames_and_come_back_whole() {
    let message: Vec<u32> = (0..10_000).collect();
    for sealed in [false, true] {
        let ((mut out, _), (_, mut inb)) = halves();
        if !sealed {
            (out, inb) = (Outbound::plain(), Inbound::plain());
        }
        let mut wire = Vec::new();
        out.write_chunked(&mut wire, encode_limited(&message, u64::MAX).unwrap(), 1000)
            .await
            .unwrap();
        out.write_chunked(&mut wire, encode(&vec![7u32]).unwrap(), 1000)
            .await
            .unwrap();
        let mut frames = 0;
        let mut r = &wire[..];
        let back: Vec<u32> = inb
            .read_msg_with(&mut r, 1 << 20, None, &mut || frames += 1)
            .await
            .unwrap();
        assert_eq!(back, message, "sealed: {sealed}");
        assert!(frames >= 25, "{frames} frames before the last");
        let small: Vec<u32> = inb.read_msg(&mut r, 1 << 20).await.unwrap();
        assert_eq!(small, vec![7]);

        let (mut out, mut inb) = (Outbound::plain(), Inbound::plain());
        let mut wire = Vec::new();
        out.write_chunked(&mut wire, encode_limited(&message, u64::MAX).unwrap(), 1000)
            .await
            .unwrap();
        let mut r = &wire[..];
        let err = inb
            .read_msg::<_, Vec<u32>>(&mut r, 20_000)
            .await
            .unwrap_err();
        assert!(
            matches!(err, WireError::Oversized { limit: 20_000, .. }),
            "{err}"
        );
    }
}

/// A long message whose frames keep coming is never taken for silence: the
/// time allowed is per frame, not per message.
#[tokio::test]
async fn a_slow_long_message_is_alive_while_its_frames_come() {
    let (mut client, mut server) = tokio::io::duplex(1 << 16);
    let message: Vec<u32> = (0..2_000).collect();
    let writer = tokio::spawn(async move {
        let mut out = Outbound::plain();
        let mut wire = Vec::new();
        out.write_chunked(&mut wire, encode_limited(&message, u64::MAX).unwrap(), 1000)
            .await
            .unwrap();
        // Eight or so frames, 60 ms apart: 0.4 s in all, each well within 200 ms.
        for piece in wire.chunks(wire.len() / 7 + 1) {
            client.write_all(piece).await.unwrap();
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
        client
    });
    let back: Vec<u32> = Inbound::plain()
        .read_msg_with(
            &mut server,
            1 << 20,
            Some(Duration::from_millis(200)),
            &mut || {},
        )
        .await
        .unwrap();
    assert_eq!(back.len(), 2_000);
    let _client = writer.await.unwrap();
    let silent = Inbound::plain()
        .read_msg_with::<_, Vec<u32>>(
            &mut server,
            1 << 20,
            Some(Duration::from_millis(100)),
            &mut || {},
        )
        .await;
    assert!(matches!(silent, Err(WireError::Timeout)));
}

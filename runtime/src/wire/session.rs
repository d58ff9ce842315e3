//! Sealed connections. After the handshake, a connection that leaves this host
//! carries every frame encrypted and authenticated with AES-256-GCM: one key per
//! direction, derived from the cluster secret and both handshake nonces (so every
//! connection has keys of its own and no certificate is needed), and a frame
//! counter as the nonce, so a frame that is read, changed, dropped, replayed or
//! reordered on the path is found and the connection closed. Loopback
//! connections stay plain unless [`WireEncryption::Always`] asks otherwise.
//!
//! A sealed frame is the 4-byte little-endian length of what follows, then the
//! encrypted payload and its 16-byte tag.
//!
//! Messages stream: one larger than [`CHUNK`] goes as several frames, each
//! sealed on its own, so no frame limit bounds the data a task carries (only
//! [`crate::RuntimeConfig::max_message`] does). Each frame's payload ends with one
//! byte, sealed with it: [`LAST`] on a message's last frame, [`MORE`] on the
//! others. A reader counts every frame as progress, so a long transfer never
//! looks like a silent peer.

use super::auth::Secret;
use super::frame::{decode, read_frame};
use super::WireError;
use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// Bytes a sealed frame adds to its payload (the authentication tag).
pub const TAG_LEN: usize = 16;

/// The most bytes of a message in one frame (4 MiB); a larger message streams
/// as several frames.
pub const CHUNK: usize = 4 << 20;

/// The default of the largest message between the scheduler and a worker
/// process (16 GiB): a task's input, its result, or a fit's inputs.
pub const DEFAULT_MAX_MESSAGE: u64 = 16 << 30;

/// The mark ending the payload of a message's last frame.
pub const LAST: u8 = 0;

/// The mark ending the payload of a frame that more of its message follows.
pub const MORE: u8 = 1;

/// Which connections between the scheduler and its workers are sealed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireEncryption {
    /// Every connection that is not on loopback (the default): traffic that
    /// never leaves the host stays plain, everything else is sealed.
    #[default]
    BeyondLoopback,
    /// Every connection, loopback included (to measure the cost, or where
    /// loopback traffic is not trusted).
    Always,
}

/// Whether a connection accepted on the local address `local` is sealed.
pub fn must_seal(policy: WireEncryption, local: IpAddr) -> bool {
    match policy {
        WireEncryption::Always => true,
        WireEncryption::BeyondLoopback => !is_loopback(local),
    }
}

/// Loopback, IPv4-mapped IPv6 loopback (`::ffff:127.0.0.1`) included.
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// The two keys of one connection, one per direction.
pub struct SessionKeys {
    worker_to_scheduler: [u8; 32],
    scheduler_to_worker: [u8; 32],
}

impl SessionKeys {
    /// Derives the keys from the secret and both nonces of the handshake.
    pub fn derive(secret: &Secret, worker_nonce: &[u8], scheduler_nonce: &[u8]) -> Self {
        let key = |label: &str| -> [u8; 32] {
            secret
                .proof(label, worker_nonce, scheduler_nonce)
                .try_into()
                .expect("HMAC-SHA256 gives 32 bytes")
        };
        Self {
            worker_to_scheduler: key("session key worker to scheduler"),
            scheduler_to_worker: key("session key scheduler to worker"),
        }
    }

    /// The worker's halves: it seals with one key and opens with the other.
    pub fn worker_halves(&self) -> (Outbound, Inbound) {
        (
            Outbound(Some(Sealer::new(&self.worker_to_scheduler))),
            Inbound(Some(Sealer::new(&self.scheduler_to_worker))),
        )
    }

    /// The scheduler's halves.
    pub fn scheduler_halves(&self) -> (Outbound, Inbound) {
        (
            Outbound(Some(Sealer::new(&self.scheduler_to_worker))),
            Inbound(Some(Sealer::new(&self.worker_to_scheduler))),
        )
    }
}

/// One direction's cipher and frame counter.
struct Sealer {
    cipher: Aes256Gcm,
    counter: u64,
}

impl Sealer {
    fn new(key: &[u8; 32]) -> Self {
        Self {
            cipher: Aes256Gcm::new(key.into()),
            counter: 0,
        }
    }

    /// The nonce of the next frame: its number, never used twice with one key.
    fn next_nonce(&mut self) -> [u8; 12] {
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&self.counter.to_le_bytes());
        self.counter += 1;
        nonce
    }
}

/// What the sending half of a connection does to each frame: nothing, or seal it.
pub struct Outbound(Option<Sealer>);

impl Outbound {
    /// A plain sending half.
    pub fn plain() -> Self {
        Outbound(None)
    }

    /// Whether frames are sealed.
    pub fn is_sealed(&self) -> bool {
        self.0.is_some()
    }

    /// Makes a frame made by [`super::frame::encode`] (length prefix and payload)
    /// a whole message's only frame, in place: the [`LAST`] mark is appended,
    /// and when sealed the payload is encrypted and the tag appended; the length
    /// is updated. Frames must be protected in the order they are written.
    pub fn protect(&mut self, frame: &mut Vec<u8>) -> Result<(), WireError> {
        self.protect_marked(frame, LAST)
    }

    fn protect_marked(&mut self, frame: &mut Vec<u8>, mark: u8) -> Result<(), WireError> {
        frame.push(mark);
        let Some(sealer) = &mut self.0 else {
            let len = u32::try_from(frame.len() - 4)
                .map_err(|_| WireError::Garbage("a frame over 4 GiB".into()))?;
            frame[..4].copy_from_slice(&len.to_le_bytes());
            return Ok(());
        };
        let nonce = sealer.next_nonce();
        let tag = sealer
            .cipher
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), &[], &mut frame[4..])
            .map_err(|_| WireError::Garbage("a frame too long to seal".into()))?;
        frame.extend_from_slice(&tag);
        let len = u32::try_from(frame.len() - 4)
            .map_err(|_| WireError::Garbage("a sealed frame over 4 GiB".into()))?;
        frame[..4].copy_from_slice(&len.to_le_bytes());
        Ok(())
    }
}

impl Outbound {
    /// Writes a message encoded by [`super::frame::encode_limited`] (its length
    /// prefix is not read): as one frame when its payload fits in [`CHUNK`], else
    /// streamed as frames of at most [`CHUNK`] bytes each.
    pub async fn write_message<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut W,
        message: Vec<u8>,
    ) -> Result<(), WireError> {
        self.write_chunked(w, message, CHUNK).await
    }

    async fn write_chunked<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut W,
        mut message: Vec<u8>,
        chunk: usize,
    ) -> Result<(), WireError> {
        if message.len() - 4 <= chunk {
            self.protect(&mut message)?;
            w.write_all(&message).await?;
            return Ok(());
        }
        let pieces = message[4..].chunks(chunk);
        let n = pieces.len();
        for (i, piece) in pieces.enumerate() {
            let mut frame = Vec::with_capacity(4 + piece.len() + 1 + TAG_LEN);
            frame.extend_from_slice(&[0; 4]);
            frame.extend_from_slice(piece);
            self.protect_marked(&mut frame, if i + 1 == n { LAST } else { MORE })?;
            w.write_all(&frame).await?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_sealed() {
            "Outbound(sealed)"
        } else {
            "Outbound(plain)"
        })
    }
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Inbound(sealed)"
        } else {
            "Inbound(plain)"
        })
    }
}

/// What the receiving half of a connection does to each frame: nothing, or
/// check and open it.
pub struct Inbound(Option<Sealer>);

impl Inbound {
    /// A plain receiving half.
    pub fn plain() -> Self {
        Inbound(None)
    }

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
        let frame_max = max.min(CHUNK as u64);
        let mut message: Vec<u8> = Vec::new();
        loop {
            let read = self.read_frame_payload(r, frame_max);
            let mut payload = match per_frame {
                Some(t) => tokio::time::timeout(t, read)
                    .await
                    .map_err(|_| WireError::Timeout)??,
                None => read.await?,
            };
            let mark = payload.pop().ok_or(WireError::Forged)?;
            if message.is_empty() && mark == LAST {
                return decode(&payload);
            }
            if (message.len() + payload.len()) as u64 > max {
                return Err(WireError::Oversized {
                    size: (message.len() + payload.len()) as u64,
                    limit: max,
                });
            }
            message.extend_from_slice(&payload);
            match mark {
                LAST => return decode(&message),
                MORE => on_frame(),
                _ => return Err(WireError::Garbage("a frame without its mark".into())),
            }
        }
    }

    /// Reads one frame (payload at most `max` bytes, plus its mark), opened when
    /// sealed; the payload ends with its mark.
    async fn read_frame_payload<R: AsyncRead + Unpin>(
        &mut self,
        r: &mut R,
        max: u64,
    ) -> Result<Vec<u8>, WireError> {
        let Some(opener) = &mut self.0 else {
            return read_frame(r, max + 1).await;
        };
        let mut frame = read_frame(r, max + 1 + TAG_LEN as u64).await?;
        if frame.len() < TAG_LEN {
            return Err(WireError::Forged);
        }
        let split = frame.len() - TAG_LEN;
        let tag = aes_gcm::Tag::clone_from_slice(&frame[split..]);
        frame.truncate(split);
        let nonce = opener.next_nonce();
        opener
            .cipher
            .decrypt_in_place_detached(Nonce::from_slice(&nonce), &[], &mut frame, &tag)
            .map_err(|_| WireError::Forged)?;
        Ok(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::frame::{encode, encode_limited};
    use std::net::{Ipv4Addr, Ipv6Addr};

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

    #[test]
    fn only_loopback_stays_plain_by_default() {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let lo6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        let mapped = IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped());
        let lan = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));
        for ip in [lo, lo6, mapped] {
            assert!(!must_seal(WireEncryption::BeyondLoopback, ip), "{ip}");
            assert!(must_seal(WireEncryption::Always, ip), "{ip}");
        }
        assert!(must_seal(WireEncryption::BeyondLoopback, lan));
    }
}

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
//! How messages go as frames (several for a large one) is in [`super::stream`].

use super::auth::Secret;
use super::WireError;
use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// Bytes a sealed frame adds to its payload (the authentication tag).
pub const TAG_LEN: usize = 16;

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
            Inbound(Some(Sealer::new(&self.scheduler_to_worker)), Vec::new()),
        )
    }

    /// The scheduler's halves.
    pub fn scheduler_halves(&self) -> (Outbound, Inbound) {
        (
            Outbound(Some(Sealer::new(&self.scheduler_to_worker))),
            Inbound(Some(Sealer::new(&self.worker_to_scheduler)), Vec::new()),
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

    /// Seals a frame's body in place (when sealed), binding its mark to it;
    /// returns the tag to send after the body. Bodies must be sealed in the
    /// order their frames are written.
    pub(super) fn seal(
        &mut self,
        body: &mut [u8],
        mark: u8,
    ) -> Result<Option<[u8; TAG_LEN]>, WireError> {
        let Some(sealer) = &mut self.0 else {
            return Ok(None);
        };
        let nonce = sealer.next_nonce();
        let tag = sealer
            .cipher
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), &[mark], body)
            .map_err(|_| WireError::Garbage("a frame too long to seal".into()))?;
        Ok(Some(tag.into()))
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
/// check and open it; it keeps the buffer of its last message (when not
/// large) for the next, so messages do not each map fresh memory.
pub struct Inbound(Option<Sealer>, pub(super) Vec<u8>);

impl Inbound {
    /// A plain receiving half.
    pub fn plain() -> Self {
        Inbound(None, Vec::new())
    }

    /// Bytes a frame's tag takes (none when plain).
    pub(super) fn tag_len(&self) -> usize {
        if self.0.is_some() {
            TAG_LEN
        } else {
            0
        }
    }

    /// Checks and opens a frame's body in place (when sealed): `body` ends with
    /// its tag, which is cut off; `mark` must be the one it was sealed with. A
    /// body that fails its check is [`WireError::Forged`].
    pub(super) fn open(
        &mut self,
        body: &mut Vec<u8>,
        from: usize,
        mark: u8,
    ) -> Result<(), WireError> {
        if self.0.is_none() {
            return Ok(());
        }
        if body.len() < from + TAG_LEN {
            return Err(WireError::Forged);
        }
        let split = body.len() - TAG_LEN;
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&body[split..]);
        body.truncate(split);
        self.open_slice(&mut body[from..], &tag, mark)
    }

    /// Checks and opens a frame's body in place (when sealed), its tag given
    /// apart; like [`Inbound::open`].
    pub(super) fn open_slice(
        &mut self,
        body: &mut [u8],
        tag: &[u8],
        mark: u8,
    ) -> Result<(), WireError> {
        let Some(opener) = &mut self.0 else {
            return Ok(());
        };
        if tag.len() != TAG_LEN {
            return Err(WireError::Forged);
        }
        let tag = aes_gcm::Tag::clone_from_slice(tag);
        let nonce = opener.next_nonce();
        opener
            .cipher
            .decrypt_in_place_detached(Nonce::from_slice(&nonce), &[mark], body, &tag)
            .map_err(|_| WireError::Forged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

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

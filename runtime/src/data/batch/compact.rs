//! The compact wire form of a small plain batch: one run of bytes, written and
//! read without a serde call per field.
//!
//! A million one-sample partitions cross the wire twice each (the task's input,
//! the result's output). In the fields form each batch is a dozen nested values
//! (the key list, a map of arrays, each array's shape and bytes, three empty
//! maps and an empty option), and reading them cost 0.8 us per batch, most of
//! a tiny task's time. A batch with only keys and small arrays (no scalar or
//! lazy column, no failure, no sample sets) goes instead as one byte string:
//!
//! - the form's version (1 byte);
//! - the key list's byte length (u32) and its bytes ([`KeyList::as_bytes`]);
//! - the number of arrays (1 byte); per array: its name's length (u16, and
//!   `u16::MAX` for [`DATA`]) and text, its number of axes (1 byte), each axis
//!   (u32), then its values (f64).
//!
//! All numbers are little-endian. Reading checks every length against the
//! bytes there are; nothing read is trusted. Every other batch, and every
//! batch in a human-readable format, goes as its fields (the derived form).

use super::{Batch, Failures};
use crate::batch::DATA;
use crate::columns::{column_name, ColumnMap, SparseColumnMap};
use crate::data::key_list::KeyList;
use crate::wire::blocks::BLOCK_MIN;
use crate::wire::compact::{ByteReader, Compact};
use ndarray::{ArrayD, IxDyn};
use serde::{Deserializer, Serializer};
use std::sync::Arc;

/// The form's version byte.
const VERSION: u8 = 1;
/// The name length that stands for [`DATA`].
const DATA_NAME: u16 = u16::MAX;

crate::wire::compact::serde_by_form!(Batch);

impl Compact for Batch {
    const NAME: &'static str = "batch";

    /// The compact form, when the batch is plain and small: only keys and
    /// arrays, together under [`BLOCK_MIN`] bytes (a larger array goes as a
    /// block beside its message, where the fields form is cheap).
    fn write_compact(&self, out: &mut Vec<u8>) -> bool {
        encode(self, out)
    }

    fn read_compact(bytes: &[u8]) -> Result<Self, String> {
        decode(bytes)
    }

    fn serialize_fields<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Batch::serialize(self, s)
    }

    fn deserialize_fields<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Batch::deserialize(d)
    }
}

/// Appends the compact form of `batch` to `out` when it has one.
fn encode(batch: &Batch, out: &mut Vec<u8>) -> bool {
    if !is_plain(batch) {
        return false;
    }
    let keys = batch.keys.as_bytes();
    out.push(VERSION);
    out.extend_from_slice(&(keys.len() as u32).to_le_bytes());
    out.extend_from_slice(keys);
    out.push(batch.arrays.len() as u8);
    for (name, array) in batch.arrays.iter() {
        let name_len = match name {
            DATA => DATA_NAME,
            other => other.len() as u16,
        };
        out.extend_from_slice(&name_len.to_le_bytes());
        if name_len != DATA_NAME {
            out.extend_from_slice(name.as_bytes());
        }
        out.push(array.ndim() as u8);
        for &axis in array.shape() {
            out.extend_from_slice(&(axis as u32).to_le_bytes());
        }
        match array.as_slice() {
            Some(values) => values
                .iter()
                .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
            None => array
                .iter()
                .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        }
    }
    true
}

/// Whether `batch` has the compact form: keys and small arrays alone, each
/// length within what the form can say.
fn is_plain(batch: &Batch) -> bool {
    batch.values.is_empty()
        && batch.lazy.is_empty()
        && batch.failures.map().is_empty()
        && batch.sets.is_none()
        && batch.array_bytes() < BLOCK_MIN as u64
        && batch.keys.as_bytes().len() <= u32::MAX as usize
        && batch.arrays.len() <= usize::from(u8::MAX)
        && batch.arrays.iter().all(|(name, a)| {
            (name == DATA || name.len() < usize::from(DATA_NAME))
                && a.ndim() <= usize::from(u8::MAX)
                && a.shape().iter().all(|&n| n <= u32::MAX as usize)
        })
}

/// Reads a batch written by [`encode`].
fn decode(bytes: &[u8]) -> Result<Batch, String> {
    let mut r = ByteReader::new(bytes, Batch::NAME);
    r.version(VERSION)?;
    let keys_len = r.u32("the keys' length")? as usize;
    let keys = KeyList::from_bytes(r.take(keys_len, "its keys")?)?;
    let count = r.u8("the number of columns")?;
    let mut arrays = ColumnMap::new();
    for _ in 0..count {
        let name = match r.u16("a column name's length")? {
            DATA_NAME => column_name(DATA),
            n => {
                let text = r.take(usize::from(n), "a column name")?;
                let text = std::str::from_utf8(text)
                    .map_err(|e| format!("a column name is not text: {e}"))?;
                column_name(text)
            }
        };
        let ndim = usize::from(r.u8("a number of axes")?);
        let mut shape = Vec::with_capacity(ndim);
        for _ in 0..ndim {
            shape.push(r.u32("an axis")? as usize);
        }
        let count = shape
            .iter()
            .try_fold(1usize, |n, &axis| n.checked_mul(axis))
            .ok_or_else(|| format!("column {} has the impossible shape {shape:?}", &*name))?;
        // The column is named only when its values are short (no text made
        // per column on the way).
        let raw = r
            .take(count.saturating_mul(8), "the values")
            .map_err(|e| format!("{e} (column {})", &*name))?;
        let values: Vec<f64> = raw
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        let array = ArrayD::from_shape_vec(IxDyn(&shape), values).map_err(|e| e.to_string())?;
        arrays.insert_name(name, Arc::new(array));
    }
    r.finish()?;
    Ok(Batch {
        keys,
        arrays,
        values: SparseColumnMap::default(),
        lazy: SparseColumnMap::default(),
        failures: Failures::default(),
        sets: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::Sample;
    use ndarray::{array, ArrayD};

    fn batch(keys: &[&str], arrays: Vec<(&str, ArrayD<f64>)>) -> Batch {
        let mut map = ColumnMap::new();
        for (name, a) in arrays {
            map.insert(name, Arc::new(a));
        }
        Batch {
            keys: KeyList::new(keys),
            arrays: map,
            values: SparseColumnMap::default(),
            lazy: SparseColumnMap::default(),
            failures: Failures::default(),
            sets: None,
        }
    }

    /// Whether `a` and `b` hold the same keys, columns and values.
    fn same(a: &Batch, b: &Batch) -> bool {
        a.keys() == b.keys()
            && a.column_names() == b.column_names()
            && a.column_names()
                .iter()
                .all(|c| a.array(c) == b.array(c) && a.values(c) == b.values(c))
            && a.failures() == b.failures()
    }

    /// The batch as the wire writes it (MessagePack, structs as lists).
    fn wire_bytes(b: &Batch) -> Vec<u8> {
        rmp_serde::to_vec(b).unwrap()
    }

    /// Whether MessagePack bytes start with a byte string (the compact form).
    fn is_bytes(encoded: &[u8]) -> bool {
        matches!(encoded[0], 0xc4..=0xc6)
    }

    fn plain_batches() -> Vec<Batch> {
        let wide = ArrayD::from_shape_fn(ndarray::IxDyn(&[3, 2, 2]), |i| {
            (i[0] * 4 + i[1] * 2 + i[2]) as f64 - 0.5
        });
        // Not in standard order: its values go in logical order.
        let transposed = array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
            .reversed_axes()
            .into_dyn();
        vec![
            batch(&["only"], vec![(DATA, array![[7.25]].into_dyn())]),
            batch(
                &["a", "", "dé"],
                vec![
                    (DATA, wide),
                    ("emb", array![1.0, f64::NAN, -0.0].into_dyn()),
                ],
            ),
            batch(&["x", "y", "z"], vec![(DATA, transposed)]),
            batch(&[], vec![(DATA, ArrayD::zeros(ndarray::IxDyn(&[0, 4])))]),
            batch(&["no arrays"], vec![]),
        ]
    }

    #[test]
    fn small_plain_batches_go_compact_and_read_back_the_same() {
        for b in plain_batches() {
            let bytes = wire_bytes(&b);
            assert!(is_bytes(&bytes), "{b:?} went as fields");
            let back: Batch = rmp_serde::from_slice(&bytes).unwrap();
            // NaN is not equal to itself: compare the bits of the one column with it.
            if let Some(emb) = b.array("emb") {
                let bits = |a: &ArrayD<f64>| a.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(emb), bits(back.array("emb").unwrap()));
                assert_eq!(b.array(DATA), back.array(DATA));
                assert_eq!(b.keys(), back.keys());
            } else {
                assert!(same(&b, &back), "{b:?} came back as {back:?}");
            }
        }
    }

    #[test]
    fn other_batches_keep_their_fields_form_and_read_back_the_same() {
        let sample = |k: &str| Sample::new(k, array![1.0, 2.0].into_dyn());
        let with_values =
            Batch::from_samples(vec![sample("a").with("age", 3), sample("b").with("age", 4)])
                .unwrap();
        let failed = batch(&["a", "b"], vec![(DATA, array![[1.0], [2.0]].into_dyn())])
            .with_rows_failed(&[1], "step", "broken");
        let large = batch(
            &["big"],
            vec![(DATA, ArrayD::zeros(ndarray::IxDyn(&[1, BLOCK_MIN / 8])))],
        );
        for b in [with_values, failed, large] {
            let bytes = wire_bytes(&b);
            assert!(!is_bytes(&bytes), "{b:?} went compact");
            let back: Batch = rmp_serde::from_slice(&bytes).unwrap();
            assert!(same(&b, &back), "{b:?} came back as {back:?}");
        }
        // Field names (the handshake's encoding) and text formats read as fields.
        let plain = &plain_batches()[1];
        let named: Batch =
            rmp_serde::from_slice(&rmp_serde::to_vec_named(&plain).unwrap()).unwrap();
        assert_eq!(named.keys(), plain.keys());
        let text = serde_json::to_string(&plain_batches()[0]).unwrap();
        assert!(text.contains("\"keys\""), "{text}");
        let from_text: Batch = serde_json::from_str(&text).unwrap();
        assert!(same(&from_text, &plain_batches()[0]));
    }

    #[test]
    fn damaged_compact_bytes_are_refused_with_a_reason_never_a_panic() {
        let b = &plain_batches()[2];
        let mut bytes = Vec::new();
        assert!(encode(b, &mut bytes));
        assert!(same(&decode(&bytes).unwrap(), b));
        for cut in 0..bytes.len() {
            let e = decode(&bytes[..cut]).unwrap_err();
            assert!(!e.is_empty());
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).unwrap_err().contains("after its end"));
        let mut version = bytes.clone();
        version[0] = 9;
        assert!(decode(&version).unwrap_err().contains("batch of form 9"));
        // One key, then a column whose shape overflows.
        let mut huge = vec![VERSION];
        let keys = KeyList::new(&["k"]);
        huge.extend_from_slice(&(keys.as_bytes().len() as u32).to_le_bytes());
        huge.extend_from_slice(keys.as_bytes());
        huge.extend_from_slice(&[1, 0xff, 0xff, 3]);
        (0..3).for_each(|_| huge.extend_from_slice(&u32::MAX.to_le_bytes()));
        assert!(decode(&huge).unwrap_err().contains("impossible shape"));
        huge.truncate(huge.len() - 12);
        let ndim_at = huge.len() - 1;
        huge[ndim_at] = 2;
        (0..2).for_each(|_| huge.extend_from_slice(&1000u32.to_le_bytes()));
        assert!(decode(&huge)
            .unwrap_err()
            .contains("ends inside the values"));
    }
}

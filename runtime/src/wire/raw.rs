//! Raw blocks: an `f64` array travels as its shape plus its little-endian bytes (one
//! msgpack `bin`), not as one msgpack number per element.

use crate::columns::ColumnMap;
use ndarray::{ArrayD, IxDyn};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::sync::Arc;

#[derive(Serialize, Deserialize)]
struct Raw<'a> {
    shape: Vec<usize>,
    #[serde(borrow, with = "bytes")]
    data: std::borrow::Cow<'a, [u8]>,
    /// The values travel beside the message as this block ([`super::blocks`]);
    /// `data` is then empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    block: Option<u32>,
}

mod bytes {
    use serde::{Deserializer, Serializer};
    use std::borrow::Cow;

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(b)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Cow<'de, [u8]>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Cow<'de, [u8]>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_borrowed_bytes<E>(self, v: &'de [u8]) -> Result<Self::Value, E> {
                Ok(Cow::Borrowed(v))
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v.to_vec()))
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut v = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    v.push(b);
                }
                Ok(Cow::Owned(v))
            }
        }
        d.deserialize_bytes(V)
    }
}

/// The array's raw block: its own bytes, borrowed, when it is contiguous (on a
/// little-endian machine they already are the wire's bytes), else a copy; or,
/// while a message for the wire is encoded, a block beside it.
fn to_raw(a: &ArrayD<f64>) -> Raw<'_> {
    let shape = a.shape().to_vec();
    if let Some(block) = a.as_slice().and_then(super::blocks::offer) {
        return Raw {
            shape,
            data: std::borrow::Cow::Borrowed(&[]),
            block: Some(block),
        };
    }
    let data: std::borrow::Cow<'_, [u8]> = match a.as_slice() {
        #[cfg(target_endian = "little")]
        Some(s) => std::borrow::Cow::Borrowed(bytemuck::cast_slice(s)),
        _ => a.iter().flat_map(|x| x.to_le_bytes()).collect(),
    };
    Raw {
        shape,
        data,
        block: None,
    }
}

fn from_raw<E: serde::de::Error>(r: Raw<'_>) -> Result<ArrayD<f64>, E> {
    let n: usize = r.shape.iter().product();
    let values: Vec<f64> = match r.block {
        Some(block) => super::blocks::take(block).map_err(E::custom)?,
        None => r
            .data
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect(),
    };
    if values.len() != n || (r.block.is_none() && r.data.len() != n * 8) {
        return Err(E::custom(format!(
            "raw block of {} values for shape {:?}",
            values.len(),
            r.shape
        )));
    }
    ArrayD::from_shape_vec(IxDyn(&r.shape), values).map_err(E::custom)
}

/// Serialises one array as a raw block (`#[serde(with = "raw::array")]`).
pub mod array {
    use super::*;

    /// Writes the array as shape + raw bytes.
    pub fn serialize<S: Serializer>(a: &ArrayD<f64>, s: S) -> Result<S::Ok, S::Error> {
        to_raw(a).serialize(s)
    }

    /// Reads an array written by [`serialize`].
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ArrayD<f64>, D::Error> {
        from_raw(Raw::deserialize(d)?)
    }
}

/// Serialises one shared array as a raw block
/// (`#[serde(with = "raw::shared_array")]`).
pub mod shared_array {
    use super::*;

    /// Writes the array as shape + raw bytes.
    pub fn serialize<S: Serializer>(a: &Arc<ArrayD<f64>>, s: S) -> Result<S::Ok, S::Error> {
        to_raw(a).serialize(s)
    }

    /// Reads an array written by [`serialize`].
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<ArrayD<f64>>, D::Error> {
        Ok(Arc::new(from_raw(Raw::deserialize(d)?)?))
    }
}

/// Serialises a map of shared arrays as raw blocks.
pub mod array_map {
    use super::*;

    /// Writes each array as shape + raw bytes.
    pub fn serialize<S: Serializer>(
        m: &ColumnMap<Arc<ArrayD<f64>>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(m.len()))?;
        for (k, v) in m.iter() {
            map.serialize_entry(k, &to_raw(v))?;
        }
        map.end()
    }

    /// Reads a map written by [`serialize`], each array straight into its place
    /// (no map or name of its own per batch on the way).
    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<ColumnMap<Arc<ArrayD<f64>>>, D::Error> {
        struct Shared(Arc<ArrayD<f64>>);
        impl<'de> Deserialize<'de> for Shared {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Ok(Shared(Arc::new(from_raw(Raw::deserialize(d)?)?)))
            }
        }
        Ok(ColumnMap::<Shared>::deserialize(d)?.map_values(|s| s.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Holder {
        #[serde(with = "array")]
        a: ArrayD<f64>,
    }

    #[test]
    fn a_raw_block_is_about_eight_bytes_per_value_and_round_trips() {
        let a = ArrayD::from_shape_fn(IxDyn(&[1000, 16]), |d| (d[0] * 16 + d[1]) as f64 * 0.1);
        let h = Holder { a: a.clone() };
        let bytes = rmp_serde::to_vec_named(&h).unwrap();
        assert!(bytes.len() < 16_000 * 8 + 64, "{} bytes", bytes.len());
        let back: Holder = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back.a, a);
        let t = a.t().to_owned();
        let h = Holder {
            a: a.t().into_owned(),
        };
        let back: Holder = rmp_serde::from_slice(&rmp_serde::to_vec_named(&h).unwrap()).unwrap();
        assert_eq!(back.a, t);
    }
}

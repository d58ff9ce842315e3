//! [`ColumnMap`]: a small name -> column map for a batch's columns.
//!
//! A batch has a handful of columns, and a million one-sample partitions have a
//! million batches: a vector of pairs costs one small allocation where a `BTreeMap`
//! node costs hundreds of bytes.

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::marker::PhantomData;

/// Named columns in insertion order.
#[derive(Clone, Debug, PartialEq)]
pub struct ColumnMap<T>(Vec<(String, T)>);

impl<T> Default for ColumnMap<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<T> ColumnMap<T> {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// The column `name`.
    pub fn get(&self, name: &str) -> Option<&T> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// Whether `name` is present.
    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Sets `name`, replacing the old column.
    pub fn insert(&mut self, name: String, value: T) {
        match self.0.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = value,
            None => {
                // Exact growth: a batch has a handful of columns, and the default
                // growth (room for 4) would cost ~100 bytes per one-sample batch.
                self.0.reserve_exact(1);
                self.0.push((name, value))
            }
        }
    }

    /// Removes and returns `name`.
    pub fn remove(&mut self, name: &str) -> Option<T> {
        let i = self.0.iter().position(|(k, _)| k == name)?;
        Some(self.0.remove(i).1)
    }

    /// The names.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.iter().map(|(k, _)| k)
    }

    /// The pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &T)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// Whether there is no column.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many columns there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl<T: Serialize> Serialize for ColumnMap<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

struct MapVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for MapVisitor<T> {
    type Value = ColumnMap<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of columns")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
        let mut out = ColumnMap::new();
        while let Some((k, v)) = a.next_entry::<String, T>()? {
            out.insert(k, v);
        }
        Ok(out)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ColumnMap<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(MapVisitor(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_like_a_map() {
        let mut m = ColumnMap::new();
        m.insert("a".to_string(), 1);
        m.insert("b".to_string(), 2);
        m.insert("a".to_string(), 3);
        assert_eq!(m.get("a"), Some(&3));
        assert_eq!(m.keys().count(), 2);
        assert_eq!(m.remove("a"), Some(3));
        assert!(!m.contains_key("a") && !m.is_empty());
        let bytes = rmp_serde::to_vec_named(&m).unwrap();
        let back: ColumnMap<i32> = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, m);
    }
}

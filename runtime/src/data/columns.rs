//! [`ColumnMap`]: a small name -> column map for a batch's columns.
//!
//! A batch has a handful of columns, and a million one-sample partitions have a
//! million batches: a vector of pairs costs one small allocation where a `BTreeMap`
//! node costs hundreds of bytes.

use crate::batch::DATA;
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::marker::PhantomData;

/// A column's name. The usual one ([`DATA`]) is not allocated per batch: a
/// million one-sample partitions would spend a million small allocations on it.
/// Two words wide, so that a column entry of a one-sample batch takes one small
/// allocation slot.
#[derive(Clone, Eq)]
pub struct ColumnName(Option<Box<str>>);

impl PartialEq for ColumnName {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl ColumnName {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        self.0.as_deref().unwrap_or(DATA)
    }
}

impl std::ops::Deref for ColumnName {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for ColumnName {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for ColumnName {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ColumnName {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for ColumnName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Serialize for ColumnName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The [`ColumnName`] of `name`.
pub fn column_name(name: &str) -> ColumnName {
    match name {
        DATA => ColumnName(None),
        other => ColumnName(Some(other.into())),
    }
}

/// Named columns in insertion order.
#[derive(Clone, Debug, PartialEq)]
pub struct ColumnMap<T>(Vec<(ColumnName, T)>);

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
    pub fn insert(&mut self, name: &str, value: T) {
        match self.get_mut(name) {
            Some(slot) => *slot = value,
            None => self.push(column_name(name), value),
        }
    }

    /// Sets `name` (a name already made), replacing the old column.
    pub fn insert_name(&mut self, name: ColumnName, value: T) {
        match self.get_mut(&name) {
            Some(slot) => *slot = value,
            None => self.push(name, value),
        }
    }

    fn get_mut(&mut self, name: &str) -> Option<&mut T> {
        self.0.iter_mut().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    fn push(&mut self, name: ColumnName, value: T) {
        // Exact growth: a batch has a handful of columns, and the default growth
        // (room for 4) would cost ~100 bytes per one-sample batch.
        self.0.reserve_exact(1);
        self.0.push((name, value))
    }

    /// Removes and returns `name`.
    pub fn remove(&mut self, name: &str) -> Option<T> {
        self.remove_entry(name).map(|(_, v)| v)
    }

    /// Removes `name` and returns it with its column.
    pub fn remove_entry(&mut self, name: &str) -> Option<(ColumnName, T)> {
        let i = self.0.iter().position(|(k, _)| k == name)?;
        Some(self.0.remove(i))
    }

    /// The names.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_ref())
    }

    /// The pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &T)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v))
    }

    /// Whether there is no column.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The same names with each column made by `f`, in order.
    pub fn map_values<U>(self, mut f: impl FnMut(T) -> U) -> ColumnMap<U> {
        ColumnMap(self.0.into_iter().map(|(k, v)| (k, f(v))).collect())
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
        while let Some((NameKey(k), v)) = a.next_entry::<NameKey, T>()? {
            out.insert_name(k, v);
        }
        Ok(out)
    }
}

/// A column's name as read: made with [`column_name`] straight from the text
/// (no string is allocated for `data`).
struct NameKey(ColumnName);

impl<'de> Deserialize<'de> for NameKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl Visitor<'_> for NameVisitor {
            type Value = NameKey;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a column name")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<NameKey, E> {
                Ok(NameKey(column_name(v)))
            }
        }
        d.deserialize_str(NameVisitor)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ColumnMap<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(MapVisitor(PhantomData))
    }
}

/// A [`ColumnMap`] that is usually empty (a batch's scalar and lazy columns): one
/// pointer wide, so that a million one-sample batches stay small; the map is
/// allocated with its first column.
#[derive(Clone, Debug, PartialEq)]
pub struct SparseColumnMap<T>(Option<Box<ColumnMap<T>>>);

impl<T> Default for SparseColumnMap<T> {
    fn default() -> Self {
        Self(None)
    }
}

impl<T> SparseColumnMap<T> {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// The column `name`.
    pub fn get(&self, name: &str) -> Option<&T> {
        self.0.as_ref()?.get(name)
    }

    /// Whether `name` is present.
    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Sets `name`, replacing the old column.
    pub fn insert(&mut self, name: &str, value: T) {
        self.0
            .get_or_insert_with(Default::default)
            .insert(name, value)
    }

    /// Removes and returns `name` (the map's memory goes with its last column).
    pub fn remove(&mut self, name: &str) -> Option<T> {
        let map = self.0.as_mut()?;
        let out = map.remove(name);
        if map.is_empty() {
            self.0 = None;
        }
        out
    }

    /// The names.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().flat_map(|m| m.keys())
    }

    /// The pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &T)> {
        self.0.iter().flat_map(|m| m.iter())
    }

    /// Whether there is no column.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }
}

impl<T: Serialize> Serialize for SparseColumnMap<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Some(m) => m.serialize(s),
            None => ColumnMap::<T>::new().serialize(s),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for SparseColumnMap<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let m = ColumnMap::deserialize(d)?;
        Ok(Self((!m.is_empty()).then(|| Box::new(m))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_column_name_is_two_words_and_data_is_not_allocated() {
        assert_eq!(std::mem::size_of::<ColumnName>(), 16);
        assert!(column_name(DATA).0.is_none());
        assert_eq!(column_name(DATA), DATA);
        assert_eq!(column_name("score").as_str(), "score");
        assert_ne!(column_name("score"), column_name(DATA));
    }

    /// Failing before: names compared their inner option, so `data` spelled out
    /// differed from `data` made by `column_name`.
    #[test]
    fn equal_names_are_equal_however_they_were_made() {
        assert_eq!(ColumnName(Some(DATA.into())), column_name(DATA));
        assert_ne!(ColumnName(Some("x".into())), column_name(DATA));
    }

    #[test]
    fn behaves_like_a_map() {
        let mut m = ColumnMap::new();
        m.insert("a", 1);
        m.insert("b", 2);
        m.insert("a", 3);
        assert_eq!(m.get("a"), Some(&3));
        assert_eq!(m.keys().count(), 2);
        assert_eq!(m.remove("a"), Some(3));
        assert!(!m.contains_key("a") && !m.is_empty());
        let bytes = rmp_serde::to_vec_named(&m).unwrap();
        let back: ColumnMap<i32> = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn a_sparse_map_is_one_pointer_holds_memory_only_while_not_empty_and_reads_like_a_map() {
        assert_eq!(std::mem::size_of::<SparseColumnMap<Vec<u8>>>(), 8);
        let mut m = SparseColumnMap::new();
        assert!(m.is_empty() && m.get("a").is_none() && m.remove("a").is_none());
        m.insert("a", 1);
        m.insert("b", 2);
        assert_eq!(m.keys().collect::<Vec<_>>(), ["a", "b"]);
        let bytes = rmp_serde::to_vec_named(&m).unwrap();
        let back: ColumnMap<i32> = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(
            back.iter().collect::<Vec<_>>(),
            m.iter().collect::<Vec<_>>()
        );
        assert_eq!(m.remove("a"), Some(1));
        assert_eq!(m.remove("b"), Some(2));
        assert!(
            m.is_empty() && m.0.is_none(),
            "its memory went with the last column"
        );
        let empty = rmp_serde::to_vec_named(&m).unwrap();
        assert_eq!(
            empty,
            rmp_serde::to_vec_named(&ColumnMap::<i32>::new()).unwrap()
        );
        let back: SparseColumnMap<i32> = rmp_serde::from_slice(&empty).unwrap();
        assert!(back.0.is_none());
    }
}

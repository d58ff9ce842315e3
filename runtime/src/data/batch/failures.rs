//! [`Failures`]: a batch's failed rows, shared between a step's input and its
//! output, and no allocation at all while no row has failed (the common case: a
//! million one-sample partitions would otherwise hold a million empty maps).

use super::Failure;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The rows that failed, and why.
#[derive(Clone, Debug, Default)]
pub(crate) struct Failures(Option<Arc<BTreeMap<usize, Failure>>>);

/// The map of a batch without failures.
static NONE: BTreeMap<usize, Failure> = BTreeMap::new();

impl Failures {
    /// These failures (none when the map is empty).
    pub(crate) fn from_map(map: BTreeMap<usize, Failure>) -> Self {
        Failures((!map.is_empty()).then(|| Arc::new(map)))
    }

    /// The failed rows.
    pub(crate) fn map(&self) -> &BTreeMap<usize, Failure> {
        self.0.as_deref().unwrap_or(&NONE)
    }

    /// The failed rows, to change (copied first when shared).
    pub(crate) fn make_mut(&mut self) -> &mut BTreeMap<usize, Failure> {
        Arc::make_mut(self.0.get_or_insert_with(Default::default))
    }
}

impl Serialize for Failures {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.map().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Failures {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Failures::from_map(BTreeMap::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_failure_allocates_nothing_and_a_change_is_copy_on_write() {
        let none = Failures::default();
        assert!(none.0.is_none() && none.map().is_empty());
        assert!(Failures::from_map(BTreeMap::new()).0.is_none());
        let mut a = Failures::default();
        a.make_mut().insert(
            3,
            Failure {
                step: "s".into(),
                reason: "r".into(),
            },
        );
        let b = a.clone();
        a.make_mut().remove(&3);
        assert_eq!(b.map().len(), 1, "the copy kept its failure");
        assert!(a.map().is_empty());
        let back: Failures = rmp_serde::from_slice(&rmp_serde::to_vec(&b).unwrap()).unwrap();
        assert_eq!(back.map(), b.map());
    }
}

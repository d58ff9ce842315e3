//! How serde writes and reads a [`Batch`]: a small plain batch in its compact
//! form ([`super::compact`]) for binary formats (the wire), every other batch,
//! and every batch in a human-readable format, as its fields (the derived form).

use super::Batch;
use crate::wire::compact;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

impl Serialize for Batch {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        compact::serialize(self, s)
    }
}

impl<'de> Deserialize<'de> for Batch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        compact::deserialize(d)
    }
}

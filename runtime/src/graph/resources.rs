//! Consumable resources: what a task needs and what a worker offers.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A set of named, consumable resource amounts, e.g. `{gpu: 1}`.
///
/// Names are free, case-sensitive strings (`GPU` and `gpu` differ). On a task it is
/// what the task needs; on a worker it is what the worker offers. A worker with
/// `{gpu: 1}` runs one `{gpu: 1}` task at a time. The empty set is the shape of an
/// untagged task, which any worker can run.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Resources(BTreeMap<String, u32>);

impl Resources {
    /// No resources: the shape of an untagged task.
    pub fn none() -> Self {
        Self::default()
    }

    /// One resource of the given amount, e.g. `Resources::one("gpu", 1)`.
    pub fn one(name: impl Into<String>, amount: u32) -> Self {
        Self::none().with(name, amount)
    }

    /// Adds (or replaces) a named amount; an amount of 0 removes the name.
    pub fn with(mut self, name: impl Into<String>, amount: u32) -> Self {
        let name = name.into();
        if amount == 0 {
            self.0.remove(&name);
        } else {
            self.0.insert(name, amount);
        }
        self
    }

    /// Whether no resource is named.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The amount of one resource (0 when absent).
    pub fn get(&self, name: &str) -> u32 {
        self.0.get(name).copied().unwrap_or(0)
    }

    /// Iterates over `(name, amount)` pairs in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u32)> {
        self.0.iter().map(|(k, v)| (k.as_str(), *v))
    }

    /// Whether these resources cover `need`: every named amount is at least the need.
    pub fn covers(&self, need: &Resources) -> bool {
        need.0.iter().all(|(k, v)| self.get(k) >= *v)
    }

    /// The first resource of `need` that these resources cannot cover, with the amounts.
    pub fn first_missing<'a>(&self, need: &'a Resources) -> Option<(&'a str, u32, u32)> {
        need.0
            .iter()
            .find(|(k, v)| self.get(k) < **v)
            .map(|(k, v)| (k.as_str(), *v, self.get(k)))
    }

    /// Takes `need` out of these resources (saturating); call only after `covers`.
    pub fn take(&mut self, need: &Resources) {
        for (k, v) in &need.0 {
            if let Some(have) = self.0.get_mut(k) {
                *have = have.saturating_sub(*v);
            }
        }
    }

    /// Gives `need` back after a task finished, up to `cap` (the worker's total).
    pub fn give_back(&mut self, need: &Resources, cap: &Resources) {
        for (k, v) in &need.0 {
            let total = cap.get(k);
            if let Some(have) = self.0.get_mut(k) {
                *have = (*have + v).min(total);
            }
        }
    }

    /// The element-wise maximum of two sets: what a task running both needs at once.
    pub fn union_max(&self, other: &Resources) -> Resources {
        let mut out = self.clone();
        for (k, v) in &other.0 {
            let e = out.0.entry(k.clone()).or_insert(0);
            *e = (*e).max(*v);
        }
        out
    }
}

impl fmt::Debug for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{k}: {v}")?;
        }
        f.write_str("}")
    }
}

impl<K: Into<String>> FromIterator<(K, u32)> for Resources {
    fn from_iter<I: IntoIterator<Item = (K, u32)>>(iter: I) -> Self {
        iter.into_iter()
            .fold(Resources::none(), |r, (k, v)| r.with(k, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_is_per_name_and_case_sensitive() {
        let worker = Resources::one("gpu", 1);
        assert!(worker.covers(&Resources::none()));
        assert!(worker.covers(&Resources::one("gpu", 1)));
        assert!(!worker.covers(&Resources::one("gpu", 2)));
        assert!(!worker.covers(&Resources::one("GPU", 1)));
        assert_eq!(
            worker.first_missing(&Resources::one("GPU", 1)),
            Some(("GPU", 1, 0))
        );
    }

    #[test]
    fn take_and_give_back_are_consumable() {
        let total = Resources::one("gpu", 2);
        let mut free = total.clone();
        free.take(&Resources::one("gpu", 1));
        assert!(free.covers(&Resources::one("gpu", 1)));
        free.take(&Resources::one("gpu", 1));
        assert!(!free.covers(&Resources::one("gpu", 1)));
        free.give_back(&Resources::one("gpu", 1), &total);
        free.give_back(&Resources::one("gpu", 5), &total);
        assert_eq!(free.get("gpu"), 2);
    }

    #[test]
    fn display_and_union() {
        let a: Resources = [("gpu", 1), ("io_big", 1)].into_iter().collect();
        assert_eq!(a.to_string(), "{gpu: 1, io_big: 1}");
        let b = Resources::one("gpu", 2);
        assert_eq!(a.union_max(&b).get("gpu"), 2);
        assert_eq!(Resources::one("x", 0), Resources::none());
    }
}

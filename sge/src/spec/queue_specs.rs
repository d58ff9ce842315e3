//! The validated, labelled set of queue specs.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use crate::spec::error::QueueSpecError;
use crate::spec::queue_spec::QueueSpec;

/// A validated map from label to [`QueueSpec`], ordered by label.
///
/// Always contains a [`QueueSpecs::DEFAULT`] (`"default"`) label, and every
/// label is non-empty and uses only `[A-Za-z0-9_-]`. Load it from TOML with
/// [`QueueSpecs::from_toml_str`] or [`QueueSpecs::from_toml_file`] (one table
/// per label), or build it in code with [`QueueSpecs::new`] and
/// [`QueueSpecs::with`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct QueueSpecs {
    specs: BTreeMap<String, QueueSpec>,
}

impl QueueSpecs {
    /// The label that must always be present.
    pub const DEFAULT: &'static str = "default";

    /// Queue specs holding only `default`.
    pub fn new(default: QueueSpec) -> Result<Self, QueueSpecError> {
        Self::from_map(BTreeMap::from([(Self::DEFAULT.to_owned(), default)]))
    }

    /// Validates `specs` (labels, values and the `default` label).
    pub fn from_map(specs: BTreeMap<String, QueueSpec>) -> Result<Self, QueueSpecError> {
        for (label, spec) in &specs {
            validate_label(label)?;
            spec.validate(label)?;
        }
        if !specs.contains_key(Self::DEFAULT) {
            return Err(QueueSpecError::MissingDefault);
        }
        Ok(Self { specs })
    }

    /// Adds or replaces the spec for `label` after validating both.
    pub fn with(
        mut self,
        label: impl Into<String>,
        spec: QueueSpec,
    ) -> Result<Self, QueueSpecError> {
        self.insert(label, spec)?;
        Ok(self)
    }

    /// Adds or replaces the spec for `label` after validating both, returning
    /// the replaced spec.
    pub fn insert(
        &mut self,
        label: impl Into<String>,
        spec: QueueSpec,
    ) -> Result<Option<QueueSpec>, QueueSpecError> {
        let label = label.into();
        validate_label(&label)?;
        spec.validate(&label)?;
        Ok(self.specs.insert(label, spec))
    }

    /// The spec for `label`, if any.
    pub fn get(&self, label: &str) -> Option<&QueueSpec> {
        self.specs.get(label)
    }

    /// The spec labelled `default`.
    pub fn default_spec(&self) -> &QueueSpec {
        &self.specs[Self::DEFAULT]
    }

    /// All labels, in order.
    pub fn labels(&self) -> impl Iterator<Item = &str> {
        self.specs.keys().map(String::as_str)
    }

    /// All `(label, spec)` pairs, in label order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &QueueSpec)> {
        self.specs
            .iter()
            .map(|(label, spec)| (label.as_str(), spec))
    }

    /// The number of labels (at least 1, for `default`).
    pub fn len(&self) -> usize {
        self.specs.len()
    }

    /// Always `false`: there is at least the `default` label.
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// The labels whose workers advertise a non-zero amount of `resource`
    /// in their `resources`, in label order.
    pub fn offering(&self, resource: &str) -> Vec<&str> {
        self.iter()
            .filter(|(_, spec)| spec.offers(resource))
            .map(|(label, _)| label)
            .collect()
    }

    /// One warning per label whose `mem_free` request is above `host_bytes`
    /// (see [`crate::Memory::warn_if_above_host`]); such jobs wait in `qw` forever.
    pub fn warnings_above_host(&self, host_bytes: u64) -> Vec<String> {
        self.iter()
            .filter_map(|(label, spec)| spec.memory?.warn_if_above_host(label, host_bytes))
            .collect()
    }
}

impl<'de> Deserialize<'de> for QueueSpecs {
    /// Deserializes a map of label to spec table with the one parser of
    /// [`QueueSpecs::from_toml_str`] (errors name the label and the key) and
    /// validates it like [`QueueSpecs::from_map`].
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let tables = BTreeMap::<String, toml::Table>::deserialize(deserializer)?;
        Self::from_tables(tables).map_err(serde::de::Error::custom)
    }
}

impl<'a> IntoIterator for &'a QueueSpecs {
    type Item = (&'a String, &'a QueueSpec);
    type IntoIter = std::collections::btree_map::Iter<'a, String, QueueSpec>;

    /// Iterates over `(label, spec)` pairs in label order.
    fn into_iter(self) -> Self::IntoIter {
        self.specs.iter()
    }
}

/// Checks that `label` is non-empty and uses only `[A-Za-z0-9_-]`.
pub(crate) fn validate_label(label: &str) -> Result<(), QueueSpecError> {
    let valid = !label.is_empty()
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if valid {
        Ok(())
    } else {
        Err(QueueSpecError::InvalidLabel {
            label: label.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Memory;

    fn specs() -> QueueSpecs {
        QueueSpecs::new(QueueSpec::new("q_1day").with_memory(Memory::gib(8)))
            .and_then(|s| {
                s.with(
                    "gpu",
                    QueueSpec::new("q_gpu")
                        .with_memory(Memory::gib(12))
                        .with_resource("gpu", 1),
                )
            })
            .and_then(|s| {
                s.with(
                    "big-gpu",
                    QueueSpec::new("q_gpu")
                        .with_resource("gpu", 4)
                        .with_resource("ssd", 1),
                )
            })
            .unwrap()
    }

    #[test]
    fn offering_lists_labels_in_order() {
        let specs = specs();
        assert_eq!(specs.offering("gpu"), ["big-gpu", "gpu"]);
        assert_eq!(specs.offering("ssd"), ["big-gpu"]);
        assert!(specs.offering("fpga").is_empty());
    }

    #[test]
    fn accessors() {
        let specs = specs();
        assert_eq!(specs.len(), 3);
        assert!(!specs.is_empty());
        assert_eq!(specs.default_spec().queue, "q_1day");
        assert_eq!(specs.get("gpu").unwrap().queue, "q_gpu");
        assert_eq!(
            specs.labels().collect::<Vec<_>>(),
            ["big-gpu", "default", "gpu"]
        );
        assert_eq!((&specs).into_iter().count(), 3);
    }

    #[test]
    fn missing_default_is_rejected() {
        let map = BTreeMap::from([("gpu".to_owned(), QueueSpec::new("q_gpu"))]);
        let err = QueueSpecs::from_map(map).unwrap_err();
        assert!(matches!(err, QueueSpecError::MissingDefault));
        assert!(err.to_string().contains("default"), "{err}");
    }

    #[test]
    fn invalid_labels_are_rejected() {
        let base = specs();
        for label in ["", "gpu queue", "gpu.big", "gpü", "a/b"] {
            let err = base.clone().with(label, QueueSpec::new("q")).unwrap_err();
            assert!(matches!(err, QueueSpecError::InvalidLabel { .. }), "{err}");
            assert!(err.to_string().contains(&format!("`{label}`")), "{err}");
        }
        assert!(base.with("Gpu_2-x", QueueSpec::new("q")).is_ok());
    }

    #[test]
    fn insert_validates_spec() {
        let mut specs = specs();
        let err = specs
            .insert("gpu", QueueSpec::new("q").with_max_jobs(0))
            .unwrap_err();
        assert!(err.to_string().contains("[gpu]"), "{err}");
        assert_eq!(specs.get("gpu").unwrap().queue, "q_gpu");
    }

    #[test]
    fn warnings_name_labels() {
        let warnings = specs().warnings_above_host(10 * (1 << 30));
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("[gpu]"), "{}", warnings[0]);
    }

    #[test]
    fn serde_validates() {
        let text = toml::to_string(&specs()).unwrap();
        assert_eq!(toml::from_str::<QueueSpecs>(&text).unwrap(), specs());
        let err = toml::from_str::<QueueSpecs>("[gpu]\nqueue = \"q\"").unwrap_err();
        assert!(err.to_string().contains("default"), "{err}");
    }

    #[test]
    fn serde_and_files_share_one_parser_and_its_errors() {
        for text in [
            "[default]\nqueue = 1",
            "[default]\nqueue = \"q\"\nmemroy = \"8G\"",
            "[default]\nqueue = \"q\"\nmemory = \"lots\"",
            "[default]\nio_big = true",
        ] {
            let from_file = QueueSpecs::from_toml_str(text).unwrap_err().to_string();
            let from_serde = toml::from_str::<QueueSpecs>(text).unwrap_err().to_string();
            assert!(
                from_serde.contains(&from_file),
                "{from_serde} / {from_file}"
            );
            assert!(from_file.contains("[default]"), "{from_file}");
        }
    }
}

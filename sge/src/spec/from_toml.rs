//! Loading [`QueueSpecs`] from TOML with errors that name label and key.

use std::collections::BTreeMap;
use std::path::Path;

use serde::de::DeserializeOwned;
use toml::{Table, Value};

use crate::spec::error::QueueSpecError;
use crate::spec::memory::Memory;
use crate::spec::queue_spec::QueueSpec;
use crate::spec::queue_specs::{validate_label, QueueSpecs};

impl QueueSpecs {
    /// Parses and validates queue specs from TOML text, one table per label:
    ///
    /// ```
    /// # use gridpipe_sge::QueueSpecs;
    /// let specs = QueueSpecs::from_toml_str(r#"
    ///     [default]
    ///     queue = "q_1day"
    ///     memory = "8GB"
    ///     io_big = true
    ///
    ///     [gpu]
    ///     queue = "q_gpu"
    ///     resource_spec = ["gpu=1"]
    ///     resources = { gpu = 1 }
    /// "#)?;
    /// assert_eq!(specs.offering("gpu"), ["gpu"]);
    /// # Ok::<(), gridpipe_sge::QueueSpecError>(())
    /// ```
    ///
    /// Errors on invalid TOML, on unknown keys, and on every check of
    /// [`QueueSpec::validate`] and [`QueueSpecs::from_map`]; the messages name
    /// the label and the key.
    pub fn from_toml_str(text: &str) -> Result<Self, QueueSpecError> {
        let table: Table =
            toml::from_str(text).map_err(|source| QueueSpecError::Parse { source })?;
        let mut tables = BTreeMap::new();
        for (label, value) in table {
            let Value::Table(table) = value else {
                validate_label(&label)?;
                return Err(QueueSpecError::NotATable { label });
            };
            tables.insert(label, table);
        }
        Self::from_tables(tables)
    }

    /// Builds and validates the specs from one table per label.
    pub(crate) fn from_tables(tables: BTreeMap<String, Table>) -> Result<Self, QueueSpecError> {
        let mut specs = BTreeMap::new();
        for (label, table) in tables {
            validate_label(&label)?;
            let spec = spec_from_table(&label, table)?;
            specs.insert(label, spec);
        }
        Self::from_map(specs)
    }

    /// Reads, parses and validates a queue specs TOML file; see
    /// [`QueueSpecs::from_toml_str`].
    ///
    /// Every error names `path` (as [`QueueSpecError::Read`] or wrapped in
    /// [`QueueSpecError::InFile`]).
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<Self, QueueSpecError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| QueueSpecError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(&text).map_err(|err| err.in_file(path))
    }
}

/// Builds the spec for `label` from its table, key by key, so that unknown
/// keys and wrongly typed values are reported with label and key: the one
/// parser of queue specs (files and serde alike).
pub(crate) fn spec_from_table(label: &str, table: Table) -> Result<QueueSpec, QueueSpecError> {
    let mut queue = None;
    let mut spec = QueueSpec::new("");
    for (key, value) in table {
        match key.as_str() {
            "queue" => queue = Some(field::<String>(label, "queue", value)?),
            "memory" => {
                let text = field::<String>(label, "memory", value)?;
                let memory =
                    text.parse::<Memory>()
                        .map_err(|source| QueueSpecError::BadMemory {
                            label: label.to_owned(),
                            source,
                        })?;
                spec.memory = Some(memory);
            }
            "io_big" => spec.io_big = field(label, "io_big", value)?,
            "resource_spec" => spec.resource_spec = field(label, "resource_spec", value)?,
            "resources" => spec.resources = field(label, "resources", value)?,
            "max_jobs" => spec.max_jobs = Some(field(label, "max_jobs", value)?),
            _ => {
                return Err(QueueSpecError::UnknownKey {
                    label: label.to_owned(),
                    key,
                })
            }
        }
    }
    spec.queue = queue.ok_or_else(|| QueueSpecError::MissingKey {
        label: label.to_owned(),
        key: "queue",
    })?;
    Ok(spec)
}

/// Deserializes the value of `key`, reporting a wrong type with label and key.
fn field<T: DeserializeOwned>(
    label: &str,
    key: &'static str,
    value: Value,
) -> Result<T, QueueSpecError> {
    T::deserialize(value).map_err(|err| QueueSpecError::WrongType {
        label: label.to_owned(),
        key,
        message: err.message().to_owned(),
    })
}

impl<'de> serde::Deserialize<'de> for QueueSpec {
    /// Deserializes one spec table with the same parser as files (errors name
    /// the key).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let table = Table::deserialize(deserializer)?;
        spec_from_table("", table).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
[default]
queue = "q_1day"
memory = "8GB"
io_big = true
max_jobs = 10
[gpu]
queue = "q_gpu"
memory = "12GB"
resource_spec = ["gpu=1"]
resources = { gpu = 1 }
max_jobs = 1
"#;

    /// The example with `line` appended to the `[gpu]` table.
    fn with_gpu_line(line: &str) -> String {
        format!("{EXAMPLE}{line}\n")
    }

    fn error(text: &str) -> QueueSpecError {
        QueueSpecs::from_toml_str(text).unwrap_err()
    }

    /// Asserts the error message names the `[gpu]` label and `key`.
    fn assert_names_gpu_and(err: &QueueSpecError, key: &str) {
        let msg = err.to_string();
        assert!(msg.contains("[gpu]"), "label missing: {msg}");
        assert!(msg.contains(&format!("`{key}`")), "key missing: {msg}");
    }

    #[test]
    fn parses_example() {
        let specs = QueueSpecs::from_toml_str(EXAMPLE).unwrap();
        assert_eq!(specs.labels().collect::<Vec<_>>(), ["default", "gpu"]);
        assert_eq!(
            specs.default_spec(),
            &QueueSpec::new("q_1day")
                .with_memory(Memory::gib(8))
                .with_io_big(true)
                .with_max_jobs(10)
        );
        assert_eq!(
            specs.get("gpu").unwrap(),
            &QueueSpec::new("q_gpu")
                .with_memory(Memory::gib(12))
                .with_resource_spec("gpu=1")
                .with_resource("gpu", 1)
                .with_max_jobs(1)
        );
        assert_eq!(
            specs.default_spec().qsub_resource_requests(),
            ["mem_free=8G", "io_big=TRUE"]
        );
        assert_eq!(
            specs.get("gpu").unwrap().qsub_resource_requests(),
            ["mem_free=12G", "gpu=1"]
        );
        assert_eq!(specs.offering("gpu"), ["gpu"]);
        // The serde path accepts the same text.
        assert_eq!(toml::from_str::<QueueSpecs>(EXAMPLE).unwrap(), specs);
    }

    #[test]
    fn unknown_key() {
        let err = error(&with_gpu_line("gpus = 2"));
        assert!(matches!(err, QueueSpecError::UnknownKey { .. }), "{err}");
        assert_names_gpu_and(&err, "gpus");
    }

    #[test]
    fn missing_queue() {
        let err = error("[default]\nqueue = \"q\"\n[gpu]\nmemory = \"8G\"\n");
        assert!(matches!(err, QueueSpecError::MissingKey { .. }), "{err}");
        assert_names_gpu_and(&err, "queue");
    }

    #[test]
    fn empty_queue() {
        let err = error("[default]\nqueue = \"q\"\n[gpu]\nqueue = \"\"\n");
        assert!(matches!(err, QueueSpecError::EmptyQueue { .. }), "{err}");
        assert_names_gpu_and(&err, "queue");
    }

    #[test]
    fn bad_memory() {
        let text = EXAMPLE.replace("\"12GB\"", "\"12 gigs\"");
        let err = error(&text);
        assert!(matches!(err, QueueSpecError::BadMemory { .. }), "{err}");
        assert_names_gpu_and(&err, "memory");
        assert!(err.to_string().contains("12 gigs"), "{err}");
    }

    #[test]
    fn bad_resource_spec() {
        let text = EXAMPLE.replace("[\"gpu=1\"]", "[\"gpu\"]");
        let err = error(&text);
        assert!(
            matches!(err, QueueSpecError::BadResourceSpec { .. }),
            "{err}"
        );
        assert_names_gpu_and(&err, "resource_spec");
    }

    #[test]
    fn zero_max_jobs() {
        let text = EXAMPLE.replace("max_jobs = 1\n", "max_jobs = 0\n");
        let err = error(&text);
        assert!(matches!(err, QueueSpecError::ZeroMaxJobs { .. }), "{err}");
        assert_names_gpu_and(&err, "max_jobs");
    }

    #[test]
    fn zero_resource() {
        let text = EXAMPLE.replace("{ gpu = 1 }", "{ gpu = 0 }");
        let err = error(&text);
        assert!(matches!(err, QueueSpecError::ZeroResource { .. }), "{err}");
        assert_names_gpu_and(&err, "resources");
    }

    #[test]
    fn wrong_types() {
        for (from, to, key) in [
            ("max_jobs = 1\n", "max_jobs = \"one\"\n", "max_jobs"),
            ("max_jobs = 1\n", "max_jobs = -1\n", "max_jobs"),
            ("{ gpu = 1 }", "{ gpu = -1 }", "resources"),
            ("[\"gpu=1\"]", "\"gpu=1\"", "resource_spec"),
            ("\"12GB\"", "12", "memory"),
            ("\"q_gpu\"", "1", "queue"),
        ] {
            let err = error(&EXAMPLE.replace(from, to));
            assert!(matches!(err, QueueSpecError::WrongType { .. }), "{err}");
            assert_names_gpu_and(&err, key);
        }
        let err = error(&with_gpu_line("io_big = \"yes\""));
        assert_names_gpu_and(&err, "io_big");
    }

    #[test]
    fn invalid_label() {
        let err = error(&format!("{EXAMPLE}[\"gpu queue\"]\nqueue = \"q\"\n"));
        assert!(matches!(err, QueueSpecError::InvalidLabel { .. }), "{err}");
        assert!(err.to_string().contains("`gpu queue`"), "{err}");
        let err = error(&format!("{EXAMPLE}[\"\"]\nqueue = \"q\"\n"));
        assert!(matches!(err, QueueSpecError::InvalidLabel { .. }), "{err}");
    }

    #[test]
    fn not_a_table() {
        let err = error(&format!("gpu2 = 3\n{EXAMPLE}"));
        assert!(matches!(err, QueueSpecError::NotATable { .. }), "{err}");
        assert!(err.to_string().contains("gpu2"), "{err}");
    }

    #[test]
    fn missing_default() {
        let text = EXAMPLE.replace("[default]", "[cpu]");
        let err = error(&text);
        assert!(matches!(err, QueueSpecError::MissingDefault), "{err}");
        assert!(err.to_string().contains("[default]"), "{err}");
    }

    #[test]
    fn parse_error() {
        let err = error("[default\nqueue = \"q\"\n");
        assert!(matches!(err, QueueSpecError::Parse { .. }), "{err}");
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    /// A file in the system temp dir, removed on drop.
    struct TempFile(std::path::PathBuf);

    impl TempFile {
        fn new(name: &str, text: &str) -> Self {
            let path = std::env::temp_dir()
                .join(format!("gridpipe-sge-{}-{name}.toml", std::process::id()));
            std::fs::write(&path, text).unwrap();
            Self(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn loads_file() {
        let file = TempFile::new("ok", EXAMPLE);
        let specs = QueueSpecs::from_toml_file(&file.0).unwrap();
        assert_eq!(specs, QueueSpecs::from_toml_str(EXAMPLE).unwrap());
    }

    #[test]
    fn file_errors_name_path() {
        let file = TempFile::new("unknown", &with_gpu_line("gpus = 2"));
        let err = QueueSpecs::from_toml_file(&file.0).unwrap_err();
        assert_eq!(err.path(), Some(file.0.as_path()));
        assert!(matches!(err.inner(), QueueSpecError::UnknownKey { .. }));
        let msg = err.to_string();
        assert!(msg.contains(&file.0.display().to_string()), "{msg}");
        assert_names_gpu_and(&err, "gpus");

        let file = TempFile::new("syntax", "[default\n");
        let err = QueueSpecs::from_toml_file(&file.0).unwrap_err();
        assert!(matches!(err.inner(), QueueSpecError::Parse { .. }));
        assert!(
            err.to_string().contains(&file.0.display().to_string()),
            "{err}"
        );

        let missing = file.0.with_extension("missing");
        let err = QueueSpecs::from_toml_file(&missing).unwrap_err();
        assert!(matches!(err, QueueSpecError::Read { .. }), "{err}");
        assert!(
            err.to_string().contains(&missing.display().to_string()),
            "{err}"
        );
    }
}

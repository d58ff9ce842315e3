//! Error types for memory strings and queue specs.

use std::path::{Path, PathBuf};

use thiserror::Error;

/// Why a memory string such as `"8GB"` could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MemoryError {
    /// The string was empty (or only whitespace).
    #[error("memory amount is empty; expected something like `8GB` or `512M`")]
    Empty,
    /// The string does not start with a whole number.
    #[error("memory amount `{input}` must start with a whole number, like `8GB` or `512M`")]
    InvalidNumber {
        /// The rejected input.
        input: String,
    },
    /// The unit after the number is missing or unknown.
    #[error(
        "memory amount `{input}` needs a whole number followed by a unit of K, M, G or T \
         (optionally followed by B), like `8GB` or `512M`"
    )]
    InvalidUnit {
        /// The rejected input.
        input: String,
    },
    /// The amount is zero.
    #[error("memory amount `{input}` must be greater than zero")]
    Zero {
        /// The rejected input.
        input: String,
    },
    /// The amount does not fit into 64 bits of bytes.
    #[error("memory amount `{input}` is too large")]
    Overflow {
        /// The rejected input.
        input: String,
    },
}

/// Why a set of queue specs is invalid or could not be loaded.
///
/// Every message names the queue spec label (as `[label]`, the TOML table
/// header) and, where one is involved, the offending key.
#[derive(Debug, Error)]
pub enum QueueSpecError {
    /// The queue specs file could not be read.
    #[error("cannot read queue specs file `{}`: {source}", path.display())]
    Read {
        /// The file that was being read.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The text is not valid TOML.
    #[error("queue specs are not valid TOML: {source}")]
    Parse {
        /// The TOML parser's error (with line and column).
        source: toml::de::Error,
    },
    /// A label is empty or uses characters other than `[A-Za-z0-9_-]`.
    #[error(
        "invalid queue spec label `{label}`: labels must be non-empty and use only \
         A-Z, a-z, 0-9, `_` and `-`"
    )]
    InvalidLabel {
        /// The rejected label.
        label: String,
    },
    /// A top-level entry is not a table (`[label]`).
    #[error("queue spec `{label}` must be a table (`[{label}]`) of queue settings")]
    NotATable {
        /// The label of the entry.
        label: String,
    },
    /// A queue spec contains a key that is not one of the known settings.
    #[error(
        "queue spec [{label}]: unknown key `{key}` (allowed keys: queue, memory, io_big, \
         resource_spec, resources, max_jobs)"
    )]
    UnknownKey {
        /// The label of the queue spec.
        label: String,
        /// The unknown key.
        key: String,
    },
    /// A required key is missing.
    #[error("queue spec [{label}]: missing required key `{key}`")]
    MissingKey {
        /// The label of the queue spec.
        label: String,
        /// The missing key.
        key: &'static str,
    },
    /// A key has a value of the wrong type (e.g. a string for `max_jobs`).
    #[error("queue spec [{label}]: key `{key}` has an invalid value: {message}")]
    WrongType {
        /// The label of the queue spec.
        label: String,
        /// The key whose value is invalid.
        key: &'static str,
        /// What was wrong with the value.
        message: String,
    },
    /// The queue name is empty.
    #[error("queue spec [{label}]: key `queue` must not be empty")]
    EmptyQueue {
        /// The label of the queue spec.
        label: String,
    },
    /// The memory request is not a valid memory amount.
    #[error("queue spec [{label}]: key `memory`: {source}")]
    BadMemory {
        /// The label of the queue spec.
        label: String,
        /// Why the memory amount was rejected.
        source: MemoryError,
    },
    /// A `resource_spec` entry is not of the form `name=value`.
    #[error(
        "queue spec [{label}]: key `resource_spec`: entry `{entry}` is not of the form \
         `name=value` (e.g. `gpu=1`)"
    )]
    BadResourceSpec {
        /// The label of the queue spec.
        label: String,
        /// The rejected entry.
        entry: String,
    },
    /// `max_jobs` is zero.
    #[error("queue spec [{label}]: key `max_jobs` must be at least 1")]
    ZeroMaxJobs {
        /// The label of the queue spec.
        label: String,
    },
    /// A `resources` entry has an empty name.
    #[error("queue spec [{label}]: key `resources`: resource names must not be empty")]
    EmptyResourceName {
        /// The label of the queue spec.
        label: String,
    },
    /// A `resources` entry advertises an amount of zero.
    #[error("queue spec [{label}]: key `resources`: amount of `{resource}` must be at least 1")]
    ZeroResource {
        /// The label of the queue spec.
        label: String,
        /// The resource with amount zero.
        resource: String,
    },
    /// There is no queue spec labelled `default`.
    #[error("queue specs have no [default] label; a `default` queue spec is required")]
    MissingDefault,
    /// An error found while loading a particular file.
    #[error("queue specs file `{}`: {source}", path.display())]
    InFile {
        /// The file the error was found in.
        path: PathBuf,
        /// The error itself.
        source: Box<QueueSpecError>,
    },
}

impl QueueSpecError {
    /// Wraps this error so that its message names `path`.
    pub(crate) fn in_file(self, path: &Path) -> Self {
        match self {
            // Already names its path.
            err @ (Self::Read { .. } | Self::InFile { .. }) => err,
            err => Self::InFile {
                path: path.to_path_buf(),
                source: Box::new(err),
            },
        }
    }

    /// The file the error was found in, if it came from a file.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::Read { path, .. } | Self::InFile { path, .. } => Some(path),
            _ => None,
        }
    }

    /// The error without any file context (`self` unless this is [`Self::InFile`]).
    pub fn inner(&self) -> &QueueSpecError {
        match self {
            Self::InFile { source, .. } => source.inner(),
            err => err,
        }
    }
}

//! Grid Engine (Sun / Son of Grid Engine) support for gridpipe.
//!
//! For now this crate holds the *queue specs*: named descriptions of how
//! jobs are submitted with `qsub` and what the workers they start offer.
//! Job submission itself comes later.
//!
//! Queue specs are loaded from TOML, one table per label, and a `default`
//! label is required:
//!
//! ```toml
//! [default]
//! queue = "q_1day"
//! memory = "8GB"
//! io_big = true
//! max_jobs = 10
//!
//! [gpu]
//! queue = "q_gpu"
//! memory = "12GB"
//! resource_spec = ["gpu=1"]
//! resources = { gpu = 1 }
//! max_jobs = 1
//! ```
//!
//! # How a queue spec maps to Grid Engine
//!
//! - `queue` → `qsub -q <queue>`.
//! - `memory` → `qsub -l mem_free=<memory>` (e.g. `"8GB"` → `mem_free=8G`).
//!   `mem_free` is a load value that the scheduler checks against each
//!   host's currently free memory; it is not a limit on the job. **A
//!   `mem_free` above what any host offers waits in `qw` forever**, with no
//!   error: check requests with [`Memory::warn_if_above_host`] or
//!   [`QueueSpecs::warnings_above_host`].
//! - `io_big = true` → `qsub -l io_big=TRUE`.
//! - `resource_spec` → one extra `qsub -l <entry>` per `name=value` entry,
//!   e.g. `-l gpu=1`.
//! - `resources` → not passed to Grid Engine: what the job's worker
//!   advertises to the gridpipe runtime (e.g. `{ gpu = 1 }`), so that tasks
//!   needing a resource are sent to workers of a label that offers it (see
//!   [`QueueSpecs::offering`]).
//! - `max_jobs` → not passed to Grid Engine: at most this many jobs of the
//!   label run at once.
//!
//! [`QueueSpec::qsub_resource_requests`] returns the `-l` requests in a
//! fixed order: `mem_free`, then `io_big`, then the `resource_spec` entries.
//!
//! # Validation
//!
//! [`QueueSpecs::from_toml_str`] and [`QueueSpecs::from_toml_file`] reject
//! unknown keys, wrongly typed values, an empty `queue`, bad memory strings,
//! `resource_spec` entries not of the form `name=value`, a `max_jobs` of 0,
//! `resources` amounts of 0, labels that are empty or use characters other
//! than `[A-Za-z0-9_-]`, and a missing `default` label. Errors are
//! [`QueueSpecError`]s whose messages name the label and the key (and the
//! file, when loaded from one).

mod error;
mod load;
mod memory;
mod spec;
mod specs;

pub use error::{MemoryError, QueueSpecError};
pub use memory::Memory;
pub use spec::QueueSpec;
pub use specs::QueueSpecs;

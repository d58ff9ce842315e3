//! A single queue spec: how jobs for one label are submitted to Grid Engine.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::spec::error::{MemoryError, QueueSpecError};
use crate::spec::memory::Memory;

/// How jobs for one queue spec label are submitted, and what their workers offer.
///
/// | field           | Grid Engine                                   |
/// |-----------------|-----------------------------------------------|
/// | `queue`         | `qsub -q <queue>`                             |
/// | `memory`        | `qsub -l mem_free=<memory>`                   |
/// | `io_big`        | `qsub -l io_big=TRUE`                         |
/// | `resource_spec` | one extra `qsub -l <entry>` per entry         |
/// | `resources`     | not passed to Grid Engine; advertised by the worker |
/// | `max_jobs`      | not passed to Grid Engine; limits concurrent jobs |
///
/// `memory` is requested as `mem_free`, a load value that Grid Engine
/// compares with the host's free memory at scheduling time: a request above
/// what the hosts offer keeps the job in `qw` forever (see [`Memory`]).
///
/// Build one in code with [`QueueSpec::new`] and the `with_*` methods, or
/// deserialize it (one parser serves files and serde alike: unknown keys,
/// missing keys and wrong types are errors naming the key). Call [`QueueSpec::validate`]
/// (or load it through [`crate::QueueSpecs`]) to check it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueSpec {
    /// The Grid Engine queue, passed as `qsub -q <queue>`.
    pub queue: String,
    /// The memory request, passed as `qsub -l mem_free=<memory>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
    /// Whether to request `qsub -l io_big=TRUE`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub io_big: bool,
    /// Extra `-l` requests of the form `name=value`, such as `gpu=1`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_spec: Vec<String>,
    /// What a worker started on this queue advertises, e.g. `{gpu: 1}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resources: BTreeMap<String, u32>,
    /// At most this many jobs of this queue spec at once (`None`: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_jobs: Option<u32>,
}

fn is_false(value: &bool) -> bool {
    !*value
}

impl QueueSpec {
    /// The keys a queue spec table may contain.
    pub const KEYS: [&'static str; 6] = [
        "queue",
        "memory",
        "io_big",
        "resource_spec",
        "resources",
        "max_jobs",
    ];

    /// A queue spec for `queue` with no memory request, no extra resources
    /// and no job limit.
    pub fn new(queue: impl Into<String>) -> Self {
        Self {
            queue: queue.into(),
            memory: None,
            io_big: false,
            resource_spec: Vec::new(),
            resources: BTreeMap::new(),
            max_jobs: None,
        }
    }

    /// Sets the `mem_free` memory request.
    pub fn with_memory(mut self, memory: Memory) -> Self {
        self.memory = Some(memory);
        self
    }

    /// Sets whether to request `io_big=TRUE`.
    pub fn with_io_big(mut self, io_big: bool) -> Self {
        self.io_big = io_big;
        self
    }

    /// Adds an extra `-l` request of the form `name=value`, e.g. `"gpu=1"`.
    pub fn with_resource_spec(mut self, request: impl Into<String>) -> Self {
        self.resource_spec.push(request.into());
        self
    }

    /// Sets the `amount` of resource `name` a worker of this queue advertises.
    pub fn with_resource(mut self, name: impl Into<String>, amount: u32) -> Self {
        self.resources.insert(name.into(), amount);
        self
    }

    /// Limits how many jobs of this queue spec may run at once.
    pub fn with_max_jobs(mut self, max_jobs: u32) -> Self {
        self.max_jobs = Some(max_jobs);
        self
    }

    /// Checks the values; errors name `label` and the offending key.
    ///
    /// Rejects an empty `queue`, a zero `memory`, `resource_spec` entries not
    /// of the form `name=value`, a `max_jobs` of 0, and `resources` with an
    /// empty name or an amount of 0.
    pub fn validate(&self, label: &str) -> Result<(), QueueSpecError> {
        let label = || label.to_owned();
        if self.queue.trim().is_empty() {
            return Err(QueueSpecError::EmptyQueue { label: label() });
        }
        if let Some(memory) = self.memory.filter(|m| m.bytes() == 0) {
            return Err(QueueSpecError::BadMemory {
                label: label(),
                source: MemoryError::Zero {
                    input: memory.to_string(),
                },
            });
        }
        if let Some(entry) = self.resource_spec.iter().find(|e| !is_name_value(e)) {
            return Err(QueueSpecError::BadResourceSpec {
                label: label(),
                entry: entry.clone(),
            });
        }
        if self.max_jobs == Some(0) {
            return Err(QueueSpecError::ZeroMaxJobs { label: label() });
        }
        if self.resources.keys().any(|name| name.trim().is_empty()) {
            return Err(QueueSpecError::EmptyResourceName { label: label() });
        }
        if let Some((name, _)) = self.resources.iter().find(|(_, amount)| **amount == 0) {
            return Err(QueueSpecError::ZeroResource {
                label: label(),
                resource: name.clone(),
            });
        }
        Ok(())
    }

    /// The `qsub -l` requests, in a fixed order: `mem_free=<memory>` (if a
    /// memory is set), `io_big=TRUE` (if `io_big`), then the `resource_spec`
    /// entries as given.
    pub fn qsub_resource_requests(&self) -> Vec<String> {
        let mut requests = Vec::with_capacity(2 + self.resource_spec.len());
        requests.extend(self.memory.map(|m| m.sge_request()));
        if self.io_big {
            requests.push("io_big=TRUE".to_owned());
        }
        requests.extend(self.resource_spec.iter().cloned());
        requests
    }

    /// What a worker of this queue offers the scheduler (its `resources`).
    pub fn worker_resources(&self) -> gridpipe_runtime::Resources {
        self.resources
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// Whether a worker of this queue advertises a non-zero amount of `resource`.
    pub fn offers(&self, resource: &str) -> bool {
        self.resources
            .get(resource)
            .is_some_and(|amount| *amount > 0)
    }
}

/// Whether `entry` is a single `name=value` request: both sides non-empty,
/// one `=`, and no whitespace or commas (a comma would start another request).
fn is_name_value(entry: &str) -> bool {
    let Some((name, value)) = entry.split_once('=') else {
        return false;
    };
    let plain =
        |s: &str| !s.is_empty() && !s.contains(|c: char| c.is_whitespace() || c == ',' || c == '=');
    plain(name) && plain(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu_spec() -> QueueSpec {
        QueueSpec::new("q_gpu")
            .with_memory(Memory::gib(12))
            .with_resource_spec("gpu=1")
            .with_resource("gpu", 1)
            .with_max_jobs(1)
    }

    #[test]
    fn builder_sets_fields() {
        let spec = gpu_spec().with_io_big(true);
        assert_eq!(spec.queue, "q_gpu");
        assert_eq!(spec.memory, Some(Memory::gib(12)));
        assert!(spec.io_big);
        assert_eq!(spec.resource_spec, ["gpu=1"]);
        assert_eq!(spec.resources.get("gpu"), Some(&1));
        assert_eq!(spec.max_jobs, Some(1));
        assert!(spec.validate("gpu").is_ok());
    }

    #[test]
    fn requests_are_ordered() {
        let spec = QueueSpec::new("q")
            .with_resource_spec("gpu=1")
            .with_resource_spec("h_rt=3600")
            .with_io_big(true)
            .with_memory("8GB".parse().unwrap());
        assert_eq!(
            spec.qsub_resource_requests(),
            ["mem_free=8G", "io_big=TRUE", "gpu=1", "h_rt=3600"]
        );
        assert_eq!(
            QueueSpec::new("q")
                .with_resource_spec("gpu=1")
                .qsub_resource_requests(),
            ["gpu=1"]
        );
        assert!(QueueSpec::new("q").qsub_resource_requests().is_empty());
    }

    fn message(spec: &QueueSpec) -> String {
        spec.validate("gpu").unwrap_err().to_string()
    }

    #[test]
    fn empty_queue_is_rejected() {
        let spec = QueueSpec::new(" ");
        assert!(matches!(
            spec.validate("gpu"),
            Err(QueueSpecError::EmptyQueue { .. })
        ));
        let msg = message(&spec);
        assert!(msg.contains("[gpu]") && msg.contains("`queue`"), "{msg}");
    }

    #[test]
    fn zero_memory_is_rejected() {
        let spec = QueueSpec::new("q").with_memory(Memory::from_bytes(0));
        let msg = message(&spec);
        assert!(msg.contains("[gpu]") && msg.contains("`memory`"), "{msg}");
    }

    #[test]
    fn bad_resource_spec_is_rejected() {
        for entry in ["gpu", "gpu=", "=1", "gpu=1,foo=2", "gpu = 1", "a=b=c"] {
            let spec = QueueSpec::new("q").with_resource_spec(entry);
            match spec.validate("gpu") {
                Err(QueueSpecError::BadResourceSpec { label, entry: e }) => {
                    assert_eq!((label.as_str(), e.as_str()), ("gpu", entry));
                }
                other => panic!("{entry}: {other:?}"),
            }
            let msg = message(&spec);
            assert!(msg.contains("[gpu]"), "{msg}");
            assert!(msg.contains("`resource_spec`"), "{msg}");
            assert!(msg.contains(entry), "{msg}");
        }
    }

    #[test]
    fn zero_max_jobs_is_rejected() {
        let spec = QueueSpec::new("q").with_max_jobs(0);
        assert!(matches!(
            spec.validate("gpu"),
            Err(QueueSpecError::ZeroMaxJobs { .. })
        ));
        let msg = message(&spec);
        assert!(msg.contains("[gpu]") && msg.contains("`max_jobs`"), "{msg}");
    }

    #[test]
    fn zero_resource_is_rejected() {
        let spec = QueueSpec::new("q").with_resource("gpu", 0);
        assert!(matches!(
            spec.validate("gpu"),
            Err(QueueSpecError::ZeroResource { .. })
        ));
        let msg = message(&spec);
        assert!(
            msg.contains("[gpu]") && msg.contains("`resources`"),
            "{msg}"
        );
        assert!(msg.contains("`gpu`"), "{msg}");
        assert!(!spec.offers("gpu"));
    }

    #[test]
    fn empty_resource_name_is_rejected() {
        let spec = QueueSpec::new("q").with_resource("", 1);
        let msg = message(&spec);
        assert!(
            msg.contains("[gpu]") && msg.contains("`resources`"),
            "{msg}"
        );
    }

    #[test]
    fn serde_rejects_unknown_fields() {
        let err = toml::from_str::<QueueSpec>("queue = \"q\"\nmemroy = \"8G\"").unwrap_err();
        assert!(err.to_string().contains("memroy"), "{err}");
        let spec: QueueSpec = toml::from_str("queue = \"q\"").unwrap();
        assert_eq!(spec, QueueSpec::new("q"));
        let text = toml::to_string(&gpu_spec()).unwrap();
        assert_eq!(toml::from_str::<QueueSpec>(&text).unwrap(), gpu_spec());
    }
}

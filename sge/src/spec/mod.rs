//! Queue specs: how jobs of each label are submitted and what their workers
//! offer ([`queue_spec`], [`queue_specs`]), read from TOML by one parser
//! ([`from_toml`]), with memory requests ([`memory`]) and their errors
//! ([`error`]).

pub(crate) mod error;
pub(crate) mod from_toml;
pub(crate) mod memory;
pub(crate) mod queue_spec;
pub(crate) mod queue_specs;

//! The data model: samples and their values, columns, key checks, one partition
//! in columns ([`batch`]) and a partitioned collection ([`bag`]).

pub mod bag;
pub mod batch;
pub mod columns;
pub mod error;
pub mod keys;
pub mod sample;
pub mod value;

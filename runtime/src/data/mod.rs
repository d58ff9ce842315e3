//! The data model: samples and their values, columns, key checks, one partition
//! in columns ([`batch`]), a partitioned collection ([`bag`]) and its stacking ([`stack`]).

pub mod bag;
pub mod batch;
pub mod columns;
pub mod error;
pub mod fresh;
pub mod key_list;
pub mod keys;
pub mod sample;
pub mod stack;
pub mod value;

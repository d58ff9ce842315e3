//! Shared pieces of the gridpipe example programs: the seed's two estimators, the
//! command-line options every example shares, and benchmark helpers.

#![warn(missing_docs)]

pub mod bench;
pub mod cli;
pub mod failure;
pub mod seed;
pub mod sge_cli;

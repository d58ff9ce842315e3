//! The cluster's control: one actor per queue ([`queue_actor`]), the controller
//! over them ([`controller`]) with its adaptive rounds ([`adaptive`],
//! [`adapt_state`], [`adapt_report`], read from a [`clock`]) and their pure policy ([`policy`]), the
//! cluster's status ([`cluster_status`]), its dashboard panel ([`panel`]) and the
//! signal handlers that delete every job ([`interrupt`]).

pub(crate) mod adapt_report;
pub(crate) mod adapt_state;
pub(crate) mod adaptive;
pub mod clock;
pub(crate) mod cluster_status;
pub(crate) mod controller;
pub(crate) mod interrupt;
pub(crate) mod panel;
pub mod policy;
pub(crate) mod queue_actor;

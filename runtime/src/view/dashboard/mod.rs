//! The dashboard: a live page and a JSON API beside the runtime.
//!
//! Every request needs the dashboard's token (see [`access`]): a request
//! without it gets 403. `GET /` is the page (no external script, style or font: it works offline),
//! `GET /api/status` the [`view::Status`] as JSON (the page polls it twice a
//! second), `GET /api/events` the same status as server-sent events. A runtime
//! starts it on `127.0.0.1:8787` unless told otherwise
//! ([`crate::RuntimeConfig::dashboard`], or `GRIDPIPE_DASHBOARD=off|ADDR`); when
//! the default port is taken, the next free one is used and logged, while an
//! address asked for explicitly is an error when taken. A cluster adds its jobs and
//! scaling decisions through a [`ClusterPanel`].

#[cfg(feature = "view")]
pub mod access;
#[cfg(feature = "view")]
pub mod server;
pub mod view;

use futures::future::BoxFuture;
use std::sync::{Arc, Mutex};

/// The cluster panel shown, if any (set after the runtime starts).
pub type SharedPanel = Arc<Mutex<Option<Arc<dyn ClusterPanel>>>>;

/// Where the dashboard listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DashboardSetting {
    /// No dashboard.
    Off,
    /// `127.0.0.1:8787`, or the next free port when taken (logged).
    Default,
    /// Exactly this address (an error when it cannot be bound).
    At(String),
}

impl DashboardSetting {
    /// The setting from `GRIDPIPE_DASHBOARD` (`off`, or an address), if set.
    pub fn from_env() -> Option<Self> {
        let v = std::env::var("GRIDPIPE_DASHBOARD").ok()?;
        let v = v.trim();
        Some(match v {
            "" => return None,
            "off" | "0" | "false" | "no" => DashboardSetting::Off,
            addr => DashboardSetting::At(addr.to_string()),
        })
    }
}

/// A cluster's contribution to the page: its jobs and scaling decisions.
pub trait ClusterPanel: Send + Sync {
    /// The cluster's current view.
    fn view(&self) -> BoxFuture<'static, view::ClusterView>;
}

//! Ctrl-C and SIGTERM: delete every live cluster's jobs (tracked, and every job
//! named after the cluster, see [`crate::Close`]), then exit.
//!
//! Installed once per process by the first cluster that asks; the signals are
//! awaited on a thread of their own, so the deletes block that thread, never an
//! async executor.

use crate::control::controller::{CloseAll, ClusterController};
use actix::Addr;
use std::sync::{Mutex, Once};
use std::time::Duration;

static LIVE: Mutex<Vec<(u64, Addr<ClusterController>)>> = Mutex::new(Vec::new());
static INSTALL: Once = Once::new();
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Registers a cluster's watch for deletion on a signal; returns its ticket.
pub(crate) fn register(watch: Addr<ClusterController>) -> u64 {
    INSTALL.call_once(install);
    let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    LIVE.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((id, watch));
    id
}

/// Forgets a closed cluster.
pub(crate) fn unregister(id: u64) {
    LIVE.lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|(i, _)| *i != id);
}

fn install() {
    let spawned = std::thread::Builder::new()
        .name("gridpipe-signals".into())
        .spawn(|| {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "cannot watch for Ctrl-C: jobs are not deleted on it");
                    return;
                }
            };
            let code = rt.block_on(wait_for_signal());
            let Some(code) = code else { return };
            let watches: Vec<Addr<ClusterController>> = LIVE
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|(_, w)| w.clone())
                .collect();
            eprintln!("gridpipe: interrupted; deleting the cluster's jobs");
            for w in watches {
                let result = rt.block_on(async {
                    tokio::time::timeout(Duration::from_secs(90), w.send(CloseAll)).await
                });
                match result {
                    Ok(Ok(Ok(()))) => eprintln!("gridpipe: jobs deleted"),
                    Ok(Ok(Err(e))) => eprintln!("gridpipe: could not delete every job: {e}"),
                    Ok(Err(_)) => {}
                    Err(_) => eprintln!("gridpipe: deleting jobs timed out"),
                }
            }
            std::process::exit(code);
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot watch for Ctrl-C: jobs are not deleted on it");
    }
}

/// Waits for SIGINT (exit code 130) or SIGTERM (143).
async fn wait_for_signal() -> Option<i32> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).ok()?;
    let mut int = signal(SignalKind::interrupt()).ok()?;
    tokio::select! {
        _ = int.recv() => Some(130),
        _ = term.recv() => Some(143),
    }
}

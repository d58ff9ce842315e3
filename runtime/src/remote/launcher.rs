//! Accepting worker connections, and starting worker processes on this machine.

use super::proxy::RemoteWorker;
use super::worker_process::CONNECT_ENV;
use crate::actors::scheduler::Scheduler;
use crate::config::WorkerSpec;
use crate::wire::auth::{Secret, SECRET_ENV};
use crate::wire::handshake::scheduler_side;
use actix::prelude::*;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Accepts worker connections on `listener` forever: each one is admitted by the
/// handshake (a refused or broken one is logged and closed; the others go on) and
/// gets its own [`RemoteWorker`] on its own arbiter.
pub async fn accept_workers(
    listener: tokio::net::TcpListener,
    scheduler: Addr<Scheduler>,
    secret: Secret,
    build: String,
    heartbeat_timeout: Duration,
) {
    let counter = Arc::new(AtomicU32::new(0));
    loop {
        let (mut stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(%e, "accept failed");
                continue;
            }
        };
        let (scheduler, secret, build, counter) = (
            scheduler.clone(),
            secret.clone(),
            build.clone(),
            counter.clone(),
        );
        actix_rt::spawn(async move {
            let n = counter.fetch_add(1, Ordering::Relaxed);
            let admitted = tokio::time::timeout(
                heartbeat_timeout,
                scheduler_side(&mut stream, &secret, &build, n),
            )
            .await;
            let hello = match admitted {
                Ok(Ok(h)) => h,
                Ok(Err(e)) => {
                    tracing::warn!(%peer, error = %e, "worker connection refused");
                    return;
                }
                Err(_) => {
                    tracing::warn!(%peer, "worker handshake timed out");
                    return;
                }
            };
            let _ = stream.set_nodelay(true);
            let std_stream = match stream.into_std() {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(%e, "cannot hand the connection over");
                    return;
                }
            };
            tracing::info!(%peer, worker = %hello.identity.name, "worker admitted");
            let arbiter = Arbiter::new();
            let proxy = move || RemoteWorker::new(hello, std_stream, scheduler, heartbeat_timeout);
            RemoteWorker::start_in_arbiter(&arbiter.handle(), |_| proxy());
        });
    }
}

/// Worker processes started on this machine; killed when dropped.
#[derive(Debug, Default)]
pub struct LocalWorkers {
    children: Vec<Child>,
}

impl LocalWorkers {
    /// Starts one process of `program` per spec, connecting to `addr`. The secret
    /// goes through the environment, never the command line.
    pub fn spawn(
        program: &Path,
        addr: &str,
        secret: &Secret,
        specs: &[WorkerSpec],
    ) -> std::io::Result<Self> {
        let mut children = Vec::with_capacity(specs.len());
        for spec in specs {
            let resources: Vec<String> = spec
                .resources
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let child = Command::new(program)
                .env(CONNECT_ENV, addr)
                .env(SECRET_ENV, secret.to_hex())
                .env("GRIDPIPE_WORKER_NAME", &spec.name)
                .env("GRIDPIPE_WORKER_RESOURCES", resources.join(","))
                .stdin(Stdio::null())
                .spawn()?;
            children.push(child);
        }
        Ok(Self { children })
    }

    /// Process ids of the workers.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(|c| c.id()).collect()
    }

    /// Exit statuses of workers that already ended (for error messages).
    pub fn exited(&mut self) -> Vec<String> {
        self.children
            .iter_mut()
            .filter_map(|c| {
                c.try_wait()
                    .ok()
                    .flatten()
                    .map(|s| format!("pid {}: {s}", c.id()))
            })
            .collect()
    }
}

impl Drop for LocalWorkers {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
        }
        for c in &mut self.children {
            let _ = c.wait();
        }
    }
}

//! A terminal progress bar for a blocking run: tasks done of total, rate and ETA,
//! drawn on stderr by a thread of its own (indicatif) and cleared when the run
//! returns. Only used when stderr is a terminal.

use crate::actors::scheduler::{RunProgress, Scheduler};
use actix::Addr;
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::mpsc;
use std::time::Duration;

/// The bar's thread; dropping it stops and clears the bar at once.
pub struct ProgressBarThread {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ProgressBarThread {
    /// Starts drawing the scheduler's progress (over its active runs).
    pub fn start(scheduler: Addr<Scheduler>) -> Self {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("gridpipe-progress".into())
            .spawn(move || {
                let bar = ProgressBar::new(0);
                bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} tasks ({per_sec}, eta {eta})",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                loop {
                    if let Ok((done, total)) = futures::executor::block_on(scheduler.send(RunProgress)) {
                        bar.set_length(total as u64);
                        bar.set_position(done as u64);
                    }
                    match stopped.recv_timeout(Duration::from_millis(100)) {
                        Err(mpsc::RecvTimeoutError::Timeout) => continue,
                        _ => break,
                    }
                }
                bar.finish_and_clear();
            })
            .ok();
        Self {
            stop: Some(stop),
            thread,
        }
    }
}

impl Drop for ProgressBarThread {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

//! A terminal progress bar for the runs a program waits for: tasks done of total,
//! rate and ETA, drawn on stderr by a thread of its own (indicatif) and cleared
//! when the last awaited run returns. One bar per runtime, whether the runs are
//! awaited with `run` or `run_async`, however many at once; only drawn when
//! stderr is a terminal.

use crate::actors::scheduler::{RunProgress, Scheduler};
use actix::Addr;
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// Shows one bar while at least one run is awaited: [`ProgressWatch::watch`]
/// hands out a guard per awaited run; the bar goes when the last guard does.
pub struct ProgressWatch {
    scheduler: Addr<Scheduler>,
    /// Runs awaited, and the bar while there is any.
    state: Mutex<(usize, Option<ProgressBarThread>)>,
}

/// Keeps the runtime's bar on screen while it lives (one per awaited run).
pub struct ProgressGuard(Arc<ProgressWatch>);

impl ProgressWatch {
    /// A watch over `scheduler`'s runs, with no bar yet.
    pub fn new(scheduler: Addr<Scheduler>) -> Arc<Self> {
        Arc::new(Self {
            scheduler,
            state: Mutex::new((0, None)),
        })
    }

    /// One more awaited run: the bar starts with the first.
    pub fn watch(self: &Arc<Self>) -> ProgressGuard {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.0 += 1;
        if state.1.is_none() {
            state.1 = Some(ProgressBarThread::start(self.scheduler.clone()));
        }
        ProgressGuard(self.clone())
    }

    /// How many runs are awaited (the bar is shown while this is above zero).
    pub fn awaited(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).0
    }

    /// Whether the bar's thread is running.
    pub fn showing(&self) -> bool {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .is_some()
    }
}

impl Drop for ProgressGuard {
    fn drop(&mut self) {
        let bar = {
            let mut state = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
            state.0 -= 1;
            if state.0 == 0 {
                state.1.take()
            } else {
                None
            }
        };
        // Stopped outside the lock: the bar's thread ends at once and clears it.
        drop(bar);
    }
}

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

#[cfg(test)]
mod tests {
    use super::ProgressWatch;
    use crate::config::RuntimeConfig;
    use crate::runtime::Runtime;

    #[test]
    fn one_bar_lives_from_the_first_awaited_run_to_the_last() {
        let rt = Runtime::start(RuntimeConfig::in_process(1).without_dashboard()).unwrap();
        let watch = ProgressWatch::new(rt.scheduler());
        assert!(!watch.showing());
        let first = watch.watch();
        let second = watch.watch();
        assert_eq!(watch.awaited(), 2);
        assert!(watch.showing());
        drop(first);
        assert!(watch.showing(), "a run is still awaited");
        drop(second);
        assert_eq!(watch.awaited(), 0);
        assert!(!watch.showing(), "the bar goes with the last awaited run");
        let _again = watch.watch();
        assert!(watch.showing(), "and comes back with the next");
    }
}

//! [`Clock`]: where adaptive scaling reads the time. The real clock by default;
//! a [`ManualClock`] lets a test move time on (idle timeouts, submission
//! back-off) without waiting for it.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A source of the current instant.
pub trait Clock: Send + Sync {
    /// Now, by this clock.
    fn now(&self) -> Instant;
}

/// The real clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that stands still until it is moved on with [`ManualClock::advance`].
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<Instant>,
}

impl ManualClock {
    /// A clock standing at the real now.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            now: Mutex::new(Instant::now()),
        })
    }

    /// Moves the clock on by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A shared [`Clock`], compared by identity (so options holding one stay
/// comparable).
#[derive(Clone)]
pub struct ClockHandle(pub Arc<dyn Clock>);

impl ClockHandle {
    /// Now, by the clock.
    pub fn now(&self) -> Instant {
        self.0.now()
    }
}

impl Default for ClockHandle {
    fn default() -> Self {
        Self(Arc::new(SystemClock))
    }
}

impl fmt::Debug for ClockHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Clock")
    }
}

impl PartialEq for ClockHandle {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_advanced() {
        let clock = ManualClock::new();
        let start = clock.now();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(clock.now(), start, "it stands still");
        clock.advance(Duration::from_secs(90));
        assert_eq!(clock.now() - start, Duration::from_secs(90));
    }

    #[test]
    fn handles_are_equal_when_they_share_a_clock() {
        let manual = ManualClock::new();
        let a = ClockHandle(manual.clone());
        assert_eq!(a, ClockHandle(manual));
        assert_ne!(a, ClockHandle::default());
    }
}

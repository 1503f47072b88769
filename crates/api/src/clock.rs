//! The emulated clock: "now" starts at a chosen instant and advances with real time.
//!
//! Tokens expire, days change and yesterday becomes ready by this clock, so tests and demos
//! can place "now" anywhere (`--clock`, `POST /admin/clock`).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use jiff::Timestamp;

/// A shared clock: real time plus an offset. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    /// Real time.
    pub fn real() -> Clock {
        Clock::default()
    }

    /// A clock that reads `start` now and advances with real time from there.
    pub fn starting_at(start: Timestamp) -> Clock {
        let clock = Clock::default();
        clock.set(start);
        clock
    }

    /// The emulated now.
    pub fn now(&self) -> Timestamp {
        let ms = Timestamp::now().as_millisecond() + self.offset_ms.load(Ordering::Relaxed);
        Timestamp::from_millisecond(ms).unwrap_or(Timestamp::MAX)
    }

    /// The emulated now in Unix seconds.
    pub fn unix(&self) -> i64 {
        self.now().as_second()
    }

    /// Whether it reads real time (no offset).
    pub fn is_real(&self) -> bool {
        self.offset_ms.load(Ordering::Relaxed) == 0
    }

    /// Back to real time.
    pub fn set_real(&self) {
        self.offset_ms.store(0, Ordering::Relaxed);
    }

    /// Moves the clock so that it reads `now` at this instant.
    pub fn set(&self, now: Timestamp) {
        let offset = now.as_millisecond() - Timestamp::now().as_millisecond();
        self.offset_ms.store(offset, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_clock_reads_the_set_time_and_advances() {
        let start: Timestamp = "2021-04-29T08:00:00+08:00".parse().unwrap();
        let clock = Clock::starting_at(start);
        let read = clock.now();
        assert!(read >= start && read.as_second() - start.as_second() < 2);
        let clone = clock.clone();
        clone.set("2030-01-01T00:00:00Z".parse().unwrap());
        assert_eq!(clock.now().as_second() / 10, 1_893_456_000 / 10);
    }
}

//! The one seam for "now". Billing across month ends and leap years is tested by moving
//! a [`ManualClock`], never by sleeping.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicI64, Ordering};

/// A UTC instant with microsecond precision, stored as microseconds since the Unix
/// epoch. This is the one agreed form for times in both storage backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub const MICROS_PER_SEC: i64 = 1_000_000;
    pub const MICROS_PER_DAY: i64 = 86_400 * Self::MICROS_PER_SEC;

    pub fn from_secs(secs: i64) -> Self {
        Self(secs * Self::MICROS_PER_SEC)
    }
    pub fn micros(self) -> i64 {
        self.0
    }
    pub fn plus_secs(self, secs: i64) -> Self {
        Self(
            self.0
                .saturating_add(secs.saturating_mul(Self::MICROS_PER_SEC)),
        )
    }
    pub fn plus_millis(self, ms: i64) -> Self {
        Self(self.0.saturating_add(ms.saturating_mul(1000)))
    }
    pub fn minus_days(self, days: i64) -> Self {
        Self(
            self.0
                .saturating_sub(days.saturating_mul(Self::MICROS_PER_DAY)),
        )
    }
}

/// Source of the current time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> Timestamp {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(d.as_micros() as i64)
    }
}

/// A clock that only moves when told to; for tests and simulations.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(at: Timestamp) -> Self {
        Self(AtomicI64::new(at.0))
    }
    pub fn set(&self, at: Timestamp) {
        self.0.store(at.0, Ordering::SeqCst);
    }
    pub fn advance_secs(&self, secs: i64) {
        self.0
            .fetch_add(secs * Timestamp::MICROS_PER_SEC, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

//! Task states and retry policy. Tasks are the unit of background work (provision,
//! notify, collect usage…); they retry with exponential back-off and end done, failed
//! or cancelled.

use crate::clock::Timestamp;
use crate::validation::FieldError;
use serde::{Deserialize, Serialize};
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Pending,
    Running,
    Done,
    Failed,
    Cancelled,
}

impl TaskState {
    pub const ALL: [TaskState; 5] = [
        TaskState::Pending,
        TaskState::Running,
        TaskState::Done,
        TaskState::Failed,
        TaskState::Cancelled,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Running => "running",
            TaskState::Done => "done",
            TaskState::Failed => "failed",
            TaskState::Cancelled => "cancelled",
        }
    }
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskState::Done | TaskState::Failed | TaskState::Cancelled
        )
    }
}

impl FromStr for TaskState {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskState::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                FieldError::new(
                    "state",
                    "invalid_state",
                    format!("unknown task state `{s}`"),
                )
            })
    }
}

/// Retry policy: the n-th retry waits `base * 2^(n-1)`, capped, until `max_attempts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay_secs: i64,
    pub max_delay_secs: i64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base_delay_secs: 5,
            max_delay_secs: 3600,
        }
    }
}

/// What happens to a task whose attempt just failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    RetryAt(Timestamp),
    GiveUp,
}

impl RetryPolicy {
    /// `attempts` counts the attempt that just failed (1 after the first failure).
    pub fn after_failure(&self, attempts: u32, now: Timestamp) -> AfterFailure {
        if attempts >= self.max_attempts {
            return AfterFailure::GiveUp;
        }
        let exp = attempts.saturating_sub(1).min(30);
        let delay = self
            .base_delay_secs
            .saturating_mul(1i64 << exp)
            .min(self.max_delay_secs);
        AfterFailure::RetryAt(now.plus_secs(delay))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy {
            max_attempts: 20,
            base_delay_secs: 5,
            max_delay_secs: 60,
        };
        let t = Timestamp(0);
        let delays: Vec<i64> = (1..=6)
            .map(|n| match p.after_failure(n, t) {
                AfterFailure::RetryAt(at) => at.0 / Timestamp::MICROS_PER_SEC,
                AfterFailure::GiveUp => -1,
            })
            .collect();
        assert_eq!(delays, vec![5, 10, 20, 40, 60, 60]);
        assert_eq!(p.after_failure(20, t), AfterFailure::GiveUp);
    }

    proptest! {
        #[test]
        fn delays_never_shrink(n in 1u32..100) {
            let p = RetryPolicy { max_attempts: 1000, ..Default::default() };
            let d = |n| match p.after_failure(n, Timestamp(0)) { AfterFailure::RetryAt(t) => t.0, AfterFailure::GiveUp => i64::MAX };
            prop_assert!(d(n + 1) >= d(n));
            prop_assert!(d(n) <= p.max_delay_secs * Timestamp::MICROS_PER_SEC);
        }
    }
}

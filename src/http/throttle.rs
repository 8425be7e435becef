//! Password guessing protection: after a few failures for one username,
//! further attempts are refused, without checking the password, for a delay
//! that doubles with every failure (up to 15 minutes). Per node, in memory.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures allowed before the delay starts.
const FREE_FAILURES: u32 = 5;
const MAX_DELAY: Duration = Duration::from_secs(15 * 60);
/// Usernames tracked at most; beyond, the oldest entries are dropped.
const MAX_TRACKED: usize = 100_000;

#[derive(Default)]
pub struct LoginThrottle {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl LoginThrottle {
    fn delay(failures: u32) -> Duration {
        if failures < FREE_FAILURES {
            return Duration::ZERO;
        }
        Duration::from_secs(1u64 << (failures - FREE_FAILURES).min(10)).min(MAX_DELAY)
    }

    /// Whether an attempt for `username` may be checked at `now`.
    pub fn allows(&self, username: &str, now: Instant) -> bool {
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        match failures.get(&username.to_lowercase()) {
            Some((count, last)) => now.duration_since(*last) >= Self::delay(*count),
            None => true,
        }
    }

    pub fn record(&self, username: &str, success: bool, now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let key = username.to_lowercase();
        if success {
            failures.remove(&key);
            return;
        }
        if failures.len() >= MAX_TRACKED {
            let horizon = now.checked_sub(MAX_DELAY).unwrap_or(now);
            failures.retain(|_, (_, last)| *last > horizon);
            if failures.len() >= MAX_TRACKED {
                failures.clear();
            }
        }
        let entry = failures.entry(key).or_insert((0, now));
        *entry = (entry.0.saturating_add(1), now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_failures_slow_down_guessing_and_success_resets() {
        let throttle = LoginThrottle::default();
        let t0 = Instant::now();
        for _ in 0..FREE_FAILURES {
            assert!(throttle.allows("Alice", t0));
            throttle.record("alice", false, t0);
        }
        assert!(!throttle.allows("alice", t0), "the sixth attempt waits");
        assert!(throttle.allows("alice", t0 + Duration::from_secs(1)));
        throttle.record("alice", false, t0 + Duration::from_secs(1));
        assert!(!throttle.allows("alice", t0 + Duration::from_secs(2)), "the delay doubles");
        assert!(throttle.allows("bob", t0), "other users are not affected");
        throttle.record("alice", true, t0 + Duration::from_secs(10));
        assert!(throttle.allows("alice", t0 + Duration::from_secs(10)));
        assert_eq!(LoginThrottle::delay(100), MAX_DELAY);
    }
}

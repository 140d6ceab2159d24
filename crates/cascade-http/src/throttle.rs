//! A bounded login-failure throttle, per user and per source address.
//!
//! Counts failures in a fixed window; once a key reaches the limit, further attempts
//! are refused (429) until the window ends, even with the right password, so guessing
//! is capped at `max_failures` per window per login and per address. The table is
//! bounded: when full, the oldest windows are dropped first, so an attacker spraying
//! addresses cannot exhaust memory. State is per process; behind several processes
//! each enforces its own limit (documented in the README).

use cascade_domain::clock::Timestamp;
use std::collections::HashMap;
use std::sync::Mutex;

pub struct LoginThrottle {
    max_failures: u32,
    window_secs: i64,
    capacity: usize,
    entries: Mutex<HashMap<String, (Timestamp, u32)>>,
}

impl LoginThrottle {
    pub fn new(max_failures: u32, window_secs: i64, capacity: usize) -> Self {
        Self {
            max_failures,
            window_secs,
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn live(&self, entry: Option<&(Timestamp, u32)>, now: Timestamp) -> u32 {
        match entry {
            Some((start, n)) if now < start.plus_secs(self.window_secs) => *n,
            _ => 0,
        }
    }

    /// Seconds until the caller may try again, if any key is locked.
    pub fn locked(&self, keys: &[String], now: Timestamp) -> Option<i64> {
        let map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        keys.iter()
            .filter_map(|k| map.get(k).map(|e| (e, self.live(Some(e), now))))
            .filter(|(_, n)| *n >= self.max_failures)
            .map(|((start, _), _)| {
                (start.plus_secs(self.window_secs).0 - now.0) / Timestamp::MICROS_PER_SEC + 1
            })
            .max()
    }

    pub fn record_failure(&self, keys: &[String], now: Timestamp) {
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() + keys.len() > self.capacity {
            let window = self.window_secs;
            map.retain(|_, (start, _)| now < start.plus_secs(window));
            while map.len() + keys.len() > self.capacity {
                let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, (s, _))| *s)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                map.remove(&oldest);
            }
        }
        for k in keys {
            let live = self.live(map.get(k), now);
            if live == 0 {
                map.insert(k.clone(), (now, 1));
            } else if let Some(e) = map.get_mut(k) {
                e.1 += 1;
            }
        }
    }

    /// A successful login clears the user's counter (not the address's).
    pub fn clear(&self, key: &str) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_max_failures_until_window_ends() {
        let t = LoginThrottle::new(3, 60, 100);
        let k = vec!["user:a".to_string()];
        let now = Timestamp(0);
        for _ in 0..3 {
            assert!(t.locked(&k, now).is_none());
            t.record_failure(&k, now);
        }
        assert!(t.locked(&k, now.plus_secs(10)).is_some());
        assert!(t.locked(&k, now.plus_secs(61)).is_none());
    }

    #[test]
    fn memory_is_bounded() {
        let t = LoginThrottle::new(3, 60, 50);
        for i in 0..1000 {
            t.record_failure(&[format!("ip:{i}")], Timestamp::from_secs(i));
        }
        assert!(t.len() <= 50);
    }
}

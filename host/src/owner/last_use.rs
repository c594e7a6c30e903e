//! When a session or token was last used: kept in memory on every use,
//! written back to the root at most once a minute (a write per request
//! would cost more than the check itself).

use std::sync::atomic::{AtomicI64, Ordering};

/// How often a last use is written back, at most.
const WRITE_EVERY_MS: i64 = 60_000;

pub struct LastUse {
    seen: AtomicI64,
    written: AtomicI64,
}

impl LastUse {
    /// As the root last recorded it (milliseconds since the epoch).
    pub fn new(stored: i64) -> LastUse {
        LastUse {
            seen: AtomicI64::new(stored),
            written: AtomicI64::new(stored),
        }
    }

    pub fn get(&self) -> i64 {
        self.seen.load(Ordering::Relaxed)
    }

    /// Marks a use at `now`; `true` when this caller should write it back.
    pub fn mark(&self, now: i64) -> bool {
        self.seen.store(now, Ordering::Relaxed);
        let written = self.written.load(Ordering::Relaxed);
        now - written > WRITE_EVERY_MS
            && self
                .written
                .compare_exchange(written, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

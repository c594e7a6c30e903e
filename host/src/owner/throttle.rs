//! Limits on login attempts, per client address and overall, so a password
//! cannot be guessed at speed.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};

pub struct LoginThrottle {
    per_client: DefaultKeyedRateLimiter<IpAddr>,
    overall: DefaultDirectRateLimiter,
}

impl LoginThrottle {
    /// `per_client` attempts a minute from one address, `overall` from all.
    pub fn new(per_client: u32, overall: u32) -> LoginThrottle {
        let quota = |n: u32| Quota::per_minute(NonZeroU32::new(n.max(1)).unwrap());
        LoginThrottle {
            per_client: governor::RateLimiter::keyed(quota(per_client)),
            overall: governor::RateLimiter::direct(quota(overall)),
        }
    }

    /// `Err(wait)` when `client` must wait before trying again.
    pub fn attempt(&self, client: IpAddr) -> Result<(), Duration> {
        let now = DefaultClock::default().now();
        self.per_client
            .check_key(&client)
            .map_err(|not_until| not_until.wait_time_from(now))?;
        self.overall
            .check()
            .map_err(|not_until| not_until.wait_time_from(now))?;
        if self.per_client.len() > 10_000 {
            self.per_client.retain_recent();
        }
        Ok(())
    }
}

impl Default for LoginThrottle {
    fn default() -> Self {
        LoginThrottle::new(5, 30)
    }
}

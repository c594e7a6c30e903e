//! How deliveries are retried before they become dead letters.

use std::time::Duration;

/// How deliveries are retried.
#[derive(Debug, Clone)]
pub struct DeliveryPolicy {
    /// Attempts before a delivery becomes a dead letter.
    pub attempts: u32,
    /// Wait after the first failure; doubles each time, up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        DeliveryPolicy {
            attempts: 5,
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(60),
        }
    }
}

impl DeliveryPolicy {
    pub fn backoff_after(&self, attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(16));
        (self.backoff * factor).min(self.max_backoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_ceiling() {
        let policy = DeliveryPolicy::default();
        assert_eq!(policy.backoff_after(1), Duration::from_millis(200));
        assert_eq!(policy.backoff_after(3), Duration::from_millis(800));
        assert_eq!(policy.backoff_after(40), Duration::from_secs(60));
    }
}

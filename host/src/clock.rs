//! The host's clock and its time format: RFC 3339, in UTC, everywhere a
//! time is stored or shown (events, installs, jobs, log notes).

use chrono::{DateTime, SecondsFormat, Utc};

/// Now, to the nanosecond: events and installs keep the full precision.
pub fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Now, in milliseconds since the epoch: the unit of stored expiry times.
pub fn now_millis() -> i64 {
    Utc::now().timestamp_millis()
}

/// A time to the millisecond, the scheduler's unit.
pub fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Milliseconds since the epoch as a time (the epoch itself if out of range).
pub fn from_millis(millis: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(millis).unwrap_or_default()
}

/// Parses an RFC 3339 time; `None` if it is not one.
pub fn parse_rfc3339(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|time| time.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip() {
        let now = now_rfc3339();
        assert!(now.ends_with('Z'), "{now}");
        assert!(parse_rfc3339(&now).is_some());
        assert_eq!(rfc3339(from_millis(1_500)), "1970-01-01T00:00:01.500Z");
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}

//! What a job is: its name, when it runs (a cron expression with seconds, or
//! one time), and its JSON payload, each checked with an error that quotes
//! what was wrong.

use std::str::FromStr;

use anyhow::{Result, bail};
use chrono::{DateTime, Utc};

use crate::clock::from_millis;
use serde::{Deserialize, Serialize};

/// When a job runs, as written by whoever created it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum When {
    /// A cron expression with seconds, in UTC.
    Cron(String),
    /// Once, at this RFC 3339 time.
    At(String),
}

/// A checked [`When`], ready to compute fire times.
#[derive(Debug, Clone)]
pub enum Timing {
    Cron(Box<cron::Schedule>),
    At(DateTime<Utc>),
}

impl When {
    /// Checks the expression or time; the error quotes it.
    pub fn timing(&self) -> Result<Timing> {
        match self {
            When::Cron(expression) => Ok(Timing::Cron(Box::new(parse_cron(expression)?))),
            When::At(time) => Ok(Timing::At(parse_time(time)?)),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            When::Cron(_) => "cron",
            When::At(_) => "at",
        }
    }

    pub fn text(&self) -> &str {
        match self {
            When::Cron(text) | When::At(text) => text,
        }
    }

    pub fn from_parts(kind: &str, text: String) -> Result<When> {
        match kind {
            "cron" => Ok(When::Cron(text)),
            "at" => Ok(When::At(text)),
            other => bail!("unknown job kind {other:?}"),
        }
    }
}

impl Timing {
    /// The first fire time strictly after `after`, if there is one.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Timing::Cron(schedule) => schedule.after(&after).next(),
            Timing::At(at) => (*at > after).then_some(*at),
        }
    }

    /// When a new job first runs: a one-shot at its time, even a past one.
    pub fn first(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Timing::Cron(_) => self.next_after(now),
            Timing::At(at) => Some(*at),
        }
    }

    pub fn is_cron(&self) -> bool {
        matches!(self, Timing::Cron(_))
    }
}

pub fn parse_cron(expression: &str) -> Result<cron::Schedule> {
    let fields = expression.split_whitespace().count();
    if !(6..=7).contains(&fields) {
        bail!(
            "cron expression {expression:?} has {fields} fields; Locker's have 6 or 7: \
             `sec min hour day-of-month month day-of-week [year]`"
        );
    }
    match cron::Schedule::from_str(expression) {
        Ok(schedule) => match schedule.upcoming(Utc).next() {
            Some(_) => Ok(schedule),
            None => bail!("cron expression {expression:?} never fires again"),
        },
        Err(e) => {
            // The parser's message draws a caret under the expression; its
            // last line says what is wrong.
            let message = e.to_string();
            let reason = message.lines().last().unwrap_or_default().trim();
            bail!("cron expression {expression:?} is invalid: {reason}")
        }
    }
}

/// Parses an RFC 3339 time, to the millisecond (the scheduler's unit).
pub fn parse_time(text: &str) -> Result<DateTime<Utc>> {
    match DateTime::parse_from_rfc3339(text) {
        Ok(time) => Ok(from_millis(time.timestamp_millis())),
        Err(e) => bail!("time {text:?} is not RFC 3339 (like 2026-11-22T09:30:00Z): {e}"),
    }
}

/// Job names are short and plain, so they read well in logs and URLs.
pub fn validate_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid {
        bail!("job name {name:?} must be 1-64 letters, digits, `-`, `_` or `.`");
    }
    Ok(())
}

/// Checks a payload is JSON, and returns it compacted.
pub fn validate_payload(payload: &str) -> Result<String> {
    match serde_json::from_str::<serde_json::Value>(payload) {
        Ok(value) => Ok(value.to_string()),
        Err(e) => bail!("job payload is not valid JSON: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_quote_the_expression() {
        let error = |e: &str| format!("{:#}", parse_cron(e).unwrap_err());
        assert!(error("61 * * * * *").contains("\"61 * * * * *\""));
        assert!(error("*/5 * * * *").contains("has 5 fields"));
        assert!(error("0 0 0 1 1 * 2001").contains("never fires again"));
        assert!(format!("{:#}", parse_time("tomorrow").unwrap_err()).contains("\"tomorrow\""));
        assert!(validate_name("sync.hourly-2").is_ok());
        assert!(validate_name("a/b").is_err());
        assert!(validate_payload("{oops").is_err());
    }

    #[test]
    fn cron_fires_after_the_given_time_and_a_one_shot_once() {
        let every_second = When::Cron("* * * * * *".into()).timing().unwrap();
        let now = parse_time("2026-11-22T10:00:00.500Z").unwrap();
        assert_eq!(
            every_second.next_after(now),
            Some(parse_time("2026-11-22T10:00:01Z").unwrap())
        );
        let once = When::At("2026-11-22T09:00:00Z".into()).timing().unwrap();
        assert_eq!(once.first(now), parse_time("2026-11-22T09:00:00Z").ok());
        assert_eq!(once.next_after(now), None);
    }
}

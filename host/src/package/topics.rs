//! Topic names and the patterns services subscribe with.
//!
//! A topic is two or more `/`-separated segments of lowercase letters,
//! digits, `-`, `_` and `.`: `contact/updated`, `locker/service.started`.
//! A pattern is a topic, or a prefix ending in `*` that matches any rest:
//! `contact/*`, `locker/service.*`, or `*` for everything. The same `*`
//! matching applies to service types in discovery (`contact/*`).

use anyhow::{Result, bail};

/// Topics under this prefix are the host's own; services cannot publish them.
pub const HOST_PREFIX: &str = "locker/";

pub fn validate_topic(topic: &str) -> Result<()> {
    let segment_ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
    };
    let segments: Vec<&str> = topic.split('/').collect();
    if topic.len() > 200 || segments.len() < 2 || !segments.iter().all(|s| segment_ok(s)) {
        bail!(
            "topic {topic:?} must be segments like `contact/updated` (lowercase letters, digits, `-`, `_`, `.`)"
        );
    }
    Ok(())
}

pub fn validate_pattern(pattern: &str) -> Result<()> {
    if pattern == "*" {
        return Ok(());
    }
    match pattern.strip_suffix('*') {
        Some(prefix) if !prefix.contains('*') && !prefix.is_empty() => {
            // The prefix must be the start of some valid topic.
            validate_topic(&format!("{prefix}x/x").replace("//", "/")).map_err(|_| {
                anyhow::anyhow!("pattern {pattern:?} is not a topic prefix followed by `*`")
            })
        }
        Some(_) => bail!("pattern {pattern:?} may only have one `*`, at its end"),
        None => validate_topic(pattern),
    }
}

/// Whether `pattern` (a topic or `prefix*`) matches `topic`.
pub fn matches(pattern: &str, topic: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => topic.starts_with(prefix),
        None => pattern == topic,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_and_patterns() {
        for good in [
            "contact/updated",
            "locker/service.started",
            "a/b/c",
            "x_1/y-2",
        ] {
            validate_topic(good).unwrap();
            validate_pattern(good).unwrap();
        }
        for bad in ["contact", "Contact/x", "a//b", "a/b/", "a b/c", "a/*"] {
            assert!(validate_topic(bad).is_err(), "{bad}");
        }
        for good in ["*", "contact/*", "locker/service.*", "a/b*"] {
            validate_pattern(good).unwrap();
        }
        for bad in ["*/x", "a/*/b", "**", "A/*"] {
            assert!(validate_pattern(bad).is_err(), "{bad}");
        }
        assert!(matches("contact/*", "contact/updated"));
        assert!(matches("contact/*", "contact/updated/more"));
        assert!(!matches("contact/*", "contacts/updated"));
        assert!(matches("locker/service.*", "locker/service.started"));
        assert!(matches("*", "anything/at-all"));
        assert!(matches("a/b", "a/b"));
        assert!(!matches("a/b", "a/bc"));
    }
}

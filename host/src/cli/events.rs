//! The owner's event commands: `locker events`, `dead-letters`, `replay`.
//! Like every command they go through the serving host, or read and change
//! the root's event store directly when no host serves it.

use anyhow::{Result, bail};

use super::Target;
use super::access::{Access, access};
use crate::api::{DeadLetter, EventSummary};
use crate::store::EventLog;

pub(super) async fn events(
    root: &Target,
    topic: Option<String>,
    limit: usize,
    follow: bool,
    json: bool,
) -> Result<()> {
    if let Some(pattern) = &topic {
        crate::package::topics::validate_pattern(pattern)?;
    }
    let access = access(root)?;
    if follow {
        let Access::Host(client) = access else {
            bail!("no host is serving this root, so there are no live events to follow");
        };
        return client
            .follow_events(topic.as_deref(), |event| {
                if json {
                    println!("{}", serde_json::to_string(event).unwrap_or_default());
                } else {
                    println!(
                        "{}  {}  {:<28} from {:<14} {}",
                        event.time, event.id, event.topic, event.source, event.payload
                    );
                }
            })
            .await;
    }
    let events: Vec<EventSummary> = match access.offline_events()? {
        Some(store) => store.recent(topic, limit).await?,
        None => match &access {
            Access::Host(client) => client.events(topic.as_deref(), limit).await?,
            Access::Offline { .. } => unreachable!("offline access has a store"),
        },
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&events)?);
        return Ok(());
    }
    for summary in events {
        let e = &summary.event;
        let fate = match (summary.subscribers, summary.pending, summary.dead) {
            (0, _, _) => "unhandled".to_string(),
            (n, 0, 0) => format!("delivered to {n}"),
            (n, pending, dead) => format!("{n} subscribers: {pending} pending, {dead} dead"),
        };
        println!(
            "{}  {}  {:<28} from {:<14} {:<28} {}",
            e.time, e.id, e.topic, e.source, fate, e.payload
        );
    }
    Ok(())
}

pub(super) async fn dead_letters(root: &Target, json: bool) -> Result<()> {
    let access = access(root)?;
    let letters: Vec<DeadLetter> = match (&access, access.offline_events()?) {
        (_, Some(store)) => store.dead_letters().await?,
        (Access::Host(client), None) => client.dead_letters().await?,
        (Access::Offline { .. }, None) => unreachable!("offline access has a store"),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&letters)?);
        return Ok(());
    }
    for letter in letters {
        let e = &letter.event;
        println!(
            "{:<16} {}  {:<28} after {} attempts: {}",
            letter.subscriber,
            e.id,
            e.topic,
            letter.attempts,
            letter.last_error.unwrap_or_default()
        );
    }
    Ok(())
}

pub(super) async fn replay(
    root: &Target,
    service: Option<String>,
    event: Option<String>,
) -> Result<()> {
    let access = access(root)?;
    let subscribers = match (&access, access.offline_events()?) {
        (_, Some(store)) => store.replay(service, event).await?,
        (Access::Host(client), None) => client.replay(service.as_deref(), event.as_deref()).await?,
        (Access::Offline { .. }, None) => unreachable!("offline access has a store"),
    };
    if subscribers.is_empty() {
        println!("no dead letters matched");
    } else {
        println!("replaying dead letters for {}", subscribers.join(", "));
    }
    Ok(())
}

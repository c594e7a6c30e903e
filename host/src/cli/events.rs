//! The owner's event commands: `locker events`, `events publish`,
//! `dead-letters`, `replay`, and `locker types`.
//! Like every command they go through the serving host, or read and change
//! the root's event store directly when no host serves it.

use std::io::Read;
use std::sync::Arc;

use anyhow::{Context, Result, bail};

use super::Target;
use super::access::{Access, access};
use crate::api::{DeadLetter, EventRecord, EventSummary, TypeView};
use crate::bus::{Bus, DeliveryPolicy};
use crate::store::{Catalog, EventLog, SqliteEventLog};
use crate::supervisor::HostOptions;

/// Publishes `payload` (JSON; `-` or none: standard input) on `topic` as
/// the owner, with the checks a service's publish gets.
pub(super) async fn publish(root: &Target, topic: &str, payload: Option<String>) -> Result<()> {
    let payload = match payload {
        Some(payload) if payload != "-" => payload,
        _ => {
            let mut payload = String::new();
            std::io::stdin()
                .read_to_string(&mut payload)
                .context("cannot read the payload from standard input")?;
            payload
        }
    };
    let record: EventRecord = match access(root)? {
        Access::Host(client) => client.publish(topic, &payload).await?,
        // No host: stored for the subscribers the manifests name, delivered
        // when a host next serves the root.
        Access::Offline { catalog, .. } => {
            let log = Arc::new(SqliteEventLog::open(catalog.root())?);
            let max_payload = HostOptions::default().max_event_payload;
            let bus = Bus::new(log, max_payload, DeliveryPolicy::default());
            for service in catalog.list()? {
                let manifest = &service.manifest;
                bus.subscriptions
                    .set(&manifest.name, manifest.subscribes.clone());
                bus.types.set(manifest);
            }
            bus.publish_from_owner(topic, payload).await?
        }
    };
    println!("published {} on {}", record.id, record.topic);
    Ok(())
}

/// The installed data types: who defines and provides them, the topics
/// bound to them, and (with `--json`) their schemas.
pub(super) async fn types(root: &Target, json: bool) -> Result<()> {
    let types: Vec<TypeView> = match access(root)? {
        Access::Host(client) => client.types().await?,
        Access::Offline { catalog, .. } => {
            let installed = catalog.list()?;
            crate::package::types::views(installed.iter().map(|service| &service.manifest))
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&types)?);
        return Ok(());
    }
    if types.is_empty() {
        println!("no installed package defines a data type");
    }
    for view in types {
        println!("{}", view.name);
        if let Some(description) = &view.description {
            println!("  {description}");
        }
        println!("  defined by: {}", view.defined_by.join(", "));
        if !view.provided_by.is_empty() {
            println!("  provided by: {}", view.provided_by.join(", "));
        }
        for topic in &view.topics {
            println!("  topic {topic}");
        }
        println!("  schema: {}", view.schema);
    }
    Ok(())
}

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

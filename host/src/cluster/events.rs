//! Events over JetStream: the cluster's implementation of the event log.
//!
//! Every event is one message in the `LOCKER_EVENTS` stream, on the subject
//! `locker.events.<topic>` (the topic's `/` as `.`, its `.` as `%`), stored
//! on a majority of the servers before `publish` returns. Each subscribing
//! service has one durable pull consumer, filtered by its patterns, with
//! explicit acks and one unacknowledged message at a time, so its events
//! reach it in stream order whichever host delivers them. The host that
//! holds the service's lease delivers (taking the lease if it is free): the
//! host's dispatcher runs unchanged over this log. A delivery done is
//! acked; a failed attempt keeps the message (its ack time renewed) while
//! the dispatcher backs off and tries again. If the delivering host dies,
//! the message is delivered again after the ack time, by the lease's next
//! holder.
//!
//! Dead letters are JetStream's own advisories, kept in the `LOCKER_DEAD`
//! stream: the dispatcher's last failure terminates the message (the
//! attempts and the error as the reason), and a message handed out
//! `--event-max-deliveries` times without an answer (its hosts died each
//! time) is given up by JetStream. The event itself stays in `LOCKER_EVENTS`. A
//! replay publishes it again on `locker.replay.<service>`, which only that
//! service's consumer reads (once, however many hosts replay at once: the
//! publish is deduplicated), and deletes the advisory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, FromConsumer, PullConsumer, pull};
use async_nats::jetstream::message::AckKind;
use async_nats::jetstream::{self, stream};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::leases::{Leases, Placement};
use crate::api::{DeadLetter, EventRecord, EventStats, EventSummary};
use crate::package::topics;
use crate::runtime::Services;
use crate::store::events::{EventLog, NewEvent, PendingDelivery, event_id};

pub const STREAM: &str = "LOCKER_EVENTS";
/// The stream of dead letters: the advisories of messages given up.
pub const DEAD_STREAM: &str = "LOCKER_DEAD";
/// The most dead letters listed or replayed at once.
const MOST_DEAD: u64 = 10_000;
/// How long a fetch waits for a message before it looks at the lease again.
const FETCH_WAIT: Duration = Duration::from_secs(2);
/// How many seconds before its install (here) a subscriber's consumer
/// starts.
const START_EARLY: i64 = 60;
/// How long a host that does not deliver a service's events waits before
/// it looks again.
const NOT_HERE_WAIT: Duration = Duration::from_secs(1);

/// An event as its message carries it.
#[derive(Serialize, Deserialize)]
struct Carried {
    topic: String,
    source: String,
    time: String,
    payload: String,
    /// The id it first had, for one published again by a replay.
    #[serde(default)]
    id: Option<String>,
}

/// What a terminated message's advisory says of why (its `reason`).
#[derive(Serialize, Deserialize)]
struct Why {
    attempts: u32,
    error: String,
}

/// A JetStream advisory of a message given up by a consumer: terminated
/// (with a reason) or handed out its maximum number of times.
#[derive(Deserialize)]
struct Advisory {
    consumer: String,
    stream_seq: u64,
    deliveries: u64,
    #[serde(default)]
    reason: String,
}

/// A dead letter: its advisory's sequence in `LOCKER_DEAD`, its subscriber,
/// the event (none when the stream no longer has it), and why.
struct Dead {
    at: u64,
    subscriber: String,
    seq: i64,
    event: Option<Carried>,
    why: Why,
}

fn advisory_subjects() -> Vec<String> {
    ["MSG_TERMINATED", "MAX_DELIVERIES"]
        .map(|kind| format!("$JS.EVENT.ADVISORY.CONSUMER.{kind}.{STREAM}.*"))
        .to_vec()
}

/// `contact/changed` as subject tokens: `contact.changed`; `locker/service.started`:
/// `locker.service%started`.
fn subject_tokens(topic: &str) -> String {
    topic
        .split('/')
        .map(|segment| segment.replace('.', "%"))
        .collect::<Vec<_>>()
        .join(".")
}

fn event_subject(topic: &str) -> String {
    format!("locker.events.{}", subject_tokens(topic))
}

fn replay_subject(service: &str) -> String {
    format!("locker.replay.{service}")
}

/// The subjects a consumer reads for `patterns`: exact where a pattern is
/// a topic, a whole-segment prefix (`contact/*`) as `contact.>`, and a
/// pattern that ends inside a segment (`locker/service.*`) widened to its
/// whole segments (the dispatcher's own check narrows it again). Subjects
/// another one covers are left out: JetStream refuses overlapping filters.
fn filters(service: &str, patterns: &[String]) -> Vec<String> {
    let mut wide: Vec<String> = patterns
        .iter()
        .map(|pattern| match pattern.strip_suffix('*') {
            None => event_subject(pattern),
            Some(prefix) => {
                let whole = match prefix.rfind('/') {
                    Some(end) => &prefix[..end],
                    None => "",
                };
                if whole.is_empty() {
                    "locker.events.>".to_string()
                } else {
                    format!("locker.events.{}.>", subject_tokens(whole))
                }
            }
        })
        .collect();
    wide.sort();
    wide.dedup();
    let covered = |subject: &str, by: &str| {
        by != subject
            && by
                .strip_suffix('>')
                .is_some_and(|prefix| subject.starts_with(prefix))
    };
    let mut kept: Vec<String> = wide
        .iter()
        .filter(|subject| !wide.iter().any(|by| covered(subject, by)))
        .cloned()
        .collect();
    kept.push(replay_subject(service));
    kept
}

/// The consumer's name for a service (letters, digits, `-` and `_` only).
fn consumer_name(service: &str) -> String {
    format!("deliver-{service}")
}

pub struct JetStreamEvents {
    jetstream: jetstream::Context,
    stream: stream::Stream,
    dead: stream::Stream,
    leases: Arc<Leases>,
    services: Arc<Services>,
    /// How long a delivery may go without a word before JetStream gives it
    /// to the next holder.
    ack_wait: Duration,
    /// How many times a message is handed out before JetStream gives it
    /// up: the hosts that took it died (or gave it back) each time.
    max_deliveries: i64,
    /// Each subscriber's consumer, with the filters it was made with.
    consumers: Mutex<HashMap<String, (Vec<String>, PullConsumer)>>,
    /// Messages handed to the dispatcher and not yet acknowledged, by
    /// subscriber and stream sequence.
    held: Mutex<HashMap<String, Vec<(i64, jetstream::Message)>>>,
}

impl JetStreamEvents {
    pub async fn open(
        jetstream: &jetstream::Context,
        leases: Arc<Leases>,
        services: Arc<Services>,
        replicas: usize,
        retention: Duration,
        ack_wait: Duration,
        max_deliveries: i64,
    ) -> Result<JetStreamEvents> {
        let kept = |name: &str, subjects: Vec<String>| stream::Config {
            name: name.to_string(),
            subjects,
            num_replicas: replicas,
            max_age: retention,
            storage: stream::StorageType::File,
            ..Default::default()
        };
        let subjects = vec!["locker.events.>".into(), "locker.replay.>".into()];
        let stream = jetstream
            .get_or_create_stream(kept(STREAM, subjects))
            .await
            .context("cannot make the events stream")?;
        // Made before any consumer, so no advisory goes by unkept.
        let dead = jetstream
            .get_or_create_stream(kept(DEAD_STREAM, advisory_subjects()))
            .await
            .context("cannot make the dead letters' stream")?;
        Ok(JetStreamEvents {
            jetstream: jetstream.clone(),
            stream,
            dead,
            leases,
            services,
            ack_wait,
            max_deliveries,
            consumers: Mutex::default(),
            held: Mutex::default(),
        })
    }

    fn patterns(&self, service: &str) -> Vec<String> {
        self.services
            .get(service)
            .map(|s| s.installed().manifest.subscribes.clone())
            .unwrap_or_default()
    }

    /// The subscriber's consumer, made (or its filters brought up to date).
    /// It starts a while before the service was installed here: a host
    /// that follows an install late may make it after another host
    /// published the first events for it.
    async fn consumer(&self, service: &str) -> Result<PullConsumer> {
        let Some(installed) = self.services.get(service).map(|s| s.installed().clone()) else {
            anyhow::bail!("{service} is not installed on this host (yet)");
        };
        let wanted = filters(service, &installed.manifest.subscribes);
        if let Some((made_with, consumer)) = self.consumers.lock().unwrap().get(service)
            && *made_with == wanted
        {
            return Ok(consumer.clone());
        }
        // Made already (by any host): kept as it was made, with its filters
        // brought up to date. Each host's install time differs, and a
        // consumer's start cannot change.
        let name = consumer_name(service);
        let config = match self.stream.get_consumer::<pull::Config>(&name).await {
            Ok(existing) => pull::Config {
                filter_subjects: wanted.clone(),
                filter_subject: String::new(),
                ..pull::Config::try_from_consumer_config(existing.cached_info().config.clone())
                    .map_err(|e| anyhow::anyhow!("{e}"))?
            },
            Err(_) => {
                let installed_at = crate::clock::parse_rfc3339(&installed.installed_at)
                    .map_or(0, |time| time.timestamp());
                let start_time =
                    time::OffsetDateTime::from_unix_timestamp(installed_at - START_EARLY)
                        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
                pull::Config {
                    durable_name: Some(name.clone()),
                    filter_subjects: wanted.clone(),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: self.ack_wait,
                    max_ack_pending: 1,
                    max_deliver: self.max_deliveries,
                    deliver_policy: DeliverPolicy::ByStartTime { start_time },
                    ..Default::default()
                }
            }
        };
        let consumer = match self.stream.create_consumer(config).await {
            Ok(consumer) => consumer,
            // Another host made it a moment ago: take it as it is.
            Err(error) => self
                .stream
                .get_consumer(&name)
                .await
                .map_err(|_| error)
                .with_context(|| format!("cannot make the event consumer of {service}"))?,
        };
        self.consumers
            .lock()
            .unwrap()
            .insert(service.to_string(), (wanted, consumer.clone()));
        Ok(consumer)
    }

    /// Gives back what this host holds of `service` (it no longer delivers
    /// its events), so the next holder need not wait for the ack time.
    fn give_back(&self, service: &str) {
        let held = self
            .held
            .lock()
            .unwrap()
            .remove(service)
            .unwrap_or_default();
        for (_, message) in held {
            tokio::spawn(async move { message.ack_with(AckKind::Nak(None)).await });
        }
    }

    /// The dead letters `LOCKER_DEAD` keeps, oldest first.
    async fn kept_dead(&self) -> Result<Vec<Dead>> {
        let mut dead = self.dead.clone();
        let state = dead
            .info()
            .await
            .context("cannot read the dead letters")?
            .state
            .clone();
        let mut kept = Vec::new();
        let first = state
            .first_sequence
            .max(state.last_sequence.saturating_sub(MOST_DEAD));
        for at in first..=state.last_sequence {
            // A replayed one is deleted: a gap.
            let Ok(message) = dead.get_raw_message(at).await else {
                continue;
            };
            let Ok(advisory) = serde_json::from_slice::<Advisory>(&message.payload) else {
                continue;
            };
            let why = serde_json::from_str::<Why>(&advisory.reason).unwrap_or_else(|_| Why {
                attempts: advisory.deliveries as u32,
                error: if advisory.reason.is_empty() {
                    format!(
                        "handed out {} times without an answer (its hosts stopped each time)",
                        advisory.deliveries
                    )
                } else {
                    advisory.reason.clone()
                },
            });
            let event = self
                .stream
                .get_raw_message(advisory.stream_seq)
                .await
                .ok()
                .and_then(|message| serde_json::from_slice::<Carried>(&message.payload).ok());
            kept.push(Dead {
                at,
                subscriber: advisory
                    .consumer
                    .strip_prefix("deliver-")
                    .unwrap_or(&advisory.consumer)
                    .to_string(),
                seq: advisory.stream_seq as i64,
                event,
                why,
            });
        }
        Ok(kept)
    }

    fn take_held(&self, service: &str, seq: i64) -> Option<jetstream::Message> {
        let mut held = self.held.lock().unwrap();
        let messages = held.get_mut(service)?;
        let at = messages.iter().position(|(s, _)| *s == seq)?;
        Some(messages.remove(at).1)
    }

    fn record_of(seq: i64, carried: &Carried) -> EventRecord {
        EventRecord {
            id: carried.id.clone().unwrap_or_else(|| event_id(seq)),
            seq,
            topic: carried.topic.clone(),
            source: carried.source.clone(),
            time: carried.time.clone(),
            payload: carried.payload.clone(),
        }
    }

    /// A message handed out `delivered` times, as the dispatcher takes it:
    /// the attempts before this one.
    fn delivery(seq: i64, carried: &Carried, delivered: i64) -> PendingDelivery {
        PendingDelivery {
            event: JetStreamEvents::record_of(seq, carried),
            attempts: delivered.saturating_sub(1) as u32,
        }
    }

    /// Fetches the subscriber's next message (the consumer hands out one
    /// at a time); an event its patterns do not match (a widened filter's)
    /// is acked and left out.
    async fn fetch(&self, service: &str) -> Result<Vec<PendingDelivery>> {
        let consumer = self.consumer(service).await?;
        let mut batch = consumer
            .fetch()
            .max_messages(1)
            .expires(FETCH_WAIT)
            .messages()
            .await
            .context("cannot fetch events")?;
        let patterns = self.patterns(service);
        let mut pending = Vec::new();
        while let Some(message) = batch.next().await {
            let message = message.map_err(|e| anyhow::anyhow!("cannot fetch events: {e}"))?;
            let (seq, delivered) = {
                let info = message
                    .info()
                    .map_err(|e| anyhow::anyhow!("an event without its delivery: {e}"))?;
                (info.stream_sequence as i64, info.delivered)
            };
            let carried: Carried = match serde_json::from_slice(&message.payload) {
                Ok(carried) => carried,
                Err(error) => {
                    tracing::error!(service, seq, "an unreadable event is dropped: {error}");
                    let _ = message.ack_with(AckKind::Term).await;
                    continue;
                }
            };
            let replayed = message.subject.starts_with("locker.replay.");
            if !replayed && !patterns.iter().any(|p| topics::matches(p, &carried.topic)) {
                let _ = message.ack().await;
                continue;
            }
            pending.push(JetStreamEvents::delivery(seq, &carried, delivered));
            self.held
                .lock()
                .unwrap()
                .entry(service.to_string())
                .or_default()
                .push((seq, message));
        }
        Ok(pending)
    }
}

impl JetStreamEvents {
    /// Tells `bus`'s live stream every event published through any host,
    /// from now on (an ordered consumer of the stream's new messages);
    /// runs until aborted.
    pub async fn tell_live(&self, bus: Arc<crate::bus::Bus>) -> Result<()> {
        loop {
            let consumer = self
                .stream
                .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
                    filter_subject: "locker.events.>".into(),
                    deliver_policy: DeliverPolicy::New,
                    ..Default::default()
                })
                .await
                .context("cannot follow the events for the live stream")?;
            let mut messages = consumer
                .messages()
                .await
                .context("cannot follow the events for the live stream")?;
            while let Some(Ok(message)) = messages.next().await {
                let Ok(info) = message.info() else { continue };
                let seq = info.stream_sequence as i64;
                if let Ok(carried) = serde_json::from_slice::<Carried>(&message.payload) {
                    bus.tell_live(JetStreamEvents::record_of(seq, &carried));
                }
            }
            // The server went away: follow again from what comes next.
            tokio::time::sleep(NOT_HERE_WAIT).await;
        }
    }
}

#[async_trait::async_trait]
impl EventLog for JetStreamEvents {
    async fn publish(&self, event: NewEvent, subscribers: Vec<String>) -> Result<EventRecord> {
        // Each subscriber's consumer exists before the event does, so it
        // cannot start after it (a consumer starts with what comes next).
        for subscriber in &subscribers {
            self.consumer(subscriber).await?;
        }
        let carried = Carried {
            topic: event.topic,
            source: event.source,
            time: event.time,
            payload: event.payload,
            id: None,
        };
        let body = serde_json::to_vec(&carried)?;
        let ack = self
            .jetstream
            .publish(event_subject(&carried.topic), body.into())
            .await
            .context("cannot send the event to JetStream")?
            .await
            .context("JetStream did not store the event")?;
        Ok(JetStreamEvents::record_of(ack.sequence as i64, &carried))
    }

    fn delivered(&self, subscriber: &str, seqs: Vec<i64>) {
        for seq in seqs {
            if let Some(message) = self.take_held(subscriber, seq) {
                tokio::spawn(async move {
                    if let Err(error) = message.ack().await {
                        tracing::warn!("cannot acknowledge a delivery: {error}");
                    }
                });
            }
        }
    }

    fn failed(&self, subscriber: &str, seq: i64, attempts: u32, error: &str, dead: bool) {
        if !dead {
            // Still ours: the dispatcher tries again after its backoff.
            let held = self.held.lock().unwrap();
            if let Some((_, message)) = held
                .get(subscriber)
                .and_then(|messages| messages.iter().find(|(s, _)| *s == seq))
            {
                let message = message.clone();
                tokio::spawn(async move { message.ack_with(AckKind::Progress).await });
            }
            return;
        }
        let Some(message) = self.take_held(subscriber, seq) else {
            return;
        };
        let why = Why {
            attempts,
            error: error.chars().take(2000).collect(),
        };
        let reason = serde_json::to_string(&why).expect("serializable");
        tokio::spawn(async move {
            // `+TERM` with a reason: JetStream's advisory carries it.
            let Some(reply) = message.message.reply.clone() else {
                return;
            };
            let term = bytes::Bytes::from(format!("+TERM {reason}"));
            if let Err(error) = message.context.client().publish(reply, term).await {
                tracing::error!("cannot give up a delivery: {error}");
            }
        });
    }

    async fn pending(
        &self,
        subscriber: &str,
        _after: i64,
        _limit: usize,
    ) -> Result<Vec<PendingDelivery>> {
        loop {
            let held: Vec<PendingDelivery> = self
                .held
                .lock()
                .unwrap()
                .get(subscriber)
                .map(|messages| {
                    messages
                        .iter()
                        .filter_map(|(seq, message)| {
                            let carried: Carried = serde_json::from_slice(&message.payload).ok()?;
                            let delivered = message.info().ok()?.delivered;
                            Some(JetStreamEvents::delivery(*seq, &carried, delivered))
                        })
                        .collect()
                })
                .unwrap_or_default();
            if !held.is_empty() {
                return Ok(held);
            }
            match self.leases.placement(subscriber).await {
                Ok(Placement::Here) => {}
                Ok(Placement::Elsewhere(_)) | Err(_) => {
                    self.give_back(subscriber);
                    tokio::time::sleep(NOT_HERE_WAIT).await;
                    continue;
                }
            }
            match self.fetch(subscriber).await {
                Ok(pending) if !pending.is_empty() => return Ok(pending),
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(service = subscriber, "{error:#}");
                    tokio::time::sleep(NOT_HERE_WAIT).await;
                }
            }
        }
    }

    async fn recent(&self, topic: Option<String>, limit: usize) -> Result<Vec<EventSummary>> {
        let mut stream = self.stream.clone();
        let last = stream.info().await?.state.last_sequence;
        let mut found = Vec::new();
        let mut seq = last;
        while seq > 0 && found.len() < limit && last - seq < 10_000 {
            if let Ok(message) = stream.get_raw_message(seq).await
                && let Ok(carried) = serde_json::from_slice::<Carried>(&message.payload)
                && topic
                    .as_ref()
                    .is_none_or(|p| topics::matches(p, &carried.topic))
            {
                found.push(EventSummary {
                    event: JetStreamEvents::record_of(seq as i64, &carried),
                    subscribers: 0,
                    pending: 0,
                    dead: 0,
                });
            }
            seq -= 1;
        }
        Ok(found)
    }

    async fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        Ok(self
            .kept_dead()
            .await?
            .into_iter()
            .map(|dead| {
                let event = dead.event.unwrap_or_else(|| Carried {
                    topic: "(gone)".into(),
                    source: String::new(),
                    time: String::new(),
                    payload: "the event is older than the stream keeps".into(),
                    id: None,
                });
                DeadLetter {
                    event: JetStreamEvents::record_of(dead.seq, &event),
                    subscriber: dead.subscriber,
                    attempts: dead.why.attempts,
                    last_error: Some(dead.why.error),
                }
            })
            .collect())
    }

    async fn replay(
        &self,
        subscriber: Option<String>,
        event: Option<String>,
    ) -> Result<Vec<String>> {
        let mut subscribers = Vec::new();
        for dead in self.kept_dead().await? {
            let Some(mut carried) = dead.event else {
                continue;
            };
            let id = carried.id.clone().unwrap_or_else(|| event_id(dead.seq));
            if subscriber.as_ref().is_some_and(|s| *s != dead.subscriber)
                || event.as_ref().is_some_and(|e| *e != id)
            {
                continue;
            }
            carried.id = Some(id);
            let mut headers = async_nats::HeaderMap::new();
            // Two hosts replaying the same dead letter publish it once.
            headers.insert("Nats-Msg-Id", format!("replay-{}", dead.at).as_str());
            let body = serde_json::to_vec(&carried)?;
            self.jetstream
                .publish_with_headers(replay_subject(&dead.subscriber), headers, body.into())
                .await?
                .await
                .context("JetStream did not store the replayed event")?;
            let _ = self.dead.delete_message(dead.at).await;
            if !subscribers.contains(&dead.subscriber) {
                subscribers.push(dead.subscriber);
            }
        }
        Ok(subscribers)
    }

    async fn stats(&self) -> Result<EventStats> {
        let mut stream = self.stream.clone();
        let published = stream.info().await?.state.messages;
        let mut pending = 0;
        let consumers: Vec<PullConsumer> = self
            .consumers
            .lock()
            .unwrap()
            .values()
            .map(|(_, consumer)| consumer.clone())
            .collect();
        for mut consumer in consumers {
            let info = consumer.info().await?;
            pending += info.num_pending + info.num_ack_pending as u64;
        }
        let mut dead = self.dead.clone();
        let dead = dead.info().await?.state.messages;
        Ok(EventStats {
            published,
            unhandled: 0,
            pending,
            dead,
        })
    }

    async fn prune(&self, _before: DateTime<Utc>) -> Result<usize> {
        // The stream's maximum age prunes it.
        Ok(0)
    }

    fn forget(&self, subscriber: &str) {
        self.give_back(subscriber);
        self.consumers.lock().unwrap().remove(subscriber);
        let (stream, name) = (self.stream.clone(), consumer_name(subscriber));
        tokio::spawn(async move { stream.delete_consumer(&name).await });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_become_filters_that_do_not_overlap() {
        let of = |patterns: &[&str]| {
            filters(
                "s",
                &patterns.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            )
        };
        assert_eq!(
            of(&["contact/changed", "contact/*", "note/saved"]),
            [
                "locker.events.contact.>",
                "locker.events.note.saved",
                "locker.replay.s"
            ]
        );
        assert_eq!(
            of(&["locker/service.*"]),
            ["locker.events.locker.>", "locker.replay.s"]
        );
        assert_eq!(of(&["*", "note/*"]), ["locker.events.>", "locker.replay.s"]);
        assert_eq!(
            subject_tokens("locker/service.started"),
            "locker.service%started"
        );
    }
}

//! Durable events in the root's SQLite database.
//!
//! One thread owns the connection and applies requests in batches: it takes
//! every request waiting in its queue, runs them in one transaction, commits
//! once, and only then answers. A publish is answered after the commit that
//! stored it (durable), and many concurrent publishes share one commit
//! (group commit), which is what makes thousands of durable events per
//! second possible on one disk.
//!
//! ```text
//! events(seq, topic, source, time, payload, subscribers)   every event, in publish order
//! deliveries(subscriber, seq, state, attempts, last_error)  pending or dead deliveries;
//!                                                          a delivered one is deleted
//! ```
//!
//! History is kept for a retention time (a week by default), then pruned in
//! short steps between other work; an event that still has a pending or dead
//! delivery is kept however old it is.

use std::sync::mpsc;

use anyhow::{Context, Result, anyhow};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::root::LockerRoot;

/// The largest number of requests applied in one transaction.
const MAX_BATCH: usize = 4096;

/// An event as stored and delivered.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EventRecord {
    pub id: String,
    #[serde(skip)]
    pub seq: i64,
    pub topic: String,
    pub source: String,
    pub time: String,
    /// JSON text.
    pub payload: String,
}

/// An event as `locker events` shows it, with where its deliveries stand.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventSummary {
    #[serde(flatten)]
    pub event: EventRecord,
    /// How many subscribers it was addressed to (0: unhandled).
    pub subscribers: u32,
    pub pending: u32,
    pub dead: u32,
}

/// A delivery that is waiting for its subscriber.
#[derive(Debug, Clone)]
pub struct PendingDelivery {
    pub event: EventRecord,
    pub attempts: u32,
}

/// A delivery that used up its attempts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeadLetter {
    pub subscriber: String,
    pub event: EventRecord,
    pub attempts: u32,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EventStats {
    pub published: u64,
    /// Events that no service subscribed to.
    pub unhandled: u64,
    pub pending: u64,
    pub dead: u64,
}

pub fn event_id(seq: i64) -> String {
    format!("evt-{seq:010}")
}

fn seq_of(id: &str) -> Option<i64> {
    id.strip_prefix("evt-")?.parse().ok()
}

type Reply<T> = oneshot::Sender<Result<T>>;

enum Request {
    Publish {
        topic: String,
        source: String,
        time: String,
        payload: String,
        subscribers: Vec<String>,
        reply: Reply<EventRecord>,
    },
    Delivered {
        subscriber: String,
        seq: i64,
    },
    Failed {
        subscriber: String,
        seq: i64,
        attempts: u32,
        error: String,
        dead: bool,
    },
    Pending {
        subscriber: String,
        after: i64,
        limit: usize,
        reply: Reply<Vec<PendingDelivery>>,
    },
    Recent {
        topic: Option<String>,
        limit: usize,
        reply: Reply<Vec<EventSummary>>,
    },
    DeadLetters {
        reply: Reply<Vec<DeadLetter>>,
    },
    Replay {
        subscriber: Option<String>,
        event: Option<String>,
        reply: Reply<Vec<String>>,
    },
    Stats {
        reply: Reply<EventStats>,
    },
    Forget {
        subscriber: String,
    },
    Prune {
        before: time::OffsetDateTime,
        after: i64,
        limit: usize,
        reply: Reply<PruneStep>,
    },
}

/// One step of pruning the history.
#[derive(Debug, Clone, Copy)]
struct PruneStep {
    deleted: usize,
    /// The last event looked at: the next step starts after it.
    last: i64,
    /// No older event is left to look at.
    done: bool,
}

/// Events looked at in one pruning step (one short transaction).
const PRUNE_STEP: usize = 2000;

/// A handle to the event store's writer thread; cheap to clone.
#[derive(Clone)]
pub struct EventStore {
    requests: mpsc::Sender<Request>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    topic       TEXT NOT NULL,
    source      TEXT NOT NULL,
    time        TEXT NOT NULL,
    payload     TEXT NOT NULL,
    subscribers INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_topic ON events(topic, seq);
CREATE INDEX IF NOT EXISTS events_unhandled ON events(seq) WHERE subscribers = 0;
CREATE TABLE IF NOT EXISTS deliveries (
    subscriber TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('pending', 'dead')),
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    PRIMARY KEY (subscriber, seq)
) WITHOUT ROWID;
";

impl EventStore {
    pub fn open(root: &LockerRoot) -> Result<EventStore> {
        let db = root.open_database()?;
        db.execute_batch(SCHEMA)
            .context("cannot create the event tables")?;
        let (requests, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name("locker-events-db".into())
            .spawn(move || run_writer(db, queue))
            .context("cannot start the event store thread")?;
        Ok(EventStore { requests })
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(make(reply))
            .map_err(|_| anyhow!("the event store has stopped"))?;
        answer
            .await
            .map_err(|_| anyhow!("the event store has stopped"))?
    }

    /// Stores an event and one pending delivery per subscriber; returns once committed.
    pub async fn publish(
        &self,
        topic: String,
        source: String,
        time: String,
        payload: String,
        subscribers: Vec<String>,
    ) -> Result<EventRecord> {
        self.ask(|reply| Request::Publish {
            topic,
            source,
            time,
            payload,
            subscribers,
            reply,
        })
        .await
    }

    /// Marks a delivery done. Not awaited: a delivery whose mark is lost in
    /// a crash is delivered again, which at-least-once allows.
    pub fn delivered(&self, subscriber: &str, seq: i64) {
        let _ = self.requests.send(Request::Delivered {
            subscriber: subscriber.into(),
            seq,
        });
    }

    pub fn failed(&self, subscriber: &str, seq: i64, attempts: u32, error: &str, dead: bool) {
        let _ = self.requests.send(Request::Failed {
            subscriber: subscriber.into(),
            seq,
            attempts,
            error: error.into(),
            dead,
        });
    }

    /// The subscriber's next pending deliveries after `after`, in publish order.
    pub async fn pending(
        &self,
        subscriber: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<PendingDelivery>> {
        let subscriber = subscriber.to_string();
        self.ask(|reply| Request::Pending {
            subscriber,
            after,
            limit,
            reply,
        })
        .await
    }

    /// The latest events, newest first, optionally only topics matching a pattern.
    pub async fn recent(&self, topic: Option<String>, limit: usize) -> Result<Vec<EventSummary>> {
        self.ask(|reply| Request::Recent {
            topic,
            limit,
            reply,
        })
        .await
    }

    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        self.ask(|reply| Request::DeadLetters { reply }).await
    }

    /// Makes dead deliveries pending again (all, one subscriber's, or one
    /// event's); returns the subscribers that have something to do.
    pub async fn replay(
        &self,
        subscriber: Option<String>,
        event: Option<String>,
    ) -> Result<Vec<String>> {
        self.ask(|reply| Request::Replay {
            subscriber,
            event,
            reply,
        })
        .await
    }

    pub async fn stats(&self) -> Result<EventStats> {
        self.ask(|reply| Request::Stats { reply }).await
    }

    /// Deletes the events published before `before` that are owed to no
    /// one (every delivery done); returns how many. Runs in short steps, so
    /// publishes wait for at most one step.
    pub async fn prune(&self, before: time::OffsetDateTime) -> Result<usize> {
        let (mut after, mut deleted) = (0, 0);
        loop {
            let step = self
                .ask(|reply| Request::Prune {
                    before,
                    after,
                    limit: PRUNE_STEP,
                    reply,
                })
                .await?;
            deleted += step.deleted;
            after = step.last;
            if step.done {
                return Ok(deleted);
            }
        }
    }

    /// Drops everything still owed to a service that was uninstalled.
    pub fn forget(&self, subscriber: &str) {
        let _ = self.requests.send(Request::Forget {
            subscriber: subscriber.into(),
        });
    }
}

/// Answers to send once the batch's transaction has committed.
type Answer = Box<dyn FnOnce(Option<&str>) + Send>;

fn run_writer(mut db: Connection, queue: mpsc::Receiver<Request>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        let mut answers: Vec<Answer> = Vec::with_capacity(batch.len());
        let outcome = (|| -> rusqlite::Result<()> {
            // IMMEDIATE: a transaction that reads before it writes would
            // otherwise fail at once, not wait, when another connection wrote.
            let transaction =
                db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            for request in batch {
                answers.push(apply(&transaction, request));
            }
            transaction.commit()
        })();
        let failure = outcome
            .err()
            .map(|e| format!("the event store could not commit: {e}"));
        if let Some(failure) = &failure {
            tracing::error!("{failure}");
        }
        for answer in answers {
            answer(failure.as_deref());
        }
    }
}

/// Applies one request inside the batch's transaction, returning how to answer it.
fn apply(db: &rusqlite::Transaction<'_>, request: Request) -> Answer {
    fn answer<T: Send + 'static>(reply: Reply<T>, result: Result<T>) -> Answer {
        Box::new(move |commit_failure| {
            let result = match commit_failure {
                Some(failure) => Err(anyhow!("{failure}")),
                None => result,
            };
            let _ = reply.send(result);
        })
    }
    let none: Answer = Box::new(|_| {});
    match request {
        Request::Publish {
            topic,
            source,
            time,
            payload,
            subscribers,
            reply,
        } => {
            let result = (|| -> Result<EventRecord> {
                db.prepare_cached("INSERT INTO events (topic, source, time, payload, subscribers) VALUES (?1, ?2, ?3, ?4, ?5)")?
                    .execute(params![topic, source, time, payload, subscribers.len() as i64])?;
                let seq = db.last_insert_rowid();
                let mut insert = db.prepare_cached(
                    "INSERT INTO deliveries (subscriber, seq, state) VALUES (?1, ?2, 'pending')",
                )?;
                for subscriber in &subscribers {
                    insert.execute(params![subscriber, seq])?;
                }
                Ok(EventRecord {
                    id: event_id(seq),
                    seq,
                    topic,
                    source,
                    time,
                    payload,
                })
            })();
            answer(reply, result)
        }
        Request::Delivered { subscriber, seq } => {
            if let Err(e) = db
                .prepare_cached("DELETE FROM deliveries WHERE subscriber = ?1 AND seq = ?2")
                .and_then(|mut s| s.execute(params![subscriber, seq]))
            {
                tracing::error!("cannot mark a delivery done: {e}");
            }
            none
        }
        Request::Failed {
            subscriber,
            seq,
            attempts,
            error,
            dead,
        } => {
            let state = if dead { "dead" } else { "pending" };
            if let Err(e) = db
                .prepare_cached("UPDATE deliveries SET attempts = ?3, last_error = ?4, state = ?5 WHERE subscriber = ?1 AND seq = ?2")
                .and_then(|mut s| s.execute(params![subscriber, seq, attempts, error, state]))
            {
                tracing::error!("cannot record a failed delivery: {e}");
            }
            none
        }
        Request::Pending {
            subscriber,
            after,
            limit,
            reply,
        } => {
            let result = query_all(
                db,
                "SELECT e.seq, e.topic, e.source, e.time, e.payload, d.attempts
                 FROM deliveries d JOIN events e ON e.seq = d.seq
                 WHERE d.subscriber = ?1 AND d.state = 'pending' AND d.seq > ?2
                 ORDER BY d.seq LIMIT ?3",
                params![subscriber, after, limit as i64],
                |row| {
                    Ok(PendingDelivery {
                        event: event_from_row(row)?,
                        attempts: row.get(5)?,
                    })
                },
            );
            answer(reply, result)
        }
        Request::Recent {
            topic,
            limit,
            reply,
        } => answer(reply, recent(db, topic.as_deref(), limit)),
        Request::DeadLetters { reply } => {
            let result = query_all(
                db,
                "SELECT e.seq, e.topic, e.source, e.time, e.payload, d.attempts, d.last_error, d.subscriber
                 FROM deliveries d JOIN events e ON e.seq = d.seq
                 WHERE d.state = 'dead' ORDER BY d.subscriber, d.seq",
                [],
                |row| {
                    Ok(DeadLetter {
                        event: event_from_row(row)?,
                        attempts: row.get(5)?,
                        last_error: row.get(6)?,
                        subscriber: row.get(7)?,
                    })
                },
            );
            answer(reply, result)
        }
        Request::Replay {
            subscriber,
            event,
            reply,
        } => {
            let result = (|| -> Result<Vec<String>> {
                let seq = match &event {
                    Some(id) => {
                        Some(seq_of(id).ok_or_else(|| anyhow!("{id:?} is not an event id"))?)
                    }
                    None => None,
                };
                let mut touched: Vec<String> = db
                    .prepare_cached(
                        "SELECT DISTINCT subscriber FROM deliveries WHERE state = 'dead'
                         AND (?1 IS NULL OR subscriber = ?1) AND (?2 IS NULL OR seq = ?2)",
                    )?
                    .query_map(params![subscriber, seq], |row| row.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                db.prepare_cached(
                    "UPDATE deliveries SET state = 'pending', attempts = 0 WHERE state = 'dead'
                     AND (?1 IS NULL OR subscriber = ?1) AND (?2 IS NULL OR seq = ?2)",
                )?
                .execute(params![subscriber, seq])?;
                touched.sort();
                Ok(touched)
            })();
            answer(reply, result)
        }
        Request::Stats { reply } => {
            let result = (|| -> Result<EventStats> {
                // Cheap even with millions of events: the sequence counter,
                // and a partial index that holds only the unhandled ones.
                let published: i64 = db
                    .query_row(
                        "SELECT seq FROM sqlite_sequence WHERE name = 'events'",
                        [],
                        |r| r.get(0),
                    )
                    .optional()?
                    .unwrap_or(0);
                let unhandled: i64 = db.query_row(
                    "SELECT COUNT(*) FROM events WHERE subscribers = 0",
                    [],
                    |r| r.get(0),
                )?;
                let (pending, dead): (i64, i64) = db.query_row(
                    "SELECT COALESCE(SUM(state = 'pending'), 0), COALESCE(SUM(state = 'dead'), 0) FROM deliveries",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                let count = |n: i64| n.max(0) as u64;
                Ok(EventStats {
                    published: count(published),
                    unhandled: count(unhandled),
                    pending: count(pending),
                    dead: count(dead),
                })
            })();
            answer(reply, result)
        }
        Request::Prune {
            before,
            after,
            limit,
            reply,
        } => answer(reply, prune_step(db, before, after, limit)),
        Request::Forget { subscriber } => {
            if let Err(e) = db.execute("DELETE FROM deliveries WHERE subscriber = ?1", [subscriber])
            {
                tracing::error!("cannot drop an uninstalled service's deliveries: {e}");
            }
            none
        }
    }
}

/// Looks at up to `limit` events after `after`, in publish order, and
/// deletes those published before `before` that no delivery still needs.
fn prune_step(
    db: &Connection,
    before: time::OffsetDateTime,
    after: i64,
    limit: usize,
) -> Result<PruneStep> {
    let rows = query_all(
        db,
        "SELECT seq, time FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        params![after, limit as i64],
        |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?)),
    )?;
    // Events are stored in publish order, so the old ones come first.
    let old = rows
        .iter()
        .take_while(|(_, time)| {
            time::OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339)
                .is_ok_and(|published| published < before)
        })
        .count();
    let Some(&(last, _)) = rows[..old].last() else {
        return Ok(PruneStep {
            deleted: 0,
            last: after,
            done: true,
        });
    };
    let deleted = db
        .prepare_cached(
            "DELETE FROM events WHERE seq > ?1 AND seq <= ?2
             AND seq NOT IN (SELECT seq FROM deliveries)",
        )?
        .execute(params![after, last])?;
    Ok(PruneStep {
        deleted,
        last,
        done: old < rows.len() || rows.len() < limit,
    })
}

/// Runs a query and collects every row it maps.
fn query_all<T>(
    db: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    map: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    let mut query = db.prepare_cached(sql)?;
    let rows = query.query_map(params, map)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn event_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<EventRecord> {
    let seq: i64 = row.get(0)?;
    Ok(EventRecord {
        id: event_id(seq),
        seq,
        topic: row.get(1)?,
        source: row.get(2)?,
        time: row.get(3)?,
        payload: row.get(4)?,
    })
}

fn recent(db: &Connection, topic: Option<&str>, limit: usize) -> Result<Vec<EventSummary>> {
    // Patterns are `prefix*` or exact, which map onto LIKE / = directly.
    let (clause, argument) = match topic {
        Some(pattern) => match pattern.strip_suffix('*') {
            Some(prefix) => (
                "WHERE topic LIKE ?1 ESCAPE '\\'",
                format!(
                    "{}%",
                    prefix
                        .replace('\\', "\\\\")
                        .replace('%', "\\%")
                        .replace('_', "\\_")
                ),
            ),
            None => ("WHERE topic = ?1", pattern.to_string()),
        },
        None => ("WHERE ?1 IS NOT NULL", String::new()),
    };
    let sql = format!(
        "SELECT seq, topic, source, time, payload, subscribers,
           (SELECT COUNT(*) FROM deliveries d WHERE d.seq = events.seq AND d.state = 'pending'),
           (SELECT COUNT(*) FROM deliveries d WHERE d.seq = events.seq AND d.state = 'dead')
         FROM events {clause} ORDER BY seq DESC LIMIT ?2"
    );
    let mut query = db.prepare(&sql)?;
    let rows = query.query_map(params![argument, limit as i64], |row| {
        Ok(EventSummary {
            event: event_from_row(row)?,
            subscribers: row.get(5)?,
            pending: row.get(6)?,
            dead: row.get(7)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

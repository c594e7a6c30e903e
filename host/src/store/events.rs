//! Durable events in the root's SQLite database.
//!
//! [`EventLog`] is what the bus and the owner's commands need of an event
//! store; [`SqliteEventLog`] keeps it in the root's database through a
//! [`GroupCommit`] writer: concurrent publishes share one transaction and
//! one fsync, and each is answered only after the commit that stored it.
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

use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, anyhow};
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::group_commit::GroupCommit;
use super::root::LockerRoot;
use crate::api::{DeadLetter, EventRecord, EventStats, EventSummary};
use crate::clock::parse_rfc3339;

/// A delivery that is waiting for its subscriber.
#[derive(Debug, Clone)]
pub struct PendingDelivery {
    pub event: EventRecord,
    pub attempts: u32,
}

/// An event to store: who published what, when.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub topic: String,
    pub source: String,
    pub time: String,
    /// JSON text.
    pub payload: String,
}

/// Where events and their deliveries are kept. A second backend (a
/// distributed log) is another implementation of this trait.
#[async_trait::async_trait]
pub trait EventLog: Send + Sync {
    /// Stores an event and one pending delivery per subscriber; returns once durable.
    async fn publish(&self, event: NewEvent, subscribers: Vec<String>) -> Result<EventRecord>;
    /// Marks deliveries done, in one piece of work. Not awaited: a delivery
    /// whose mark is lost in a crash is delivered again, which at-least-once
    /// allows. A later read of what is pending from the start runs behind
    /// the marks made before it.
    fn delivered(&self, subscriber: &str, seqs: Vec<i64>);
    /// Records a failed attempt; `dead` when it was the last.
    fn failed(&self, subscriber: &str, seq: i64, attempts: u32, error: &str, dead: bool);
    /// The subscriber's next pending deliveries after `after`, in publish
    /// order. From the start (`after` 0) the read waits its turn behind
    /// every mark made before it; past a cursor it reads what is committed
    /// without waiting, for the caller has delivered nothing after `after`.
    async fn pending(
        &self,
        subscriber: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<PendingDelivery>>;
    /// The latest events, newest first, optionally only topics matching a pattern.
    async fn recent(&self, topic: Option<String>, limit: usize) -> Result<Vec<EventSummary>>;
    async fn dead_letters(&self) -> Result<Vec<DeadLetter>>;
    /// Makes dead deliveries pending again (all, one subscriber's, or one
    /// event's); returns the subscribers that have something to do.
    async fn replay(
        &self,
        subscriber: Option<String>,
        event: Option<String>,
    ) -> Result<Vec<String>>;
    async fn stats(&self) -> Result<EventStats>;
    /// Deletes the events published before `before` that are owed to no
    /// one (every delivery done); returns how many.
    async fn prune(&self, before: DateTime<Utc>) -> Result<usize>;
    /// Drops everything still owed to a service that was uninstalled.
    fn forget(&self, subscriber: &str);
}

pub fn event_id(seq: i64) -> String {
    format!("evt-{seq:010}")
}

fn seq_of(id: &str) -> Option<i64> {
    id.strip_prefix("evt-")?.parse().ok()
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

/// The events of a root's database; cheap to clone.
#[derive(Clone)]
pub struct SqliteEventLog {
    writer: GroupCommit,
    /// Reads what is committed, beside the writer (WAL lets it).
    reader: Arc<Mutex<Connection>>,
}

impl SqliteEventLog {
    pub fn open(root: &LockerRoot) -> Result<SqliteEventLog> {
        let writer = GroupCommit::start("locker-events-db", root.open_database()?)?;
        let reader = Arc::new(Mutex::new(root.open_database()?));
        Ok(SqliteEventLog { writer, reader })
    }
}

#[async_trait::async_trait]
impl EventLog for SqliteEventLog {
    /// The hottest write there is, so it runs without a savepoint (which
    /// cost a third of the fan-out rate): if a delivery cannot be stored,
    /// the event and its deliveries are taken back by hand.
    async fn publish(&self, event: NewEvent, subscribers: Vec<String>) -> Result<EventRecord> {
        self.writer
            .call_unguarded(move |db| {
                db.prepare_cached("INSERT INTO events (topic, source, time, payload, subscribers) VALUES (?1, ?2, ?3, ?4, ?5)")?
                    .execute(params![event.topic, event.source, event.time, event.payload, subscribers.len() as i64])?;
                let seq = db.last_insert_rowid();
                if let Err(error) = insert_deliveries(db, seq, &subscribers) {
                    db.prepare_cached("DELETE FROM deliveries WHERE seq = ?1")?
                        .execute([seq])?;
                    db.prepare_cached("DELETE FROM events WHERE seq = ?1")?
                        .execute([seq])?;
                    return Err(error).context("cannot store the event's deliveries");
                }
                Ok(EventRecord {
                    id: event_id(seq),
                    seq,
                    topic: event.topic,
                    source: event.source,
                    time: event.time,
                    payload: event.payload,
                })
            })
            .await
    }

    fn delivered(&self, subscriber: &str, seqs: Vec<i64>) {
        if seqs.is_empty() {
            return;
        }
        let subscriber = subscriber.to_string();
        self.writer.submit("deliveries", move |db| {
            let mut done =
                db.prepare_cached("DELETE FROM deliveries WHERE subscriber = ?1 AND seq = ?2")?;
            for seq in seqs {
                done.execute(params![subscriber, seq])?;
            }
            Ok(())
        });
    }

    fn failed(&self, subscriber: &str, seq: i64, attempts: u32, error: &str, dead: bool) {
        let (subscriber, error) = (subscriber.to_string(), error.to_string());
        let state = if dead { "dead" } else { "pending" };
        self.writer.submit("a failed delivery", move |db| {
            db.prepare_cached("UPDATE deliveries SET attempts = ?3, last_error = ?4, state = ?5 WHERE subscriber = ?1 AND seq = ?2")?
                .execute(params![subscriber, seq, attempts, error, state])?;
            Ok(())
        });
    }

    async fn pending(
        &self,
        subscriber: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<PendingDelivery>> {
        let subscriber = subscriber.to_string();
        let read = move |db: &Connection| {
            query_all(
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
            )
        };
        if after == 0 {
            return self.writer.call_unguarded(read).await;
        }
        // Beside the writer, not behind its next commit: a dispatcher that
        // waited a commit for each read would idle half the time.
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || read(&reader.lock().unwrap()))
            .await
            .context("the event reader stopped")?
    }

    async fn recent(&self, topic: Option<String>, limit: usize) -> Result<Vec<EventSummary>> {
        self.writer
            .call_unguarded(move |db| recent(db, topic.as_deref(), limit))
            .await
    }

    async fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        self.writer
            .call_unguarded(|db| {
                query_all(
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
                )
            })
            .await
    }

    async fn replay(
        &self,
        subscriber: Option<String>,
        event: Option<String>,
    ) -> Result<Vec<String>> {
        let seq = match &event {
            Some(id) => Some(seq_of(id).ok_or_else(|| anyhow!("{id:?} is not an event id"))?),
            None => None,
        };
        self.writer
            .call(move |db| {
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
            })
            .await
    }

    async fn stats(&self) -> Result<EventStats> {
        self.writer.call_unguarded(stats).await
    }

    /// Runs in short steps, so publishes wait for at most one step.
    async fn prune(&self, before: DateTime<Utc>) -> Result<usize> {
        let (mut after, mut deleted) = (0, 0);
        loop {
            let step = self
                .writer
                .call_unguarded(move |db| prune_step(db, before, after, PRUNE_STEP))
                .await?;
            deleted += step.deleted;
            after = step.last;
            if step.done {
                return Ok(deleted);
            }
        }
    }

    fn forget(&self, subscriber: &str) {
        let subscriber = subscriber.to_string();
        self.writer
            .submit("an uninstalled service's deliveries", move |db| {
                db.execute("DELETE FROM deliveries WHERE subscriber = ?1", [subscriber])?;
                Ok(())
            });
    }
}

/// One pending delivery per subscriber.
fn insert_deliveries(db: &Connection, seq: i64, subscribers: &[String]) -> Result<()> {
    let mut insert = db.prepare_cached(
        "INSERT INTO deliveries (subscriber, seq, state) VALUES (?1, ?2, 'pending')",
    )?;
    for subscriber in subscribers {
        insert.execute(params![subscriber, seq])?;
    }
    Ok(())
}

fn stats(db: &Connection) -> Result<EventStats> {
    // Cheap even with millions of events: the sequence counter, and a
    // partial index that holds only the unhandled ones.
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
}

/// Looks at up to `limit` events after `after`, in publish order, and
/// deletes those published before `before` that no delivery still needs.
fn prune_step(
    db: &Connection,
    before: DateTime<Utc>,
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
        .take_while(|(_, time)| parse_rfc3339(time).is_some_and(|published| published < before))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn event(topic: &str) -> NewEvent {
        NewEvent {
            topic: topic.into(),
            source: "publisher".into(),
            time: crate::clock::now_rfc3339(),
            payload: "{}".into(),
        }
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn deliveries_are_pending_until_done_dead_after_the_last_failure_and_replayable() {
        let dir = tempfile::tempdir().unwrap();
        let log = SqliteEventLog::open(&LockerRoot::open(dir.path()).unwrap()).unwrap();
        let first = log
            .publish(event("note/a"), names(&["x", "y", "z"]))
            .await
            .unwrap();
        let second = log.publish(event("note/b"), names(&["x"])).await.unwrap();
        log.publish(event("note/c"), vec![]).await.unwrap();

        let pending = log.pending("x", 0, 10).await.unwrap();
        let seqs: Vec<i64> = pending.iter().map(|d| d.event.seq).collect();
        assert_eq!(seqs, [first.seq, second.seq], "in publish order");
        log.delivered("x", vec![first.seq]);
        log.failed("y", first.seq, 5, "it broke", true);
        let stats = log.stats().await.unwrap();
        assert_eq!(
            (stats.published, stats.unhandled, stats.pending, stats.dead),
            (3, 1, 2, 1)
        );
        let dead = log.dead_letters().await.unwrap();
        assert_eq!(dead[0].subscriber, "y");
        assert_eq!(dead[0].last_error.as_deref(), Some("it broke"));
        assert_eq!(log.replay(None, Some(first.id)).await.unwrap(), ["y"]);
        assert_eq!(log.pending("y", 0, 10).await.unwrap().len(), 1);

        // Nothing owed is kept past the retention; what is owed stays.
        let future = chrono::Utc::now() + chrono::TimeDelta::days(1);
        log.delivered("x", vec![second.seq]);
        log.forget("y");
        log.forget("z");
        assert_eq!(log.prune(future).await.unwrap(), 3);
        assert!(log.recent(None, 10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_publish_whose_deliveries_cannot_be_stored_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let log = SqliteEventLog::open(&LockerRoot::open(dir.path()).unwrap()).unwrap();
        // The same subscriber twice breaks the deliveries' primary key.
        let error = log
            .publish(event("note/a"), names(&["x", "x"]))
            .await
            .unwrap_err();
        assert!(format!("{error:#}").contains("deliveries"), "{error:#}");
        assert!(log.recent(None, 10).await.unwrap().is_empty());
        assert!(log.pending("x", 0, 10).await.unwrap().is_empty());
        log.publish(event("note/b"), names(&["x"])).await.unwrap();
        assert_eq!(log.recent(None, 10).await.unwrap().len(), 1);
    }
}

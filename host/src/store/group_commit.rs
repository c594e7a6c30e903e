//! One thread that owns a SQLite connection and applies work in batches:
//! everything waiting in its queue runs in one transaction, the transaction
//! commits once, and only then are callers answered. Many small durable
//! writes thus share one fsync.
//!
//! One failure undoes only itself: work of several statements runs in its
//! own savepoint ([`GroupCommit::call`]); a single statement needs none,
//! since SQLite undoes a failed statement by itself
//! ([`GroupCommit::call_unguarded`], [`GroupCommit::submit`]), which saves
//! two statements per write on the hottest paths (marking deliveries).

use std::sync::mpsc;

use anyhow::{Context, Result, anyhow};
use rusqlite::Connection;
use tokio::sync::oneshot;

/// The most pieces of work applied in one transaction.
const MAX_BATCH: usize = 4096;

/// Learns whether the transaction holding its work committed.
type Answer = Box<dyn FnOnce(Result<(), String>) + Send>;

/// Runs inside the transaction; says whether it succeeded and how to answer.
type Run = Box<dyn FnOnce(&Connection) -> (bool, Answer) + Send>;

/// How long a batch may wait for callers the last commit answered to come
/// back with their next write. Without it, 64 publishers that each wait for
/// their commit split into two cohorts of 32, each with a commit of its own;
/// with it, they share one (BENCHMARKS.md, 2026-12-05). It is spent only
/// while such callers are missing, never by a lone one.
const GATHER: std::time::Duration = std::time::Duration::from_micros(200);

/// A piece of work, whether it runs in a savepoint of its own, and whether
/// a caller waits for its answer.
struct Work {
    guarded: bool,
    awaited: bool,
    run: Run,
}

/// A handle to the writer thread; cheap to clone.
#[derive(Clone)]
pub struct GroupCommit {
    queue: mpsc::Sender<Work>,
}

impl GroupCommit {
    pub fn start(thread_name: &str, db: Connection) -> Result<GroupCommit> {
        let (queue, work) = mpsc::channel();
        std::thread::Builder::new()
            .name(thread_name.into())
            .spawn(move || run(db, work))
            .with_context(|| format!("cannot start the {thread_name} thread"))?;
        Ok(GroupCommit { queue })
    }

    /// Runs `f` in the next transaction, in a savepoint of its own (a
    /// failure undoes what it wrote); answers once the transaction has
    /// committed.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.ask(true, f).await
    }

    /// Like [`GroupCommit::call`], for `f` that only reads, or writes with
    /// one statement: no savepoint.
    pub async fn call_unguarded<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.ask(false, f).await
    }

    async fn ask<T: Send + 'static>(
        &self,
        guarded: bool,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        let run: Run = Box::new(move |db: &Connection| {
            let result = f(db);
            let ok = result.is_ok();
            let answer: Answer = Box::new(move |committed| {
                let _ = reply.send(committed.map_err(|e| anyhow!(e)).and(result));
            });
            (ok, answer)
        });
        self.queue
            .send(Work {
                guarded,
                awaited: true,
                run,
            })
            .map_err(|_| anyhow!("the database writer has stopped"))?;
        answer
            .await
            .map_err(|_| anyhow!("the database writer has stopped"))?
    }

    /// Runs `f` in the next transaction without waiting; a failure is
    /// logged. For statements that each stand alone: no savepoint undoes
    /// the ones before a failure.
    pub fn submit(
        &self,
        what: &'static str,
        f: impl FnOnce(&Connection) -> Result<()> + Send + 'static,
    ) {
        let run = Box::new(move |db: &Connection| {
            let result = f(db);
            let ok = result.is_ok();
            let answer: Answer = Box::new(move |committed| {
                if let Err(e) = result.map_err(|e| format!("{e:#}")).and(committed) {
                    tracing::error!("cannot record {what}: {e}");
                }
            });
            (ok, answer)
        });
        let work = Work {
            guarded: false,
            awaited: false,
            run,
        };
        if self.queue.send(work).is_err() {
            tracing::error!("cannot record {what}: the database writer has stopped");
        }
    }
}

fn run(mut db: Connection, queue: mpsc::Receiver<Work>) {
    // Callers the last commit answered: as many may be about to write again.
    let mut answered = 0;
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        answered = gather(&queue, &mut batch, answered);
        let mut answers = Vec::with_capacity(batch.len());
        let committed = (|| -> rusqlite::Result<()> {
            // IMMEDIATE: a transaction that reads before it writes would
            // otherwise fail at once, not wait, when another connection wrote.
            let transaction =
                db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            for work in batch.drain(..) {
                if !work.guarded {
                    answers.push((work.run)(&transaction).1);
                    continue;
                }
                // Cached statements, not rusqlite's `Savepoint` (which parses
                // its SQL anew each time).
                transaction.prepare_cached("SAVEPOINT work")?.execute([])?;
                let (ok, answer) = (work.run)(&transaction);
                if !ok {
                    transaction
                        .prepare_cached("ROLLBACK TO work")?
                        .execute([])?;
                }
                transaction.prepare_cached("RELEASE work")?.execute([])?;
                answers.push(answer);
            }
            transaction.commit()
        })();
        let committed = committed.map_err(|e| format!("the transaction failed: {e}"));
        for answer in answers {
            answer(committed.clone());
        }
    }
}

/// Takes what is queued, then waits up to [`GATHER`] for as many awaited
/// pieces as the last commit answered; returns how many the batch holds.
fn gather(queue: &mpsc::Receiver<Work>, batch: &mut Vec<Work>, answered: usize) -> usize {
    let until = std::time::Instant::now() + GATHER;
    let mut awaited = batch.iter().filter(|work| work.awaited).count();
    while batch.len() < MAX_BATCH {
        let more = match queue.try_recv() {
            Ok(more) => more,
            Err(mpsc::TryRecvError::Disconnected) => break,
            Err(mpsc::TryRecvError::Empty) => {
                let left = until.saturating_duration_since(std::time::Instant::now());
                if awaited >= answered || left.is_zero() {
                    break;
                }
                match queue.recv_timeout(left) {
                    Ok(more) => more,
                    Err(_) => break,
                }
            }
        };
        awaited += usize::from(more.awaited);
        batch.push(more);
    }
    awaited
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failed_piece_undoes_only_itself_and_the_rest_commit_together() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let db = Connection::open(&path).unwrap();
        db.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        let writer = GroupCommit::start("test-writer", db).unwrap();
        let insert = |x: i64, fail: bool| {
            writer.call(move |db| {
                db.execute("INSERT INTO t VALUES (?1)", [x])?;
                anyhow::ensure!(!fail, "piece {x} fails after writing");
                Ok(x)
            })
        };
        let (a, b, c) = tokio::join!(insert(1, false), insert(2, true), insert(3, false));
        assert_eq!((a.unwrap(), c.unwrap()), (1, 3));
        assert!(b.unwrap_err().to_string().contains("piece 2 fails"));
        let kept: Vec<i64> = Connection::open(&path)
            .unwrap()
            .prepare("SELECT x FROM t ORDER BY x")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(kept, [1, 3]);
    }
}

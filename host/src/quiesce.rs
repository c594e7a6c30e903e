//! A quiet moment for a consistent snapshot of the root.
//!
//! Every piece of work that can change the root while the host serves — a
//! request to a service, an event delivery attempt, a job attempt, an
//! install, upgrade or uninstall — runs while holding a [`Working`] pass.
//! A backup asks for [`Quiesce::quiet`]: new work waits at the door, work
//! under way finishes, and then, for as long as the [`Quiet`] guard lives,
//! nothing changes the root. The backup copies what changed since its first
//! pass and snapshots the database in that moment, so the pause lasts as
//! long as the churn, not as long as the data.
//!
//! A pass may be cloned by work that spawns more of itself; a call from one
//! service to another runs under its caller's pass and takes none of its
//! own, so a quiet moment never waits on work that waits on it.

use std::sync::Arc;
// SeqCst throughout: a pass counts itself in and then looks at the door,
// a quiet moment closes the door and then counts; with weaker orderings both
// could miss the other.
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// The door every piece of root-changing work passes; cheap to clone.
#[derive(Clone, Default)]
pub struct Quiesce {
    inner: Arc<Inner>,
    /// One quiet moment at a time.
    holder: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Default)]
struct Inner {
    /// Passes alive.
    working: AtomicUsize,
    /// A quiet moment is asked for or held: new work waits.
    closed: AtomicBool,
    /// Rung when the door opens again.
    opened: Notify,
    /// Rung when the last pass is dropped while the door is closed.
    drained: Notify,
}

/// Work under way; the root may change while any pass lives.
pub struct Working {
    inner: Arc<Inner>,
}

/// Nothing changes the root while this lives; the door opens when dropped.
pub struct Quiet {
    inner: Arc<Inner>,
    _one_at_a_time: tokio::sync::OwnedMutexGuard<()>,
}

/// The work under way did not finish in the time a quiet moment may wait.
#[derive(Debug, thiserror::Error)]
#[error(
    "work under way did not finish within {waited:?} ({busy} still running): no quiet moment \
     for a consistent snapshot; try again"
)]
pub struct Busy {
    pub waited: Duration,
    pub busy: usize,
}

impl Quiesce {
    /// A pass for one piece of work; waits while a quiet moment is held.
    pub async fn enter(&self) -> Working {
        loop {
            if !self.inner.closed.load(Ordering::SeqCst) {
                self.inner.working.fetch_add(1, Ordering::SeqCst);
                // The door may have closed between the look and the count:
                // then step back out, so the quiet moment is not kept waiting.
                if !self.inner.closed.load(Ordering::SeqCst) {
                    return Working {
                        inner: self.inner.clone(),
                    };
                }
                drop(Working {
                    inner: self.inner.clone(),
                });
            }
            let opened = self.inner.opened.notified();
            tokio::pin!(opened);
            opened.as_mut().enable();
            if self.inner.closed.load(Ordering::SeqCst) {
                opened.await;
            }
        }
    }

    /// Closes the door and waits up to `patience` for the work under way to
    /// finish; the root is then still until the guard is dropped.
    pub async fn quiet(&self, patience: Duration) -> Result<Quiet, Busy> {
        let one_at_a_time = self.holder.clone().lock_owned().await;
        self.inner.closed.store(true, Ordering::SeqCst);
        let quiet = Quiet {
            inner: self.inner.clone(),
            _one_at_a_time: one_at_a_time,
        };
        let drained = async {
            loop {
                let rung = self.inner.drained.notified();
                tokio::pin!(rung);
                rung.as_mut().enable();
                if self.inner.working.load(Ordering::SeqCst) == 0 {
                    return;
                }
                rung.await;
            }
        };
        match tokio::time::timeout(patience, drained).await {
            Ok(()) => Ok(quiet),
            // Dropping `quiet` opens the door again.
            Err(_) => Err(Busy {
                waited: patience,
                busy: self.inner.working.load(Ordering::SeqCst),
            }),
        }
    }

    /// Passes alive now (for status and tests).
    pub fn working(&self) -> usize {
        self.inner.working.load(Ordering::SeqCst)
    }
}

impl Clone for Working {
    /// More of the same work (a job's runs fired under the timer's pass):
    /// allowed while the door is closing, as the work is already inside.
    fn clone(&self) -> Working {
        self.inner.working.fetch_add(1, Ordering::SeqCst);
        Working {
            inner: self.inner.clone(),
        }
    }
}

impl Drop for Working {
    fn drop(&mut self) {
        if self.inner.working.fetch_sub(1, Ordering::SeqCst) == 1
            && self.inner.closed.load(Ordering::SeqCst)
        {
            self.inner.drained.notify_waiters();
        }
    }
}

impl Drop for Quiet {
    fn drop(&mut self) {
        self.inner.closed.store(false, Ordering::SeqCst);
        self.inner.opened.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_quiet_moment_waits_for_work_under_way_and_holds_new_work_back() {
        let door = Quiesce::default();
        let under_way = door.enter().await;
        let quieting = tokio::spawn({
            let door = door.clone();
            async move { door.quiet(Duration::from_secs(5)).await.map(|_| ()) }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!quieting.is_finished(), "quiet while work was under way");
        // Work that is already inside may spawn more of itself.
        let more = under_way.clone();
        drop(under_way);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!quieting.is_finished());
        drop(more);
        quieting.await.unwrap().unwrap();

        let quiet = door.quiet(Duration::from_secs(1)).await.unwrap();
        let waiting = tokio::spawn({
            let door = door.clone();
            async move {
                let _pass = door.enter().await;
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiting.is_finished(),
            "new work went in during the quiet moment"
        );
        drop(quiet);
        waiting.await.unwrap();
        assert_eq!(door.working(), 0);
    }

    #[tokio::test]
    async fn work_that_does_not_finish_gives_up_the_quiet_moment_and_opens_the_door() {
        let door = Quiesce::default();
        let _stuck = door.enter().await;
        let busy = door.quiet(Duration::from_millis(50)).await.err().unwrap();
        assert_eq!(busy.busy, 1);
        assert!(busy.to_string().contains("1 still running"), "{busy}");
        // The door is open again.
        let _more = tokio::time::timeout(Duration::from_secs(1), door.enter())
            .await
            .expect("the door stayed closed");
    }
}

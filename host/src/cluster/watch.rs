//! A watch of a bucket that outlives the NATS server it ran on: when it
//! breaks (its server died, heartbeats were missed), it starts again from
//! the revision after the last one it gave out.

use std::time::Duration;

use async_nats::jetstream::kv;
use futures::StreamExt;

/// How long a broken watch waits before it starts again.
const AGAIN: Duration = Duration::from_secs(1);

pub struct Follow {
    kv: kv::Store,
    /// The next revision to give out; 0: each key's latest first, then changes.
    from: u64,
    current: Option<kv::Watch>,
}

impl Follow {
    /// Changes from revision `from` on.
    pub fn from(kv: kv::Store, from: u64) -> Follow {
        Follow {
            kv,
            from,
            current: None,
        }
    }

    /// Each key's latest entry, then the changes.
    pub fn latest(kv: kv::Store) -> Follow {
        Follow::from(kv, 0)
    }

    /// The next entry; waits (and starts the watch again as needed) until
    /// there is one. Safe to cancel.
    pub async fn next(&mut self) -> kv::Entry {
        loop {
            if self.current.is_none() {
                let opened = if self.from == 0 {
                    self.kv.watch_with_history(">").await
                } else {
                    self.kv.watch_all_from_revision(self.from).await
                };
                match opened {
                    Ok(watch) => self.current = Some(watch),
                    Err(error) => {
                        tracing::warn!(bucket = %self.kv.name, "cannot watch the bucket yet: {error}");
                        tokio::time::sleep(AGAIN).await;
                        continue;
                    }
                }
            }
            let watch = self.current.as_mut().expect("opened above");
            match watch.next().await {
                Some(Ok(entry)) => {
                    self.from = entry.revision + 1;
                    return entry;
                }
                Some(Err(error)) => {
                    tracing::warn!(bucket = %self.kv.name, "the watch broke ({error}); watching again")
                }
                None => tracing::warn!(bucket = %self.kv.name, "the watch ended; watching again"),
            }
            self.current = None;
            tokio::time::sleep(AGAIN).await;
        }
    }
}

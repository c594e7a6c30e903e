//! How a request's instance ended, if it ended by a failure: set when the
//! instance's loop fails, read by a request that lost its answer with it.

use std::sync::OnceLock;
use std::time::Duration;

use tokio::sync::Notify;

use crate::runtime::errors::ServiceError;

#[derive(Default)]
pub struct Fate {
    error: OnceLock<ServiceError>,
    set: Notify,
}

impl Fate {
    pub fn settle(&self, error: ServiceError) {
        if self.error.set(error).is_ok() {
            self.set.notify_waiters();
        }
    }

    pub fn get(&self) -> Option<ServiceError> {
        self.error.get().cloned()
    }

    pub async fn wait(&self, limit: Duration) -> Option<ServiceError> {
        let notified = self.set.notified();
        if let Some(error) = self.get() {
            return Some(error);
        }
        let _ = tokio::time::timeout(limit, notified).await;
        self.get()
    }
}

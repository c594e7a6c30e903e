//! Who subscribes to what, and the bell that wakes each subscriber's
//! dispatcher. Subscriptions come from the manifests, so every subscriber
//! is known even while it is not loaded.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::Notify;

use crate::package::topics;

#[derive(Default)]
pub struct Subscriptions {
    /// Service name → the topic patterns it subscribes to.
    patterns: RwLock<BTreeMap<String, Vec<String>>>,
    /// Service name → the bell that wakes its dispatcher.
    bells: Mutex<HashMap<String, Arc<Notify>>>,
    /// Services whose dispatcher must read from the start again: a replay
    /// made deliveries older than its cursor pending.
    rewinds: Mutex<HashSet<String>>,
}

impl Subscriptions {
    pub fn set(&self, service: &str, patterns: Vec<String>) {
        let mut subscriptions = self.patterns.write().unwrap();
        if patterns.is_empty() {
            subscriptions.remove(service);
        } else {
            subscriptions.insert(service.to_string(), patterns);
        }
    }

    /// Forgets a service; its dispatcher, if waiting on the bell, is woken.
    pub fn remove(&self, service: &str) {
        self.patterns.write().unwrap().remove(service);
        if let Some(bell) = self.bells.lock().unwrap().remove(service) {
            bell.notify_one();
        }
    }

    /// The services whose patterns match `topic`.
    pub fn subscribers_of(&self, topic: &str) -> Vec<String> {
        self.patterns
            .read()
            .unwrap()
            .iter()
            .filter(|(_, patterns)| patterns.iter().any(|p| topics::matches(p, topic)))
            .map(|(service, _)| service.clone())
            .collect()
    }

    /// The bell a subscriber's dispatcher waits on.
    pub fn bell(&self, service: &str) -> Arc<Notify> {
        self.bells
            .lock()
            .unwrap()
            .entry(service.to_string())
            .or_default()
            .clone()
    }

    pub fn ring(&self, service: &str) {
        self.bell(service).notify_one();
    }

    /// Wakes a service's dispatcher to read from the start.
    pub fn rewind(&self, service: &str) {
        self.rewinds.lock().unwrap().insert(service.to_string());
        self.ring(service);
    }

    /// Whether the dispatcher was asked to read from the start (once).
    pub fn take_rewind(&self, service: &str) -> bool {
        self.rewinds.lock().unwrap().remove(service)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribers_are_found_by_pattern_and_forgotten_on_removal() {
        let subscriptions = Subscriptions::default();
        subscriptions.set("contacts", vec!["contact/*".into()]);
        subscriptions.set("audit", vec!["*".into()]);
        subscriptions.set("notes", vec!["note/changed".into()]);
        assert_eq!(
            subscriptions.subscribers_of("contact/updated"),
            ["audit", "contacts"]
        );
        assert_eq!(
            subscriptions.subscribers_of("note/changed"),
            ["audit", "notes"]
        );
        assert_eq!(subscriptions.subscribers_of("note/deleted"), ["audit"]);
        subscriptions.set("audit", vec![]);
        subscriptions.remove("notes");
        assert!(subscriptions.subscribers_of("note/changed").is_empty());
    }

    #[tokio::test]
    async fn a_ring_before_the_wait_is_not_lost() {
        let subscriptions = Subscriptions::default();
        let bell = subscriptions.bell("s");
        subscriptions.ring("s");
        tokio::time::timeout(std::time::Duration::from_secs(1), bell.notified())
            .await
            .expect("the ring was kept for the next wait");
    }
}

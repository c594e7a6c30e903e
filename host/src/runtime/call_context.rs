//! What a request brings to the instance that serves it, for the calls
//! that instance makes in turn: the services the request came through, and
//! when its caller stops waiting. The host sets it (a request extension a
//! guest cannot write); a call carries it one link further.

use std::sync::{Arc, Mutex};

use tokio::time::Instant;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct CallContext {
    /// The services the request came through, the first caller first;
    /// empty for a request from outside, an event or a job.
    pub chain: Vec<String>,
    /// When the request's answer is due.
    pub deadline: Option<Instant>,
}

/// The contexts of the requests one instance holds (a WASI 0.3 instance
/// holds several at once): a call it makes is taken to come through all of
/// them, so a loop back to any caller is cut off. Shared, so that a
/// request's context can be held until its response body is done (a 0.3
/// guest often writes the body, and calls on, after answering).
#[derive(Clone, Default)]
pub struct Upstream(Arc<Mutex<Held>>);

#[derive(Default)]
struct Held {
    next: u64,
    contexts: Vec<(u64, CallContext)>,
}

/// A request's context, held in its instance's `Upstream` until dropped.
pub struct Holding {
    upstream: Upstream,
    id: u64,
}

impl Drop for Holding {
    fn drop(&mut self) {
        let mut held = self.upstream.0.lock().unwrap();
        held.contexts.retain(|(id, _)| *id != self.id);
    }
}

impl Upstream {
    /// The instance takes a request, until the `Holding` is dropped.
    pub fn enter(&self, context: CallContext) -> Holding {
        let mut held = self.0.lock().unwrap();
        held.next += 1;
        let id = held.next;
        held.contexts.push((id, context));
        Holding {
            upstream: self.clone(),
            id,
        }
    }

    /// The instance serves this one request only (until the next).
    pub fn only(&self, context: CallContext) {
        let mut held = self.0.lock().unwrap();
        held.contexts.clear();
        held.contexts.push((0, context));
    }

    /// What a call made now comes through: every service upstream of the
    /// held requests, and the latest of their deadlines.
    pub fn merged(&self) -> CallContext {
        let held = self.0.lock().unwrap();
        let mut chain: Vec<String> = Vec::new();
        for (_, context) in &held.contexts {
            for service in &context.chain {
                if !chain.contains(service) {
                    chain.push(service.clone());
                }
            }
        }
        CallContext {
            chain,
            deadline: held.contexts.iter().filter_map(|(_, c)| c.deadline).max(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_comes_through_every_request_the_instance_holds() {
        let soon = Instant::now();
        let later = soon + std::time::Duration::from_secs(5);
        let upstream = Upstream::default();
        assert_eq!(upstream.merged(), CallContext::default());
        let a = upstream.enter(CallContext {
            chain: vec!["a".into()],
            deadline: Some(soon),
        });
        let b = upstream.enter(CallContext {
            chain: vec!["b".into(), "a".into()],
            deadline: Some(later),
        });
        assert_eq!(
            upstream.merged(),
            CallContext {
                chain: vec!["a".into(), "b".into()],
                deadline: Some(later),
            }
        );
        drop(a);
        assert_eq!(upstream.merged().chain, ["b", "a"]);
        drop(b);
        assert_eq!(upstream.merged(), CallContext::default());
        upstream.only(CallContext {
            chain: vec!["c".into()],
            deadline: None,
        });
        upstream.only(CallContext::default());
        assert_eq!(upstream.merged(), CallContext::default());
    }
}

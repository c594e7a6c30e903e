//! What a request brings to the instance that serves it, for the calls
//! that instance makes in turn: the services the request came through, and
//! when its caller stops waiting. The host sets it (a request extension a
//! guest cannot write); a call carries it one link further.

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
/// them, so a loop back to any caller is cut off.
#[derive(Default)]
pub struct Upstream {
    next: u64,
    held: Vec<(u64, CallContext)>,
}

impl Upstream {
    /// The instance takes a request; `leave` with the id when it is done.
    pub fn enter(&mut self, context: CallContext) -> u64 {
        self.next += 1;
        self.held.push((self.next, context));
        self.next
    }

    pub fn leave(&mut self, id: u64) {
        self.held.retain(|(held, _)| *held != id);
    }

    /// The instance serves this one request only.
    pub fn only(&mut self, context: CallContext) {
        self.held.clear();
        self.enter(context);
    }

    /// What a call made now comes through: every service upstream of the
    /// held requests, and the latest of their deadlines.
    pub fn merged(&self) -> CallContext {
        let mut chain: Vec<String> = Vec::new();
        for (_, context) in &self.held {
            for service in &context.chain {
                if !chain.contains(service) {
                    chain.push(service.clone());
                }
            }
        }
        CallContext {
            chain,
            deadline: self.held.iter().filter_map(|(_, c)| c.deadline).max(),
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
        let mut upstream = Upstream::default();
        assert_eq!(upstream.merged(), CallContext::default());
        let a = upstream.enter(CallContext {
            chain: vec!["a".into()],
            deadline: Some(soon),
        });
        upstream.enter(CallContext {
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
        upstream.leave(a);
        upstream.only(CallContext::default());
        assert_eq!(upstream.merged(), CallContext::default());
    }
}

//! Where requests join an instance whose event loop is running: a queue the
//! loop takes from while the instance has room, closed when the loop ends.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::task::{Context, Waker};

use futures::channel::oneshot;
use wasmtime_wasi_http::handler::{Request, Response};

use super::fate::Fate;

/// A request on its way to an instance, with where its answer goes.
pub struct Job {
    pub request: Request,
    pub deadline: tokio::time::Instant,
    pub fate: Arc<Fate>,
    pub answer: oneshot::Sender<wasmtime::Result<Response>>,
}

impl Job {
    /// Gives the request back to its sender, to be placed again: the
    /// instance it joined ended before taking it.
    pub fn unserve(self) {
        let unserved = Unserved(Mutex::new(Some(self.request)));
        let _ = self.answer.send(Err(wasmtime::Error::new(unserved)));
    }
}

/// A request an instance gave back untouched.
pub struct Unserved(Mutex<Option<Request>>);

impl Unserved {
    pub fn take(&self) -> Option<Request> {
        self.0.lock().unwrap().take()
    }
}

impl std::fmt::Debug for Unserved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the instance ended before taking the request")
    }
}

impl std::fmt::Display for Unserved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

impl std::error::Error for Unserved {}

pub struct Intake {
    state: Mutex<State>,
    concurrency: usize,
    max_requests: usize,
}

struct State {
    open: bool,
    queued: VecDeque<Job>,
    /// Requests it holds, running or queued.
    load: usize,
    /// Requests its instance has taken in all, queued ones included.
    taken: usize,
    /// The event loop, waiting for a request.
    waker: Option<Waker>,
}

impl Intake {
    /// An intake for an instance that has taken `taken` requests before,
    /// and now takes one more (the request its loop starts with).
    pub fn new(taken: usize, concurrency: usize, max_requests: usize) -> Intake {
        Intake {
            state: Mutex::new(State {
                open: true,
                queued: VecDeque::new(),
                load: 1,
                taken: taken + 1,
                waker: None,
            }),
            concurrency,
            max_requests,
        }
    }

    /// Queues `job` if the instance has room for it.
    // The job goes back by value: boxing it would cost every request an
    // allocation to save a move of a few hundred bytes.
    #[allow(clippy::result_large_err)]
    pub fn offer(&self, job: Job) -> Result<(), Job> {
        let mut state = self.state.lock().unwrap();
        if !state.open || state.load >= self.concurrency || state.taken >= self.max_requests {
            return Err(job);
        }
        state.queued.push_back(job);
        state.load += 1;
        state.taken += 1;
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
        Ok(())
    }

    /// The next queued request; when there is none, the loop is woken by
    /// the next offer.
    pub fn next(&self, cx: &mut Context<'_>) -> Option<Job> {
        let mut state = self.state.lock().unwrap();
        let job = state.queued.pop_front();
        if job.is_none() {
            state.waker = Some(cx.waker().clone());
        }
        job
    }

    pub fn has_queued(&self) -> bool {
        !self.state.lock().unwrap().queued.is_empty()
    }

    /// A request it held is done; `true` if that made room where there
    /// was none.
    pub fn done(&self) -> bool {
        let mut state = self.state.lock().unwrap();
        state.load -= 1;
        state.open && state.load + 1 == self.concurrency
    }

    /// Takes no more requests; gives back the queued ones.
    pub fn close(&self) -> Vec<Job> {
        let mut state = self.state.lock().unwrap();
        state.open = false;
        let queued: Vec<Job> = state.queued.drain(..).collect();
        state.load -= queued.len();
        state.taken -= queued.len();
        queued
    }

    /// Requests its instance has taken in all.
    pub fn taken(&self) -> usize {
        self.state.lock().unwrap().taken
    }
}

//! Changes a part made on the owner's behalf, told to whoever keeps other
//! copies in step (the cluster, when this host is one of several).
//!
//! A part announces what it changed (a service's name, a token's id); it
//! does not say how, because the listener reads the part's current state
//! anyway. Changes a part made because it followed a copy are not
//! announced, so nothing echoes back.

use std::sync::OnceLock;

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// Where a part announces its changes; nobody listens until [`listen`](Changes::listen).
pub struct Changes<T>(OnceLock<UnboundedSender<T>>);

impl<T> Default for Changes<T> {
    fn default() -> Self {
        Changes(OnceLock::new())
    }
}

impl<T> Changes<T> {
    /// Tells the listener, if there is one, that `what` changed.
    pub fn announce(&self, what: T) {
        if let Some(listener) = self.0.get() {
            let _ = listener.send(what);
        }
    }

    /// The one listener's end; `None` if someone listens already.
    pub fn listen(&self) -> Option<UnboundedReceiver<T>> {
        let (sender, receiver) = unbounded_channel();
        self.0.set(sender).ok()?;
        Some(receiver)
    }
}

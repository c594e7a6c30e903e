//! A guest's stdout and stderr: appended to its service log, up to a budget
//! per request (a reused instance gets its budget back with each request).
//! Past the budget the output is dropped (once noted in the log), so a guest
//! that prints in a loop cannot fill the disk.

use std::fs::File;
use std::io::Write;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

/// Output of one instance, shared by its stdout and stderr.
#[derive(Clone)]
pub struct CappedOutput {
    file: Arc<File>,
    remaining: Arc<AtomicU64>,
}

impl CappedOutput {
    pub fn new(file: Arc<File>, budget: u64) -> Self {
        CappedOutput {
            file,
            remaining: Arc::new(AtomicU64::new(budget)),
        }
    }

    /// Restores the full budget, for the next request of a reused instance.
    pub fn refill(&self, budget: u64) {
        self.remaining.store(budget, Ordering::SeqCst);
    }

    /// Writes what the budget allows; the rest is dropped, silently to the guest.
    fn write_capped(&self, bytes: &[u8]) -> std::io::Result<()> {
        let allowed = self
            .remaining
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                Some(left.saturating_sub(bytes.len() as u64))
            })
            .unwrap_or(0);
        let take = (allowed as usize).min(bytes.len());
        if take > 0 {
            (&*self.file).write_all(&bytes[..take])?;
        }
        if take < bytes.len() && allowed > 0 {
            let note = format!(
                "\n[locker {}] output truncated: this request used up its log budget\n",
                crate::clock::now_rfc3339()
            );
            (&*self.file).write_all(note.as_bytes())?;
        }
        Ok(())
    }
}

impl IsTerminal for CappedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Pollable for CappedOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for CappedOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.write_capped(&bytes)
            .map_err(|e| StreamError::LastOperationFailed(wasmtime::format_err!(e)))
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for CappedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(self.write_capped(buf).map(|()| buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

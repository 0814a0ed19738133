//! The event loop's readiness source and the socket I/O helpers.
//!
//! Knows nothing of memcached: it waits for readiness on registered
//! sources and turns raw I/O results into small enums, so connection code
//! switches on meaning (`WouldBlock`, `Eof`) instead of errno.
//!
//! Readiness is edge-triggered (mio over epoll): events can be spurious and
//! a source stays quiet until it has been read or written to `WouldBlock`.
//! Callers therefore drain reads until `WouldBlock`, or keep the source on
//! a pending list of their own when they stop early.
//!
//! The seam is kept completion-friendly for the io_uring backend to come:
//! connections own their buffers, which never move while an operation on
//! them is outstanding, and items written from stay pinned until sent.

pub mod io;
pub mod stream;
#[cfg(feature = "io-uring")]
pub mod uring;

use std::time::Duration;

pub use mio::{Interest, Token};

/// One readiness event, reduced to what connections act on.
#[derive(Debug, Clone, Copy)]
pub struct Ready {
    pub token: Token,
    pub readable: bool,
    pub writable: bool,
    /// Peer hung up or the socket errored (a hint only: reads tell).
    pub closed: bool,
    /// The peer shut its sending side (or the socket errored): no further
    /// edge will announce that, so readers must read until EOF.
    pub read_closed: bool,
}

/// The readiness backend (epoll through mio).
pub struct Reactor {
    poll: mio::Poll,
    events: mio::Events,
    /// The vector `wait` returns, handed back through `recycle` so that a
    /// loop turn allocates nothing.
    ready: Vec<Ready>,
}

impl Reactor {
    pub fn new(capacity: usize) -> std::io::Result<Reactor> {
        Ok(Reactor {
            poll: mio::Poll::new()?,
            events: mio::Events::with_capacity(capacity),
            ready: Vec::with_capacity(capacity),
        })
    }

    /// Where sources are registered.
    pub fn registry(&self) -> &mio::Registry {
        self.poll.registry()
    }

    /// Waits up to `timeout` and returns the events that fired (hand the
    /// vector back with [`Reactor::recycle`]).  A signal interrupting the
    /// wait is not an error: it yields no events.
    pub fn wait(&mut self, timeout: Option<Duration>) -> std::io::Result<Vec<Ready>> {
        let mut ready = std::mem::take(&mut self.ready);
        ready.clear();
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return Ok(ready),
            Err(e) => return Err(e),
        }
        ready.extend(self.events.iter().map(|e| Ready {
            token: e.token(),
            readable: e.is_readable() || e.is_read_closed(),
            writable: e.is_writable(),
            closed: e.is_error() || (e.is_read_closed() && e.is_write_closed()),
            read_closed: e.is_read_closed() || e.is_error(),
        }));
        Ok(ready)
    }

    /// Takes back the vector [`Reactor::wait`] returned.
    pub fn recycle(&mut self, ready: Vec<Ready>) {
        self.ready = ready;
    }
}

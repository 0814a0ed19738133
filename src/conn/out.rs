//! A connection's queue of reply bytes not yet sent.
//!
//! Replies are short texts (headers, status lines) copied into one buffer,
//! and item values that are *not* copied: the queue holds an [`ItemRef`]
//! and the value bytes go to the socket straight from item memory.  A flush
//! gathers everything into one `writev`; an item's reference is given back
//! once its last byte is sent.

use std::collections::VecDeque;
use std::io::IoSlice;

use crate::cache::{Cache, ItemRef};
use crate::reactor::io::{writev, WriteResult};

/// Slices gathered per `writev`.
const IOV_BATCH: usize = 256;
/// Slices gathered for a reply of at most half as many pieces.
const SMALL_BATCH: usize = 8;

enum Piece {
    /// `text[start..end]`.
    Text { start: usize, end: usize },
    /// The first `len` value bytes of an item (its `\r\n` included).
    Item { item: ItemRef, len: usize },
}

impl Piece {
    fn len(&self) -> usize {
        match self {
            Piece::Text { start, end } => end - start,
            Piece::Item { len, .. } => *len,
        }
    }
}

/// What a flush achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// Everything queued was sent.
    Done,
    /// The socket is full; wait for it to become writable.
    Blocked,
    /// The peer is gone.
    Failed,
}

/// Unsent replies, oldest first.
#[derive(Default)]
pub struct OutQueue {
    text: Vec<u8>,
    pieces: VecDeque<Piece>,
    /// Bytes of the front piece already sent.
    sent: usize,
    /// Total unsent bytes.
    pending: usize,
    /// Length of `text` already turned into pieces.
    committed: usize,
}

impl OutQueue {
    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    /// Unsent bytes.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// The text buffer to append reply bytes to; close with [`Self::commit`].
    pub fn text(&mut self) -> &mut Vec<u8> {
        &mut self.text
    }

    /// Queues the text appended since the last commit.
    pub fn commit(&mut self) {
        let end = self.text.len();
        let start = self.committed;
        if end == start {
            return;
        }
        self.pending += end - start;
        self.committed = end;
        if let Some(Piece::Text { end: e, .. }) = self.pieces.back_mut() {
            if *e == start {
                *e = end;
                return;
            }
        }
        self.pieces.push_back(Piece::Text { start, end });
    }

    /// Ends a status line written into [`Self::text`]: `\r\n`, then queued.
    pub fn end_line(&mut self) {
        self.text.extend_from_slice(b"\r\n");
        self.commit();
    }

    /// Queues a status line: `line` then `\r\n`.
    pub fn line(&mut self, line: &[u8]) {
        self.text.extend_from_slice(line);
        self.text.extend_from_slice(b"\r\n");
        self.commit();
    }

    /// Queues an item's value (with its `\r\n`) to be sent from item memory.
    pub fn item(&mut self, item: ItemRef, len: usize) {
        self.commit();
        self.pending += len;
        self.pieces.push_back(Piece::Item { item, len });
    }

    /// Drops every reply not started yet, giving back item references.
    /// memcached does this when a multi-get fails half way.
    pub fn drop_unsent(&mut self, cache: &mut Cache) {
        let keep = usize::from(self.sent > 0);
        while self.pieces.len() > keep {
            let p = self.pieces.pop_back().expect("piece");
            self.pending -= p.len();
            if let Piece::Item { item, .. } = p {
                cache.release(item);
            }
        }
        if self.pieces.is_empty() {
            self.text.clear();
            self.sent = 0;
        } else if let Some(Piece::Text { end, .. }) = self.pieces.back() {
            self.text.truncate(*end);
        }
        self.committed = self.text.len();
    }

    /// Gives back every reference (the connection is closing).
    pub fn clear(&mut self, cache: &mut Cache) {
        self.sent = 0;
        self.drop_unsent(cache);
    }

    /// Writes as much as the socket takes.  Returns the outcome and the
    /// number of bytes written.
    pub fn flush(&mut self, sock: &mut impl std::io::Write, cache: &mut Cache) -> (Flush, usize) {
        let mut total = 0;
        while !self.pieces.is_empty() {
            // A reply of a few pieces gathers into a small array: filling
            // the full batch would cost more than the rest of the call.
            let wrote = if self.pieces.len() <= SMALL_BATCH / 2 {
                let mut iov = [IoSlice::new(&[]); SMALL_BATCH];
                let n = self.gather(&mut iov, cache);
                writev(sock, &iov[..n])
            } else {
                let mut iov = [IoSlice::new(&[]); IOV_BATCH];
                let n = self.gather(&mut iov, cache);
                writev(sock, &iov[..n])
            };
            match wrote {
                WriteResult::Wrote(0) => return (Flush::Failed, total),
                WriteResult::Wrote(n) => {
                    total += n;
                    self.consume(n, cache);
                }
                WriteResult::WouldBlock => return (Flush::Blocked, total),
                WriteResult::Error => return (Flush::Failed, total),
            }
        }
        self.text.clear();
        self.committed = 0;
        self.sent = 0;
        (Flush::Done, total)
    }

    /// Fills `iov` with the unsent bytes, from the front; returns how many
    /// slices it filled.
    fn gather<'a>(&'a self, iov: &mut [IoSlice<'a>], cache: &'a Cache) -> usize {
        let mut n = 0;
        let mut skip = self.sent;
        for p in &self.pieces {
            match p {
                Piece::Text { start, end } => {
                    iov[n] = IoSlice::new(&self.text[start + skip..*end]);
                    n += 1;
                    skip = 0;
                }
                Piece::Item { item, len } => {
                    let mut off = skip;
                    skip = 0;
                    while off < *len {
                        let seg = cache.value(item, off);
                        let seg = &seg[..seg.len().min(len - off)];
                        iov[n] = IoSlice::new(seg);
                        n += 1;
                        off += seg.len();
                        if n == iov.len() {
                            return n;
                        }
                    }
                }
            }
            if n == iov.len() {
                break;
            }
        }
        n
    }

    fn consume(&mut self, mut n: usize, cache: &mut Cache) {
        self.pending -= n;
        while n > 0 {
            let front = self.pieces.front().expect("bytes written beyond the queue");
            let left = front.len() - self.sent;
            if n < left {
                self.sent += n;
                return;
            }
            n -= left;
            self.sent = 0;
            if let Some(Piece::Item { item, .. }) = self.pieces.pop_front() {
                cache.release(item);
            }
        }
    }
}

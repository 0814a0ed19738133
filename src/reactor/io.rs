//! Socket reads and gathered writes with errno folded into enums.

use std::io::{ErrorKind, IoSlice, Read, Write};

/// Outcome of one read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadResult {
    Data(usize),
    WouldBlock,
    Eof,
    Error,
}

/// Outcome of one write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteResult {
    Wrote(usize),
    WouldBlock,
    Error,
}

/// Reads once into `buf`, retrying interrupted calls.
pub fn read(src: &mut impl Read, buf: &mut [u8]) -> ReadResult {
    loop {
        match src.read(buf) {
            Ok(0) if !buf.is_empty() => return ReadResult::Eof,
            Ok(n) => return ReadResult::Data(n),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return ReadResult::WouldBlock,
            Err(_) => return ReadResult::Error,
        }
    }
}

/// Writes the slices with one `writev`, retrying interrupted calls.
pub fn writev(dst: &mut impl Write, bufs: &[IoSlice<'_>]) -> WriteResult {
    loop {
        match dst.write_vectored(bufs) {
            Ok(n) => return WriteResult::Wrote(n),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return WriteResult::WouldBlock,
            Err(_) => return WriteResult::Error,
        }
    }
}

/// Copies what fits of `src[*pos..]` into `buf` and advances `pos`: reads
/// from bytes a backend already holds (a datagram, completed receives).
pub fn take_buffered(src: &[u8], pos: &mut usize, buf: &mut [u8]) -> usize {
    let left = &src[*pos..];
    let n = left.len().min(buf.len());
    buf[..n].copy_from_slice(&left[..n]);
    *pos += n;
    n
}

//! The io_uring backend: completions instead of readiness.
//!
//! Every connection keeps one receive in flight into a buffer of its own;
//! replies a connection queues are handed to the kernel as one send per
//! connection per loop turn.  All submissions of a turn go to the kernel
//! in the same `io_uring_enter` that waits for the next completions, so a
//! turn that serves fifty connections costs one system call instead of a
//! hundred reads and writes.  Listening and UDP sockets are watched with
//! multishot polls and served by their ordinary non-blocking calls.
//!
//! Connection code sees a [`UringIo`] through `Read`/`Write`: reads take
//! from what completed receives delivered, writes append to the next send.
//! Knows nothing of memcached.

use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use io_uring::{cqueue, opcode, squeue, types, IoUring};

/// Bytes one receive may deliver.
const RECV_BUF: usize = 16 * 1024;
/// Queued reply bytes above which writes report `WouldBlock`, so a client
/// that does not read cannot make the server buffer without bound.
const SEND_HIGH_WATER: usize = 1024 * 1024;

/// User data of cancel requests, whose completions nobody needs.
const CANCEL_USER_DATA: u64 = u64::MAX;

/// What a completion was for (the low two bits of its user data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Recv,
    Send,
    /// A multishot poll on a listening socket.
    PollListener,
    /// A multishot poll on a UDP socket.
    PollUdp,
}

impl Op {
    fn code(self) -> u64 {
        match self {
            Op::Recv => 0,
            Op::Send => 1,
            Op::PollListener => 2,
            Op::PollUdp => 3,
        }
    }

    fn from_code(c: u64) -> Op {
        match c & 3 {
            0 => Op::Recv,
            1 => Op::Send,
            2 => Op::PollListener,
            _ => Op::PollUdp,
        }
    }
}

/// One completion: which source, which operation, the result (bytes, or
/// a negative errno) and whether a multishot operation stays armed.
#[derive(Debug, Clone, Copy)]
pub struct Completion {
    pub index: usize,
    pub op: Op,
    pub result: i32,
    pub more: bool,
}

/// The ring.
pub struct Ring {
    ring: IoUring,
    done: Vec<Completion>,
}

impl Ring {
    /// A ring, or the kernel's refusal (old kernel, seccomp, sysctl).
    pub fn new(entries: u32) -> io::Result<Ring> {
        let ring = IoUring::new(entries)?;
        if !ring.params().is_feature_ext_arg() {
            return Err(io::Error::other("kernel lacks IORING_FEAT_EXT_ARG"));
        }
        Ok(Ring {
            ring,
            done: Vec::new(),
        })
    }

    fn push(&mut self, entry: squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: every entry built in this module points at memory
            // that outlives the operation: `UringIo` buffers are owned by
            // the connection, which the server keeps until no operation
            // of it is in flight (see `UringIo::in_flight`); polls carry
            // no buffer.
            let pushed = unsafe { self.ring.submission().push(&entry) };
            if pushed.is_ok() {
                return Ok(());
            }
            // Submission queue full: hand what is queued to the kernel.
            self.ring.submit()?;
        }
    }

    /// Watches a socket for readability until cancelled (multishot).
    pub fn poll(&mut self, fd: RawFd, index: usize, op: Op) -> io::Result<()> {
        let e = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data((index as u64) << 2 | op.code());
        self.push(e)
    }

    /// Cancels a multishot poll; its last completion follows.
    pub fn cancel_poll(&mut self, index: usize, op: Op) -> io::Result<()> {
        let e = opcode::AsyncCancel::new((index as u64) << 2 | op.code())
            .build()
            .user_data(CANCEL_USER_DATA);
        self.push(e)
    }

    /// Starts what `io` needs: a receive if none is in flight, a send if
    /// replies wait and none is in flight.
    pub fn arm(&mut self, io: &mut UringIo, index: usize) -> io::Result<()> {
        if !io.recv_busy && !io.eof && !io.failed && !io.closing {
            io.recv_busy = true;
            let e = opcode::Recv::new(
                types::Fd(io.fd()),
                io.recv_buf.as_mut_ptr(),
                io.recv_buf.len() as u32,
            )
            .build()
            .user_data((index as u64) << 2 | Op::Recv.code());
            self.push(e)?;
        }
        if !io.send_busy && !io.failed {
            if io.sending.len() == io.sent && !io.out.is_empty() {
                std::mem::swap(&mut io.sending, &mut io.out);
                io.out.clear();
                io.sent = 0;
            }
            if io.sent < io.sending.len() {
                io.send_busy = true;
                let rest = &io.sending[io.sent..];
                let e = opcode::Send::new(types::Fd(io.fd()), rest.as_ptr(), rest.len() as u32)
                    .flags(libc::MSG_NOSIGNAL)
                    .build()
                    .user_data((index as u64) << 2 | Op::Send.code());
                self.push(e)?;
            }
        }
        Ok(())
    }

    /// Submits everything queued and waits up to `timeout` for at least one
    /// completion; returns the completions.
    pub fn wait(&mut self, timeout: Duration) -> io::Result<&[Completion]> {
        let ts = types::Timespec::new()
            .sec(timeout.as_secs())
            .nsec(timeout.subsec_nanos());
        let args = types::SubmitArgs::new().timespec(&ts);
        match self.ring.submitter().submit_with_args(1, &args) {
            Ok(_) => {}
            Err(e)
                if e.raw_os_error() == Some(libc::ETIME)
                    || e.kind() == io::ErrorKind::Interrupted
                    || e.raw_os_error() == Some(libc::EBUSY) => {}
            Err(e) => return Err(e),
        }
        self.done.clear();
        for cqe in self.ring.completion() {
            let ud = cqe.user_data();
            if ud == CANCEL_USER_DATA {
                continue;
            }
            self.done.push(Completion {
                index: (ud >> 2) as usize,
                op: Op::from_code(ud),
                result: cqe.result(),
                more: cqueue::more(cqe.flags()),
            });
        }
        Ok(&self.done)
    }
}

/// A connected socket (TCP or unix) served through the ring.
#[derive(Debug)]
pub struct UringIo {
    /// Owns the descriptor; also answers address queries.
    pub socket: Socket,
    recv_buf: Box<[u8]>,
    recv_busy: bool,
    /// Received bytes the connection has not read yet.
    input: Vec<u8>,
    pos: usize,
    /// Reply bytes written since the last send was started.
    out: Vec<u8>,
    /// The bytes of the send in flight (or partly sent), untouched until
    /// it completes.
    sending: Vec<u8>,
    sent: usize,
    send_busy: bool,
    eof: bool,
    failed: bool,
    /// The connection is gone; the slot waits for its operations.
    pub closing: bool,
    shut_down: bool,
}

/// The socket behind a [`UringIo`].
#[derive(Debug)]
pub enum Socket {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl UringIo {
    pub fn new(socket: Socket) -> UringIo {
        UringIo {
            socket,
            recv_buf: vec![0; RECV_BUF].into_boxed_slice(),
            recv_busy: false,
            input: Vec::new(),
            pos: 0,
            out: Vec::new(),
            sending: Vec::new(),
            sent: 0,
            send_busy: false,
            eof: false,
            failed: false,
            closing: false,
            shut_down: false,
        }
    }

    pub fn fd(&self) -> RawFd {
        match &self.socket {
            Socket::Tcp(s) => s.as_raw_fd(),
            Socket::Unix(s) => s.as_raw_fd(),
        }
    }

    /// Whether the kernel still holds one of this connection's buffers.
    pub fn in_flight(&self) -> bool {
        self.recv_busy || self.send_busy
    }

    /// Whether queued replies wait to be sent.
    pub fn has_output(&self) -> bool {
        !self.out.is_empty() || self.sent < self.sending.len()
    }

    /// Takes a completion of this connection's operations.
    pub fn complete(&mut self, op: Op, result: i32) {
        match op {
            Op::Recv => {
                self.recv_busy = false;
                if result > 0 {
                    if self.pos == self.input.len() {
                        self.input.clear();
                        self.pos = 0;
                    }
                    self.input
                        .extend_from_slice(&self.recv_buf[..result as usize]);
                } else if result == 0 {
                    self.eof = true;
                } else if result != -libc::EAGAIN && result != -libc::EINTR {
                    self.failed = true;
                }
            }
            Op::Send => {
                self.send_busy = false;
                if result > 0 {
                    self.sent += result as usize;
                } else if result != -libc::EAGAIN && result != -libc::EINTR {
                    self.failed = true;
                }
            }
            Op::PollListener | Op::PollUdp => {}
        }
    }

    /// Starts closing: replies already queued are still sent (a `quit`
    /// answers first); then [`UringIo::shut`] ends the connection.
    pub fn close(&mut self) {
        self.closing = true;
    }

    /// Shuts the socket down so that operations in flight complete soon;
    /// the slot is freed once they have.
    pub fn shut(&mut self) {
        if !self.shut_down {
            self.shut_down = true;
            // SAFETY: shutdown(2) on a descriptor this value owns.
            unsafe {
                libc::shutdown(self.fd(), libc::SHUT_RDWR);
            }
        }
    }

    /// Whether the send side failed (nothing more can be sent).
    pub fn failed(&self) -> bool {
        self.failed
    }
}

impl Read for UringIo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = &self.input[self.pos..];
        if !left.is_empty() {
            let n = left.len().min(buf.len());
            buf[..n].copy_from_slice(&left[..n]);
            self.pos += n;
            return Ok(n);
        }
        if self.failed {
            return Err(io::Error::from(io::ErrorKind::ConnectionReset));
        }
        if self.eof {
            return Ok(0);
        }
        Err(io::ErrorKind::WouldBlock.into())
    }
}

impl Write for UringIo {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if self.failed {
            return Err(io::Error::from(io::ErrorKind::BrokenPipe));
        }
        if self.out.len() + (self.sending.len() - self.sent) >= SEND_HIGH_WATER {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let mut n = 0;
        for b in bufs {
            self.out.extend_from_slice(b);
            n += b.len();
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_receives_delivered_then_would_block() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut io = UringIo::new(Socket::Unix(a));
        io.recv_buf[..5].copy_from_slice(b"hello");
        io.recv_busy = true;
        io.complete(Op::Recv, 5);
        let mut buf = [0u8; 3];
        assert_eq!(io.read(&mut buf).unwrap(), 3);
        assert_eq!(io.read(&mut buf).unwrap(), 2);
        assert_eq!(
            io.read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        io.complete(Op::Recv, 0);
        assert_eq!(io.read(&mut buf).unwrap(), 0);
    }

    #[test]
    fn a_ring_echoes_through_a_socket_pair() {
        let Ok(mut ring) = Ring::new(8) else {
            return; // no io_uring here: nothing to check
        };
        let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut io = UringIo::new(Socket::Unix(a));
        b.write_all(b"ping").unwrap();
        io.write_all(b"pong").unwrap();
        ring.arm(&mut io, 7).unwrap();
        let mut got_recv = false;
        let mut got_send = false;
        for _ in 0..10 {
            let done: Vec<Completion> = ring.wait(Duration::from_millis(200)).unwrap().to_vec();
            for c in done {
                assert_eq!(c.index, 7);
                io.complete(c.op, c.result);
                got_recv |= c.op == Op::Recv;
                got_send |= c.op == Op::Send;
            }
            if got_recv && got_send {
                break;
            }
        }
        assert!(got_recv && got_send);
        let mut buf = [0u8; 4];
        io.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");
        b.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"pong");
        assert!(!io.in_flight());
    }
}

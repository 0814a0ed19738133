//! The io_uring backend: completions instead of readiness.
//!
//! Every connection keeps one multishot receive armed.  The kernel fills
//! buffers it takes from one shared pool (a provided-buffer ring), so an
//! idle connection holds no receive buffer and a busy one is not re-armed
//! per request.  Connection code reads a filled buffer in place while it
//! is served; only bytes it leaves unread (half a command, or input held
//! back while its replies cannot go out) are copied aside before the
//! buffer returns to the pool.  Replies a connection queues are handed to
//! the kernel as one send per connection per loop turn.  All submissions
//! of a turn go to the kernel in the same `io_uring_enter` that waits for
//! the next completions, so a turn that serves fifty connections costs one
//! system call instead of a hundred reads and writes.  Each listening
//! socket keeps one multishot accept armed, so connections arrive as
//! completions carrying their new descriptors; UDP sockets are watched
//! with multishot polls and served by their ordinary non-blocking calls.
//!
//! Connection code sees a [`UringIo`] through `Read`/`Write`.  Knows
//! nothing of memcached.

use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use super::io::take_buffered;

/// Bytes of one pooled receive buffer.
const POOL_BUF: usize = 16 * 1024;
/// Buffers in the pool (a power of two, as the kernel requires).  Each is
/// back in the pool as soon as the completion that filled it is served,
/// so the pool runs dry only when one wait brings more completions than
/// this; the receives that found it dry are re-armed in the next turn.
const POOL_BUFS: u16 = 512;
/// The pool's buffer group id.
const POOL_GROUP: u16 = 0;
/// Unread input above which a connection's receive is paused, so a client
/// that sends without reading its replies is held back by TCP instead of
/// being buffered here without bound.
const INPUT_HIGH_WATER: usize = 64 * 1024;
/// Queued reply bytes above which writes report `WouldBlock`, so a client
/// that does not read cannot make the server buffer without bound.
const SEND_HIGH_WATER: usize = 1024 * 1024;

/// Replies at least this long are written to the socket directly when
/// nothing is queued ahead of them, instead of being copied for a send.
const DIRECT_SEND_MIN: usize = 16 * 1024;

/// How long a turn may keep operations queued before submitting them
/// early (see [`Ring::submit_if_late`]).
const SUBMIT_DELAY: Duration = Duration::from_micros(200);
/// Completions served between two looks at the clock for `SUBMIT_DELAY`.
const LATE_CHECK_EVERY: u32 = 8;

/// User data of cancel requests, whose completions nobody needs.
const CANCEL_USER_DATA: u64 = u64::MAX;

/// What a completion was for (the low two bits of its user data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Recv,
    Send,
    /// A multishot accept on a listening socket.
    Accept,
    /// A multishot poll on a UDP socket.
    PollUdp,
}

impl Op {
    fn code(self) -> u64 {
        match self {
            Op::Recv => 0,
            Op::Send => 1,
            Op::Accept => 2,
            Op::PollUdp => 3,
        }
    }

    fn from_code(c: u64) -> Op {
        match c & 3 {
            0 => Op::Recv,
            1 => Op::Send,
            2 => Op::Accept,
            _ => Op::PollUdp,
        }
    }

    fn user_data(self, index: usize) -> u64 {
        (index as u64) << 2 | self.code()
    }
}

/// One completion: which source, which operation, the result (bytes, or
/// a negative errno), whether a multishot operation stays armed, and the
/// pooled buffer a receive filled.
#[derive(Debug, Clone, Copy)]
pub struct Completion {
    pub index: usize,
    pub op: Op,
    pub result: i32,
    pub more: bool,
    pub buf: Option<u16>,
}

/// An anonymous private mapping of `bytes` (page aligned, zeroed).
fn map(bytes: usize) -> io::Result<*mut u8> {
    // SAFETY: a fresh anonymous mapping touches no existing memory.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(p.cast())
}

/// The receive buffers the kernel picks from, and the ring through which
/// they are handed back.
struct BufPool {
    entries: *mut types::BufRingEntry,
    bufs: *mut u8,
    /// Our tail: entries before it are the kernel's to take.
    tail: u16,
}

const POOL_RING_BYTES: usize = POOL_BUFS as usize * std::mem::size_of::<types::BufRingEntry>();
const POOL_BYTES: usize = POOL_BUFS as usize * POOL_BUF;

impl BufPool {
    /// Maps the pool and registers it with `ring`, every buffer free.
    fn new(ring: &IoUring) -> io::Result<BufPool> {
        let mut pool = BufPool {
            entries: map(POOL_RING_BYTES)?.cast(),
            bufs: std::ptr::null_mut(),
            tail: 0,
        };
        pool.bufs = map(POOL_BYTES)?;
        // SAFETY: `entries` is page aligned and holds POOL_BUFS entries; it
        // stays mapped until the pool is dropped, after the ring (see the
        // field order of `Ring`).
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                pool.entries as u64,
                POOL_BUFS,
                POOL_GROUP,
                0,
            )?;
        }
        for bid in 0..POOL_BUFS {
            pool.give(bid);
        }
        pool.publish();
        Ok(pool)
    }

    /// Queues buffer `bid` for the kernel (seen once published).
    fn give(&mut self, bid: u16) {
        let slot = (self.tail & (POOL_BUFS - 1)) as usize;
        // SAFETY: `slot` < POOL_BUFS lies inside the entry mapping; the
        // kernel reads only entries before the published tail, and this
        // one is at or past it.  The tail field shares the first entry's
        // memory but none of the fields set here.
        let entry = unsafe { &mut *self.entries.add(slot) };
        entry.set_addr(self.bufs as u64 + u64::from(bid) * POOL_BUF as u64);
        entry.set_len(POOL_BUF as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Lets the kernel see the buffers given since the last publish.
    fn publish(&self) {
        // SAFETY: the tail lies inside the first entry, which is mapped and
        // aligned for a u16; the kernel reads it concurrently, so it is
        // stored atomically, with release ordering so that the entries
        // written before are visible first.
        unsafe {
            let tail = types::BufRingEntry::tail(self.entries) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }
}

impl Drop for BufPool {
    fn drop(&mut self) {
        // SAFETY: both mappings were made by `map` with these sizes, and
        // the kernel no longer uses them: the ring is gone.
        unsafe {
            libc::munmap(self.entries.cast(), POOL_RING_BYTES);
            if !self.bufs.is_null() {
                libc::munmap(self.bufs.cast(), POOL_BYTES);
            }
        }
    }
}

/// A pooled buffer a receive filled, lent to the connection it belongs to
/// while that connection is served.
#[derive(Debug)]
struct Loan {
    data: *const u8,
    len: usize,
    pos: usize,
}

impl Loan {
    fn bytes(&self) -> &[u8] {
        // SAFETY: a loan is made only by `Ring::lend` over a filled pool
        // buffer, which the kernel does not reuse until `Ring::give_back`
        // has ended the loan; the pool outlives every connection's use of
        // it (connections are served only while the ring exists).
        unsafe { std::slice::from_raw_parts(self.data, self.len) }
    }
}

/// The ring.  `ring` is declared before `pool` so that it is dropped
/// first: the kernel lets go of the pool before it is unmapped.
pub struct Ring {
    ring: IoUring,
    pool: BufPool,
    done: Vec<Completion>,
    /// When the oldest operation not yet submitted was first seen queued.
    first_queued: Option<std::time::Instant>,
    /// Calls of `submit_if_late` since it last read the clock.
    unchecked: u32,
    /// Descriptors of accepted connections, in completion order, until
    /// the server takes them ([`Ring::take_accepted`]).
    accepted: std::collections::VecDeque<OwnedFd>,
}

impl Ring {
    /// A ring, or the kernel's refusal (old kernel, seccomp, sysctl).
    pub fn new(entries: u32) -> io::Result<Ring> {
        // Task work (finishing a receive whose data arrived) runs only
        // when this thread enters the ring to wait, not as an interrupt
        // in the middle of serving; older kernels get a plain ring.
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(entries)
            .or_else(|_| IoUring::builder().setup_coop_taskrun().build(entries))
            .or_else(|_| IoUring::new(entries))?;
        if !ring.params().is_feature_ext_arg() {
            return Err(io::Error::other("kernel lacks IORING_FEAT_EXT_ARG"));
        }
        let pool = BufPool::new(&ring)?;
        Ok(Ring {
            ring,
            pool,
            done: Vec::new(),
            first_queued: None,
            unchecked: 0,
            accepted: std::collections::VecDeque::new(),
        })
    }

    fn push(&mut self, entry: squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: every entry built in this module points at memory
            // that outlives the operation: send buffers are owned by the
            // connection, which the server keeps until no operation of it
            // is in flight (see `UringIo::in_flight`); receives fill pool
            // buffers; polls, accepts and cancels carry no buffer.
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
            .user_data(op.user_data(index));
        self.push(e)
    }

    /// Accepts connections on the listening socket `fd` until cancelled
    /// (or an error ends it): each completion's result is a new
    /// non-blocking descriptor, or a negative errno.
    pub fn accept_multi(&mut self, fd: RawFd, index: usize) -> io::Result<()> {
        let e = opcode::AcceptMulti::new(types::Fd(fd))
            .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
            .build()
            .user_data(Op::Accept.user_data(index));
        self.push(e)
    }

    /// Cancels a multishot operation; its last completion follows.
    pub fn cancel(&mut self, index: usize, op: Op) -> io::Result<()> {
        let e = opcode::AsyncCancel::new(op.user_data(index))
            .build()
            .user_data(CANCEL_USER_DATA);
        self.push(e)
    }

    /// Starts what `io` needs: its multishot receive unless armed or
    /// paused (or pauses it when unread input piles up), and a send if
    /// replies wait and none is in flight.
    pub fn arm(&mut self, io: &mut UringIo, index: usize) -> io::Result<()> {
        let backlog = io.unread() >= INPUT_HIGH_WATER;
        if !io.recv_armed && !io.eof && !io.failed && !io.closing && !backlog {
            io.recv_armed = true;
            io.recv_cancelling = false;
            let e = opcode::RecvMulti::new(types::Fd(io.fd()), POOL_GROUP)
                .build()
                .user_data(Op::Recv.user_data(index));
            self.push(e)?;
        } else if io.recv_armed && !io.recv_cancelling && backlog {
            io.recv_cancelling = true;
            let e = opcode::AsyncCancel::new(Op::Recv.user_data(index))
                .build()
                .user_data(CANCEL_USER_DATA);
            self.push(e)?;
        }
        let fd = io.fd();
        if let Some(rest) = io.start_send() {
            let e = opcode::Send::new(types::Fd(fd), rest.as_ptr(), rest.len() as u32)
                .flags(libc::MSG_NOSIGNAL)
                .build()
                .user_data(Op::Send.user_data(index));
            self.push(e)?;
        }
        Ok(())
    }

    /// Lends the pool buffer a receive completion filled to `io`, which
    /// reads it in place until [`Ring::give_back`].
    pub fn lend(&self, io: &mut UringIo, c: &Completion) {
        if let (Some(bid), true) = (c.buf, c.result > 0) {
            let len = (c.result as usize).min(POOL_BUF);
            io.settle();
            io.lent = Some(Loan {
                // bid < POOL_BUFS: the offset stays inside the mapping.
                data: self.pool.bufs.wrapping_add(usize::from(bid) * POOL_BUF),
                len,
                pos: 0,
            });
        }
    }

    /// Returns a receive completion's pool buffer, after copying aside what
    /// `io` (the connection it was lent to, if it still exists) left
    /// unread.
    pub fn give_back(&mut self, c: &Completion, io: Option<&mut UringIo>) {
        if let Some(io) = io {
            io.settle();
        }
        if let Some(bid) = c.buf {
            self.pool.give(bid);
        }
    }

    /// Hands queued operations to the kernel now, without waiting, if the
    /// oldest has waited longer than [`SUBMIT_DELAY`]: a turn that serves
    /// many costly requests then does not hold back the replies of the
    /// first ones until its end.  Called after each completion served.
    /// Reading the clock every time cost more than serving a small
    /// request's completion: it is read when an operation is first seen
    /// queued and then after every [`LATE_CHECK_EVERY`]th completion, so
    /// the delay is kept to within that many completions.
    pub fn submit_if_late(&mut self) -> io::Result<()> {
        if self.ring.submission().is_empty() {
            self.first_queued = None;
            return Ok(());
        }
        let Some(first) = self.first_queued else {
            self.first_queued = Some(std::time::Instant::now());
            self.unchecked = 0;
            return Ok(());
        };
        self.unchecked += 1;
        if self.unchecked < LATE_CHECK_EVERY {
            return Ok(());
        }
        self.unchecked = 0;
        if first.elapsed() >= SUBMIT_DELAY {
            self.submit()?;
        }
        Ok(())
    }

    /// Hands everything queued to the kernel now.
    pub fn submit(&mut self) -> io::Result<()> {
        self.pool.publish();
        self.ring.submit()?;
        self.first_queued = None;
        Ok(())
    }

    /// The descriptor of the next connection accepted (one per accept
    /// completion with a result of 0 or more, in order).
    pub fn take_accepted(&mut self) -> Option<OwnedFd> {
        self.accepted.pop_front()
    }

    /// Submits everything queued and waits up to `timeout` for at least one
    /// completion; returns the completions (hand the vector back with
    /// [`Ring::recycle`] to keep its allocation).
    pub fn wait(&mut self, timeout: Duration) -> io::Result<Vec<Completion>> {
        self.pool.publish();
        self.first_queued = None;
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
        let mut done = std::mem::take(&mut self.done);
        done.clear();
        for cqe in self.ring.completion() {
            let ud = cqe.user_data();
            if ud == CANCEL_USER_DATA {
                continue;
            }
            if Op::from_code(ud) == Op::Accept && cqe.result() >= 0 {
                // SAFETY: a successful accept's result is a descriptor the
                // kernel has just created for this process and handed to
                // no one else; from here `accepted` owns it.
                let fd = unsafe { OwnedFd::from_raw_fd(cqe.result()) };
                self.accepted.push_back(fd);
            }
            done.push(Completion {
                index: (ud >> 2) as usize,
                op: Op::from_code(ud),
                result: cqe.result(),
                more: cqueue::more(cqe.flags()),
                buf: cqueue::buffer_select(cqe.flags()),
            });
        }
        Ok(done)
    }

    /// Takes back the vector [`Ring::wait`] returned.
    pub fn recycle(&mut self, done: Vec<Completion>) {
        self.done = done;
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // The kernel picks no pool buffer from here on, whatever it still
        // has to tear down.
        let _ = self.ring.submitter().unregister_buf_ring(POOL_GROUP);
    }
}

/// A connected socket (TCP or unix) served through the ring.
#[derive(Debug)]
pub struct UringIo {
    /// Owns the descriptor; also answers address queries.
    pub socket: Socket,
    /// The multishot receive is armed (its last completion is not in).
    recv_armed: bool,
    /// A cancel of the receive was sent (input piled up).
    recv_cancelling: bool,
    /// Received bytes set aside because connection code left them unread;
    /// they come before any lent buffer.
    input: Vec<u8>,
    pos: usize,
    /// The pool buffer being served, if any.
    lent: Option<Loan>,
    /// Reply bytes written since the last send was started.
    out: Vec<u8>,
    /// The bytes of the send in flight (or partly sent), untouched until
    /// it completes.
    sending: Vec<u8>,
    sent: usize,
    send_busy: bool,
    /// A write was refused (too much queued): the connection waits for a
    /// send to complete before it goes on.
    write_waiting: bool,
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
            recv_armed: false,
            recv_cancelling: false,
            input: Vec::new(),
            pos: 0,
            lent: None,
            out: Vec::new(),
            sending: Vec::new(),
            sent: 0,
            send_busy: false,
            write_waiting: false,
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

    /// Whether the kernel still has an operation of this connection.
    pub fn in_flight(&self) -> bool {
        self.recv_armed || self.send_busy
    }

    /// Whether queued replies wait to be sent.
    pub fn has_output(&self) -> bool {
        !self.out.is_empty() || self.sent < self.sending.len()
    }

    /// Received bytes connection code has not read yet.
    fn unread(&self) -> usize {
        let lent = self.lent.as_ref().map_or(0, |l| l.len - l.pos);
        self.input.len() - self.pos + lent
    }

    /// Ends a loan: its unread bytes are copied aside.
    fn settle(&mut self) {
        let Some(loan) = self.lent.take() else {
            return;
        };
        if self.pos == self.input.len() {
            self.input.clear();
            self.pos = 0;
        }
        self.input.extend_from_slice(&loan.bytes()[loan.pos..]);
    }

    /// The bytes of the next send, if one may start: none is in flight and
    /// replies wait.  They stay untouched until its completion; replies
    /// written meanwhile queue behind them.
    fn start_send(&mut self) -> Option<&[u8]> {
        if self.send_busy || self.failed {
            return None;
        }
        if self.sending.len() == self.sent && !self.out.is_empty() {
            std::mem::swap(&mut self.sending, &mut self.out);
            self.out.clear();
            self.sent = 0;
        }
        if self.sent == self.sending.len() {
            return None;
        }
        self.send_busy = true;
        Some(&self.sending[self.sent..])
    }

    /// Takes a completion of this connection's operations (the data of a
    /// receive arrives through [`Ring::lend`]).  Returns whether connection
    /// code must run: after a receive always; after a send only if it
    /// failed or a write was refused for want of room.  Otherwise a
    /// finished send changes nothing the connection waits for, and only
    /// the rest of its replies needs starting (see [`Ring::arm`]).
    pub fn complete(&mut self, op: Op, result: i32, more: bool) -> bool {
        match op {
            Op::Recv => {
                if !more {
                    self.recv_armed = false;
                    self.recv_cancelling = false;
                }
                if result == 0 {
                    self.eof = true;
                } else if result < 0
                    && result != -libc::ENOBUFS
                    && result != -libc::ECANCELED
                    && result != -libc::EINTR
                    && result != -libc::EAGAIN
                {
                    self.failed = true;
                }
                true
            }
            Op::Send => {
                self.send_busy = false;
                if result > 0 {
                    self.sent += result as usize;
                } else if result != -libc::EAGAIN && result != -libc::EINTR {
                    self.failed = true;
                }
                std::mem::take(&mut self.write_waiting) || self.failed
            }
            Op::Accept | Op::PollUdp => true,
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
        // Set-aside bytes, then the lent buffer, in one call: connection
        // code takes a read shorter than it offered to mean that nothing
        // is left until the next completion.
        let mut n = 0;
        if self.pos < self.input.len() {
            n = take_buffered(&self.input, &mut self.pos, buf);
        }
        if let Some(loan) = self.lent.as_mut() {
            if loan.pos < loan.len && n < buf.len() {
                let mut pos = loan.pos;
                n += take_buffered(loan.bytes(), &mut pos, &mut buf[n..]);
                loan.pos = pos;
            }
        }
        if n > 0 {
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
            self.write_waiting = true;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total >= DIRECT_SEND_MIN && !self.has_output() && !self.send_busy {
            // A large reply (a big value) goes to the socket straight from
            // where it lies, item memory included, as on epoll: copying
            // it into the send buffer would cost more than the system
            // call saves.  Only with nothing queued ahead of it, so bytes
            // keep their order.
            let direct = match &self.socket {
                Socket::Tcp(s) => (&*s).write_vectored(bufs),
                Socket::Unix(s) => (&*s).write_vectored(bufs),
            };
            match direct {
                Ok(n) if n > 0 => return Ok(n),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.failed = true;
                    return Err(e);
                }
            }
        }
        for b in bufs {
            self.out.extend_from_slice(b);
        }
        Ok(total)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (UringIo, std::os::unix::net::UnixStream) {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        (UringIo::new(Socket::Unix(a)), b)
    }

    /// Lends `bytes` to `io` as a receive completion would, `pos` of them
    /// already read.  The caller keeps `bytes` alive while lent.
    fn lend_bytes(io: &mut UringIo, bytes: &[u8], pos: usize) {
        io.lent = Some(Loan {
            data: bytes.as_ptr(),
            len: bytes.len(),
            pos,
        });
    }

    #[test]
    fn reads_set_aside_bytes_before_the_lent_buffer_then_would_block() {
        let (mut io, _b) = pair();
        let first = *b"get a\r\nge";
        lend_bytes(&mut io, &first, 0);
        let mut buf = [0u8; 7];
        assert_eq!(io.read(&mut buf).unwrap(), 7);
        assert_eq!(&buf, b"get a\r\n");
        // The connection stops reading; the rest is copied aside.
        io.settle();
        assert!(io.lent.is_none());
        assert_eq!(io.unread(), 2);
        let second = *b"t b\r\n";
        lend_bytes(&mut io, &second, 0);
        assert_eq!(io.unread(), 7);
        let mut got = Vec::new();
        let mut one = [0u8; 1];
        while let Ok(n) = io.read(&mut one) {
            got.extend_from_slice(&one[..n]);
        }
        assert_eq!(got, b"get b\r\n");
        assert_eq!(
            io.read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        io.settle();
        io.complete(Op::Recv, 0, false);
        assert_eq!(io.read(&mut buf).unwrap(), 0);
    }

    #[test]
    fn one_read_takes_set_aside_bytes_and_then_the_lent_buffer() {
        let (mut io, _b) = pair();
        let first = *b"get a\r\nge";
        lend_bytes(&mut io, &first, 7);
        io.settle();
        let second = *b"t b\r\n";
        lend_bytes(&mut io, &second, 0);
        // Connection code takes a short read to mean nothing is left, so
        // one read must not stop where the set-aside bytes end.
        let mut buf = [0u8; 16];
        assert_eq!(io.read(&mut buf).unwrap(), 7);
        assert_eq!(&buf[..7], b"get b\r\n");
        assert_eq!(
            io.read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    }

    #[test]
    fn large_replies_go_straight_to_the_socket_small_ones_wait_for_a_send() {
        let (mut io, mut b) = pair();
        let big = vec![b'v'; DIRECT_SEND_MIN];
        assert_eq!(io.write(&big).unwrap(), big.len());
        assert!(!io.has_output());
        let mut got = vec![0u8; big.len()];
        b.read_exact(&mut got).unwrap();
        assert_eq!(got, big);
        // Queued bytes keep their place: a large reply behind them waits.
        io.write_all(b"END\r\n").unwrap();
        io.write_all(&big).unwrap();
        assert_eq!(io.out.len(), 5 + big.len());
    }

    #[test]
    fn a_finished_send_wakes_the_connection_only_if_it_waits_for_room() {
        let (mut io, _b) = pair();
        // Receives always wake it.
        assert!(io.complete(Op::Recv, 5, true));
        // A send that finished with nothing refused: nothing to run.
        io.write_all(b"STORED\r\n").unwrap();
        assert!(io.start_send().is_some());
        assert!(!io.complete(Op::Send, 8, false));
        assert!(!io.has_output());
        // A write refused for want of room: the next finished send wakes
        // the connection, once.
        let chunk = [b'x'; 1024];
        let refused = loop {
            match io.write(&chunk) {
                Ok(n) => assert_eq!(n, chunk.len(), "taken whole or refused"),
                Err(e) => break e,
            }
        };
        assert_eq!(refused.kind(), io::ErrorKind::WouldBlock);
        assert!(io.start_send().is_some());
        assert!(io.complete(Op::Send, 4096, false));
        assert!(io.start_send().is_some());
        assert!(!io.complete(Op::Send, 4096, false));
        // A failed send wakes it to close.
        assert!(io.start_send().is_some());
        assert!(io.complete(Op::Send, -libc::EPIPE, false));
    }

    /// Serves completions the way the server does, without a connection
    /// reading anything: what arrives piles up as unread input.
    fn pump(ring: &mut Ring, io: &mut UringIo, rounds: usize) -> (bool, bool) {
        let (mut got_recv, mut got_send) = (false, false);
        for _ in 0..rounds {
            ring.arm(io, 7).unwrap();
            let done = ring.wait(Duration::from_millis(100)).unwrap();
            for c in &done {
                assert_eq!(c.index, 7);
                io.complete(c.op, c.result, c.more);
                ring.lend(io, c);
                ring.give_back(c, Some(io));
                got_recv |= c.op == Op::Recv;
                got_send |= c.op == Op::Send;
            }
            ring.recycle(done);
        }
        (got_recv, got_send)
    }

    #[test]
    fn a_ring_echoes_through_a_socket_pair() {
        let Ok(mut ring) = Ring::new(8) else {
            return; // no io_uring here: nothing to check
        };
        let (mut io, mut b) = pair();
        b.write_all(b"ping").unwrap();
        io.write_all(b"pong").unwrap();
        let (got_recv, got_send) = pump(&mut ring, &mut io, 3);
        assert!(got_recv && got_send);
        let mut buf = [0u8; 4];
        io.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");
        b.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"pong");
        // The multishot receive stays armed; EOF ends it.
        assert!(io.in_flight());
        drop(b);
        pump(&mut ring, &mut io, 3);
        assert!(!io.in_flight());
        assert_eq!(io.read(&mut buf).unwrap(), 0);
    }

    #[test]
    fn a_client_that_floods_is_paused_at_the_high_water_mark_and_resumed() {
        let Ok(mut ring) = Ring::new(8) else {
            return;
        };
        let (mut io, b) = pair();
        b.set_nonblocking(true).unwrap();
        let chunk = vec![b'x'; 4096];
        let mut written = 0;
        for _ in 0..20 {
            while let Ok(n) = (&b).write(&chunk) {
                written += n;
            }
            pump(&mut ring, &mut io, 1);
        }
        pump(&mut ring, &mut io, 3);
        // Nothing was read: the receive was cancelled once the backlog
        // passed the mark, and the rest waits in the socket.
        assert!(!io.recv_armed);
        assert!(io.unread() >= INPUT_HIGH_WATER);
        assert!(io.unread() < written);
        let mut sink = vec![0u8; written];
        let mut read = 0;
        while let Ok(n) = io.read(&mut sink[read..]) {
            read += n;
        }
        assert!(read >= INPUT_HIGH_WATER);
        // Drained: the next turn arms the receive again and more arrives.
        assert_eq!(io.unread(), 0);
        pump(&mut ring, &mut io, 2);
        assert!(io.unread() > 0);
        assert!(sink[..read].iter().all(|&x| x == b'x'));
    }
}

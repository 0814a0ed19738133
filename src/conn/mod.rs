//! One client connection: a state machine over its socket.
//!
//! ```text
//!            +------------------------------------------+
//!            v                                          |
//!   NewCommand --parse--> execute --(set ...)--> ReadValue --complete--+
//!       |  ^                  |                                        |
//!       |  |                  +--(too large / no memory)--> Swallow ---+
//!       |  +---- need more: flush replies, read, or wait ----+
//!       +--> Closing (quit after flush, EOF, junk, errors)
//! ```
//!
//! Every transition happens in [`Conn::drive`], one `match` on the state.
//! Replies are queued and flushed with one `writev` whenever the machine
//! needs more input, so a pipelined batch costs one write.  While replies
//! cannot be written the machine stops reading: a client that never reads
//! cannot make the server buffer without bound.  Each drive handles at most
//! `-R` commands; a connection with work left asks to be driven again after
//! the others had their turn.

mod admin;
mod binary;
mod commands;
mod meta;
pub mod out;
mod report;

pub use report::{conns as conns_report, ConnLine};

use crate::cache::{Cache, ItemRef};
use crate::clock::Clock;
use crate::config::Config;
use crate::proto::binary as bin_proto;
use crate::proto::text::{self, Parsed};
use crate::reactor::io::{read, ReadResult};
use crate::reactor::stream::Stream;
use crate::stats::Counters;
use out::{Flush, OutQueue};

/// Read buffer size (memcached's `READ_BUFFER_SIZE`).
const READ_BUFFER: usize = 16 * 1024;
/// A multi-get line may grow the read buffer up to this before the
/// connection is dropped (memcached has no bound at all).
const MAX_LINE: usize = 32 * 1024 * 1024;
/// Chunks a `metadump` walks per turn.
const DUMP_SLICE: usize = 2000;
/// Unsent reply bytes above which the machine writes before it parses on.
const OUT_HIGH_WATER: usize = 256 * 1024;

/// Where the state machine stands.
enum State {
    /// Parse the next command from the read buffer.
    NewCommand,
    /// Read a storage command's value into its item.
    ReadValue(PendingStore),
    /// Discard the value of a refused storage command.
    Swallow { left: usize },
    /// Stream `lru_crawler metadump` output.
    Dump(crate::cache::CrawlTarget),
    /// Close once the connection is driven again (or now).
    Closing,
}

/// A storage command waiting for its value bytes.
struct PendingStore {
    item: ItemRef,
    /// Value bytes received so far (of `wire`).
    got: usize,
    /// Bytes that come from the client: the text protocol sends the
    /// `\r\n`, the binary protocol does not.
    wire: usize,
    mode: crate::cache::StoreMode,
    cas: u64,
    reply: StoreReply,
}

/// How a finished store answers.
enum StoreReply {
    Text { noreply: bool },
    Binary(binary::BinTarget),
    Meta(meta::MetaStore),
}

/// The protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Chosen by the first byte received (`-B auto`).
    Negotiating,
    Ascii,
    Binary,
}

/// What one parse-and-execute step of `NewCommand` came to.
enum Step {
    NeedMore,
    Close,
    Ran(commands::After, usize),
}

/// What the server should do with a connection after driving it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Wait for readiness.
    Wait,
    /// Work is left but the request budget is spent: drive again soon.
    Yield,
    /// Close the connection.
    Close,
    /// The client asked for `stats conns`: the server queues the reply with
    /// [`Conn::queue_reply`] and drives the connection again.
    StatsConns,
}

/// How the `shutdown` command asked the server to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// `shutdown`: as on SIGINT.
    Normal,
    /// `shutdown graceful`: as on SIGUSR1.
    Graceful,
}

/// Server-level facts a connection may report (`stats`).
#[derive(Debug, Clone, Default)]
pub struct ServerInfo {
    pub curr_connections: u64,
    pub connection_structures: u64,
    pub reserved_fds: u64,
    pub accepting: bool,
    pub time_in_listen_disabled_us: u64,
}

/// Everything a connection works with besides its own socket.
pub struct Ctx<'a> {
    pub cache: &'a mut Cache,
    pub counters: &'a mut Counters,
    pub clock: &'a Clock,
    pub cfg: &'a mut Config,
    pub server: &'a ServerInfo,
    /// Set by `shutdown` (with `-A`).
    pub shutdown: &'a mut Option<Shutdown>,
    /// Per-prefix counters of `stats detail`.
    pub detail: &'a mut crate::stats::PrefixStats,
    /// The connection's descriptor while `-vv` traces commands.
    pub trace: Option<i32>,
}

/// One client connection.
pub struct Conn {
    pub stream: Stream,
    /// The socket's descriptor, as `stats conns` and `-vv` name it.
    pub fd: i32,
    state: State,
    rbuf: Vec<u8>,
    rstart: usize,
    rend: usize,
    out: OutQueue,
    close_after_write: bool,
    /// Relative time of the last command, for `idle_timeout`.
    pub last_cmd_time: u32,
    /// Whether the protocol was chosen (on the first bytes received).
    negotiated: bool,
    protocol: Protocol,
    /// The last read returned less than it was offered: the socket had
    /// nothing more queued, so the next read would only say EAGAIN.  The
    /// kernel signals data that arrives later with a new edge, so the
    /// connection waits for it instead of paying for that empty read.
    drained: bool,
    /// The peer hung up: read until EOF, whatever `drained` says.
    hangup: bool,
    /// The protocol the listener gave (`-B`), restored per datagram.
    configured: Protocol,
    bin: binary::BinState,
}

impl Conn {
    pub fn new(stream: Stream, now: u32, protocol: Protocol) -> Conn {
        Conn {
            fd: stream.fd(),
            stream,
            state: State::NewCommand,
            rbuf: Vec::new(),
            rstart: 0,
            rend: 0,
            out: OutQueue::default(),
            close_after_write: false,
            last_cmd_time: now,
            negotiated: false,
            protocol,
            drained: false,
            hangup: false,
            configured: protocol,
            bin: binary::BinState::default(),
        }
    }

    /// Gives back every item reference the connection holds.
    pub fn release(&mut self, cache: &mut Cache) {
        self.out.clear(cache);
        if let State::ReadValue(p) = std::mem::replace(&mut self.state, State::Closing) {
            cache.release(p.item);
        }
    }

    /// Queues bytes the server rendered for this connection.
    pub fn queue_reply(&mut self, bytes: &[u8]) {
        self.out.text().extend_from_slice(bytes);
        self.out.commit();
    }

    /// memcached's name for the state (`stats conns`); `busy` is the
    /// connection asking.
    pub fn state_name(&self, busy: bool) -> &'static str {
        match self.state {
            _ if busy => "conn_parse_cmd",
            State::NewCommand if !self.out.is_empty() => "conn_mwrite",
            // memcached shows a connection that never sent anything as
            // about to parse, and one waiting for more input as reading.
            State::NewCommand if !self.negotiated => "conn_new_cmd",
            State::NewCommand => "conn_read",
            State::ReadValue(_) => "conn_nread",
            State::Swallow { .. } => "conn_swallow",
            State::Dump(_) => "conn_watch",
            State::Closing => "conn_closing",
        }
    }

    /// New input was signalled (a readable edge, a completed receive): an
    /// earlier short read no longer means the socket is empty.  After a
    /// hang-up no further edge comes, so the connection reads until EOF.
    pub fn input_arrived(&mut self, hangup: bool) {
        self.drained = false;
        self.hangup |= hangup;
    }

    /// Forgets what a datagram left unfinished: UDP requests must fit one
    /// datagram, so a partial command or value is dropped.  memcached
    /// negotiates the protocol of each datagram anew.
    pub fn end_datagram(&mut self, cache: &mut Cache) {
        self.release(cache);
        self.negotiated = false;
        self.protocol = self.configured;
        self.state = State::NewCommand;
        self.rstart = 0;
        self.rend = 0;
        self.close_after_write = false;
    }

    /// Whether the connection is parked between commands with nothing
    /// buffered (idle-timeout candidates).
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::NewCommand) && self.out.is_empty()
    }

    /// Reads once into the free end of the read buffer.
    fn fill(&mut self, counters: &mut Counters) -> ReadResult {
        if self.rbuf.is_empty() {
            self.rbuf = vec![0; READ_BUFFER];
        }
        if self.rstart > 0 {
            self.rbuf.copy_within(self.rstart..self.rend, 0);
            self.rend -= self.rstart;
            self.rstart = 0;
        }
        if self.rend == self.rbuf.len() {
            if self.rbuf.len() >= MAX_LINE {
                return ReadResult::Error;
            }
            let bigger = self.rbuf.len() * 2;
            self.rbuf.resize(bigger, 0);
        }
        let space = self.rbuf.len() - self.rend;
        let r = read(&mut self.stream, &mut self.rbuf[self.rend..]);
        if let ReadResult::Data(n) = r {
            self.rend += n;
            counters.bytes_read += n as u64;
            self.drained = n < space;
        }
        r
    }

    fn flush(&mut self, ctx: &mut Ctx) -> Flush {
        let (f, n) = self.out.flush(&mut self.stream, ctx.cache);
        ctx.counters.bytes_written += n as u64;
        f
    }

    /// Runs the state machine until it must wait, yield or close.
    pub fn drive(&mut self, ctx: &mut Ctx) -> Next {
        let mut budget = ctx.cfg.reqs_per_event;
        ctx.trace = (ctx.cfg.verbose > 1).then_some(self.fd);
        loop {
            match &mut self.state {
                State::Closing => return Next::Close,

                State::NewCommand => {
                    if self.close_after_write || self.out.pending() > OUT_HIGH_WATER {
                        match self.flush(ctx) {
                            Flush::Done if self.close_after_write => return Next::Close,
                            Flush::Done => {}
                            Flush::Blocked => return Next::Wait,
                            Flush::Failed => return Next::Close,
                        }
                    }
                    if budget == 0 {
                        // Flush on yield, as memcached does, then let the
                        // other connections have their turn.
                        return match self.flush(ctx) {
                            Flush::Done => {
                                ctx.counters.conn_yields += 1;
                                Next::Yield
                            }
                            Flush::Blocked => Next::Wait,
                            Flush::Failed => Next::Close,
                        };
                    }
                    if !self.negotiated && self.rend > self.rstart {
                        self.negotiated = true;
                        if self.protocol == Protocol::Negotiating {
                            self.protocol = if self.rbuf[self.rstart] == bin_proto::REQUEST_MAGIC {
                                Protocol::Binary
                            } else {
                                Protocol::Ascii
                            };
                        }
                        if let Some(fd) = ctx.trace {
                            let name = if self.protocol == Protocol::Binary {
                                "binary"
                            } else {
                                "ascii"
                            };
                            eprintln!("{fd}: Client using the {name} protocol");
                        }
                    }
                    let buf = &self.rbuf[self.rstart..self.rend];
                    let step = if self.protocol == Protocol::Binary {
                        match bin_proto::parse(buf) {
                            bin_proto::Parsed::NeedMore => Step::NeedMore,
                            bin_proto::Parsed::BadMagic => Step::Close,
                            bin_proto::Parsed::Request(r) => {
                                let extra = binary::body_to_buffer(&r, ctx.cfg.sasl);
                                if buf.len() < r.used + extra {
                                    Step::NeedMore
                                } else {
                                    let body = &buf[r.used..r.used + extra];
                                    let next = binary::execute(
                                        &r,
                                        body,
                                        &mut self.bin,
                                        &mut self.out,
                                        ctx,
                                    );
                                    Step::Ran(next, r.used + extra)
                                }
                            }
                        }
                    } else if ctx.cfg.auth.is_some() && !self.bin.authenticated {
                        match text::parse_auth(buf) {
                            text::AuthParsed::NeedMore => Step::NeedMore,
                            text::AuthParsed::Close => Step::Close,
                            text::AuthParsed::Refused(msg, used) => {
                                self.out.line(msg.as_bytes());
                                Step::Ran(commands::After::Next, used)
                            }
                            text::AuthParsed::Login { user, pass, used } => {
                                ctx.counters.auth_cmds += 1;
                                let ok = ctx.cfg.auth.as_ref().is_some_and(|a| a.check(user, pass));
                                if ok {
                                    self.bin.authenticated = true;
                                    self.out.line(b"STORED");
                                } else {
                                    ctx.counters.auth_errors += 1;
                                    self.out.line(b"CLIENT_ERROR authentication failure");
                                }
                                Step::Ran(commands::After::Next, used)
                            }
                        }
                    } else {
                        match text::parse(buf) {
                            Parsed::NeedMore => Step::NeedMore,
                            Parsed::Close => Step::Close,
                            Parsed::Line(cmd, used) => {
                                if let Some(fd) = ctx.trace {
                                    let raw = &buf[..used];
                                    let line = raw.strip_suffix(b"\n").unwrap_or(raw);
                                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                                    let line = line.split(|&b| b == 0).next().unwrap_or(line);
                                    eprintln!("<{fd} {}", String::from_utf8_lossy(line));
                                }
                                Step::Ran(commands::execute(cmd, &mut self.out, ctx), used)
                            }
                        }
                    };
                    match step {
                        Step::NeedMore => {
                            match self.flush(ctx) {
                                Flush::Done => {}
                                Flush::Blocked => return Next::Wait,
                                Flush::Failed => return Next::Close,
                            }
                            if std::mem::take(&mut self.drained) && !self.hangup {
                                return Next::Wait;
                            }
                            match self.fill(ctx.counters) {
                                ReadResult::Data(_) => {}
                                ReadResult::WouldBlock => return Next::Wait,
                                ReadResult::Eof | ReadResult::Error => return Next::Close,
                            }
                        }
                        Step::Close => return Next::Close,
                        Step::Ran(next, used) => {
                            budget -= 1;
                            self.last_cmd_time = ctx.clock.now();
                            self.rstart += used;
                            if self.rstart == self.rend {
                                self.rstart = 0;
                                self.rend = 0;
                            }
                            self.state = match next {
                                commands::After::Next => State::NewCommand,
                                commands::After::Read(p) => State::ReadValue(p),
                                commands::After::Swallow(left) => State::Swallow { left },
                                commands::After::CloseAfterWrite => {
                                    self.close_after_write = true;
                                    State::NewCommand
                                }
                                commands::After::Close => State::Closing,
                                commands::After::StatsConns => return Next::StatsConns,
                                commands::After::Dump(t) => State::Dump(t),
                            };
                        }
                    }
                }

                State::ReadValue(p) => {
                    // Bytes already buffered go into the item first...
                    while p.got < p.wire && self.rend > self.rstart {
                        let dst = ctx.cache.value_mut(&p.item, p.got);
                        let n = dst.len().min(self.rend - self.rstart).min(p.wire - p.got);
                        dst[..n].copy_from_slice(&self.rbuf[self.rstart..self.rstart + n]);
                        self.rstart += n;
                        p.got += n;
                    }
                    if p.got == p.wire {
                        let State::ReadValue(mut p) =
                            std::mem::replace(&mut self.state, State::NewCommand)
                        else {
                            unreachable!()
                        };
                        let reply =
                            std::mem::replace(&mut p.reply, StoreReply::Text { noreply: false });
                        match reply {
                            StoreReply::Text { noreply } => {
                                commands::complete_store(p, noreply, &mut self.out, ctx)
                            }
                            StoreReply::Binary(t) => {
                                binary::complete_store(p, &t, &mut self.out, ctx)
                            }
                            StoreReply::Meta(m) => meta::complete_store(p, &m, &mut self.out, ctx),
                        }
                        continue;
                    }
                    // ...the rest is read from the socket straight into it.
                    // Like memcached, queued replies wait until the value
                    // is complete: a client that leaves mid-value gets none.
                    let State::ReadValue(p) = &mut self.state else {
                        unreachable!()
                    };
                    // Only the wire's bytes: a binary value's `\r\n` is
                    // the server's to add, and what follows is the next
                    // request.
                    let want = p.wire - p.got;
                    let dst = ctx.cache.value_mut(&p.item, p.got);
                    let dst_len = dst.len().min(want);
                    match read(&mut self.stream, &mut dst[..dst_len]) {
                        ReadResult::Data(n) => {
                            p.got += n;
                            ctx.counters.bytes_read += n as u64;
                        }
                        ReadResult::WouldBlock => return Next::Wait,
                        ReadResult::Eof | ReadResult::Error => return Next::Close,
                    }
                }

                State::Dump(t) => {
                    let started = ctx.clock.process_started();
                    let done = ctx.cache.dump_step(t, self.out.text(), started, DUMP_SLICE);
                    self.out.commit();
                    if done {
                        self.out.line(b"END");
                        self.state = State::NewCommand;
                    }
                    match self.flush(ctx) {
                        Flush::Done if done => {}
                        Flush::Done => return Next::Yield,
                        Flush::Blocked => return Next::Wait,
                        Flush::Failed => return Next::Close,
                    }
                }

                State::Swallow { left } => {
                    let n = (*left).min(self.rend - self.rstart);
                    self.rstart += n;
                    *left -= n;
                    if *left == 0 {
                        self.state = State::NewCommand;
                        continue;
                    }
                    match self.fill(ctx.counters) {
                        ReadResult::Data(_) => {}
                        ReadResult::WouldBlock => return Next::Wait,
                        ReadResult::Eof | ReadResult::Error => return Next::Close,
                    }
                }
            }
        }
    }
}

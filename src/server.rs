//! The server: listeners, the connection table and the event loop.
//!
//! One thread runs everything.  Each loop turn reads the clock once, does
//! a bounded slice of background work (index growth), waits for readiness
//! (at most until the next second, or not at all when connections yielded
//! with work left), accepts, drives ready connections, then drives the
//! yielded ones.  Connections are a `Slab<Conn>` keyed by their token.

use std::io::{self, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use slab::Slab;

use crate::cache::{arena::chunk_sizes, Cache, CacheConfig};
use crate::clock::Clock;
use crate::config::Config;
use crate::conn::{Conn, ConnLine, Ctx, Next, ServerInfo, Shutdown};
use crate::reactor::stream::{Datagram, Listener, Stream};
use crate::reactor::{Reactor, Token};
use crate::stats::{Counters, PrefixStats};

/// Tokens at and above this name listeners.
const LISTENER_BASE: usize = usize::MAX / 2;
/// Tokens at and above this name UDP sockets.
const UDP_BASE: usize = LISTENER_BASE + LISTENER_BASE / 2;
/// memcached's UDP datagram limit, its 8-byte frame header included.
const UDP_MAX_PAYLOAD: usize = 1400;
const UDP_HEADER: usize = 8;
/// Datagrams served per socket per loop turn before others get a turn.
const UDP_BATCH: usize = 64;

/// A UDP socket and the connection that serves its datagrams.
struct Udp {
    sock: mio::net::UdpSocket,
    conn: Conn,
}
/// memcached reserves five descriptors per worker thread (`reserved_fds`).
const RESERVED_FDS_PER_THREAD: usize = 5;
/// memcached's limit is on descriptor numbers: standard streams, its event
/// bases and notify pipes use 7 plus 4 per worker thread besides the
/// listeners, and a client whose descriptor would reach `-c` is refused.
/// The same count of clients is admitted here for the same flags.
const FIXED_FDS: usize = 7;
const FDS_PER_THREAD: usize = 4;
/// memcached's default initial hash power.
const DEFAULT_HASHPOWER: u32 = 16;

/// Storage settings derived from the command line.
pub fn cache_config(cfg: &Config) -> CacheConfig {
    CacheConfig {
        mem_limit: cfg.maxbytes,
        page_size: cfg.slab_page_size,
        chunk_sizes: chunk_sizes(48 + cfg.chunk_size, cfg.factor, cfg.slab_chunk_max),
        item_size_max: cfg.item_size_max,
        use_cas: cfg.use_cas,
        evict: cfg.evict_to_free,
        hashpower: if cfg.hashpower_init == 0 {
            DEFAULT_HASHPOWER
        } else {
            cfg.hashpower_init
        },
        hash_expand: cfg.hash_expand,
        lru: cfg.lru.clone(),
        slab_reassign: cfg.slab_reassign,
        track_sizes: cfg.track_sizes,
        slab_automove: cfg.slab_automove,
        slab_automove_ratio: cfg.slab_automove_ratio,
        slab_automove_window: cfg.slab_automove_window,
    }
}

/// Resolves one `-l` entry: `addr`, `addr:port`, `[v6]:port` or a name.
fn resolve(entry: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    if let Ok(ip) = entry.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    if let Ok(sa) = entry.parse::<SocketAddr>() {
        return Ok(vec![sa]);
    }
    let bare = entry.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    Ok((entry, port).to_socket_addrs()?.collect())
}

/// Sockets bound before the server starts (and before privileges drop).
#[derive(Debug, Default)]
pub struct Bound {
    pub tcp: Vec<std::net::TcpListener>,
    pub unix: Option<std::os::unix::net::UnixListener>,
    pub udp: Vec<std::net::UdpSocket>,
}

/// Binds every listener the configuration names: the unix socket alone
/// with `-s` (memcached then serves neither TCP nor UDP), else TCP on
/// every `-l` address (all interfaces, IPv4 and IPv6, without `-l`) and
/// UDP on the same addresses when `-U` is set.
pub fn bind(cfg: &Config) -> Result<Bound, String> {
    let mut out = Bound::default();
    if let Some(path) = &cfg.unix_socket {
        let l = crate::sys::listen_unix(path, cfg.unix_mask, cfg.backlog)
            .map_err(|e| format!("failed to listen on UNIX socket: {path}: {e}"))?;
        out.unix = Some(l);
        return Ok(out);
    }
    let mut addrs = Vec::new();
    let mut optional_v6 = None;
    if cfg.listen.is_empty() {
        addrs.push(SocketAddr::from(([0, 0, 0, 0], cfg.port)));
        optional_v6 = Some(SocketAddr::from(([0u16; 8], cfg.port)));
    } else {
        for entry in &cfg.listen {
            addrs.extend(
                resolve(entry, cfg.port)
                    .map_err(|e| format!("failed to listen on TCP port {}: {e}", cfg.port))?,
            );
        }
    }
    for addr in &addrs {
        out.tcp.push(
            crate::sys::listen_tcp(*addr, cfg.backlog)
                .map_err(|e| format!("failed to listen on TCP port {}: {e}", cfg.port))?,
        );
    }
    // No IPv6 on the host is not an error, as with memcached.
    let v6 = optional_v6.and_then(|a| crate::sys::listen_tcp(a, cfg.backlog).ok().map(|l| (a, l)));
    if let Some((a, l)) = v6 {
        out.tcp.push(l);
        addrs.push(a);
    }
    if cfg.udp_port != 0 {
        for addr in &addrs {
            let a = SocketAddr::new(addr.ip(), cfg.udp_port);
            let sock = std::net::UdpSocket::bind(a)
                .map_err(|e| format!("failed to listen on UDP port {}: {e}", cfg.udp_port))?;
            sock.set_nonblocking(true)
                .map_err(|e| format!("failed to listen on UDP port {}: {e}", cfg.udp_port))?;
            out.udp.push(sock);
        }
    }
    Ok(out)
}

/// A connection's [`Ctx`] over the server's fields, leaving the
/// connection tables free to borrow.
macro_rules! conn_ctx {
    ($server:ident, $info:ident) => {
        Ctx {
            cache: &mut $server.cache,
            counters: &mut $server.counters,
            clock: &$server.clock,
            cfg: &mut $server.cfg,
            server: &$info,
            shutdown: &mut $server.shutdown,
            detail: &mut $server.detail,
            trace: None,
        }
    };
}

/// The event loop and everything it owns.
pub struct Server {
    reactor: Reactor,
    listeners: Vec<Listener>,
    /// UDP sockets (`-U`), each served by its own datagram connection.
    udp: Vec<Udp>,
    conns: Slab<Conn>,
    cache: Cache,
    counters: Counters,
    clock: Clock,
    cfg: Config,
    /// Connections that yielded with work left.
    pending: Vec<usize>,
    /// The other buffer `drive_pending` swaps with `pending`, so that a
    /// turn allocates nothing.
    pending_spare: Vec<usize>,
    shutdown: Option<Shutdown>,
    /// When accepting stopped for want of connection slots.
    listen_disabled_since: Option<std::time::Instant>,
    time_in_listen_disabled_us: u64,
    detail: PrefixStats,
    /// Relative time the server started (listeners' last "command").
    started: u32,
    peak_conns: usize,
    last_second: u32,
    /// The clock's millisecond of the last background slice.
    last_tick_ms: u64,
    /// The protocol new connections start with (`-B`).
    protocol: crate::conn::Protocol,
    /// The io_uring backend, when `-o io_uring` asked for it and the
    /// kernel gave a ring.
    #[cfg(feature = "io-uring")]
    uring: Option<crate::reactor::uring::Ring>,
    /// Per listener: whether its multishot accept is armed.
    #[cfg(feature = "io-uring")]
    accepting: Vec<bool>,
    /// Connections the ring accepted after the slots ran out, waiting as
    /// they would in the backlog for one to free.  Only those the kernel
    /// took before the accepts' cancel reached it: a few at most.
    #[cfg(feature = "io-uring")]
    held: std::collections::VecDeque<Stream>,
}

impl Server {
    /// A server over already bound listeners.
    pub fn new(cfg: Config, bound: Bound) -> io::Result<Server> {
        let reactor = Reactor::new(1024)?;
        let mut cache = Cache::new(&cache_config(&cfg));
        cache.crawler.auto = cfg.lru_crawler && cfg.lru_maintainer;
        cache.crawler.tocrawl = cfg.lru_crawler_tocrawl;
        if cfg.verbose > 1 {
            for (id, c) in cache.arena().classes().iter().enumerate().skip(1) {
                eprintln!(
                    "slab class {id:3}: chunk size {:9} perslab {:7}",
                    c.size, c.perslab
                );
            }
        }
        let mut ls = Vec::new();
        for l in bound.tcp {
            l.set_nonblocking(true)?;
            ls.push(Listener::Tcp(mio::net::TcpListener::from_std(l)));
        }
        if let Some(l) = bound.unix {
            l.set_nonblocking(true)?;
            ls.push(Listener::Unix(mio::net::UnixListener::from_std(l)));
        }
        for (i, l) in ls.iter_mut().enumerate() {
            if cfg.verbose > 1 {
                eprintln!("<{} server listening ({})", l.fd(), cfg.binding_protocol);
            }
            l.register(reactor.registry(), Token(LISTENER_BASE + i))?;
        }
        let protocol = match cfg.binding_protocol {
            "ascii" => crate::conn::Protocol::Ascii,
            "binary" => crate::conn::Protocol::Binary,
            _ => crate::conn::Protocol::Negotiating,
        };
        let mut udp = Vec::new();
        for (i, sock) in bound.udp.into_iter().enumerate() {
            let mut sock = mio::net::UdpSocket::from_std(sock);
            reactor
                .registry()
                .register(&mut sock, Token(UDP_BASE + i), mio::Interest::READABLE)?;
            if cfg.verbose > 1 {
                let fd = std::os::fd::AsRawFd::as_raw_fd(&sock);
                eprintln!("<{fd} server listening (udp)");
            }
            let conn = Conn::new(Stream::Datagram(Datagram::default()), 0, protocol);
            udp.push(Udp { sock, conn });
        }
        // memcached counts its listening connections as connections too.
        let counters = Counters {
            total_connections: ls.len() as u64,
            ..Counters::default()
        };
        let clock = Clock::new();
        let last_second = clock.now();
        let detail = PrefixStats::new(cfg.prefix_delimiter, cfg.detail_enabled);
        let server = Server {
            reactor,
            listeners: ls,
            udp,
            conns: Slab::new(),
            cache,
            counters,
            clock,
            cfg,
            pending: Vec::new(),
            pending_spare: Vec::new(),
            shutdown: None,
            listen_disabled_since: None,
            time_in_listen_disabled_us: 0,
            detail,
            started: last_second,
            peak_conns: 0,
            last_second,
            last_tick_ms: u64::MAX,
            protocol,
            #[cfg(feature = "io-uring")]
            uring: None,
            #[cfg(feature = "io-uring")]
            accepting: Vec::new(),
            #[cfg(feature = "io-uring")]
            held: std::collections::VecDeque::new(),
        };
        #[cfg(feature = "io-uring")]
        let server = server.start_uring();
        Ok(server)
    }

    /// Local addresses of the listeners (tests bind port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(Listener::tcp_addr)
            .collect()
    }

    /// Moves the clock forward; expiry tests use it instead of sleeping.
    pub fn advance_clock(&mut self, secs: u32) {
        self.clock.advance(secs);
    }

    fn reserved_fds(&self) -> usize {
        RESERVED_FDS_PER_THREAD * self.cfg.threads as usize
    }

    fn info(&self) -> ServerInfo {
        let listeners = self.listeners.len();
        ServerInfo {
            // memcached reports its connection count (listeners included)
            // minus one.
            curr_connections: (listeners + self.conns.len()).saturating_sub(1) as u64,
            connection_structures: (listeners + self.peak_conns) as u64,
            reserved_fds: self.reserved_fds() as u64,
            accepting: self.listen_disabled_since.is_none(),
            time_in_listen_disabled_us: self.time_in_listen_disabled_us,
        }
    }

    /// Runs until a stop signal (`stop()` turns true) or the `shutdown`
    /// command, which it returns.
    pub fn run(&mut self, stop: &dyn Fn() -> bool) -> io::Result<Option<Shutdown>> {
        while self.shutdown.is_none() && !stop() {
            #[cfg(feature = "io-uring")]
            if self.uring.is_some() {
                self.turn_uring()?;
                continue;
            }
            self.turn()?;
        }
        Ok(self.shutdown)
    }

    /// One turn of the event loop.
    pub fn turn(&mut self) -> io::Result<()> {
        let timeout = self.housekeeping();
        let events = self.reactor.wait(Some(timeout))?;
        for ev in &events {
            let t = ev.token.0;
            if t >= UDP_BASE {
                self.serve_udp(t - UDP_BASE);
            } else if t >= LISTENER_BASE {
                self.accept(t - LISTENER_BASE);
            } else if let Some(c) = self.conns.get_mut(t) {
                if ev.readable || ev.read_closed {
                    c.input_arrived(ev.read_closed);
                }
                self.drive(t);
            }
        }
        self.reactor.recycle(events);
        self.drive_pending();
        Ok(())
    }

    /// The clock, background slices and timers of one loop turn; returns
    /// how long the turn may wait for I/O.
    fn housekeeping(&mut self) -> Duration {
        let now = self.clock.update();
        self.cache.set_now(now);
        // Background slices (LRU juggling, crawls, page moves, index
        // growth) run at most once a millisecond, each up to a bound of
        // work (memcached's maintainer thread does its juggling in rounds
        // of bounded size too): a busy loop turns far more often, and each
        // turn paying for them cost more than serving its requests.
        let millis = self.clock.millis();
        if millis != self.last_tick_ms {
            self.last_tick_ms = millis;
            self.cache.tick();
        }
        if now != self.last_second {
            self.last_second = now;
            self.kick_idle();
            // An accept that an error ended (see `accepted_uring`) is
            // retried once a second.
            #[cfg(feature = "io-uring")]
            if self.listen_disabled_since.is_none() {
                self.arm_accepts();
            }
            // memcached rereads the -Y file on its clock tick after SIGHUP
            // and keeps the old users when the new file does not load.
            if crate::sys::take_hup() {
                if let Some(path) = &self.cfg.auth_file {
                    if let Ok(p) = crate::auth::Passwords::load_strict(path) {
                        self.cfg.auth = Some(p);
                    }
                }
            }
        }
        if !self.pending.is_empty() {
            Duration::ZERO
        } else if self.cache.busy() {
            // Background slices continue soon even without traffic.
            Duration::from_millis(10)
        } else {
            Duration::from_millis(1000)
        }
    }

    /// Drives the connections (and UDP sockets) that yielded with work left.
    fn drive_pending(&mut self) {
        let spare = std::mem::take(&mut self.pending_spare);
        let mut pending = std::mem::replace(&mut self.pending, spare);
        for &t in &pending {
            if t >= UDP_BASE {
                self.serve_udp(t - UDP_BASE);
            } else if self.conns.contains(t) {
                self.drive(t);
            }
        }
        pending.clear();
        self.pending_spare = pending;
    }

    /// Whether the connection table is full under memcached's limit.
    fn full(&self) -> bool {
        let in_use = FIXED_FDS
            + FDS_PER_THREAD * self.cfg.threads as usize
            + self.listeners.len()
            + self.conns.len();
        in_use >= self.cfg.maxconns
    }

    fn accept(&mut self, which: usize) {
        loop {
            if self.paused_if_full() {
                return;
            }
            let stream = match self.listeners[which].accept() {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    if self.cfg.verbose > 0 {
                        eprintln!("Failed to accept new connection: {e}");
                    }
                    return;
                }
            };
            self.admit(stream);
        }
    }

    /// Without maxconns_fast, memcached stops accepting as soon as it is
    /// full and leaves new connections waiting in the backlog; true when
    /// full (on io_uring the armed accepts are cancelled).
    fn paused_if_full(&mut self) -> bool {
        if self.cfg.maxconns_fast || !self.full() {
            return false;
        }
        if self.listen_disabled_since.is_none() {
            self.listen_disabled_since = Some(std::time::Instant::now());
            self.counters.listen_disabled_num += 1;
            #[cfg(feature = "io-uring")]
            self.cancel_accepts();
        }
        true
    }

    /// Lets connections in again once a slot is free.
    fn resume_listening(&mut self) {
        if let Some(since) = self.listen_disabled_since.take() {
            self.time_in_listen_disabled_us += since.elapsed().as_micros() as u64;
            #[cfg(feature = "io-uring")]
            if self.uring.is_some() {
                self.resume_listening_uring();
                return;
            }
            for l in 0..self.listeners.len() {
                self.accept(l);
            }
        }
    }

    /// Takes a newly accepted connection in, or turns it away with
    /// memcached's message when every slot is taken (`maxconns_fast`).
    fn admit(&mut self, mut stream: Stream) {
        if self.full() {
            let _ = stream.write(b"ERROR Too many open connections\r\n");
            self.counters.rejected_connections += 1;
            return;
        }
        #[cfg(feature = "io-uring")]
        if self.uring.is_some() {
            stream = stream.into_uring();
        }
        let entry = self.conns.vacant_entry();
        let token = entry.key();
        if stream
            .register(self.reactor.registry(), Token(token))
            .is_err()
        {
            return;
        }
        let conn = entry.insert(Conn::new(stream, self.clock.now(), self.protocol));
        if self.cfg.verbose > 1 {
            eprintln!("<{} new auto-negotiating client connection", conn.fd);
        }
        self.counters.total_connections += 1;
        self.peak_conns = self.peak_conns.max(self.conns.len());
        // Data may already be waiting; edge-triggered readiness would
        // only report it once, so drive the connection right away.
        self.drive(token);
    }

    fn drive(&mut self, token: usize) {
        let info = self.info();
        let conn = &mut self.conns[token];
        let mut ctx = conn_ctx!(self, info);
        match conn.drive(&mut ctx) {
            Next::Wait => self.arm_uring(token),
            Next::Yield => {
                self.pending.push(token);
                self.arm_uring(token);
            }
            Next::Close => self.close(token),
            Next::StatsConns => {
                let reply = self.stats_conns(token);
                self.conns[token].queue_reply(&reply);
                self.drive(token);
            }
        }
    }

    /// Without the io_uring backend there is nothing to start after a
    /// drive: epoll reports readiness by itself.
    #[cfg(not(feature = "io-uring"))]
    fn arm_uring(&mut self, _token: usize) {}

    /// `stats conns` over the listeners and every connection.
    fn stats_conns(&self, asking: usize) -> Vec<u8> {
        let now = self.clock.now();
        let mut lines: Vec<ConnLine> = self
            .listeners
            .iter()
            .map(|l| {
                (
                    l.fd(),
                    l.local_text(),
                    None,
                    "conn_listening",
                    now - self.started,
                )
            })
            .collect();
        for (t, c) in &self.conns {
            let (peer, local) = c.stream.addrs();
            lines.push((
                c.fd,
                peer,
                local,
                c.state_name(t == asking),
                now.saturating_sub(c.last_cmd_time),
            ));
        }
        crate::conn::conns_report(lines)
    }

    fn close(&mut self, token: usize) {
        #[cfg(feature = "io-uring")]
        if let Stream::Uring(io) = &mut self.conns[token].stream {
            if io.in_flight() || io.has_output() {
                // The kernel still holds its buffers, or replies wait: the
                // slot is freed once those are done (see `arm_uring`).
                if !io.closing {
                    io.close();
                    self.conns[token].release(&mut self.cache);
                    if self.cfg.verbose > 1 {
                        eprintln!("<{} connection closed.", self.conns[token].fd);
                    }
                    self.arm_uring(token);
                }
                return;
            }
        }
        let mut conn = self.conns.remove(token);
        conn.release(&mut self.cache);
        conn.stream.deregister(self.reactor.registry());
        if self.cfg.verbose > 1 {
            eprintln!("<{} connection closed.", conn.fd);
        }
        // A freed slot lets waiting connections in (edge-triggered
        // readiness will not announce them again).
        self.resume_listening();
    }

    /// Closes connections idle for longer than `idle_timeout`.
    fn kick_idle(&mut self) {
        let limit = self.cfg.idle_timeout;
        if limit == 0 {
            return;
        }
        let now = self.clock.now();
        let idle: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.is_idle() && now.saturating_sub(c.last_cmd_time) > limit)
            .map(|(t, _)| t)
            .collect();
        for t in idle {
            self.counters.idle_kicks += 1;
            self.close(t);
        }
    }
}

impl Server {
    /// Serves datagrams until the socket is drained (or a batch is done:
    /// then the socket goes on the pending list).
    fn serve_udp(&mut self, which: usize) {
        let mut buf = vec![0u8; 65536];
        for _ in 0..UDP_BATCH {
            let (n, peer) = match self.udp[which].sock.recv_from(&mut buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            self.counters.bytes_read += n as u64;
            // memcached ignores datagrams without a payload and requests
            // spanning several datagrams.
            if n <= UDP_HEADER || buf[4] != 0 || buf[5] != 1 {
                continue;
            }
            let request_id = [buf[0], buf[1]];
            let reply = self.run_datagram(which, &buf[UDP_HEADER..n]);
            self.send_udp(which, peer, request_id, &reply);
        }
        self.pending.push(UDP_BASE + which);
    }

    /// Runs the commands of one datagram; returns the reply bytes.
    fn run_datagram(&mut self, which: usize, payload: &[u8]) -> Vec<u8> {
        let info = self.info();
        let udp = &mut self.udp[which];
        if let Stream::Datagram(d) = &mut udp.conn.stream {
            d.input.clear();
            d.input.extend_from_slice(payload);
            d.pos = 0;
            d.output.clear();
        }
        let mut ctx = conn_ctx!(self, info);
        // A datagram stream never blocks on output and ends with its
        // payload: drive until the commands in it are done.
        while udp.conn.drive(&mut ctx) == Next::Yield {}
        udp.conn.end_datagram(ctx.cache);
        match &mut udp.conn.stream {
            Stream::Datagram(d) => std::mem::take(&mut d.output),
            _ => Vec::new(),
        }
    }

    /// Sends `reply` in datagrams of memcached's size, each framed with the
    /// request id, its sequence number and the total count.
    fn send_udp(&mut self, which: usize, peer: SocketAddr, request_id: [u8; 2], reply: &[u8]) {
        if reply.is_empty() {
            return;
        }
        let per = UDP_MAX_PAYLOAD - UDP_HEADER;
        let total = reply.len().div_ceil(per);
        let mut dgram = Vec::with_capacity(UDP_MAX_PAYLOAD);
        for (seq, part) in reply.chunks(per).enumerate() {
            dgram.clear();
            dgram.extend_from_slice(&request_id);
            dgram.extend_from_slice(&(seq as u16).to_be_bytes());
            dgram.extend_from_slice(&(total as u16).to_be_bytes());
            dgram.extend_from_slice(&[0, 0]);
            dgram.extend_from_slice(part);
            // A full socket buffer drops the reply, as UDP may.
            if let Ok(n) = self.udp[which].sock.send_to(&dgram, peer) {
                self.counters.bytes_written += n as u64;
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        #[cfg(feature = "io-uring")]
        self.drain_uring();
        let tokens: Vec<usize> = self.conns.iter().map(|(t, _)| t).collect();
        for t in tokens {
            self.close(t);
        }
    }
}

/// The io_uring backend's side of the server.
#[cfg(feature = "io-uring")]
impl Server {
    /// Switches to io_uring when asked and the kernel allows it; says so
    /// and stays on epoll when it does not.
    fn start_uring(mut self) -> Server {
        if !self.cfg.io_uring {
            return self;
        }
        let ring = crate::reactor::uring::Ring::new(4096).and_then(|mut ring| {
            for (i, l) in self.listeners.iter().enumerate() {
                ring.accept_multi(l.fd(), i)?;
            }
            for (i, u) in self.udp.iter().enumerate() {
                let fd = std::os::fd::AsRawFd::as_raw_fd(&u.sock);
                ring.poll(fd, i, crate::reactor::uring::Op::PollUdp)?;
            }
            Ok(ring)
        });
        match ring {
            Ok(ring) => {
                self.uring = Some(ring);
                self.accepting = vec![true; self.listeners.len()];
            }
            Err(e) => eprintln!("io_uring unavailable ({e}); falling back to epoll"),
        }
        self
    }

    /// Starts the receive and send a connection needs, or frees the slot
    /// of a closed one whose operations have all completed.
    fn arm_uring(&mut self, token: usize) {
        let Some(ring) = self.uring.as_mut() else {
            return;
        };
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if let Stream::Uring(io) = &mut conn.stream {
            if io.closing {
                // Queued replies go out first; then the socket is shut and
                // the slot freed once the kernel holds none of its buffers.
                if io.has_output() && !io.failed() && ring.arm(io, token).is_ok() {
                    return;
                }
                io.shut();
                if !io.in_flight() {
                    self.conns.remove(token);
                    // The slot is free only now: let waiting clients in.
                    self.resume_listening();
                }
                return;
            }
            if ring.arm(io, token).is_err() {
                self.close(token);
            }
        }
    }

    /// One loop turn on the ring: submit, wait, dispatch completions.
    fn turn_uring(&mut self) -> io::Result<()> {
        use crate::reactor::uring::Op;
        let timeout = self.housekeeping();
        let done = self.uring.as_mut().expect("ring").wait(timeout)?;
        for c in &done {
            match c.op {
                Op::Accept => self.accepted_uring(c),
                Op::PollUdp => {
                    self.serve_udp(c.index);
                    if !c.more {
                        let fd = std::os::fd::AsRawFd::as_raw_fd(&self.udp[c.index].sock);
                        let ring = self.uring.as_mut().expect("ring");
                        ring.poll(fd, c.index, Op::PollUdp)?;
                    }
                }
                Op::Recv | Op::Send => self.complete_uring(c),
            }
            self.uring.as_mut().expect("ring").submit_if_late()?;
        }
        self.uring.as_mut().expect("ring").recycle(done);
        self.drive_pending();
        Ok(())
    }

    /// A connection the ring accepted, or why its multishot accept
    /// failed or ended.
    fn accepted_uring(&mut self, c: &crate::reactor::uring::Completion) {
        if !c.more {
            self.accepting[c.index] = false;
        }
        let accepted = match c.result {
            0.. => self.uring.as_mut().and_then(|ring| ring.take_accepted()),
            _ => None,
        };
        if let Some(fd) = accepted {
            let stream = self.listeners[c.index].adopt(fd);
            if self.paused_if_full() {
                // The kernel took it before the ring was told to stop: it
                // waits here as it would in the backlog.
                self.held.push_back(stream);
            } else {
                self.admit(stream);
                self.paused_if_full();
            }
        } else if c.result != -libc::ECANCELED && self.cfg.verbose > 0 {
            let e = io::Error::from_raw_os_error(-c.result);
            eprintln!("Failed to accept new connection: {e}");
        }
        // An accept that ended on its own or on a passing error is armed
        // again now; after any other error (out of descriptors or memory,
        // refused by policy) accepting again at once would only fail
        // again, in a loop: the once-a-second check re-arms it.
        let passing = c.result >= 0
            || [
                libc::ECANCELED,
                libc::ECONNABORTED,
                libc::EINTR,
                libc::EAGAIN,
                libc::EPROTO,
            ]
            .contains(&-c.result);
        if !c.more && passing && self.listen_disabled_since.is_none() {
            self.arm_accepts();
        }
    }

    /// Arms the multishot accept of every listener that has none.
    fn arm_accepts(&mut self) {
        let Some(ring) = self.uring.as_mut() else {
            return;
        };
        for (i, l) in self.listeners.iter().enumerate() {
            if !self.accepting[i] && ring.accept_multi(l.fd(), i).is_ok() {
                self.accepting[i] = true;
            }
        }
    }

    /// Stops the armed accepts (each ends with a last completion).  The
    /// cancels go to the kernel at once: connections it accepts until
    /// then are held, so the sooner the fewer.
    fn cancel_accepts(&mut self) {
        let Some(ring) = self.uring.as_mut() else {
            return;
        };
        for i in 0..self.listeners.len() {
            if self.accepting[i] {
                let _ = ring.cancel(i, crate::reactor::uring::Op::Accept);
            }
        }
        let _ = ring.submit();
    }

    /// A slot freed: admits the connections held back, then accepts
    /// again while there is room.
    fn resume_listening_uring(&mut self) {
        while !self.paused_if_full() {
            match self.held.pop_front() {
                Some(stream) => self.admit(stream),
                None => return self.arm_accepts(),
            }
        }
    }

    /// Serves a connection's receive or send completion.  A receive's
    /// pool buffer is lent to the connection while it is driven and
    /// returned right after.
    fn complete_uring(&mut self, c: &crate::reactor::uring::Completion) {
        use crate::reactor::uring::Op;
        let ring = self.uring.as_mut().expect("ring");
        let Some(conn) = self.conns.get_mut(c.index) else {
            ring.give_back(c, None);
            return;
        };
        let Stream::Uring(io) = &mut conn.stream else {
            ring.give_back(c, None);
            return;
        };
        let wake = io.complete(c.op, c.result, c.more);
        if io.closing || !wake {
            // Sends carry no pool buffer and a closing connection reads
            // nothing more: there is nothing to lend, only operations to
            // start (the rest of the replies) or the slot to free.
            ring.give_back(c, None);
            self.arm_uring(c.index);
            return;
        }
        ring.lend(io, c);
        if c.op == Op::Recv {
            // A receive is always armed: EOF completes it, so no hang-up
            // can go unseen.
            conn.input_arrived(false);
        }
        self.drive(c.index);
        let io = match self.conns.get_mut(c.index).map(|conn| &mut conn.stream) {
            Some(Stream::Uring(io)) => Some(io),
            _ => None,
        };
        self.uring.as_mut().expect("ring").give_back(c, io);
    }

    /// Before buffers are freed at exit: cancel the accepts on listening
    /// sockets (an accept holds its socket open, so the port would keep
    /// accepting until the kernel tears the ring down on its own), shut
    /// every connection out, and collect the completions of what is still
    /// in flight (bounded).
    fn drain_uring(&mut self) {
        use crate::reactor::uring::Op;
        let Some(mut ring) = self.uring.take() else {
            return;
        };
        let mut polls = 0usize;
        for i in 0..self.listeners.len() {
            if self.accepting[i] && ring.cancel(i, Op::Accept).is_ok() {
                polls += 1;
            }
        }
        for i in 0..self.udp.len() {
            if ring.cancel(i, Op::PollUdp).is_ok() {
                polls += 1;
            }
        }
        for (_, c) in self.conns.iter_mut() {
            if let Stream::Uring(io) = &mut c.stream {
                io.close();
                io.shut();
            }
        }
        let deadline = std::time::Instant::now() + Duration::from_millis(500);
        while std::time::Instant::now() < deadline {
            let busy = self
                .conns
                .iter()
                .any(|(_, c)| matches!(&c.stream, Stream::Uring(io) if io.in_flight()));
            if !busy && polls == 0 {
                break;
            }
            let Ok(done) = ring.wait(Duration::from_millis(50)) else {
                break;
            };
            for c in &done {
                if matches!(c.op, Op::Accept | Op::PollUdp) && !c.more {
                    polls = polls.saturating_sub(1);
                }
                if c.op == Op::Accept && c.result >= 0 {
                    // Accepted as the server stops: closed unserved.
                    drop(ring.take_accepted());
                }
                let io = match self.conns.get_mut(c.index).map(|conn| &mut conn.stream) {
                    Some(Stream::Uring(io)) if matches!(c.op, Op::Recv | Op::Send) => {
                        // Stopping: nothing is driven again.
                        let _ = io.complete(c.op, c.result, c.more);
                        Some(io)
                    }
                    _ => None,
                };
                ring.give_back(c, io);
            }
            ring.recycle(done);
        }
        let busy = self
            .conns
            .iter()
            .any(|(_, c)| matches!(&c.stream, Stream::Uring(io) if io.in_flight()));
        if busy || polls > 0 {
            // The kernel may still write into buffers: keep them mapped
            // (the process is ending anyway).
            std::mem::forget(ring);
        }
    }
}

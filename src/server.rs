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
use crate::reactor::{Interest, Reactor, Token};
use crate::stats::{Counters, PrefixStats};

/// Tokens at and above this name listeners.
const LISTENER_BASE: usize = usize::MAX / 2;
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

/// Binds every listener the configuration names (all interfaces, IPv4
/// and IPv6, when there is no `-l`).
pub fn bind(cfg: &Config) -> io::Result<Vec<std::net::TcpListener>> {
    let mut out = Vec::new();
    if cfg.listen.is_empty() {
        out.push(crate::sys::listen_tcp(
            SocketAddr::from(([0, 0, 0, 0], cfg.port)),
            cfg.backlog,
        )?);
        // No IPv6 on the host is not an error, as with memcached.
        if let Ok(l) = crate::sys::listen_tcp(SocketAddr::from(([0u16; 8], cfg.port)), cfg.backlog)
        {
            out.push(l);
        }
        return Ok(out);
    }
    for entry in &cfg.listen {
        for addr in resolve(entry, cfg.port)? {
            out.push(crate::sys::listen_tcp(addr, cfg.backlog).map_err(|e| {
                io::Error::new(e.kind(), format!("failed to listen on {addr}: {e}"))
            })?);
        }
    }
    Ok(out)
}

/// The event loop and everything it owns.
pub struct Server {
    reactor: Reactor,
    listeners: Vec<mio::net::TcpListener>,
    conns: Slab<Conn>,
    cache: Cache,
    counters: Counters,
    clock: Clock,
    cfg: Config,
    /// Connections that yielded with work left.
    pending: Vec<usize>,
    shutdown: Option<Shutdown>,
    /// When accepting stopped for want of connection slots.
    listen_disabled_since: Option<std::time::Instant>,
    time_in_listen_disabled_us: u64,
    detail: PrefixStats,
    /// Relative time the server started (listeners' last "command").
    started: u32,
    peak_conns: usize,
    last_second: u32,
}

impl Server {
    /// A server over already bound listeners.
    pub fn new(cfg: Config, listeners: Vec<std::net::TcpListener>) -> io::Result<Server> {
        let reactor = Reactor::new(1024)?;
        let mut cache = Cache::new(&cache_config(&cfg));
        cache.crawler.auto = cfg.lru_crawler && cfg.lru_maintainer;
        if cfg.verbose > 1 {
            for (id, c) in cache.arena().classes().iter().enumerate().skip(1) {
                eprintln!(
                    "slab class {id:3}: chunk size {:9} perslab {:7}",
                    c.size, c.perslab
                );
            }
        }
        let mut ls = Vec::new();
        for (i, l) in listeners.into_iter().enumerate() {
            if cfg.verbose > 1 {
                let fd = std::os::fd::AsRawFd::as_raw_fd(&l);
                eprintln!("<{fd} server listening ({})", cfg.binding_protocol);
            }
            l.set_nonblocking(true)?;
            let mut l = mio::net::TcpListener::from_std(l);
            reactor
                .registry()
                .register(&mut l, Token(LISTENER_BASE + i), Interest::READABLE)?;
            ls.push(l);
        }
        // memcached counts its listening connections as connections too.
        let counters = Counters {
            total_connections: ls.len() as u64,
            ..Counters::default()
        };
        let clock = Clock::new();
        let last_second = clock.now();
        let detail = PrefixStats::new(cfg.prefix_delimiter, cfg.detail_enabled);
        Ok(Server {
            reactor,
            listeners: ls,
            conns: Slab::new(),
            cache,
            counters,
            clock,
            cfg,
            pending: Vec::new(),
            shutdown: None,
            listen_disabled_since: None,
            time_in_listen_disabled_us: 0,
            detail,
            started: last_second,
            peak_conns: 0,
            last_second,
        })
    }

    /// Local addresses of the listeners (tests bind port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
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
            self.turn()?;
        }
        Ok(self.shutdown)
    }

    /// One turn of the event loop.
    pub fn turn(&mut self) -> io::Result<()> {
        let now = self.clock.update();
        self.cache.set_now(now);
        self.cache.tick();
        if now != self.last_second {
            self.last_second = now;
            self.kick_idle();
        }
        let timeout = if !self.pending.is_empty() {
            Duration::ZERO
        } else if self.cache.busy() {
            // Background slices continue soon even without traffic.
            Duration::from_millis(10)
        } else {
            Duration::from_millis(1000)
        };
        let timeout = Some(timeout);
        let events = self.reactor.wait(timeout)?;
        for ev in events {
            let t = ev.token.0;
            if t >= LISTENER_BASE {
                self.accept(t - LISTENER_BASE);
            } else if self.conns.contains(t) {
                self.drive(t);
            }
        }
        for t in std::mem::take(&mut self.pending) {
            if self.conns.contains(t) {
                self.drive(t);
            }
        }
        Ok(())
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
            // Without maxconns_fast, memcached stops accepting while full and
            // leaves new connections waiting in the backlog.
            if !self.cfg.maxconns_fast && self.full() {
                if self.listen_disabled_since.is_none() {
                    self.listen_disabled_since = Some(std::time::Instant::now());
                    self.counters.listen_disabled_num += 1;
                }
                return;
            }
            let (mut stream, _) = match self.listeners[which].accept() {
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
            if self.full() {
                let _ = stream.write(b"ERROR Too many open connections\r\n");
                self.counters.rejected_connections += 1;
                continue;
            }
            let _ = stream.set_nodelay(true);
            let entry = self.conns.vacant_entry();
            let token = entry.key();
            if self
                .reactor
                .registry()
                .register(
                    &mut stream,
                    Token(token),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .is_err()
            {
                continue;
            }
            let conn = entry.insert(Conn::new(stream, self.clock.now()));
            if self.cfg.verbose > 1 {
                eprintln!("<{} new auto-negotiating client connection", conn.fd);
            }
            self.counters.total_connections += 1;
            self.peak_conns = self.peak_conns.max(self.conns.len());
            // Data may already be waiting; edge-triggered readiness would
            // only report it once, so drive the connection right away.
            self.drive(token);
        }
    }

    fn drive(&mut self, token: usize) {
        let info = self.info();
        let conn = &mut self.conns[token];
        let mut ctx = Ctx {
            cache: &mut self.cache,
            counters: &mut self.counters,
            clock: &self.clock,
            cfg: &mut self.cfg,
            server: &info,
            shutdown: &mut self.shutdown,
            detail: &mut self.detail,
            trace: None,
        };
        match conn.drive(&mut ctx) {
            Next::Wait => {}
            Next::Yield => self.pending.push(token),
            Next::Close => self.close(token),
            Next::StatsConns => {
                let reply = self.stats_conns(token);
                self.conns[token].queue_reply(&reply);
                self.drive(token);
            }
        }
    }

    /// `stats conns` over the listeners and every connection.
    fn stats_conns(&self, asking: usize) -> Vec<u8> {
        fn text(a: Option<SocketAddr>) -> String {
            match a {
                Some(SocketAddr::V4(a)) => format!("tcp:{}:{}", a.ip(), a.port()),
                Some(SocketAddr::V6(a)) => format!("tcp6:[{}]:{}", a.ip(), a.port()),
                None => "<closed>".to_owned(),
            }
        }
        let now = self.clock.now();
        let mut lines: Vec<ConnLine> = self
            .listeners
            .iter()
            .map(|l| {
                let fd = std::os::fd::AsRawFd::as_raw_fd(l);
                (
                    fd,
                    text(l.local_addr().ok()),
                    None,
                    "conn_listening",
                    now - self.started,
                )
            })
            .collect();
        for (t, c) in &self.conns {
            lines.push((
                c.fd,
                text(c.stream.peer_addr().ok()),
                Some(text(c.stream.local_addr().ok())),
                c.state_name(t == asking),
                now.saturating_sub(c.last_cmd_time),
            ));
        }
        crate::conn::conns_report(lines)
    }

    fn close(&mut self, token: usize) {
        let mut conn = self.conns.remove(token);
        conn.release(&mut self.cache);
        let _ = self.reactor.registry().deregister(&mut conn.stream);
        if self.cfg.verbose > 1 {
            eprintln!("<{} connection closed.", conn.fd);
        }
        // A freed slot lets waiting connections in (edge-triggered
        // readiness will not announce them again).
        if let Some(since) = self.listen_disabled_since.take() {
            self.time_in_listen_disabled_us += since.elapsed().as_micros() as u64;
            for l in 0..self.listeners.len() {
                self.accept(l);
            }
        }
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

impl Drop for Server {
    fn drop(&mut self) {
        let tokens: Vec<usize> = self.conns.iter().map(|(t, _)| t).collect();
        for t in tokens {
            self.close(t);
        }
    }
}

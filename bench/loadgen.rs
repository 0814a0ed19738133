//! `rmc-loadgen`: a memtier-like load generator for memcached servers.
//!
//! One thread, one mio event loop, closed-loop connections: each busy
//! connection keeps `--pipeline` requests in flight and sends the next as
//! soon as a reply completes.  Latency is measured per request, from the
//! write that carried it to the byte that completed its reply, into a
//! log-linear histogram (under 1% resolution).  Speaks the text, meta and
//! binary protocols; keys are uniform, sequential or Zipf distributed.
//!
//! Run `rmc-loadgen --help` for the options; `--json` prints one object
//! that `bench/run.py` reads.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

// ---------------------------------------------------------------------------
// Options

#[derive(Debug, Clone, Copy, PartialEq)]
enum Protocol {
    Text,
    Meta,
    Binary,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum KeyPattern {
    Uniform,
    Sequential,
    Zipf(f64),
}

#[derive(Debug, Clone)]
struct Opts {
    server: SocketAddr,
    connections: usize,
    idle: usize,
    pipeline: usize,
    sets: u32,
    gets: u32,
    keys: u64,
    pattern: KeyPattern,
    prefix: String,
    value_size: usize,
    multiget: usize,
    protocol: Protocol,
    duration: Option<Duration>,
    requests: Option<u64>,
    warmup: Duration,
    prefill: bool,
    json: bool,
}

fn usage(o: &getopts::Options) -> String {
    o.usage("Usage: rmc-loadgen --server HOST:PORT [options] (--duration SECS | --requests N)")
}

fn parse_opts(args: &[String]) -> Result<Opts, String> {
    let mut o = getopts::Options::new();
    o.optopt("", "server", "server address", "HOST:PORT");
    o.optopt("", "connections", "busy connections (50)", "N");
    o.optopt("", "idle-connections", "extra idle connections (0)", "N");
    o.optopt("", "pipeline", "requests in flight per connection (1)", "N");
    o.optopt("", "ratio", "set:get ratio (1:10)", "SET:GET");
    o.optopt("", "keys", "key range (100000)", "N");
    o.optopt("", "key-pattern", "uniform, sequential or zipf:S", "P");
    o.optopt("", "key-prefix", "key prefix (key:)", "STR");
    o.optopt("", "value-size", "value bytes (32)", "N");
    o.optopt("", "multiget", "keys per get (1)", "N");
    o.optopt("", "protocol", "text, meta or binary", "P");
    o.optopt("", "duration", "seconds to measure", "SECS");
    o.optopt("", "requests", "requests to measure", "N");
    o.optopt("", "warmup", "seconds before measuring (0)", "SECS");
    o.optflag("", "prefill", "set every key once before measuring");
    o.optflag("", "json", "print one JSON object");
    o.optflag("h", "help", "this text");
    let m = o.parse(args).map_err(|e| format!("{e}\n{}", usage(&o)))?;
    if m.opt_present("h") {
        return Err(usage(&o));
    }
    let num = |name: &str, default: u64| -> Result<u64, String> {
        match m.opt_str(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{name}: not a number: {v}")),
        }
    };
    let server = m
        .opt_str("server")
        .ok_or("--server is required")?
        .to_socket_addrs()
        .map_err(|e| format!("--server: {e}"))?
        .next()
        .ok_or("--server: no address")?;
    let (sets, gets) = match m.opt_str("ratio") {
        None => (1, 10),
        Some(r) => {
            let (a, b) = r.split_once(':').ok_or("--ratio: want SET:GET")?;
            let a: u32 = a.parse().map_err(|_| "--ratio: bad SET")?;
            let b: u32 = b.parse().map_err(|_| "--ratio: bad GET")?;
            if a + b == 0 {
                return Err("--ratio: both zero".into());
            }
            (a, b)
        }
    };
    let pattern = match m.opt_str("key-pattern").as_deref() {
        None | Some("uniform") | Some("R") => KeyPattern::Uniform,
        Some("sequential") | Some("S") => KeyPattern::Sequential,
        Some(z) if z.starts_with("zipf") => {
            let s = z
                .split_once(':')
                .map_or(Ok(0.99), |(_, s)| s.parse::<f64>())
                .map_err(|_| "--key-pattern: bad zipf exponent")?;
            KeyPattern::Zipf(s)
        }
        Some(other) => return Err(format!("--key-pattern: unknown {other}")),
    };
    let protocol = match m.opt_str("protocol").as_deref() {
        None | Some("text") => Protocol::Text,
        Some("meta") => Protocol::Meta,
        Some("binary") => Protocol::Binary,
        Some(other) => return Err(format!("--protocol: unknown {other}")),
    };
    let secs = |name: &str| -> Result<Option<Duration>, String> {
        m.opt_str(name)
            .map(|v| {
                v.parse::<f64>()
                    .map(Duration::from_secs_f64)
                    .map_err(|_| format!("--{name}: not a number: {v}"))
            })
            .transpose()
    };
    let duration = secs("duration")?;
    let requests = m
        .opt_str("requests")
        .map(|_| num("requests", 0))
        .transpose()?;
    if duration.is_none() && requests.is_none() {
        return Err(format!(
            "--duration or --requests is required\n{}",
            usage(&o)
        ));
    }
    let opts = Opts {
        server,
        connections: num("connections", 50)?.max(1) as usize,
        idle: num("idle-connections", 0)? as usize,
        pipeline: num("pipeline", 1)?.max(1) as usize,
        sets,
        gets,
        keys: num("keys", 100_000)?.max(1),
        pattern,
        prefix: m.opt_str("key-prefix").unwrap_or_else(|| "key:".into()),
        value_size: num("value-size", 32)? as usize,
        multiget: match num("multiget", 1)? {
            n @ 1..=256 => n as usize,
            n => return Err(format!("--multiget: 1 to 256 keys, not {n}")),
        },
        protocol,
        duration,
        requests,
        warmup: secs("warmup")?.unwrap_or_default(),
        prefill: m.opt_present("prefill"),
        json: m.opt_present("json"),
    };
    Ok(opts)
}

// ---------------------------------------------------------------------------
// Random numbers and key distributions

/// xorshift64*: fast and good enough to pick keys.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
}

/// Zipf over 1..=n by rejection-inversion (Hörmann and Derflinger), which
/// needs no table, so key ranges of any size cost nothing to set up.
struct Zipf {
    n: f64,
    s: f64,
    h_x1: f64,
    h_n: f64,
    cut: f64,
}

impl Zipf {
    fn new(n: u64, s: f64) -> Zipf {
        let mut z = Zipf {
            n: n as f64,
            s,
            h_x1: 0.0,
            h_n: 0.0,
            cut: 0.0,
        };
        z.h_x1 = z.h_integral(1.5) - 1.0;
        z.h_n = z.h_integral(z.n + 0.5);
        z.cut = 2.0 - z.h_integral_inv(z.h_integral(2.5) - z.h(2.0));
        z
    }

    fn h(&self, x: f64) -> f64 {
        (-self.s * x.ln()).exp()
    }

    fn h_integral(&self, x: f64) -> f64 {
        let lx = x.ln();
        helper2((1.0 - self.s) * lx) * lx
    }

    fn h_integral_inv(&self, x: f64) -> f64 {
        let t = (x * (1.0 - self.s)).max(-1.0);
        (helper1(t) * x).exp()
    }

    /// A rank in 1..=n; rank 1 is the most popular.
    fn sample(&self, rng: &mut Rng) -> u64 {
        loop {
            let u = self.h_n + rng.unit() * (self.h_x1 - self.h_n);
            let x = self.h_integral_inv(u);
            let k = (x + 0.5).floor().clamp(1.0, self.n);
            if k - x <= self.cut || u >= self.h_integral(k + 0.5) - self.h(k) {
                return k as u64;
            }
        }
    }
}

/// ln(1+x)/x, accurate near 0.
fn helper1(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.ln_1p() / x
    } else {
        1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x))
    }
}

/// (e^x - 1)/x, accurate near 0.
fn helper2(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.exp_m1() / x
    } else {
        1.0 + x * 0.5 * (1.0 + x * (1.0 / 3.0) * (1.0 + 0.25 * x))
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

struct Keys {
    pattern: KeyPattern,
    n: u64,
    next_seq: u64,
    zipf: Option<Zipf>,
    /// Zipf ranks are scattered over the key range so that the hot keys
    /// do not share a prefix (and a hash neighbourhood).
    scatter: u64,
}

impl Keys {
    fn new(pattern: KeyPattern, n: u64) -> Keys {
        let zipf = match pattern {
            KeyPattern::Zipf(s) => Some(Zipf::new(n, s)),
            _ => None,
        };
        // Multiplying by a number coprime with n permutes 0..n.
        let mut scatter = (0x9E37_79B9_7F4A_7C15 % n.max(1)) | 1;
        while gcd(scatter, n) != 1 {
            scatter += 2;
        }
        Keys {
            pattern,
            n,
            next_seq: 0,
            zipf,
            scatter,
        }
    }

    fn next(&mut self, rng: &mut Rng) -> u64 {
        match self.pattern {
            KeyPattern::Uniform => rng.below(self.n),
            KeyPattern::Sequential => {
                let k = self.next_seq;
                self.next_seq = (self.next_seq + 1) % self.n;
                k
            }
            KeyPattern::Zipf(_) => {
                let rank = self.zipf.as_ref().expect("zipf").sample(rng) - 1;
                ((u128::from(rank) * u128::from(self.scatter)) % u128::from(self.n)) as u64
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Latency histogram

/// Log-linear buckets over nanoseconds: 128 sub-buckets per power of two
/// (under 1% resolution).
struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

const SUB_BITS: u32 = 7;

impl Histogram {
    fn new() -> Histogram {
        Histogram {
            counts: vec![0; 64 << SUB_BITS],
            total: 0,
            max: 0,
        }
    }

    fn index(v: u64) -> usize {
        if v < (1 << SUB_BITS) {
            return v as usize;
        }
        let msb = 63 - v.leading_zeros();
        let shift = msb - SUB_BITS;
        let sub = (v >> shift) & ((1 << SUB_BITS) - 1);
        (((shift + 1) << SUB_BITS) | sub as u32) as usize
    }

    /// The middle of a bucket's value range.
    fn value(i: usize) -> f64 {
        let i = i as u64;
        if i < (1 << SUB_BITS) {
            return i as f64;
        }
        let shift = (i >> SUB_BITS) - 1;
        let sub = i & ((1 << SUB_BITS) - 1);
        let low = ((1u64 << SUB_BITS) | sub) << shift;
        low as f64 + ((1u64 << shift) as f64 - 1.0) / 2.0
    }

    fn record(&mut self, ns: u64) {
        self.counts[Self::index(ns)] += 1;
        self.total += 1;
        self.max = self.max.max(ns);
    }

    fn percentile(&self, p: f64) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let rank = ((p / 100.0) * self.total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::value(i).min(self.max as f64);
            }
        }
        self.max as f64
    }
}

// ---------------------------------------------------------------------------
// Requests and replies

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Set,
    Get { keys: usize },
}

/// A request in flight.
struct Pending {
    kind: Kind,
    sent: Instant,
}

/// What parsing the reply buffer found.
enum Parse {
    NeedMore,
    /// A whole reply of `used` bytes: hits, misses, whether it was an error.
    Done {
        used: usize,
        hits: u64,
        error: bool,
    },
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    memchr::memmem::find(&buf[from..], b"\r\n").map(|i| from + i)
}

fn parse_len(s: &[u8]) -> Option<usize> {
    std::str::from_utf8(s).ok()?.trim().parse().ok()
}

fn is_error_line(line: &[u8]) -> bool {
    line.starts_with(b"ERROR")
        || line.starts_with(b"CLIENT_ERROR")
        || line.starts_with(b"SERVER_ERROR")
}

/// A text reply: one status line for a set; VALUE blocks then END for a get.
fn parse_text(buf: &[u8], kind: Kind) -> Parse {
    match kind {
        Kind::Set => match find_crlf(buf, 0) {
            None => Parse::NeedMore,
            Some(e) => Parse::Done {
                used: e + 2,
                hits: 0,
                error: &buf[..e] != b"STORED",
            },
        },
        Kind::Get { .. } => {
            let mut at = 0;
            let mut hits = 0;
            loop {
                let Some(e) = find_crlf(buf, at) else {
                    return Parse::NeedMore;
                };
                let line = &buf[at..e];
                if line == b"END" {
                    return Parse::Done {
                        used: e + 2,
                        hits,
                        error: false,
                    };
                }
                if is_error_line(line) {
                    return Parse::Done {
                        used: e + 2,
                        hits,
                        error: true,
                    };
                }
                // VALUE <key> <flags> <bytes>
                let len = line.rsplit(|&b| b == b' ').next().and_then(parse_len);
                let Some(len) = len else {
                    return Parse::Done {
                        used: e + 2,
                        hits,
                        error: true,
                    };
                };
                let end = e + 2 + len + 2;
                if buf.len() < end {
                    return Parse::NeedMore;
                }
                hits += 1;
                at = end;
            }
        }
    }
}

/// A meta reply: `HD` for a set; `VA`/`EN` for one mg; quiet mgs end in `MN`.
fn parse_meta(buf: &[u8], kind: Kind) -> Parse {
    let multi = matches!(kind, Kind::Get { keys } if keys > 1);
    let mut at = 0;
    let mut hits = 0;
    loop {
        let Some(e) = find_crlf(buf, at) else {
            return Parse::NeedMore;
        };
        let line = &buf[at..e];
        if is_error_line(line) {
            return Parse::Done {
                used: e + 2,
                hits,
                error: true,
            };
        }
        if let Some(rest) = line.strip_prefix(b"VA ") {
            let len = rest.split(|&b| b == b' ').next().and_then(parse_len);
            let Some(len) = len else {
                return Parse::Done {
                    used: e + 2,
                    hits,
                    error: true,
                };
            };
            let end = e + 2 + len + 2;
            if buf.len() < end {
                return Parse::NeedMore;
            }
            hits += 1;
            if !multi {
                return Parse::Done {
                    used: end,
                    hits,
                    error: false,
                };
            }
            at = end;
            continue;
        }
        let done_line = if multi {
            line == b"MN"
        } else {
            true // HD, EN, NS ...
        };
        if done_line {
            let error = matches!(kind, Kind::Set) && line != b"HD";
            return Parse::Done {
                used: e + 2,
                hits,
                error,
            };
        }
        at = e + 2;
    }
}

/// Binary replies: one packet per set; for a get, packets until the GetK
/// (opcode 0x0c) that ends the batch.
fn parse_binary(buf: &[u8], kind: Kind) -> Parse {
    let mut at = 0;
    let mut hits = 0;
    loop {
        if buf.len() < at + 24 {
            return Parse::NeedMore;
        }
        let h = &buf[at..at + 24];
        let body = u32::from_be_bytes([h[8], h[9], h[10], h[11]]) as usize;
        let end = at + 24 + body;
        if buf.len() < end {
            return Parse::NeedMore;
        }
        let status = u16::from_be_bytes([h[6], h[7]]);
        let opcode = h[1];
        match kind {
            Kind::Set => {
                return Parse::Done {
                    used: end,
                    hits: 0,
                    error: status != 0,
                }
            }
            Kind::Get { .. } => {
                if status == 0 {
                    hits += 1;
                }
                if opcode == 0x0c || opcode == 0x00 {
                    return Parse::Done {
                        used: end,
                        hits,
                        error: status != 0 && status != 1,
                    };
                }
                at = end;
            }
        }
    }
}

fn push_key(out: &mut Vec<u8>, prefix: &str, k: u64) {
    out.extend_from_slice(prefix.as_bytes());
    push_num(out, k);
}

fn push_num(out: &mut Vec<u8>, k: u64) {
    let mut digits = [0u8; 20];
    let mut n = k;
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

fn bin_header(out: &mut Vec<u8>, opcode: u8, keylen: usize, extlen: usize, body: usize) {
    out.push(0x80);
    out.push(opcode);
    out.extend_from_slice(&(keylen as u16).to_be_bytes());
    out.push(extlen as u8);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&(body as u32).to_be_bytes());
    out.extend_from_slice(&[0; 12]);
}

/// Appends one request's bytes.
fn encode(out: &mut Vec<u8>, opts: &Opts, kind: Kind, keys: &[u64], value: &[u8]) {
    let mut key = Vec::with_capacity(32);
    match (opts.protocol, kind) {
        (Protocol::Text, Kind::Set) => {
            push_key(&mut key, &opts.prefix, keys[0]);
            out.extend_from_slice(b"set ");
            out.extend_from_slice(&key);
            out.extend_from_slice(b" 0 0 ");
            push_num(out, value.len() as u64);
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        (Protocol::Text, Kind::Get { .. }) => {
            out.extend_from_slice(b"get");
            for &k in keys {
                out.push(b' ');
                push_key(out, &opts.prefix, k);
            }
            out.extend_from_slice(b"\r\n");
        }
        (Protocol::Meta, Kind::Set) => {
            out.extend_from_slice(b"ms ");
            push_key(out, &opts.prefix, keys[0]);
            out.push(b' ');
            push_num(out, value.len() as u64);
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        (Protocol::Meta, Kind::Get { keys: n }) => {
            for &k in keys {
                out.extend_from_slice(b"mg ");
                push_key(out, &opts.prefix, k);
                out.extend_from_slice(if n > 1 { b" v q\r\n" } else { b" v\r\n" });
            }
            if n > 1 {
                out.extend_from_slice(b"mn\r\n");
            }
        }
        (Protocol::Binary, Kind::Set) => {
            push_key(&mut key, &opts.prefix, keys[0]);
            bin_header(out, 0x01, key.len(), 8, 8 + key.len() + value.len());
            out.extend_from_slice(&[0; 8]);
            out.extend_from_slice(&key);
            out.extend_from_slice(value);
        }
        (Protocol::Binary, Kind::Get { keys: n }) => {
            for (i, &k) in keys.iter().enumerate() {
                key.clear();
                push_key(&mut key, &opts.prefix, k);
                // Quiet GetKQ for all but the last, a GetK to end the batch
                // (a lone get is a plain Get).
                let op = if n == 1 {
                    0x00
                } else if i + 1 < n {
                    0x0d
                } else {
                    0x0c
                };
                bin_header(out, op, key.len(), 0, key.len());
                out.extend_from_slice(&key);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The event loop

struct Conn {
    stream: TcpStream,
    out: Vec<u8>,
    sent: usize,
    inbuf: Vec<u8>,
    inflight: VecDeque<Pending>,
}

#[derive(Default)]
struct Totals {
    ops: u64,
    gets: u64,
    sets: u64,
    hits: u64,
    misses: u64,
    errors: u64,
}

struct Load<'a> {
    opts: &'a Opts,
    rng: Rng,
    keys: Keys,
    value: Vec<u8>,
    /// Sets in each period of `sets + gets` requests.
    counter: u64,
    /// Prefill: every key once, in order, sets only.
    prefill_left: Option<u64>,
    issued: u64,
}

impl Load<'_> {
    fn next_request(&mut self, out: &mut Vec<u8>) -> Option<Kind> {
        let mut keybuf = [0u64; 256];
        if let Some(left) = &mut self.prefill_left {
            if *left == 0 {
                return None;
            }
            let k = self.opts.keys - *left;
            *left -= 1;
            encode(out, self.opts, Kind::Set, &[k], &self.value);
            return Some(Kind::Set);
        }
        let period = u64::from(self.opts.sets + self.opts.gets);
        let is_set = self.counter % period < u64::from(self.opts.sets);
        self.counter += 1;
        self.issued += 1;
        let kind = if is_set {
            Kind::Set
        } else {
            Kind::Get {
                keys: self.opts.multiget.min(keybuf.len()),
            }
        };
        let n = match kind {
            Kind::Set => 1,
            Kind::Get { keys } => keys,
        };
        for k in keybuf.iter_mut().take(n) {
            *k = self.keys.next(&mut self.rng);
        }
        encode(out, self.opts, kind, &keybuf[..n], &self.value);
        Some(kind)
    }
}

fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = std::net::TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    s.set_nonblocking(true)?;
    Ok(TcpStream::from_std(s))
}

/// Opens connections that stay idle: each sends one `version` and reads
/// its reply, so the server has really accepted and served it.
fn open_idle(opts: &Opts) -> io::Result<Vec<std::net::TcpStream>> {
    let mut v = Vec::with_capacity(opts.idle);
    let version: &[u8] = if opts.protocol == Protocol::Binary {
        &[
            0x80, 0x0b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ]
    } else {
        b"version\r\n"
    };
    for _ in 0..opts.idle {
        let mut s = std::net::TcpStream::connect(opts.server)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(version)?;
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::other("idle connection closed by the server"));
        }
        v.push(s);
    }
    Ok(v)
}

/// Runs the load until the stop condition; returns totals and latencies
/// of what completed after the warm-up.
fn run(opts: &Opts, load: &mut Load, measure: bool) -> io::Result<(Totals, Histogram, Duration)> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let nconns = if load.prefill_left.is_some() {
        opts.connections.min(8)
    } else {
        opts.connections
    };
    let depth = if load.prefill_left.is_some() {
        opts.pipeline.max(16)
    } else {
        opts.pipeline
    };
    let mut conns = Vec::with_capacity(nconns);
    for i in 0..nconns {
        let mut c = Conn {
            stream: connect(opts.server)?,
            out: Vec::with_capacity(4096),
            sent: 0,
            inbuf: Vec::with_capacity(64 * 1024),
            inflight: VecDeque::new(),
        };
        poll.registry().register(
            &mut c.stream,
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        conns.push(c);
    }
    let start = Instant::now();
    let measure_from = start + if measure { opts.warmup } else { Duration::ZERO };
    // The prefill runs to completion; only the measured pass has a deadline.
    let deadline = if measure {
        opts.duration.map(|d| measure_from + d)
    } else {
        None
    };
    let mut totals = Totals::default();
    let mut hist = Histogram::new();
    let mut stopping = false;
    let mut measured_end = None;
    // Fill every pipeline.
    for c in &mut conns {
        fill(c, load, depth, &mut stopping, opts, &mut totals);
        flush(c)?;
    }
    let mut readbuf = vec![0u8; 256 * 1024];
    loop {
        if conns.iter().all(|c| c.inflight.is_empty()) {
            break;
        }
        poll.poll(&mut events, Some(Duration::from_millis(100)))?;
        let now = Instant::now();
        if let Some(d) = deadline {
            if now >= d && !stopping {
                stopping = true;
                measured_end = Some(now);
            }
        }
        for ev in events.iter() {
            let c = &mut conns[ev.token().0];
            if ev.is_writable() {
                flush(c)?;
            }
            if !ev.is_readable() {
                continue;
            }
            loop {
                match c.stream.read(&mut readbuf) {
                    Ok(0) => {
                        return Err(io::Error::other(format!(
                            "server closed connection {}",
                            ev.token().0
                        )))
                    }
                    Ok(n) => c.inbuf.extend_from_slice(&readbuf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        return Err(io::Error::new(
                            e.kind(),
                            format!("connection {}: {e}", ev.token().0),
                        ))
                    }
                }
            }
            let done_at = Instant::now();
            let mut used = 0;
            while let Some(p) = c.inflight.front() {
                let parsed = match opts.protocol {
                    Protocol::Text => parse_text(&c.inbuf[used..], p.kind),
                    Protocol::Meta => parse_meta(&c.inbuf[used..], p.kind),
                    Protocol::Binary => parse_binary(&c.inbuf[used..], p.kind),
                };
                let Parse::Done {
                    used: u,
                    hits,
                    error,
                } = parsed
                else {
                    break;
                };
                used += u;
                let p = c.inflight.pop_front().expect("pending");
                let counted = !measure || (p.sent >= measure_from && !stopping);
                if counted {
                    totals.ops += 1;
                    match p.kind {
                        Kind::Set => totals.sets += 1,
                        Kind::Get { keys } => {
                            totals.gets += 1;
                            totals.hits += hits;
                            totals.misses += keys as u64 - hits.min(keys as u64);
                        }
                    }
                    totals.errors += u64::from(error);
                    hist.record(done_at.duration_since(p.sent).as_nanos() as u64);
                }
            }
            c.inbuf.drain(..used);
            if let Some(limit) = opts.requests {
                if measure && totals.ops >= limit && !stopping {
                    stopping = true;
                    measured_end = Some(done_at);
                }
            }
            fill(c, load, depth, &mut stopping, opts, &mut totals);
            flush(c)?;
        }
    }
    let end = measured_end.unwrap_or_else(Instant::now);
    let elapsed = end.saturating_duration_since(measure_from);
    Ok((totals, hist, elapsed))
}

fn fill(
    c: &mut Conn,
    load: &mut Load,
    depth: usize,
    stopping: &mut bool,
    opts: &Opts,
    _totals: &mut Totals,
) {
    if *stopping {
        return;
    }
    let now = Instant::now();
    while c.inflight.len() < depth {
        if let Some(limit) = opts.requests {
            if load.prefill_left.is_none() && load.issued >= limit * 2 + 1_000_000 {
                *stopping = true;
                return;
            }
        }
        match load.next_request(&mut c.out) {
            Some(kind) => c.inflight.push_back(Pending { kind, sent: now }),
            None => {
                *stopping = true;
                return;
            }
        }
    }
}

fn flush(c: &mut Conn) -> io::Result<()> {
    while c.sent < c.out.len() {
        match c.stream.write(&c.out[c.sent..]) {
            Ok(n) => c.sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    c.out.clear();
    c.sent = 0;
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match parse_opts(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    // Many connections need a descriptor limit the caller raises
    // (`ulimit -n`; bench/run.py does it for the processes it starts).
    let mut load = Load {
        opts: &opts,
        rng: Rng(0x2545_F491_4F6C_DD1D),
        keys: Keys::new(opts.pattern, opts.keys),
        value: vec![b'x'; opts.value_size],
        counter: 0,
        prefill_left: None,
        issued: 0,
    };
    // Idle connections stay open until the report is printed, so closing
    // them is not part of any measured interval.
    let idle = match open_idle(&opts) {
        Ok(v) => v,
        Err(e) => {
            eprintln!(
                "rmc-loadgen: {}: opening idle connections: {e}",
                opts.server
            );
            return ExitCode::from(1);
        }
    };
    if opts.prefill {
        load.prefill_left = Some(opts.keys);
        if let Err(e) = run(&opts, &mut load, false) {
            eprintln!("rmc-loadgen: {}: prefill: {e}", opts.server);
            return ExitCode::from(1);
        }
        load.prefill_left = None;
    }
    let (t, h, elapsed) = match run(&opts, &mut load, true) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rmc-loadgen: {}: measured run: {e}", opts.server);
            return ExitCode::from(1);
        }
    };
    let secs = elapsed.as_secs_f64().max(1e-9);
    let us = |ns: f64| ns / 1000.0;
    if opts.json {
        println!(
            "{{\"ops\": {}, \"seconds\": {:.6}, \"ops_per_sec\": {:.1}, \"gets\": {}, \"sets\": {}, \"hits\": {}, \"misses\": {}, \"errors\": {}, \"p50_us\": {:.2}, \"p99_us\": {:.2}, \"p999_us\": {:.2}, \"max_us\": {:.2}, \"connections\": {}, \"pipeline\": {}}}",
            t.ops,
            secs,
            t.ops as f64 / secs,
            t.gets,
            t.sets,
            t.hits,
            t.misses,
            t.errors,
            us(h.percentile(50.0)),
            us(h.percentile(99.0)),
            us(h.percentile(99.9)),
            us(h.max as f64),
            opts.connections,
            opts.pipeline
        );
    } else {
        println!(
            "{} ops in {:.2} s: {:.0} ops/s; p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us; gets {} (hits {}, misses {}), sets {}, errors {}",
            t.ops,
            secs,
            t.ops as f64 / secs,
            us(h.percentile(50.0)),
            us(h.percentile(99.0)),
            us(h.percentile(99.9)),
            us(h.max as f64),
            t.gets,
            t.hits,
            t.misses,
            t.sets,
            t.errors
        );
    }
    drop(idle);
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_percentiles_within_resolution() {
        let mut h = Histogram::new();
        for v in 1..=100_000u64 {
            h.record(v * 1000);
        }
        for (p, want) in [
            (50.0, 50_000_000.0),
            (99.0, 99_000_000.0),
            (99.9, 99_900_000.0),
        ] {
            let got = h.percentile(p);
            assert!((got - want).abs() / want < 0.01, "p{p}: {got} vs {want}");
        }
        assert_eq!(h.max, 100_000_000);
    }

    #[test]
    fn zipf_favours_low_ranks() {
        let z = Zipf::new(1000, 0.99);
        let mut rng = Rng(42);
        let mut counts = vec![0u32; 1001];
        for _ in 0..200_000 {
            let k = z.sample(&mut rng) as usize;
            assert!((1..=1000).contains(&k));
            counts[k] += 1;
        }
        // Rank 1 about twice rank 2, ten times rank 10 (s close to 1).
        let r = f64::from(counts[1]) / f64::from(counts[2]);
        assert!((1.7..2.3).contains(&r), "rank1/rank2 = {r}");
        let r = f64::from(counts[1]) / f64::from(counts[10]);
        assert!((7.0..13.0).contains(&r), "rank1/rank10 = {r}");
    }

    #[test]
    fn zipf_ranks_scatter_over_every_key() {
        for n in [1000u64, 100_000, 1_000_000, 12_345] {
            let k = Keys::new(KeyPattern::Zipf(0.99), n);
            assert_eq!(gcd(k.scatter, n), 1, "n {n}");
        }
        let k = Keys::new(KeyPattern::Zipf(0.99), 1000);
        let mut seen = std::collections::HashSet::new();
        for rank in 0..1000u64 {
            seen.insert((u128::from(rank) * u128::from(k.scatter) % 1000) as u64);
        }
        assert_eq!(seen.len(), 1000);
    }

    #[test]
    fn replies_are_framed_per_protocol() {
        let get = Kind::Get { keys: 2 };
        let text = b"VALUE key:1 0 3\r\nabc\r\nEND\r\nSTORED\r\n";
        let Parse::Done { used, hits, error } = parse_text(text, get) else {
            panic!()
        };
        assert_eq!((used, hits, error), (27, 1, false));
        assert!(matches!(parse_text(&text[..20], get), Parse::NeedMore));
        let meta = b"VA 3\r\nabc\r\nMN\r\n";
        let Parse::Done { used, hits, .. } = parse_meta(meta, get) else {
            panic!()
        };
        assert_eq!((used, hits), (15, 1));
        let mut bin = vec![0x81, 0x0c, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0];
        bin.extend_from_slice(&[0; 12]);
        let Parse::Done { used, hits, error } = parse_binary(&bin, get) else {
            panic!()
        };
        assert_eq!((used, hits, error), (24, 0, false));
    }
}

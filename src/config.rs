//! Command line: memcached's options, defaults and checks.
//!
//! Every option memcached 1.6 accepts is recognised.  Those rmemcached
//! implements behave as memcached's do; the rest are refused with a message
//! naming them, so nothing is silently ignored.  Numbers are read the way
//! memcached reads them (`atoi`: `-m 64m` is 64 megabytes).

use getopts::Options;

use crate::numbers::strtoul;

/// What memcached reports as its version; clients gate features on it.
pub const MEMCACHED_VERSION: &str = "1.6.18";
/// This program's own version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Tunables of the segmented LRU (`-o`, `lru tune|mode|temp_ttl`).
#[derive(Debug, Clone)]
pub struct LruConfig {
    pub segmented: bool,
    pub hot_lru_pct: u32,
    pub warm_lru_pct: u32,
    pub hot_max_factor: f64,
    pub warm_max_factor: f64,
    pub temp_lru: bool,
    pub temporary_ttl: u32,
}

impl Default for LruConfig {
    fn default() -> Self {
        LruConfig {
            segmented: true,
            hot_lru_pct: 20,
            warm_lru_pct: 40,
            hot_max_factor: 0.2,
            warm_max_factor: 2.0,
            temp_lru: false,
            temporary_ttl: 61,
        }
    }
}

/// Settings for one server run.
#[derive(Debug, Clone)]
pub struct Config {
    pub port: u16,
    pub listen: Vec<String>,
    pub daemonize: bool,
    pub user: Option<String>,
    pub maxbytes: usize,
    pub evict_to_free: bool,
    pub maxconns: usize,
    pub lock_memory: bool,
    pub verbose: u32,
    pub pidfile: Option<String>,
    pub factor: f64,
    pub chunk_size: usize,
    pub threads: u32,
    pub reqs_per_event: u32,
    pub use_cas: bool,
    pub backlog: i32,
    pub item_size_max: usize,
    pub flush_enabled: bool,
    pub dump_enabled: bool,
    pub watch_enabled: bool,
    pub shutdown_enabled: bool,
    pub coredumps: bool,
    pub idle_timeout: u32,
    pub hashpower_init: u32,
    pub hash_expand: bool,
    pub slab_chunk_max: usize,
    pub slab_page_size: usize,
    pub maxconns_fast: bool,
    pub track_sizes: bool,
    /// Key prefix delimiter of `stats detail` (`-D`).
    pub prefix_delimiter: u8,
    /// `stats detail` on from the start (`-D`).
    pub detail_enabled: bool,
    /// `-B`: memcached's name for the protocol choice.
    pub binding_protocol: &'static str,
    /// `-U`: UDP port (0: off).
    pub udp_port: u16,
    /// `-s`: listen on this unix socket instead of TCP and UDP.
    pub unix_socket: Option<String>,
    /// `-a`: permission mask of the unix socket.
    pub unix_mask: u32,
    /// `-S`: SASL authentication (binary protocol only).
    pub sasl: bool,
    /// `-Y`: ASCII authentication against this password file.
    pub auth_file: Option<String>,
    /// The users of `auth_file`, loaded at start-up.
    pub auth: Option<crate::auth::Passwords>,
    /// `-o io_uring`: the io_uring backend instead of epoll.
    pub io_uring: bool,
    pub lru_maintainer: bool,
    /// Initial LRU tunables; the cache owns the live ones (`lru tune`).
    pub lru: LruConfig,
    pub lru_crawler: bool,
    pub lru_crawler_sleep: u32,
    pub lru_crawler_tocrawl: u32,
    pub slab_reassign: bool,
    pub slab_automove: u32,
    pub slab_automove_ratio: f64,
    pub slab_automove_window: u32,
    pub tail_repair_time: u32,
    pub slab_automove_freeratio: f64,
    pub hash_algorithm: &'static str,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            port: 11211,
            listen: Vec::new(),
            daemonize: false,
            user: None,
            maxbytes: 64 * 1024 * 1024,
            evict_to_free: true,
            maxconns: 1024,
            lock_memory: false,
            verbose: 0,
            pidfile: None,
            factor: 1.25,
            chunk_size: 48,
            threads: 4,
            reqs_per_event: 20,
            use_cas: true,
            backlog: 1024,
            item_size_max: 1024 * 1024,
            flush_enabled: true,
            dump_enabled: true,
            watch_enabled: true,
            shutdown_enabled: false,
            coredumps: false,
            idle_timeout: 0,
            hashpower_init: 0,
            hash_expand: true,
            slab_chunk_max: 512 * 1024,
            slab_page_size: 1024 * 1024,
            maxconns_fast: true,
            track_sizes: false,
            prefix_delimiter: b':',
            detail_enabled: false,
            binding_protocol: "auto-negotiate",
            udp_port: 0,
            unix_socket: None,
            unix_mask: 0o700,
            sasl: false,
            auth_file: None,
            auth: None,
            io_uring: false,
            lru_maintainer: true,
            lru: LruConfig::default(),
            lru_crawler: true,
            lru_crawler_sleep: 100,
            lru_crawler_tocrawl: 0,
            slab_reassign: true,
            slab_automove: 1,
            slab_automove_ratio: 0.8,
            slab_automove_window: 30,
            tail_repair_time: 0,
            slab_automove_freeratio: 0.01,
            hash_algorithm: "murmur3",
        }
    }
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Parsed {
    Run(Box<Config>),
    /// Print this on stdout and exit 0 (`-h`, `-V`, `-i`).
    Print(String),
}

/// A refused command line: the message and the exit status (memcached
/// uses `EX_USAGE`, 64).
#[derive(Debug)]
pub struct Refused(pub String, pub i32);

const EX_USAGE: i32 = 64;

/// Option values memcached rejects while reading them exit with 1.
fn refuse(msg: impl Into<String>) -> Refused {
    Refused(msg.into(), 1)
}

/// Settings that contradict each other exit with `EX_USAGE`.
fn inconsistent(msg: impl Into<String>) -> Refused {
    Refused(msg.into(), EX_USAGE)
}

/// getopt's own messages, then memcached's `Illegal argument "?"`.
fn getopt_error(prog: &str, args: &[String], fail: getopts::Fail) -> Refused {
    use getopts::Fail;
    let first = match fail {
        Fail::UnrecognizedOption(name) if name.chars().count() == 1 => {
            format!("{prog}: invalid option -- '{name}'")
        }
        Fail::UnrecognizedOption(name) => {
            let given = args
                .iter()
                .find(|a| a.starts_with(&format!("--{name}")))
                .cloned()
                .unwrap_or(format!("--{name}"));
            format!("{prog}: unrecognized option '{given}'")
        }
        Fail::ArgumentMissing(name) if name.chars().count() == 1 => {
            format!("{prog}: option requires an argument -- '{name}'")
        }
        Fail::ArgumentMissing(name) => format!("{prog}: option '--{name}' requires an argument"),
        other => format!("{prog}: {other}"),
    };
    Refused(format!("{first}\nIllegal argument \"?\""), 1)
}

/// C `atoi`: leading white space, a sign, digits; junk after is ignored.
pub fn atoi(s: &str) -> i64 {
    let b = s.trim_start().as_bytes();
    let (neg, digits) = match b.first() {
        Some(b'-') => (true, &b[1..]),
        Some(b'+') => (false, &b[1..]),
        _ => (false, b),
    };
    let mut v: i64 = 0;
    for &d in digits.iter().take_while(|d| d.is_ascii_digit()) {
        v = v.saturating_mul(10).saturating_add(i64::from(d - b'0'));
    }
    if neg {
        -v
    } else {
        v
    }
}

/// C `atof` as far as options need it: a leading decimal number, else 0.
pub fn atof(s: &str) -> f64 {
    let t = s.trim_start();
    let end = t
        .char_indices()
        .take_while(|&(i, ch)| {
            ch.is_ascii_digit() || ch == '.' || (i == 0 && (ch == '-' || ch == '+'))
        })
        .map(|(i, ch)| i + ch.len_utf8())
        .last()
        .unwrap_or(0);
    t[..end].parse().unwrap_or(0.0)
}

/// A size with memcached's optional `k`/`m` suffix (`-I`, `slab_chunk_max`).
fn size_with_unit(s: &str) -> i64 {
    match s.as_bytes().last() {
        Some(b'k' | b'K') => atoi(&s[..s.len() - 1]) * 1024,
        Some(b'm' | b'M') => atoi(&s[..s.len() - 1]) * 1024 * 1024,
        _ => atoi(s),
    }
}

/// `(short, long, argument, help)` for `-h`, in memcached's order.
const OPTION_HELP: &[(&str, &str, Option<&str>, &str)] = &[
    (
        "p",
        "port",
        Some("num"),
        "TCP port to listen on (default: 11211)",
    ),
    (
        "U",
        "udp-port",
        Some("num"),
        "UDP port to listen on (default: 0, off)",
    ),
    (
        "s",
        "unix-socket",
        Some("file"),
        "UNIX socket to listen on (disables network support)",
    ),
    (
        "a",
        "unix-mask",
        Some("mask"),
        "access mask for UNIX socket, in octal (default: 700)",
    ),
    (
        "A",
        "enable-shutdown",
        None,
        "enable ascii \"shutdown\" command",
    ),
    (
        "l",
        "listen",
        Some("addr"),
        "interface to listen on (default: INADDR_ANY)",
    ),
    ("d", "daemon", None, "run as a daemon"),
    ("r", "enable-coredumps", None, "maximize core file limit"),
    (
        "u",
        "user",
        Some("user"),
        "assume identity of <username> (only when run as root)",
    ),
    (
        "m",
        "memory-limit",
        Some("num"),
        "item memory in megabytes (default: 64)",
    ),
    (
        "M",
        "disable-evictions",
        None,
        "return error on memory exhausted instead of evicting",
    ),
    (
        "c",
        "conn-limit",
        Some("num"),
        "max simultaneous connections (default: 1024)",
    ),
    ("k", "lock-memory", None, "lock down all paged memory"),
    (
        "v",
        "verbose",
        None,
        "verbose (print errors/warnings while in event loop)",
    ),
    ("h", "help", None, "print this help and exit"),
    ("i", "license", None, "print memcached and libevent license"),
    ("V", "version", None, "print version and exit"),
    (
        "P",
        "pidfile",
        Some("file"),
        "save PID in <file>, only used with -d option",
    ),
    (
        "f",
        "slab-growth-factor",
        Some("factor"),
        "chunk size growth factor (default: 1.25)",
    ),
    (
        "n",
        "slab-min-size",
        Some("bytes"),
        "min space used for key+value+flags (default: 48)",
    ),
    (
        "L",
        "enable-largepages",
        None,
        "try to use large memory pages (not yet supported)",
    ),
    (
        "t",
        "threads",
        Some("num"),
        "accepted for compatibility: one event loop serves all connections",
    ),
    (
        "R",
        "max-reqs-per-event",
        Some("num"),
        "maximum number of requests per event (default: 20)",
    ),
    ("C", "disable-cas", None, "disable use of CAS"),
    (
        "b",
        "listen-backlog",
        Some("num"),
        "set the backlog queue limit (default: 1024)",
    ),
    (
        "B",
        "protocol",
        Some("name"),
        "protocol - one of ascii, binary, or auto (default: auto)",
    ),
    (
        "I",
        "max-item-size",
        Some("num"),
        "adjusts max item size (default: 1m, min: 1k, max: 1024m)",
    ),
    (
        "S",
        "enable-sasl",
        None,
        "turn on Sasl authentication",
    ),
    ("F", "disable-flush-all", None, "disable flush_all command"),
    (
        "X",
        "disable-dumping",
        None,
        "disable stats cachedump and lru_crawler metadump",
    ),
    (
        "W",
        "disable-watch",
        None,
        "disable watch commands (live logging)",
    ),
    (
        "Y",
        "auth-file",
        Some("file"),
        "(EXPERIMENTAL) enable ASCII protocol authentication. format:\n                          user:pass\\nuser2:pass2\\n",
    ),
    (
        "e",
        "memory-file",
        Some("file"),
        "(EXPERIMENTAL) mmap a file for item memory (not supported)",
    ),
    ("Z", "enable-ssl", None, "enable TLS/SSL (not supported)"),
    (
        "N",
        "napi-ids",
        Some("num"),
        "number of napi ids (not supported)",
    ),
];

fn options() -> Options {
    let mut o = Options::new();
    o.optmulti(
        "p",
        "port",
        "TCP port to listen on (default: 11211)",
        "<num>",
    );
    o.optmulti(
        "U",
        "udp-port",
        "UDP port to listen on (default: 0, off)",
        "<num>",
    );
    o.optmulti(
        "s",
        "unix-socket",
        "UNIX socket to listen on (disables network support)",
        "<file>",
    );
    o.optmulti(
        "a",
        "unix-mask",
        "access mask for UNIX socket, in octal (default: 700)",
        "<mask>",
    );
    o.optflag("A", "enable-shutdown", "enable ascii \"shutdown\" command");
    o.optmulti(
        "l",
        "listen",
        "interface to listen on (default: INADDR_ANY)",
        "<addr>",
    );
    o.optflag("d", "daemon", "run as a daemon");
    o.optflag("r", "enable-coredumps", "maximize core file limit");
    o.optmulti(
        "u",
        "user",
        "assume identity of <username> (only when run as root)",
        "<user>",
    );
    o.optmulti(
        "m",
        "memory-limit",
        "item memory in megabytes (default: 64)",
        "<num>",
    );
    o.optflag(
        "M",
        "disable-evictions",
        "return error on memory exhausted instead of evicting",
    );
    o.optmulti(
        "c",
        "conn-limit",
        "max simultaneous connections (default: 1024)",
        "<num>",
    );
    o.optflag("k", "lock-memory", "lock down all paged memory");
    o.optflagmulti(
        "v",
        "verbose",
        "verbose (print errors/warnings while in event loop)",
    );
    o.optflag("h", "help", "print this help and exit");
    o.optflag("i", "license", "print memcached and libevent license");
    o.optflag("V", "version", "print version and exit");
    o.optmulti(
        "P",
        "pidfile",
        "save PID in <file>, only used with -d option",
        "<file>",
    );
    o.optmulti(
        "f",
        "slab-growth-factor",
        "chunk size growth factor (default: 1.25)",
        "<factor>",
    );
    o.optmulti(
        "n",
        "slab-min-size",
        "min space used for key+value+flags (default: 48)",
        "<bytes>",
    );
    o.optflag(
        "L",
        "enable-largepages",
        "try to use large memory pages (not yet supported)",
    );
    o.optmulti(
        "D",
        "",
        "use <char> as the delimiter between key prefixes and IDs (turns on stats detail)",
        "<char>",
    );
    o.optmulti(
        "t",
        "threads",
        "accepted for compatibility: one event loop serves all connections",
        "<num>",
    );
    o.optmulti(
        "R",
        "max-reqs-per-event",
        "maximum number of requests per event (default: 20)",
        "<num>",
    );
    o.optflag("C", "disable-cas", "disable use of CAS");
    o.optmulti(
        "b",
        "listen-backlog",
        "set the backlog queue limit (default: 1024)",
        "<num>",
    );
    o.optmulti(
        "B",
        "protocol",
        "protocol - one of ascii, binary, or auto (default: auto)",
        "<name>",
    );
    o.optmulti(
        "I",
        "max-item-size",
        "adjusts max item size (default: 1m, min: 1k, max: 1024m)",
        "<num>",
    );
    o.optflag("S", "enable-sasl", "turn on Sasl authentication");
    o.optflag("F", "disable-flush-all", "disable flush_all command");
    o.optflag(
        "X",
        "disable-dumping",
        "disable stats cachedump and lru_crawler metadump",
    );
    o.optflag(
        "W",
        "disable-watch",
        "disable watch commands (live logging)",
    );
    o.optmulti(
        "Y",
        "auth-file",
        "(EXPERIMENTAL) enable ASCII protocol authentication. format:\n                          user:pass\\nuser2:pass2\\n",
        "<file>",
    );
    o.optmulti(
        "e",
        "memory-file",
        "(EXPERIMENTAL) mmap a file for item memory (not supported)",
        "<file>",
    );
    o.optflag("Z", "enable-ssl", "enable TLS/SSL (not supported)");
    o.optmulti(
        "N",
        "napi-ids",
        "number of napi ids (not supported)",
        "<num>",
    );
    o.optmulti(
        "o",
        "extended",
        "comma separated list of extended options",
        "<opts>",
    );
    o
}

/// The `-h` text, laid out as memcached lays out its own.
pub fn usage() -> String {
    let mut text = format!(
        "rmemcached {VERSION}\n\
         memcached {MEMCACHED_VERSION} compatible. One single-threaded event loop serves\n\
         every connection; -t is accepted and reported, but starts no threads.\n"
    );
    for (short, long, arg, help) in OPTION_HELP {
        let flags = match arg {
            Some(a) => format!("-{short}, --{long}=<{a}>"),
            None => format!("-{short}, --{long}"),
        };
        text.push_str(&format!("{flags:<32}{help}\n"));
    }
    text.push_str(&format!(
        "{:<32}{}\n",
        "-D <char>",
        "use <char> as the delimiter between key prefixes and IDs (turns on stats detail)"
    ));
    text.push_str(
        "-o, --extended                  comma separated list of extended options:\n\
         \x20  - idle_timeout:          timeout for idle connections (default: 0, off)\n\
         \x20  - hashpower:             initial hash table power (default: 16)\n\
         \x20  - no_hashexpand:         do not grow the hash table\n\
         \x20  - slab_chunk_max:        largest chunk size (default: 512k)\n\
         \x20  - maxconns_fast:         reject new connections over the limit at once (default)\n\
         \x20  - no_maxconns_fast:      pause accepting instead\n\
         \x20  - track_sizes:           enable `stats sizes`\n\
         \x20  - io_uring:              serve connections through io_uring (builds with\n\
         \x20                           the io-uring feature; falls back to epoll);\n\
         \x20                           RMEMCACHED_IO_URING=1 in the environment does\n\
         \x20                           the same\n",
    );
    text
}

fn license() -> String {
    format!(
        "rmemcached {VERSION}: a memcached-compatible server written from scratch in Rust.\n\
         Protocol and behaviour follow memcached {MEMCACHED_VERSION} (BSD licensed, \
         Copyright (c) 2003, Danga Interactive, Inc.).\n"
    )
}

/// memcached 1.6.18 suboptions of subsystems rmemcached does not have,
/// with the subsystem's name; other unknown suboptions get memcached's own
/// `Illegal suboption` message.
fn unsupported_suboption(key: &str) -> Option<&'static str> {
    Some(match key {
        k if k.starts_with("ext_") => "extstore",
        k if k.starts_with("ssl_") => "TLS",
        k if k.starts_with("proxy_") => "the proxy",
        "watcher_logbuf_size" | "worker_logbuf_size" => "the logger",
        "read_buf_mem_limit" | "resp_obj_mem_limit" => "memcached's buffer pools",
        "drop_privileges" | "no_drop_privileges" | "relaxed_privileges" => "the seccomp sandbox",
        "slab_sizes" => "explicit slab class sizes",
        "no_chunked_items" => "unchunked large items",
        "inline_ascii_resp" | "no_inline_ascii_resp" => "inline ASCII responses",
        "sock_cookie_id" => "socket cookies",
        _ => return None,
    })
}

/// Parses `args` (without the program name).
pub fn parse(prog: &str, args: &[String]) -> Result<Parsed, Refused> {
    let m = options()
        .parse(args)
        .map_err(|e| getopt_error(prog, args, e))?;
    if let Some(extra) = m.free.first() {
        return Err(refuse(format!(
            "rmemcached: unexpected argument \"{extra}\""
        )));
    }
    if m.opt_present("h") {
        return Ok(Parsed::Print(usage()));
    }
    if m.opt_present("V") {
        return Ok(Parsed::Print(format!("rmemcached {VERSION}\n")));
    }
    if m.opt_present("i") {
        return Ok(Parsed::Print(license()));
    }
    for (flag, what) in [
        ("L", "-L (large pages)"),
        ("e", "-e (memory file)"),
        ("Z", "-Z (TLS)"),
        ("N", "-N (NAPI ids)"),
    ] {
        if m.opt_present(flag) {
            return Err(refuse(format!("rmemcached: {what} is not supported yet")));
        }
    }

    let mut c = Config::default();
    // As with getopt, a repeated option's last value wins.
    let last = |flag: &str| m.opt_strs(flag).pop();
    let num = |flag: &str| last(flag).map(|v| atoi(&v));
    if let Some(p) = num("p") {
        c.port = u16::try_from(p).map_err(|_| refuse(format!("rmemcached: invalid port {p}")))?;
    }
    if let Some(u) = num("U") {
        c.udp_port =
            u16::try_from(u).map_err(|_| refuse(format!("rmemcached: invalid UDP port {u}")))?;
    }
    c.unix_socket = last("s");
    if let Some(a) = last("a") {
        // memcached reads the mask with strtol(optarg, NULL, 8).
        let digits: String = a
            .trim_start()
            .chars()
            .take_while(|c| ('0'..='7').contains(c))
            .collect();
        c.unix_mask = u32::from_str_radix(&digits, 8).unwrap_or(0);
    }
    c.sasl = m.opt_present("S");
    c.auth_file = last("Y");
    for l in m.opt_strs("l") {
        c.listen
            .extend(l.split(',').filter(|s| !s.is_empty()).map(str::to_owned));
    }
    c.daemonize = m.opt_present("d");
    c.coredumps = m.opt_present("r");
    c.user = last("u");
    if let Some(mb) = num("m") {
        // memcached takes atoi's value as is: `-m 0` and `-m abc` fail the
        // item size check below.
        c.maxbytes = (mb.max(0) as usize).saturating_mul(1024 * 1024);
    }
    c.evict_to_free = !m.opt_present("M");
    if let Some(n) = num("c") {
        if n <= 0 {
            return Err(refuse("Maximum connections must be greater than 0"));
        }
        c.maxconns = n as usize;
    }
    c.lock_memory = m.opt_present("k");
    c.verbose = m.opt_count("v") as u32;
    c.pidfile = last("P");
    if let Some(f) = last("f") {
        c.factor = f.trim().parse::<f64>().unwrap_or(0.0);
        if c.factor <= 1.0 {
            return Err(refuse("Factor must be greater than 1"));
        }
    }
    if let Some(n) = num("n") {
        if n <= 0 {
            return Err(refuse("Chunk size must be greater than 0"));
        }
        c.chunk_size = n as usize;
    }
    if let Some(t) = num("t") {
        if t <= 0 {
            return Err(refuse("Number of threads must be greater than 0"));
        }
        c.threads = t as u32;
    }
    if let Some(r) = num("R") {
        if r <= 0 {
            return Err(refuse(
                "Number of requests per event must be greater than 0",
            ));
        }
        c.reqs_per_event = r as u32;
    }
    c.use_cas = !m.opt_present("C");
    if let Some(b) = num("b") {
        c.backlog = b as i32;
    }
    match last("B").as_deref() {
        None | Some("auto") => {}
        Some("ascii") => c.binding_protocol = "ascii",
        Some("binary") => c.binding_protocol = "binary",
        Some(other) => {
            return Err(refuse(format!(
                "Invalid value for binding protocol: {other}\n -- should be one of auto, binary, or ascii"
            )))
        }
    }
    let protocol_specified = m.opt_present("B");
    if c.sasl {
        if !protocol_specified {
            c.binding_protocol = "binary";
        } else if c.binding_protocol != "binary" {
            return Err(inconsistent(
                "ERROR: You cannot allow the ASCII protocol while using SASL.",
            ));
        }
        if c.udp_port != 0 {
            return Err(inconsistent(
                "ERROR: Cannot enable UDP while using binary SASL authentication.",
            ));
        }
    }
    if c.auth_file.is_some() {
        if !protocol_specified {
            c.binding_protocol = "ascii";
        } else if c.binding_protocol != "ascii" {
            return Err(inconsistent(
                "ERROR: You cannot allow the BINARY protocol while using ascii authentication tokens.",
            ));
        }
    }
    if c.auth_file.is_some() && c.udp_port != 0 {
        return Err(inconsistent(
            "Cannot use UDP with ascii authentication enabled (-U 0 to disable)",
        ));
    }
    if let Some(i) = last("I") {
        let v = size_with_unit(&i);
        if v < 0 {
            return Err(inconsistent(
                "Item max size cannot be less than 1024 bytes.",
            ));
        }
        c.item_size_max = v as usize;
    }
    if let Some(d) = last("D") {
        // memcached takes the first character and turns detail stats on.
        c.prefix_delimiter = d.bytes().next().unwrap_or(0);
        c.detail_enabled = true;
    }
    c.flush_enabled = !m.opt_present("F");
    c.dump_enabled = !m.opt_present("X");
    c.watch_enabled = !m.opt_present("W");
    c.shutdown_enabled = m.opt_present("A");

    for group in m.opt_strs("o") {
        for opt in group.split(',').filter(|s| !s.is_empty()) {
            let (key, val) = match opt.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (opt, None),
            };
            let need = |v: Option<&str>| {
                v.ok_or_else(|| refuse(format!("rmemcached: -o {key} needs a value")))
                    .map(str::to_owned)
            };
            match key {
                "idle_timeout" => c.idle_timeout = atoi(&need(val)?).max(0) as u32,
                "hashpower" => {
                    let hp = atoi(&need(val)?);
                    if hp < 12 {
                        return Err(refuse(format!(
                            "Initial hashtable multiplier of {hp} is too low"
                        )));
                    }
                    if hp > 32 {
                        return Err(refuse(format!(
                            "Initial hashtable multiplier of {hp} is too high\n\
                             Choose a value based on \"STAT hash_power_level\" from a running instance"
                        )));
                    }
                    c.hashpower_init = hp as u32;
                }
                "no_hashexpand" => c.hash_expand = false,
                "slab_chunk_max" => {
                    c.slab_chunk_max = size_with_unit(&need(val)?).max(0) as usize;
                }
                "hot_lru_pct" | "warm_lru_pct" => {
                    let v = strtoul(need(val)?.as_bytes()).unwrap_or(0);
                    if !(1..80).contains(&v) {
                        return Err(refuse(format!("{key} must be > 1 and < 80")));
                    }
                    if key == "hot_lru_pct" {
                        c.lru.hot_lru_pct = v;
                    } else {
                        c.lru.warm_lru_pct = v;
                    }
                }
                "hot_max_factor" | "warm_max_factor" => {
                    let v = need(val)?.trim().parse::<f64>().unwrap_or(0.0);
                    if v <= 0.0 {
                        return Err(refuse(format!("{key} must be > 0")));
                    }
                    if key == "hot_max_factor" {
                        c.lru.hot_max_factor = v;
                    } else {
                        c.lru.warm_max_factor = v;
                    }
                }
                "temporary_ttl" => {
                    c.lru.temp_lru = true;
                    c.lru.temporary_ttl = atoi(&need(val)?).max(0) as u32;
                }
                "lru_maintainer" => c.lru_maintainer = true,
                "no_lru_maintainer" => c.lru_maintainer = false,
                "lru_crawler" => c.lru_crawler = true,
                "no_lru_crawler" => c.lru_crawler = false,
                "lru_crawler_sleep" => {
                    let v = atoi(&need(val)?);
                    if !(0..=1_000_000).contains(&v) {
                        return Err(refuse("LRU crawler sleep must be between 0 and 1 second"));
                    }
                    c.lru_crawler_sleep = v as u32;
                }
                "lru_crawler_tocrawl" => {
                    c.lru_crawler_tocrawl = strtoul(need(val)?.as_bytes())
                        .ok_or_else(|| refuse("lru_crawler_tocrawl takes a numeric 32bit value"))?;
                }
                "slab_reassign" => c.slab_reassign = true,
                "no_slab_reassign" => c.slab_reassign = false,
                "slab_automove" => {
                    let v = atoi(&need(val)?);
                    if !(0..=2).contains(&v) {
                        return Err(refuse("slab_automove must be between 0 and 2"));
                    }
                    c.slab_automove = v as u32;
                }
                "slab_automove_ratio" => {
                    let v = need(val)?.trim().parse::<f64>().unwrap_or(0.0);
                    if v <= 0.0 || v >= 1.0 {
                        return Err(refuse("slab_automove_ratio must be > 0 and < 1"));
                    }
                    c.slab_automove_ratio = v;
                }
                "slab_automove_freeratio" => {
                    let v = need(val)?.trim().parse::<f64>().unwrap_or(-1.0);
                    if !(0.0..1.0).contains(&v) {
                        return Err(refuse("slab_automove_freeratio must be >= 0 and < 1"));
                    }
                    c.slab_automove_freeratio = v;
                }
                "slab_automove_window" => {
                    let v = strtoul(need(val)?.as_bytes()).unwrap_or(0);
                    if v < 3 {
                        return Err(refuse("slab_automove_window must be > 2"));
                    }
                    c.slab_automove_window = v;
                }
                "tail_repair_time" => {
                    let v = atoi(&need(val)?);
                    if v < 10 {
                        return Err(refuse(
                            "Cannot set tail_repair_time to less than 10 seconds",
                        ));
                    }
                    c.tail_repair_time = v as u32;
                }
                // The index hashes with its own function whatever is named;
                // the choice is kept and reported for compatibility.
                "hash_algorithm" => match need(val)?.as_str() {
                    "murmur3" => c.hash_algorithm = "murmur3",
                    "jenkins" => c.hash_algorithm = "jenkins",
                    "xxh3" => c.hash_algorithm = "xxh3",
                    other => return Err(refuse(format!("Unknown hash_algorithm option: {other}"))),
                },
                // 1.6's defaults already are the "modern" ones.
                "modern" => {}
                "no_modern" => {
                    c.maxconns_fast = false;
                    c.slab_reassign = false;
                    c.slab_automove = 0;
                    c.lru_crawler = false;
                    c.lru_maintainer = false;
                    c.hash_algorithm = "jenkins";
                    c.slab_chunk_max = c.slab_page_size;
                }
                "maxconns_fast" => c.maxconns_fast = true,
                "no_maxconns_fast" => c.maxconns_fast = false,
                "track_sizes" => c.track_sizes = true,
                "io_uring" if cfg!(feature = "io-uring") => c.io_uring = true,
                "io_uring" => {
                    return Err(refuse(
                        "rmemcached: -o io_uring needs a build with --features io-uring",
                    ))
                }
                _ => {
                    return Err(match unsupported_suboption(key) {
                        Some(what) => {
                            refuse(format!("rmemcached: -o {key} is not supported ({what})"))
                        }
                        None => refuse(format!("Illegal suboption \"{key}\"")),
                    })
                }
            }
        }
    }

    // memcached keeps the hash table above its item lock table, whose size
    // follows the thread count.
    let lock_power = match c.threads {
        0..=2 => 10,
        3 => 11,
        4 => 12,
        5..=10 => 13,
        11..=20 => 14,
        _ => 15,
    };
    if c.hashpower_init != 0 && c.hashpower_init <= lock_power {
        return Err(refuse(format!(
            "Hash table power size ({}) cannot be equal to or less than item lock table ({lock_power})\n\
             Item lock table grows with `-t N` (worker threadcount)\n\
             Hash table grows with `-o hashpower=N` ",
            c.hashpower_init
        )));
    }
    if c.lru.hot_lru_pct + c.lru.warm_lru_pct > 80 {
        return Err(inconsistent(
            "hot_lru_pct + warm_lru_pct cannot be more than 80% combined",
        ));
    }
    if c.lru.hot_max_factor <= 0.0 || c.lru.warm_max_factor <= 0.0 {
        return Err(inconsistent(
            "hot_max_factor and warm_max_factor must be greater than 0",
        ));
    }
    // The segmented LRU needs the maintainer (here: the in-loop juggler).
    if !c.lru_maintainer {
        c.lru.segmented = false;
    }
    // memcached's consistency checks, with its messages.
    if c.item_size_max < 1024 {
        return Err(inconsistent(
            "Item max size cannot be less than 1024 bytes.",
        ));
    }
    if c.item_size_max > c.maxbytes / 2 {
        return Err(inconsistent(
            "Cannot set item size limit higher than 1/2 of memory max.",
        ));
    }
    if c.item_size_max > 1024 * 1024 * 1024 {
        return Err(inconsistent(
            "Cannot set item size limit higher than a gigabyte.",
        ));
    }
    if c.slab_chunk_max > c.item_size_max {
        return Err(inconsistent(format!(
            "slab_chunk_max (bytes: {}) cannot be larger than -I (item_size_max {})",
            c.slab_chunk_max, c.item_size_max
        )));
    }
    if c.slab_chunk_max == 0 || c.item_size_max % c.slab_chunk_max != 0 {
        return Err(inconsistent(format!(
            "-I (item_size_max: {}) must be evenly divisible by slab_chunk_max (bytes: {})",
            c.item_size_max, c.slab_chunk_max
        )));
    }
    if c.slab_page_size % c.slab_chunk_max != 0 {
        return Err(inconsistent(format!(
            "slab_chunk_max (bytes: {}) must divide evenly into {} (slab_page_size)",
            c.slab_chunk_max, c.slab_page_size
        )));
    }
    Ok(Parsed::Run(Box::new(c)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Config {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        match parse("rmemcached", &args) {
            Ok(Parsed::Run(c)) => *c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn seed_command_lines() {
        let c = run(&[
            "-d",
            "-m",
            "1024",
            "-u",
            "memcache",
            "-l",
            "127.0.0.1",
            "-p",
            "11211",
            "-c",
            "1024",
            "-P",
            "/tmp/memcached.pid",
        ]);
        assert_eq!(c.maxbytes, 1024 << 20);
        assert_eq!(c.maxconns, 1024);
        assert!(c.daemonize);
        assert_eq!(c.user.as_deref(), Some("memcache"));
        assert_eq!(c.listen, vec!["127.0.0.1"]);
        let c = run(&["-p", "11211", "-m", "64m", "-d"]);
        assert_eq!(c.maxbytes, 64 << 20);
    }

    #[test]
    fn lists_units_and_verbosity() {
        let c = run(&["-l", "127.0.0.1,::1", "-l", "127.0.0.2", "-vv", "-I", "2m"]);
        assert_eq!(c.listen, vec!["127.0.0.1", "::1", "127.0.0.2"]);
        assert_eq!(c.verbose, 2);
        assert_eq!(c.item_size_max, 2 << 20);
        assert_eq!(c.slab_chunk_max, 512 * 1024);
        let c = run(&["-p", "1", "-p", "2"]);
        assert_eq!(c.port, 2);
    }

    #[test]
    fn suboptions_of_missing_subsystems_are_named() {
        let a = vec!["-o".to_string(), "ext_path=/tmp/x:64m".to_string()];
        let Err(Refused(msg, code)) = parse("rmemcached", &a) else {
            panic!("accepted")
        };
        assert_eq!(msg, "rmemcached: -o ext_path is not supported (extstore)");
        assert_eq!(code, 1);
        let a = vec!["-o".to_string(), "bogus".to_string()];
        let Err(Refused(msg, _)) = parse("rmemcached", &a) else {
            panic!("accepted")
        };
        assert_eq!(msg, "Illegal suboption \"bogus\"");
    }

    #[test]
    fn refusals() {
        for args in [
            &["-j"][..],
            &["--no-such-option"],
            &["-S", "-B", "ascii"],
            &["-S", "-U", "11211"],
            &["-Y", "/tmp/f", "-B", "binary"],
            &["-o", "ext_path=/tmp/x:64m"],
            &["-o", "ssl_chain_cert=/tmp/c"],
            &["-o", "bogus_opt"],
            &["-I", "512"],
            &["-f", "1"],
        ] {
            let a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            assert!(parse("rmemcached", &a).is_err(), "{args:?}");
        }
    }
}

//! memcached's ASCII protocol: one request line in, one [`Command`] out.
//!
//! Pure: bytes in, a command borrowing from those bytes (or "need more")
//! out.  Nothing here allocates, touches a socket or knows about storage.
//! The value block of a storage command is not parsed here: the command
//! carries its length and the connection reads it straight into the item.
//!
//! The tokenizer and the checks follow memcached 1.6 step by step, because
//! clients see the differences: only spaces separate tokens, a `\r` before
//! the `\n` is optional, at most 24 tokens are split per pass, the verb is
//! dispatched on its first letter, and each command checks its token count
//! before anything else (`ERROR`) and then its arguments in a fixed order.

use crate::numbers::{strtol, strtoul, strtoull};

/// Longest key memcached accepts.
pub const KEY_MAX_LENGTH: usize = 250;
/// Buffered bytes without a newline after which a non-`get` line is junk.
pub const MAX_LINE_WITHOUT_NEWLINE: usize = 2048;
/// Tokens split per pass, the terminal token included.
const MAX_TOKENS: usize = 24;

/// What the parser made of the start of a read buffer.
#[derive(Debug, PartialEq)]
pub enum Parsed<'a> {
    /// No complete line yet; read more.
    NeedMore,
    /// The peer sent junk that memcached answers by closing the connection.
    Close,
    /// A complete line: the command and how many bytes it used.
    Line(Command<'a>, usize),
}

/// How a storage command combines the new value with what is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    Cas,
}

/// A storage command line; `vlen` data bytes plus `\r\n` follow it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StoreCmd<'a> {
    pub mode: StoreMode,
    pub key: &'a [u8],
    pub flags: u32,
    pub exptime: i32,
    pub vlen: usize,
    pub cas: u64,
    pub noreply: bool,
}

/// One request of the text protocol.
#[derive(Debug, PartialEq)]
pub enum Command<'a> {
    /// `get`/`gets`/`gat`/`gats`/`bget`: `keys` is the rest of the line,
    /// space separated, walked by [`keys`].
    Get {
        keys: &'a [u8],
        cas: bool,
        touch: Option<i32>,
    },
    Store(StoreCmd<'a>),
    Touch {
        key: &'a [u8],
        exptime: i32,
        noreply: bool,
    },
    Delete {
        key: &'a [u8],
        noreply: bool,
    },
    Arith {
        key: &'a [u8],
        delta: u64,
        incr: bool,
        noreply: bool,
    },
    /// `delay` is `None` when the argument did not parse; the connection
    /// checks `-F` before it reports that, as memcached does.
    FlushAll {
        delay: Option<i32>,
        noreply: bool,
    },
    Version,
    Quit,
    Verbosity {
        level: u32,
        noreply: bool,
    },
    /// Rare admin commands carry their tokens boxed to keep `Command` small.
    Stats(Box<Tokens<'a>>),
    Shutdown(Box<Tokens<'a>>),
    Slabs(Box<Tokens<'a>>),
    Lru(Box<Tokens<'a>>),
    LruCrawler(Box<Tokens<'a>>),
    /// A meta command (`mg ms md ma mn me`): the whole line, which the
    /// meta executor tokenizes itself (no allocation, no 400-byte move).
    Meta(&'a [u8]),
    CacheMemlimit {
        megabytes: Option<u32>,
        noreply: bool,
    },
    /// A fixed reply decided by the parser alone (errors, mostly).
    Reply {
        text: &'static str,
        noreply: bool,
    },
    /// memcached closes connections that send HTTP request lines.
    Close,
}

/// Up to 23 tokens of a line, plus what a 24th pass would start at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tokens<'a> {
    tok: [&'a [u8]; MAX_TOKENS - 1],
    n: usize,
    /// Unsplit remainder when the line had more tokens than one pass takes.
    pub rest: Option<&'a [u8]>,
}

impl<'a> Tokens<'a> {
    /// Number of real tokens (memcached's `ntokens` minus its terminal).
    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Token `i`, or an empty slice past the end (memcached's terminal token).
    pub fn get(&self, i: usize) -> &'a [u8] {
        if i < self.n {
            self.tok[i]
        } else {
            b""
        }
    }

    /// Tokens `first..`, in order (empty when `first` is past the end).
    pub fn from(&self, first: usize) -> &[&'a [u8]] {
        &self.tok[first.min(self.n)..self.n]
    }

    /// The last real token, which is where memcached looks for `noreply`.
    fn last_is_noreply(&self) -> bool {
        self.n > 0 && self.tok[self.n - 1] == b"noreply"
    }
}

/// Splits on single spaces like memcached's `tokenize_command`.
pub fn tokenize(line: &[u8]) -> Tokens<'_> {
    let mut t = Tokens {
        tok: [b""; MAX_TOKENS - 1],
        n: 0,
        rest: None,
    };
    let mut start = 0;
    let mut i = 0;
    while i < line.len() {
        if line[i] == b' ' {
            if start != i {
                t.tok[t.n] = &line[start..i];
                t.n += 1;
                if t.n == MAX_TOKENS - 1 {
                    i += 1;
                    t.rest = (i < line.len()).then(|| &line[i..]);
                    return t;
                }
            }
            start = i + 1;
        }
        i += 1;
    }
    if start < line.len() {
        t.tok[t.n] = &line[start..];
        t.n += 1;
    }
    t
}

/// Iterates over the space-separated keys of a get line.
pub fn keys(region: &[u8]) -> impl Iterator<Item = &[u8]> {
    region.split(|&b| b == b' ').filter(|k| !k.is_empty())
}

/// Lines up to this long are scanned a word at a time: for the short
/// lines of most requests that beats `memchr`'s set-up.
const SHORT_SCAN: usize = 64;

const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
const NEWLINES: u64 = u64::from_ne_bytes([b'\n'; 8]);

/// Index of the first `\n` or NUL in `buf`.  A NUL ends memcached's
/// C-string line early, so one pass finds whichever comes first.
fn find_newline_or_nul(buf: &[u8]) -> Option<usize> {
    let short = buf.len().min(SHORT_SCAN);
    let mut i = 0;
    while i + 8 <= short {
        let mut word = [0; 8];
        word.copy_from_slice(&buf[i..i + 8]);
        let w = u64::from_le_bytes(word);
        // A byte of `v` is zero where `v - ONES` borrows into its high bit
        // while the byte's own high bit is clear; the lowest such byte is
        // exact (only bytes above a zero can be flagged falsely).
        let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
        let hits = zero(w) | zero(w ^ NEWLINES);
        if hits != 0 {
            return Some(i + (hits.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    if let Some(p) = buf[i..short].iter().position(|&b| b == b'\n' || b == 0) {
        return Some(i + p);
    }
    if short == buf.len() {
        // Most often an empty buffer, after the last request of a read.
        return None;
    }
    memchr::memchr2(b'\n', 0, &buf[short..]).map(|p| short + p)
}

/// Parses the first line in `buf`.
pub fn parse(buf: &[u8]) -> Parsed<'_> {
    let (line, nl) = match find_newline_or_nul(buf) {
        Some(nl) if buf[nl] == b'\n' => {
            let mut line = &buf[..nl];
            if nl > 1 && line[nl - 1] == b'\r' {
                line = &line[..nl - 1];
            }
            (line, Some(nl))
        }
        // memcached works on a C string: a NUL ends the line early.
        Some(z) => (&buf[..z], memchr::memchr(b'\n', &buf[z..]).map(|p| z + p)),
        None => (buf, None),
    };
    let Some(nl) = nl else {
        return if buf.len() > MAX_LINE_WITHOUT_NEWLINE && !is_large_get(buf) {
            Parsed::Close
        } else {
            Parsed::NeedMore
        };
    };
    Parsed::Line(parse_line(line), nl + 1)
}

/// What an unauthenticated connection sent (ASCII authentication, `-Y`).
#[derive(Debug, PartialEq)]
pub enum AuthParsed<'a> {
    NeedMore,
    /// Over 2048 bytes without a newline: memcached closes.
    Close,
    /// A refusal and the bytes it consumed.
    Refused(&'static str, usize),
    /// `set <any> <any> <any> <n>` and `user pass` in its data block.
    Login {
        user: &'a [u8],
        pass: &'a [u8],
        used: usize,
    },
}

/// Parses memcached's ASCII login: a `set` line whose data is
/// `user pass`; anything else is refused line by line.
pub fn parse_auth(buf: &[u8]) -> AuthParsed<'_> {
    if buf.len() < 2 {
        return AuthParsed::NeedMore;
    }
    let Some(nl) = memchr::memchr(b'\n', buf) else {
        return if buf.len() > MAX_LINE_WITHOUT_NEWLINE {
            AuthParsed::Close
        } else {
            AuthParsed::NeedMore
        };
    };
    let line = &buf[..nl];
    let line = line.split(|&b| b == 0).next().unwrap_or(line);
    let t = tokenize(line);
    // memcached leaves the `\r` on the last token; strtoul stops at it.
    let size = t.get(4);
    let size = size.strip_suffix(b"\r").unwrap_or(size);
    let size = match strtoul(size) {
        Some(n) if t.len() >= 5 && t.get(0) == b"set" => n as usize,
        _ => return AuthParsed::Refused("CLIENT_ERROR unauthenticated", nl + 1),
    };
    let data_start = nl + 1;
    let used = data_start + size + 2;
    if buf.len() < used {
        return AuthParsed::NeedMore;
    }
    let data = &buf[data_start..used];
    if !data.ends_with(b"\r\n") {
        return AuthParsed::Refused("CLIENT_ERROR bad command line termination", used);
    }
    let payload = &data[..size];
    let payload = payload.split(|&b| b == 0).next().unwrap_or(payload);
    let p = tokenize(payload);
    if p.len() < 2 {
        return AuthParsed::Refused("CLIENT_ERROR bad authentication token format", used);
    }
    AuthParsed::Login {
        user: p.get(0),
        pass: p.get(1),
        used,
    }
}

/// Only multi-gets may exceed the line limit; memcached lets up to 100
/// leading spaces precede them.
fn is_large_get(buf: &[u8]) -> bool {
    let spaces = buf.iter().take_while(|&&b| b == b' ').count();
    let rest = &buf[spaces..];
    spaces <= 100 && (rest.starts_with(b"get ") || rest.starts_with(b"gets "))
}

const ERROR: &str = "ERROR";
const BAD_FORMAT: &str = "CLIENT_ERROR bad command line format";
const BAD_EXPTIME: &str = "CLIENT_ERROR invalid exptime argument";
const BAD_DELTA: &str = "CLIENT_ERROR invalid numeric delta argument";
const BAD_DELETE: &str = "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]";

fn reply(text: &'static str, noreply: bool) -> Command<'static> {
    Command::Reply { text, noreply }
}

/// Dispatches one complete line (without its line ending).
pub fn parse_line(line: &[u8]) -> Command<'_> {
    // Meta commands, the hot path of their clients, skip tokenizing here.
    if let [b'm', b'g' | b's' | b'd' | b'n' | b'a' | b'e', rest @ ..] = line {
        if rest.is_empty() || rest[0] == b' ' {
            return Command::Meta(line);
        }
    }
    // A plain get, most of all requests, needs no tokens: its keys are
    // the line after the verb and the spaces that follow it.
    if let Some(rest) = line.strip_prefix(b"get ") {
        let keys = &rest[rest.iter().take_while(|&&b| b == b' ').count()..];
        if !keys.is_empty() {
            return Command::Get {
                keys,
                cas: false,
                touch: None,
            };
        }
    }
    let t = tokenize(line);
    // memcached's ntokens counts a terminal token; `n` here does not.
    let n = t.len();
    if n == 0 || t.get(0).len() < 2 {
        return reply(ERROR, false);
    }
    let verb = t.get(0);
    match verb[0] {
        b'm' if verb.len() == 2 => match verb[1] {
            b'g' | b's' | b'd' | b'n' | b'a' | b'e' => Command::Meta(line),
            _ => reply(ERROR, false),
        },
        b'g' => {
            if n < 2 {
                return reply(ERROR, false);
            }
            match verb {
                b"get" => get(line, &t, false, false),
                b"gets" => get(line, &t, true, false),
                b"gat" => get(line, &t, false, true),
                b"gats" => get(line, &t, true, true),
                _ => reply(ERROR, false),
            }
        }
        b's' => match verb {
            b"set" => store(&t, StoreMode::Set),
            b"stats" => Command::Stats(Box::new(t)),
            b"shutdown" => Command::Shutdown(Box::new(t)),
            b"slabs" => Command::Slabs(Box::new(t)),
            _ => reply(ERROR, false),
        },
        b'a' => match verb {
            b"add" => store(&t, StoreMode::Add),
            b"append" => store(&t, StoreMode::Append),
            _ => reply(ERROR, false),
        },
        b'c' => match verb {
            b"cas" => store(&t, StoreMode::Cas),
            b"cache_memlimit" => {
                if n != 2 && n != 3 {
                    return reply(ERROR, false);
                }
                Command::CacheMemlimit {
                    megabytes: strtoul(t.get(1)),
                    noreply: t.last_is_noreply(),
                }
            }
            _ => reply(ERROR, false),
        },
        b'i' => match verb {
            b"incr" => arith(&t, true),
            _ => reply(ERROR, false),
        },
        b'd' => match verb {
            b"delete" => delete(&t),
            b"decr" => arith(&t, false),
            _ => reply(ERROR, false),
        },
        b't' => match verb {
            b"touch" => touch(&t),
            _ => reply(ERROR, false),
        },
        _ => match verb {
            b"replace" => store(&t, StoreMode::Replace),
            b"prepend" => store(&t, StoreMode::Prepend),
            b"bget" => get(line, &t, false, false),
            b"flush_all" => flush_all(&t),
            b"version" => Command::Version,
            b"lru_crawler" => Command::LruCrawler(Box::new(t)),
            b"lru" if n < 2 => reply(ERROR, false),
            b"lru" => Command::Lru(Box::new(t)),
            b"quit" => Command::Quit,
            b"verbosity" => {
                if n != 2 && n != 3 {
                    return reply(ERROR, false);
                }
                let noreply = t.last_is_noreply();
                match strtoul(t.get(1)) {
                    Some(level) => Command::Verbosity { level, noreply },
                    None => reply(BAD_FORMAT, noreply),
                }
            }
            _ if t.get(n - 1).starts_with(b"HTTP/") => Command::Close,
            _ => reply(ERROR, false),
        },
    }
}

/// The key region of a get line: everything from the first key token on.
fn get<'a>(line: &'a [u8], t: &Tokens<'a>, cas: bool, touch: bool) -> Command<'a> {
    let first_key = if touch { 2 } else { 1 };
    let touch = if touch {
        match strtol(t.get(1)) {
            Some(e) => Some(e),
            None => return reply(BAD_EXPTIME, false),
        }
    } else {
        None
    };
    let keys = if first_key < t.len() {
        let off = t.get(first_key).as_ptr() as usize - line.as_ptr() as usize;
        &line[off..]
    } else {
        // memcached re-tokenizes the unsplit remainder for further keys.
        t.rest.unwrap_or(b"")
    };
    Command::Get { keys, cas, touch }
}

fn store<'a>(t: &Tokens<'a>, mode: StoreMode) -> Command<'a> {
    let n = t.len();
    let want = if mode == StoreMode::Cas { 6 } else { 5 };
    if n != want && n != want + 1 {
        return reply(ERROR, false);
    }
    let noreply = t.last_is_noreply();
    let key = t.get(1);
    if key.len() > KEY_MAX_LENGTH {
        return reply(BAD_FORMAT, noreply);
    }
    let (Some(flags), Some(exptime), Some(vlen)) =
        (strtoul(t.get(2)), strtol(t.get(3)), strtol(t.get(4)))
    else {
        return reply(BAD_FORMAT, noreply);
    };
    let mut cas = 0;
    if mode == StoreMode::Cas {
        match strtoull(t.get(5)) {
            Some(c) => cas = c,
            None => return reply(BAD_FORMAT, noreply),
        }
    }
    if !(0..=i32::MAX - 2).contains(&vlen) {
        return reply(BAD_FORMAT, noreply);
    }
    Command::Store(StoreCmd {
        mode,
        key,
        flags,
        exptime,
        vlen: vlen as usize,
        cas,
        noreply,
    })
}

fn touch<'a>(t: &Tokens<'a>) -> Command<'a> {
    if t.len() != 3 && t.len() != 4 {
        return reply(ERROR, false);
    }
    let noreply = t.last_is_noreply();
    let key = t.get(1);
    if key.len() > KEY_MAX_LENGTH {
        return reply(BAD_FORMAT, noreply);
    }
    match strtol(t.get(2)) {
        Some(exptime) => Command::Touch {
            key,
            exptime,
            noreply,
        },
        None => reply(BAD_EXPTIME, noreply),
    }
}

fn arith<'a>(t: &Tokens<'a>, incr: bool) -> Command<'a> {
    if t.len() != 3 && t.len() != 4 {
        return reply(ERROR, false);
    }
    let noreply = t.last_is_noreply();
    let key = t.get(1);
    if key.len() > KEY_MAX_LENGTH {
        return reply(BAD_FORMAT, noreply);
    }
    match strtoull(t.get(2)) {
        Some(delta) => Command::Arith {
            key,
            delta,
            incr,
            noreply,
        },
        None => reply(BAD_DELTA, noreply),
    }
}

fn delete<'a>(t: &Tokens<'a>) -> Command<'a> {
    let n = t.len();
    if !(2..=4).contains(&n) {
        return reply(ERROR, false);
    }
    let mut noreply = false;
    if n > 2 {
        // Only the legacy `delete <key> 0` form may carry a hold time.
        let hold_is_zero = t.get(2) == b"0";
        noreply = t.last_is_noreply();
        let valid = (n == 3 && (hold_is_zero || noreply)) || (n == 4 && hold_is_zero && noreply);
        if !valid {
            return reply(BAD_DELETE, noreply);
        }
    }
    let key = t.get(1);
    if key.len() > KEY_MAX_LENGTH {
        return reply(BAD_FORMAT, noreply);
    }
    Command::Delete { key, noreply }
}

fn flush_all<'a>(t: &Tokens<'a>) -> Command<'a> {
    let n = t.len();
    if !(1..=3).contains(&n) {
        return reply(ERROR, false);
    }
    let noreply = t.last_is_noreply();
    let has_delay = n != if noreply { 2 } else { 1 };
    let delay = if has_delay { strtol(t.get(1)) } else { Some(0) };
    Command::FlushAll { delay, noreply }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_login() {
        assert_eq!(parse_auth(b"s"), AuthParsed::NeedMore);
        assert_eq!(
            parse_auth(b"get a\r\n"),
            AuthParsed::Refused("CLIENT_ERROR unauthenticated", 7)
        );
        assert_eq!(parse_auth(b"set a 0 0 8\r\nalice"), AuthParsed::NeedMore);
        assert_eq!(
            parse_auth(b"set a 0 0 8\r\nalice pw\r\nget"),
            AuthParsed::Login {
                user: b"alice",
                pass: b"pw",
                used: 23
            }
        );
        assert_eq!(
            parse_auth(b"set a 0 0 5\r\nalice\r\n"),
            AuthParsed::Refused("CLIENT_ERROR bad authentication token format", 20)
        );
        assert_eq!(
            parse_auth(b"set a 0 0 2\r\nabcd"),
            AuthParsed::Refused("CLIENT_ERROR bad command line termination", 17)
        );
        assert_eq!(parse_auth(&[b'x'; 3000]), AuthParsed::Close);
    }

    fn line(s: &[u8]) -> Command<'_> {
        match parse(s) {
            Parsed::Line(c, used) => {
                assert_eq!(used, s.len());
                c
            }
            other => panic!("{other:?}"),
        }
    }

    fn text(c: Command<'_>) -> (&'static str, bool) {
        match c {
            Command::Reply { text, noreply } => (text, noreply),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn need_more_until_newline_and_close_on_long_junk() {
        assert_eq!(parse(b"get foo"), Parsed::NeedMore);
        assert_eq!(parse(&[b'x'; 2049]), Parsed::Close);
        assert_eq!(parse(&[b'x'; 2048]), Parsed::NeedMore);
        let mut big_get = b"get ".to_vec();
        big_get.resize(5000, b'k');
        assert_eq!(parse(&big_get), Parsed::NeedMore);
    }

    #[test]
    fn set_line_with_and_without_cr() {
        let want = Command::Store(StoreCmd {
            mode: StoreMode::Set,
            key: b"k",
            flags: 5,
            exptime: 0,
            vlen: 3,
            cas: 0,
            noreply: false,
        });
        assert_eq!(line(b"set k 5 0 3\r\n"), want);
        assert_eq!(line(b"set k 5 0 3\n"), want);
        assert_eq!(line(b"set  k  5 0 3 \r\n"), want);
    }

    #[test]
    fn token_count_errors_come_first() {
        assert_eq!(text(line(b"set k 0 0\r\n")), ("ERROR", false));
        assert_eq!(text(line(b"set k 0 0 1 noreply x\r\n")), ("ERROR", false));
        assert_eq!(text(line(b"\r\n")), ("ERROR", false));
        assert_eq!(text(line(b"GET k\r\n")), ("ERROR", false));
        assert_eq!(text(line(b"get\tk\r\n")), ("ERROR", false));
        assert_eq!(text(line(b"get\r\n")), ("ERROR", false));
    }

    #[test]
    fn noreply_is_taken_before_validation() {
        assert_eq!(
            text(line(b"set k x 0 1 noreply\r\n")),
            ("CLIENT_ERROR bad command line format", true)
        );
        assert_eq!(
            text(line(b"incr k x noreply\r\n")),
            ("CLIENT_ERROR invalid numeric delta argument", true)
        );
    }

    #[test]
    fn key_length_limit() {
        let ok = format!("get {}\r\n", "a".repeat(250));
        assert!(matches!(line(ok.as_bytes()), Command::Get { .. }));
        let long = format!("set {} 0 0 1\r\n", "a".repeat(251));
        assert_eq!(
            text(line(long.as_bytes())),
            ("CLIENT_ERROR bad command line format", false)
        );
    }

    #[test]
    fn delete_forms() {
        assert_eq!(
            line(b"delete k 0\r\n"),
            Command::Delete {
                key: b"k",
                noreply: false
            }
        );
        assert_eq!(
            line(b"delete k 0 noreply\r\n"),
            Command::Delete {
                key: b"k",
                noreply: true
            }
        );
        assert_eq!(text(line(b"delete k 5\r\n")), (BAD_DELETE, false));
        assert_eq!(text(line(b"delete k 5 noreply\r\n")), (BAD_DELETE, true));
    }

    #[test]
    fn flush_all_forms() {
        let f = |d, n| Command::FlushAll {
            delay: d,
            noreply: n,
        };
        assert_eq!(line(b"flush_all\r\n"), f(Some(0), false));
        assert_eq!(line(b"flush_all noreply\r\n"), f(Some(0), true));
        assert_eq!(line(b"flush_all 10 noreply\r\n"), f(Some(10), true));
        assert_eq!(line(b"flush_all abc\r\n"), f(None, false));
    }

    #[test]
    fn get_keys_span_more_than_one_token_pass() {
        let mut l = b"get".to_vec();
        for i in 0..40 {
            l.extend_from_slice(format!(" k{i}").as_bytes());
        }
        l.extend_from_slice(b"\r\n");
        match line(&l) {
            Command::Get { keys: region, .. } => {
                let ks: Vec<_> = keys(region).collect();
                assert_eq!(ks.len(), 40);
                assert_eq!(ks[39], b"k39");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn gat_takes_exptime_first() {
        match line(b"gat 10 a b\r\n") {
            Command::Get {
                keys: k,
                cas: false,
                touch: Some(10),
            } => assert_eq!(keys(k).collect::<Vec<_>>(), vec![&b"a"[..], b"b"]),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            text(line(b"gat x a\r\n")),
            ("CLIENT_ERROR invalid exptime argument", false)
        );
    }

    #[test]
    fn http_lines_close() {
        assert_eq!(line(b"GET / HTTP/1.1\r\n"), Command::Close);
    }

    #[test]
    fn nul_ends_the_line() {
        assert_eq!(line(b"version\0junk\r\n"), Command::Version);
    }

    /// The word-at-a-time scan against a byte-by-byte one: every place
    /// of the `\n` and of a NUL, in lines shorter and longer than the
    /// word-scanned prefix, with bytes that differ from `\n` by one bit.
    #[test]
    fn newline_and_nul_found_wherever_they_are() {
        for len in 0..150 {
            let base: Vec<u8> = (0..len)
                .map(|i| [b'a', 0x0b, 0x8a, 0x01, 0xff][i % 5])
                .collect();
            assert_eq!(find_newline_or_nul(&base), None, "len {len}");
            for at in 0..len {
                for byte in [b'\n', 0] {
                    let mut b = base.clone();
                    b[at] = byte;
                    if at + 1 < len {
                        b[len - 1] = b'\n';
                    }
                    let want = b.iter().position(|&c| c == b'\n' || c == 0);
                    assert_eq!(find_newline_or_nul(&b), want, "len {len} at {at}");
                }
            }
        }
    }

    #[test]
    fn a_nul_cuts_the_line_but_the_newline_ends_the_request() {
        assert_eq!(
            parse(b"get a\0b c\r\nget z\r\n"),
            Parsed::Line(
                Command::Get {
                    keys: b"a",
                    cas: false,
                    touch: None
                },
                11
            )
        );
        assert_eq!(parse(b"get a\0b c"), Parsed::NeedMore);
        assert_eq!(parse(b"\0\n"), Parsed::Line(reply(ERROR, false), 2));
    }

    /// The untokenized get against the tokenized path it stands in for,
    /// over lines of spaces, keys and stray bytes.
    #[test]
    fn plain_get_matches_the_tokenized_get() {
        let parts: [&[u8]; 7] = [b" ", b"  ", b"a", b"key:1", b"\r", b"\t", b"x y"];
        let mut seed = 7u32;
        for _ in 0..20_000 {
            let mut l = b"get".to_vec();
            for _ in 0..seed % 30 {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                l.extend_from_slice(parts[(seed >> 16) as usize % parts.len()]);
            }
            let tokens = tokenize(&l);
            if tokens.get(0) != b"get" {
                continue;
            }
            let tokenized = if tokens.len() < 2 {
                reply(ERROR, false)
            } else {
                get(&l, &tokens, false, false)
            };
            assert_eq!(
                parse_line(&l),
                tokenized,
                "{:?}",
                String::from_utf8_lossy(&l)
            );
        }
    }

    #[test]
    fn plain_get_lines_keep_every_key_after_the_verb() {
        let get = |keys| Command::Get {
            keys,
            cas: false,
            touch: None,
        };
        assert_eq!(line(b"get a\r\n"), get(b"a"));
        assert_eq!(line(b"get   a  b \r\n"), get(b"a  b "));
        assert_eq!(line(b"get a\n"), get(b"a"));
        assert_eq!(text(line(b"get   \r\n")), (ERROR, false));
        assert_eq!(text(line(b"get\r\n")), (ERROR, false));
        assert_eq!(line(b"getx a\r\n"), reply(ERROR, false));
    }
}

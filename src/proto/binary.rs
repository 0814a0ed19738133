//! memcached's binary protocol: 24-byte headers in, requests out; response
//! headers rendered.
//!
//! Pure, like the text parser: bytes in, a [`Request`] borrowing its extras
//! and key from those bytes (or "need more") out.  A request is complete
//! for parsing once its header, extras and key are buffered; a value (set,
//! append) is not parsed here: the connection reads it into the item.
//!
//! [`classify`] decides what memcached's dispatcher decides before any
//! storage is touched: which opcodes exist, which length combinations are
//! protocol errors, and which quiet opcode maps to which loud one.  All
//! integers on the wire are big-endian.

/// First byte of every request (memcached negotiates on it).
pub const REQUEST_MAGIC: u8 = 0x80;
/// First byte of every response.
pub const RESPONSE_MAGIC: u8 = 0x81;
/// Header length, requests and responses alike.
pub const HEADER_LEN: usize = 24;

/// Opcodes memcached serves.
pub mod op {
    pub const GET: u8 = 0x00;
    pub const SET: u8 = 0x01;
    pub const ADD: u8 = 0x02;
    pub const REPLACE: u8 = 0x03;
    pub const DELETE: u8 = 0x04;
    pub const INCREMENT: u8 = 0x05;
    pub const DECREMENT: u8 = 0x06;
    pub const QUIT: u8 = 0x07;
    pub const FLUSH: u8 = 0x08;
    pub const GETQ: u8 = 0x09;
    pub const NOOP: u8 = 0x0a;
    pub const VERSION: u8 = 0x0b;
    pub const GETK: u8 = 0x0c;
    pub const GETKQ: u8 = 0x0d;
    pub const APPEND: u8 = 0x0e;
    pub const PREPEND: u8 = 0x0f;
    pub const STAT: u8 = 0x10;
    pub const SETQ: u8 = 0x11;
    pub const ADDQ: u8 = 0x12;
    pub const REPLACEQ: u8 = 0x13;
    pub const DELETEQ: u8 = 0x14;
    pub const INCREMENTQ: u8 = 0x15;
    pub const DECREMENTQ: u8 = 0x16;
    pub const QUITQ: u8 = 0x17;
    pub const FLUSHQ: u8 = 0x18;
    pub const APPENDQ: u8 = 0x19;
    pub const PREPENDQ: u8 = 0x1a;
    pub const TOUCH: u8 = 0x1c;
    pub const GAT: u8 = 0x1d;
    pub const GATQ: u8 = 0x1e;
    pub const SASL_LIST_MECHS: u8 = 0x20;
    pub const SASL_AUTH: u8 = 0x21;
    pub const SASL_STEP: u8 = 0x22;
    pub const GATK: u8 = 0x23;
    pub const GATKQ: u8 = 0x24;
}

/// Response status codes.
pub mod status {
    pub const SUCCESS: u16 = 0x00;
    pub const KEY_ENOENT: u16 = 0x01;
    pub const KEY_EEXISTS: u16 = 0x02;
    pub const E2BIG: u16 = 0x03;
    pub const EINVAL: u16 = 0x04;
    pub const NOT_STORED: u16 = 0x05;
    pub const DELTA_BADVAL: u16 = 0x06;
    pub const AUTH_ERROR: u16 = 0x20;
    pub const AUTH_CONTINUE: u16 = 0x21;
    pub const UNKNOWN_COMMAND: u16 = 0x81;
    pub const ENOMEM: u16 = 0x82;
}

/// The body memcached sends with an error status.
pub fn status_text(status: u16) -> &'static [u8] {
    match status {
        status::ENOMEM => b"Out of memory",
        status::UNKNOWN_COMMAND => b"Unknown command",
        status::KEY_ENOENT => b"Not found",
        status::EINVAL => b"Invalid arguments",
        status::KEY_EEXISTS => b"Data exists for key.",
        status::E2BIG => b"Too large.",
        status::DELTA_BADVAL => b"Non-numeric server-side value for incr or decr",
        status::NOT_STORED => b"Not stored.",
        status::AUTH_ERROR => b"Auth failure.",
        _ => b"UNHANDLED ERROR",
    }
}

/// A request header, integers in host order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    pub opcode: u8,
    pub keylen: u16,
    pub extlen: u8,
    pub bodylen: u32,
    /// Echoed unchanged, so kept as the wire bytes.
    pub opaque: [u8; 4],
    pub cas: u64,
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

pub fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

pub fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// What the parser made of the start of a read buffer.
#[derive(Debug, PartialEq)]
pub enum Parsed<'a> {
    /// Not yet a whole header, extras and key.
    NeedMore,
    /// The first byte is not a request magic: memcached closes.
    BadMagic,
    /// A request; `used` bytes (header, extras, key) are consumed by it.
    Request(Request<'a>),
}

/// A request whose header, extras and key are buffered.
#[derive(Debug, PartialEq)]
pub struct Request<'a> {
    pub header: Header,
    pub extras: &'a [u8],
    pub key: &'a [u8],
    /// Bytes of header, extras and key.
    pub used: usize,
}

/// Parses the request at the start of `buf`.
pub fn parse(buf: &[u8]) -> Parsed<'_> {
    if buf.len() < HEADER_LEN {
        return Parsed::NeedMore;
    }
    if buf[0] != REQUEST_MAGIC {
        return Parsed::BadMagic;
    }
    let h = Header {
        opcode: buf[1],
        keylen: be16(&buf[2..]),
        extlen: buf[4],
        bodylen: be32(&buf[8..]),
        opaque: [buf[12], buf[13], buf[14], buf[15]],
        cas: be64(&buf[16..]),
    };
    let ext_end = HEADER_LEN + h.extlen as usize;
    let used = ext_end + h.keylen as usize;
    if buf.len() < used {
        return Parsed::NeedMore;
    }
    Parsed::Request(Request {
        header: h,
        extras: &buf[HEADER_LEN..ext_end],
        key: &buf[ext_end..used],
        used,
    })
}

/// What a request asks for, decided from its header alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Get, GetK, Touch, GAT, GATK (and the quiet forms): `touch` carries
    /// the exptime extras were checked to hold.
    Get {
        with_key: bool,
        touch: bool,
        value: bool,
    },
    /// Set, Add, Replace with 8 bytes of extras (flags, exptime).
    Update,
    /// Append or Prepend: no extras.
    Concat {
        append: bool,
    },
    Delete,
    Arith {
        incr: bool,
    },
    Flush,
    Noop,
    Version,
    Quit,
    Stat,
    SaslList,
    SaslAuth {
        step: bool,
    },
}

/// The dispatcher's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Run it; `quiet` suppresses the replies memcached suppresses.
    Run { kind: Kind, quiet: bool },
    /// An opcode memcached does not serve: `Unknown command`, the body
    /// swallowed, the connection kept.
    Unknown,
    /// Key and extras claim more than the body: `Unknown command`, then
    /// close.
    BadLengths,
    /// Lengths wrong for the opcode (or key > 250): `Invalid arguments`,
    /// then close.
    ProtocolError,
}

/// Longest key memcached's internals take.
const KEY_MAX_LENGTH: u16 = 250;

/// memcached's `dispatch_bin_command`, minus the authentication check
/// (the connection knows whether it is authenticated).
pub fn classify(h: &Header) -> Decision {
    let (keylen, extlen, bodylen) = (h.keylen, h.extlen, h.bodylen);
    if u32::from(keylen) + u32::from(extlen) > bodylen {
        return Decision::BadLengths;
    }
    if keylen > KEY_MAX_LENGTH {
        return Decision::ProtocolError;
    }
    let (loud, quiet) = match h.opcode {
        op::SETQ => (op::SET, true),
        op::ADDQ => (op::ADD, true),
        op::REPLACEQ => (op::REPLACE, true),
        op::DELETEQ => (op::DELETE, true),
        op::INCREMENTQ => (op::INCREMENT, true),
        op::DECREMENTQ => (op::DECREMENT, true),
        op::QUITQ => (op::QUIT, true),
        op::FLUSHQ => (op::FLUSH, true),
        op::APPENDQ => (op::APPEND, true),
        op::PREPENDQ => (op::PREPEND, true),
        op::GETQ => (op::GET, true),
        op::GETKQ => (op::GETK, true),
        op::GATQ => (op::GAT, true),
        op::GATKQ => (op::GATK, true),
        other => (other, false),
    };
    let empty = keylen == 0 && extlen == 0 && bodylen == 0;
    let bodylen_is = |n: u32| bodylen == n;
    let ok = |cond: bool, kind: Kind| {
        if cond {
            Decision::Run { kind, quiet }
        } else {
            Decision::ProtocolError
        }
    };
    match loud {
        op::VERSION => ok(empty, Kind::Version),
        op::FLUSH => ok(
            keylen == 0 && bodylen_is(u32::from(extlen)) && (extlen == 0 || extlen == 4),
            Kind::Flush,
        ),
        op::NOOP => ok(empty, Kind::Noop),
        op::SET | op::ADD | op::REPLACE => ok(
            extlen == 8 && keylen != 0 && bodylen >= u32::from(keylen) + 8,
            Kind::Update,
        ),
        op::GET | op::GETK => ok(
            extlen == 0 && bodylen_is(u32::from(keylen)) && keylen > 0,
            Kind::Get {
                with_key: loud == op::GETK,
                touch: false,
                value: true,
            },
        ),
        op::DELETE => ok(
            keylen > 0 && extlen == 0 && bodylen_is(u32::from(keylen)),
            Kind::Delete,
        ),
        op::INCREMENT | op::DECREMENT => ok(
            keylen > 0 && extlen == 20 && bodylen_is(u32::from(keylen) + 20),
            Kind::Arith {
                incr: loud == op::INCREMENT,
            },
        ),
        op::APPEND | op::PREPEND => ok(
            keylen > 0 && extlen == 0,
            Kind::Concat {
                append: loud == op::APPEND,
            },
        ),
        op::STAT => ok(extlen == 0, Kind::Stat),
        op::QUIT => ok(empty, Kind::Quit),
        op::SASL_LIST_MECHS => ok(empty, Kind::SaslList),
        op::SASL_AUTH | op::SASL_STEP => ok(
            extlen == 0 && keylen != 0,
            Kind::SaslAuth {
                step: loud == op::SASL_STEP,
            },
        ),
        op::TOUCH | op::GAT | op::GATK => ok(
            extlen == 4 && keylen != 0,
            Kind::Get {
                with_key: loud == op::GATK,
                touch: true,
                value: loud != op::TOUCH,
            },
        ),
        _ => Decision::Unknown,
    }
}

/// Whether memcached lets this opcode through before SASL authentication.
pub fn allowed_unauthenticated(opcode: u8) -> bool {
    matches!(
        opcode,
        op::SASL_LIST_MECHS | op::SASL_AUTH | op::SASL_STEP | op::VERSION
    )
}

/// The parts of a response header that vary.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResponseHeader {
    pub opcode: u8,
    pub status: u16,
    pub extlen: u8,
    pub keylen: u16,
    pub bodylen: u32,
    pub opaque: [u8; 4],
    pub cas: u64,
}

/// Appends a response header.
pub fn push_header(out: &mut Vec<u8>, r: &ResponseHeader) {
    out.push(RESPONSE_MAGIC);
    out.push(r.opcode);
    out.extend_from_slice(&r.keylen.to_be_bytes());
    out.push(r.extlen);
    out.push(0);
    out.extend_from_slice(&r.status.to_be_bytes());
    out.extend_from_slice(&r.bodylen.to_be_bytes());
    out.extend_from_slice(&r.opaque);
    out.extend_from_slice(&r.cas.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(opcode: u8, keylen: u16, extlen: u8, bodylen: u32) -> Vec<u8> {
        let mut b = vec![REQUEST_MAGIC, opcode];
        b.extend_from_slice(&keylen.to_be_bytes());
        b.push(extlen);
        b.extend_from_slice(&[0, 0, 0]);
        b.extend_from_slice(&bodylen.to_be_bytes());
        b.extend_from_slice(&[1, 2, 3, 4]);
        b.extend_from_slice(&7u64.to_be_bytes());
        b
    }

    #[test]
    fn parse_waits_for_header_extras_and_key() {
        let mut b = header(op::SET, 3, 8, 3 + 8 + 5);
        assert_eq!(parse(&b[..23]), Parsed::NeedMore);
        b.extend_from_slice(&[0, 0, 0, 9, 0, 0, 0, 0]);
        b.extend_from_slice(b"ke");
        assert_eq!(parse(&b), Parsed::NeedMore);
        b.extend_from_slice(b"yvalue");
        let Parsed::Request(r) = parse(&b) else {
            panic!("no request")
        };
        assert_eq!(r.key, b"key");
        assert_eq!(r.extras, &[0, 0, 0, 9, 0, 0, 0, 0]);
        assert_eq!(r.used, 24 + 8 + 3);
        assert_eq!(r.header.opaque, [1, 2, 3, 4]);
        assert_eq!(r.header.cas, 7);
        assert_eq!(r.header.bodylen, 16);
    }

    #[test]
    fn bad_magic_is_reported() {
        let mut b = header(op::GET, 0, 0, 0);
        b[0] = 0x81;
        assert_eq!(parse(&b), Parsed::BadMagic);
    }

    #[test]
    fn classify_follows_memcached_dispatch() {
        let h = |opcode, keylen, extlen, bodylen| Header {
            opcode,
            keylen,
            extlen,
            bodylen,
            ..Header::default()
        };
        assert_eq!(classify(&h(op::GET, 5, 0, 4)), Decision::BadLengths);
        assert_eq!(classify(&h(op::GET, 251, 0, 251)), Decision::ProtocolError);
        assert_eq!(classify(&h(op::GET, 0, 0, 0)), Decision::ProtocolError);
        assert_eq!(classify(&h(0x1b, 0, 0, 9)), Decision::Unknown);
        assert_eq!(
            classify(&h(op::GETKQ, 3, 0, 3)),
            Decision::Run {
                kind: Kind::Get {
                    with_key: true,
                    touch: false,
                    value: true
                },
                quiet: true
            }
        );
        assert_eq!(classify(&h(op::SET, 3, 4, 10)), Decision::ProtocolError);
        assert_eq!(
            classify(&h(op::FLUSHQ, 0, 4, 4)),
            Decision::Run {
                kind: Kind::Flush,
                quiet: true
            }
        );
        assert_eq!(
            classify(&h(op::INCREMENT, 1, 20, 22)),
            Decision::ProtocolError
        );
        assert_eq!(
            classify(&h(op::TOUCH, 1, 4, 5)),
            Decision::Run {
                kind: Kind::Get {
                    with_key: false,
                    touch: true,
                    value: false
                },
                quiet: false
            }
        );
    }

    #[test]
    fn response_header_layout() {
        let mut out = Vec::new();
        push_header(
            &mut out,
            &ResponseHeader {
                opcode: op::GETK,
                status: status::KEY_ENOENT,
                extlen: 4,
                keylen: 3,
                bodylen: 0x0102_0304,
                opaque: [9, 8, 7, 6],
                cas: 0x1122,
            },
        );
        assert_eq!(
            out,
            [0x81, 0x0c, 0, 3, 4, 0, 0, 1, 1, 2, 3, 4, 9, 8, 7, 6, 0, 0, 0, 0, 0, 0, 0x11, 0x22]
        );
    }
}

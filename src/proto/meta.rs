//! memcached's meta commands (`mg ms md ma mn me`): flag parsing and the
//! base64 key encoding.
//!
//! Pure: tokens in, [`Flags`] or memcached's error string out.  Flags are
//! single characters, some with a token glued on (`T30`, `Oabc`); each may
//! appear once.  Which flags a reply echoes, and in what order, is decided
//! while executing, by walking the flag tokens again in request order (as
//! memcached does).

use crate::numbers::{strtol, strtoul, strtoull};

/// memcached counts the command, key and terminal token against this.
pub const MAX_TOKENS: usize = 20;
/// Longest opaque (`O`) token, the `O` included.
pub const MAX_OPAQUE: usize = 32;

pub const BAD_FORMAT: &str = "CLIENT_ERROR bad command line format";

/// What the flag tokens of a meta command ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags {
    /// `b`: the key is base64; it was decoded into the key buffer.
    pub base64: bool,
    /// `u`: no LRU bump.
    pub no_update: bool,
    /// Any of `N T R l h`: the lookup must not bump; the command bumps
    /// after reading the item's access state.
    pub locked: bool,
    /// `N<ttl>`: create on miss with this TTL.
    pub vivify: Option<i32>,
    /// `v`: return the value.
    pub value: bool,
    /// `I`: invalidate (md) / allow a stale store (ms).
    pub set_stale: bool,
    /// `q`: suppress the nominal reply.
    pub no_reply: bool,
    /// `T<ttl>`.
    pub ttl: Option<i32>,
    /// `R<ttl>`: win a recache token when the TTL left is below this.
    pub recache: Option<i32>,
    /// `F<flags>`.
    pub client_flags: u32,
    /// `C<cas>`.
    pub cas: Option<u64>,
    /// `M<mode>`.
    pub mode: Option<u8>,
    /// `J<initial>` (ma).
    pub initial: u64,
    /// `D<delta>` (ma).
    pub delta: u64,
}

/// Parses the flag tokens, decoding `key` in place when `b` is present
/// (returning its new length).  The error is memcached's reply.
pub fn preparse(flags: &[&[u8]], key: &mut [u8]) -> Result<(Flags, usize), &'static str> {
    let mut f = Flags {
        delta: 1,
        ..Flags::default()
    };
    let mut key_len = key.len();
    let mut seen = [false; 127];
    let mut error: Option<&'static str> = None;
    let mut has_error = false;
    let bad_token = "CLIENT_ERROR bad token in command line format";
    let mut fail = |msg: Option<&'static str>| {
        has_error = true;
        if msg.is_some() {
            error = msg;
        }
    };
    for tok in flags {
        let o = tok[0];
        if o >= 127 || seen[o as usize] {
            return Err("CLIENT_ERROR duplicate flag");
        }
        seen[o as usize] = true;
        let arg = &tok[1..];
        match o {
            b'b' => {
                match decode_base64_in_place(&mut key[..key_len]) {
                    Some(n) => key_len = n,
                    None => {
                        key_len = 0;
                        fail(Some("CLIENT_ERROR error decoding key"));
                    }
                }
                f.base64 = true;
            }
            b'N' => {
                f.locked = true;
                match strtol(arg) {
                    Some(v) => f.vivify = Some(v),
                    None => {
                        // Still a vivify request, with memcached's zeroed TTL.
                        f.vivify = Some(0);
                        fail(Some(bad_token));
                    }
                }
            }
            b'T' => {
                f.locked = true;
                match strtol(arg) {
                    Some(v) => f.ttl = Some(v),
                    None => fail(Some(bad_token)),
                }
            }
            b'R' => {
                f.locked = true;
                match strtol(arg) {
                    Some(v) => f.recache = Some(v),
                    None => fail(Some(bad_token)),
                }
            }
            b'l' | b'h' => f.locked = true,
            b'O' | b'P' | b'L' | b'k' | b's' | b't' | b'c' | b'f' => {}
            b'v' => f.value = true,
            b'u' => f.no_update = true,
            b'q' => f.no_reply = true,
            b'F' => match strtoul(arg) {
                Some(v) => f.client_flags = v,
                None => fail(None),
            },
            b'C' => match strtoull(arg) {
                Some(v) => f.cas = Some(v),
                None => fail(Some(bad_token)),
            },
            b'M' => {
                if tok.len() != 2 {
                    fail(Some("CLIENT_ERROR incorrect length for M token"));
                } else {
                    f.mode = Some(tok[1]);
                }
            }
            b'J' => match strtoull(arg) {
                Some(v) => f.initial = v,
                None => fail(Some("CLIENT_ERROR invalid numeric initial value")),
            },
            b'D' => match strtoull(arg) {
                Some(v) => f.delta = v,
                None => fail(Some("CLIENT_ERROR invalid numeric delta value")),
            },
            b'I' => f.set_stale = true,
            _ => return Err("CLIENT_ERROR invalid flag"),
        }
    }
    if has_error {
        Err(error.unwrap_or(BAD_FORMAT))
    } else {
        Ok((f, key_len))
    }
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn sextet(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Decodes padded base64 over itself; `None` when it is not valid or
/// decodes to nothing (memcached's decoder reports both as 0 bytes).
pub fn decode_base64_in_place(buf: &mut [u8]) -> Option<usize> {
    if buf.is_empty() || !buf.len().is_multiple_of(4) {
        return None;
    }
    let quads = buf.len() / 4;
    let mut out = 0;
    for q in 0..quads {
        let chunk = [buf[q * 4], buf[q * 4 + 1], buf[q * 4 + 2], buf[q * 4 + 3]];
        let last = q + 1 == quads;
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut v: u32 = 0;
        for &c in &chunk[..4 - pad] {
            v = (v << 6) | u32::from(sextet(c)?);
        }
        v <<= 6 * pad as u32;
        let bytes = [(v >> 16) as u8, (v >> 8) as u8, v as u8];
        for &b in &bytes[..3 - pad] {
            buf[out] = b;
            out += 1;
        }
    }
    (out > 0).then_some(out)
}

/// Appends the padded base64 encoding of `src`.
pub fn encode_base64(src: &[u8], out: &mut Vec<u8>) {
    for chunk in src.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((v >> (18 - 6 * i)) & 63) as usize]);
            } else {
                out.push(b'=');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(flags: &[&str]) -> Result<Flags, &'static str> {
        let toks: Vec<&[u8]> = flags.iter().map(|s| s.as_bytes()).collect();
        let mut key = *b"key";
        preparse(&toks, &mut key).map(|(f, _)| f)
    }

    #[test]
    fn flags_and_their_tokens() {
        let f = parse(&["v", "T30", "N5", "C12", "F7", "MD", "J9", "D3", "q"]).unwrap();
        assert!(f.value && f.no_reply && f.locked);
        assert_eq!(f.ttl, Some(30));
        assert_eq!(f.vivify, Some(5));
        assert_eq!(f.cas, Some(12));
        assert_eq!(f.client_flags, 7);
        assert_eq!(f.mode, Some(b'D'));
        assert_eq!((f.initial, f.delta), (9, 3));
        assert_eq!(parse(&[]).unwrap().delta, 1);
    }

    #[test]
    fn errors_are_memcacheds() {
        assert_eq!(parse(&["v", "v"]), Err("CLIENT_ERROR duplicate flag"));
        assert_eq!(parse(&["x"]), Err("CLIENT_ERROR invalid flag"));
        assert_eq!(
            parse(&["Tabc"]),
            Err("CLIENT_ERROR bad token in command line format")
        );
        assert_eq!(parse(&["Fz"]), Err(BAD_FORMAT));
        assert_eq!(
            parse(&["MEE"]),
            Err("CLIENT_ERROR incorrect length for M token")
        );
        assert_eq!(
            parse(&["Jx"]),
            Err("CLIENT_ERROR invalid numeric initial value")
        );
        assert_eq!(
            parse(&["D-"]),
            Err("CLIENT_ERROR invalid numeric delta value")
        );
        // A later error's text wins; a duplicate stops at once.
        assert_eq!(
            parse(&["Tx", "Jx"]),
            Err("CLIENT_ERROR invalid numeric initial value")
        );
    }

    #[test]
    fn base64_round_trip() {
        for src in [&b"f"[..], b"fo", b"foo", b"foob", b"\x00\xff\x10key"] {
            let mut enc = Vec::new();
            encode_base64(src, &mut enc);
            let n = decode_base64_in_place(&mut enc).unwrap();
            assert_eq!(&enc[..n], src);
        }
        let mut e = Vec::new();
        encode_base64(b"foo", &mut e);
        assert_eq!(e, b"Zm9v");
        assert_eq!(decode_base64_in_place(&mut b"Zm9v!".to_vec()), None);
        assert_eq!(decode_base64_in_place(&mut b"Zm=v".to_vec()), None);
        assert_eq!(decode_base64_in_place(&mut b"Zm8=".to_vec()), Some(2));
    }

    #[test]
    fn base64_key_is_decoded_in_place() {
        let toks: Vec<&[u8]> = vec![b"b", b"k"];
        let mut key = *b"Zm9v";
        let (f, n) = preparse(&toks, &mut key).unwrap();
        assert!(f.base64);
        assert_eq!(&key[..n], b"foo");
    }
}

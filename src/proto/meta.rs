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

/// A base64 character's value; `=` counts as a character worth 0.
fn sextet(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        b'=' => Some(0),
        _ => None,
    }
}

/// Decodes base64 over itself the way memcached's decoder does: bytes
/// outside the alphabet are skipped, the characters left must come in
/// whole quads, and decoding ends after the first quad holding `=`
/// (one or two of them; more is invalid).  `None` when it fails, which
/// memcached reports the same as decoding to nothing.
pub fn decode_base64_in_place(buf: &mut [u8]) -> Option<usize> {
    let count = buf.iter().filter(|&&c| sextet(c).is_some()).count();
    if count == 0 || !count.is_multiple_of(4) {
        return None;
    }
    let mut out = 0;
    let mut quad = [0u8; 4];
    let mut n = 0;
    let mut pad = 0;
    for i in 0..buf.len() {
        let c = buf[i];
        let Some(v) = sextet(c) else { continue };
        if c == b'=' {
            pad += 1;
        }
        quad[n] = v;
        n += 1;
        if n == 4 {
            // Output never overtakes input: 3 bytes per 4 read.
            buf[out] = (quad[0] << 2) | (quad[1] >> 4);
            buf[out + 1] = (quad[1] << 4) | (quad[2] >> 2);
            buf[out + 2] = (quad[2] << 6) | quad[3];
            out += 3;
            n = 0;
            if pad > 0 {
                if pad > 2 {
                    return None;
                }
                out -= pad;
                break;
            }
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
        assert_eq!(decode_base64_in_place(&mut b"Zm9".to_vec()), None);
        assert_eq!(decode_base64_in_place(&mut b"@!".to_vec()), None);
        assert_eq!(decode_base64_in_place(&mut b"Z===".to_vec()), None);
        assert_eq!(decode_base64_in_place(&mut b"Zm8=".to_vec()), Some(2));
        // memcached's decoder skips junk and stops after a padded quad.
        let mut junk = b"Y@Q==".to_vec();
        assert_eq!(decode_base64_in_place(&mut junk), Some(1));
        assert_eq!(junk[0], b'a');
        let mut twice = b"YQ==YQ==".to_vec();
        assert_eq!(decode_base64_in_place(&mut twice), Some(1));
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

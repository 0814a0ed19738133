//! Executes meta commands (`mg ms md ma mn me`) and queues their replies.
//!
//! Checks run in memcached's order (token count, key length, flag count,
//! flag parsing), and reply flags are echoed in request order.  Errors are
//! always sent; `q` hides only the nominal reply (`HD`, and `EN` for mg).

use super::commands::After;
use super::out::OutQueue;
use super::{Ctx, PendingStore, StoreReply};
use crate::cache::item::{F_FETCHED, F_STALE, F_TOKEN_SENT};
use crate::cache::{AllocError, Arith, ItemRef, StoreMode, Stored};
use crate::numbers::{push_u64, strtol};
use crate::proto::meta::{encode_base64, preparse, Flags, BAD_FORMAT, MAX_OPAQUE, MAX_TOKENS};
use crate::proto::text::{Tokens, KEY_MAX_LENGTH};

/// What an `ms` echoes once its value is stored.
pub(super) struct MetaStore {
    /// The flag tokens `O`, `k`, `c`, in request order (`O` with its token).
    echo: Echo,
    base64: bool,
    quiet: bool,
}

/// Room for the echo of an opaque of the longest allowed length plus `k`
/// and `c`: what clients send.  More goes to the heap.
const ECHO_INLINE: usize = 48;

/// Flag tokens kept until a value has arrived, each followed by a space
/// (tokens hold none); inline so that a common `ms` allocates nothing.
enum Echo {
    Inline([u8; ECHO_INLINE], u8),
    Heap(Vec<u8>),
}

impl Echo {
    fn new() -> Echo {
        Echo::Inline([0; ECHO_INLINE], 0)
    }

    fn push(&mut self, tok: &[u8]) {
        match self {
            Echo::Inline(buf, len) => {
                let at = *len as usize;
                let end = at + tok.len() + 1;
                if end <= ECHO_INLINE {
                    buf[at..end - 1].copy_from_slice(tok);
                    buf[end - 1] = b' ';
                    *len = end as u8;
                    return;
                }
                let mut heap = buf[..at].to_vec();
                heap.extend_from_slice(tok);
                heap.push(b' ');
                *self = Echo::Heap(heap);
            }
            Echo::Heap(heap) => {
                heap.extend_from_slice(tok);
                heap.push(b' ');
            }
        }
    }

    fn tokens(&self) -> impl Iterator<Item = &[u8]> {
        let bytes = match self {
            Echo::Inline(buf, len) => &buf[..*len as usize],
            Echo::Heap(heap) => &heap[..],
        };
        bytes.split(|&b| b == b' ').filter(|t| !t.is_empty())
    }
}

/// The key, decoded from base64 when the command carries `b`.
struct Key {
    buf: [u8; KEY_MAX_LENGTH],
    len: usize,
}

impl Key {
    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Why [`prepare`] refused a command: its shape, or its flags.
enum Refusal {
    Shape(&'static str),
    Flags(&'static str),
}

/// Common checks; the parsed flags and decoded key, or the reply to send.
fn prepare<'t, 'a>(
    t: &'t Tokens<'a>,
    first_flag: usize,
    too_many: &'static str,
) -> Result<(Flags, Key, &'t [&'a [u8]]), Refusal> {
    let raw = t.get(1);
    if raw.len() > KEY_MAX_LENGTH {
        return Err(Refusal::Shape(BAD_FORMAT));
    }
    if t.len() + 1 > MAX_TOKENS {
        return Err(Refusal::Shape(too_many));
    }
    let mut key = Key {
        buf: [0; KEY_MAX_LENGTH],
        len: raw.len(),
    };
    key.buf[..raw.len()].copy_from_slice(raw);
    let toks = t.from(first_flag);
    let (flags, n) = preparse(toks, &mut key.buf[..raw.len()]).map_err(Refusal::Flags)?;
    key.len = n;
    Ok((flags, key, toks))
}

/// [`prepare`] for `md` and `ma`, which report every flag error as one.
fn prepare_md_ma<'t, 'a>(t: &'t Tokens<'a>) -> Result<(Flags, Key, &'t [&'a [u8]]), &'static str> {
    prepare(t, 2, "CLIENT_ERROR options flags too long").map_err(|r| match r {
        Refusal::Shape(e) => e,
        Refusal::Flags(_) => "CLIENT_ERROR invalid or duplicate flag",
    })
}

fn line(out: &mut OutQueue, text: &str) {
    out.line(text.as_bytes());
}

/// ` k<key>`, base64 with a trailing ` b` for binary keys.
fn push_key(t: &mut Vec<u8>, key: &[u8], base64: bool) {
    t.extend_from_slice(b" k");
    if base64 {
        encode_base64(key, t);
        t.extend_from_slice(b" b");
    } else {
        t.extend_from_slice(key);
    }
}

/// Echoes `O` and `k` (the flags every status line carries); callers have
/// checked the opaque's length with [`opaque_fits`].
fn push_opaque_and_key(t: &mut Vec<u8>, toks: &[&[u8]], key: &[u8], base64: bool) {
    for tok in toks {
        match tok[0] {
            b'O' => {
                t.push(b' ');
                t.extend_from_slice(tok);
            }
            b'k' => push_key(t, key, base64),
            _ => {}
        }
    }
}

/// Whether every `O` (opaque) token is short enough to echo.
fn opaque_fits(toks: &[&[u8]]) -> bool {
    toks.iter().all(|t| t[0] != b'O' || t.len() <= MAX_OPAQUE)
}

const OPAQUE_TOO_LONG: &str = "CLIENT_ERROR opaque token too long";

/// Runs `mg`, `ms`, `md`, `ma`, `mn` or `me`.
pub(super) fn execute(t: &Tokens<'_>, out: &mut OutQueue, ctx: &mut Ctx) -> After {
    match t.get(0)[1] {
        b'n' => {
            line(out, "MN");
            After::Next
        }
        b'e' => {
            me(t, out, ctx);
            After::Next
        }
        _ if t.len() < 2 => {
            line(out, "ERROR");
            After::Next
        }
        b'g' => {
            mg(t, out, ctx);
            After::Next
        }
        b's' => ms(t, out, ctx),
        b'd' => {
            md(t, out, ctx);
            After::Next
        }
        b'a' => {
            ma(t, out, ctx);
            After::Next
        }
        _ => {
            line(out, "ERROR");
            After::Next
        }
    }
}

fn mg(t: &Tokens<'_>, out: &mut OutQueue, ctx: &mut Ctx) {
    let (f, key, toks) = match prepare(t, 2, "CLIENT_ERROR options flags are too long") {
        Ok(p) => p,
        Err(Refusal::Shape(e) | Refusal::Flags(e)) => return line(out, e),
    };
    let key = key.bytes();
    let mut hit = if f.locked {
        ctx.cache.peek(key)
    } else {
        let it = ctx.cache.peek(key);
        if let (Some(it), false) = (&it, f.no_update) {
            ctx.cache.bump_item(it);
        }
        it
    };
    let mut created = false;
    if hit.is_none() && f.vivify.is_some() {
        if let Ok(it) = ctx.cache.alloc(key, 0, 0, 2) {
            ctx.cache.value_mut(&it, 0)[0] = b'\r';
            ctx.cache.value_mut(&it, 1)[0] = b'\n';
            ctx.cache.store(it, StoreMode::Add, 0);
            hit = ctx.cache.peek(key);
            created = hit.is_some();
        }
    }
    let ttl_set = f.ttl.is_some();
    let Some(it) = hit else {
        ctx.counters.count_fetch(false, ttl_set);
        if !opaque_fits(toks) {
            return line(out, OPAQUE_TOO_LONG);
        }
        if !f.no_reply {
            let text = out.text();
            text.extend_from_slice(b"EN");
            push_opaque_and_key(text, toks, key, f.base64);
            out.end_line();
        }
        return;
    };
    let now = ctx.clock.now();
    let v = ctx.cache.view(&it);
    let (len, cas, flags, time) = (v.len, v.cas, v.flags, v.time);
    // A hit echoes the key as it was stored: encoded if it came with `b`.
    let key_binary = v.key_binary;
    let mut exptime = v.exptime;
    let iflags = v.iflags;
    let mut won = false;
    // The reply line is written straight into the output queue.
    let start = out.text().len();
    let text = out.text();
    if f.value {
        text.extend_from_slice(b"VA ");
        push_u64(text, len as u64);
    } else {
        text.extend_from_slice(b"HD");
    }
    for tok in toks {
        match tok[0] {
            b'T' => {
                exptime = ctx.clock.realtime(f.ttl.unwrap_or(0));
                ctx.cache.set_exptime(&it, exptime);
            }
            b'N' if created => {
                exptime = ctx.clock.realtime(f.vivify.unwrap_or(0));
                ctx.cache.set_exptime(&it, exptime);
                won = true;
            }
            b'R' => {
                let recache = ctx.clock.realtime(f.recache.unwrap_or(0));
                if iflags & F_TOKEN_SENT == 0 && !created && exptime != 0 && exptime < recache {
                    won = true;
                }
            }
            b's' => {
                text.extend_from_slice(b" s");
                push_u64(text, len as u64);
            }
            b't' => {
                text.extend_from_slice(b" t");
                if exptime == 0 {
                    text.extend_from_slice(b"-1");
                } else {
                    push_u64(text, u64::from(exptime.wrapping_sub(now)));
                }
            }
            b'c' => {
                text.extend_from_slice(b" c");
                push_u64(text, cas);
            }
            b'f' => {
                text.extend_from_slice(b" f");
                push_u64(text, u64::from(flags));
            }
            b'l' => {
                text.extend_from_slice(b" l");
                push_u64(text, u64::from(now.wrapping_sub(time)));
            }
            b'h' => {
                text.extend_from_slice(if iflags & F_FETCHED != 0 {
                    b" h1"
                } else {
                    b" h0"
                });
            }
            b'O' => {
                if tok.len() > MAX_OPAQUE {
                    ctx.cache.release(it);
                    out.text().truncate(start);
                    return line(out, OPAQUE_TOO_LONG);
                }
                text.push(b' ');
                text.extend_from_slice(tok);
            }
            b'k' => push_key(text, key, key_binary),
            _ => {}
        }
    }
    if iflags & F_TOKEN_SENT != 0 {
        text.extend_from_slice(b" Z");
    }
    if iflags & F_STALE != 0 {
        text.extend_from_slice(b" X");
        if iflags & F_TOKEN_SENT == 0 {
            won = true;
        }
    }
    if won {
        text.extend_from_slice(b" W");
        ctx.cache.set_iflag(&it, F_TOKEN_SENT, true);
    }
    if f.locked && !f.no_update {
        ctx.cache.bump_item(&it);
    }
    ctx.cache.count_hit(&it, ttl_set);
    ctx.counters.count_fetch(true, ttl_set);
    out.end_line();
    if f.value {
        out.item(it, len + 2);
    } else {
        ctx.cache.release(it);
    }
}

fn ms(t: &Tokens<'_>, out: &mut OutQueue, ctx: &mut Ctx) -> After {
    let raw = t.get(1);
    if raw.len() > KEY_MAX_LENGTH || t.len() == 2 {
        line(out, BAD_FORMAT);
        return After::Next;
    }
    if t.len() + 1 > MAX_TOKENS {
        line(out, "CLIENT_ERROR options flags too long");
        return After::Next;
    }
    let vlen = match strtol(t.get(2)) {
        Some(v) if (0..=i32::MAX - 2).contains(&v) => v as usize + 2,
        _ => {
            line(out, BAD_FORMAT);
            return After::Next;
        }
    };
    let refuse = |out: &mut OutQueue, e: &str| {
        line(out, e);
        After::Swallow(vlen)
    };
    let (f, key, toks) = match prepare(t, 3, "CLIENT_ERROR options flags too long") {
        Ok(p) => p,
        Err(Refusal::Shape(e) | Refusal::Flags(e)) => return refuse(out, e),
    };
    let key = key.bytes();
    let mut echo = Echo::new();
    let mut opaque_too_long = false;
    for tok in toks {
        match tok[0] {
            b'O' if tok.len() > MAX_OPAQUE => opaque_too_long = true,
            b'O' | b'k' | b'c' => echo.push(tok),
            _ => {}
        }
    }
    let mut mode = match f.mode {
        None | Some(b'S') => StoreMode::Set,
        Some(b'E') => StoreMode::Add,
        Some(b'A') => StoreMode::Append,
        Some(b'P') => StoreMode::Prepend,
        Some(b'R') => StoreMode::Replace,
        Some(_) => return refuse(out, "CLIENT_ERROR invalid mode for ms M token"),
    };
    if f.cas.is_some() && matches!(mode, StoreMode::Set | StoreMode::Replace) {
        mode = if f.set_stale {
            StoreMode::CasStale
        } else {
            StoreMode::Cas
        };
    }
    if opaque_too_long {
        return refuse(out, OPAQUE_TOO_LONG);
    }
    ctx.detail.record_set(key);
    let exptime = f.ttl.map_or(0, |e| ctx.clock.realtime(e));
    match ctx.cache.alloc(key, f.client_flags, exptime, vlen) {
        Ok(item) => {
            if f.base64 {
                ctx.cache.set_key_binary(&item);
            }
            After::Read(PendingStore {
                item,
                got: 0,
                wire: vlen,
                mode,
                cas: f.cas.unwrap_or(0),
                reply: StoreReply::Meta(MetaStore {
                    echo,
                    base64: f.base64,
                    quiet: f.no_reply,
                }),
            })
        }
        Err(e) => {
            let msg = if e == AllocError::TooLarge {
                ctx.counters.store_too_large += 1;
                "SERVER_ERROR object too large for cache"
            } else {
                ctx.counters.store_no_memory += 1;
                "SERVER_ERROR out of memory storing object"
            };
            ctx.cache.unlink_key(key);
            refuse(out, msg)
        }
    }
}

/// Finishes an `ms` once its value is in the item.
pub(super) fn complete_store(p: PendingStore, m: &MetaStore, out: &mut OutQueue, ctx: &mut Ctx) {
    ctx.counters.cmd_set += 1;
    ctx.cache.count_set(&p.item);
    if !ctx.cache.ends_with_crlf(&p.item) {
        ctx.cache.release(p.item);
        return line(out, "CLIENT_ERROR bad data chunk");
    }
    let mut key_buf = [0u8; KEY_MAX_LENGTH];
    let key = {
        let k = ctx.cache.view(&p.item).key;
        key_buf[..k.len()].copy_from_slice(k);
        &key_buf[..k.len()]
    };
    let result = ctx.cache.store(p.item, p.mode, p.cas);
    let cas = if result == Stored::Stored {
        ctx.cache.last_cas()
    } else {
        0
    };
    let status: &[u8] = match result {
        Stored::Stored if m.quiet => return,
        Stored::Stored => b"HD",
        Stored::Exists => b"EX",
        Stored::NotFound => b"NF",
        Stored::NotStored => b"NS",
    };
    let text = out.text();
    text.extend_from_slice(status);
    for tok in m.echo.tokens() {
        match tok[0] {
            b'O' => {
                text.push(b' ');
                text.extend_from_slice(tok);
            }
            b'k' => push_key(text, key, m.base64),
            _ => {
                text.extend_from_slice(b" c");
                push_u64(text, cas);
            }
        }
    }
    out.end_line();
}

fn md(t: &Tokens<'_>, out: &mut OutQueue, ctx: &mut Ctx) {
    let (f, key, toks) = match prepare_md_ma(t) {
        Ok(p) => p,
        Err(e) => return line(out, e),
    };
    let key = key.bytes();
    if !opaque_fits(toks) {
        return line(out, OPAQUE_TOO_LONG);
    }
    ctx.detail.record_delete(key);
    let status: &[u8] = match ctx.cache.peek(key) {
        Some(it) => {
            let status: &[u8] = if f.cas.is_some_and(|c| c != ctx.cache.view(&it).cas) {
                ctx.counters.delete_misses += 1;
                b"EX"
            } else if f.set_stale {
                if let Some(ttl) = f.ttl {
                    let e = ctx.clock.realtime(ttl);
                    ctx.cache.set_exptime(&it, e);
                }
                ctx.cache.set_iflag(&it, F_STALE, true);
                ctx.cache.set_iflag(&it, F_TOKEN_SENT, false);
                ctx.cache.renew_cas(&it);
                b"HD"
            } else {
                ctx.cache.delete(key);
                b"HD"
            };
            ctx.cache.release(it);
            status
        }
        None => {
            ctx.counters.delete_misses += 1;
            b"NF"
        }
    };
    if status == b"HD" && f.no_reply {
        return;
    }
    let text = out.text();
    text.extend_from_slice(status);
    push_opaque_and_key(text, toks, key, f.base64);
    out.end_line();
}

fn ma(t: &Tokens<'_>, out: &mut OutQueue, ctx: &mut Ctx) {
    let (f, key, toks) = match prepare_md_ma(t) {
        Ok(p) => p,
        Err(e) => return line(out, e),
    };
    let key = key.bytes();
    let incr = match f.mode {
        None | Some(b'I') | Some(b'+') => true,
        Some(b'D') | Some(b'-') => false,
        Some(_) => return line(out, "CLIENT_ERROR invalid mode for ma M token"),
    };
    let mut created = false;
    let mut quiet = false;
    let mut status: Option<&[u8]> = None;
    let mut value = 0u64;
    match ctx.cache.arith(key, incr, f.delta, f.cas.unwrap_or(0)) {
        Arith::Value(v) => {
            value = v;
            quiet = f.no_reply;
        }
        Arith::NonNumeric => {
            return line(
                out,
                "CLIENT_ERROR cannot increment or decrement non-numeric value",
            )
        }
        Arith::OutOfMemory => return line(out, "SERVER_ERROR out of memory"),
        Arith::Exists => status = Some(b"EX"),
        Arith::NotFound if f.vivify.is_some() => {
            let mut digits = [0u8; 20];
            let digits = crate::numbers::u64_digits(f.initial, &mut digits);
            let n = digits.len();
            match ctx.cache.alloc(key, 0, 0, n + 2) {
                Ok(it) => {
                    if f.base64 {
                        ctx.cache.set_key_binary(&it);
                    }
                    ctx.cache.value_mut(&it, 0)[..n].copy_from_slice(digits);
                    ctx.cache.value_mut(&it, n)[0] = b'\r';
                    ctx.cache.value_mut(&it, n + 1)[0] = b'\n';
                    if ctx.cache.store(it, StoreMode::Add, 0) == Stored::Stored {
                        created = true;
                        value = f.initial;
                    } else {
                        status = Some(b"NS");
                    }
                }
                Err(_) => return line(out, "SERVER_ERROR Out of memory allocating new item"),
            }
        }
        Arith::NotFound => {
            if incr {
                ctx.counters.incr_misses += 1;
            } else {
                ctx.counters.decr_misses += 1;
            }
            status = Some(b"NF");
        }
    }
    let item: Option<ItemRef> = if status.is_none() {
        ctx.cache.peek(key)
    } else {
        None
    };
    let Some(it) = item else {
        if !opaque_fits(toks) {
            return line(out, OPAQUE_TOO_LONG);
        }
        let text = out.text();
        text.extend_from_slice(status.unwrap_or(b"NS"));
        push_opaque_and_key(text, toks, key, f.base64);
        return out.end_line();
    };
    // The reply line is written straight into the output queue.
    let start = out.text().len();
    let text = out.text();
    let mut digits = [0u8; 20];
    let digits = crate::numbers::u64_digits(value, &mut digits);
    if f.value {
        text.extend_from_slice(b"VA ");
        push_u64(text, digits.len() as u64);
    } else {
        text.extend_from_slice(b"HD");
    }
    let now = ctx.clock.now();
    for tok in toks {
        match tok[0] {
            b'c' => {
                text.extend_from_slice(b" c");
                push_u64(text, ctx.cache.view(&it).cas);
            }
            b't' => {
                let e = ctx.cache.view(&it).exptime;
                text.extend_from_slice(b" t");
                if e == 0 {
                    text.extend_from_slice(b"-1");
                } else {
                    push_u64(text, u64::from(e.wrapping_sub(now)));
                }
            }
            b'T' => {
                let e = ctx.clock.realtime(f.ttl.unwrap_or(0));
                ctx.cache.set_exptime(&it, e);
            }
            b'N' if created => {
                let e = ctx.clock.realtime(f.vivify.unwrap_or(0));
                ctx.cache.set_exptime(&it, e);
            }
            b'O' => {
                if tok.len() > MAX_OPAQUE {
                    ctx.cache.release(it);
                    out.text().truncate(start);
                    return line(out, OPAQUE_TOO_LONG);
                }
                text.push(b' ');
                text.extend_from_slice(tok);
            }
            b'k' => push_key(text, key, f.base64),
            _ => {}
        }
    }
    ctx.cache.release(it);
    if quiet {
        out.text().truncate(start);
        return;
    }
    if f.value {
        text.extend_from_slice(b"\r\n");
        text.extend_from_slice(digits);
    }
    out.end_line();
}

fn me(t: &Tokens<'_>, out: &mut OutQueue, ctx: &mut Ctx) {
    let raw = t.get(1);
    if t.len() < 2 || raw.len() > KEY_MAX_LENGTH {
        return line(out, BAD_FORMAT);
    }
    let mut buf = [0u8; KEY_MAX_LENGTH];
    buf[..raw.len()].copy_from_slice(raw);
    let mut len = raw.len();
    let base64 = t.len() >= 3 && t.get(2) == b"b";
    if base64 {
        match crate::proto::meta::decode_base64_in_place(&mut buf[..len]) {
            Some(n) => len = n,
            None => return line(out, BAD_FORMAT),
        }
    }
    let key = &buf[..len];
    let Some(it) = ctx.cache.peek(key) else {
        ctx.counters.cmd_meta += 1;
        return line(out, "EN");
    };
    let now = ctx.clock.now();
    let v = ctx.cache.view(&it);
    let mut text = b"ME ".to_vec();
    if v.key_binary {
        encode_base64(v.key, &mut text);
    } else {
        text.extend_from_slice(v.key);
    }
    let exp = if v.exptime == 0 {
        -1
    } else {
        i64::from(now.wrapping_sub(v.exptime) as i32)
    };
    let (class, size) = ctx.cache.memcached_size(&it);
    let _ = std::io::Write::write_fmt(
        &mut text,
        format_args!(
            " exp={exp} la={} cas={} fetch={} cls={class} size={size}",
            now.wrapping_sub(v.time),
            v.cas,
            if v.iflags & F_FETCHED != 0 {
                "yes"
            } else {
                "no"
            },
        ),
    );
    ctx.cache.release(it);
    ctx.counters.cmd_meta += 1;
    out.line(&text);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(e: &Echo) -> Vec<Vec<u8>> {
        e.tokens().map(<[u8]>::to_vec).collect()
    }

    #[test]
    fn echo_keeps_tokens_in_order_inline_then_on_the_heap() {
        // The longest opaque token allowed, with `k` and `c`.
        let opaque = [b"O".as_slice(), &[b'x'; MAX_OPAQUE - 1]].concat();
        let mut e = Echo::new();
        for tok in [&opaque[..], b"k", b"c"] {
            e.push(tok);
        }
        assert!(matches!(e, Echo::Inline(_, 37)));
        assert_eq!(
            tokens(&e),
            vec![opaque.clone(), b"k".to_vec(), b"c".to_vec()]
        );
        // A second long opaque no longer fits inline; nothing is lost.
        e.push(&opaque);
        e.push(b"k");
        assert!(matches!(e, Echo::Heap(_)));
        assert_eq!(
            tokens(&e),
            vec![
                opaque.clone(),
                b"k".to_vec(),
                b"c".to_vec(),
                opaque,
                b"k".to_vec()
            ]
        );
    }
}

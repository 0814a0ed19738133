//! Executes binary-protocol requests against the cache and queues
//! response packets.
//!
//! Statuses, bodies and CAS fields are memcached's: errors carry its
//! message text, quiet opcodes drop the replies memcached drops (misses of
//! quiet gets, successes of quiet mutations) and never errors.

use super::commands::After;
use super::out::OutQueue;
use super::{Ctx, PendingStore, StoreReply};
use crate::cache::{AllocError, Arith, Deleted, StoreMode, Stored};
use crate::config::MEMCACHED_VERSION;
use crate::proto::binary::{
    be32, be64, classify, op, push_header, status, status_text, Decision, Kind, Request,
    ResponseHeader,
};

/// What the binary side of a connection remembers between requests.
#[derive(Debug, Default)]
pub struct BinState {
    /// Authenticated on this connection (SASL, or ASCII auth with `-Y`).
    pub authenticated: bool,
}

/// Who a response goes to: the request's opcode and opaque.
#[derive(Debug, Clone, Copy)]
pub(super) struct BinTarget {
    pub opcode: u8,
    pub opaque: [u8; 4],
    pub quiet: bool,
}

impl BinTarget {
    fn header(
        &self,
        status: u16,
        extlen: u8,
        keylen: u16,
        bodylen: usize,
        cas: u64,
    ) -> ResponseHeader {
        ResponseHeader {
            opcode: self.opcode,
            status,
            extlen,
            keylen,
            bodylen: bodylen as u32,
            opaque: self.opaque,
            cas,
        }
    }

    /// A response with a body copied in (never an item value).
    pub fn respond(&self, out: &mut OutQueue, status: u16, body: &[u8], cas: u64) {
        let h = self.header(status, 0, 0, body.len(), cas);
        push_header(out.text(), &h);
        out.text().extend_from_slice(body);
        out.commit();
    }

    /// A success, unless the request was quiet.
    pub fn success(&self, out: &mut OutQueue, body: &[u8], cas: u64) {
        if !self.quiet {
            self.respond(out, status::SUCCESS, body, cas);
        }
    }

    /// An error with memcached's text; sent even for quiet requests.
    pub fn error(&self, out: &mut OutQueue, st: u16) {
        self.respond(out, st, status_text(st), 0);
    }
}

/// Largest SASL message read (memcached reads it into an item).
const SASL_DATA_MAX: usize = 64 * 1024;

/// Bytes the request needs buffered beyond header, extras and key before
/// it can run (SASL data is read whole; values go straight to items).
pub(super) fn body_to_buffer(req: &Request<'_>, sasl: bool) -> usize {
    match classify(&req.header) {
        Decision::Run {
            kind: Kind::SaslAuth { .. },
            ..
        } if sasl => {
            let n = (req.header.bodylen as usize).saturating_sub(req.header.keylen as usize);
            if n > SASL_DATA_MAX {
                0
            } else {
                n
            }
        }
        _ => 0,
    }
}

/// Runs one request; `body` holds what [`body_to_buffer`] asked for.
pub(super) fn execute(
    req: &Request<'_>,
    body: &[u8],
    state: &mut BinState,
    out: &mut OutQueue,
    ctx: &mut Ctx,
) -> After {
    let h = &req.header;
    let decision = classify(h);
    let quiet = matches!(decision, Decision::Run { quiet: true, .. });
    let t = BinTarget {
        opcode: h.opcode,
        opaque: h.opaque,
        quiet,
    };
    if let Some(fd) = ctx.trace {
        eprintln!("<{fd} Read binary protocol data: opcode 0x{:02x}", h.opcode);
    }
    match decision {
        Decision::BadLengths => {
            t.error(out, status::UNKNOWN_COMMAND);
            After::CloseAfterWrite
        }
        _ if ctx.cfg.sasl
            && !state.authenticated
            && !crate::proto::binary::allowed_unauthenticated(h.opcode) =>
        {
            t.error(out, status::AUTH_ERROR);
            After::CloseAfterWrite
        }
        Decision::ProtocolError => {
            t.error(out, status::EINVAL);
            After::CloseAfterWrite
        }
        Decision::Unknown => {
            t.error(out, status::UNKNOWN_COMMAND);
            swallow(h.bodylen as usize - req.extras.len() - req.key.len())
        }
        Decision::Run { kind, .. } => run(kind, req, body, state, &t, out, ctx),
    }
}

/// The rest of a body the request did not use.
fn swallow(n: usize) -> After {
    if n > 0 {
        After::Swallow(n)
    } else {
        After::Next
    }
}

fn run(
    kind: Kind,
    req: &Request<'_>,
    body: &[u8],
    state: &mut BinState,
    t: &BinTarget,
    out: &mut OutQueue,
    ctx: &mut Ctx,
) -> After {
    let h = &req.header;
    let key = req.key;
    match kind {
        Kind::Version => t.success(out, MEMCACHED_VERSION.as_bytes(), 0),
        Kind::Noop => t.success(out, b"", 0),
        Kind::Quit => {
            t.success(out, b"", 0);
            return After::CloseAfterWrite;
        }
        Kind::Flush => {
            if !ctx.cfg.flush_enabled {
                t.error(out, status::AUTH_ERROR);
                return After::Next;
            }
            let exptime = if req.extras.len() == 4 {
                be32(req.extras)
            } else {
                0
            };
            let new_oldest = if exptime > 0 {
                ctx.clock.realtime_unsigned(exptime)
            } else {
                ctx.clock.now()
            };
            ctx.cache.flush_all(new_oldest);
            ctx.counters.cmd_flush += 1;
            t.success(out, b"", 0);
        }
        Kind::Get {
            with_key,
            touch,
            value,
        } => get(key, req.extras, with_key, touch, value, t, out, ctx),
        Kind::Delete => {
            ctx.detail.record_delete(key);
            match ctx.cache.delete_cas(key, h.cas) {
                Deleted::Deleted => t.success(out, b"", 0),
                Deleted::Exists => t.error(out, status::KEY_EEXISTS),
                Deleted::NotFound => {
                    t.error(out, status::KEY_ENOENT);
                    ctx.counters.delete_misses += 1;
                }
            }
        }
        Kind::Arith { incr } => arith(key, req.extras, h.cas, incr, t, out, ctx),
        Kind::Update => {
            let flags = be32(req.extras);
            let exptime = be32(&req.extras[4..]);
            let mode = match h.opcode {
                op::ADD | op::ADDQ => StoreMode::Add,
                op::REPLACE | op::REPLACEQ => StoreMode::Replace,
                _ => StoreMode::Set,
            };
            let mode = if h.cas != 0 { StoreMode::Cas } else { mode };
            return update(req, flags, exptime, mode, t, out, ctx);
        }
        Kind::Concat { append } => {
            let mode = if append {
                StoreMode::Append
            } else {
                StoreMode::Prepend
            };
            return update(req, 0, 0, mode, t, out, ctx);
        }
        Kind::Stat => stat(key, t, out, ctx),
        Kind::SaslList => {
            if !ctx.cfg.sasl {
                t.error(out, status::UNKNOWN_COMMAND);
                return swallow(h.bodylen as usize - key.len());
            }
            t.success(out, b"PLAIN", 0);
        }
        Kind::SaslAuth { step } => {
            if !ctx.cfg.sasl {
                t.error(out, status::UNKNOWN_COMMAND);
                return swallow(h.bodylen as usize - key.len() - body.len());
            }
            let vlen = h.bodylen as usize - key.len();
            if vlen != body.len() {
                t.error(out, status::ENOMEM);
                return swallow(vlen);
            }
            sasl_auth(key, body, step, state, t, out, ctx);
        }
    }
    After::Next
}

#[allow(clippy::too_many_arguments)]
fn get(
    key: &[u8],
    extras: &[u8],
    with_key: bool,
    touch: bool,
    value: bool,
    t: &BinTarget,
    out: &mut OutQueue,
    ctx: &mut Ctx,
) {
    let new_exptime = touch.then(|| ctx.clock.realtime_unsigned(be32(extras)));
    let hit = ctx.cache.get(key, new_exptime);
    ctx.detail.record_get(key, hit.is_some());
    ctx.counters.count_fetch(hit.is_some(), touch);
    let Some(it) = hit else {
        if t.quiet {
            return;
        }
        if with_key {
            let h = t.header(status::KEY_ENOENT, 0, key.len() as u16, key.len(), 0);
            push_header(out.text(), &h);
            out.text().extend_from_slice(key);
            out.commit();
        } else {
            t.error(out, status::KEY_ENOENT);
        }
        return;
    };
    let v = ctx.cache.view(&it);
    let vlen = if value { v.len } else { 0 };
    let klen = if with_key { key.len() } else { 0 };
    let h = t.header(status::SUCCESS, 4, klen as u16, 4 + klen + vlen, v.cas);
    let flags = v.flags;
    push_header(out.text(), &h);
    out.text().extend_from_slice(&flags.to_be_bytes());
    if with_key {
        out.text().extend_from_slice(key);
    }
    if vlen > 0 {
        out.item(it, vlen);
    } else {
        out.commit();
        ctx.cache.release(it);
    }
}

fn arith(
    key: &[u8],
    extras: &[u8],
    cas: u64,
    incr: bool,
    t: &BinTarget,
    out: &mut OutQueue,
    ctx: &mut Ctx,
) {
    let delta = be64(extras);
    let initial = be64(&extras[8..]);
    let exptime = be32(&extras[16..]);
    match ctx.cache.arith(key, incr, delta, cas) {
        Arith::Value(v) => {
            let cas = ctx.cache.last_cas();
            t.success(out, &v.to_be_bytes(), cas);
        }
        Arith::NonNumeric => t.error(out, status::DELTA_BADVAL),
        Arith::OutOfMemory => t.error(out, status::ENOMEM),
        Arith::Exists => t.error(out, status::KEY_EEXISTS),
        Arith::NotFound if exptime != 0xffff_ffff => {
            let mut digits = [0u8; 20];
            let digits = crate::numbers::u64_digits(initial, &mut digits);
            let e = ctx.clock.realtime_unsigned(exptime);
            match ctx.cache.alloc(key, 0, e, digits.len() + 2) {
                Ok(it) => {
                    let n = digits.len();
                    ctx.cache.value_mut(&it, 0)[..n].copy_from_slice(digits);
                    ctx.cache.value_mut(&it, n)[0] = b'\r';
                    ctx.cache.value_mut(&it, n + 1)[0] = b'\n';
                    if ctx.cache.store(it, StoreMode::Add, 0) == Stored::Stored {
                        let cas = ctx.cache.last_cas();
                        t.success(out, &initial.to_be_bytes(), cas);
                    } else {
                        t.error(out, status::NOT_STORED);
                    }
                }
                Err(_) => t.error(out, status::ENOMEM),
            }
        }
        Arith::NotFound => {
            if incr {
                ctx.counters.incr_misses += 1;
            } else {
                ctx.counters.decr_misses += 1;
            }
            t.error(out, status::KEY_ENOENT);
        }
    }
}

/// Set/Add/Replace/Append/Prepend: allocates the item and reads the value
/// into it.
fn update(
    req: &Request<'_>,
    flags: u32,
    exptime: u32,
    mode: StoreMode,
    t: &BinTarget,
    out: &mut OutQueue,
    ctx: &mut Ctx,
) -> After {
    let h = &req.header;
    let key = req.key;
    // memcached computes the value length in a C int.
    let vlen = h
        .bodylen
        .wrapping_sub(key.len() as u32 + req.extras.len() as u32) as i32;
    ctx.detail.record_set(key);
    let exptime = ctx.clock.realtime_unsigned(exptime);
    let alloc = if vlen < 0 {
        Err(AllocError::TooLarge)
    } else {
        ctx.cache.alloc(key, flags, exptime, vlen as usize + 2)
    };
    match alloc {
        Ok(item) => After::Read(PendingStore {
            item,
            got: 0,
            wire: vlen as usize,
            mode,
            cas: h.cas,
            reply: StoreReply::Binary(*t),
        }),
        Err(e) => {
            if e == AllocError::TooLarge {
                ctx.counters.store_too_large += 1;
                t.error(out, status::E2BIG);
            } else {
                ctx.counters.store_no_memory += 1;
                t.error(out, status::ENOMEM);
            }
            if matches!(h.opcode, op::SET | op::SETQ) {
                ctx.cache.unlink_key(key);
            }
            swallow(vlen.max(0) as usize)
        }
    }
}

/// Finishes a binary store once its value is in the item.
pub(super) fn complete_store(p: PendingStore, t: &BinTarget, out: &mut OutQueue, ctx: &mut Ctx) {
    ctx.counters.cmd_set += 1;
    ctx.cache.count_set(&p.item);
    // The wire carries no `\r\n`; items keep one.
    ctx.cache.value_mut(&p.item, p.wire)[0] = b'\r';
    ctx.cache.value_mut(&p.item, p.wire + 1)[0] = b'\n';
    let mode = p.mode;
    match ctx.cache.store(p.item, mode, p.cas) {
        Stored::Stored => {
            let cas = ctx.cache.last_cas();
            t.success(out, b"", cas);
        }
        Stored::Exists => t.error(out, status::KEY_EEXISTS),
        Stored::NotFound => t.error(out, status::KEY_ENOENT),
        Stored::NotStored => t.error(
            out,
            match mode {
                StoreMode::Add => status::KEY_EEXISTS,
                StoreMode::Replace => status::KEY_ENOENT,
                _ => status::NOT_STORED,
            },
        ),
    }
}

/// `Stat`: the text report rendered, then sent a packet per line.
fn stat(key: &[u8], t: &BinTarget, out: &mut OutQueue, ctx: &mut Ctx) {
    let mut tmp = OutQueue::default();
    if key.is_empty() {
        super::report::general(&mut tmp, ctx);
    } else if key.starts_with(b"reset") {
        super::report::reset(ctx);
    } else if key.starts_with(b"settings") {
        super::report::settings(&mut tmp, ctx);
    } else if let Some(sub) = key.strip_prefix(b"detail") {
        if sub.starts_with(b" dump") {
            let mut dump = Vec::new();
            ctx.detail.dump(&mut dump);
            dump.extend_from_slice(b"END\r\n");
            stat_packet(out, t, b"detailed", &dump);
        } else if sub.starts_with(b" on") {
            ctx.detail.enabled = true;
        } else if sub.starts_with(b" off") {
            ctx.detail.enabled = false;
        } else {
            t.error(out, status::KEY_ENOENT);
            return;
        }
    } else {
        match key {
            b"items" => super::report::items(&mut tmp, ctx),
            b"slabs" => super::report::slabs(&mut tmp, ctx),
            b"sizes" | b"sizes_enable" | b"sizes_disable" => {
                let line: &[u8] = match key {
                    b"sizes" => b"stats sizes",
                    b"sizes_enable" => b"stats sizes_enable",
                    _ => b"stats sizes_disable",
                };
                let toks = crate::proto::text::tokenize(line);
                let _ = super::report::stats(&toks, &mut tmp, ctx);
            }
            _ => {
                t.error(out, status::KEY_ENOENT);
                return;
            }
        }
    }
    let packets = std::mem::take(tmp.text());
    for line in packets.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(rest) = line.strip_prefix(b"STAT ") else {
            continue;
        };
        let (name, value) = match memchr::memchr(b' ', rest) {
            Some(sp) => (&rest[..sp], &rest[sp + 1..]),
            None => (rest, &b""[..]),
        };
        stat_packet(out, t, name, value);
    }
    stat_packet(out, t, b"", b"");
}

fn stat_packet(out: &mut OutQueue, t: &BinTarget, name: &[u8], value: &[u8]) {
    let h = t.header(
        status::SUCCESS,
        0,
        name.len() as u16,
        name.len() + value.len(),
        0,
    );
    push_header(out.text(), &h);
    out.text().extend_from_slice(name);
    out.text().extend_from_slice(value);
    out.commit();
}

/// SASL PLAIN against the password file named by `MEMCACHED_SASL_PWDB`.
fn sasl_auth(
    mech: &[u8],
    data: &[u8],
    step: bool,
    state: &mut BinState,
    t: &BinTarget,
    out: &mut OutQueue,
    ctx: &mut Ctx,
) {
    // PLAIN finishes in one AUTH: a STEP has nothing to continue.
    let ok = !step && mech == b"PLAIN" && crate::auth::check_plain(data);
    ctx.counters.auth_cmds += 1;
    if ok {
        state.authenticated = true;
        t.success(out, b"Authenticated", 0);
    } else {
        ctx.counters.auth_errors += 1;
        t.error(out, status::AUTH_ERROR);
    }
}

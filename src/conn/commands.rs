//! Executes text-protocol commands against the cache and queues replies.
//!
//! Replies are memcached's exact strings.  `noreply` suppresses every reply
//! of the command it is on, errors included, as in memcached's text
//! protocol.  Counters are bumped where memcached bumps them.

use super::out::OutQueue;
use super::{Ctx, PendingStore, StoreReply};
use crate::cache::{AllocError, Arith, StoreMode, Stored};
use crate::config::MEMCACHED_VERSION;
use crate::numbers::push_u64;
use crate::proto::text::{self, Command, StoreCmd, KEY_MAX_LENGTH};

/// What the connection does after a command.
pub(super) enum After {
    /// Parse the next command.
    Next,
    /// Read the value of a storage command.
    Read(PendingStore),
    /// Discard this many bytes (a refused value and its `\r\n`).
    Swallow(usize),
    /// Send what is queued, then close (`quit`).
    CloseAfterWrite,
    /// Close now.
    Close,
    /// Ask the server for `stats conns`, which only it can see.
    StatsConns,
    /// Stream `lru_crawler metadump` lines, a slice per turn.
    Dump(crate::cache::CrawlTarget),
}

/// memcached's `MAX_VERBOSITY_LEVEL`.
const MAX_VERBOSITY: u32 = 2;

/// Queues a one-line reply; at `-vv` traces it as memcached does.
fn reply(out: &mut OutQueue, trace: Option<i32>, text: &str, noreply: bool) {
    if let Some(fd) = trace {
        if noreply {
            eprintln!(">{fd} NOREPLY {text}");
        } else {
            eprintln!(">{fd} {text}");
        }
    }
    if !noreply {
        out.line(text.as_bytes());
    }
}

/// Runs one command.
pub(super) fn execute(cmd: Command<'_>, out: &mut OutQueue, ctx: &mut Ctx) -> After {
    match cmd {
        Command::Get { keys, cas, touch } => get(keys, cas, touch, out, ctx),
        Command::Store(s) => store(s, out, ctx),
        Command::Touch {
            key,
            exptime,
            noreply,
        } => {
            ctx.counters.cmd_touch += 1;
            let e = ctx.clock.realtime(exptime);
            if ctx.cache.touch(key, e) {
                reply(out, ctx.trace, "TOUCHED", noreply);
            } else {
                ctx.counters.touch_misses += 1;
                reply(out, ctx.trace, "NOT_FOUND", noreply);
            }
            After::Next
        }
        Command::Delete { key, noreply } => {
            ctx.detail.record_delete(key);
            if ctx.cache.delete(key) {
                reply(out, ctx.trace, "DELETED", noreply);
            } else {
                ctx.counters.delete_misses += 1;
                reply(out, ctx.trace, "NOT_FOUND", noreply);
            }
            After::Next
        }
        Command::Arith {
            key,
            delta,
            incr,
            noreply,
        } => {
            match ctx.cache.arith(key, incr, delta, 0) {
                Arith::Value(v) => {
                    if !noreply {
                        push_u64(out.text(), v);
                        out.text().extend_from_slice(b"\r\n");
                        out.commit();
                    }
                }
                Arith::NotFound | Arith::Exists => {
                    if incr {
                        ctx.counters.incr_misses += 1;
                    } else {
                        ctx.counters.decr_misses += 1;
                    }
                    reply(out, ctx.trace, "NOT_FOUND", noreply);
                }
                Arith::NonNumeric => reply(
                    out,
                    ctx.trace,
                    "CLIENT_ERROR cannot increment or decrement non-numeric value",
                    noreply,
                ),
                Arith::OutOfMemory => reply(out, ctx.trace, "SERVER_ERROR out of memory", noreply),
            }
            After::Next
        }
        Command::FlushAll { delay, noreply } => {
            ctx.counters.cmd_flush += 1;
            if !ctx.cfg.flush_enabled {
                reply(
                    out,
                    ctx.trace,
                    "CLIENT_ERROR flush_all not allowed",
                    noreply,
                );
                return After::Next;
            }
            let Some(delay) = delay else {
                reply(
                    out,
                    ctx.trace,
                    "CLIENT_ERROR invalid exptime argument",
                    noreply,
                );
                return After::Next;
            };
            let new_oldest = if delay > 0 {
                ctx.clock.realtime(delay)
            } else {
                ctx.clock.now()
            };
            ctx.cache.flush_all(new_oldest);
            reply(out, ctx.trace, "OK", noreply);
            After::Next
        }
        Command::Version => {
            let t = out.text();
            t.extend_from_slice(b"VERSION ");
            t.extend_from_slice(MEMCACHED_VERSION.as_bytes());
            t.extend_from_slice(b"\r\n");
            out.commit();
            After::Next
        }
        Command::Quit => After::CloseAfterWrite,
        Command::Verbosity { level, noreply } => {
            ctx.cfg.verbose = level.min(MAX_VERBOSITY);
            reply(out, ctx.trace, "OK", noreply);
            After::Next
        }
        Command::Stats(t) => super::report::stats(&t, out, ctx),
        Command::Shutdown(t) => {
            if !ctx.cfg.shutdown_enabled {
                reply(out, ctx.trace, "ERROR: shutdown not enabled", false);
                return After::Next;
            }
            if t.len() == 1 {
                *ctx.shutdown = Some(super::Shutdown::Normal);
                return After::Close;
            }
            if t.len() == 2 && t.get(1) == b"graceful" {
                *ctx.shutdown = Some(super::Shutdown::Graceful);
                return After::Close;
            }
            reply(out, ctx.trace, "CLIENT_ERROR invalid shutdown mode", false);
            After::Next
        }
        Command::CacheMemlimit { megabytes, noreply } => {
            match megabytes {
                None => reply(out, ctx.trace, "ERROR", noreply),
                Some(mb) if mb < 8 => reply(
                    out,
                    ctx.trace,
                    "MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m",
                    noreply,
                ),
                Some(mb) if mb > 1_000_000_000 => reply(
                    out,
                    ctx.trace,
                    "MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes",
                    noreply,
                ),
                Some(mb) => {
                    let bytes = mb as usize * 1024 * 1024;
                    ctx.cache.set_mem_limit(bytes);
                    ctx.cfg.maxbytes = bytes;
                    reply(out, ctx.trace, "OK", noreply);
                }
            }
            After::Next
        }
        Command::Slabs(t) => {
            super::admin::slabs(&t, out, ctx);
            After::Next
        }
        Command::Lru(t) => {
            super::admin::lru(&t, out, ctx);
            After::Next
        }
        Command::LruCrawler(t) => super::admin::lru_crawler(&t, out, ctx),
        Command::Meta(line) => super::meta::execute(&crate::proto::text::tokenize(line), out, ctx),
        Command::Reply { text, noreply } => {
            reply(out, ctx.trace, text, noreply);
            After::Next
        }
        Command::Close => After::Close,
    }
}

fn get(region: &[u8], cas: bool, touch: Option<i32>, out: &mut OutQueue, ctx: &mut Ctx) -> After {
    let new_exptime = touch.map(|e| ctx.clock.realtime(e));
    for key in text::keys(region) {
        if key.len() > KEY_MAX_LENGTH {
            // memcached drops every reply not yet sent, then reports the
            // bad key alone.
            out.drop_unsent(ctx.cache);
            reply(
                out,
                ctx.trace,
                "CLIENT_ERROR bad command line format",
                false,
            );
            return After::Next;
        }
        let hit = ctx.cache.get(key, new_exptime);
        ctx.detail.record_get(key, hit.is_some());
        ctx.counters.count_fetch(hit.is_some(), touch.is_some());
        if let Some(it) = hit {
            if let Some(fd) = ctx.trace {
                eprintln!(">{fd} sending key {}", String::from_utf8_lossy(key));
            }
            let v = ctx.cache.view(&it);
            let t = out.text();
            t.extend_from_slice(b"VALUE ");
            t.extend_from_slice(v.key);
            t.push(b' ');
            push_u64(t, u64::from(v.flags));
            t.push(b' ');
            push_u64(t, v.len as u64);
            if cas {
                t.push(b' ');
                push_u64(t, v.cas);
            }
            t.extend_from_slice(b"\r\n");
            let len = v.len + 2;
            out.item(it, len);
        }
    }
    if let Some(fd) = ctx.trace {
        eprintln!(">{fd} END");
    }
    out.line(b"END");
    After::Next
}

fn store(s: StoreCmd<'_>, out: &mut OutQueue, ctx: &mut Ctx) -> After {
    ctx.detail.record_set(s.key);
    let exptime = ctx.clock.realtime(s.exptime);
    let nbytes = s.vlen + 2;
    let mode = match s.mode {
        text::StoreMode::Set => StoreMode::Set,
        text::StoreMode::Add => StoreMode::Add,
        text::StoreMode::Replace => StoreMode::Replace,
        text::StoreMode::Append => StoreMode::Append,
        text::StoreMode::Prepend => StoreMode::Prepend,
        text::StoreMode::Cas => StoreMode::Cas,
    };
    match ctx.cache.alloc(s.key, s.flags, exptime, nbytes) {
        Ok(item) => After::Read(PendingStore {
            item,
            got: 0,
            wire: nbytes,
            mode,
            cas: s.cas,
            reply: StoreReply::Text { noreply: s.noreply },
        }),
        Err(e) => {
            if e == AllocError::TooLarge {
                ctx.counters.store_too_large += 1;
                reply(
                    out,
                    ctx.trace,
                    "SERVER_ERROR object too large for cache",
                    s.noreply,
                );
            } else {
                ctx.counters.store_no_memory += 1;
                reply(
                    out,
                    ctx.trace,
                    "SERVER_ERROR out of memory storing object",
                    s.noreply,
                );
            }
            // A failed set must not leave the old value visible.
            if mode == StoreMode::Set {
                ctx.cache.unlink_key(s.key);
            }
            After::Swallow(nbytes)
        }
    }
}

/// Finishes a storage command once its value is in the item.
pub(super) fn complete_store(p: PendingStore, noreply: bool, out: &mut OutQueue, ctx: &mut Ctx) {
    ctx.counters.cmd_set += 1;
    ctx.cache.count_set(&p.item);
    if !ctx.cache.ends_with_crlf(&p.item) {
        ctx.cache.release(p.item);
        reply(out, ctx.trace, "CLIENT_ERROR bad data chunk", noreply);
        return;
    }
    let text = match ctx.cache.store(p.item, p.mode, p.cas) {
        Stored::Stored => "STORED",
        Stored::NotStored => "NOT_STORED",
        Stored::Exists => "EXISTS",
        Stored::NotFound => "NOT_FOUND",
    };
    reply(out, ctx.trace, text, noreply);
}

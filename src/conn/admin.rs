//! Administrative commands: `slabs`, `lru`, `lru_crawler`.
//!
//! Argument checks and replies follow memcached's `process_slabs_command`,
//! `process_lru_command` and `process_lru_crawler_command`.

use super::commands::After;
use super::out::OutQueue;
use super::Ctx;
use crate::numbers::{strtol, strtoul};
use crate::proto::text::Tokens;

fn reply(out: &mut OutQueue, text: &str, noreply: bool) {
    if !noreply {
        out.line(text.as_bytes());
    }
}

/// memcached's `safe_strtod`: a whole token that is a number.
fn strtod(s: &[u8]) -> Option<f64> {
    std::str::from_utf8(s).ok()?.trim_start().parse().ok()
}

fn last_is_noreply(t: &Tokens<'_>) -> bool {
    t.get(t.len() - 1) == b"noreply"
}

/// `slabs reassign <src> <dst>` and `slabs automove <0|1|2>|ratio <f>`.
pub(super) fn slabs(t: &Tokens<'_>, out: &mut OutQueue, ctx: &mut Ctx) {
    let n = t.len();
    if n == 4 && t.get(1) == b"reassign" {
        if !ctx.cache.rebalance.enabled {
            out.line(b"CLIENT_ERROR slab reassignment disabled");
            return;
        }
        let (Some(src), Some(dst)) = (strtol(t.get(2)), strtol(t.get(3))) else {
            out.line(b"CLIENT_ERROR bad command line format");
            return;
        };
        out.line(ctx.cache.reassign(src, dst).reply().as_bytes());
        return;
    }
    if n >= 3 && t.get(1) == b"automove" {
        let noreply = last_is_noreply(t);
        if t.get(2) == b"ratio" {
            match strtod(t.get(3)).filter(|_| n >= 4) {
                Some(r) => ctx.cache.rebalance.ratio = r,
                None => return reply(out, "ERROR", noreply),
            }
        } else {
            match strtoul(t.get(2)) {
                None => return reply(out, "CLIENT_ERROR bad command line format", noreply),
                Some(level @ 0..=2) => ctx.cache.rebalance.automove = level,
                Some(_) => return reply(out, "ERROR", noreply),
            }
        }
        reply(out, "OK", noreply);
        return;
    }
    out.line(b"ERROR");
}

/// `lru tune|mode|temp_ttl`.
pub(super) fn lru(t: &Tokens<'_>, out: &mut OutQueue, ctx: &mut Ctx) {
    let n = t.len();
    let noreply = last_is_noreply(t);
    let maintainer = ctx.cfg.lru_maintainer;
    let lru = &mut ctx.cache.lru_cfg;
    match t.get(1) {
        b"tune" if n >= 6 => {
            let parsed = (
                strtoul(t.get(2)),
                strtoul(t.get(3)),
                strtod(t.get(4)),
                strtod(t.get(5)),
            );
            let (Some(hot), Some(warm), Some(hot_factor), Some(warm_factor)) = parsed else {
                return reply(out, "ERROR", noreply);
            };
            if u64::from(hot) + u64::from(warm) > 80 {
                reply(out, "ERROR hot and warm pcts must not exceed 80", noreply);
            } else if warm_factor <= 0.0 || hot_factor <= 0.0 {
                reply(
                    out,
                    "ERROR hot/warm age factors must be greater than 0",
                    noreply,
                );
            } else {
                lru.hot_lru_pct = hot;
                lru.warm_lru_pct = warm;
                lru.hot_max_factor = hot_factor;
                lru.warm_max_factor = warm_factor;
                reply(out, "OK", noreply);
            }
        }
        b"mode" if n >= 3 && maintainer => match t.get(2) {
            b"flat" => {
                lru.segmented = false;
                reply(out, "OK", noreply);
            }
            b"segmented" => {
                lru.segmented = true;
                reply(out, "OK", noreply);
            }
            _ => reply(out, "ERROR", noreply),
        },
        b"temp_ttl" if n >= 3 && maintainer => match strtol(t.get(2)) {
            None => reply(out, "ERROR", noreply),
            Some(ttl) => {
                lru.temp_lru = ttl >= 0;
                if ttl >= 0 {
                    lru.temporary_ttl = ttl as u32;
                }
                reply(out, "OK", noreply);
            }
        },
        _ => reply(out, "ERROR", noreply),
    }
}

/// `lru_crawler ...`.
pub(super) fn lru_crawler(t: &Tokens<'_>, out: &mut OutQueue, ctx: &mut Ctx) -> After {
    let n = t.len();
    let sub = t.get(1);
    if n == 3 && sub == b"crawl" {
        if !ctx.cfg.lru_crawler {
            out.line(b"CLIENT_ERROR lru crawler disabled");
            return After::Next;
        }
        let r = ctx.cache.start_crawl(t.get(2), ctx.cfg.lru_crawler_tocrawl);
        out.line(r.reply().as_bytes());
        return After::Next;
    }
    if n == 3 && sub == b"metadump" {
        if !ctx.cfg.lru_crawler {
            out.line(b"CLIENT_ERROR lru crawler disabled");
            return After::Next;
        }
        if !ctx.cfg.dump_enabled {
            out.line(b"ERROR metadump not allowed");
            return After::Next;
        }
        if !out.is_empty() {
            out.line(b"ERROR cannot pipeline other commands before metadump");
            return After::Next;
        }
        return match crate::cache::CrawlTarget::parse(t.get(2), ctx.cache) {
            Ok(target) => After::Dump(target),
            Err(r) => {
                out.line(r.reply().as_bytes());
                After::Next
            }
        };
    }
    if n == 3 && (sub == b"tocrawl" || sub == b"sleep") {
        let Some(v) = strtoul(t.get(2)) else {
            out.line(b"CLIENT_ERROR bad command line format");
            return After::Next;
        };
        if sub == b"sleep" {
            if v > 1_000_000 {
                out.line(b"CLIENT_ERROR sleep must be one second or less");
                return After::Next;
            }
            ctx.cfg.lru_crawler_sleep = v;
        } else {
            ctx.cfg.lru_crawler_tocrawl = v;
            ctx.cache.crawler.tocrawl = v;
        }
        out.line(b"OK");
        return After::Next;
    }
    if n == 2 && sub == b"enable" {
        // memcached cannot start its crawler thread twice.
        if ctx.cfg.lru_crawler {
            out.line(b"ERROR failed to start lru crawler thread");
        } else {
            ctx.cfg.lru_crawler = true;
            ctx.cache.crawler.auto = ctx.cfg.lru_maintainer;
            out.line(b"OK");
        }
        return After::Next;
    }
    if n == 2 && sub == b"disable" {
        ctx.cfg.lru_crawler = false;
        ctx.cache.crawler.auto = false;
        out.line(b"OK");
        return After::Next;
    }
    out.line(b"ERROR");
    After::Next
}

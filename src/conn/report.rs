//! `stats` and its groups, with memcached's field names and order.
//!
//! Only fields that have a meaning here are printed; monitoring tools skip
//! missing keys.  Not on the hot path, so `write!` is fine.

use std::io::Write as _;

use super::commands::After;
use super::out::OutQueue;
use super::Ctx;
use crate::cache::arena::MAX_CLASSES;
use crate::cache::lru::Seg;
use crate::config::MEMCACHED_VERSION;
use crate::numbers::strtoul;
use crate::proto::text::Tokens;

struct Lines<'a>(&'a mut Vec<u8>);

impl Lines<'_> {
    fn stat(&mut self, name: &str, value: impl std::fmt::Display) {
        let _ = write!(self.0, "STAT {name} {value}\r\n");
    }
}

/// CPU seconds of this process from /proc (user, system), as `sec.usec`.
fn rusage() -> (String, String) {
    let fmt = |ticks: u64| {
        let hz = 100;
        format!("{}.{:06}", ticks / hz, (ticks % hz) * (1_000_000 / hz))
    };
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (fmt(tick(11)), fmt(tick(12)))
}

/// `stats reset`.
pub(super) fn reset(ctx: &mut Ctx) {
    ctx.counters.reset();
    ctx.cache.reset_stats();
    ctx.detail.clear();
}

/// Answers `stats [group]`, as memcached's `process_stat` dispatches it.
pub(super) fn stats(t: &Tokens<'_>, out: &mut OutQueue, ctx: &mut Ctx) -> After {
    if t.len() == 1 {
        general(out, ctx);
        return After::Next;
    }
    match t.get(1) {
        b"reset" => {
            reset(ctx);
            out.line(b"RESET");
        }
        b"detail" => match t.get(2) {
            b"on" if t.len() >= 3 => {
                ctx.detail.enabled = true;
                out.line(b"OK");
            }
            b"off" if t.len() >= 3 => {
                ctx.detail.enabled = false;
                out.line(b"OK");
            }
            b"dump" if t.len() >= 3 => {
                ctx.detail.dump(out.text());
                out.line(b"END");
            }
            _ => out.line(b"CLIENT_ERROR usage: stats detail on|off|dump"),
        },
        b"settings" => settings(out, ctx),
        b"cachedump" => cachedump(t, out, ctx),
        b"conns" => return After::StatsConns,
        b"slabs" => slabs(out, ctx),
        b"items" => items(out, ctx),
        b"sizes" => {
            let mut l = Lines(out.text());
            match ctx.cache.sizes() {
                Some(sizes) => sizes.for_each(|(size, n)| l.stat(&size.to_string(), n)),
                None => l.stat("sizes_status", "disabled"),
            }
            out.line(b"END");
        }
        b"sizes_enable" => match ctx.cache.enable_sizes() {
            Ok(()) => Lines(out.text()).stat("sizes_status", "enabled"),
            Err(why) => {
                let mut l = Lines(out.text());
                l.stat("sizes_status", "error");
                l.stat("sizes_error", why);
            }
        },
        b"sizes_disable" => {
            ctx.cache.disable_sizes();
            Lines(out.text()).stat("sizes_status", "disabled");
        }
        _ => out.line(b"ERROR"),
    }
    out.commit();
    After::Next
}

/// `stats cachedump <class> <limit>`: keys from the head of a class's LRU.
fn cachedump(t: &Tokens<'_>, out: &mut OutQueue, ctx: &mut Ctx) {
    if !ctx.cfg.dump_enabled {
        out.line(b"CLIENT_ERROR stats cachedump not allowed");
        return;
    }
    if t.len() < 4 {
        out.line(b"CLIENT_ERROR bad command line");
        return;
    }
    let (Some(id), Some(limit)) = (strtoul(t.get(2)), strtoul(t.get(3))) else {
        out.line(b"CLIENT_ERROR bad command line format");
        return;
    };
    if id as usize >= MAX_CLASSES {
        out.line(b"CLIENT_ERROR Illegal slab id");
        return;
    }
    let started = ctx.clock.process_started();
    // memcached caps the reply at 2 MB.
    const CAP: usize = 2 * 1024 * 1024;
    let mut size = 0;
    let text = out.text();
    ctx.cache
        .walk_lru(id as u8, limit as usize, |key, len, exptime| {
            let abs = if exptime == 0 {
                0
            } else {
                i64::from(exptime) + started
            };
            let line = format!(
                "ITEM {} [{len} b; {abs} s]\r\n",
                String::from_utf8_lossy(key)
            );
            size += line.len();
            if size + 5 > CAP {
                return false;
            }
            text.extend_from_slice(line.as_bytes());
            true
        });
    out.line(b"END");
}

/// `stats conns` lines for one socket: `(fd, addr, listen addr, state,
/// seconds since its last command)`; listeners have no listen address.
pub type ConnLine = (i32, String, Option<String>, &'static str, u32);

/// Renders `stats conns` from the server's table, sorted by descriptor.
pub fn conns(mut lines: Vec<ConnLine>) -> Vec<u8> {
    lines.sort_by_key(|l| l.0);
    let mut out = Vec::new();
    let mut l = Lines(&mut out);
    for (fd, addr, listen, state, idle) in lines {
        l.stat(&format!("{fd}:addr"), addr);
        if let Some(listen) = listen {
            l.stat(&format!("{fd}:listen_addr"), listen);
        }
        l.stat(&format!("{fd}:state"), state);
        l.stat(&format!("{fd}:secs_since_last_cmd"), idle);
    }
    out.extend_from_slice(b"END\r\n");
    out
}

pub(super) fn general(out: &mut OutQueue, ctx: &mut Ctx) {
    let (user, system) = rusage();
    let now = ctx.clock.now();
    let c = &*ctx.counters;
    let cache = &*ctx.cache;
    let cs = &cache.stats;
    let mut l = Lines(out.text());
    l.stat("pid", std::process::id());
    l.stat(
        "uptime",
        now.saturating_sub(crate::cache::ITEM_UPDATE_INTERVAL),
    );
    l.stat("time", ctx.clock.unix_now());
    l.stat("version", MEMCACHED_VERSION);
    l.stat("pointer_size", usize::BITS);
    l.stat("rusage_user", user);
    l.stat("rusage_system", system);
    l.stat("max_connections", ctx.cfg.maxconns);
    l.stat("curr_connections", ctx.server.curr_connections);
    l.stat("total_connections", c.total_connections);
    l.stat("rejected_connections", c.rejected_connections);
    l.stat("connection_structures", ctx.server.connection_structures);
    l.stat("reserved_fds", ctx.server.reserved_fds);
    l.stat("cmd_get", c.cmd_get);
    l.stat("cmd_set", c.cmd_set);
    l.stat("cmd_flush", c.cmd_flush);
    l.stat("cmd_touch", c.cmd_touch);
    l.stat("cmd_meta", c.cmd_meta);
    l.stat("get_hits", c.get_hits);
    l.stat("get_misses", c.get_misses);
    l.stat("get_expired", cs.get_expired);
    l.stat("get_flushed", cs.get_flushed);
    l.stat("delete_misses", c.delete_misses);
    l.stat("delete_hits", cache.total(|c| c.delete_hits));
    l.stat("incr_misses", c.incr_misses);
    l.stat("incr_hits", cache.total(|c| c.incr_hits));
    l.stat("decr_misses", c.decr_misses);
    l.stat("decr_hits", cache.total(|c| c.decr_hits));
    l.stat("cas_misses", cs.cas_misses);
    l.stat("cas_hits", cache.total(|c| c.cas_hits));
    l.stat("cas_badval", cache.total(|c| c.cas_badval));
    l.stat("touch_hits", cache.total(|c| c.touch_hits));
    l.stat("touch_misses", c.touch_misses);
    l.stat("store_too_large", c.store_too_large);
    l.stat("store_no_memory", c.store_no_memory);
    l.stat("auth_cmds", c.auth_cmds);
    l.stat("auth_errors", c.auth_errors);
    if ctx.cfg.idle_timeout > 0 {
        l.stat("idle_kicks", c.idle_kicks);
    }
    l.stat("bytes_read", c.bytes_read);
    l.stat("bytes_written", c.bytes_written);
    l.stat("limit_maxbytes", ctx.cfg.maxbytes);
    l.stat("accepting_conns", u8::from(ctx.server.accepting));
    l.stat("listen_disabled_num", c.listen_disabled_num);
    l.stat(
        "time_in_listen_disabled_us",
        ctx.server.time_in_listen_disabled_us,
    );
    l.stat("threads", ctx.cfg.threads);
    l.stat("conn_yields", c.conn_yields);
    let index = cache.index();
    l.stat("hash_power_level", index.hashpower());
    l.stat("hash_bytes", index.bytes());
    l.stat("hash_is_expanding", u8::from(index.is_expanding()));
    let rb = &cache.rebalance;
    l.stat("slab_reassign_rescues", rb.rescues);
    l.stat("slab_reassign_chunk_rescues", rb.chunk_rescues);
    l.stat("slab_reassign_evictions_nomem", rb.evictions_nomem);
    l.stat("slab_reassign_inline_reclaim", 0);
    l.stat("slab_reassign_busy_items", rb.busy_items);
    l.stat("slab_reassign_busy_deletes", 0);
    l.stat("slab_reassign_running", u8::from(rb.running()));
    l.stat("slabs_moved", rb.slabs_moved);
    l.stat("lru_crawler_running", u8::from(cache.crawler.running()));
    l.stat("lru_crawler_starts", cache.crawler.starts);
    // memcached prints the maintainer's counters only while it runs.
    let maintainer = ctx.cfg.lru_maintainer;
    if maintainer {
        l.stat("lru_maintainer_juggles", 0);
    }
    l.stat("malloc_fails", 0);
    l.stat("bytes", cs.bytes);
    l.stat("curr_items", cs.curr_items);
    l.stat("total_items", cs.total_items);
    l.stat("slab_global_page_pool", cache.arena().pool_pages());
    l.stat("expired_unfetched", cache.total(|c| c.expired_unfetched));
    l.stat("evicted_unfetched", cache.total(|c| c.evicted_unfetched));
    if maintainer {
        l.stat("evicted_active", cache.total(|c| c.evicted_active));
    }
    l.stat("evictions", cache.total(|c| c.evicted));
    l.stat("reclaimed", cache.total(|c| c.reclaimed));
    l.stat("crawler_reclaimed", cache.total(|c| c.crawler_reclaimed));
    l.stat(
        "crawler_items_checked",
        cache.total(|c| c.crawler_items_checked),
    );
    l.stat("lrutail_reflocked", 0);
    if maintainer {
        l.stat("moves_to_cold", cache.total(|c| c.moves_to_cold));
        l.stat("moves_to_warm", cache.total(|c| c.moves_to_warm));
        l.stat("moves_within_lru", cache.total(|c| c.moves_within_lru));
        l.stat("direct_reclaims", cache.total(|c| c.direct_reclaims));
        l.stat("lru_bumps_dropped", 0);
    }
    out.line(b"END");
}

pub(super) fn settings(out: &mut OutQueue, ctx: &mut Ctx) {
    let cfg = &*ctx.cfg;
    let mut l = Lines(out.text());
    l.stat("maxbytes", cfg.maxbytes);
    l.stat("maxconns", cfg.maxconns);
    l.stat("tcpport", cfg.port);
    l.stat("udpport", cfg.udp_port);
    l.stat(
        "inter",
        if cfg.listen.is_empty() {
            "NULL".to_owned()
        } else {
            cfg.listen.join(",")
        },
    );
    l.stat("verbosity", cfg.verbose);
    l.stat("oldest", 0);
    l.stat("evictions", if cfg.evict_to_free { "on" } else { "off" });
    l.stat(
        "domain_socket",
        cfg.unix_socket.as_deref().unwrap_or("NULL"),
    );
    l.stat("umask", format_args!("{:o}", cfg.unix_mask));
    l.stat(
        "shutdown_command",
        if cfg.shutdown_enabled { "yes" } else { "no" },
    );
    l.stat("growth_factor", format!("{:.2}", cfg.factor));
    l.stat("chunk_size", cfg.chunk_size);
    l.stat("num_threads", cfg.threads);
    l.stat("num_threads_per_udp", cfg.threads);
    l.stat("stat_key_prefix", char::from(cfg.prefix_delimiter));
    l.stat(
        "detail_enabled",
        if ctx.detail.enabled { "yes" } else { "no" },
    );
    l.stat("reqs_per_event", cfg.reqs_per_event);
    l.stat("cas_enabled", if cfg.use_cas { "yes" } else { "no" });
    l.stat("tcp_backlog", cfg.backlog);
    l.stat("binding_protocol", cfg.binding_protocol);
    l.stat("auth_enabled_sasl", if cfg.sasl { "yes" } else { "no" });
    l.stat(
        "auth_enabled_ascii",
        cfg.auth_file.as_deref().unwrap_or("no"),
    );
    l.stat("item_size_max", cfg.item_size_max);
    l.stat(
        "maxconns_fast",
        if cfg.maxconns_fast { "yes" } else { "no" },
    );
    l.stat("hashpower_init", cfg.hashpower_init);
    let yes = |b: bool| if b { "yes" } else { "no" };
    let lru = &ctx.cache.lru_cfg;
    l.stat("slab_reassign", yes(cfg.slab_reassign));
    l.stat("slab_automove", ctx.cache.rebalance.automove);
    l.stat(
        "slab_automove_ratio",
        format!("{:.2}", ctx.cache.rebalance.ratio),
    );
    l.stat("slab_automove_window", cfg.slab_automove_window);
    l.stat("slab_chunk_max", cfg.slab_chunk_max);
    l.stat("lru_crawler", yes(cfg.lru_crawler));
    l.stat("lru_crawler_sleep", cfg.lru_crawler_sleep);
    l.stat("lru_crawler_tocrawl", cfg.lru_crawler_tocrawl);
    l.stat("tail_repair_time", cfg.tail_repair_time);
    l.stat("flush_enabled", yes(cfg.flush_enabled));
    l.stat("dump_enabled", yes(cfg.dump_enabled));
    l.stat("hash_algorithm", cfg.hash_algorithm);
    l.stat("lru_maintainer_thread", yes(cfg.lru_maintainer));
    l.stat("lru_segmented", yes(lru.segmented));
    l.stat("hot_lru_pct", lru.hot_lru_pct);
    l.stat("warm_lru_pct", lru.warm_lru_pct);
    l.stat("hot_max_factor", format!("{:.2}", lru.hot_max_factor));
    l.stat("warm_max_factor", format!("{:.2}", lru.warm_max_factor));
    l.stat("temp_lru", yes(lru.temp_lru));
    l.stat("temporary_ttl", lru.temporary_ttl);
    l.stat("idle_timeout", cfg.idle_timeout);
    l.stat("track_sizes", yes(cfg.track_sizes));
    // memcached prints this among its extstore settings, after the rest.
    l.stat(
        "slab_automove_freeratio",
        format!("{:.3}", cfg.slab_automove_freeratio),
    );
    out.line(b"END");
}

pub(super) fn slabs(out: &mut OutQueue, ctx: &mut Ctx) {
    let cache = &*ctx.cache;
    let arena = cache.arena();
    let mut l = Lines(out.text());
    let mut active = 0;
    for (id, c) in arena.classes().iter().enumerate().skip(1) {
        if c.pages.is_empty() {
            continue;
        }
        active += 1;
        let s = &cache.class_stats()[id];
        let total = c.pages.len() as u64 * u64::from(c.perslab);
        let mut stat = |name: &str, v: u64| l.stat(&format!("{id}:{name}"), v);
        stat("chunk_size", u64::from(c.size));
        stat("chunks_per_page", u64::from(c.perslab));
        stat("total_pages", c.pages.len() as u64);
        stat("total_chunks", total);
        stat("used_chunks", c.used);
        stat("free_chunks", total - c.used);
        // A dead stat that memcached still prints as zero.
        stat("free_chunks_end", 0);
        stat("get_hits", s.get_hits());
        stat("cmd_set", s.cmd_set);
        stat("delete_hits", s.delete_hits);
        stat("incr_hits", s.incr_hits);
        stat("decr_hits", s.decr_hits);
        stat("cas_hits", s.cas_hits);
        stat("cas_badval", s.cas_badval);
        stat("touch_hits", s.touch_hits);
    }
    l.stat("active_slabs", active);
    l.stat("total_malloced", arena.malloced());
    out.line(b"END");
}

pub(super) fn items(out: &mut OutQueue, ctx: &mut Ctx) {
    let cache = &*ctx.cache;
    let segmented = cache.lru_cfg.segmented;
    let temp = cache.lru_cfg.temp_lru;
    let maintainer = ctx.cfg.lru_maintainer;
    let mut l = Lines(out.text());
    for id in 1..cache.arena().classes().len() {
        let class = id as u8;
        let sizes = cache.lru_sizes(class);
        let number: u64 = sizes.iter().map(|s| s.0).sum();
        if number == 0 {
            continue;
        }
        let s = &cache.class_stats()[id];
        let mut stat = |name: &str, v: u64| l.stat(&format!("items:{id}:{name}"), v);
        stat("number", number);
        if segmented {
            stat("number_hot", sizes[Seg::Hot as usize].0);
            stat("number_warm", sizes[Seg::Warm as usize].0);
            stat("number_cold", sizes[Seg::Cold as usize].0);
            if temp {
                stat("number_temp", sizes[Seg::Temp as usize].0);
            }
            stat("age_hot", u64::from(cache.tail_age(class, Seg::Hot)));
            stat("age_warm", u64::from(cache.tail_age(class, Seg::Warm)));
        }
        stat("age", u64::from(cache.tail_age(class, Seg::Cold)));
        stat("mem_requested", s.mem_requested);
        stat("evicted", s.evicted);
        stat("evicted_nonzero", s.evicted_nonzero);
        stat("evicted_time", u64::from(s.evicted_time));
        stat("outofmemory", s.outofmemory);
        stat("tailrepairs", 0);
        stat("reclaimed", s.reclaimed);
        stat("expired_unfetched", s.expired_unfetched);
        stat("evicted_unfetched", s.evicted_unfetched);
        if maintainer {
            stat("evicted_active", s.evicted_active);
        }
        stat("crawler_reclaimed", s.crawler_reclaimed);
        stat("crawler_items_checked", s.crawler_items_checked);
        stat("lrutail_reflocked", 0);
        if !maintainer {
            continue;
        }
        stat("moves_to_cold", s.moves_to_cold);
        stat("moves_to_warm", s.moves_to_warm);
        stat("moves_within_lru", s.moves_within_lru);
        stat("direct_reclaims", s.direct_reclaims);
        stat("hits_to_hot", s.hits_to_hot);
        stat("hits_to_warm", s.hits_to_warm);
        stat("hits_to_cold", s.hits_to_cold);
        stat("hits_to_temp", s.hits_to_temp);
    }
    out.line(b"END");
}

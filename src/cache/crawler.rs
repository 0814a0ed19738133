//! The LRU crawler: finds expired and flushed items without waiting for a
//! read, and walks items for `lru_crawler metadump`.
//!
//! It walks the pages of the chosen classes chunk by chunk.  A page and
//! chunk index is a cursor that stays valid however items come and go
//! between slices, unlike a position in a list.  A chunk is an item's head
//! when it is not a segment of another item, is marked linked, and the
//! index finds it under its own key.  Work per loop turn is bounded.

use std::io::Write as _;

use super::arena::{Arena, MAX_CLASSES};
use super::index::hash;
use super::item::{ItemHeader, F_FETCHED, F_LINKED, HEADER};
use super::Cache;

/// Chunks examined per loop turn by a background crawl.
const CRAWL_PER_TICK: usize = 1000;

/// Outcome of `lru_crawler crawl`, with memcached's replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrawlStart {
    Ok,
    Running,
    BadClass,
    NotStarted,
}

impl CrawlStart {
    pub fn reply(self) -> &'static str {
        match self {
            CrawlStart::Ok => "OK",
            CrawlStart::Running => "BUSY currently processing crawler request",
            CrawlStart::BadClass => "BADCLASS invalid class id",
            CrawlStart::NotStarted => "NOTSTARTED no items to crawl",
        }
    }
}

/// Where a walk over classes' pages stands.
#[derive(Debug, Clone)]
pub struct CrawlTarget {
    classes: Vec<u8>,
    class: usize,
    page: usize,
    chunk: usize,
    /// Items looked at per class at most (0: all).
    tocrawl: u32,
    seen_in_class: u32,
}

impl CrawlTarget {
    /// `all`, `hash` or comma-separated class ids, as memcached accepts.
    pub fn parse(spec: &[u8], cache: &Cache) -> Result<CrawlTarget, CrawlStart> {
        let classes = cache.arena.classes().len() as u8;
        let ids: Vec<u8> = if spec == b"all" || spec == b"hash" {
            (1..classes).collect()
        } else {
            let mut ids = Vec::new();
            for part in spec.split(|&b| b == b',').filter(|p| !p.is_empty()) {
                match crate::numbers::strtoul(part) {
                    Some(id) if id >= 1 && (id as usize) < MAX_CLASSES => {
                        if id < u32::from(classes) {
                            ids.push(id as u8);
                        }
                    }
                    _ => return Err(CrawlStart::BadClass),
                }
            }
            ids
        };
        Ok(CrawlTarget {
            classes: ids,
            class: 0,
            page: 0,
            chunk: 0,
            tocrawl: 0,
            seen_in_class: 0,
        })
    }
}

/// Crawler state and counters.
#[derive(Debug, Default)]
pub struct Crawler {
    job: Option<CrawlTarget>,
    pub starts: u64,
    /// Crawl every class on a schedule (crawler and maintainer both on).
    pub auto: bool,
    /// Relative second the next scheduled crawl may start.
    pub(super) next_auto: u32,
    /// Seconds between scheduled crawls; grows while crawls find nothing.
    interval: u32,
    /// Items the crawl in progress checked and reclaimed.
    job_checked: u64,
    job_reclaimed: u64,
}

/// Seconds between the end of one scheduled crawl and the next, at first
/// and whenever a crawl finds expired items.
const AUTO_CRAWL_INTERVAL: u32 = 2;
/// Longest wait between scheduled crawls (memcached's
/// `MAX_MAINTCRAWL_WAIT`).
const MAX_AUTO_CRAWL_INTERVAL: u32 = 3600;
/// Crawls of fewer items than this never back off: they are cheap.
const BACKOFF_MIN_ITEMS: u64 = 10_000;
/// Scheduled crawling is paced to this many items per second on average,
/// so a large cache is not walked end to end every few seconds.
const AUTO_CRAWL_ITEMS_PER_SEC: u64 = 50_000;

impl Crawler {
    pub fn running(&self) -> bool {
        self.job.is_some()
    }
}

impl Cache {
    /// `lru_crawler crawl <classes>`.
    pub fn start_crawl(&mut self, spec: &[u8], tocrawl: u32) -> CrawlStart {
        let mut target = match CrawlTarget::parse(spec, self) {
            Ok(t) => t,
            Err(e) => return e,
        };
        if self.crawler.running() {
            return CrawlStart::Running;
        }
        // memcached answers OK even when there is nothing to look at.
        target.classes.retain(|&c| self.lru.class_len(c) > 0);
        target.tocrawl = tocrawl;
        self.crawler.starts += 1;
        self.crawler.job = Some(target);
        CrawlStart::Ok
    }

    /// The item whose head is chunk `h`, if `h` is one.
    fn head_at(&self, h: u32) -> Option<u32> {
        if self.owner_of_segment(h).is_some() {
            return None;
        }
        let hdr = self.arena.header::<ItemHeader>(h);
        if hdr.iflags & F_LINKED == 0 || HEADER + hdr.nkey as usize > self.arena.chunk_size(h) {
            return None;
        }
        let key = self.arena.bytes(h, HEADER, hdr.nkey as usize);
        (self.index.find(&self.arena, key, hash(key)) == h).then_some(h)
    }

    /// Advances `t` by up to `budget` chunks, calling `visit` with each
    /// live item head.  Returns true when the walk is complete.
    fn walk(
        &mut self,
        t: &mut CrawlTarget,
        budget: usize,
        visit: &mut dyn FnMut(&mut Cache, u32, u8),
    ) -> bool {
        let mut left = budget;
        while t.class < t.classes.len() {
            let class = t.classes[t.class];
            let per = self.arena.classes()[class as usize].perslab as usize;
            // Visiting an item may unlink it, but never moves pages.
            while let Some(&page) = self.arena.classes()[class as usize].pages.get(t.page) {
                let npages = self.arena.classes()[class as usize].pages.len();
                while t.chunk < per {
                    if left == 0 {
                        return false;
                    }
                    left -= 1;
                    let h = Arena::chunk_handle(page, t.chunk);
                    t.chunk += 1;
                    if let Some(item) = self.head_at(h) {
                        visit(self, item, class);
                        t.seen_in_class += 1;
                        if t.tocrawl != 0 && t.seen_in_class >= t.tocrawl {
                            t.chunk = per;
                            t.page = npages;
                        }
                    }
                }
                t.chunk = 0;
                t.page += 1;
            }
            t.page = 0;
            t.seen_in_class = 0;
            t.class += 1;
        }
        true
    }

    /// Starts the scheduled crawl when it is due (once a second at most).
    pub(super) fn schedule_crawl(&mut self) {
        let c = &self.crawler;
        if c.auto && !c.running() && self.now >= c.next_auto && self.stats.curr_items > 0 {
            let _ = self.start_crawl(b"all", 0);
        }
    }

    /// One slice of a background crawl: reclaim what has expired.
    pub(super) fn crawl_step(&mut self) {
        let Some(mut t) = self.crawler.job.take() else {
            return;
        };
        let (mut checked, mut reclaimed) = (0u64, 0u64);
        let done = self.walk(&mut t, CRAWL_PER_TICK, &mut |cache, h, class| {
            cache.class_stats[class as usize].crawler_items_checked += 1;
            checked += 1;
            if cache.is_expired(h) || cache.is_flushed(h) {
                reclaimed += 1;
                let fetched = cache.hdr(h).iflags & F_FETCHED != 0;
                let cs = &mut cache.class_stats[class as usize];
                cs.crawler_reclaimed += 1;
                if !fetched {
                    cs.expired_unfetched += 1;
                }
                if cache.hdr(h).refcount == 0 {
                    let hv = hash(cache.key(h));
                    cache.unlink(h, hv);
                }
            }
        });
        let c = &mut self.crawler;
        c.job_checked += checked;
        c.job_reclaimed += reclaimed;
        if !done {
            c.job = Some(t);
            return;
        }
        // Like memcached's scheduler, wait longer while crawls find
        // nothing to reclaim (under 1% of what they check), and pace large
        // caches by their size.
        let (checked, reclaimed) = (c.job_checked, c.job_reclaimed);
        c.job_checked = 0;
        c.job_reclaimed = 0;
        c.interval = if checked >= BACKOFF_MIN_ITEMS && reclaimed * 100 < checked {
            (c.interval.max(AUTO_CRAWL_INTERVAL) * 2).min(MAX_AUTO_CRAWL_INTERVAL)
        } else {
            AUTO_CRAWL_INTERVAL
        };
        let paced = (checked / AUTO_CRAWL_ITEMS_PER_SEC) as u32;
        c.next_auto = self.now + c.interval.max(paced);
    }

    /// Appends up to `budget` chunks' worth of `metadump` lines to `out`;
    /// true when the dump is complete.
    pub fn dump_step(
        &mut self,
        t: &mut CrawlTarget,
        out: &mut Vec<u8>,
        process_started: i64,
        budget: usize,
    ) -> bool {
        self.walk(t, budget, &mut |cache, h, class| {
            let hdr = cache.hdr(h);
            let exp = if hdr.exptime == 0 {
                -1
            } else {
                i64::from(hdr.exptime) + process_started
            };
            let la = i64::from(hdr.time) + process_started;
            let fetched = if hdr.iflags & F_FETCHED != 0 {
                "yes"
            } else {
                "no"
            };
            let (cas, size) = (hdr.cas, cache.ntotal(h));
            out.extend_from_slice(b"key=");
            uriencode(cache.key(h), out);
            let _ = writeln!(
                out,
                " exp={exp} la={la} cas={cas} fetch={fetched} cls={class} size={size}"
            );
        })
    }
}

/// memcached's `uriencode`: unreserved characters as they are, the rest
/// as `%XX`.
fn uriencode(key: &[u8], out: &mut Vec<u8>) {
    for &b in key {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

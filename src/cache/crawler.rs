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
    /// Crawl classes on a schedule (crawler and maintainer both on).
    pub auto: bool,
    /// Items a scheduled crawl looks at per class at most (0: all), the
    /// `lru_crawler tocrawl` setting.
    pub tocrawl: u32,
    /// Whether the running job is a scheduled one, whose findings set
    /// the schedule.
    job_is_auto: bool,
    /// The schedule of each class, indexed by class id (sized on the
    /// first scheduled crawl).
    schedule: Vec<ClassSchedule>,
}

#[derive(Debug, Clone, Copy, Default)]
struct ClassSchedule {
    /// Relative second the next scheduled crawl may start.
    next: u32,
    /// Seconds waited after the last one, before `RETRY_WAIT`.
    wait: u32,
    /// What the scheduled crawl in progress found.
    found: ClassFindings,
}

/// What a scheduled crawl saw in one class: the basis of memcached's
/// choice of when to crawl that class again.
#[derive(Debug, Clone, Copy)]
struct ClassFindings {
    seen: u64,
    /// Live items that never expire.
    no_exptime: u64,
    /// Live items by whole minutes left until they expire (first hour).
    expiring: [u64; 60],
}

/// Seconds added to every scheduled wait (memcached's minimum retry).
const RETRY_WAIT: u32 = 5;
/// Step by which a class's wait grows or shrinks after each crawl.
const WAIT_STEP: u32 = 60;
/// Longest wait between scheduled crawls of a class (memcached's
/// `MAX_MAINTCRAWL_WAIT`).
const MAX_WAIT: u32 = 3600;

impl Default for ClassFindings {
    fn default() -> ClassFindings {
        ClassFindings {
            seen: 0,
            no_exptime: 0,
            expiring: [0; 60],
        }
    }
}

impl ClassFindings {
    /// memcached's rule: crawl again about when more than 1% of the items
    /// that can expire will have; back off by a minute while none can.
    fn next_wait(&self, wait: u32) -> u32 {
        let possible = self.seen - self.no_exptime;
        let enough = possible / 100 + 1;
        let mut available = 0;
        let mut wait = wait;
        for (minute, &n) in self.expiring.iter().enumerate() {
            available += n;
            if available > enough {
                let due = minute as u32 * WAIT_STEP;
                if wait < due {
                    wait += WAIT_STEP;
                } else if wait >= WAIT_STEP {
                    wait -= WAIT_STEP;
                }
                break;
            }
        }
        if available == 0 {
            wait += WAIT_STEP;
        }
        wait.min(MAX_WAIT)
    }
}

impl Crawler {
    pub fn running(&self) -> bool {
        self.job.is_some()
    }

    /// The relative second `class` may next be crawled on schedule.
    #[cfg(test)]
    pub(super) fn next_scheduled(&self, class: u8) -> u32 {
        self.schedule.get(class as usize).map_or(0, |s| s.next)
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
        self.crawler.job_is_auto = false;
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

    /// Starts a scheduled crawl of the classes that are due (checked once
    /// a second).  Like memcached's, the first comes at start-up, and an
    /// empty class counts as crawled at once, finding nothing.
    pub(super) fn schedule_crawl(&mut self) {
        let c = &self.crawler;
        if !c.auto || c.running() {
            return;
        }
        let now = self.now;
        let classes = self.arena.classes().len() as u8;
        let next = |k: u8| c.schedule.get(k as usize).map_or(0, |s| s.next);
        // memcached crawls a class once the clock is past its time.
        let due: Vec<u8> = (1..classes).filter(|&k| now > next(k)).collect();
        if due.is_empty() {
            return;
        }
        let c = &mut self.crawler;
        c.schedule.resize(MAX_CLASSES, ClassSchedule::default());
        c.starts += 1;
        for &k in &due {
            let s = &mut c.schedule[k as usize];
            s.found = ClassFindings::default();
            s.next = now + RETRY_WAIT;
        }
        let (crawl, empty): (Vec<u8>, Vec<u8>) =
            due.into_iter().partition(|&k| self.lru.class_len(k) > 0);
        self.schedule_next(&empty);
        if !crawl.is_empty() {
            let c = &mut self.crawler;
            c.job_is_auto = true;
            c.job = Some(CrawlTarget {
                classes: crawl,
                class: 0,
                page: 0,
                chunk: 0,
                tocrawl: c.tocrawl,
                seen_in_class: 0,
            });
        }
    }

    /// Sets when `classes` are next crawled, from what their scheduled
    /// crawl found.
    fn schedule_next(&mut self, classes: &[u8]) {
        for &k in classes {
            let s = &mut self.crawler.schedule[k as usize];
            s.wait = s.found.next_wait(s.wait);
            s.next = self.now + s.wait + RETRY_WAIT;
        }
    }

    /// One slice of a background crawl: reclaim what has expired.
    pub(super) fn crawl_step(&mut self) {
        let Some(mut t) = self.crawler.job.take() else {
            return;
        };
        let auto = self.crawler.job_is_auto;
        let done = self.walk(&mut t, CRAWL_PER_TICK, &mut |cache, h, class| {
            cache.class_stats[class as usize].crawler_items_checked += 1;
            if cache.is_expired(h) || cache.is_flushed(h) {
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
            } else if auto {
                let exptime = cache.hdr(h).exptime;
                let f = &mut cache.crawler.schedule[class as usize].found;
                f.seen += 1;
                if exptime == 0 {
                    f.no_exptime += 1;
                } else if let Some(n) = f.expiring.get_mut(((exptime - cache.now) / 60) as usize) {
                    *n += 1;
                }
            }
        });
        if !done {
            self.crawler.job = Some(t);
            return;
        }
        if auto {
            self.schedule_next(&t.classes);
        }
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

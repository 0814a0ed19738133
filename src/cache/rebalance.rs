//! Slab rebalancing: moving pages between chunk classes.
//!
//! A cache filled with small values and then asked for large ones would
//! otherwise answer `SERVER_ERROR out of memory` forever: every page
//! belongs to the small class.  A move empties one page of the source
//! class (evicting the items whose head or segment lives there; items
//! being sent are waited for), then hands it to the destination, or to the
//! global pool (class 0) that any class draws new pages from.
//!
//! Moves run in slices inside the event loop, a bounded number of chunks
//! per turn.  `slabs automove 1` looks once a second at a sliding window
//! of evictions and COLD ages and moves a page from the class whose items
//! are oldest to the one evicting the youngest; `slabs automove 2` asks
//! for a page on every eviction, as memcached does.

use std::collections::VecDeque;

use super::arena::{Arena, NIL};
use super::index::hash;
use super::item::{F_LINKED, F_SEGMENTED, SEGMENT_OWNER};
use super::lru::Seg;
use super::Cache;

/// Chunks examined per loop turn while a page is being emptied.
const CHUNKS_PER_STEP: usize = 512;
/// Passes over a page with pinned items before the move is abandoned.
const MAX_BUSY_PASSES: u32 = 1000;
/// Page moves automove may start per second.
const AUTOMOVE_PER_SECOND: u32 = 8;

/// Outcome of `slabs reassign`, with memcached's replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reassign {
    Ok,
    Running,
    BadClass,
    NoSpare,
    Same,
}

impl Reassign {
    pub fn reply(self) -> &'static str {
        match self {
            Reassign::Ok => "OK",
            Reassign::Running => "BUSY currently processing reassign request",
            Reassign::BadClass => "BADCLASS invalid src or dst class id",
            Reassign::NoSpare => "NOSPARE source class has no spare pages",
            Reassign::Same => "SAME src and dst class are identical",
        }
    }
}

/// A page being emptied.
#[derive(Debug, Clone, Copy)]
struct Move {
    page: u32,
    dst: u8,
    cursor: usize,
    busy: bool,
    passes: u32,
}

/// Rebalancer state and its counters (memcached's `slab_reassign_*`).
#[derive(Debug, Default)]
pub struct Rebalancer {
    job: Option<Move>,
    /// `slab_reassign`: page moves allowed at all.
    pub enabled: bool,
    /// `slab_automove` 0, 1 or 2.
    pub automove: u32,
    pub ratio: f64,
    pub window: u32,
    /// Per class, evictions counted at each of the last `window` seconds.
    samples: VecDeque<Vec<u64>>,
    moves_this_second: u32,
    pub slabs_moved: u64,
    pub rescues: u64,
    pub chunk_rescues: u64,
    pub evictions_nomem: u64,
    pub busy_items: u64,
}

impl Rebalancer {
    pub fn new(enabled: bool, automove: u32, ratio: f64, window: u32) -> Rebalancer {
        Rebalancer {
            enabled,
            automove,
            ratio,
            window,
            ..Rebalancer::default()
        }
    }

    pub fn running(&self) -> bool {
        self.job.is_some()
    }
}

impl Cache {
    /// `slabs reassign <src> <dst>`; `src` -1 picks a source.
    pub fn reassign(&mut self, src: i32, dst: i32) -> Reassign {
        if self.rebalance.running() {
            return Reassign::Running;
        }
        if src == dst {
            return Reassign::Same;
        }
        let largest = i32::from(self.arena.largest_class());
        let src = if src == -1 {
            self.pick_source(dst).map_or(-1, i32::from)
        } else {
            src
        };
        if !(0..=largest).contains(&src) || !(0..=largest).contains(&dst) {
            return Reassign::BadClass;
        }
        let pages = &self.arena.classes()[src as usize].pages;
        if src == 0 || pages.len() < 2 {
            return Reassign::NoSpare;
        }
        // The oldest page, as memcached: its items are rescued into free
        // chunks of the class first, so the evicted ones are the oldest.
        let page = pages[0];
        self.arena.start_drain(page);
        self.rebalance.job = Some(Move {
            page,
            dst: dst as u8,
            cursor: 0,
            busy: false,
            passes: 0,
        });
        Reassign::Ok
    }

    /// Whole pages' worth of free chunks a class holds.
    fn free_pages(&self, c: u8) -> u64 {
        let class = &self.arena.classes()[c as usize];
        class.free_chunks() / u64::from(class.perslab)
    }

    /// A class to take a page from for `dst`: one holding two pages' worth
    /// of free chunks if any (most first), else the one whose COLD items
    /// are oldest, among those with a page to spare.
    fn pick_source(&self, dst: i32) -> Option<u8> {
        let classes = self.arena.classes();
        let spare = |c: &u8| i32::from(*c) != dst && classes[*c as usize].pages.len() > 1;
        let ids = 1..classes.len() as u8;
        ids.clone()
            .filter(spare)
            .filter(|&c| self.free_pages(c) >= 2)
            .max_by_key(|&c| self.free_pages(c))
            .or_else(|| {
                ids.filter(spare)
                    .max_by_key(|&c| (self.tail_age(c, Seg::Cold), classes[c as usize].pages.len()))
            })
    }

    /// The segment's head, when `h` is a segment chunk.
    pub(super) fn owner_of_segment(&self, h: u32) -> Option<u32> {
        let b = self.arena.bytes(h, 0, SEGMENT_OWNER);
        let owner = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
        if owner == NIL || owner == h || !self.arena.is_valid(owner) {
            return None;
        }
        if self.hdr(owner).iflags & F_SEGMENTED == 0 {
            return None;
        }
        let head = self.head(owner);
        (0..head.nseg)
            .any(|i| head.segment(i) == h)
            .then_some(owner)
    }

    /// One slice of the page move in progress, if any.
    pub(super) fn rebalance_step(&mut self) {
        let Some(mut job) = self.rebalance.job else {
            return;
        };
        let len = self.arena.page_len(job.page);
        let end = (job.cursor + CHUNKS_PER_STEP).min(len);
        for i in job.cursor..end {
            let h = Arena::chunk_handle(job.page, i);
            if self.arena.draining().is_some_and(|(_, free)| free[i]) {
                continue;
            }
            let item = self.owner_of_segment(h).unwrap_or(h);
            let hdr = self.hdr(item);
            if hdr.refcount > 0 {
                job.busy = true;
                self.rebalance.busy_items += 1;
                continue;
            }
            if hdr.iflags & F_LINKED != 0 {
                if self.rescue(item, h) {
                    continue;
                }
                let hv = hash(self.key(item));
                self.unlink(item, hv);
                self.rebalance.evictions_nomem += 1;
            }
        }
        job.cursor = end;
        if job.cursor < len {
            self.rebalance.job = Some(job);
            return;
        }
        if !job.busy
            || self
                .arena
                .draining()
                .is_some_and(|(_, f)| f.iter().all(|&x| x))
        {
            if self.arena.finish_drain() {
                if job.dst != 0 {
                    self.arena.adopt_page(job.dst);
                }
                self.rebalance.slabs_moved += 1;
            }
            self.rebalance.job = None;
            return;
        }
        // Items were being sent: look again from the start, for a while.
        job.passes += 1;
        job.cursor = 0;
        job.busy = false;
        if job.passes < MAX_BUSY_PASSES {
            self.rebalance.job = Some(job);
        } else {
            self.arena.finish_drain();
            self.rebalance.job = None;
        }
    }

    /// Moves chunk `h` (the head of `item`, or one of its segments) into a
    /// free chunk of its class elsewhere; false when there is none.
    fn rescue(&mut self, item: u32, h: u32) -> bool {
        let class = self.arena.class_of(h);
        let Some(new) = self.arena.alloc_existing(class) else {
            return false;
        };
        let size = self.arena.chunk_size(h);
        self.arena.copy((h, 0), (new, 0), size);
        if item == h {
            let hv = hash(self.key(new));
            let lru_class = self.lru_class(new);
            self.index.replace(&mut self.arena, h, new, hv);
            self.lru.replace(&mut self.arena, lru_class, h, new);
            for i in 0..self.nseg(new) {
                let seg = self.segment(new, i);
                self.arena
                    .bytes_mut(seg, 0, SEGMENT_OWNER)
                    .copy_from_slice(&new.to_ne_bytes());
            }
            self.rebalance.rescues += 1;
        } else {
            let head = self.head(item);
            let nkey = head.nkey;
            let i = (0..head.nseg)
                .find(|&i| head.segment(i) == h)
                .expect("segment of its owner");
            self.arena
                .bytes_mut(item, super::item::HEADER + nkey + 4 + 4 * i, 4)
                .copy_from_slice(&new.to_ne_bytes());
            self.rebalance.chunk_rescues += 1;
        }
        self.arena.free(h);
        true
    }

    /// Called with the class an eviction just happened in.
    pub(super) fn on_eviction(&mut self, class: u8) {
        if self.rebalance.enabled && self.rebalance.automove == 2 && !self.rebalance.running() {
            let _ = self.reassign(-1, i32::from(class));
        }
    }

    /// Once a second: slide the window and, in automove 1, move a page
    /// from the class with the oldest items to the one evicting youngest.
    pub(super) fn automove_second(&mut self) {
        let classes = self.arena.classes().len();
        // Evictions in a class's own list, or made elsewhere for want of
        // its chunks: either way the class needs memory.
        let evicted: Vec<u64> = (0..classes)
            .map(|c| self.class_stats[c].evicted + self.class_stats[c].starved)
            .collect();
        self.rebalance.samples.push_back(evicted);
        while self.rebalance.samples.len() > self.rebalance.window.max(2) as usize {
            self.rebalance.samples.pop_front();
        }
        self.rebalance.moves_this_second = 0;
        self.automove_decide();
    }

    /// Starts a move if the window shows one is worth it.
    pub(super) fn automove_decide(&mut self) {
        let r = &self.rebalance;
        if !r.enabled
            || r.automove != 1
            || r.running()
            || r.moves_this_second >= AUTOMOVE_PER_SECOND
        {
            return;
        }
        let (Some(first), Some(last)) = (r.samples.front(), r.samples.back()) else {
            return;
        };
        let classes = self.arena.classes().len();
        // The class evicting the youngest items during the window, among
        // those still evicting now and without free chunks to use first.
        let prev = &r.samples[r.samples.len().saturating_sub(2)];
        let dst = (1..classes)
            .filter(|&c| last[c] > first[c] && last[c] > prev[c] && self.free_pages(c as u8) == 0)
            .min_by_key(|&c| self.tail_age(c as u8, Seg::Cold));
        let Some(dst) = dst else { return };
        let Some(src) = self.pick_source(dst as i32) else {
            return;
        };
        let (dst_age, src_age) = (
            f64::from(self.tail_age(dst as u8, Seg::Cold)),
            f64::from(self.tail_age(src, Seg::Cold)),
        );
        let src_has_free = {
            let c = &self.arena.classes()[src as usize];
            c.free_chunks() >= 2 * u64::from(c.perslab)
        };
        let worth_it = src_has_free || dst_age < src_age * self.rebalance.ratio;
        if worth_it && self.reassign(i32::from(src), dst as i32) == Reassign::Ok {
            self.rebalance.moves_this_second += 1;
        }
    }
}

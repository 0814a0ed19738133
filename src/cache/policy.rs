//! Replacement policy: memcached's segmented LRU, run inside the event loop.
//!
//! New items enter HOT (TEMP for short TTLs when enabled).  A read marks an
//! item fetched, a second read marks it active.  The juggler looks at list
//! tails: an active HOT item moves to WARM, an active WARM item to WARM's
//! head; an inactive one moves to COLD once its list is over its share of
//! the class's bytes or older than a multiple of COLD's tail age.  An
//! active COLD item is rescued to WARM.  Allocation evicts from COLD's
//! tail, forcing HOT (then WARM) down into COLD when COLD is empty.
//! Expired and flushed items found at any tail are reclaimed.
//!
//! memcached runs the juggler in a background thread; here it runs a few
//! steps when an item is linked and a bounded slice per loop turn, so no
//! callback does unbounded work.  In flat mode (`lru mode flat`) every item
//! lives on COLD and reads move it to the head at most once a minute.

use super::arena::NIL;
use super::index::hash;
use super::item::{F_ACTIVE, F_FETCHED};
use super::lru::Seg;
use super::{Cache, ITEM_UPDATE_INTERVAL};
pub use crate::config::LruConfig;

/// Items examined at a tail per pull, as memcached's `lru_pull_tail`.
const TAIL_TRIES: usize = 5;
/// Allocation attempts, each after one pull, as `do_item_alloc_pull`.
const ALLOC_PULLS: usize = 10;
/// Juggling moves per background slice (one a millisecond at most), over
/// all classes, and per class: well above the items a class can gain in
/// a millisecond, now that linking an item leaves the juggling to the
/// slice, as memcached leaves it to its maintainer thread.
const JUGGLE_PER_TICK: usize = 1000;
const JUGGLE_PER_CLASS: usize = 500;

/// What a tail pull did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pulled {
    /// An item was unlinked (reclaimed or evicted): memory may be free.
    Freed,
    /// An item moved between lists.
    Moved,
    /// Nothing to do at this tail.
    Nothing,
}

/// Why a tail is being pulled.
#[derive(Debug, Clone, Copy)]
enum Pull {
    /// Juggling: move if over `limit` bytes or older than `max_age`.
    Juggle { limit: u64, max_age: u32 },
    /// Allocation needs memory: evict from COLD.
    Evict,
}

impl Cache {
    /// The list a newly linked item goes on.
    pub(super) fn entry_seg(&self, exptime: u32) -> Seg {
        let c = &self.lru_cfg;
        if c.temp_lru && exptime != 0 && exptime.saturating_sub(self.now) <= c.temporary_ttl {
            Seg::Temp
        } else if c.segmented {
            Seg::Hot
        } else {
            Seg::Cold
        }
    }

    /// memcached's `do_item_bump` for a read hit.
    pub(super) fn bump(&mut self, h: u32) {
        let now = self.now;
        if !self.lru_cfg.segmented {
            self.hdr_mut(h).iflags |= F_FETCHED;
            self.touch_lru(h);
            return;
        }
        let iflags = self.hdr(h).iflags;
        if iflags & F_ACTIVE != 0 {
            return;
        }
        if iflags & F_FETCHED == 0 {
            self.hdr_mut(h).iflags |= F_FETCHED;
            return;
        }
        self.hdr_mut(h).iflags |= F_ACTIVE;
        if Seg::of(iflags) != Seg::Cold {
            self.hdr_mut(h).time = now;
        } else {
            self.rescue_to_warm(h);
        }
    }

    /// memcached's `do_item_update` (on `add` of an existing key, on
    /// `touch`-like updates and in-place `incr`): refresh the access time;
    /// an active COLD item goes to WARM; in flat mode, relink at most once
    /// per update interval.
    pub(super) fn touch_lru(&mut self, h: u32) {
        let now = self.now;
        if self.lru_cfg.segmented {
            let iflags = self.hdr(h).iflags;
            self.hdr_mut(h).time = now;
            if Seg::of(iflags) == Seg::Cold && iflags & F_ACTIVE != 0 {
                self.rescue_to_warm(h);
            }
            return;
        }
        if self.hdr(h).time < now.saturating_sub(ITEM_UPDATE_INTERVAL) {
            self.hdr_mut(h).time = now;
            let shape = self.shape(h);
            self.lru.relink(
                &mut self.arena,
                shape.lru_class,
                h,
                Seg::Cold,
                shape.footprint,
            );
        }
    }

    /// Moves an active COLD item to WARM, clearing its active mark.
    fn rescue_to_warm(&mut self, h: u32) {
        let shape = self.shape(h);
        let (class, bytes) = (shape.lru_class, shape.footprint);
        let now = self.now;
        let hdr = self.hdr_mut(h);
        hdr.iflags &= !F_ACTIVE;
        hdr.time = now;
        self.lru.relink(&mut self.arena, class, h, Seg::Warm, bytes);
        self.class_stats[class as usize].moves_to_warm += 1;
    }

    /// Looks at the tail of one list, as memcached's `lru_pull_tail`.
    fn pull_tail(&mut self, class: u8, seg: Seg, why: Pull) -> Pulled {
        let mut h = self.lru.tail(class, seg);
        for _ in 0..TAIL_TRIES {
            if h == NIL {
                return Pulled::Nothing;
            }
            let prev = self.lru.prev(&self.arena, h);
            let (refcount, iflags, time, exptime) = {
                let hdr = self.hdr(h);
                (hdr.refcount, hdr.iflags, hdr.time, hdr.exptime)
            };
            // Items being sent stay where they are.
            if refcount > 0 {
                h = prev;
                continue;
            }
            if self.is_expired(h) || self.is_flushed(h) {
                let cs = &mut self.class_stats[class as usize];
                cs.reclaimed += 1;
                if iflags & F_FETCHED == 0 {
                    cs.expired_unfetched += 1;
                }
                let hv = hash(self.key(h));
                self.unlink(h, hv);
                return Pulled::Freed;
            }
            let ci = class as usize;
            return match (seg, why) {
                (Seg::Hot | Seg::Warm, Pull::Juggle { limit, max_age }) => {
                    if iflags & F_ACTIVE != 0 {
                        self.hdr_mut(h).iflags &= !F_ACTIVE;
                        if seg == Seg::Warm {
                            self.class_stats[ci].moves_within_lru += 1;
                        } else {
                            self.class_stats[ci].moves_to_warm += 1;
                        }
                        let bytes = self.footprint(h);
                        self.lru.relink(&mut self.arena, class, h, Seg::Warm, bytes);
                        Pulled::Moved
                    } else if self.lru.bytes(class, seg) > limit
                        || self.now.saturating_sub(time) > max_age
                    {
                        self.class_stats[ci].moves_to_cold += 1;
                        // Worked out only for a move: most looks at a
                        // tail move nothing.
                        let bytes = self.footprint(h);
                        self.lru.relink(&mut self.arena, class, h, Seg::Cold, bytes);
                        Pulled::Moved
                    } else {
                        Pulled::Nothing
                    }
                }
                (Seg::Cold, Pull::Evict) => {
                    if !self.evict {
                        return Pulled::Nothing;
                    }
                    let stats = &mut self.class_stats[ci];
                    stats.evicted += 1;
                    stats.evicted_time = self.now.saturating_sub(time);
                    if exptime != 0 {
                        stats.evicted_nonzero += 1;
                    }
                    if iflags & F_FETCHED == 0 {
                        stats.evicted_unfetched += 1;
                    }
                    if iflags & F_ACTIVE != 0 {
                        stats.evicted_active += 1;
                    }
                    let hv = hash(self.key(h));
                    self.unlink(h, hv);
                    self.on_eviction(class);
                    Pulled::Freed
                }
                (Seg::Cold, Pull::Juggle { .. })
                    if iflags & F_ACTIVE != 0 && self.lru_cfg.segmented =>
                {
                    self.rescue_to_warm(h);
                    Pulled::Moved
                }
                _ => Pulled::Nothing,
            };
        }
        Pulled::Nothing
    }

    /// Frees room in `class` for an allocation: evict from COLD, and when
    /// COLD has nothing to give, push HOT (then WARM) down into it.
    pub(super) fn make_room(&mut self, class: u8) -> bool {
        for _ in 0..ALLOC_PULLS {
            match self.pull_tail(class, Seg::Cold, Pull::Evict) {
                Pulled::Freed => {
                    self.class_stats[class as usize].direct_reclaims += 1;
                    return true;
                }
                Pulled::Moved => continue,
                Pulled::Nothing => {}
            }
            if !self.evict && self.lru.tail(class, Seg::Cold) != NIL {
                // -M: COLD holds live items that may not be evicted.
                return false;
            }
            let force = Pull::Juggle {
                limit: 0,
                max_age: 0,
            };
            if self.pull_tail(class, Seg::Temp, force) == Pulled::Freed {
                return true;
            }
            if self.pull_tail(class, Seg::Hot, force) == Pulled::Nothing
                && self.pull_tail(class, Seg::Warm, force) == Pulled::Nothing
            {
                return false;
            }
        }
        false
    }

    /// One round of memcached's `lru_maintainer_juggle` for a class, at
    /// most `steps` moves.  Returns the moves made.
    pub(super) fn juggle(&mut self, class: u8, steps: usize) -> usize {
        let mut moves = 0;
        if self.lru_cfg.temp_lru {
            while moves < steps && self.pull_tail(class, Seg::Temp, Pull::Evict) == Pulled::Freed {
                moves += 1;
            }
        }
        let (hot_age, warm_age, total) = if self.lru_cfg.segmented {
            let cold_tail = self.lru.tail(class, Seg::Cold);
            let cold_age = if cold_tail == NIL {
                0
            } else {
                self.now.saturating_sub(self.hdr(cold_tail).time)
            };
            let total = self.lru.bytes(class, Seg::Hot)
                + self.lru.bytes(class, Seg::Warm)
                + self.lru.bytes(class, Seg::Cold);
            (
                (f64::from(cold_age) * self.lru_cfg.hot_max_factor) as u32,
                (f64::from(cold_age) * self.lru_cfg.warm_max_factor) as u32,
                total,
            )
        } else {
            (0, 0, 0)
        };
        let hot = Pull::Juggle {
            limit: total * u64::from(self.lru_cfg.hot_lru_pct) / 100,
            max_age: hot_age,
        };
        let warm = Pull::Juggle {
            limit: total * u64::from(self.lru_cfg.warm_lru_pct) / 100,
            max_age: warm_age,
        };
        while moves < steps {
            let mut did = 0;
            if self.pull_tail(class, Seg::Hot, hot) != Pulled::Nothing {
                did += 1;
            }
            if self.pull_tail(class, Seg::Warm, warm) != Pulled::Nothing {
                did += 1;
            }
            if self.lru_cfg.segmented
                && self.pull_tail(
                    class,
                    Seg::Cold,
                    Pull::Juggle {
                        limit: 0,
                        max_age: 0,
                    },
                ) != Pulled::Nothing
            {
                did += 1;
            }
            if did == 0 {
                break;
            }
            moves += did;
        }
        moves
    }

    /// The per-turn slice of background LRU work, round robin over classes.
    pub(super) fn juggle_tick(&mut self) {
        let classes = self.arena.classes().len();
        let mut budget = JUGGLE_PER_TICK;
        for _ in 1..classes {
            self.juggle_next = if self.juggle_next as usize + 1 >= classes {
                1
            } else {
                self.juggle_next + 1
            };
            let class = self.juggle_next;
            if self.lru.class_len(class) == 0 {
                continue;
            }
            budget = budget.saturating_sub(self.juggle(class, budget.min(JUGGLE_PER_CLASS)));
            if budget == 0 {
                break;
            }
        }
    }
}

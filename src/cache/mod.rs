//! The cache: items in the arena, found through the index, aged by the LRU.
//!
//! Storage never touches sockets or the system clock: the server passes the
//! relative time in ([`Cache::set_now`]) and connections exchange
//! [`ItemRef`]s, counted references that keep an item's memory valid until
//! released even after it is replaced, deleted, flushed or evicted.
//!
//! Semantics follow memcached 1.6: lazy expiry and flush checks on access,
//! CAS ids from one counter, `add` bumping an existing item, `append`/
//! `prepend` building a new item, `incr`/`decr` rewriting in place when the
//! digits fit and nobody is reading the item.

pub mod arena;
mod crawler;
pub mod index;
pub mod item;
pub mod lru;
mod policy;
mod rebalance;

use arena::{Arena, NIL};
use crawler::Crawler;
pub use crawler::{CrawlStart, CrawlTarget};
use index::{hash, Index};
use item::{
    ItemHeader, Layout, F_LINKED, F_SEGMENTED, F_STALE, F_TOKEN_SENT, HEADER, SEGMENT_OWNER,
};
use lru::{Lru, Seg};
pub use policy::LruConfig;
pub use rebalance::Reassign;
use rebalance::Rebalancer;

/// memcached moves an item in its LRU at most once per this many seconds.
pub const ITEM_UPDATE_INTERVAL: u32 = 60;
/// Items looked at from an LRU tail per allocation attempt.
const EVICT_TRIES: usize = 5;
/// Old index buckets moved per event loop turn while the index grows.
const MIGRATE_PER_TICK: usize = 1024;

/// Sizes and policies of the cache.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub mem_limit: usize,
    pub page_size: usize,
    pub chunk_sizes: Vec<u32>,
    pub item_size_max: usize,
    pub use_cas: bool,
    pub evict: bool,
    pub hashpower: u32,
    pub hash_expand: bool,
    pub lru: LruConfig,
    /// `slab_reassign`: pages may move between classes.
    pub slab_reassign: bool,
    /// Keep the `stats sizes` histogram (`-o track_sizes`).
    pub track_sizes: bool,
    /// `slab_automove` 0, 1 or 2, its ratio and window (seconds).
    pub slab_automove: u32,
    pub slab_automove_ratio: f64,
    pub slab_automove_window: u32,
}

/// Counters kept by storage itself.
#[derive(Debug, Default, Clone)]
pub struct CacheStats {
    // Gauges first: `reset` keeps them.
    pub curr_items: u64,
    pub total_items: u64,
    pub bytes: u64,
    pub get_expired: u64,
    pub get_flushed: u64,
    pub cas_misses: u64,
}

/// Per-class counters: memcached's `stats items` and `stats slabs` fields.
#[derive(Debug, Default, Clone)]
pub struct ClassStats {
    pub evicted: u64,
    pub evicted_nonzero: u64,
    pub evicted_time: u32,
    pub outofmemory: u64,
    pub reclaimed: u64,
    pub expired_unfetched: u64,
    pub evicted_unfetched: u64,
    pub evicted_active: u64,
    pub crawler_reclaimed: u64,
    pub crawler_items_checked: u64,
    pub moves_to_cold: u64,
    pub moves_to_warm: u64,
    pub moves_within_lru: u64,
    pub direct_reclaims: u64,
    pub hits_to_hot: u64,
    pub hits_to_warm: u64,
    pub hits_to_cold: u64,
    pub hits_to_temp: u64,
    pub cmd_set: u64,
    pub delete_hits: u64,
    pub incr_hits: u64,
    pub decr_hits: u64,
    pub cas_hits: u64,
    pub cas_badval: u64,
    pub touch_hits: u64,
    /// Bytes the class's items need (memcached's `mem_requested`); the
    /// gap to the chunks they occupy is fragmentation.
    pub mem_requested: u64,
    /// Chunks of this class obtained only by evicting from another list
    /// (tails of split items): the class needs pages even though its own
    /// list evicts nothing.
    pub starved: u64,
}

impl ClassStats {
    /// `get_hits` of `stats slabs`: hits on any of the class's lists.
    pub fn get_hits(&self) -> u64 {
        self.hits_to_hot + self.hits_to_warm + self.hits_to_cold + self.hits_to_temp
    }
}

impl CacheStats {
    /// Zeroes the counters (`stats reset`) but keeps the gauges.
    pub fn reset(&mut self) {
        *self = CacheStats {
            curr_items: self.curr_items,
            bytes: self.bytes,
            ..CacheStats::default()
        };
    }
}

/// A counted reference to an item; give it back with [`Cache::release`].
#[derive(Debug, PartialEq, Eq)]
#[must_use = "an ItemRef pins item memory until released"]
pub struct ItemRef(u32);

/// Why an item could not be allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocError {
    TooLarge,
    OutOfMemory,
}

/// How a store combines the new item with a stored one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    Cas,
    /// `ms` with `C` and `I`: as `Cas`, but a CAS older than the stored
    /// one still stores, marked stale, keeping the old TTL.
    CasStale,
}

/// Outcome of a store, as memcached names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    Stored,
    NotStored,
    Exists,
    NotFound,
}

/// Outcome of `incr`/`decr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arith {
    Value(u64),
    NotFound,
    /// A CAS was given and the item's differs.
    Exists,
    NonNumeric,
    OutOfMemory,
}

/// Outcome of a delete with a CAS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    Deleted,
    NotFound,
    Exists,
}

/// What a reply needs to know about an item.
#[derive(Debug, Clone, Copy)]
pub struct ItemView<'a> {
    pub key: &'a [u8],
    pub flags: u32,
    /// Value length without the trailing `\r\n`.
    pub len: usize,
    pub cas: u64,
    /// Absolute expiry (0: never), on the server's relative clock.
    pub exptime: u32,
    /// Last access, on the server's relative clock.
    pub time: u32,
    /// `item::F_*` bits.
    pub iflags: u8,
    /// The key arrived base64-encoded (meta `b`).
    pub key_binary: bool,
}

/// An item's LRU class and sizes (see `Cache::shape`).
struct Shape {
    lru_class: u8,
    footprint: u64,
    ntotal: u64,
}

/// An item's head chunk read once (see `Cache::head`).
struct Head<'a> {
    hdr: &'a ItemHeader,
    class: u8,
    /// The whole chunk, header included.
    chunk: &'a [u8],
    nkey: usize,
    /// Segments the value continues in (0: all of it is in this chunk).
    nseg: usize,
}

impl Head<'_> {
    /// Handle of segment `i`, from the table after the key.
    fn segment(&self, i: usize) -> u32 {
        read_u32(self.chunk, HEADER + self.nkey + 4 + 4 * i)
    }
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&b[at..at + 4]);
    u32::from_ne_bytes(word)
}

/// The whole store.
pub struct Cache {
    arena: Arena,
    index: Index,
    lru: Lru,
    item_size_max: usize,
    use_cas: bool,
    evict: bool,
    last_cas: u64,
    oldest_live: u32,
    oldest_cas: u64,
    now: u32,
    pub stats: CacheStats,
    pub lru_cfg: LruConfig,
    class_stats: Vec<ClassStats>,
    /// Class the per-turn juggler visits next.
    juggle_next: u8,
    pub rebalance: Rebalancer,
    pub crawler: Crawler,
    /// Items per 32-byte size bucket, when `stats sizes` is on.
    sizes: Option<std::collections::BTreeMap<u64, u64>>,
    /// Items with a CAS up to this were stored before the histogram was
    /// turned on and are not in it.
    sizes_since_cas: u64,
    /// Relative second of the last once-a-second housekeeping.
    last_second: u32,
}

impl Cache {
    pub fn new(cfg: &CacheConfig) -> Cache {
        Cache {
            arena: Arena::new(&cfg.chunk_sizes, cfg.page_size, cfg.mem_limit),
            index: Index::new(cfg.hashpower, cfg.hash_expand),
            lru: Lru::default(),
            item_size_max: cfg.item_size_max,
            use_cas: cfg.use_cas,
            evict: cfg.evict,
            last_cas: 0,
            oldest_live: 0,
            oldest_cas: 0,
            now: 0,
            stats: CacheStats::default(),
            lru_cfg: cfg.lru.clone(),
            class_stats: vec![ClassStats::default(); arena::MAX_CLASSES],
            juggle_next: 0,
            rebalance: Rebalancer::new(
                cfg.slab_reassign,
                cfg.slab_automove,
                cfg.slab_automove_ratio,
                cfg.slab_automove_window,
            ),
            crawler: Crawler::default(),
            sizes: cfg.track_sizes.then(std::collections::BTreeMap::new),
            sizes_since_cas: 0,
            last_second: 0,
        }
    }

    /// Whether background work (index growth, a page move, a crawl) is
    /// under way, so the event loop should not sleep long.
    pub fn busy(&self) -> bool {
        self.index.is_expanding() || self.rebalance.running() || self.crawler.running()
    }

    /// Per-class counters, indexed by class id.
    pub fn class_stats(&self) -> &[ClassStats] {
        &self.class_stats[..self.arena.classes().len()]
    }

    /// Zeroes counters for `stats reset`, keeping gauges.
    pub fn reset_stats(&mut self) {
        self.stats.reset();
        for c in &mut self.class_stats {
            *c = ClassStats {
                mem_requested: c.mem_requested,
                ..ClassStats::default()
            };
        }
    }

    /// Sum of one per-class counter over all classes.
    pub fn total(&self, f: impl Fn(&ClassStats) -> u64) -> u64 {
        self.class_stats.iter().map(f).sum()
    }

    /// Items and bytes on each list of `class` (`stats items`).
    pub fn lru_sizes(&self, class: u8) -> [(u64, u64); 4] {
        Seg::ALL.map(|s| (self.lru.len(class, s), self.lru.bytes(class, s)))
    }

    /// Age of the tail item of a list (0 when empty).
    pub fn tail_age(&self, class: u8, seg: Seg) -> u32 {
        let t = self.lru.tail(class, seg);
        if t == NIL {
            0
        } else {
            self.now.saturating_sub(self.hdr(t).time)
        }
    }

    /// memcached's item size (`ITEM_ntotal`) in its 32-byte bucket, the
    /// unit of `stats sizes`.
    fn size_bucket(&self, h: u32) -> u64 {
        let hdr = self.hdr(h);
        let cas = if self.use_cas { 8 } else { 0 };
        let flags = if hdr.flags != 0 { 4 } else { 0 };
        let ntotal = 48 + cas + u64::from(hdr.nkey) + 1 + flags + u64::from(hdr.nbytes());
        ntotal.div_ceil(32) * 32
    }

    /// `stats sizes_enable`: starts an empty histogram.  It tells items
    /// stored before apart by their CAS, so it needs CAS.
    pub fn enable_sizes(&mut self) -> Result<(), &'static str> {
        if !self.use_cas {
            return Err("cas_support_disabled");
        }
        if self.sizes.is_none() {
            self.sizes = Some(std::collections::BTreeMap::new());
            self.sizes_since_cas = self.last_cas;
        }
        Ok(())
    }

    /// `stats sizes_disable`.
    pub fn disable_sizes(&mut self) {
        self.sizes = None;
    }

    /// `stats sizes`: `(bucket size, items)`, or `None` when disabled.
    pub fn sizes(&self) -> Option<impl Iterator<Item = (u64, u64)> + '_> {
        self.sizes.as_ref().map(|m| m.iter().map(|(&k, &v)| (k, v)))
    }

    /// Counts a completed storage command against the new item's class.
    pub fn count_set(&mut self, it: &ItemRef) {
        let class = self.lru_class(it.0);
        self.class_stats[class as usize].cmd_set += 1;
    }

    /// Sets the relative time that expiry is judged by.
    pub fn set_now(&mut self, now: u32) {
        self.now = now;
    }

    pub fn arena(&self) -> &Arena {
        &self.arena
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Changes the memory bound (`cache_memlimit`).  Pages already in use
    /// stay; a lower bound only stops further growth.
    pub fn set_mem_limit(&mut self, bytes: usize) {
        self.arena.set_mem_limit(bytes);
    }

    /// Background work bounded per call: grows the index a slice at a time.
    pub fn tick(&mut self) {
        if self.index.is_expanding() {
            self.index.migrate(&mut self.arena, MIGRATE_PER_TICK);
        }
        self.juggle_tick();
        if self.now != self.last_second {
            self.last_second = self.now;
            self.automove_second();
            self.schedule_crawl();
        } else {
            self.automove_decide();
        }
        self.rebalance_step();
        self.crawl_step();
    }

    /// memcached refuses items whose total size under *its* layout (48-byte
    /// header, 8 more with CAS, NUL after the key, 4 bytes of non-zero
    /// flags) exceeds `-I`.  Using the same rule keeps the largest storable
    /// value identical to memcached's, whatever our own layout needs.
    pub fn too_large(&self, nkey: usize, flags: u32, nbytes: usize) -> bool {
        let cas = if self.use_cas { 8 } else { 0 };
        let suffix = if flags != 0 { 4 } else { 0 };
        48 + cas + nkey + 1 + suffix + nbytes > self.item_size_max
    }

    fn hdr(&self, h: u32) -> &ItemHeader {
        self.arena.header::<ItemHeader>(h)
    }

    fn hdr_mut(&mut self, h: u32) -> &mut ItemHeader {
        self.arena.header_mut::<ItemHeader>(h)
    }

    fn key(&self, h: u32) -> &[u8] {
        let nkey = self.hdr(h).nkey as usize;
        self.arena.bytes(h, HEADER, nkey)
    }

    /// Segments after the head chunk.
    fn nseg(&self, h: u32) -> usize {
        self.head(h).nseg
    }

    /// Handle of segment `i`.
    fn segment(&self, h: u32, i: usize) -> u32 {
        self.head(h).segment(i)
    }

    /// An item's head chunk from one arena lookup.
    #[inline]
    fn head(&self, h: u32) -> Head<'_> {
        let (hdr, class, chunk) = self.arena.chunk::<ItemHeader>(h);
        let nkey = hdr.nkey as usize;
        let nseg = if hdr.iflags & F_SEGMENTED == 0 {
            0
        } else {
            read_u32(chunk, HEADER + nkey) as usize
        };
        Head {
            hdr,
            class,
            chunk,
            nkey,
            nseg,
        }
    }

    /// What the LRU and the memory counters need to know of an item,
    /// from one pass over its header and segment table.
    fn shape(&self, h: u32) -> Shape {
        let head = self.head(h);
        let (nkey, nbytes, n) = (head.nkey, head.hdr.nbytes() as usize, head.nseg);
        let head_size = head.chunk.len();
        if n == 0 {
            return Shape {
                lru_class: head.class,
                footprint: head_size as u64,
                ntotal: (HEADER + nkey + nbytes) as u64,
            };
        }
        let mut segs = 0;
        let mut first_class = 0;
        for i in 0..n {
            let (class, size) = self.arena.class_and_size(head.segment(i));
            segs += size;
            if i == 0 {
                first_class = class;
            }
        }
        // Items holding chunks of the largest class sit on that class's
        // LRU, so that evicting from it frees large chunks; the others on
        // their head chunk's.
        let largest = self.arena.largest_class();
        Shape {
            lru_class: if n >= 2 || first_class == largest {
                largest
            } else {
                head.class
            },
            footprint: (head_size + segs) as u64,
            // The segment table: its count, then per segment a handle and
            // the owner back-reference its chunk starts with.
            ntotal: (HEADER + nkey + 4 + 8 * n + nbytes) as u64,
        }
    }

    fn lru_class(&self, h: u32) -> u8 {
        self.shape(h).lru_class
    }

    /// Bytes an item needs (header, key, segment table and owners, value):
    /// memcached's `ITEM_ntotal`, for `mem_requested` and `metadump`.
    fn ntotal(&self, h: u32) -> u64 {
        self.shape(h).ntotal
    }

    /// Chunk bytes an item occupies (LRU list sizes).
    fn footprint(&self, h: u32) -> u64 {
        self.shape(h).footprint
    }

    fn is_flushed(&self, h: u32) -> bool {
        let hdr = self.hdr(h);
        self.oldest_live != 0
            && self.oldest_live <= self.now
            && (hdr.time <= self.oldest_live
                || (self.oldest_cas != 0 && hdr.cas != 0 && hdr.cas < self.oldest_cas))
    }

    fn is_expired(&self, h: u32) -> bool {
        let e = self.hdr(h).exptime;
        e != 0 && e <= self.now
    }

    fn free_item(&mut self, h: u32) {
        for i in 0..self.nseg(h) {
            let c = self.segment(h, i);
            self.arena.free(c);
        }
        self.arena.free(h);
    }

    fn unlink(&mut self, h: u32, hv: u64) {
        debug_assert!(self.hdr(h).iflags & F_LINKED != 0);
        let Shape {
            lru_class: class,
            footprint,
            ntotal,
        } = self.shape(h);
        self.index.remove(&mut self.arena, h, hv);
        self.lru.unlink(&mut self.arena, class, h, footprint);
        self.stats.curr_items -= 1;
        self.stats.bytes -= ntotal;
        self.class_stats[class as usize].mem_requested -= ntotal;
        let counted = self.sizes.is_some() && self.hdr(h).cas > self.sizes_since_cas;
        let bucket = counted.then(|| self.size_bucket(h));
        if let (Some(b), Some(sizes)) = (bucket, &mut self.sizes) {
            if let Some(n) = sizes.get_mut(&b) {
                *n -= 1;
                if *n == 0 {
                    sizes.remove(&b);
                }
            }
        }
        let hdr = self.hdr_mut(h);
        hdr.iflags &= !F_LINKED;
        if hdr.refcount == 0 {
            self.free_item(h);
        }
    }

    fn link(&mut self, h: u32, hv: u64) {
        self.last_cas += u64::from(self.use_cas);
        let cas = if self.use_cas { self.last_cas } else { 0 };
        let now = self.now;
        let hdr = self.hdr_mut(h);
        hdr.iflags |= F_LINKED;
        hdr.time = now;
        hdr.cas = cas;
        let Shape {
            lru_class: class,
            footprint,
            ntotal,
        } = self.shape(h);
        let seg = self.entry_seg(self.hdr(h).exptime);
        self.index.insert(&mut self.arena, h, hv);
        self.lru.link(&mut self.arena, class, seg, h, footprint);
        self.stats.curr_items += 1;
        self.stats.total_items += 1;
        self.stats.bytes += ntotal;
        self.class_stats[class as usize].mem_requested += ntotal;
        let bucket = self.sizes.is_some().then(|| self.size_bucket(h));
        if let (Some(b), Some(sizes)) = (bucket, &mut self.sizes) {
            *sizes.entry(b).or_insert(0) += 1;
        }
    }

    fn replace(&mut self, old: u32, new: u32, hv: u64) {
        if self.hdr(old).iflags & F_LINKED != 0 {
            self.unlink(old, hv);
        }
        self.link(new, hv);
    }

    /// The live item under `key`, unlinking it first if it is expired or
    /// flushed (memcached's lazy expiry).
    fn lookup(&mut self, key: &[u8], hv: u64) -> u32 {
        let h = self.index.find(&self.arena, key, hv);
        self.check_live(h, hv)
    }

    /// `h` if it is still live, else [`NIL`] after unlinking it.
    fn check_live(&mut self, h: u32, hv: u64) -> u32 {
        if h == NIL {
            return NIL;
        }
        if self.is_flushed(h) {
            self.stats.get_flushed += 1;
            self.unlink(h, hv);
            return NIL;
        }
        if self.is_expired(h) {
            self.stats.get_expired += 1;
            self.unlink(h, hv);
            return NIL;
        }
        h
    }

    /// Looks `key` up for reading: marks it fetched, bumps it (throttled),
    /// applies a new exptime for `gat`/`touch`, and pins it.
    pub fn get(&mut self, key: &[u8], new_exptime: Option<u32>) -> Option<ItemRef> {
        let hv = hash(key);
        let h = self.lookup(key, hv);
        if h == NIL {
            return None;
        }
        let hdr = self.hdr_mut(h);
        hdr.refcount += 1;
        if let Some(e) = new_exptime {
            hdr.exptime = e;
        }
        self.count_hit(&ItemRef(h), new_exptime.is_some());
        self.bump(h);
        Some(ItemRef(h))
    }

    /// Looks `key` up and pins it without bumping or counting (meta
    /// commands read the access state first and bump afterwards).
    pub fn peek(&mut self, key: &[u8]) -> Option<ItemRef> {
        let hv = hash(key);
        let h = self.lookup(key, hv);
        if h == NIL {
            return None;
        }
        self.hdr_mut(h).refcount += 1;
        Some(ItemRef(h))
    }

    /// The bump a read does (fetched, then active), for [`Cache::peek`]ed items.
    pub fn bump_item(&mut self, it: &ItemRef) {
        self.bump(it.0);
    }

    /// Counts a hit in the item's class, as a read or as a touch.
    pub fn count_hit(&mut self, it: &ItemRef, touch: bool) {
        let h = it.0;
        let class = self.lru_class(h);
        let seg = Seg::of(self.hdr(h).iflags);
        let stats = &mut self.class_stats[class as usize];
        if touch {
            stats.touch_hits += 1;
        } else {
            match seg {
                Seg::Hot => stats.hits_to_hot += 1,
                Seg::Warm => stats.hits_to_warm += 1,
                Seg::Cold => stats.hits_to_cold += 1,
                Seg::Temp => stats.hits_to_temp += 1,
            }
        }
    }

    /// The size memcached's own layout gives this item (48-byte header,
    /// key NUL, CAS and non-zero client flags) and the class that size
    /// falls in, for `me`, whose output tools compare with memcached's.
    pub fn memcached_size(&self, it: &ItemRef) -> (u8, u64) {
        let hdr = self.hdr(it.0);
        let cas = if self.use_cas { 8 } else { 0 };
        let flags = if hdr.flags != 0 { 4 } else { 0 };
        let size = 48 + hdr.nkey as usize + 1 + hdr.nbytes() as usize + cas + flags;
        let class = self
            .arena
            .class_for(size)
            .unwrap_or_else(|| self.arena.largest_class());
        (class, size as u64)
    }

    /// Marks the item's key as one that arrived base64-encoded.
    pub fn set_key_binary(&mut self, it: &ItemRef) {
        self.hdr_mut(it.0).nbytes_word |= item::KEY_BINARY;
    }

    pub fn set_exptime(&mut self, it: &ItemRef, exptime: u32) {
        self.hdr_mut(it.0).exptime = exptime;
    }

    /// Sets or clears meta bits (`item::F_STALE`, `item::F_TOKEN_SENT`).
    pub fn set_iflag(&mut self, it: &ItemRef, flag: u8, on: bool) {
        let hdr = self.hdr_mut(it.0);
        if on {
            hdr.iflags |= flag;
        } else {
            hdr.iflags &= !flag;
        }
    }

    /// Gives the item a new CAS (`md ... I`).
    pub fn renew_cas(&mut self, it: &ItemRef) {
        self.last_cas += u64::from(self.use_cas);
        let cas = if self.use_cas { self.last_cas } else { 0 };
        self.hdr_mut(it.0).cas = cas;
    }

    /// `touch`: sets a new exptime; whether the key was there.
    pub fn touch(&mut self, key: &[u8], exptime: u32) -> bool {
        match self.get(key, Some(exptime)) {
            Some(it) => {
                self.release(it);
                true
            }
            None => false,
        }
    }

    /// `delete`: whether the key was there.
    pub fn delete(&mut self, key: &[u8]) -> bool {
        self.delete_cas(key, 0) == Deleted::Deleted
    }

    /// `delete` with a CAS (0: any) that must match the item's.
    pub fn delete_cas(&mut self, key: &[u8], cas: u64) -> Deleted {
        let hv = hash(key);
        let h = self.lookup(key, hv);
        if h == NIL {
            return Deleted::NotFound;
        }
        if cas != 0 && cas != self.hdr(h).cas {
            return Deleted::Exists;
        }
        let class = self.lru_class(h);
        self.class_stats[class as usize].delete_hits += 1;
        self.unlink(h, hv);
        Deleted::Deleted
    }

    /// The CAS of the item the last successful store or arith linked (0
    /// with `-C`).
    pub fn last_cas(&self) -> u64 {
        if self.use_cas {
            self.last_cas
        } else {
            0
        }
    }

    /// Gives back a reference; frees the item if it was the last one and
    /// the item is no longer linked.
    pub fn release(&mut self, it: ItemRef) {
        let h = it.0;
        let hdr = self.hdr_mut(h);
        debug_assert!(hdr.refcount > 0);
        hdr.refcount -= 1;
        if hdr.refcount == 0 && hdr.iflags & F_LINKED == 0 {
            self.free_item(h);
        }
    }

    /// A chunk of `class`, making room in `class` or else in `fallback`
    /// (the LRU whose items own chunks of `class`).
    fn alloc_chunk(&mut self, class: u8, fallback: u8) -> Option<u32> {
        for _ in 0..EVICT_TRIES {
            if let Some(h) = self.arena.alloc(class) {
                return Some(h);
            }
            if self.make_room(class) {
                continue;
            }
            if class == fallback || !self.make_room(fallback) {
                return None;
            }
            self.class_stats[class as usize].starved += 1;
            self.on_eviction(class);
        }
        self.arena.alloc(class)
    }

    /// A new, unlinked item with room for `nbytes` value bytes (the
    /// trailing `\r\n` included), pinned once for the caller.
    pub fn alloc(
        &mut self,
        key: &[u8],
        flags: u32,
        exptime: u32,
        nbytes: usize,
    ) -> Result<ItemRef, AllocError> {
        if self.too_large(key.len(), flags, nbytes) || key.len() > u8::MAX as usize {
            return Err(AllocError::TooLarge);
        }
        let layout = Layout::plan(key.len(), nbytes, &self.arena).ok_or(AllocError::TooLarge)?;
        let largest = self.arena.largest_class();
        let lru = if layout.nseg >= 2 || (layout.nseg == 1 && layout.last_class == largest) {
            largest
        } else {
            layout.head_class
        };
        let Some(h) = self.alloc_chunk(layout.head_class, lru) else {
            self.class_stats[lru as usize].outofmemory += 1;
            return Err(AllocError::OutOfMemory);
        };
        {
            let now = self.now;
            let hdr = self.hdr_mut(h);
            *hdr = ItemHeader {
                prev: NIL,
                next: NIL,
                hnext: NIL,
                time: now,
                exptime,
                nbytes_word: nbytes as u32,
                flags,
                refcount: 1,
                nkey: key.len() as u8,
                iflags: if layout.nseg > 0 { F_SEGMENTED } else { 0 },
                cas: 0,
            };
        }
        let nkey = key.len();
        self.arena.bytes_mut(h, HEADER, nkey).copy_from_slice(key);
        if layout.nseg == 0 {
            return Ok(ItemRef(h));
        }
        // The table counts only segments allocated so far, so a failure
        // half way frees exactly what was taken.
        self.set_nseg(h, 0);
        for i in 0..layout.nseg {
            let class = if i + 1 == layout.nseg {
                layout.last_class
            } else {
                largest
            };
            let Some(c) = self.alloc_chunk(class, lru) else {
                self.free_item(h);
                self.class_stats[lru as usize].outofmemory += 1;
                return Err(AllocError::OutOfMemory);
            };
            self.arena
                .bytes_mut(c, 0, SEGMENT_OWNER)
                .copy_from_slice(&h.to_ne_bytes());
            self.arena
                .bytes_mut(h, HEADER + nkey + 4 + 4 * i, 4)
                .copy_from_slice(&c.to_ne_bytes());
            self.set_nseg(h, i + 1);
        }
        Ok(ItemRef(h))
    }

    fn set_nseg(&mut self, h: u32, n: usize) {
        let nkey = self.hdr(h).nkey as usize;
        self.arena
            .bytes_mut(h, HEADER + nkey, 4)
            .copy_from_slice(&(n as u32).to_ne_bytes());
    }

    /// Where value byte `offset` lives: `(chunk, offset in chunk, bytes of
    /// the value from there to the end of that chunk)`.
    fn value_at(&self, h: u32, offset: usize) -> (u32, usize, usize) {
        let head = self.head(h);
        let nbytes = head.hdr.nbytes() as usize;
        let nkey = head.nkey;
        debug_assert!(offset <= nbytes);
        if head.hdr.iflags & F_SEGMENTED == 0 {
            // The common case, every small item: the whole value follows
            // the key in the head chunk.
            return (h, Layout::prefix(nkey, 0) + offset, nbytes - offset);
        }
        let nseg = head.nseg;
        let prefix = Layout::prefix(nkey, nseg);
        let inline = if nseg == 0 {
            nbytes
        } else {
            head.chunk.len() - prefix
        };
        if offset < inline || offset == nbytes {
            let end = inline.min(nbytes);
            return (h, prefix + offset.min(end), end.saturating_sub(offset));
        }
        let seg_cap = self.arena.chunk_max() - SEGMENT_OWNER;
        let i = (offset - inline) / seg_cap;
        let within = (offset - inline) % seg_cap;
        let seg_len = (nbytes - inline - i * seg_cap).min(seg_cap);
        (head.segment(i), SEGMENT_OWNER + within, seg_len - within)
    }

    /// The writable value bytes from `offset` to the end of their chunk;
    /// reads from the network land here directly.
    pub fn value_mut(&mut self, it: &ItemRef, offset: usize) -> &mut [u8] {
        let (c, off, len) = self.value_at(it.0, offset);
        self.arena.bytes_mut(c, off, len)
    }

    /// The value bytes from `offset` to the end of their chunk.
    pub fn value(&self, it: &ItemRef, offset: usize) -> &[u8] {
        let (c, off, len) = self.value_at(it.0, offset);
        self.arena.bytes(c, off, len)
    }

    /// Value length including the trailing `\r\n`.
    pub fn nbytes(&self, it: &ItemRef) -> usize {
        self.hdr(it.0).nbytes() as usize
    }

    fn value_byte(&self, h: u32, offset: usize) -> u8 {
        let (c, off, _) = self.value_at(h, offset);
        self.arena.bytes(c, off, 1)[0]
    }

    /// Whether the value block ends in `\r\n` as the protocol demands.
    pub fn ends_with_crlf(&self, it: &ItemRef) -> bool {
        let n = self.nbytes(it);
        if n < 2 {
            return false;
        }
        // Both bytes are most often in one chunk: one lookup then.
        let (c, off, len) = self.value_at(it.0, n - 2);
        if len >= 2 {
            return self.arena.bytes(c, off, 2) == b"\r\n";
        }
        self.value_byte(it.0, n - 2) == b'\r' && self.value_byte(it.0, n - 1) == b'\n'
    }

    pub fn view(&self, it: &ItemRef) -> ItemView<'_> {
        let hdr = self.hdr(it.0);
        ItemView {
            key: self.key(it.0),
            flags: hdr.flags,
            len: hdr.nbytes() as usize - 2,
            cas: hdr.cas,
            exptime: hdr.exptime,
            time: hdr.time,
            iflags: hdr.iflags,
            key_binary: hdr.key_binary(),
        }
    }

    /// Copies `len` value bytes of `src` from `src_off` into `dst` at
    /// `dst_off`, chunk piece by chunk piece.
    fn copy_value(
        &mut self,
        src: u32,
        mut src_off: usize,
        dst: u32,
        mut dst_off: usize,
        len: usize,
    ) {
        let mut left = len;
        while left > 0 {
            let (sc, so, sl) = self.value_at(src, src_off);
            let (dc, doff, dl) = self.value_at(dst, dst_off);
            let n = left.min(sl).min(dl);
            self.arena.copy((sc, so), (dc, doff), n);
            src_off += n;
            dst_off += n;
            left -= n;
        }
    }

    /// Links the new item `it` according to `mode`, as memcached's
    /// `do_store_item`, and releases the caller's reference.
    pub fn store(&mut self, it: ItemRef, mode: StoreMode, cas_in: u64) -> Stored {
        let h = it.0;
        let hv = hash(self.key(h));
        let found = self.index.find(&self.arena, self.key(h), hv);
        let old = self.check_live(found, hv);
        let it_cas = if self.use_cas { cas_in } else { 0 };
        let result = if old != NIL {
            let old_cas = self.hdr(old).cas;
            let cas_match = it_cas != 0 && it_cas == old_cas;
            let cas_bad = it_cas != 0 && it_cas != old_cas;
            match mode {
                StoreMode::Add => {
                    self.touch_lru(old);
                    Stored::NotStored
                }
                StoreMode::Cas if cas_match => {
                    let c = self.lru_class(old);
                    self.class_stats[c as usize].cas_hits += 1;
                    self.replace(old, h, hv);
                    Stored::Stored
                }
                StoreMode::CasStale if cas_match => {
                    let c = self.lru_class(old);
                    self.class_stats[c as usize].cas_hits += 1;
                    self.replace(old, h, hv);
                    Stored::Stored
                }
                StoreMode::CasStale if it_cas < old_cas => {
                    let (exptime, sent) = {
                        let o = self.hdr(old);
                        (o.exptime, o.iflags & F_TOKEN_SENT)
                    };
                    let hdr = self.hdr_mut(h);
                    hdr.exptime = exptime;
                    hdr.iflags |= F_STALE | sent;
                    let c = self.lru_class(old);
                    self.class_stats[c as usize].cas_hits += 1;
                    self.replace(old, h, hv);
                    Stored::Stored
                }
                StoreMode::Cas | StoreMode::CasStale => {
                    let c = self.lru_class(old);
                    self.class_stats[c as usize].cas_badval += 1;
                    Stored::Exists
                }
                StoreMode::Append | StoreMode::Prepend if cas_bad => Stored::Exists,
                StoreMode::Append | StoreMode::Prepend => self.concat(old, h, hv, mode),
                StoreMode::Replace | StoreMode::Set => {
                    self.replace(old, h, hv);
                    Stored::Stored
                }
            }
        } else {
            match mode {
                StoreMode::Add | StoreMode::Set => {
                    self.link(h, hv);
                    Stored::Stored
                }
                StoreMode::Cas | StoreMode::CasStale => {
                    self.stats.cas_misses += 1;
                    Stored::NotFound
                }
                StoreMode::Replace | StoreMode::Append | StoreMode::Prepend => Stored::NotStored,
            }
        };
        self.release(it);
        result
    }

    /// Append or prepend `add` to `old` through a new item.
    fn concat(&mut self, old: u32, add: u32, hv: u64, mode: StoreMode) -> Stored {
        let (flags, exptime, old_n) = {
            let o = self.hdr(old);
            (o.flags, o.exptime, o.nbytes() as usize)
        };
        let add_n = self.hdr(add).nbytes() as usize;
        let mut key_buf = [0u8; u8::MAX as usize];
        let key = &mut key_buf[..self.hdr(old).nkey as usize];
        key.copy_from_slice(self.key(old));
        // Pin `old` so that making room for the new item cannot free it.
        self.hdr_mut(old).refcount += 1;
        let new = self.alloc(key, flags, exptime, old_n + add_n - 2);
        let result = match new {
            Ok(new) => {
                let n = new.0;
                if mode == StoreMode::Append {
                    self.copy_value(old, 0, n, 0, old_n - 2);
                    self.copy_value(add, 0, n, old_n - 2, add_n);
                } else {
                    self.copy_value(add, 0, n, 0, add_n - 2);
                    self.copy_value(old, 0, n, add_n - 2, old_n);
                }
                self.replace(old, n, hv);
                self.release(new);
                Stored::Stored
            }
            Err(_) => Stored::NotStored,
        };
        self.release(ItemRef(old));
        result
    }

    /// Unlinks whatever is stored under `key` (memcached does this when a
    /// `set` fails, so a stale value cannot outlive a failed overwrite).
    pub fn unlink_key(&mut self, key: &[u8]) {
        let hv = hash(key);
        let h = self.index.find(&self.arena, key, hv);
        if h != NIL {
            self.unlink(h, hv);
        }
    }

    /// `incr`/`decr` with memcached's parsing, wrap and floor.
    /// `cas_in` (0: none) must match the item's CAS.
    pub fn arith(&mut self, key: &[u8], incr: bool, delta: u64, cas_in: u64) -> Arith {
        let hv = hash(key);
        let h = self.lookup(key, hv);
        if h == NIL {
            return Arith::NotFound;
        }
        if cas_in != 0 && cas_in != self.hdr(h).cas {
            return Arith::Exists;
        }
        let (nbytes, refcount) = {
            let hdr = self.hdr(h);
            (hdr.nbytes() as usize, hdr.refcount)
        };
        // memcached refuses items it stores in chunks (larger than the
        // largest chunk under its own layout) and empty values.
        let cas_bytes = if self.use_cas { 8 } else { 0 };
        let flag_bytes = if self.hdr(h).flags != 0 { 4 } else { 0 };
        let memcached_total = 48 + cas_bytes + key.len() + 1 + flag_bytes + nbytes;
        if nbytes <= 2 || memcached_total > self.arena.chunk_max() {
            return Arith::NonNumeric;
        }
        let value = {
            let (c, off, len) = self.value_at(h, 0);
            if len == nbytes {
                crate::numbers::strtoull(self.arena.bytes(c, off, len))
            } else {
                let mut whole = Vec::with_capacity(nbytes);
                let mut at = 0;
                while at < nbytes {
                    let (c, off, len) = self.value_at(h, at);
                    whole.extend_from_slice(self.arena.bytes(c, off, len));
                    at += len;
                }
                crate::numbers::strtoull(&whole)
            }
        };
        let Some(value) = value else {
            return Arith::NonNumeric;
        };
        let value = if incr {
            value.wrapping_add(delta)
        } else {
            value.saturating_sub(delta)
        };
        let class = self.lru_class(h);
        if incr {
            self.class_stats[class as usize].incr_hits += 1;
        } else {
            self.class_stats[class as usize].decr_hits += 1;
        }
        let mut digits = [0u8; 20];
        let digits = crate::numbers::u64_digits(value, &mut digits);
        let res = digits.len();
        if res + 2 <= nbytes && refcount == 0 {
            self.last_cas += u64::from(self.use_cas);
            let cas = if self.use_cas { self.last_cas } else { 0 };
            self.hdr_mut(h).cas = cas;
            // Digits, then spaces over the rest, as memcached pads in place.
            let mut at = 0;
            while at < nbytes - 2 {
                let (c, off, len) = self.value_at(h, at);
                let len = len.min(nbytes - 2 - at);
                let buf = self.arena.bytes_mut(c, off, len);
                for (i, b) in buf.iter_mut().enumerate() {
                    let pos = at + i;
                    *b = if pos < res { digits[pos] } else { b' ' };
                }
                at += len;
            }
            self.touch_lru(h);
        } else {
            let (flags, exptime) = {
                let hdr = self.hdr(h);
                (hdr.flags, hdr.exptime)
            };
            self.hdr_mut(h).refcount += 1;
            let new = self.alloc(key, flags, exptime, res + 2);
            let out = match new {
                Ok(new) => {
                    let v = self.value_mut(&new, 0);
                    v[..res].copy_from_slice(digits);
                    v[res..res + 2].copy_from_slice(b"\r\n");
                    self.replace(h, new.0, hv);
                    self.release(new);
                    None
                }
                Err(_) => Some(Arith::OutOfMemory),
            };
            self.release(ItemRef(h));
            if let Some(e) = out {
                return e;
            }
        }
        Arith::Value(value)
    }

    /// Calls `f(key, value length, exptime)` for up to `limit` items (0:
    /// all) of `class`'s LRU, most recent first, until `f` returns false.
    pub fn walk_lru(&self, class: u8, limit: usize, mut f: impl FnMut(&[u8], usize, u32) -> bool) {
        if class == 0 || class as usize >= self.arena.classes().len() {
            return;
        }
        // memcached dumps only the COLD list.
        let mut h = self.lru.head(class, Seg::Cold);
        let mut shown = 0;
        while h != NIL && (limit == 0 || shown < limit) {
            let hdr = self.hdr(h);
            if !f(self.key(h), hdr.nbytes() as usize - 2, hdr.exptime) {
                return;
            }
            shown += 1;
            h = hdr.next;
        }
    }

    /// `flush_all`: items last stored or bumped before `new_oldest` stop
    /// being visible once that time has come.
    pub fn flush_all(&mut self, new_oldest: u32) {
        if self.use_cas {
            self.oldest_live = new_oldest.wrapping_sub(1);
            if self.oldest_live <= self.now {
                self.last_cas += 1;
                self.oldest_cas = self.last_cas;
            }
        } else {
            self.oldest_live = new_oldest;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// xorshift64*: a fixed-seed PRNG without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    pub(super) fn config(mem_limit: usize) -> CacheConfig {
        CacheConfig {
            mem_limit,
            page_size: 1 << 20,
            chunk_sizes: arena::chunk_sizes(96, 1.25, 512 * 1024),
            item_size_max: 4 << 20,
            use_cas: true,
            evict: true,
            hashpower: 4,
            hash_expand: true,
            lru: LruConfig::default(),
            slab_reassign: true,
            track_sizes: false,
            slab_automove: 0,
            slab_automove_ratio: 0.8,
            slab_automove_window: 30,
        }
    }

    fn value(cache: &Cache, it: &ItemRef) -> Vec<u8> {
        let n = cache.nbytes(it);
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            out.extend_from_slice(cache.value(it, out.len()));
        }
        out
    }

    fn put(cache: &mut Cache, key: &[u8], data: &[u8], exptime: u32, mode: StoreMode) -> Stored {
        let it = cache.alloc(key, 0, exptime, data.len() + 2).expect("alloc");
        let mut at = 0;
        while at < data.len() + 2 {
            let dst = cache.value_mut(&it, at);
            let n = dst.len();
            for (i, b) in dst.iter_mut().enumerate() {
                let pos = at + i;
                *b = if pos < data.len() {
                    data[pos]
                } else if pos == data.len() {
                    b'\r'
                } else {
                    b'\n'
                };
            }
            at += n;
        }
        assert!(cache.ends_with_crlf(&it));
        cache.store(it, mode, 0)
    }

    fn get(cache: &mut Cache, key: &[u8]) -> Option<Vec<u8>> {
        let it = cache.get(key, None)?;
        let mut v = value(cache, &it);
        cache.release(it);
        v.truncate(v.len() - 2);
        Some(v)
    }

    fn sizes(rng: &mut Rng) -> usize {
        match rng.below(10) {
            0..=4 => rng.below(200) as usize,
            5..=7 => rng.below(5000) as usize,
            8 => 500_000 + rng.below(100_000) as usize,
            _ => rng.below(1_500_000) as usize,
        }
    }

    /// Invariants that must hold between any two operations; `pinned` are
    /// references still held (their items may be unlinked but alive).
    fn check_pinned(cache: &Cache, pinned: &[&ItemRef]) {
        let classes = cache.arena.classes().len();
        let on_lrus: u64 = (1..classes).map(|c| cache.lru.class_len(c as u8)).sum();
        assert_eq!(on_lrus, cache.stats.curr_items);
        assert_eq!(cache.index.len() as u64, cache.stats.curr_items);
        let used: u64 = cache.arena.classes().iter().map(|c| c.used).sum();
        let mut owned: u64 = pinned
            .iter()
            .filter(|it| cache.hdr(it.0).iflags & F_LINKED == 0)
            .map(|it| 1 + cache.nseg(it.0) as u64)
            .sum();
        for c in 1..classes {
            for seg in Seg::ALL {
                let mut h = cache.lru.head(c as u8, seg);
                let mut bytes = 0;
                while h != NIL {
                    owned += 1 + cache.nseg(h) as u64;
                    bytes += cache.footprint(h);
                    assert_eq!(Seg::of(cache.hdr(h).iflags), seg);
                    h = cache.hdr(h).next;
                }
                assert_eq!(bytes, cache.lru.bytes(c as u8, seg));
            }
        }
        assert_eq!(used, owned, "chunks in use but owned by no item");
    }

    fn check(cache: &Cache) {
        check_pinned(cache, &[]);
    }

    #[test]
    fn matches_a_map_when_nothing_is_evicted() {
        let mut rng = Rng(0x5EED_1234);
        let mut cache = Cache::new(&config(512 << 20));
        cache.set_now(100);
        let mut model: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
        for step in 0..4000 {
            let key = format!("k{}", rng.below(64)).into_bytes();
            match rng.below(8) {
                0..=2 => {
                    let n = sizes(&mut rng);
                    let data: Vec<u8> = (0..n).map(|i| (i as u64 ^ step) as u8).collect();
                    assert_eq!(
                        put(&mut cache, &key, &data, 0, StoreMode::Set),
                        Stored::Stored
                    );
                    model.insert(key, data);
                }
                3 => {
                    let data = vec![b'a' + (step % 26) as u8; rng.below(3000) as usize];
                    let mode = if rng.below(2) == 0 {
                        StoreMode::Append
                    } else {
                        StoreMode::Prepend
                    };
                    let r = put(&mut cache, &key, &data, 0, mode);
                    match model.get_mut(&key) {
                        Some(v) if mode == StoreMode::Append => {
                            assert_eq!(r, Stored::Stored);
                            v.extend_from_slice(&data);
                        }
                        Some(v) => {
                            assert_eq!(r, Stored::Stored);
                            let mut n = data.clone();
                            n.extend_from_slice(v);
                            *v = n;
                        }
                        None => assert_eq!(r, Stored::NotStored),
                    }
                }
                4 => assert_eq!(cache.delete(&key), model.remove(&key).is_some()),
                5 => {
                    let r = cache.arith(&key, true, 7, 0);
                    match model.get_mut(&key) {
                        None => assert_eq!(r, Arith::NotFound),
                        Some(v) => match crate::numbers::strtoull(&[&v[..], b"\r\n"].concat()) {
                            Some(n) if !v.is_empty() && v.len() < 400_000 => {
                                let new = n.wrapping_add(7);
                                assert_eq!(r, Arith::Value(new));
                                let digits = new.to_string().into_bytes();
                                if digits.len() <= v.len() {
                                    let mut padded = digits;
                                    padded.resize(v.len(), b' ');
                                    *v = padded;
                                } else {
                                    *v = digits;
                                }
                            }
                            _ => assert_eq!(r, Arith::NonNumeric),
                        },
                    }
                }
                6 => {
                    let digits = rng.below(1000).to_string().into_bytes();
                    put(&mut cache, &key, &digits, 0, StoreMode::Set);
                    model.insert(key, digits);
                }
                _ => assert_eq!(get(&mut cache, &key), model.get(&key).cloned()),
            }
            if step % 97 == 0 {
                check(&cache);
            }
        }
        for (k, v) in &model {
            assert_eq!(get(&mut cache, k).as_ref(), Some(v));
        }
        check(&cache);
        assert_eq!(cache.total(|c| c.evicted), 0);
    }

    #[test]
    fn under_pressure_never_returns_a_wrong_value_and_stays_bounded() {
        let mut rng = Rng(42);
        let limit = 8 << 20;
        let mut cache = Cache::new(&config(limit));
        let mut now = 100;
        cache.set_now(now);
        let mut model: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
        let mut pinned: Vec<(ItemRef, Vec<u8>)> = Vec::new();
        for step in 0..6000u64 {
            let key = format!("key-{}", rng.below(400)).into_bytes();
            match rng.below(10) {
                0..=4 => {
                    let n = sizes(&mut rng).min(700_000);
                    let data: Vec<u8> = (0..n).map(|i| (i as u64 * 31 + step) as u8).collect();
                    let exptime = if rng.below(5) == 0 {
                        now + 1 + rng.below(5) as u32
                    } else {
                        0
                    };
                    if let Ok(it) = cache.alloc(&key, 0, exptime, n + 2) {
                        let mut at = 0;
                        while at < n + 2 {
                            let dst = cache.value_mut(&it, at);
                            let len = dst.len();
                            for (i, b) in dst.iter_mut().enumerate() {
                                let p = at + i;
                                *b = if p < n {
                                    data[p]
                                } else if p == n {
                                    b'\r'
                                } else {
                                    b'\n'
                                };
                            }
                            at += len;
                        }
                        cache.store(it, StoreMode::Set, 0);
                        model.insert(key, data);
                    }
                }
                5..=7 => {
                    if let Some(v) = get(&mut cache, &key) {
                        assert_eq!(Some(&v), model.get(&key), "wrong value for {key:?}");
                    }
                }
                8 => {
                    // Pin an item as a pending reply would, then let it be
                    // replaced or evicted while pinned.
                    if let Some(it) = cache.get(&key, None) {
                        let v = value(&cache, &it);
                        pinned.push((it, v));
                    }
                    if pinned.len() > 8 {
                        let (it, v) = pinned.remove(0);
                        assert_eq!(value(&cache, &it), v, "pinned item changed");
                        cache.release(it);
                    }
                }
                _ => {
                    now += 1;
                    cache.set_now(now);
                    cache.delete(&key);
                    model.remove(&key);
                }
            }
            let slack = cache.arena.classes().len() << 20;
            assert!(cache.arena.malloced() <= limit + slack);
            if step % 101 == 0 {
                let refs: Vec<&ItemRef> = pinned.iter().map(|(it, _)| it).collect();
                check_pinned(&cache, &refs);
            }
        }
        for (it, v) in pinned.drain(..) {
            assert_eq!(value(&cache, &it), v);
            cache.release(it);
        }
        check(&cache);
        assert!(
            cache.total(|c| c.evicted) > 0,
            "the test must exercise eviction"
        );
    }

    #[test]
    fn expiry_and_flush_follow_the_clock() {
        let mut cache = Cache::new(&config(64 << 20));
        cache.set_now(100);
        put(&mut cache, b"short", b"v", 110, StoreMode::Set);
        put(&mut cache, b"forever", b"v", 0, StoreMode::Set);
        cache.set_now(109);
        assert_eq!(get(&mut cache, b"short"), Some(b"v".to_vec()));
        cache.set_now(110);
        assert_eq!(get(&mut cache, b"short"), None);
        assert_eq!(cache.stats.get_expired, 1);
        // A delayed flush takes effect when its time comes.
        cache.flush_all(120);
        cache.set_now(118);
        assert_eq!(get(&mut cache, b"forever"), Some(b"v".to_vec()));
        cache.set_now(125);
        assert_eq!(get(&mut cache, b"forever"), None);
        put(&mut cache, b"after", b"v", 0, StoreMode::Set);
        assert_eq!(get(&mut cache, b"after"), Some(b"v".to_vec()));
        cache.flush_all(125);
        assert_eq!(get(&mut cache, b"after"), None);
    }

    /// The value's last two bytes, wherever the chunks split them.
    #[test]
    fn line_end_found_across_chunk_boundaries() {
        let mut cache = Cache::new(&config(64 << 20));
        cache.set_now(100);
        for len in (0..1200).chain([4000, 100_000, 600_000]) {
            for tail in [*b"\r\n", *b"\rx", *b"x\n", *b"\n\r"] {
                let it = cache.alloc(b"k", 0, 0, len + 2).expect("alloc");
                let mut at = 0;
                while at < len + 2 {
                    let dst = cache.value_mut(&it, at);
                    let n = dst.len();
                    for (i, b) in dst.iter_mut().enumerate() {
                        *b = match at + i {
                            p if p < len => b'v',
                            p => tail[p - len],
                        };
                    }
                    at += n;
                }
                assert_eq!(cache.ends_with_crlf(&it), &tail == b"\r\n", "len {len}");
                cache.release(it);
            }
        }
        check(&cache);
    }

    #[test]
    fn segmented_lru_evicts_cold_and_rescues_items_read_twice() {
        let mut cfg = config(1 << 20);
        cfg.chunk_sizes = vec![1024, 512 * 1024];
        let mut cache = Cache::new(&cfg);
        cache.set_now(100);
        let per_page = (1 << 20) / 1024;
        for i in 0..per_page {
            put(
                &mut cache,
                format!("k{i}").as_bytes(),
                &[b'x'; 900],
                0,
                StoreMode::Set,
            );
        }
        assert_eq!(cache.total(|c| c.evicted), 0);
        // New items enter HOT; the maintainer's slice keeps HOT near its
        // share and pushes the rest down to COLD, oldest first.
        assert_eq!(cache.lru_sizes(1)[Seg::Cold as usize].0, 0);
        run_ticks(&mut cache, 2);
        let sizes = cache.lru_sizes(1);
        assert!(sizes[Seg::Hot as usize].0 > 0 && sizes[Seg::Cold as usize].0 > 0);
        assert!(sizes[Seg::Hot as usize].1 <= (per_page as u64 * 1024) * 20 / 100 + 1024);
        // Read twice, k0 becomes active and is rescued from COLD to WARM.
        assert!(get(&mut cache, b"k0").is_some());
        assert!(get(&mut cache, b"k0").is_some());
        assert_eq!(cache.lru_sizes(1)[Seg::Warm as usize].0, 1);
        assert_eq!(cache.class_stats()[1].moves_to_warm, 1);
        put(&mut cache, b"new", &[b'x'; 900], 0, StoreMode::Set);
        assert_eq!(cache.total(|c| c.evicted), 1);
        assert!(
            get(&mut cache, b"k0").is_some(),
            "the active item was evicted"
        );
        assert!(get(&mut cache, b"k1").is_none(), "k1 was COLD's tail");
        assert!(get(&mut cache, b"k2").is_some());
        assert_eq!(cache.class_stats()[1].evicted_unfetched, 1);
        check(&cache);
    }

    #[test]
    fn flat_mode_keeps_one_list() {
        let mut cfg = config(1 << 20);
        cfg.chunk_sizes = vec![1024, 512 * 1024];
        cfg.lru.segmented = false;
        let mut cache = Cache::new(&cfg);
        cache.set_now(100);
        for i in 0..10 {
            put(
                &mut cache,
                format!("k{i}").as_bytes(),
                b"v",
                0,
                StoreMode::Set,
            );
        }
        assert_eq!(cache.lru_sizes(1)[Seg::Cold as usize].0, 10);
        assert_eq!(cache.lru_sizes(1)[Seg::Hot as usize].0, 0);
    }

    fn run_ticks(cache: &mut Cache, n: usize) {
        for _ in 0..n {
            cache.tick();
        }
    }

    #[test]
    fn reassign_moves_an_emptied_page_between_classes() {
        let mut cache = Cache::new(&config(4 << 20));
        cache.set_now(100);
        for i in 0..20_000 {
            put(
                &mut cache,
                format!("s{i}").as_bytes(),
                &[b'x'; 50],
                0,
                StoreMode::Set,
            );
        }
        let small = Layout::plan(6, 52, &cache.arena).unwrap().head_class;
        let big = Layout::plan(4, 10_002, &cache.arena).unwrap().head_class;
        let pages_before = cache.arena.classes()[small as usize].pages.len();
        assert!(pages_before >= 2);
        put(&mut cache, b"big0", &[b'y'; 10_000], 0, StoreMode::Set);
        let big_before = cache.arena.classes()[big as usize].pages.len();
        assert_eq!(
            cache.reassign(i32::from(small), i32::from(big)),
            Reassign::Ok
        );
        assert_eq!(
            cache.reassign(i32::from(small), i32::from(big)),
            Reassign::Running
        );
        run_ticks(&mut cache, 50);
        assert!(!cache.rebalance.running());
        assert_eq!(cache.rebalance.slabs_moved, 1);
        assert_eq!(
            cache.arena.classes()[small as usize].pages.len(),
            pages_before - 1
        );
        assert_eq!(
            cache.arena.classes()[big as usize].pages.len(),
            big_before + 1
        );
        // Items of the drained page went to free chunks elsewhere first.
        assert!(cache.rebalance.rescues > 0);
        assert!(cache.rebalance.evictions_nomem > 0);
        check(&cache);
        // Everything still readable is intact.
        for i in 0..20_000 {
            if let Some(v) = get(&mut cache, format!("s{i}").as_bytes()) {
                assert_eq!(v, vec![b'x'; 50]);
            }
        }
    }

    #[test]
    fn automove_follows_a_shift_to_larger_values() {
        let mut cfg = config(8 << 20);
        cfg.slab_automove = 1;
        cfg.slab_automove_window = 2;
        let mut cache = Cache::new(&cfg);
        let mut now = 100;
        cache.set_now(now);
        for i in 0..60_000 {
            put(
                &mut cache,
                format!("small{i}").as_bytes(),
                &[b's'; 100],
                0,
                StoreMode::Set,
            );
        }
        // Values now arrive ten kilobytes at a time.
        let mut stored_late = 0;
        for round in 0..40 {
            now += 1;
            cache.set_now(now);
            for i in 0..100 {
                let key = format!("big{}", round * 100 + i);
                if cache
                    .alloc(key.as_bytes(), 0, 0, 10_002)
                    .map(|it| cache.release(it))
                    .is_ok()
                {
                    put(
                        &mut cache,
                        key.as_bytes(),
                        &[b'b'; 10_000],
                        0,
                        StoreMode::Set,
                    );
                    if round >= 30 {
                        stored_late += 1;
                    }
                }
            }
            run_ticks(&mut cache, 100);
        }
        assert!(
            cache.rebalance.slabs_moved >= 4,
            "moved {}",
            cache.rebalance.slabs_moved
        );
        // A 10 KB item is a head chunk plus a small tail; its pages are the
        // head class's.
        let layout = Layout::plan(7, 10_002, &cache.arena).unwrap();
        assert!(
            cache.arena.classes()[layout.head_class as usize]
                .pages
                .len()
                >= 5
        );
        // The tails' class is fed too, or every tail would cost an eviction.
        let tails = layout.last_class as usize;
        assert!(layout.nseg == 0 || cache.arena.classes()[tails].pages.len() >= 2);
        assert_eq!(stored_late, 1000);
        check(&cache);
    }

    #[test]
    fn crawler_reclaims_expired_items_without_reads() {
        let mut cache = Cache::new(&config(64 << 20));
        cache.set_now(100);
        for i in 0..500 {
            let exp = if i % 2 == 0 { 105 } else { 0 };
            put(
                &mut cache,
                format!("k{i}").as_bytes(),
                b"v",
                exp,
                StoreMode::Set,
            );
        }
        assert_eq!(cache.start_crawl(b"99", 0), CrawlStart::BadClass);
        cache.set_now(106);
        assert_eq!(cache.start_crawl(b"all", 0), CrawlStart::Ok);
        assert_eq!(cache.start_crawl(b"all", 0), CrawlStart::Running);
        // The crawl alone, without the LRU maintainer's slice (which
        // reclaims what it meets at the tails).
        while cache.crawler.running() {
            cache.crawl_step();
        }
        assert_eq!(cache.stats.curr_items, 250);
        assert_eq!(cache.total(|c| c.crawler_reclaimed), 250);
        assert_eq!(cache.total(|c| c.reclaimed), 0);
        check(&cache);
        let mut t = CrawlTarget::parse(b"all", &cache).unwrap();
        let mut out = Vec::new();
        while !cache.dump_step(&mut t, &mut out, 1_000_000, 7) {}
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 250);
        assert!(out.starts_with(b"key=k1 exp=-1 la=1000100 cas="));
    }

    /// Fills a cache with `n` small items expiring at `exptime` and runs
    /// it second by second, finishing each scheduled crawl within its
    /// second, until `crawls` have run.  Returns how long after its start
    /// each crawl set the next one of the items' class.
    fn scheduled_waits(cache: &mut Cache, n: usize, exptime: u32, crawls: usize) -> Vec<u32> {
        cache.crawler.auto = true;
        let mut now = cache.now;
        for i in 0..n {
            put(
                cache,
                format!("k{i}").as_bytes(),
                b"v",
                exptime,
                StoreMode::Set,
            );
        }
        let class = Layout::plan(6, 3, &cache.arena).unwrap().head_class;
        let mut waits = Vec::new();
        for _ in 0..crawls {
            let starts = cache.crawler.starts;
            while cache.crawler.starts == starts {
                now += 1;
                cache.set_now(now);
                cache.tick();
            }
            while cache.crawler.running() {
                cache.tick();
            }
            waits.push(cache.crawler.next_scheduled(class) - now);
        }
        waits
    }

    #[test]
    fn scheduled_crawls_back_off_a_minute_at_a_time_while_nothing_can_expire() {
        let mut cache = Cache::new(&config(64 << 20));
        cache.set_now(100);
        // memcached's schedule: 5 s, then one more minute after every
        // crawl that finds no item with an expiry time.
        assert_eq!(
            scheduled_waits(&mut cache, 20_000, 0, 4),
            vec![65, 125, 185, 245]
        );
        assert_eq!(cache.total(|c| c.crawler_reclaimed), 0);
        assert_eq!(cache.stats.curr_items, 20_000);
    }

    #[test]
    fn the_first_scheduled_crawl_comes_at_start_up_and_empty_classes_wait_a_minute() {
        let mut cache = Cache::new(&config(64 << 20));
        cache.crawler.auto = true;
        cache.set_now(100);
        cache.tick();
        // memcached's maintainer crawls at once; finding every class
        // empty, it waits 60 + 5 seconds before crawling them again.
        assert_eq!(cache.crawler.starts, 1);
        assert!(!cache.crawler.running());
        put(&mut cache, b"k", b"v", 0, StoreMode::Set);
        let class = Layout::plan(1, 3, &cache.arena).unwrap().head_class;
        assert_eq!(cache.crawler.next_scheduled(class), 165);
        for now in 101..=165 {
            cache.set_now(now);
            cache.tick();
        }
        assert_eq!(
            (
                cache.crawler.starts,
                cache.total(|c| c.crawler_items_checked)
            ),
            (1, 0)
        );
        // Crawled once the clock is past the time, as memcached does.
        cache.set_now(166);
        run_ticks(&mut cache, 2);
        assert_eq!(
            (
                cache.crawler.starts,
                cache.total(|c| c.crawler_items_checked)
            ),
            (2, 1)
        );
    }

    #[test]
    fn scheduled_crawls_look_at_tocrawl_items_per_class_at_most() {
        let mut cache = Cache::new(&config(64 << 20));
        cache.crawler.tocrawl = 100;
        cache.set_now(100);
        let waits = scheduled_waits(&mut cache, 20_000, 0, 1);
        assert_eq!(waits, vec![65]);
        assert_eq!(cache.total(|c| c.crawler_items_checked), 100);
    }

    #[test]
    fn scheduled_crawls_stay_frequent_and_reclaim_while_items_expire_soon() {
        let mut cache = Cache::new(&config(64 << 20));
        cache.set_now(100);
        // Items expiring within the minute keep the class on the
        // shortest wait (crawls at 101, 107, 113, 119), so they are
        // reclaimed at 125, within seconds of expiring at 120, without
        // being read; then the empty class backs off.
        let waits = scheduled_waits(&mut cache, 20_000, 120, 5);
        assert_eq!(waits, vec![5, 5, 5, 5, 65]);
        assert_eq!(cache.now, 125);
        assert_eq!(cache.stats.curr_items, 0);
        // The LRU maintainer reclaims what it meets at the tails first.
        let crawled = cache.total(|c| c.crawler_reclaimed);
        assert_eq!(crawled + cache.total(|c| c.reclaimed), 20_000);
        assert!(crawled > 0, "crawler reclaimed {crawled}");
    }

    #[test]
    fn bytes_and_mem_requested_count_item_bytes_not_chunks() {
        let mut cache = Cache::new(&config(64 << 20));
        cache.set_now(100);
        put(&mut cache, b"a", b"1", 0, StoreMode::Set);
        // 40-byte header, 1 key byte, "1\r\n".
        assert_eq!(cache.stats.bytes, 44);
        let class = Layout::plan(1, 3, &cache.arena).unwrap().head_class;
        assert_eq!(cache.class_stats()[class as usize].mem_requested, 44);
        // A split item also counts its segment table and owner.
        put(&mut cache, b"0123456789", &[b'v'; 1002], 0, StoreMode::Set);
        assert_eq!(Layout::plan(10, 1004, &cache.arena).unwrap().nseg, 1);
        assert_eq!(cache.stats.bytes, 44 + 40 + 10 + 4 + 8 + 1004);
        assert!(cache.delete(b"a"));
        assert_eq!(cache.stats.bytes, 40 + 10 + 4 + 8 + 1004);
    }

    #[test]
    fn disabled_evictions_answer_out_of_memory() {
        let mut cfg = config(1 << 20);
        cfg.evict = false;
        cfg.chunk_sizes = vec![1024, 512 * 1024];
        let mut cache = Cache::new(&cfg);
        cache.set_now(100);
        for i in 0..1024 {
            put(
                &mut cache,
                format!("k{i}").as_bytes(),
                &[b'x'; 900],
                0,
                StoreMode::Set,
            );
        }
        assert_eq!(
            cache.alloc(b"more", 0, 0, 902),
            Err(AllocError::OutOfMemory)
        );
        assert_eq!(cache.total(|c| c.evicted), 0);
        assert!(cache.delete(b"k5"));
        assert!(cache
            .alloc(b"more", 0, 0, 902)
            .map(|it| cache.release(it))
            .is_ok());
    }
}

#[cfg(test)]
mod value_walk_tests {
    use super::tests::config;
    use super::*;

    /// Every value offset of every item size maps to a non-empty piece.
    #[test]
    fn every_offset_has_room() {
        let mut cache = Cache::new(&config(64 << 20));
        for nkey in [1usize, 250] {
            let key = vec![b'k'; nkey];
            for nbytes in (2..6000).step_by(7) {
                let it = cache.alloc(&key, 0, 0, nbytes).unwrap();
                let mut off = 0;
                while off < nbytes {
                    let n = cache.value_mut(&it, off).len();
                    assert!(n > 0, "nkey {nkey} nbytes {nbytes} offset {off}");
                    off += n;
                }
                assert_eq!(off, nbytes);
                cache.release(it);
            }
        }
    }
}

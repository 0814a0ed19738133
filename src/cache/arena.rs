//! The arena: 1 MiB pages carved into fixed-size chunk classes.
//!
//! This is memcached's slab allocator (named `arena` so it is not confused
//! with the `slab` crate that keys connections).  Class sizes start at the
//! smallest chunk and grow by the factor, 8-byte aligned, up to the largest
//! chunk; each page belongs to one class for life.  Memory is bounded by the
//! limit the way memcached bounds it: a class that has no page yet may always
//! take its first one, any other page must fit under the limit.
//!
//! Chunks are named by 32-bit handles, `(page + 1) << 15 | chunk`, so that
//! 0 ([`NIL`]) is never a valid handle and a zeroed table reads as empty.
//!
//! Pages come from `alloc_zeroed`, so the kernel maps them lazily, and the
//! chunks of a class's newest page are handed out in order before any are
//! touched: memory that was never used never shows up in RSS.
//!
//! All `unsafe` of the storage layer lives here.  Every access checks its
//! bounds against the chunk, so a logic error elsewhere fails loudly instead
//! of reading or writing outside a chunk.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ptr::NonNull;

use super::item::{Classes, ItemHeader};

/// The handle that names no chunk.
pub const NIL: u32 = 0;
const CHUNK_BITS: u32 = 15;
const CHUNK_MASK: u32 = (1 << CHUNK_BITS) - 1;
/// Pages a 32-bit handle can name.
pub const MAX_PAGES: usize = (1 << (32 - CHUNK_BITS)) - 1;
/// Chunk sizes are multiples of this, so headers are aligned.
pub const CHUNK_ALIGN: usize = 8;
/// memcached's `MAX_NUMBER_OF_SLAB_CLASSES`; class ids run from 1.
pub const MAX_CLASSES: usize = 64;
const PAGE_ALIGN: usize = 4096;

/// Types that may be overlaid on the start of a chunk.
///
/// # Safety
/// Implementors are `repr(C)`, valid for every bit pattern, aligned to at
/// most [`CHUNK_ALIGN`] and no larger than the smallest chunk.
pub unsafe trait Plain: Sized {}

// SAFETY: ItemHeader is repr(C), made only of integers (any bit pattern is
// valid), 8-byte aligned at most and 40 bytes, below the 48-byte floor that
// `chunk_sizes` puts under every class.
unsafe impl Plain for ItemHeader {}
const _: () = assert!(std::mem::align_of::<ItemHeader>() <= CHUNK_ALIGN);

/// memcached's class table for these settings: the smallest chunk, times
/// `factor` per class (truncated, then aligned), until the next size would
/// pass `chunk_max / factor`; the last class is exactly `chunk_max`.
pub fn chunk_sizes(smallest: usize, factor: f64, chunk_max: usize) -> Vec<u32> {
    let mut sizes = Vec::new();
    let mut size = smallest.max(48) as u32;
    while sizes.len() < MAX_CLASSES - 2 {
        if f64::from(size) >= chunk_max as f64 / factor {
            break;
        }
        if !(size as usize).is_multiple_of(CHUNK_ALIGN) {
            size += (CHUNK_ALIGN - size as usize % CHUNK_ALIGN) as u32;
        }
        sizes.push(size);
        size = (f64::from(size) * factor) as u32;
    }
    sizes.push(chunk_max as u32);
    sizes
}

/// One chunk class.
pub struct SlabClass {
    /// Chunk size in bytes.
    pub size: u32,
    /// Chunks per page.
    pub perslab: u32,
    /// Pages owned by this class.
    pub pages: Vec<u32>,
    /// Chunks handed back, reused first.
    free: Vec<u32>,
    /// Chunks of the newest page never handed out: `(page, next chunk)`.
    fresh: Option<(u32, u32)>,
    /// Chunks currently handed out.
    pub used: u64,
}

impl SlabClass {
    /// Chunks free for the next allocations (returned plus never used).
    pub fn free_chunks(&self) -> u64 {
        self.free.len() as u64 + self.free_chunks_end()
    }

    /// Chunks of the newest page that were never handed out.
    pub fn free_chunks_end(&self) -> u64 {
        self.fresh
            .map_or(0, |(_, next)| u64::from(self.perslab - next))
    }
}

struct Page {
    base: NonNull<u8>,
    /// Chunk size of the page's class (0 while pooled): kept here so that
    /// finding a chunk, done on every item access, reads one record.
    size: u32,
    class: u8,
}

/// Pages, classes and the memory bound.
pub struct Arena {
    pages: Vec<Page>,
    /// Emptied pages waiting for a class (memcached's global page pool).
    pool: Vec<u32>,
    /// A page being emptied for a move, with which chunks are free.
    draining: Option<(u32, Vec<bool>)>,
    /// Index 0 is unused so class ids match memcached's.
    classes: Vec<SlabClass>,
    page_size: usize,
    mem_limit: usize,
    malloced: usize,
    /// Class of each size up to `FIT_TABLE_MAX`, in steps of
    /// `CHUNK_ALIGN`, 0 where no class holds it: every item is fitted to a
    /// class, most several times while its layout is planned, and most are
    /// small.
    fit_table: Vec<u8>,
}

/// Sizes up to this are fitted to their class by a table lookup.
const FIT_TABLE_MAX: usize = 16 * 1024;

impl Arena {
    /// An arena with memcached's class table for the given sizes.
    pub fn new(sizes: &[u32], page_size: usize, mem_limit: usize) -> Arena {
        assert!(page_size.is_power_of_two() && page_size >= PAGE_ALIGN);
        let mut classes = vec![SlabClass {
            size: 0,
            perslab: 0,
            pages: Vec::new(),
            free: Vec::new(),
            fresh: None,
            used: 0,
        }];
        for &size in sizes {
            assert!((size as usize).is_multiple_of(CHUNK_ALIGN) && size as usize >= 48);
            let perslab = (page_size / size as usize) as u32;
            assert!((1..=CHUNK_MASK + 1).contains(&perslab));
            classes.push(SlabClass {
                size,
                perslab,
                pages: Vec::new(),
                free: Vec::new(),
                fresh: None,
                used: 0,
            });
        }
        Arena {
            pages: Vec::new(),
            pool: Vec::new(),
            draining: None,
            classes,
            page_size,
            mem_limit,
            malloced: 0,
            fit_table: Vec::new(),
        }
        .with_fit_table()
    }

    fn with_fit_table(mut self) -> Arena {
        self.fit_table = (0..=FIT_TABLE_MAX / CHUNK_ALIGN)
            .map(|step| self.search_class(step * CHUNK_ALIGN).unwrap_or(0))
            .collect();
        self
    }

    /// Classes by id; entry 0 is a placeholder.
    pub fn classes(&self) -> &[SlabClass] {
        &self.classes
    }

    /// Id of the largest class.
    pub fn largest_class(&self) -> u8 {
        (self.classes.len() - 1) as u8
    }

    /// Size of the largest chunk.
    pub fn chunk_max(&self) -> usize {
        self.classes[self.classes.len() - 1].size as usize
    }

    /// The smallest class whose chunks hold `size` bytes.
    #[inline]
    pub fn class_for(&self, size: usize) -> Option<u8> {
        // Chunk sizes are multiples of CHUNK_ALIGN, so rounding up to one
        // keeps the answer.
        match self.fit_table.get(size.div_ceil(CHUNK_ALIGN)) {
            Some(&0) => None,
            Some(&id) => Some(id),
            None => self.search_class(size),
        }
    }

    fn search_class(&self, size: usize) -> Option<u8> {
        let ids = &self.classes[1..];
        let i = ids.partition_point(|c| (c.size as usize) < size);
        (i < ids.len()).then_some((i + 1) as u8)
    }

    /// Bytes of page memory allocated.
    pub fn malloced(&self) -> usize {
        self.malloced
    }

    pub fn mem_limit(&self) -> usize {
        self.mem_limit
    }

    pub fn set_mem_limit(&mut self, bytes: usize) {
        self.mem_limit = bytes;
    }

    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// A chunk of `class`, or `None` when the class is full and no page can
    /// be added under the limit.  The caller evicts and retries.
    pub fn alloc(&mut self, class: u8) -> Option<u32> {
        let c = &mut self.classes[class as usize];
        let h = if let Some(h) = c.free.pop() {
            h
        } else if let Some((page, next)) = c.fresh {
            c.fresh = (next + 1 < c.perslab).then_some((page, next + 1));
            ((page + 1) << CHUNK_BITS) | next
        } else {
            let page = self.new_page(class)?;
            let c = &mut self.classes[class as usize];
            c.fresh = (c.perslab > 1).then_some((page, 1));
            (page + 1) << CHUNK_BITS
        };
        self.classes[class as usize].used += 1;
        Some(h)
    }

    /// A chunk of `class` from memory it already has (never a new page).
    pub fn alloc_existing(&mut self, class: u8) -> Option<u32> {
        let c = &mut self.classes[class as usize];
        let h = if let Some(h) = c.free.pop() {
            h
        } else {
            let (page, next) = c.fresh?;
            c.fresh = (next + 1 < c.perslab).then_some((page, next + 1));
            ((page + 1) << CHUNK_BITS) | next
        };
        c.used += 1;
        Some(h)
    }

    fn new_page(&mut self, class: u8) -> Option<u32> {
        if let Some(page) = self.pool.pop() {
            self.assign(page, class);
            self.classes[class as usize].pages.push(page);
            return Some(page);
        }
        let c = &self.classes[class as usize];
        let over = self.malloced + self.page_size > self.mem_limit;
        if (over && !c.pages.is_empty()) || self.pages.len() >= MAX_PAGES {
            return None;
        }
        let layout = Layout::from_size_align(self.page_size, PAGE_ALIGN).ok()?;
        // SAFETY: the layout has a non-zero size (asserted in `new`).
        let base = NonNull::new(unsafe { alloc_zeroed(layout) })?;
        let id = self.pages.len() as u32;
        let size = self.classes[class as usize].size;
        self.pages.push(Page { base, size, class });
        self.classes[class as usize].pages.push(id);
        self.malloced += self.page_size;
        Some(id)
    }

    /// Pages in the global pool.
    pub fn pool_pages(&self) -> usize {
        self.pool.len()
    }

    /// Chunks of page `page` under its current class.
    pub fn page_len(&self, page: u32) -> usize {
        self.classes[self.pages[page as usize].class as usize].perslab as usize
    }

    /// Handle of chunk `index` of page `page`.
    pub fn chunk_handle(page: u32, index: usize) -> u32 {
        ((page + 1) << CHUNK_BITS) | index as u32
    }

    /// Class owning page `page`.
    pub fn page_class(&self, page: u32) -> u8 {
        self.pages[page as usize].class
    }

    /// Starts emptying `page`: its free chunks leave the free list and
    /// chunks freed from now on are recorded instead of reused.
    pub fn start_drain(&mut self, page: u32) {
        let class = &mut self.classes[self.pages[page as usize].class as usize];
        let mut free = vec![false; class.perslab as usize];
        class.free.retain(|&h| {
            let here = (h >> CHUNK_BITS) == page + 1;
            if here {
                free[(h & CHUNK_MASK) as usize] = true;
            }
            !here
        });
        if let Some((p, next)) = class.fresh {
            if p == page {
                free[next as usize..].iter_mut().for_each(|f| *f = true);
                class.fresh = None;
            }
        }
        self.draining = Some((page, free));
    }

    /// The page being emptied and which of its chunks are free.
    pub fn draining(&self) -> Option<(u32, &[bool])> {
        self.draining.as_ref().map(|(p, f)| (*p, &f[..]))
    }

    /// Ends the drain: an empty page goes to the pool (returns true);
    /// otherwise its free chunks go back to the class.
    pub fn finish_drain(&mut self) -> bool {
        let Some((page, free)) = self.draining.take() else {
            return false;
        };
        let class = self.pages[page as usize].class;
        let c = &mut self.classes[class as usize];
        if free.iter().all(|&f| f) {
            c.pages.retain(|&p| p != page);
            self.assign(page, 0);
            self.pool.push(page);
            return true;
        }
        c.free.extend(
            free.iter()
                .enumerate()
                .filter(|(_, &f)| f)
                .map(|(i, _)| ((page + 1) << CHUNK_BITS) | i as u32),
        );
        false
    }

    /// Whether `h` names a chunk of a page that exists.
    pub fn is_valid(&self, h: u32) -> bool {
        let Some(page) = ((h >> CHUNK_BITS) as usize).checked_sub(1) else {
            return false;
        };
        self.pages.get(page).is_some_and(|p| {
            p.class != 0 && (h & CHUNK_MASK) < self.classes[p.class as usize].perslab
        })
    }

    /// Gives a pooled page to `class`, all of its chunks free.
    pub fn adopt_page(&mut self, class: u8) -> bool {
        let Some(page) = self.pool.pop() else {
            return false;
        };
        self.assign(page, class);
        let c = &mut self.classes[class as usize];
        c.pages.push(page);
        // Lowest chunk first out of the free list.
        c.free
            .extend((0..c.perslab).rev().map(|i| ((page + 1) << CHUNK_BITS) | i));
        true
    }

    /// Returns a chunk to its class.
    pub fn free(&mut self, h: u32) {
        let class = self.class_of(h);
        let c = &mut self.classes[class as usize];
        debug_assert!(c.used > 0);
        c.used -= 1;
        if let Some((page, free)) = &mut self.draining {
            if (h >> CHUNK_BITS) == *page + 1 {
                free[(h & CHUNK_MASK) as usize] = true;
                return;
            }
        }
        c.free.push(h);
    }

    /// Hands `page` to `class` (0: the pool).
    fn assign(&mut self, page: u32, class: u8) {
        let size = if class == 0 {
            0
        } else {
            self.classes[class as usize].size
        };
        let p = &mut self.pages[page as usize];
        p.class = class;
        p.size = size;
    }

    #[inline]
    fn locate(&self, h: u32) -> (&Page, usize, usize) {
        // NIL (page field 0) wraps to an index no page has.
        let p = &self.pages[((h >> CHUNK_BITS) as usize).wrapping_sub(1)];
        let size = p.size as usize;
        let start = (h & CHUNK_MASK) as usize * size;
        assert!(start + size <= self.page_size, "bad chunk handle");
        (p, start, size)
    }

    /// Class id of the chunk `h`.
    pub fn class_of(&self, h: u32) -> u8 {
        self.locate(h).0.class
    }

    /// Size of the chunk `h`.
    pub fn chunk_size(&self, h: u32) -> usize {
        self.locate(h).2
    }

    /// Class id and size of the chunk `h`, from one lookup.
    pub fn class_and_size(&self, h: u32) -> (u8, usize) {
        let (p, _, size) = self.locate(h);
        (p.class, size)
    }

    /// Bytes `off..off + len` of chunk `h`.
    pub fn bytes(&self, h: u32, off: usize, len: usize) -> &[u8] {
        let (p, start, size) = self.locate(h);
        assert!(off.checked_add(len).is_some_and(|end| end <= size));
        // SAFETY: the range lies inside one chunk of a live page (checked
        // above); pages are never freed while the arena lives, and `&self`
        // keeps every `&mut` view away for the slice's lifetime.
        unsafe { std::slice::from_raw_parts(p.base.as_ptr().add(start + off), len) }
    }

    /// Mutable bytes `off..off + len` of chunk `h`.
    pub fn bytes_mut(&mut self, h: u32, off: usize, len: usize) -> &mut [u8] {
        let (p, start, size) = self.locate(h);
        assert!(off.checked_add(len).is_some_and(|end| end <= size));
        let ptr = p.base.as_ptr();
        // SAFETY: in bounds of one live chunk as above; `&mut self` makes
        // this the only view of arena memory while the slice lives.
        unsafe { std::slice::from_raw_parts_mut(ptr.add(start + off), len) }
    }

    /// The header overlaid on the start of chunk `h`.
    pub fn header<T: Plain>(&self, h: u32) -> &T {
        let (p, start, size) = self.locate(h);
        assert!(std::mem::size_of::<T>() <= size);
        // SAFETY: `Plain` promises any bit pattern is a valid T and an
        // alignment of at most 8; chunk starts are 8-aligned (page bases
        // are 4096-aligned, sizes multiples of 8) and the chunk holds a T.
        unsafe { &*(p.base.as_ptr().add(start) as *const T) }
    }

    /// Chunk `h` read once: the header overlaid on its start, its class
    /// and all of its bytes (the header's included).
    #[inline]
    pub fn chunk<T: Plain>(&self, h: u32) -> (&T, u8, &[u8]) {
        let (p, start, size) = self.locate(h);
        assert!(std::mem::size_of::<T>() <= size);
        // SAFETY: as in `header` for the T, and as in `bytes` for the whole
        // chunk; both views are shared, so neither can change under the
        // other while `&self` is held.
        unsafe {
            let base = p.base.as_ptr().add(start);
            (
                &*(base as *const T),
                p.class,
                std::slice::from_raw_parts(base, size),
            )
        }
    }

    /// The mutable header overlaid on the start of chunk `h`.
    pub fn header_mut<T: Plain>(&mut self, h: u32) -> &mut T {
        let (p, start, size) = self.locate(h);
        assert!(std::mem::size_of::<T>() <= size);
        let ptr = p.base.as_ptr();
        // SAFETY: as in `header`; `&mut self` makes the reference unique.
        unsafe { &mut *(ptr.add(start) as *mut T) }
    }

    /// Copies `len` bytes between two different chunks.
    pub fn copy(&mut self, src: (u32, usize), dst: (u32, usize), len: usize) {
        assert_ne!(src.0, dst.0, "copy within one chunk");
        let from = self.bytes(src.0, src.1, len).as_ptr();
        let to = self.bytes_mut(dst.0, dst.1, len).as_mut_ptr();
        // SAFETY: both ranges were bounds-checked above and lie in distinct
        // chunks, which never overlap.
        unsafe { std::ptr::copy_nonoverlapping(from, to, len) }
    }
}

impl Classes for Arena {
    fn size(&self, id: u8) -> usize {
        self.classes[id as usize].size as usize
    }

    fn fit(&self, bytes: usize) -> Option<u8> {
        self.class_for(bytes)
    }

    fn largest(&self) -> u8 {
        self.largest_class()
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        let layout = Layout::from_size_align(self.page_size, PAGE_ALIGN).expect("page layout");
        for p in &self.pages {
            // SAFETY: every page was allocated by `new_page` with this layout
            // and is freed exactly once, here.
            unsafe { dealloc(p.base.as_ptr(), layout) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_classes_match_memcached() {
        // memcached -f 1.25 -n 48 (sizeof(item) 48 + 48) -I 1m, from `-vv`.
        let want: Vec<u32> = vec![
            96, 120, 152, 192, 240, 304, 384, 480, 600, 752, 944, 1184, 1480, 1856, 2320, 2904,
            3632, 4544, 5680, 7104, 8880, 11104, 13880, 17352, 21696, 27120, 33904, 42384, 52984,
            66232, 82792, 103496, 129376, 161720, 202152, 252696, 315872, 394840, 524288,
        ];
        assert_eq!(chunk_sizes(96, 1.25, 512 * 1024), want);
    }

    #[test]
    fn class_for_is_the_smallest_class_that_holds_the_size() {
        // Default classes, and classes that end below the lookup table's
        // reach (a small slab_chunk_max).
        for sizes in [
            chunk_sizes(96, 1.25, 512 * 1024),
            chunk_sizes(48, 2.0, 4096),
        ] {
            let a = Arena::new(&sizes, 1 << 20, 1 << 30);
            for size in 0..=FIT_TABLE_MAX + 3 * CHUNK_ALIGN {
                let want = sizes
                    .iter()
                    .position(|&c| c as usize >= size)
                    .map(|i| (i + 1) as u8);
                assert_eq!(a.class_for(size), want, "size {size}");
            }
            assert_eq!(a.class_for(a.chunk_max()), Some(a.largest_class()));
            assert_eq!(a.class_for(a.chunk_max() + 1), None);
        }
    }

    #[test]
    fn alloc_free_reuse_and_limit() {
        let sizes = chunk_sizes(96, 1.25, 512 * 1024);
        let page = 1 << 20;
        let mut a = Arena::new(&sizes, page, 2 * page);
        let small = a.class_for(100).unwrap();
        assert_eq!(a.classes()[small as usize].size, 120);
        let per = a.classes()[small as usize].perslab as usize;
        let mut got = Vec::new();
        for _ in 0..per * 2 {
            got.push(a.alloc(small).expect("two pages fit"));
        }
        // The limit is reached: no third page for a class that has pages...
        assert_eq!(a.alloc(small), None);
        // ...but a class without any page may still take its first one.
        let big = a.largest_class();
        assert!(a.alloc(big).is_some());
        a.free(got[5]);
        assert_eq!(a.alloc(small), Some(got[5]));
        a.bytes_mut(got[0], 0, 3).copy_from_slice(b"abc");
        a.copy((got[0], 0), (got[1], 10), 3);
        assert_eq!(a.bytes(got[1], 10, 3), b"abc");
    }

    #[test]
    #[should_panic]
    fn out_of_chunk_access_panics() {
        let sizes = chunk_sizes(96, 1.25, 512 * 1024);
        let mut a = Arena::new(&sizes, 1 << 20, 1 << 20);
        let h = a.alloc(1).unwrap();
        let _ = a.bytes(h, 90, 7);
    }
}

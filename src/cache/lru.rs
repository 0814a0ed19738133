//! Per-class segmented LRU lists threaded through the item headers.
//!
//! Each class has four lists, as memcached's segmented LRU: HOT (new
//! items), WARM (items read at least twice), COLD (where eviction happens)
//! and TEMP (items with a short TTL, when enabled).  Most recently used
//! items are at the head.  Which list an item is on is kept in two bits of
//! its flags, so unlinking needs no search.  This module only keeps lists
//! and their sizes; the policy (when items move) lives in the cache.

use super::arena::{Arena, MAX_CLASSES, NIL};
use super::item::ItemHeader;

/// One of a class's lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seg {
    Hot = 0,
    Warm = 1,
    Cold = 2,
    Temp = 3,
}

impl Seg {
    pub const ALL: [Seg; 4] = [Seg::Hot, Seg::Warm, Seg::Cold, Seg::Temp];

    /// The list recorded in an item's flags.
    pub fn of(iflags: u8) -> Seg {
        Self::ALL[((iflags & SEG_MASK) >> SEG_SHIFT) as usize]
    }

    /// `iflags` with this list recorded.
    pub fn tag(self, iflags: u8) -> u8 {
        (iflags & !SEG_MASK) | ((self as u8) << SEG_SHIFT)
    }
}

/// Bits of `iflags` naming the list (the low four are the item's flags).
const SEG_SHIFT: u8 = 4;
const SEG_MASK: u8 = 0b11 << SEG_SHIFT;

#[derive(Clone, Copy, Default)]
struct List {
    head: u32,
    tail: u32,
    len: u64,
    bytes: u64,
}

/// Heads, tails, lengths and byte sizes of every class's lists.
pub struct Lru {
    lists: Vec<[List; 4]>,
}

impl Default for Lru {
    fn default() -> Self {
        Lru {
            lists: vec![[List::default(); 4]; MAX_CLASSES],
        }
    }
}

impl Lru {
    fn list(&self, class: u8, seg: Seg) -> &List {
        &self.lists[class as usize][seg as usize]
    }

    fn list_mut(&mut self, class: u8, seg: Seg) -> &mut List {
        &mut self.lists[class as usize][seg as usize]
    }

    /// Most recently used item of a list, or [`NIL`].
    pub fn head(&self, class: u8, seg: Seg) -> u32 {
        self.list(class, seg).head
    }

    /// Least recently used item of a list, or [`NIL`].
    pub fn tail(&self, class: u8, seg: Seg) -> u32 {
        self.list(class, seg).tail
    }

    /// Items on a list.
    pub fn len(&self, class: u8, seg: Seg) -> u64 {
        self.list(class, seg).len
    }

    /// Bytes (item footprints) on a list.
    pub fn bytes(&self, class: u8, seg: Seg) -> u64 {
        self.list(class, seg).bytes
    }

    /// Items on all of a class's lists.
    pub fn class_len(&self, class: u8) -> u64 {
        Seg::ALL.iter().map(|&s| self.len(class, s)).sum()
    }

    /// Puts `h` (of `bytes` footprint) at the head of a list and records the
    /// list in its flags.
    pub fn link(&mut self, arena: &mut Arena, class: u8, seg: Seg, h: u32, bytes: u64) {
        let old_head = self.head(class, seg);
        {
            let hdr = arena.header_mut::<ItemHeader>(h);
            hdr.prev = NIL;
            hdr.next = old_head;
            hdr.iflags = seg.tag(hdr.iflags);
        }
        if old_head != NIL {
            arena.header_mut::<ItemHeader>(old_head).prev = h;
        }
        let l = self.list_mut(class, seg);
        if old_head == NIL {
            l.tail = h;
        }
        l.head = h;
        l.len += 1;
        l.bytes += bytes;
    }

    /// Takes `h` off the list its flags name.
    pub fn unlink(&mut self, arena: &mut Arena, class: u8, h: u32, bytes: u64) {
        let (prev, next, seg) = {
            let hdr = arena.header::<ItemHeader>(h);
            (hdr.prev, hdr.next, Seg::of(hdr.iflags))
        };
        if prev != NIL {
            arena.header_mut::<ItemHeader>(prev).next = next;
        } else {
            self.list_mut(class, seg).head = next;
        }
        if next != NIL {
            arena.header_mut::<ItemHeader>(next).prev = prev;
        } else {
            self.list_mut(class, seg).tail = prev;
        }
        let hdr = arena.header_mut::<ItemHeader>(h);
        hdr.prev = NIL;
        hdr.next = NIL;
        let l = self.list_mut(class, seg);
        l.len -= 1;
        l.bytes -= bytes;
    }

    /// Moves `h` to the head of list `to` (possibly the one it is on).
    pub fn relink(&mut self, arena: &mut Arena, class: u8, h: u32, to: Seg, bytes: u64) {
        self.unlink(arena, class, h, bytes);
        self.link(arena, class, to, h, bytes);
    }

    /// Puts `new` where `old` is on its list; `new` holds a copy of `old`'s
    /// header, so its links and list tag are right.
    pub fn replace(&mut self, arena: &mut Arena, class: u8, old: u32, new: u32) {
        let (prev, next, seg) = {
            let hdr = arena.header::<ItemHeader>(new);
            (hdr.prev, hdr.next, Seg::of(hdr.iflags))
        };
        if prev != NIL {
            arena.header_mut::<ItemHeader>(prev).next = new;
        } else {
            self.list_mut(class, seg).head = new;
        }
        if next != NIL {
            arena.header_mut::<ItemHeader>(next).prev = new;
        } else {
            self.list_mut(class, seg).tail = new;
        }
        let _ = old;
    }

    /// The item before `h` (towards the head).
    pub fn prev(&self, arena: &Arena, h: u32) -> u32 {
        arena.header::<ItemHeader>(h).prev
    }
}

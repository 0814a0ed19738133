//! Per-class LRU lists threaded through the item headers.
//!
//! Each class has a doubly linked list, most recently used at the head.
//! Bumps are throttled by the caller (an item moves to the head at most once
//! per update interval) and readers set an "active" bit that gives an item a
//! second chance at the tail instead of a move per read.

use super::arena::{Arena, MAX_CLASSES, NIL};
use super::item::ItemHeader;

/// Heads and tails of every class's list.
pub struct Lru {
    head: [u32; MAX_CLASSES],
    tail: [u32; MAX_CLASSES],
    len: [u64; MAX_CLASSES],
}

impl Default for Lru {
    fn default() -> Self {
        Lru {
            head: [NIL; MAX_CLASSES],
            tail: [NIL; MAX_CLASSES],
            len: [0; MAX_CLASSES],
        }
    }
}

impl Lru {
    /// Most recently used item of `class`, or [`NIL`].
    pub fn head(&self, class: u8) -> u32 {
        self.head[class as usize]
    }

    /// Least recently used item of `class`, or [`NIL`].
    pub fn tail(&self, class: u8) -> u32 {
        self.tail[class as usize]
    }

    /// Items on the list of `class`.
    pub fn len(&self, class: u8) -> u64 {
        self.len[class as usize]
    }

    /// Puts `h` at the head of `class`'s list.
    pub fn link(&mut self, arena: &mut Arena, class: u8, h: u32) {
        let c = class as usize;
        let old_head = self.head[c];
        {
            let hdr = arena.header_mut::<ItemHeader>(h);
            hdr.prev = NIL;
            hdr.next = old_head;
        }
        if old_head != NIL {
            arena.header_mut::<ItemHeader>(old_head).prev = h;
        } else {
            self.tail[c] = h;
        }
        self.head[c] = h;
        self.len[c] += 1;
    }

    /// Takes `h` off `class`'s list.
    pub fn unlink(&mut self, arena: &mut Arena, class: u8, h: u32) {
        let c = class as usize;
        let (prev, next) = {
            let hdr = arena.header::<ItemHeader>(h);
            (hdr.prev, hdr.next)
        };
        if prev != NIL {
            arena.header_mut::<ItemHeader>(prev).next = next;
        } else {
            self.head[c] = next;
        }
        if next != NIL {
            arena.header_mut::<ItemHeader>(next).prev = prev;
        } else {
            self.tail[c] = prev;
        }
        let hdr = arena.header_mut::<ItemHeader>(h);
        hdr.prev = NIL;
        hdr.next = NIL;
        self.len[c] -= 1;
    }

    /// Moves `h` to the head of `class`'s list.
    pub fn bump(&mut self, arena: &mut Arena, class: u8, h: u32) {
        if self.head[class as usize] != h {
            self.unlink(arena, class, h);
            self.link(arena, class, h);
        }
    }

    /// The item before `h` (towards the head).
    pub fn prev(&self, arena: &Arena, h: u32) -> u32 {
        arena.header::<ItemHeader>(h).prev
    }
}

//! The hash index: chained buckets of 32-bit item handles.
//!
//! Chains run through each item's `hnext`.  When items outnumber buckets by
//! half again, the table doubles *incrementally*: the old table is kept and
//! drained a slice of buckets at a time ([`Index::migrate`], called per event
//! loop turn and per insert), so no single callback rehashes everything.
//! While draining, a lookup whose old bucket has already moved looks in the
//! new table, otherwise in the old one.
//!
//! Bucket tables start zeroed ([`NIL`] is 0) straight from the allocator, so
//! doubling a large table costs no page touching up front.
//!
//! The caller hashes the key once ([`hash`]) and passes the value down.

use super::arena::{Arena, NIL};
use super::item::{ItemHeader, HEADER};

/// A fast 64-bit hash of a key (multiply-fold per 8 bytes, murmur3 finish).
pub fn hash(key: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = (key.len() as u64).wrapping_mul(K) ^ 0x2545_F491_4F6C_DD1D;
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let v = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        h = (h ^ v).wrapping_mul(K).rotate_left(29);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut tail = [0u8; 8];
        tail[..rest.len()].copy_from_slice(rest);
        h = (h ^ u64::from_le_bytes(tail))
            .wrapping_mul(K)
            .rotate_left(29);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Old buckets moved per insert while expanding, on top of the per-tick
/// slice, so that expansion always outpaces growth.
const MIGRATE_PER_INSERT: usize = 4;

/// Hash table of item handles.
pub struct Index {
    table: Vec<u32>,
    /// The table being drained, empty when not expanding.
    old: Vec<u32>,
    /// Old buckets below this index have moved to `table`.
    moved: usize,
    items: usize,
    expand: bool,
}

fn zeroed_table(len: usize) -> Vec<u32> {
    // vec![0; n] asks the allocator for zeroed memory: no page is touched.
    vec![NIL; len]
}

fn key_of(arena: &Arena, h: u32) -> &[u8] {
    let nkey = arena.header::<ItemHeader>(h).nkey as usize;
    arena.bytes(h, HEADER, nkey)
}

impl Index {
    /// An index of `2^hashpower` buckets; `expand` lets it grow.
    pub fn new(hashpower: u32, expand: bool) -> Index {
        Index {
            table: zeroed_table(1 << hashpower),
            old: Vec::new(),
            moved: 0,
            items: 0,
            expand,
        }
    }

    /// log2 of the bucket count (of the new table while expanding).
    pub fn hashpower(&self) -> u32 {
        self.table.len().trailing_zeros()
    }

    /// Bytes of bucket tables.
    pub fn bytes(&self) -> usize {
        (self.table.len() + self.old.len()) * std::mem::size_of::<u32>()
    }

    pub fn is_expanding(&self) -> bool {
        !self.old.is_empty()
    }

    pub fn len(&self) -> usize {
        self.items
    }

    pub fn is_empty(&self) -> bool {
        self.items == 0
    }

    /// Which table and bucket hold `hv` right now.
    fn slot(&self, hv: u64) -> (bool, usize) {
        if !self.old.is_empty() {
            let i = hv as usize & (self.old.len() - 1);
            if i >= self.moved {
                return (true, i);
            }
        }
        (false, hv as usize & (self.table.len() - 1))
    }

    fn head(&self, hv: u64) -> u32 {
        match self.slot(hv) {
            (true, i) => self.old[i],
            (false, i) => self.table[i],
        }
    }

    fn head_mut(&mut self, hv: u64) -> &mut u32 {
        match self.slot(hv) {
            (true, i) => &mut self.old[i],
            (false, i) => &mut self.table[i],
        }
    }

    /// The item stored under `key`, or [`NIL`].
    pub fn find(&self, arena: &Arena, key: &[u8], hv: u64) -> u32 {
        let mut h = self.head(hv);
        while h != NIL {
            if key_of(arena, h) == key {
                return h;
            }
            h = arena.header::<ItemHeader>(h).hnext;
        }
        NIL
    }

    /// Adds item `h` (whose key is not yet present) under `hv`.
    pub fn insert(&mut self, arena: &mut Arena, h: u32, hv: u64) {
        let head = self.head_mut(hv);
        let next = *head;
        *head = h;
        arena.header_mut::<ItemHeader>(h).hnext = next;
        self.items += 1;
        if self.old.is_empty() {
            if self.expand && self.items > self.table.len() * 3 / 2 && self.table.len() < 1 << 31 {
                let doubled = zeroed_table(self.table.len() * 2);
                self.old = std::mem::replace(&mut self.table, doubled);
                self.moved = 0;
            }
        } else {
            self.migrate(arena, MIGRATE_PER_INSERT);
        }
    }

    /// Removes item `h` from the chain of `hv`; returns whether it was there.
    pub fn remove(&mut self, arena: &mut Arena, h: u32, hv: u64) -> bool {
        let mut cur = self.head(hv);
        let mut prev = NIL;
        while cur != NIL {
            let next = arena.header::<ItemHeader>(cur).hnext;
            if cur == h {
                if prev == NIL {
                    *self.head_mut(hv) = next;
                } else {
                    arena.header_mut::<ItemHeader>(prev).hnext = next;
                }
                arena.header_mut::<ItemHeader>(h).hnext = NIL;
                self.items -= 1;
                return true;
            }
            prev = cur;
            cur = next;
        }
        false
    }

    /// Puts `new` where `old` is in the chain of `hv`; `new` already holds a
    /// copy of `old`'s header, so its `hnext` is right.
    pub fn replace(&mut self, arena: &mut Arena, old: u32, new: u32, hv: u64) {
        let mut cur = self.head(hv);
        if cur == old {
            *self.head_mut(hv) = new;
            return;
        }
        while cur != NIL {
            let next = arena.header::<ItemHeader>(cur).hnext;
            if next == old {
                arena.header_mut::<ItemHeader>(cur).hnext = new;
                return;
            }
            cur = next;
        }
    }

    /// Moves up to `buckets` old buckets into the new table.
    pub fn migrate(&mut self, arena: &mut Arena, buckets: usize) {
        let mask = self.table.len() - 1;
        for _ in 0..buckets {
            if self.moved >= self.old.len() {
                break;
            }
            let mut h = std::mem::replace(&mut self.old[self.moved], NIL);
            while h != NIL {
                let next = arena.header::<ItemHeader>(h).hnext;
                let b = hash(key_of(arena, h)) as usize & mask;
                arena.header_mut::<ItemHeader>(h).hnext = self.table[b];
                self.table[b] = h;
                h = next;
            }
            self.moved += 1;
        }
        if !self.old.is_empty() && self.moved >= self.old.len() {
            self.old = Vec::new();
            self.moved = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::arena::chunk_sizes;

    fn put(arena: &mut Arena, key: &[u8]) -> u32 {
        let h = arena.alloc(1).unwrap();
        let hdr = arena.header_mut::<ItemHeader>(h);
        hdr.nkey = key.len() as u8;
        hdr.hnext = NIL;
        arena.bytes_mut(h, HEADER, key.len()).copy_from_slice(key);
        h
    }

    #[test]
    fn grows_incrementally_and_finds_everything_meanwhile() {
        let sizes = chunk_sizes(96, 1.25, 512 * 1024);
        let mut arena = Arena::new(&sizes, 1 << 20, 64 << 20);
        let mut idx = Index::new(4, true);
        let mut handles = Vec::new();
        for i in 0..5000u32 {
            let key = format!("key:{i}");
            let h = put(&mut arena, key.as_bytes());
            idx.insert(&mut arena, h, hash(key.as_bytes()));
            handles.push(h);
            // Every key stays reachable at every step of every expansion.
            if i % 97 == 0 {
                for j in (0..=i).step_by(13) {
                    let k = format!("key:{j}");
                    assert_eq!(
                        idx.find(&arena, k.as_bytes(), hash(k.as_bytes())),
                        handles[j as usize]
                    );
                }
            }
        }
        assert!(idx.hashpower() >= 12);
        while idx.is_expanding() {
            idx.migrate(&mut arena, 64);
        }
        for (i, &h) in handles.iter().enumerate() {
            let k = format!("key:{i}");
            assert!(idx.remove(&mut arena, h, hash(k.as_bytes())));
        }
        assert!(idx.is_empty());
    }
}

//! Item layout: a 40-byte header, the key, then the value, possibly
//! continued in segments.
//!
//! ```text
//! head chunk
//!  0               4               8               12              16
//!  +---------------+---------------+---------------+---------------+
//!  | lru prev      | lru next      | hash next     | time (access) |
//!  +---------------+---------------+---------------+---------------+
//!  | exptime       | nbytes        | client flags  |refcnt |nkey|fl |
//!  +---------------+---------------+---------------+---------------+
//!  | cas (u64)                     | key (nkey) | [segment table] | value ...
//!  +-------------------------------+-------------------------------+
//!
//! segment table (only when F_SEGMENTED): nseg: u32, then nseg chunk handles
//! segment chunk: owner (head handle): u32, then value bytes
//! ```
//!
//! Links are 32-bit chunk handles instead of pointers, times are seconds on
//! the server's relative clock, and `nbytes` counts the value's trailing
//! `\r\n`, stored so that a `get` reply sends the value bytes as they are.
//! Values are below 2 GiB (`-I` stops at 1 GiB), so the top bit of the
//! `nbytes` word is free: it records that the key came base64-encoded (meta
//! `b`), so meta replies echo it encoded again.
//! memcached spends 48 bytes plus 8 for CAS plus a NUL after the key; this
//! header is 40 bytes in all.
//!
//! A value that does not fit one chunk of the largest class, or that would
//! waste much of the chunk class it falls in, continues in segments: the
//! head chunk is filled, full segments of the largest class follow, and the
//! last segment comes from the smallest class that holds the rest.  Two
//! chunks of 944 and 120 bytes hold a 1052-byte item that would otherwise
//! take 1184.  Each segment names its head, so a page can be emptied chunk
//! by chunk when it moves to another class.

/// Item is reachable from the index and its LRU.
pub const F_LINKED: u8 = 1;
/// Value continues in segments listed after the key.
pub const F_SEGMENTED: u8 = 2;
/// Item was read at least once since it was stored.
pub const F_FETCHED: u8 = 4;
/// Item was read since it last passed an LRU tail (second chance).
pub const F_ACTIVE: u8 = 8;
/// Meta: a client won the right to recache this item (`W` was sent).
pub const F_TOKEN_SENT: u8 = 64;
/// Meta: invalidated by `md ... I`; served with `X` until replaced.
pub const F_STALE: u8 = 128;

/// The fixed part of every item; see the module diagram.
#[repr(C)]
#[derive(Debug)]
pub struct ItemHeader {
    pub prev: u32,
    pub next: u32,
    pub hnext: u32,
    pub time: u32,
    pub exptime: u32,
    /// Value length (low 31 bits) and [`KEY_BINARY`]; see [`Self::nbytes`].
    pub nbytes_word: u32,
    pub flags: u32,
    pub refcount: u16,
    pub nkey: u8,
    pub iflags: u8,
    pub cas: u64,
}

/// Top bit of `nbytes_word`: the key arrived base64-encoded.
pub const KEY_BINARY: u32 = 1 << 31;

impl ItemHeader {
    /// Value length, trailing `\r\n` included.
    pub fn nbytes(&self) -> u32 {
        self.nbytes_word & !KEY_BINARY
    }

    pub fn key_binary(&self) -> bool {
        self.nbytes_word & KEY_BINARY != 0
    }
}

/// Bytes before the key.
pub const HEADER: usize = std::mem::size_of::<ItemHeader>();
const _: () = assert!(HEADER == 40);

/// Bytes at the start of a segment chunk naming its head.
pub const SEGMENT_OWNER: usize = 4;

/// Splitting must save at least this much to be worth a second chunk.
const MIN_SPLIT_SAVING: usize = 16;

/// How an item of a given key and value length is laid out in chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Class of the head chunk.
    pub head_class: u8,
    /// Segments after the head (0: the value is inline).
    pub nseg: usize,
    /// Value bytes held in the head chunk.
    pub inline: usize,
    /// Class of the last segment (full segments use the largest class).
    pub last_class: u8,
}

/// What layout planning needs to know of the chunk classes.
pub trait Classes {
    /// Size of class `id`.
    fn size(&self, id: u8) -> usize;
    /// The smallest class holding `bytes`.
    fn fit(&self, bytes: usize) -> Option<u8>;
    /// Id of the largest class.
    fn largest(&self) -> u8;
}

impl Layout {
    /// Bytes of the head chunk before value bytes start.
    pub fn prefix(nkey: usize, nseg: usize) -> usize {
        HEADER + nkey + if nseg > 0 { 4 + 4 * nseg } else { 0 }
    }

    /// The cheapest layout for `nkey` key bytes and `nbytes` value bytes.
    pub fn plan(nkey: usize, nbytes: usize, c: &impl Classes) -> Option<Layout> {
        let largest = c.largest();
        let chunk_max = c.size(largest);
        let whole = HEADER + nkey + nbytes;
        let single = (whole <= chunk_max).then(|| c.fit(whole)).flatten();
        let mut best = single.map(|id| {
            (
                c.size(id),
                Layout {
                    head_class: id,
                    nseg: 0,
                    inline: nbytes,
                    last_class: 0,
                },
            )
        });
        // Head chunks of the largest few classes below the whole item's.
        let top = single.unwrap_or(largest);
        for head in (1..=top).rev().take(3) {
            if let Some(split) = Self::segmented(nkey, nbytes, head, c) {
                let cost = Self::cost(&split, c);
                let better = match best {
                    None => true,
                    Some((b, _)) => cost + MIN_SPLIT_SAVING <= b,
                };
                if better {
                    best = Some((cost, split));
                }
            }
        }
        best.map(|(_, l)| l)
    }

    /// Chunk bytes a layout takes.
    pub fn cost(l: &Layout, c: &impl Classes) -> usize {
        let chunk_max = c.size(c.largest());
        if l.nseg == 0 {
            return c.size(l.head_class);
        }
        c.size(l.head_class) + (l.nseg - 1) * chunk_max + c.size(l.last_class)
    }

    /// The head in class `head`, filled, then segments for the rest.
    fn segmented(nkey: usize, nbytes: usize, head: u8, c: &impl Classes) -> Option<Layout> {
        let head_size = c.size(head);
        let seg_cap = c.size(c.largest()) - SEGMENT_OWNER;
        // The table's length depends on what the head holds and the other
        // way round; start from an empty head and let the count settle.
        let mut nseg = 1;
        loop {
            let prefix = Self::prefix(nkey, nseg);
            if prefix >= head_size {
                return None;
            }
            let inline = (head_size - prefix).min(nbytes);
            let rest = nbytes - inline;
            if rest == 0 {
                return None;
            }
            let need = rest.div_ceil(seg_cap);
            if need <= nseg {
                let last = rest - (need - 1) * seg_cap;
                let last_class = c.fit(last + SEGMENT_OWNER)?;
                return Some(Layout {
                    head_class: head,
                    nseg: need,
                    inline,
                    last_class,
                });
            }
            nseg = need;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::arena::chunk_sizes;

    struct Table(Vec<u32>);

    impl Classes for Table {
        fn size(&self, id: u8) -> usize {
            self.0[id as usize - 1] as usize
        }
        fn fit(&self, bytes: usize) -> Option<u8> {
            let i = self.0.partition_point(|&s| (s as usize) < bytes);
            (i < self.0.len()).then_some(i as u8 + 1)
        }
        fn largest(&self) -> u8 {
            self.0.len() as u8
        }
    }

    fn table() -> Table {
        Table(chunk_sizes(96, 1.25, 512 * 1024))
    }

    #[test]
    fn small_items_stay_inline() {
        let t = table();
        let l = Layout::plan(10, 34, &t).unwrap();
        assert_eq!((t.size(l.head_class), l.nseg), (96, 0));
        let l = Layout::plan(10, 102, &t).unwrap();
        assert_eq!((t.size(l.head_class), l.nseg), (152, 0));
    }

    #[test]
    fn wasteful_items_split_into_head_and_tail() {
        let t = table();
        // 40 + 10 + 1002 = 1052 bytes would take a 1184-byte chunk.
        let l = Layout::plan(10, 1002, &t).unwrap();
        assert_eq!(l.nseg, 1);
        assert_eq!(t.size(l.head_class), 944);
        assert_eq!(l.inline, 944 - Layout::prefix(10, 1));
        assert_eq!(t.size(l.last_class), 120);
        assert_eq!(Layout::cost(&l, &t), 1064);
    }

    #[test]
    fn large_items_fill_the_head_then_full_segments() {
        let t = table();
        let l = Layout::plan(3, 1_000_000, &t).unwrap();
        let seg_cap = 524288 - SEGMENT_OWNER;
        let rest = 1_000_000 - l.inline;
        assert_eq!(l.nseg, rest.div_ceil(seg_cap));
        let last = rest - (l.nseg - 1) * seg_cap;
        assert!(t.size(l.last_class) >= last + SEGMENT_OWNER);
        assert!(Layout::prefix(3, l.nseg) + l.inline <= t.size(l.head_class));
    }

    #[test]
    fn every_size_fits_its_layout() {
        let t = table();
        for nbytes in (2..20_000).chain([524_250, 524_288, 1 << 20, 3 << 20]) {
            let l = Layout::plan(20, nbytes, &t).unwrap();
            let seg_cap = 524288 - SEGMENT_OWNER;
            if l.nseg == 0 {
                assert!(HEADER + 20 + nbytes <= t.size(l.head_class));
                assert_eq!(l.inline, nbytes);
            } else {
                assert!(Layout::prefix(20, l.nseg) + l.inline <= t.size(l.head_class));
                let rest = nbytes - l.inline;
                let last = rest - (l.nseg - 1) * seg_cap;
                assert!(last > 0 && last <= seg_cap, "{nbytes}: {l:?}");
                assert!(last + SEGMENT_OWNER <= t.size(l.last_class));
            }
        }
    }
}

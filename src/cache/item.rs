//! Item layout: a 40-byte header, the key, then the value.
//!
//! ```text
//!  0               4               8               12              16
//!  +---------------+---------------+---------------+---------------+
//!  | lru prev      | lru next      | hash next     | time (access) |
//!  +---------------+---------------+---------------+---------------+
//!  | exptime       | nbytes        | client flags  |refcnt |nkey|fl |
//!  +---------------+---------------+---------------+---------------+
//!  | cas (u64)                     | key (nkey) | value (nbytes) ...
//!  +-------------------------------+-------------------------------+
//! ```
//!
//! Links are 32-bit chunk handles instead of pointers, times are seconds on
//! the server's relative clock, and `nbytes` counts the value's trailing
//! `\r\n`, which is stored so that a `get` reply sends the value bytes as
//! they are.  memcached spends 48 bytes plus 8 for CAS plus a NUL after the
//! key; this layout spends 40 in all.
//!
//! A value too large for the largest chunk is *chained*: the header chunk
//! holds the header, the key and a table of 32-bit handles of data chunks,
//! each filled with value bytes (all of the largest class except perhaps a
//! smaller last one).

/// Item is reachable from the index and its LRU.
pub const F_LINKED: u8 = 1;
/// Value lives in a chain of data chunks.
pub const F_CHAINED: u8 = 2;
/// Item was read at least once since it was stored.
pub const F_FETCHED: u8 = 4;
/// Item was read since it last passed the LRU tail (second chance).
pub const F_ACTIVE: u8 = 8;

/// The fixed part of every item; see the module diagram.
#[repr(C)]
#[derive(Debug)]
pub struct ItemHeader {
    pub prev: u32,
    pub next: u32,
    pub hnext: u32,
    pub time: u32,
    pub exptime: u32,
    pub nbytes: u32,
    pub flags: u32,
    pub refcount: u16,
    pub nkey: u8,
    pub iflags: u8,
    pub cas: u64,
}

/// Bytes before the key.
pub const HEADER: usize = std::mem::size_of::<ItemHeader>();
const _: () = assert!(HEADER == 40);

/// How an item of this key and value length is laid out in chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Bytes of the header chunk in use.
    pub head_bytes: usize,
    /// Data chunks of a chained value; 0 when the value is inline.
    pub data_chunks: usize,
}

impl Layout {
    /// Layout for `nkey` key bytes and `nbytes` value bytes when the largest
    /// chunk is `chunk_max` bytes.
    pub fn of(nkey: usize, nbytes: usize, chunk_max: usize) -> Layout {
        let inline = HEADER + nkey + nbytes;
        if inline <= chunk_max {
            return Layout {
                head_bytes: inline,
                data_chunks: 0,
            };
        }
        let data_chunks = nbytes.div_ceil(chunk_max);
        Layout {
            head_bytes: HEADER + nkey + 4 * data_chunks,
            data_chunks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_and_chained_layouts() {
        assert_eq!(
            Layout::of(3, 100, 524288),
            Layout {
                head_bytes: 143,
                data_chunks: 0
            }
        );
        let l = Layout::of(3, 1_000_000, 524288);
        assert_eq!(l.data_chunks, 2);
        assert_eq!(l.head_bytes, HEADER + 3 + 8);
    }
}

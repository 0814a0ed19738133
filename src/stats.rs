//! Server-wide counters, declared once.
//!
//! `counters!` generates the struct and its reset from one list, so a
//! counter cannot be added to one and forgotten in the other.  Counters are plain `u64`: one thread owns them.

macro_rules! counters {
    ($(#[$m:meta])* $name:ident { $($field:ident),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Default, Clone)]
        pub struct $name { $(pub $field: u64,)* }

        impl $name {
            /// Zeroes every counter (`stats reset`).
            pub fn reset(&mut self) {
                *self = Self::default();
            }

        }
    };
}

counters! {
    /// Per-command counters of the protocol layer.
    Counters {
        cmd_get, cmd_set, cmd_flush, cmd_touch, cmd_meta,
        get_hits, get_misses, delete_misses,
        incr_misses, decr_misses,
        touch_misses, store_too_large, store_no_memory,
        auth_cmds, auth_errors, idle_kicks,
        bytes_read, bytes_written,
        rejected_connections, total_connections, conn_yields, listen_disabled_num,
    }
}

impl Counters {
    /// Counts a read (`get`-like) or a touch (`gat`/`touch`-like) and
    /// whether it hit, the way memcached's counters see it.
    pub fn count_fetch(&mut self, hit: bool, touch: bool) {
        if touch {
            self.cmd_touch += 1;
            self.touch_misses += u64::from(!hit);
        } else {
            self.cmd_get += 1;
            if hit {
                self.get_hits += 1;
            } else {
                self.get_misses += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetches_are_counted_as_memcached_does() {
        let mut c = Counters::default();
        c.count_fetch(true, false);
        c.count_fetch(false, false);
        c.count_fetch(true, true);
        c.count_fetch(false, true);
        assert_eq!((c.cmd_get, c.get_hits, c.get_misses), (2, 1, 1));
        assert_eq!((c.cmd_touch, c.touch_misses), (2, 1));
    }

    #[test]
    fn reset_clears_every_counter() {
        let mut c = Counters {
            cmd_get: 3,
            ..Default::default()
        };
        c.reset();
        assert_eq!(c.cmd_get, 0);
    }
}

/// `stats detail`: get/hit/set/delete counts per key prefix (the part of a
/// key before the delimiter; keys without it are not counted), as
/// memcached keeps them when `stats detail on` or `-D` turns them on.
#[derive(Debug, Clone)]
pub struct PrefixStats {
    pub enabled: bool,
    pub delimiter: u8,
    /// Prefixes in the order they were first seen, with their counters.
    entries: Vec<(Vec<u8>, [u64; 4])>,
    index: std::collections::HashMap<Vec<u8>, usize>,
}

const GET: usize = 0;
const HIT: usize = 1;
const SET: usize = 2;
const DEL: usize = 3;

impl PrefixStats {
    pub fn new(delimiter: u8, enabled: bool) -> PrefixStats {
        PrefixStats {
            enabled,
            delimiter,
            entries: Vec::new(),
            index: std::collections::HashMap::new(),
        }
    }

    fn counters(&mut self, key: &[u8]) -> Option<&mut [u64; 4]> {
        if !self.enabled {
            return None;
        }
        let len = memchr::memchr(self.delimiter, key)?;
        let prefix = &key[..len];
        let i = match self.index.get(prefix) {
            Some(&i) => i,
            None => {
                self.entries.push((prefix.to_vec(), [0; 4]));
                self.index.insert(prefix.to_vec(), self.entries.len() - 1);
                self.entries.len() - 1
            }
        };
        Some(&mut self.entries[i].1)
    }

    pub fn record_get(&mut self, key: &[u8], hit: bool) {
        if let Some(c) = self.counters(key) {
            c[GET] += 1;
            c[HIT] += u64::from(hit);
        }
    }

    pub fn record_set(&mut self, key: &[u8]) {
        if let Some(c) = self.counters(key) {
            c[SET] += 1;
        }
    }

    pub fn record_delete(&mut self, key: &[u8]) {
        if let Some(c) = self.counters(key) {
            c[DEL] += 1;
        }
    }

    /// Forgets every prefix (`stats reset`).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.index.clear();
    }

    /// memcached's `stats detail dump` lines, without the final `END`, in
    /// memcached's order: by bucket of its 256-bucket prefix table
    /// (MurmurHash3 of the prefix), newest first within a bucket.
    pub fn dump(&self, out: &mut Vec<u8>) {
        use std::io::Write as _;
        let mut order: Vec<(u32, std::cmp::Reverse<usize>)> = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, (p, _))| (murmur3_32(p) % 256, std::cmp::Reverse(i)))
            .collect();
        order.sort_unstable();
        for (_, std::cmp::Reverse(i)) in order {
            let (prefix, c) = &self.entries[i];
            out.extend_from_slice(b"PREFIX ");
            out.extend_from_slice(prefix);
            let _ = write!(
                out,
                " get {} hit {} set {} del {}\r\n",
                c[GET], c[HIT], c[SET], c[DEL]
            );
        }
    }
}

/// MurmurHash3_x86_32 with seed 0, memcached's default key hash; used only
/// to reproduce the order of `stats detail dump`.
fn murmur3_32(data: &[u8]) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mut h: u32 = 0;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let tail = chunks.remainder();
    let mut k: u32 = 0;
    for (i, &b) in tail.iter().enumerate() {
        k ^= u32::from(b) << (8 * i);
    }
    if !tail.is_empty() {
        h ^= k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    }
    h ^= data.len() as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

#[cfg(test)]
mod prefix_tests {
    use super::*;

    #[test]
    fn counts_by_prefix_and_skips_keys_without_delimiter() {
        let mut p = PrefixStats::new(b':', true);
        p.record_set(b"user:1");
        p.record_get(b"user:1", true);
        p.record_get(b"user:2", false);
        p.record_delete(b"user:1");
        p.record_set(b"plain");
        let mut out = Vec::new();
        p.dump(&mut out);
        assert_eq!(out, b"PREFIX user get 2 hit 1 set 1 del 1\r\n");
        p.enabled = false;
        p.record_set(b"user:3");
        let mut again = Vec::new();
        p.dump(&mut again);
        assert_eq!(again, out);
    }

    #[test]
    fn murmur3_reference_values() {
        assert_eq!(murmur3_32(b""), 0);
        assert_eq!(murmur3_32(b"hello"), 0x248b_fa47);
        assert_eq!(
            murmur3_32(b"The quick brown fox jumps over the lazy dog"),
            0x2e4f_f723
        );
    }

    #[test]
    fn dump_follows_memcacheds_bucket_order() {
        // The order memcached 1.6.18 printed for these prefixes.
        let mut p = PrefixStats::new(b':', true);
        for key in [
            &b"q:1"[..],
            b"aa:1",
            b"zz:1",
            b"user:1",
            b"a:b:c",
            b":x",
            b"x:",
        ] {
            p.record_get(key, false);
        }
        let mut out = Vec::new();
        p.dump(&mut out);
        let names: Vec<&[u8]> = out
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| l[7..].split(|&b| b == b' ').next().unwrap())
            .collect();
        assert_eq!(names, [&b""[..], b"user", b"zz", b"x", b"aa", b"a", b"q"]);
    }
}

//! Number parsing with exactly the acceptance rules memcached uses.
//!
//! memcached parses every numeric token with `strtoul`/`strtol`/`strtoull`
//! wrapped in its `safe_strto*` helpers.  Their quirks are visible on the
//! wire (leading white space and a sign are accepted, `4294967296` flags
//! truncate to 0, a trailing `\r` is tolerated, `-1` is refused for unsigned
//! fields only when the result looks negative), so a drop-in replacement has
//! to reproduce them rather than use `str::parse`.
//!
//! Inputs are byte slices that end where memcached's NUL-terminated token
//! would end; a NUL inside the slice also ends the number.

/// `isspace()` in the C locale.
#[inline]
pub fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Result of the shared `strto*` scan.
struct Scan {
    negative: bool,
    /// Magnitude; meaningless when `overflow` is set.
    magnitude: u64,
    /// More than 64 bits of magnitude.
    overflow: bool,
    /// Index just past the last digit; 0 when no digit was found.
    end: usize,
}

fn scan(s: &[u8]) -> Scan {
    let at = |i: usize| -> u8 { s.get(i).copied().unwrap_or(0) };
    let mut i = 0;
    while is_c_space(at(i)) {
        i += 1;
    }
    let mut negative = false;
    if at(i) == b'+' || at(i) == b'-' {
        negative = at(i) == b'-';
        i += 1;
    }
    let digits_start = i;
    let mut magnitude: u64 = 0;
    let mut overflow = false;
    while at(i).is_ascii_digit() {
        let d = u64::from(at(i) - b'0');
        match magnitude.checked_mul(10).and_then(|m| m.checked_add(d)) {
            Some(m) => magnitude = m,
            None => overflow = true,
        }
        i += 1;
    }
    let end = if i == digits_start { 0 } else { i };
    Scan {
        negative,
        magnitude,
        overflow,
        end,
    }
}

/// The character after the number must end the token.
fn ends_token(s: &[u8], end: usize) -> bool {
    match s.get(end) {
        None | Some(0) => true,
        Some(&b) => is_c_space(b),
    }
}

/// The token up to its first NUL, where `strchr` would stop.
fn c_str(s: &[u8]) -> &[u8] {
    match memchr::memchr(0, s) {
        Some(n) => &s[..n],
        None => s,
    }
}

/// `safe_strtoull`: unsigned 64-bit.
pub fn strtoull(s: &[u8]) -> Option<u64> {
    let sc = scan(s);
    if sc.end == 0 || sc.overflow || !ends_token(s, sc.end) {
        return None;
    }
    let v = if sc.negative {
        sc.magnitude.wrapping_neg()
    } else {
        sc.magnitude
    };
    if (v as i64) < 0 && c_str(s).contains(&b'-') {
        return None;
    }
    Some(v)
}

/// `safe_strtoul`: parsed as a 64-bit `unsigned long`, stored into 32 bits
/// (so `4294967296` becomes 0, as memcached does).
pub fn strtoul(s: &[u8]) -> Option<u32> {
    strtoull(s).map(|v| v as u32)
}

/// `safe_strtol`: parsed as a 64-bit `long`, stored into 32 bits.
pub fn strtol(s: &[u8]) -> Option<i32> {
    strtoll(s).map(|v| v as i32)
}

/// `safe_strtoll`: signed 64-bit.
pub fn strtoll(s: &[u8]) -> Option<i64> {
    let sc = scan(s);
    if sc.end == 0 || sc.overflow || !ends_token(s, sc.end) {
        return None;
    }
    if sc.negative {
        if sc.magnitude > (i64::MAX as u64) + 1 {
            return None;
        }
        Some((sc.magnitude as i64).wrapping_neg())
    } else {
        i64::try_from(sc.magnitude).ok()
    }
}

/// Decimal digits of `v` into `out`, returning the used tail of the buffer.
pub fn u64_digits(mut v: u64, out: &mut [u8; 20]) -> &[u8] {
    let mut i = out.len();
    loop {
        i -= 1;
        out[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &out[i..]
}

/// Appends the decimal form of `v` to `buf` without going through `fmt`.
#[inline]
pub fn push_u64(buf: &mut Vec<u8>, v: u64) {
    let mut tmp = [0u8; 20];
    buf.extend_from_slice(u64_digits(v, &mut tmp));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsigned_quirks_match_memcached() {
        assert_eq!(strtoul(b"0"), Some(0));
        assert_eq!(strtoul(b"4294967295"), Some(u32::MAX));
        assert_eq!(strtoul(b"4294967296"), Some(0));
        assert_eq!(strtoul(b"-1"), None);
        assert_eq!(strtoul(b"-0"), Some(0));
        assert_eq!(strtoul(b"+7"), Some(7));
        assert_eq!(strtoul(b"\t7"), Some(7));
        assert_eq!(strtoul(b"7\r"), Some(7));
        assert_eq!(strtoul(b"7x"), None);
        assert_eq!(strtoul(b""), None);
        assert_eq!(strtoul(b"-"), None);
        assert_eq!(strtoul(b"99999999999999999999999"), None);
    }

    #[test]
    fn u64_limits_and_sign() {
        assert_eq!(strtoull(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(strtoull(b"18446744073709551616"), None);
        assert_eq!(strtoull(b"-1"), None);
        // A small negative wraps to a huge value that looks negative: refused.
        assert_eq!(strtoull(b"-5"), None);
        assert_eq!(strtoull(b"12\r\n"), Some(12));
        assert_eq!(strtoull(b"1 2"), Some(1));
        assert_eq!(strtoull(b"1\0abc"), Some(1));
    }

    #[test]
    fn signed_truncates_to_32_bits() {
        assert_eq!(strtol(b"-1"), Some(-1));
        assert_eq!(strtol(b"4294967297"), Some(1));
        assert_eq!(strtol(b"2147483648"), Some(i32::MIN));
        assert_eq!(strtol(b"9223372036854775808"), None);
        assert_eq!(strtoll(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(strtol(b"abc"), None);
    }

    #[test]
    fn digits() {
        let mut b = Vec::new();
        push_u64(&mut b, 0);
        b.push(b' ');
        push_u64(&mut b, u64::MAX);
        assert_eq!(b, b"0 18446744073709551615");
    }
}

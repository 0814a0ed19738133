//! The server clock: coarse relative seconds, as memcached keeps them.
//!
//! memcached counts time from `process_started`, set 62 seconds before the
//! real start (`ITEM_UPDATE_INTERVAL + 2`), so that the first relative times
//! are never 0 (which means "never expires").  Item times are relative
//! seconds; `realtime` turns a protocol exptime into one.  The clock is read
//! once per event loop turn, never per request.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Seconds of relative time the clock starts at.
const START_OFFSET: u32 = 62;
/// Exptimes up to 30 days are relative; larger ones are unix times.
pub const REALTIME_MAXDELTA: i64 = 60 * 60 * 24 * 30;

/// Relative and absolute time for one server.
pub struct Clock {
    started: Instant,
    /// Unix time of relative second 0.
    process_started: i64,
    now: u32,
    /// Milliseconds since `started`, as of the last update.
    millis: u64,
    /// Seconds added by tests (`debugtime`-like), never by the network.
    skew: u32,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    pub fn new() -> Clock {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        Clock {
            started: Instant::now(),
            process_started: unix - i64::from(START_OFFSET),
            now: START_OFFSET,
            millis: 0,
            skew: 0,
        }
    }

    /// Re-reads the monotonic clock; returns the relative time.
    pub fn update(&mut self) -> u32 {
        let elapsed = self.started.elapsed();
        self.millis = elapsed.as_millis() as u64;
        let secs = elapsed.as_secs().min(u64::from(u32::MAX / 2)) as u32;
        self.now = START_OFFSET + secs + self.skew;
        self.now
    }

    /// Moves the clock forward (tests of expiry use this instead of sleeping).
    pub fn advance(&mut self, secs: u32) {
        self.skew += secs;
        self.update();
    }

    /// Current relative time.
    pub fn now(&self) -> u32 {
        self.now
    }

    /// Monotonic milliseconds since the clock started, as of the last
    /// update: what background work is paced by.
    pub fn millis(&self) -> u64 {
        self.millis
    }

    /// Unix time of relative second 0.
    pub fn process_started(&self) -> i64 {
        self.process_started
    }

    /// Current unix time as memcached reports it (`stats time`).
    pub fn unix_now(&self) -> i64 {
        self.process_started + i64::from(self.now)
    }

    /// memcached's `realtime(EXPTIME_TO_POSITIVE_TIME(exptime))`: 0 stays
    /// "never", negatives are already expired, up to 30 days is relative,
    /// anything larger is a unix time (clamped to "already expired" when it
    /// lies before the server started).
    pub fn realtime(&self, exptime: i32) -> u32 {
        self.realtime_wide(i64::from(exptime))
    }

    /// [`Clock::realtime`] for the binary protocol's unsigned 32-bit
    /// expiry fields, which memcached widens to `time_t` (0xffffffff is a
    /// date in 2106, not "expired").
    pub fn realtime_unsigned(&self, exptime: u32) -> u32 {
        self.realtime_wide(i64::from(exptime))
    }

    fn realtime_wide(&self, exptime: i64) -> u32 {
        let e = if exptime < 0 {
            REALTIME_MAXDELTA + 1
        } else {
            exptime
        };
        if e == 0 {
            return 0;
        }
        if e > REALTIME_MAXDELTA {
            if e <= self.process_started {
                1
            } else {
                (e - self.process_started) as u32
            }
        } else {
            (e + i64::from(self.now)) as u32
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exptime_conversion() {
        let c = Clock::new();
        let now = c.now();
        assert_eq!(c.realtime(0), 0);
        assert_eq!(c.realtime(-1), 1);
        assert_eq!(c.realtime(100), now + 100);
        assert_eq!(
            c.realtime(REALTIME_MAXDELTA as i32),
            now + REALTIME_MAXDELTA as u32
        );
        // An absolute time in the past is already expired.
        assert_eq!(c.realtime(REALTIME_MAXDELTA as i32 + 1), 1);
        let later = c.process_started() + 1000;
        assert_eq!(c.realtime(later as i32), 1000);
    }
}

//! Server-wide counters, declared once.
//!
//! `counters!` generates the struct, its reset and the list of names in the
//! order memcached prints them, so a counter cannot be added to one place
//! and forgotten in another.  Counters are plain `u64`: one thread owns them.

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

            /// `(name, value)` pairs in declaration order.
            pub fn fields(&self) -> [(&'static str, u64); [$(stringify!($field)),*].len()] {
                [$((stringify!($field), self.$field)),*]
            }
        }
    };
}

counters! {
    /// Per-command counters of the protocol layer.
    Counters {
        cmd_get, cmd_set, cmd_flush, cmd_touch, cmd_meta,
        get_hits, get_misses, delete_misses, delete_hits,
        incr_misses, incr_hits, decr_misses, decr_hits,
        touch_hits, touch_misses, store_too_large, store_no_memory,
        auth_cmds, auth_errors, idle_kicks,
        bytes_read, bytes_written,
        rejected_connections, total_connections, conn_yields, listen_disabled_num,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_follow_declaration_and_reset_clears() {
        let mut c = Counters {
            cmd_get: 3,
            ..Default::default()
        };
        assert_eq!(c.fields()[0], ("cmd_get", 3));
        c.reset();
        assert_eq!(c.cmd_get, 0);
    }
}

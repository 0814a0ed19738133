//! rmemcached: a drop-in replacement for memcached 1.6.
//!
//! Layers, each importing only those before it:
//! `numbers, config, clock, stats` → `cache` (arena → item → index, lru)
//! → `proto` → `reactor`, `sys` → `conn` → `server`.
//! The protocol parser is pure, storage never touches sockets, and the
//! reactor knows nothing of memcached; only `conn` brings them together.

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod auth;
pub mod cache;
pub mod clock;
pub mod config;
pub mod conn;
pub mod numbers;
pub mod proto;
pub mod reactor;
pub mod server;
pub mod stats;
pub mod sys;

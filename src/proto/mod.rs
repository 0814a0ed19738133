//! Wire protocols, as pure functions over bytes.
//!
//! `text` parses memcached's ASCII request lines into commands that borrow
//! from the read buffer (numbers through `crate::numbers`).  Nothing in this module knows about sockets or storage.

pub mod binary;
pub mod meta;
pub mod text;

"""Differential test of the binary protocol (24-byte header, magic 0x80):
packets built with struct go to memcached 1.6.18 and to rmemcached; the
response packets are parsed and compared field by field (rendered one per
line) after renaming CAS values by first appearance (0 stays 0).  Engine:
difftool.py (modes sentinel/eof/close, barriers, split sends as in
test_differential.py); the sentinel is a Noop with a reserved opaque.

Stat replies (test_binary_stats, one connection, fresh servers) keep their
keys and order; values are masked (`<v>`) where they are not reproducible:
general stats except version/pointer_size/threads/limit_maxbytes and the
command counters (after a Stat reset in the same case); settings tcpport,
udpport, inter, oldest; every value of items/slabs/sizes (LRU and crawler
threads move them).

memcached 1.6.18 behaviours found while writing this (the spec to follow):

 * Status codes: 0x01 "Not found", 0x02 "Data exists for key.", 0x03
   "Too large.", 0x04 "Invalid arguments", 0x05 "Not stored.", 0x06
   "Non-numeric server-side value for incr or decr", 0x81 "Unknown command";
   error bodies carry that text, no extras, key or CAS.
 * "Invalid arguments" (0x04) is followed by closing the connection, after
   the replies already due are written.  It is sent for: wrong extras length
   for the opcode (Set/Add/Replace 8, Incr/Decr 20, Touch/GAT* 4, Flush 0 or
   4, none elsewhere), missing key where one is needed (Get*, Set*, Delete,
   Incr, Append, Touch, GAT*, SASL auth/step 0x21/0x22), key where none is
   allowed (Noop, Version, Quit, Flush), a value where none is allowed
   (Get, Delete, Incr, Noop, Version...), key > 250 bytes, and a body length
   inconsistent with a no-value opcode (e.g. Get or Noop with bodylen 4 GB).
 * bodylen < extlen + keylen -> 0x81 "Unknown command", then close.  The
   lengths are only checked once 24 + extlen + keylen bytes have arrived
   (until then memcached just waits; EOF -> silent close); likewise a bad
   magic is only noticed once 24 bytes are there.
 * Unknown opcodes (0x1b, 0x1f, 0x25-0xff, SASL list 0x20 without -S, and
   0x21/0x22 when they have a key) -> 0x81 "Unknown command"; connection
   stays open and the body is skipped -- but for an unknown opcode with
   extras or a key memcached has already consumed extlen+keylen bytes and
   still skips bodylen more, so extlen+keylen bytes of the NEXT packet are
   lost (case unknown_opcode_with_key_skips_too_much; a memcached bug kept
   for compatibility, drop that case if rmemcached chooses not to copy it).
 * Bad magic on a binary connection (first byte of a later packet != 0x80):
   silent close, and replies of packets in the SAME read that were not yet
   written are dropped (so the cases put a barrier before it).  A first
   byte != 0x80 on a new connection selects the text protocol.  A text
   connection receiving 0x80... later parses it as text (`ERROR`; the Noop
   opcode 0x0a is a newline).  A binary connection sending text later ->
   closed (bad magic).
 * Set family with bodylen > item max: "Too large." (0x03); the value is
   swallowed and the reply is only written once the whole declared body has
   been read (EOF before that: closed with no reply).  SetQ/AddQ... report
   Too large too.  Set with bodylen >= 2**31 + extlen + keylen makes
   memcached compute a negative value length (int overflow): undefined
   behaviour (seen: Too large, or silence, or close) -> not compared here,
   only in test_hostile.py (the server must survive).
 * dtype != 0 and vbucket are ignored; opaque is echoed everywhere.
 * Quit replies then closes; QuitQ closes silently.  Flush/FlushQ take an
   optional 4-byte delay (FlushQ silent).
 * Quiet ops hide success only: GetQ/GetKQ hide misses, SetQ/AddQ/
   ReplaceQ/AppendQ/PrependQ/DeleteQ/IncrQ/DecrQ/FlushQ hide success and
   report every error (exists, not found, not stored, too large...).
 * GetK/GetKQ hits carry the key; GetK miss -> 0x01 with the key and an EMPTY
   body text; Get miss -> "Not found".  GATK miss likewise echoes the key
   with no text; GATQ/GATKQ misses are silent.  Touch success carries the
   4-byte flags as extras and no value.
 * Incr/Decr: 8-byte big-endian result; miss with expiration 0xffffffff ->
   Not found; otherwise the initial value is stored (and returned);
   2**64-1 + 2 wraps to 1; decrement clamps at 0.  A shrinking result is
   written in place and padded with spaces (Get returns "0 ", "99 ",
   "1" + 20 spaces).  Binary expirations are unsigned: Touch/GAT/Set with
   0xffffffff is an absolute time in 2106, not "expired".
 * Delete with a non-matching CAS -> 0x02 exists.  Set with CAS on a
   missing key -> 0x01 (Add with CAS -> 0x01 as well).
 * Stat: one packet per stat (key/value), ended by an empty packet; an
   unknown group -> 0x01 "Not found"; groups are matched by prefix of the
   known names ("settings x" = settings); "reset" -> just the terminator.
"""
import random
import re
import struct

import pytest

from difftool import (BARRIER, HDR, SEED, Case, corpus, differ_fixture, normalise_text, pkt,
                      render_packets, run_dialogs, run_one_byte, run_split, run_whole)

GET, SET, ADD, REPLACE, DELETE, INCR, DECR, QUIT, FLUSH, GETQ, NOOP, VERSION = range(12)
GETK, GETKQ, APPEND, PREPEND, STAT = 0x0C, 0x0D, 0x0E, 0x0F, 0x10
SETQ, ADDQ, REPLACEQ, DELETEQ, INCRQ, DECRQ, QUITQ, FLUSHQ = range(0x11, 0x19)
APPENDQ, PREPENDQ, TOUCH, GAT, GATQ, GATK, GATKQ = 0x19, 0x1A, 0x1C, 0x1D, 0x1E, 0x23, 0x24
K250 = b"a" * 249 + b"Z"
K251 = b"b" * 250 + b"Y"


def st(op, key, value, flags=0, exp=0, **kw):
    return pkt(op, key, value, struct.pack(">II", flags, exp), **kw)


def get(op, key, **kw):
    return pkt(op, key, **kw)


def arith(op, key, delta, initial=0, exp=0, **kw):
    return pkt(op, key, b"", struct.pack(">QQI", delta, initial, exp), **kw)


def touch(op, key, exp, **kw):
    return pkt(op, key, b"", struct.pack(">I", exp), **kw)


NOOP_P = pkt(NOOP)


# ---------------------------------------------------------------------------
# Stat values that are not reproducible

GENERAL_KEEP = {b"version", b"pointer_size", b"threads", b"limit_maxbytes", b"cmd_get",
                b"cmd_set", b"cmd_touch", b"get_hits", b"get_misses", b"get_expired",
                b"get_flushed", b"delete_misses", b"delete_hits", b"incr_misses", b"incr_hits",
                b"decr_misses", b"decr_hits", b"cas_misses", b"cas_hits", b"cas_badval",
                b"touch_hits", b"touch_misses", b"auth_cmds", b"auth_errors"}
SETTINGS_MASK = {b"tcpport", b"udpport", b"inter", b"oldest"}


def stat_value(key, value):
    if b":" in key or key.startswith(b"sizes") or key == b"detailed":
        return b"<v>"  # items / slabs / sizes / detail: reported by the LRU's state
    if key in SETTINGS_MASK:
        return b"<v>"
    if key in SETTING_NAMES:
        return value
    if key in GENERAL_KEEP:
        return value
    return b"<v>"


# names of `stats settings` (values compared except SETTINGS_MASK); anything
# else not in GENERAL_KEEP is a general stat whose value is masked
SETTING_NAMES = {x.encode() for x in (
    "maxbytes maxconns verbosity evictions domain_socket umask shutdown_command growth_factor "
    "chunk_size num_threads num_threads_per_udp stat_key_prefix detail_enabled reqs_per_event "
    "cas_enabled tcp_backlog binding_protocol auth_enabled_sasl auth_enabled_ascii "
    "item_size_max maxconns_fast hashpower_init slab_reassign slab_automove "
    "slab_automove_ratio slab_automove_window slab_chunk_max lru_crawler lru_crawler_sleep "
    "lru_crawler_tocrawl tail_repair_time flush_enabled dump_enabled hash_algorithm "
    "lru_maintainer_thread lru_segmented hot_lru_pct warm_lru_pct hot_max_factor "
    "warm_max_factor temp_lru temporary_ttl idle_timeout watcher_logbuf_size "
    "worker_logbuf_size read_buf_mem_limit track_sizes inline_ascii_response ext_item_size "
    "ext_item_age ext_low_ttl ext_recache_rate ext_wbuf_size ext_compact_under ext_drop_under "
    "ext_max_sleep ext_max_frag slab_automove_freeratio ext_drop_unread ssl_enabled "
    "ssl_chain_cert ssl_key ssl_verify_mode ssl_keyformat ssl_ciphers ssl_ca_cert "
    "ssl_wbuf_size ssl_session_cache ssl_kernel_tls ssl_min_version num_napi_ids "
    "memory_file").split()}


def normalise_binary(buf, casmap):
    return render_packets(buf, casmap, stat_value)


PADDED = re.compile(rb"bl=(\d+)( opq=\S+ cas=\S+ ext=\S* key=b'[^']*' )val=b'([0-9]+)( +)'")


def padding_free_binary(data):
    """Binary Get of a number shrunk in place by Decr keeps memcached's space
    padding or not, racily (see difftool.padding_free_text)."""
    return PADDED.sub(lambda m: b"bl=%d%sval=b'%s'" % (int(m.group(1)) - len(m.group(4)),
                                                        m.group(2), m.group(3)), data)


# ---------------------------------------------------------------------------
# Hand-written cases


def handwritten_cases():
    c = []

    def add(name, chunks, **kw):
        kw.setdefault("proto", "binary")
        c.append(Case(name, chunks, **kw))

    # --- retrieval / storage
    add("get_family_hit_and_miss", st(SET, b"k", b"hello", 5, opaque=1) + get(GET, b"k", opaque=2)
        + get(GETK, b"k", opaque=3) + get(GETQ, b"k", opaque=4) + get(GETKQ, b"k", opaque=5)
        + get(GET, b"nope", opaque=6) + get(GETK, b"nope", opaque=7) + get(GETQ, b"nope", opaque=8)
        + get(GETKQ, b"nope", opaque=9) + pkt(NOOP, opaque=10), one_byte=True)
    add("set_add_replace", st(SET, b"k", b"v", 1) + st(ADD, b"k", b"w") + st(REPLACE, b"n", b"x")
        + st(REPLACE, b"k", b"y", 0xFFFFFFFF) + st(ADD, b"n", b"z", 7) + get(GET, b"k")
        + get(GET, b"n"))
    add("set_flags_and_expiry_echo", st(SET, b"a", b"1", 0xDEADBEEF, 100) + st(SET, b"b", b"2", 0, 0)
        + st(SET, b"c", b"3", 1, 0xFFFFFFFF) + get(GETK, b"a") + get(GETK, b"b") + get(GETK, b"c"))
    add("cas_in_requests_mismatch", st(SET, b"k", b"v") + st(SET, b"k", b"v", cas=12345)
        + st(SET, b"nope", b"v", cas=1) + st(ADD, b"nope", b"v", cas=1) + st(ADD, b"k", b"v", cas=1)
        + st(REPLACE, b"nope", b"v", cas=1) + st(REPLACE, b"k", b"v", cas=1)
        + pkt(APPEND, b"k", b"x", cas=1) + pkt(PREPEND, b"nope", b"x", cas=1)
        + pkt(DELETE, b"k", cas=999) + arith(INCR, b"k", 1, cas=5) + get(GET, b"k"))
    add("delete_hit_miss", st(SET, b"k", b"v") + pkt(DELETE, b"k") + pkt(DELETE, b"k")
        + get(GET, b"k") + st(SET, b"q", b"v") + pkt(DELETEQ, b"q") + pkt(DELETEQ, b"q")
        + get(GET, b"q"))
    add("append_prepend", st(SET, b"k", b"mid", 3) + pkt(APPEND, b"k", b"end")
        + pkt(PREPEND, b"k", b"sta") + pkt(APPEND, b"x", b"A") + pkt(PREPEND, b"x", b"P")
        + get(GET, b"k") + pkt(APPEND, b"k", b"") + get(GET, b"k"))
    add("empty_and_binary_values", st(SET, b"e", b"") + get(GETK, b"e") + st(SET, b"b", bytes(range(256)))
        + get(GET, b"b") + st(SET, b"\x00\xff\r\n", b"kv") + get(GETK, b"\x00\xff\r\n"))
    add("key_250_ok_251_invalid_closes", st(SET, K250, b"x") + get(GETK, K250) + get(GET, K251),
        mode="close")
    add("opaque_echo_everywhere", st(SET, b"k", b"1", opaque=0xFFFFFFFF) + get(GET, b"k", opaque=0x80000000)
        + arith(INCR, b"k", 1, opaque=0x12345678) + pkt(DELETE, b"nope", opaque=0xCAFEBABE)
        + pkt(VERSION, opaque=77) + pkt(NOOP, opaque=0) + pkt(0x30, opaque=0xABCDEF01))
    add("dtype_and_vbucket_ignored", pkt(NOOP, dtype=1) + st(SET, b"k", b"v", dtype=5, vbucket=7)
        + get(GET, b"k", vbucket=9, dtype=0xFF) + pkt(VERSION, dtype=2))

    # --- incr / decr
    add("incr_decr_basic", arith(INCR, b"n", 5, 10) + arith(INCR, b"n", 5, 10)
        + arith(DECR, b"n", 100, 10) + arith(DECR, b"m", 1, 77, 100) + arith(INCR, b"x", 1, 5, 0xFFFFFFFF)
        + get(GET, b"n") + get(GET, b"m"), one_byte=True)
    add("incr_wrap_and_clamp", st(SET, b"n", b"18446744073709551615\x00") + arith(INCR, b"n", 2)
        + get(GET, b"n") + st(SET, b"m", b"5") + arith(DECR, b"m", 10) + get(GET, b"m")
        + arith(INCR, b"z", 0, 18446744073709551615) + arith(INCR, b"z", 1))
    add("incr_non_numeric", st(SET, b"s", b"abc") + arith(INCR, b"s", 1) + st(SET, b"t", b"-5")
        + arith(DECR, b"t", 1) + st(SET, b"e", b"") + arith(INCR, b"e", 1) + st(SET, b"b", b"x" * 30)
        + arith(INCRQ, b"b", 1) + st(SET, b"p", b"12abc") + arith(INCR, b"p", 1))
    add("incr_grows_and_decr_shrinks", st(SET, b"n", b"99") + arith(INCR, b"n", 1) + get(GET, b"n")
        + st(SET, b"m", b"100") + arith(DECR, b"m", 1) + get(GET, b"m"))
    add("incr_on_text_number", st(SET, b"n", b" 7") + arith(INCR, b"n", 1) + st(SET, b"o", b"007")
        + arith(INCR, b"o", 1) + get(GET, b"o"))
    add("incr_quiet", arith(INCRQ, b"a", 1, 5) + arith(INCRQ, b"a", 1) + arith(DECRQ, b"zz", 1, 0,
        0xFFFFFFFF) + arith(DECRQ, b"a", 2) + get(GETQ, b"a") + NOOP_P)
    add("incr_wrong_extras_closes", arith(INCR, b"n", 1) + pkt(INCR, b"n", b"", b"\0" * 10), mode="close")
    add("incr_with_value_closes", pkt(INCR, b"n", b"5", struct.pack(">QQI", 1, 0, 0)), mode="close")

    # --- quiet batches
    add("quiet_storage_batch", st(SETQ, b"a", b"1") + st(ADDQ, b"a", b"2") + st(ADDQ, b"b", b"2")
        + st(REPLACEQ, b"c", b"3") + st(REPLACEQ, b"a", b"3") + pkt(APPENDQ, b"a", b"X")
        + pkt(PREPENDQ, b"a", b"Y") + pkt(APPENDQ, b"zz", b"X") + pkt(PREPENDQ, b"zz", b"Y")
        + pkt(DELETEQ, b"b") + pkt(DELETEQ, b"zz") + get(GETQ, b"a") + get(GETKQ, b"a")
        + get(GETQ, b"zz") + get(GETKQ, b"zz") + st(SETQ, b"a", b"z", cas=1) + pkt(NOOP, opaque=42),
        one_byte=True)
    add("quiet_multiget_batch", st(SET, b"k1", b"one") + st(SET, b"k3", b"three")
        + b"".join(get(GETKQ, b"k%d" % i, opaque=i) for i in range(6)) + NOOP_P
        + b"".join(get(GETQ, b"k%d" % i, opaque=i) for i in range(6)) + NOOP_P)
    add("quiet_without_noop_then_more", st(SETQ, b"a", b"1") + get(GETQ, b"a") + get(GETQ, b"b")
        + get(GET, b"b"))
    add("setq_too_large_reported", st(SETQ, b"a", b"1" * 1048577) + NOOP_P)

    # --- flush / version / noop / quit
    add("flush_forms", st(SET, b"a", b"1") + pkt(FLUSH) + get(GET, b"a") + st(SET, b"a", b"1")
        + pkt(FLUSHQ) + get(GET, b"a") + st(SET, b"a", b"1") + pkt(FLUSHQ, extras=b"\0\0\0\0")
        + get(GET, b"a") + st(SET, b"a", b"1") + pkt(FLUSH, extras=struct.pack(">I", 100))
        + get(GET, b"a") + NOOP_P)
    add("flush_bad_extras_closes", pkt(FLUSH, extras=b"\0\0"), mode="close")
    add("version_and_noop", pkt(VERSION, opaque=5) + pkt(NOOP, opaque=6))
    add("quit_replies_then_closes", pkt(VERSION, opaque=5) + pkt(QUIT, opaque=9), mode="close",
        one_byte=True)
    add("quitq_closes_silently", pkt(NOOP, opaque=1) + pkt(QUITQ, opaque=9), mode="close")
    add("quit_then_more_packets", pkt(QUIT) + NOOP_P, mode="close", split=False)

    # --- touch / gat
    add("touch_gat_family", st(SET, b"k", b"v", 3) + touch(TOUCH, b"k", 100) + touch(GAT, b"k", 100)
        + touch(GATQ, b"k", 100) + touch(GATK, b"k", 100) + touch(GATKQ, b"k", 100)
        + touch(TOUCH, b"x", 100) + touch(GAT, b"x", 100) + touch(GATQ, b"x", 100)
        + touch(GATK, b"x", 100) + touch(GATKQ, b"x", 100) + NOOP_P, one_byte=True)
    add("touch_expire_now", st(SET, b"k", b"v") + touch(TOUCH, b"k", 0xFFFFFFFF) + get(GET, b"k")
        + st(SET, b"j", b"v") + touch(GAT, b"j", 0xFFFFFFFF) + get(GET, b"j"))
    add("touch_without_extras_closes", st(SET, b"k", b"v") + pkt(TOUCH, b"k"), mode="close")

    # --- unknown commands
    add("unknown_opcodes_answered", b"".join(pkt(op, opaque=op) for op in
                                             (0x1B, 0x1F, 0x20, 0x25, 0x30, 0x48, 0x70, 0x80, 0xFE, 0xFF))
        + pkt(0x21, b"PLAIN", b"\0u\0p") + pkt(0x22, b"PLAIN", b"x") + pkt(0x30, b"", b"val"))
    # memcached reads extras+key before it sees the opcode is unknown, then
    # skips bodylen more bytes, losing extlen+keylen bytes of the next
    # packet.  rmemcached skips exactly the body (a deliberate difference,
    # see test_unknown_opcode_skips_exactly_its_body); compared here only
    # where both agree: an unknown opcode without extras or key.
    add("sasl_auth_without_key_closes", pkt(0x21), mode="close")
    add("sasl_step_without_key_closes", pkt(0x22), mode="close")

    # --- invalid arguments: reply then close
    for name, p in [
            ("set_extras_4", pkt(SET, b"k", b"v", b"\0\0\0\0")),
            ("set_no_extras", pkt(SET, b"k", b"v")),
            ("set_no_key", st(SET, b"", b"v")),
            ("get_with_extras", pkt(GET, b"k", extras=b"\0\0\0\0")),
            ("get_with_value", pkt(GET, b"k", b"v")),
            ("get_no_key", pkt(GET)),
            ("getkq_no_key", pkt(GETKQ)),
            ("delete_with_extras", pkt(DELETE, b"k", extras=b"\0\0\0\0")),
            ("delete_with_value", pkt(DELETE, b"k", b"v")),
            ("append_with_extras", pkt(APPEND, b"k", b"v", b"\0\0\0\0")),
            ("append_no_key", pkt(APPEND, b"", b"v")),
            ("noop_with_key", pkt(NOOP, b"k")),
            ("noop_with_value", pkt(NOOP, b"", b"v")),
            ("version_with_value", pkt(VERSION, b"", b"xx")),
            ("quit_with_key", pkt(QUIT, b"k")),
            ("flush_with_key", pkt(FLUSH, b"k")),
            ("gat_extras_8", pkt(GAT, b"k", b"", b"\0" * 8)),
            ("gat_no_key", pkt(GAT, b"", b"", b"\0" * 4)),
            ("stat_with_extras", pkt(STAT, b"", b"", b"\0" * 4)),
            ("noop_bodylen_4g", pkt(NOOP, bodylen=0xFFFFFFFF)),
            ("get_bodylen_4g", pkt(GET, b"k", bodylen=0xFFFFFFFF)),
            ("get_bodylen_1m", pkt(GET, b"k", bodylen=1000000) + b"x" * 100),
            ("noop_bodylen_5", pkt(NOOP, bodylen=5) + b"abcde" + NOOP_P),
            ("get_bodylen_too_big_for_key", pkt(GET, b"k", bodylen=5) + b"abcd" + NOOP_P)]:
        add("invalid_" + name, [st(SET, b"kept", b"1") + get(GET, b"kept"), BARRIER, p], mode="close")
    add("bodylen_smaller_than_key_and_extras", st(SET, b"k", b"v", bodylen=5) + NOOP_P, mode="close")
    add("bodylen_smaller_than_key", get(GET, b"kkk", bodylen=1) + b"kk" + NOOP_P, mode="close")
    # memcached waits for 24 + extlen + keylen bytes before it checks the lengths
    add("keylen_bigger_than_body_then_bytes", pkt(GET, b"k", keylen=200) + b"x" * 300, mode="close")
    add("keylen_bigger_than_body_waits_then_eof", pkt(GET, b"k", keylen=200) + NOOP_P, mode="eof")

    # --- bad magic / protocol switch
    add("bad_magic_0x81_closes_silently", [st(SET, b"k", b"v") + get(GET, b"k"), BARRIER,
                                          pkt(NOOP, magic=0x81) + NOOP_P], mode="close")
    add("bad_magic_text_after_binary_closes", [NOOP_P, BARRIER, b"get k\r\n" * 4], mode="close")
    # fewer than 24 bytes: memcached waits for a whole header before it looks at the magic
    add("short_text_after_binary_waits_then_eof", [NOOP_P, BARRIER, b"get k\r\n"], mode="eof")
    add("bad_magic_zero_after_binary", [NOOP_P, BARRIER, b"\x00" * 24], mode="close")
    add("text_connection_then_0x80_packet", [b"get k\r\n", BARRIER, NOOP_P + b"\r\nget k\r\n"],
        proto="text")
    add("text_connection_then_binary_set", [b"set k 0 0 1\r\nx\r\n", BARRIER,
                                            st(SET, b"k", b"v") + b"\r\nget k\r\n"], proto="text")
    add("magic_zero_first_selects_text", pkt(NOOP, magic=0x00) + NOOP_P + b"\r\nversion\r\n",
        proto="text")
    add("magic_0x81_first_selects_text", pkt(NOOP, magic=0x81) + b"\r\n", proto="text")

    # --- too large / huge bodies
    add("set_too_large_body_sent", st(SET, b"k", b"old") + st(SET, b"k", b"x" * 1048577) + get(GET, b"k")
        + st(SET, b"k", b"old") + st(ADD, b"k", b"x" * 2 * 1048576) + get(GET, b"k"))
    add("set_size_limit_exact", st(SET, b"k", b"x" * 1048516) + get(GETK, b"k", opaque=1)
        + st(SET, b"j", b"x" * 1048517) + get(GET, b"j"))
    add("append_over_limit", st(SET, b"k", b"x" * 1048516) + pkt(APPEND, b"k", b"y") + get(GET, b"k"))
    add("set_declared_200mb_then_eof", st(SET, b"k", b"", bodylen=200 * 1048576 + 9) + b"abc",
        mode="eof")
    add("set_declared_2mb_partial_then_eof", st(SET, b"k", b"", bodylen=2 * 1048576 + 9)
        + b"x" * 100000, mode="eof")

    # --- truncated input then EOF
    add("truncated_header_eof", NOOP_P[:10], mode="eof")
    add("truncated_after_full_packet_eof", NOOP_P + pkt(VERSION)[:23], mode="eof")
    add("truncated_key_eof", get(GET, b"abcdef")[:27], mode="eof")
    add("truncated_extras_eof", st(SET, b"k", b"v")[:28], mode="eof")
    add("truncated_value_eof", st(SET, b"k", b"hello")[:-2], mode="eof")
    add("truncated_after_quiet_eof", st(SETQ, b"k", b"v") + get(GETQ, b"k") + NOOP_P[:5], mode="eof")
    return c


# ---------------------------------------------------------------------------
# CAS dialogs


def cas_of(d, reply, op=None):
    i = 0
    while len(reply) - i >= 24:
        magic, o, kl, el, dt, status, bl, opq, cas = HDR.unpack_from(reply, i)
        if cas and (op is None or o == op):
            return cas
        i += 24 + bl
    d.fail("no cas in %r" % reply[:200])


def dlg_bin_set_cas_match_then_stale(d):
    c = cas_of(d, d.send(st(SET, b"k", b"a")))
    d.send(st(SET, b"k", b"b", 1, cas=c) + get(GET, b"k"))
    d.send(st(SET, b"k", b"c", cas=c) + get(GET, b"k"))


def dlg_bin_replace_append_cas(d):
    c = cas_of(d, d.send(st(SET, b"k", b"a")))
    d.send(st(REPLACE, b"k", b"b", cas=c) + st(REPLACE, b"k", b"c", cas=c) + get(GET, b"k"))
    c = cas_of(d, d.send(get(GET, b"k")))
    d.send(pkt(APPEND, b"k", b"X", cas=c) + pkt(PREPEND, b"k", b"Y", cas=c) + get(GET, b"k"))


def dlg_bin_delete_cas(d):
    c = cas_of(d, d.send(st(SET, b"k", b"a")))
    d.send(pkt(DELETE, b"k", cas=c + 1) + pkt(DELETE, b"k", cas=c) + get(GET, b"k"))


def dlg_bin_incr_cas(d):
    c = cas_of(d, d.send(st(SET, b"n", b"5")))
    d.send(arith(INCR, b"n", 1, cas=c) + arith(INCR, b"n", 1, cas=c) + get(GET, b"n"))


def dlg_bin_quiet_cas(d):
    c = cas_of(d, d.send(st(SET, b"k", b"a")))
    d.send(st(SETQ, b"k", b"b", cas=c) + st(SETQ, b"k", b"c", cas=c) + get(GETK, b"k"))


def dlg_bin_cas_matches_text_gets(d):
    c = cas_of(d, d.send(st(SET, b"k", b"a")))
    r = d.send(get(GET, b"k"))
    if cas_of(d, r) != c:
        d.fail("Get cas differs from Set cas")
    d.send(touch(TOUCH, b"k", 100) + touch(GAT, b"k", 200) + st(SET, b"k", b"z", cas=c) + get(GET, b"k"))


DIALOGS = [f for name, f in sorted(globals().items()) if name.startswith("dlg_")]


# ---------------------------------------------------------------------------
# Generated binary pipelines (valid packets only)

KEYS = [b"k0", b"k1", b"n", b"\x00b"]
VALUES = [b"", b"x", b"hello", b"0", b"1", b"42", b"100", b"abc", b"\x00\xff", b"x" * 300,
          b"18446744073709551615\x00", b"12abc", b"VERSION 1.6.18\r\n"]
QUIET = {GET: GETQ, GETK: GETKQ, SET: SETQ, ADD: ADDQ, REPLACE: REPLACEQ, DELETE: DELETEQ,
         INCR: INCRQ, DECR: DECRQ, APPEND: APPENDQ, PREPEND: PREPENDQ, GAT: GATQ, GATK: GATKQ}


class BinGen:
    def __init__(self, rng):
        self.r = rng

    def p(self, x):
        return self.r.random() < x

    def packet(self):
        r = self.r
        op = r.choice([SET, SET, ADD, REPLACE, APPEND, PREPEND, GET, GET, GETK, DELETE, INCR, DECR,
                       TOUCH, GAT, GATK, NOOP, VERSION, 0x1B])
        if op in QUIET and self.p(0.35):
            op = QUIET[op]
        key = r.choice(KEYS)
        opq = r.randrange(1 << 32) if self.p(0.5) else 0
        cas = r.choice([0, 0, 0, 1, 1 << 63])
        if op in (SET, ADD, REPLACE, SETQ, ADDQ, REPLACEQ):
            v = r.choice(VALUES) if key != b"n" else r.choice([b"0", b"7", b"100", b"abc"])
            return st(op, key, v, r.choice([0, 0, 1, 0xFFFFFFFF]), r.choice([0, 0, 100, 3600]),
                      cas=cas, opaque=opq)
        if op in (APPEND, PREPEND, APPENDQ, PREPENDQ):
            if key == b"n":  # digits could pile up past 2**63 (see mc_number)
                key = b"k0"
            return pkt(op, key, r.choice(VALUES[:9]), cas=cas, opaque=opq)
        if op in (INCR, DECR, INCRQ, DECRQ):
            return arith(op, b"n" if self.p(0.8) else key, r.choice([0, 1, 5, 1000]),
                         r.choice([0, 3, 50]), r.choice([0, 0, 100, 0xFFFFFFFF]), cas=0, opaque=opq)
        if op in (TOUCH, GAT, GATQ, GATK, GATKQ):
            return touch(op, key, r.choice([0, 100, 3600]), opaque=opq)
        if op in (DELETE, DELETEQ):
            return pkt(op, key, cas=cas, opaque=opq)
        if op in (NOOP, VERSION, 0x1B):
            return pkt(op, opaque=opq)
        return get(op, key, opaque=opq)

    def pipeline(self):
        n = self.r.randint(2, 14)
        body = b"".join(self.packet() for _ in range(n))
        return body + b"".join(get(GETK, k) for k in KEYS)


def generated_cases():
    g = BinGen(random.Random(SEED))
    return [Case("gen%03d_binary" % i, g.pipeline(), proto="binary", strict=False)
            for i in range(150)]


all_cases = corpus(handwritten_cases, generated_cases)


# ---------------------------------------------------------------------------
# Tests

differ = differ_fixture(normalisers={"binary": normalise_binary, "text": normalise_text},
                        padding_free=padding_free_binary)


def test_binary_handwritten_whole(differ):
    run_whole(differ("binary hand-written, whole"), all_cases()[0])


def test_binary_generated_whole(differ):
    run_whole(differ("binary generated, whole"), all_cases()[1])


def test_binary_split_random(differ):
    run_split(differ("binary random split"), *all_cases())


def test_binary_one_byte_per_send(differ):
    run_one_byte(differ("binary one byte per send"), *all_cases(), SEED + 2, 6)


def test_binary_interactive_cas(differ):
    run_dialogs(differ("binary interactive"), DIALOGS, "binary")


def stats_case():
    """One connection, no flush in between: the stat groups' structure
    depends on which slab classes hold items, so the values are sized to
    land in the same class under both item layouts (rmemcached's header is
    smaller: large values may land one class lower, see README)."""
    return Case("stats_sequence", [
        pkt(STAT, b"items", opaque=1) + pkt(STAT, b"sizes", opaque=2) + pkt(STAT, b"bogus", opaque=3)
        + pkt(STAT, b"conns", opaque=4) + pkt(STAT, b"detail", opaque=5)
        + pkt(STAT, b"detail dump", opaque=6) + pkt(STAT, b"extstore", opaque=7)
        + pkt(STAT, b"cachedump 1 1", opaque=8) + pkt(STAT, b"resetx", opaque=9)
        + pkt(STAT, b"settings", opaque=10) + pkt(STAT, b"settings x", opaque=11)
        + pkt(STAT, b"reset", opaque=12)
        + st(SET, b"a", b"x" * 10) + st(SET, b"b", b"x" * 1124) + st(SET, b"c", b"x" * 2844)
        + get(GET, b"a") + get(GET, b"zz") + arith(INCR, b"zz", 1, 0, 0xFFFFFFFF)
        + pkt(DELETE, b"b") + pkt(DELETE, b"b") + touch(TOUCH, b"a", 100) + touch(GAT, b"nope", 100)
        + st(SET, b"a", b"y", cas=1),
        BARRIER,
        pkt(STAT, opaque=20) + pkt(STAT, b"items", opaque=21) + pkt(STAT, b"slabs", opaque=22)
        + pkt(STAT, b"sizes", opaque=23)], proto="binary")


def test_binary_stats(differ):
    run_whole(differ("binary stats"), [stats_case()])


def test_binary_case_counts():
    hand, gen = all_cases()
    assert len(hand) >= 75 and len(gen) == 150 and len(DIALOGS) >= 6


def test_unknown_opcode_skips_exactly_its_body(start_server):
    """rmemcached only: an unknown opcode with extras and a key is answered
    `Unknown command` and exactly its body is skipped, so the next packet
    is read intact (memcached 1.6.18 loses extlen+keylen bytes of it)."""
    import socket as _socket
    from conftest import MEMCACHED_BIN, RMEMCACHED_BIN
    if RMEMCACHED_BIN == MEMCACHED_BIN:
        pytest.skip("memcached keeps its own skipping quirk")
    srv = start_server(RMEMCACHED_BIN)
    s = _socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    s.sendall(pkt(0x30, b"key", b"val", b"ext", opaque=1) + pkt(NOOP, opaque=2))
    want = (struct.pack(">BBHBBHIIQ", 0x81, 0x30, 0, 0, 0, 0x81, 15, 1, 0)
            + b"Unknown command"
            + struct.pack(">BBHBBHIIQ", 0x81, NOOP, 0, 0, 0, 0, 0, 2, 0))
    got = b""
    while len(got) < len(want):
        chunk = s.recv(4096)
        if not chunk:
            break
        got += chunk
    s.close()
    assert got == want

"""Differential test: rmemcached against the real memcached 1.6.18, text protocol.

The same byte streams go to both servers and the replies must be identical
byte for byte, except that CAS unique numbers are renamed by order of first
appearance within a case (each side separately).  The engine described
here is difftool.py, shared with the meta and binary suites.

Every case runs on a fresh connection after a `flush_all` + `verbosity 0` on a
separate control connection, so state starts empty.  How the end of a case is
detected depends on its mode:

  sentinel  the stream is followed by `version\\r\\n`; the case is over when the
            reply ends with the matching VERSION line (counted structurally,
            skipping VALUE data blocks).  EOF before that is reported as
            "closed"; no reply within 2 s as "timeout" (then the write side is
            shut and the rest is read until EOF).
  eof       for streams that leave the server waiting for value bytes: the
            write side is shut after the stream and replies are read to EOF.
  close     for streams that make the server close the connection (quit,
            over-long line): no sentinel, no half-close; the server must close
            the connection by itself within 2 s.

A case may contain barriers: everything before a barrier is sent and fully
answered (sentinel) before the rest is sent.  Needed where memcached's reply
depends on which replies it has already written out (an over-long key in a
multi-get discards the replies not yet sent).

Each case is sent whole (one send per chunk of the case), split at seeded
random points (1 ms between sends, TCP_NODELAY), and for a subset one byte
per send.  Cases whose behaviour legitimately depends on how the bytes are
read (lines > 2048 bytes without newline, bytes after `quit`) are marked
split=False and only sent whole.

memcached itself is not deterministic everywhere; the corpus avoids those
spots (see Gen), and generated cases compare incr/decr results up to the
space padding of a shrunk number (see difftool.padding_free_text).
Hand-written cases are compared strictly and are built so that memcached
pads deterministically.

All mismatches are collected and reported together at the end of each test
function (first 30 shown).  RMC_DIFF_DUMP=path writes the whole corpus
(hand-written and generated streams) to that path.
"""
import os
import random

import pytest

from difftool import (BARRIER, SEED, Case, blk, corpus, differ_fixture, merge, run_dialogs,
                      run_one_byte, run_split, run_whole, short_repr)

K250 = b"a" * 249 + b"Z"
K251 = b"b" * 250 + b"Y"
BIG_OK = 1048516  # largest value memcached -I 1m stores for a 1-byte key, flags 0
BIG_OK_FLAGS = 1048512  # same with non-zero flags (4 more bytes of item header)


def handwritten_cases():
    c = []

    def add(name, chunks, **kw):
        c.append(Case(name, chunks, **kw))

    # --- storage basics
    add("set_get_basic", blk(b"set", b"k", b"hello") + b"get k\r\n", one_byte=True)
    add("set_flags_exptime_echo", blk(b"set", b"k", b"v", flags=b"4294967295", exptime=b"100")
        + b"get k\r\ngets k\r\n")
    add("add_missing_then_existing", blk(b"add", b"k", b"1") + blk(b"add", b"k", b"2") + b"get k\r\n")
    add("replace_missing_then_existing", blk(b"replace", b"k", b"1") + blk(b"set", b"k", b"2")
        + blk(b"replace", b"k", b"3", flags=b"7") + b"get k\r\n")
    add("append_prepend_missing_not_stored", blk(b"append", b"k", b"a") + blk(b"prepend", b"k", b"b")
        + b"get k\r\n")
    add("append_prepend_keep_original_flags", blk(b"set", b"k", b"mid", flags=b"5")
        + blk(b"append", b"k", b"end", flags=b"9") + blk(b"prepend", b"k", b"sta", flags=b"7")
        + b"get k\r\n", one_byte=True)
    add("append_too_large_not_stored", blk(b"set", b"k", b"x" * BIG_OK)
        + blk(b"append", b"k", b"y") + blk(b"prepend", b"k", b"y") + b"gets k\r\n")
    add("cas_missing_not_found", blk(b"cas", b"k", b"x", extra=b" 0") + b"get k\r\n")
    add("cas_mismatch_exists", blk(b"set", b"k", b"a") + blk(b"cas", b"k", b"b", extra=b" 0")
        + blk(b"cas", b"k", b"c", extra=b" 18446744073709551615") + b"get k\r\n")
    add("cas_bad_unique_tokens", blk(b"set", b"k", b"a") + blk(b"cas", b"k", b"b", extra=b" -1")
        + blk(b"cas", b"k", b"b", extra=b" 18446744073709551616")
        + blk(b"cas", b"k", b"b", extra=b" abc") + blk(b"cas", b"k", b"b") + b"get k\r\n")
    add("cas_noreply_and_bogus_7th_token", blk(b"cas", b"k", b"x", extra=b" 5 noreply")
        + blk(b"cas", b"k", b"x", extra=b" 5 junk") + blk(b"cas", b"k", b"x", extra=b" 5 noreply junk"))
    add("gets_same_key_three_times", blk(b"set", b"a", b"1") + b"gets a a a\r\nget a b a\r\n")
    add("zero_length_value", blk(b"set", b"k", b"") + b"get k\r\n" + blk(b"append", b"k", b"")
        + b"gets k\r\n", one_byte=True)
    add("value_with_crlf_nul_binary", blk(b"set", b"k", b"a\r\nb\nc\rd\x00e") + b"get k\r\n"
        + blk(b"set", b"b", bytes(range(256))) + b"get b\r\n")
    add("value_looks_like_protocol", blk(b"set", b"k", b"END\r\nVALUE x 0 1\r\ny\r\nEND\r\n")
        + blk(b"set", b"v", b"VERSION 1.6.18\r\n") + b"get k v\r\n")

    # --- noreply
    add("noreply_storage_then_get", blk(b"set", b"k", b"1", extra=b" noreply")
        + blk(b"add", b"k", b"2", extra=b" noreply") + blk(b"append", b"k", b"3", extra=b" noreply")
        + blk(b"replace", b"x", b"4", extra=b" noreply") + b"get k x\r\n", one_byte=True)
    add("noreply_suppresses_errors", blk(b"set", b"k", b"ab", length=1, extra=b" noreply")
        + b"incr k x noreply\r\nincr nope 1 noreply\r\ndelete nope noreply\r\n"
        + b"touch nope abc noreply\r\nverbosity noreply\r\nflush_all x noreply\r\nget k\r\n")
    add("noreply_bad_chunk_then_rest_parsed", blk(b"set", b"k", b"xy", length=1, extra=b" noreply")
        + b"get k\r\n")

    # --- malformed storage lines
    add("set_bogus_sixth_token_is_ignored", blk(b"set", b"k", b"x", extra=b" bogus") + b"get k\r\n")
    add("set_noreply_then_extra_token_error", blk(b"set", b"k", b"x", extra=b" noreply extra")
        + b"get k\r\n")
    add("set_missing_tokens", b"set k 0 0\r\nx\r\nset k 0\r\nset k\r\nset\r\nget k\r\n")
    add("set_too_many_tokens_24", b"set k 0 0 1 " + b" ".join([b"a"] * 30) + b"\r\nx\r\n")
    add("set_negative_and_bad_numbers",
        b"set k -1 0 1\r\nx\r\nset k 0 abc 1\r\nx\r\nset k 0 0 -1\r\nx\r\nset k 0 0 abc\r\nx\r\n"
        b"set k 1.5 0 1\r\nx\r\nset k 0 0 1x\r\nx\r\nset k 0x1 0 1\r\nx\r\nget k\r\n")
    add("flags_overflow_truncates",
        blk(b"set", b"a", b"x", flags=b"4294967296") + blk(b"set", b"b", b"x", flags=b"18446744073709551615")
        + blk(b"set", b"c", b"x", flags=b"18446744073709551616") + blk(b"set", b"d", b"x", flags=b"-0")
        + blk(b"set", b"e", b"x", flags=b"4294967297") + b"get a b c d e\r\n")
    add("exptime_int32_truncation",
        blk(b"set", b"a", b"x", exptime=b"4294967396") + blk(b"set", b"b", b"x", exptime=b"99999999999")
        + blk(b"set", b"c", b"x", exptime=b"-4294967196") + blk(b"set", b"d", b"x", exptime=b"+100")
        + blk(b"set", b"e", b"x", exptime=b"2147483647") + blk(b"set", b"f", b"x", exptime=b"4000000000")
        + b"get a b c d e f\r\n")
    add("exptime_negative_and_absolute_past",
        blk(b"set", b"a", b"x", exptime=b"-1") + blk(b"set", b"b", b"x", exptime=b"1000000000")
        + blk(b"set", b"c", b"x", exptime=b"2592000") + blk(b"set", b"d", b"x", exptime=b"2592001")
        + blk(b"set", b"e", b"x", exptime=b"2000000000") + blk(b"set", b"f", b"x", exptime=b"-2147483648")
        + b"get a b c d e f\r\n")
    add("tab_after_number_is_accepted", b"set k 0\t0 0 1\r\nx\r\nset j 5\t 0 1\r\ny\r\nget k j\r\n")
    add("tab_as_separator_is_error", b"set\tk 0 0 1\r\nx\r\nget\tk\r\nget k\tj\r\n")
    add("nul_in_command_line_truncates", b"set k0 0 0 1\x00garbage\r\nx\r\nget k0\x00 k1\r\n"
        b"\x00get k0\r\nget k0\r\n")
    add("uppercase_verbs_error", b"SET k 0 0 1\r\nx\r\nGET k\r\nGets k\r\nDelete k\r\nVERSION\r\n")
    add("unknown_commands", b"foo\r\nsets k\r\ngett k\r\nincrr k 1\r\nflush\r\nversions\r\n"
        b"quitt\r\nx\r\ng\r\nst\r\n", one_byte=True)
    add("empty_and_blank_lines", b"\r\n\n   \r\n \n\r\r\n\t\r\nget k\r\n", one_byte=True)
    add("bare_lf_line_endings", b"set k 0 0 1\nx\r\nget k\nincr k 1\ndelete k\nget k\n")
    add("bare_lf_data_terminator_is_bad_chunk", b"set k 0 0 1\nx\nget k\n")
    add("leading_trailing_multiple_spaces", b" get k\r\nset k 0 0 1 \r\nx\r\n  get   k   k  \r\n"
        b"set  j  0  0  1\r\ny\r\nget j\r\n")
    add("carriage_returns_inside_lines", b"get k\r\r\nset k\r 0 0 1\r\nx\r\nget k\r\r\nget k\rk\r\n")

    # --- bad data chunks
    add("bad_chunk_value_too_short", blk(b"set", b"k", b"abc", length=5) + b"get k\r\n")
    add("bad_chunk_value_too_long", blk(b"set", b"k", b"abcdef", length=3) + b"get k\r\n")
    add("bad_chunk_missing_terminator", blk(b"set", b"k", b"abc", term=b"") + b"get k\r\nget k\r\n")
    add("bad_chunk_keeps_old_value", blk(b"set", b"k", b"old") + blk(b"set", b"k", b"newer", length=3)
        + b"get k\r\n")
    add("extra_blank_line_after_data", blk(b"set", b"k", b"abc", term=b"\r\n\r\n") + b"get k\r\n")

    # --- keys
    add("key_250_ok", blk(b"set", K250, b"x") + b"get " + K250 + b"\r\nincr " + K250 + b" 1\r\n"
        b"touch " + K250 + b" 0\r\ndelete " + K250 + b"\r\n")
    add("key_251_set_then_data_parsed_as_command", blk(b"set", K251, b"x")
        + blk(b"set", K251, b"get k") + b"get k\r\n")
    add("key_251_other_commands", b"incr " + K251 + b" 1\r\ndecr " + K251 + b" 1\r\n"
        b"touch " + K251 + b" 0\r\ndelete " + K251 + b"\r\ndelete " + K251 + b" noreply\r\n")
    add("key_251_get_first_in_stream", b"get " + K251 + b"\r\nget k\r\n")
    add("key_251_inside_multiget_first", b"get a b " + K251 + b" c\r\nset a 0 0 1\r\n1\r\n"
        b"gets a\r\n")
    add("key_251_gat_first", b"gat 0 a " + K251 + b"\r\nget a\r\n")
    add("key_251_multiget_after_barrier", [blk(b"set", b"a", b"1") + blk(b"set", b"c", b"3"), BARRIER,
                                           b"get a " + K251 + b" c\r\nget a c\r\n", BARRIER,
                                           b"gets c a " + K251 + b"\r\n"])
    add("keys_with_control_chars", blk(b"set", b"k\x01\x7f", b"x") + blk(b"set", b"\xff\xfe", b"y")
        + b"get k\x01\x7f \xff\xfe\r\n")
    add("noreply_as_get_key", blk(b"set", b"noreply", b"x") + b"get noreply\r\nget k noreply\r\n")
    add("get_many_tokens_beyond_24", b"set k7 0 0 1\r\n7\r\nget "
        + b" ".join(b"k%d" % i for i in range(40)) + b"\r\n")

    # --- delete
    add("delete_hit_and_miss", blk(b"set", b"k", b"x") + b"delete k\r\ndelete k\r\nget k\r\n",
        one_byte=True)
    add("delete_legacy_zero", blk(b"set", b"k", b"x") + b"delete k 0\r\nget k\r\n")
    add("delete_nonzero_hold_error", blk(b"set", b"k", b"x") + b"delete k 5\r\nget k\r\n")
    add("delete_zero_noreply", blk(b"set", b"k", b"x") + b"delete k 0 noreply\r\nget k\r\n")
    add("delete_nonzero_noreply_silent", blk(b"set", b"k", b"x") + b"delete k 5 noreply\r\nget k\r\n")
    add("delete_token_counts", b"delete\r\ndelete k x y\r\ndelete k 0 noreply x\r\n"
        b"delete k noreply 0\r\ndelete k x\r\n")

    # --- incr / decr
    add("incr_decr_basic", blk(b"set", b"n", b"10") + b"incr n 5\r\ndecr n 3\r\nget n\r\n"
        b"incr missing 1\r\ndecr missing 1\r\n", one_byte=True)
    # (the shrinking incr/decr must come before any fetch of the key:
    # see difftool.padding_free_text)
    add("decr_shrink_pads_with_spaces", blk(b"set", b"n", b"100") + b"decr n 1\r\nget n\r\n"
        b"incr n 1\r\nget n\r\n" + blk(b"set", b"m", b"1000") + b"decr m 995\r\ndecr m 5\r\n"
        b"get m\r\n" + blk(b"set", b"w", b"10000000000000000000\x00") + b"incr w 8446744073709551616\r\n"
        b"get w\r\n")
    add("incr_grows_value", blk(b"set", b"n", b"99") + b"incr n 1\r\nget n\r\nincr n 900\r\nget n\r\n")
    # Stored numbers >= 2**63 are followed by a NUL byte: without it memcached's
    # check for a '-' sign reads past the value into stale memory (mc_number).
    add("incr_wraps_at_2_64", blk(b"set", b"n", b"18446744073709551615\x00") + b"incr n 1\r\nget n\r\n"
        + blk(b"set", b"m", b"18446744073709551610\x00") + b"incr m 18446744073709551615\r\ngets m\r\n"
        + blk(b"set", b"s", b"10") + b"incr s 18446744073709551615\r\nget s\r\n")
    add("decr_from_2_64_minus_1", blk(b"set", b"n", b"18446744073709551615\x00")
        + b"decr n 18446744073709551615\r\nget n\r\n" + blk(b"set", b"m", b"9223372036854775808\x00")
        + b"decr m 1\r\nget m\r\n")
    add("decr_clamps_at_zero", blk(b"set", b"n", b"5") + b"decr n 10\r\nget n\r\ndecr n 1\r\n")
    add("incr_non_numeric_values",
        blk(b"set", b"a", b"abc") + b"incr a 1\r\n" + blk(b"set", b"b", b"") + b"decr b 1\r\n"
        + blk(b"set", b"c", b"12abc") + b"incr c 1\r\n" + blk(b"set", b"d", b"-5") + b"incr d 1\r\n"
        + blk(b"set", b"e", b"0x10") + b"incr e 1\r\n")
    add("incr_odd_numeric_values",
        blk(b"set", b"a", b"+5") + b"incr a 1\r\n" + blk(b"set", b"b", b"-0") + b"incr b 1\r\n"
        + blk(b"set", b"c", b"1 2") + b"incr c 1\r\n" + blk(b"set", b"d", b" 7") + b"incr d 1\r\n"
        + blk(b"set", b"e", b"007") + b"incr e 1\r\n" + blk(b"set", b"f", b"5\r\n") + b"incr f 1\r\n"
        + b"get a b c d e f\r\n")
    add("incr_20_and_21_digits",
        blk(b"set", b"a", b"12345678901234567890\x00") + b"incr a 1\r\n"
        + blk(b"set", b"e", b"1234567890123456789") + b"incr e 1\r\ndecr e 1234567890123456790\r\n"
        + blk(b"set", b"b", b"18446744073709551616") + b"incr b 1\r\n"
        + blk(b"set", b"c", b"100000000000000000000") + b"incr c 1\r\n"
        + blk(b"set", b"d", b"00000000000000000000001") + b"incr d 1\r\nget a d e\r\n")
    add("incr_bad_deltas", blk(b"set", b"n", b"1") + b"incr n x\r\nincr n -1\r\n"
        b"incr n 18446744073709551616\r\nincr n 1x\r\nincr n +3\r\nincr n\r\nincr n 1 2 3\r\n"
        b"incr n 18446744073709551615\r\nget n\r\n")
    add("incr_noreply_and_bogus_token", blk(b"set", b"n", b"1") + b"incr n 1 noreply\r\n"
        b"decr n 5 junk\r\nget n\r\n")
    add("incr_on_appended_number", blk(b"set", b"n", b"1") + blk(b"append", b"n", b"0")
        + b"incr n 1\r\n" + blk(b"prepend", b"n", b"9") + b"incr n 1\r\nget n\r\n")

    # --- touch / gat / gats
    add("touch_hit_miss_and_errors", blk(b"set", b"k", b"x") + b"touch k 100\r\ntouch nope 100\r\n"
        b"touch k abc\r\ntouch k\r\ntouch\r\ntouch k 10 extra\r\ntouch k 10 a b\r\n"
        b"touch k 10 noreply\r\ntouch k 1.5\r\n")
    add("touch_negative_expires", blk(b"set", b"k", b"x") + b"touch k -1\r\nget k\r\n")
    add("gat_and_gats", blk(b"set", b"k", b"x", flags=b"3") + b"gat 100 k\r\ngats 100 k k\r\n"
        b"gat 0 nope k\r\n")
    add("gat_errors", b"gat\r\ngat 0\r\ngats 100\r\ngats\r\ngat abc k\r\ngat 1.5 k\r\ngat -1\r\n")
    add("gat_negative_returns_then_expires", blk(b"set", b"k", b"x") + b"gat -1 k\r\nget k\r\n")
    add("gets_after_negative_exptime_set", blk(b"set", b"k", b"x", exptime=b"-1") + b"gets k\r\n"
        + blk(b"add", b"k", b"y") + b"gets k\r\n")

    # --- flush_all / version / verbosity / misc
    add("flush_all_variants", blk(b"set", b"k", b"x") + b"flush_all\r\nget k\r\n"
        + blk(b"set", b"k", b"x") + b"flush_all 0\r\nget k\r\n" + blk(b"set", b"k", b"x")
        + b"flush_all noreply\r\nget k\r\n" + blk(b"set", b"k", b"x") + b"flush_all 0 noreply\r\n"
        b"get k\r\n" + blk(b"set", b"k", b"x") + b"flush_all -1\r\nget k\r\n")
    add("flush_all_errors", b"flush_all abc\r\nflush_all 1 2 3\r\nflush_all 0 0\r\n"
        b"flush_all x noreply\r\nflush_all 1.5\r\n")
    add("flush_all_future_delay", blk(b"set", b"k", b"x") + b"flush_all 1000\r\nget k\r\n"
        + blk(b"set", b"j", b"y") + b"get j\r\n")
    add("version_commands", b"version\r\nversion x y\r\nget k\r\nversion\r\n")
    add("verbosity_forms", b"verbosity\r\nverbosity 1\r\nverbosity 0\r\nverbosity x\r\n"
        b"verbosity 1 noreply\r\nverbosity 0 junk\r\nverbosity noreply\r\nverbosity 0 0 0\r\n"
        b"verbosity 0\r\n", one_byte=True)

    # --- large values
    add("too_large_value_swallowed", blk(b"set", b"k", b"x" * 1048577) + b"get k\r\n")
    add("too_large_set_unlinks_old", blk(b"set", b"k", b"old") + blk(b"set", b"k", b"x" * 1100000)
        + b"get k\r\n")
    add("too_large_add_replace_keep_old", blk(b"set", b"k", b"old") + blk(b"add", b"k", b"x" * 1100000)
        + blk(b"replace", b"k", b"x" * 1100000) + blk(b"append", b"k", b"x" * 1100000) + b"get k\r\n")
    add("too_large_noreply_silent", blk(b"set", b"k", b"old")
        + blk(b"set", b"k", b"x" * 1100000, extra=b" noreply") + b"get k\r\n")
    add("size_limit_exact_flags0", blk(b"set", b"k", b"x" * BIG_OK) + b"incr k 1\r\n"
        + blk(b"set", b"j", b"y" * (BIG_OK + 1)) + b"get j\r\n")
    add("size_limit_exact_flags1", blk(b"set", b"k", b"x" * BIG_OK_FLAGS, flags=b"1")
        + blk(b"set", b"j", b"y" * (BIG_OK_FLAGS + 1), flags=b"1") + b"get j\r\n")
    add("declared_length_int_max_minus_1_bad_format", b"set k 0 0 2147483646\r\nx\r\n")
    add("incomplete_value_at_eof", b"set k 0 0 10\r\nabc", mode="eof")
    add("incomplete_line_at_eof", b"get k\r\nget k", mode="eof")
    add("lone_cr_at_eof", b"get k\r", mode="eof")

    # --- long lines and multi-gets
    add("line_2048_bytes_then_newline_later", [b"g" * 2048, b"\r\n"])
    add("line_over_2048_without_newline_closes", b"y" * 2049, mode="close")
    add("overlong_line_after_answered_commands", [blk(b"set", b"k", b"x") + b"get k\r\n", BARRIER,
                                                   b"y" * 3000], mode="close")
    add("long_set_line_with_newline_in_one_read", b"set " + b"k" * 3000 + b" 0 0 1\r\nx\r\nget k\r\n")
    add("long_get_line_without_newline_then_newline",
        [b"get " + b"k " * 1100, b"\r\n"])
    add("long_gat_line_without_newline_closes", b"gat 0 " + b"k " * 1100, mode="close")
    add("long_gat_line_in_one_read", b"gat 0 " + b"k " * 1100 + b"\r\n")
    add("over_100_spaces_before_long_get_closes", b" " * 101 + b"get " + b"k " * 1100, mode="close")
    add("get_100_keys", blk(b"set", b"k3", b"three") + blk(b"set", b"k50", b"fifty")
        + b"get " + b" ".join(b"k%d" % i for i in range(100)) + b"\r\n")
    add("gets_1000_keys_with_duplicates", blk(b"set", b"k1", b"one") + blk(b"set", b"k2", b"two")
        + b"gets " + b" ".join(b"k%d" % (i % 7) for i in range(1000)) + b"\r\n")

    # --- quit / shutdown
    add("quit_at_end", blk(b"set", b"k", b"x") + b"get k\r\nquit\r\n", mode="close", one_byte=True)
    add("quit_with_arguments", b"quit now please\r\n", mode="close")
    add("quit_then_more_in_same_send", b"get k\r\nquit\r\nget k\r\n", mode="close", split=False)
    add("shutdown_not_enabled", b"shutdown\r\nshutdown graceful\r\n")
    return c


# ---------------------------------------------------------------------------
# Generated cases

KEYS = [b"k0", b"k1", b"k2", b"n", b"cnt"]
ODD_KEYS = [b"k\x01", b"\x7fk", b"k\x1b[0m", b"k\rx", b"\xff\xfe", b"k\x0b", b"k\x0c",
            b"k\x00z", b"K" * 250]
NUMBERS = [b"0", b"1", b"9", b"10", b"42", b"99", b"100", b"999", b"1000", b"4294967295",
           b"4294967296", b"4611686018427387904", b"9223372036854775807",
           b"9223372036854775808", b"18446744073709551614", b"18446744073709551615",
           b"18446744073709551616", b"99999999999999999999", b"100000000000000000000",
           b"12345678901234567890", b"007", b" 7", b"+5", b"-0", b"-5", b"1 2", b"0x10",
           b"12abc", b"", b"5\r\n", b"1.5"]
# numbers >= 2**63 followed by a NUL: the only way such values give memcached
# a deterministic incr/decr (see mc_number)
NUL_NUMBERS = [b"9223372036854775808\x00", b"12345678901234567890\x00",
               b"18446744073709551614\x00", b"18446744073709551615\x00"]
VALUES = [b"", b"x", b"hello", b"hello world", b"a\r\nb", b"\r\n", b"\n", b"\r", b"\x00",
          b"\x00\x01\xff", b"END\r\n", b"STORED\r\n", b"VALUE k0 0 1\r\nx\r\nEND\r\n",
          b"VERSION 1.6.18\r\n", b"ERROR", b"get k0", b"delete k1", b"  ", b"\t"]
DELTAS = [b"0", b"1", b"1", b"2", b"7", b"100", b"255", b"1000000", b"4294967296", b"+3"]
BIG_DELTAS = [b"18446744073709551615", b"9223372036854775808", b"18446744073709551614",
              b"4611686018427387904"]
BAD_DELTAS = [b"-1", b"abc", b"18446744073709551616", b"3x", b"1.5", b"0x1"]
EXPTIMES = [b"0"] * 10 + [b"100", b"3600", b"2592000", b"2000000000", b"-1", b"1000000000",
                           b"2592001", b"-100", b"4294967396"]
BAD_EXPTIMES = [b"abc", b"1.5", b"0x10", b"99999999999999999999", b"1-", b""]
FLAGS = [b"0"] * 8 + [b"1", b"42", b"65535", b"4294967295", b"4294967296", b"-0"]
BAD_FLAGS = [b"-1", b"abc", b"18446744073709551616", b"1.5", b"4x"]
BAD_LENGTHS = [b"-1", b"abc", b"2147483646", b"1e3", b"-0x1"]
CAS_UNIQUES = [b"0", b"18446744073709551615", b"9223372036854775808", b"12345678901234"]
JUNK_LINES = [b"\r\n", b"\n", b"   \r\n", b"\t\r\n", b"\r\r\n", b"x\r\n", b"foo bar\r\n",
              b"gett k0\r\n", b"sets k0\r\n", b"incrr k0 1\r\n", b"get\r\n", b"gets\r\n",
              b"gat\r\n", b"gat 0\r\n", b"gats 5\r\n", b"touch k0\r\n", b"incr k0\r\n",
              b"decr\r\n", b"delete\r\n", b"cas k0 0 0 1\r\n", b"get\tk0\r\n",
              b"get k0\x00 k1\r\n", b"\x00get k0\r\n", b"GET k0\r\n", b"Get k0\r\n",
              b"DELETE k0\r\n", b"\xff\xfe\r\n", b"append\r\n", b"replace k0\r\n",
              b"touch k0 10 a b\r\n", b"incr k0 1 2 3\r\n", b"ve\r\n", b"shutdown\r\n"]
TRAILER = b"get k0 k1 k2 n cnt\r\n"


TAINTED = "tainted"
WS = b" \t\n\v\f\r"


def mc_number(data):
    """What memcached 1.6.18's incr/decr makes of a stored value: an int, None
    (non-numeric: deterministic error) or TAINTED (the outcome depends on
    memory past the value: strtoull skipping an all-whitespace value runs
    into it, and for results >= 2**63 the check for a '-' sign is a strchr()
    that runs until a NUL byte)."""
    if not data:
        return None  # zero-length values are non-numeric
    i = 0
    while i < len(data) and data[i] in WS:
        i += 1
    if i == len(data):
        return TAINTED
    neg = data[i:i + 1] == b"-"
    if data[i:i + 1] in (b"+", b"-"):
        i += 1
    j = i
    while j < len(data) and data[j:j + 1].isdigit():
        j += 1
    if j == i:
        return None
    v = int(data[i:j])
    if v >= 2 ** 64:
        return None  # ERANGE
    if neg:
        v = -v % 2 ** 64
    if j < len(data) and data[j] not in WS and data[j] != 0:
        return None
    if v >= 2 ** 63:
        nul = data.find(b"\x00")
        if b"-" in (data if nul < 0 else data[:nul]):
            return None
        if nul < 0:
            return TAINTED
    return v


def mc_delta(state, verb, delta):
    """State of a number after incr/decr (see mc_number)."""
    if not isinstance(state, int):
        return state
    d = int(delta.lstrip(b"+"))
    v = (state + d) % 2 ** 64 if verb == b"incr" else max(0, state - d)
    return v if v < 2 ** 63 else TAINTED


class Gen:
    """Random commands.  Constraints that keep memcached deterministic:
    no flush_all with a positive delay (it revives items that an earlier
    flush_all only marked as flushed), an over-long key in a multi-get only at
    the start of a step (memcached drops the replies it has not sent yet), no
    append/prepend to a key after incr/decr on it in the same case (whether
    memcached pads a shrunk number with spaces is racy, see
    difftool.padding_free_text), no incr/decr on a key that may hold 19 digits or more in mixed pipelines and
    none on a TAINTED value in numeric runs (see mc_number)."""

    def __init__(self, rng):
        self.r = rng
        self.arith_keys = set()
        self.digits = {}  # key -> digits stored under it so far in this case

    def choice(self, seq):
        return self.r.choice(seq)

    def p(self, prob):
        return self.r.random() < prob

    def key(self, allow_long=False):
        x = self.r.random()
        if x < 0.86:
            return self.choice(KEYS)
        if x < 0.96 or not allow_long:
            return self.choice(ODD_KEYS)
        return b"L" * 251

    def value(self):
        x = self.r.random()
        if x < 0.35:
            v = self.choice(VALUES)
        elif x < 0.55:
            v = self.choice(NUMBERS)
        elif x < 0.85:
            n = self.r.choice([1, 2, 5, 10, 30, 64])
            v = bytes(self.r.randrange(32, 127) for _ in range(n))
        else:
            v = bytes(self.r.randrange(256) for _ in range(self.r.randrange(0, 65)))
        # No 'm', so that no meta command can appear when a value ends up
        # parsed as a command line.  No value made only of whitespace: incr on
        # it makes memcached's strtoull run past the item into stale memory.
        v = v.replace(b"m", b"w")
        if v and not v.strip(b" \t\n\v\f\r"):
            v = b"w" + v
        return v

    def eol(self):
        return b"\n" if self.p(0.08) else b"\r\n"

    def sep(self):
        x = self.r.random()
        if x < 0.94:
            return b" "
        return self.choice([b"  ", b"   "])

    def line(self, toks):
        s = self.sep()
        lead = b" " if self.p(0.03) else b""
        trail = b" " if self.p(0.05) else b""
        return lead + s.join(toks) + trail + self.eol()

    def storage(self):
        r = self.r
        verb = self.choice([b"set"] * 5 + [b"add", b"replace", b"append", b"prepend", b"cas"])
        k = self.key(allow_long=True)
        if verb in (b"append", b"prepend") and k in self.arith_keys:
            verb = b"set"
        v = self.value()
        self.digits[k] = self.digits.get(k, 0) + sum(c in b"0123456789" for c in v)
        toks = [verb, k, self.choice(FLAGS), self.choice(EXPTIMES), str(len(v)).encode()]
        if verb == b"cas":
            toks.append(self.choice(CAS_UNIQUES))
        if self.p(0.15):
            toks.append(b"noreply")
        term = b"\r\n"
        m = r.random()
        if m < 0.06:  # bad numeric token
            i = r.choice([2, 3, 4] + ([5] if verb == b"cas" else []))
            toks[i] = self.choice({2: BAD_FLAGS, 3: BAD_EXPTIMES, 4: BAD_LENGTHS,
                                   5: [b"-1", b"abc", b"18446744073709551616"]}[i]) or b"x"
        elif m < 0.09 and verb != b"cas":  # missing length token
            # (never for cas: "cas k F E C noreply" would read C bytes)
            del toks[4]
        elif m < 0.12:  # extra token
            toks.append(self.choice([b"junk", b"noreply", b"0", b"noreply junk"]))
        elif m < 0.19:  # declared length differs from the data (at most 3 over)
            d = r.choice([-3, -2, -1, 1, 2, 3])
            toks[4] = str(max(0, len(v) + d)).encode()
        elif m < 0.24:  # bad data terminator
            term = self.choice([b"\n", b"", b"\r", b"XX", b"\r\n\r\n", b"\n\r"])
        elif m < 0.25:  # tab between verb and key: unknown command
            toks[0:2] = [toks[0] + b"\t" + toks[1]]
        elif m < 0.26:  # tab after the flags number: accepted by strtoul
            toks[2] = toks[2] + b"\t"
        elif m < 0.27:
            toks[0] = toks[0].upper()
        return self.line(toks) + v + term

    def retrieval(self, first):
        r = self.r
        verb = self.choice([b"get"] * 4 + [b"gets"] * 2 + [b"gat", b"gats"])
        keys = [self.key(allow_long=first and self.p(0.3)) for _ in range(r.choice([1, 1, 2, 3, 5, 8]))]
        toks = [verb]
        if verb in (b"gat", b"gats"):
            toks.append(self.choice(BAD_EXPTIMES) or b"x" if self.p(0.1) else self.choice(EXPTIMES))
        return self.line(toks + keys)

    def arith(self):
        verb = self.choice([b"incr", b"decr"])
        k = self.choice([b"n", b"n", b"cnt", b"k0", b"k1"]) if self.p(0.9) else self.key(True)
        if self.digits.get(k, 0) >= 19:  # might hold a number >= 2**63
            safe = [x for x in KEYS if self.digits.get(x, 0) < 19]
            if not safe:
                return self.line([b"get", k])
            k = self.choice(safe)
        toks = [verb, k, self.choice(BAD_DELTAS) if self.p(0.1) else self.choice(DELTAS)]
        self.arith_keys.add(k)
        if self.p(0.15):
            toks.append(b"noreply")
        if self.p(0.04):
            toks.append(b"junk")
        if self.p(0.03):
            toks = toks[:2]
        return self.line(toks)

    def touch(self):
        toks = [b"touch", self.key(True), self.choice(BAD_EXPTIMES) or b"z" if self.p(0.1)
                else self.choice(EXPTIMES)]
        if self.p(0.15):
            toks.append(b"noreply")
        if self.p(0.04):
            toks = toks[:2]
        return self.line(toks)

    def delete(self):
        k = self.key(True)
        tail = self.choice([[], [], [], [b"0"], [b"noreply"], [b"0", b"noreply"], [b"5"],
                            [b"5", b"noreply"], [b"x", b"y"], [b"noreply", b"0"]])
        return self.line([b"delete", k] + tail)

    def misc(self):
        x = self.r.random()
        if x < 0.25:
            return self.line([b"flush_all"] + self.choice(
                [[], [b"0"], [b"noreply"], [b"0", b"noreply"], [b"abc"], [b"-1"]]))
        if x < 0.40:
            return self.line([b"verbosity"] + self.choice([[b"0"], [b"1"], [], [b"x"], [b"0", b"noreply"]]))
        return self.choice(JUNK_LINES)

    def command(self, first):
        x = self.r.random()
        if x < 0.38:
            return self.storage()
        if x < 0.62:
            cmd = self.retrieval(True)
            if b"L" * 251 in cmd and not first:
                # the trailer absorbs what a wrong-length data block may
                # over-read, so that the barrier's sentinel stays intact
                return [TRAILER, BARRIER, cmd]
            return cmd
        if x < 0.76:
            return self.arith()
        if x < 0.82:
            return self.touch()
        if x < 0.89:
            return self.delete()
        return self.misc()

    # case shapes

    def mixed(self, at_start=True):
        """A pipeline of 2-20 commands (list of chunks, possibly with barriers)."""
        self.arith_keys = set()
        self.digits = {}
        parts = [self.command(at_start and i == 0) for i in range(self.r.randint(2, 20))]
        return merge(parts + [TRAILER])

    def numeric(self):
        """set n, then incr/decr/get/touch on it, tracking its value (mc_number)."""
        def store(verb, v):
            return self.line([verb, b"n", b"0", b"0", b"%d" % len(v)]) + v + b"\r\n"

        data = self.choice(NUMBERS + NUL_NUMBERS
                           + [str(self.r.getrandbits(self.choice([8, 32, 62]))).encode()])
        out = [store(b"set", data)]
        state = mc_number(data)
        arith = False
        for _ in range(self.r.randint(2, 12)):
            x = self.r.random()
            if x < 0.55:
                if state is TAINTED:
                    data = self.choice([b"0", b"1", b"99", b"1000", b"4294967295"] + NUL_NUMBERS)
                    out.append(store(b"set", data))
                    state = mc_number(data)
                verb = self.choice([b"incr", b"decr"])
                d = self.choice(DELTAS + BIG_DELTAS + [str(self.r.getrandbits(64)).encode()])
                out.append(self.line([verb, b"n", d] + ([b"noreply"] if self.p(0.1) else [])))
                state = mc_delta(state, verb, d)
                arith = True
            elif x < 0.8:
                out.append(self.line([self.choice([b"get", b"gets"]), b"n"]))
            elif x < 0.9:
                v = self.choice([b"0", b"5", b"x", b" 1", b"99", b"-"])
                if arith:  # no append/prepend after incr/decr (see difftool.padding_free_text)
                    data = v
                    out.append(store(b"set", v))
                else:
                    verb = self.choice([b"append", b"prepend"])
                    data = data + v if verb == b"append" else v + data
                    out.append(store(verb, v))
                state = mc_number(data)
            else:
                out.append(self.line([b"touch", b"n", b"100"]))
        return [b"".join(out) + b"get n\r\n"]

    def multiget(self, nkeys, keylen):
        pool = [(b"k%d" % i).ljust(keylen, b"_") for i in range(30)]
        sets = b"".join(blk(b"set", pool[i], self.value()) for i in self.r.sample(range(30), 8))
        verb = self.choice([b"get", b"gets"])
        return [sets + verb + b" " + b" ".join(self.choice(pool) for _ in range(nkeys)) + b"\r\n"]


def generated_cases():
    g = Gen(random.Random(SEED))
    cases = []
    for i in range(360):
        cases.append(Case("gen%03d_mixed" % len(cases), g.mixed(), strict=False))
    for i in range(60):
        cases.append(Case("gen%03d_numeric" % len(cases), g.numeric(), strict=False))
    for nkeys, keylen in [(100, 2), (100, 10), (100, 250), (1000, 3), (1000, 3), (300, 40)]:
        cases.append(Case("gen%03d_multiget_%dx%d" % (len(cases), nkeys, keylen),
                          g.multiget(nkeys, keylen)))
    for i in range(6):  # over-long key in a multi-get: only as the first command
        verb = g.choice([b"get", b"gets", b"gat 0", b"gats 100"])
        keys = [g.choice(KEYS) for _ in range(g.r.randint(0, 3))]
        keys.insert(g.r.randint(0, len(keys)), b"L" * g.choice([251, 300, 1000]))
        cases.append(Case("gen%03d_longkey_multiget" % len(cases),
                          merge([verb + b" " + b" ".join(keys) + b"\r\n", g.mixed(False)]),
                          strict=False))
    for i, size in enumerate([1048577, 1500000, 2 * 1048576]):  # too large: few, slow
        cmd = g.choice([b"set", b"add", b"replace", b"append", b"prepend"])
        cases.append(Case("gen%03d_too_large" % len(cases),
                          merge([blk(b"set", b"k0", b"old") + blk(cmd, b"k0", bytes([65 + i]) * size),
                                 g.mixed(False)]), strict=False))
    for c in cases:
        assert not any(c.versions), c.name
    return cases


def write_dump(cases):
    """RMC_DIFF_DUMP=path: the whole corpus, readable, in that file."""
    path = os.environ.get("RMC_DIFF_DUMP")
    if not path:
        return
    with open(path, "w") as f:
        f.write("# rmemcached differential corpus, seed %d, %d cases\n" % (SEED, len(cases)))
        for c in cases:
            f.write("\n### %s mode=%s split=%s one_byte=%s len=%d\n"
                    % (c.name, c.mode, c.split, c.one_byte, len(c.stream)))
            for ch in c.chunks:
                f.write("--- barrier: wait for all replies ---\n" if ch is BARRIER
                        else short_repr(ch, 4000) + "\n")


all_cases = corpus(handwritten_cases, generated_cases, write_dump)


# ---------------------------------------------------------------------------
# Interactive CAS dialogs


def dlg_cas_success_then_stale(d):
    d.send(blk(b"set", b"k", b"a", flags=b"3"))
    c = d.cas(d.send(b"gets k\r\n"), b"k")
    d.send(blk(b"cas", b"k", b"b", flags=b"4", extra=b" " + c))
    d.send(blk(b"cas", b"k", b"c", extra=b" " + c))
    c2 = d.cas(d.send(b"gets k\r\n"), b"k")
    d.send(blk(b"cas", b"k", b"d", extra=b" " + c2) + b"gets k\r\n")


def dlg_cas_noreply(d):
    d.send(blk(b"set", b"k", b"a"))
    c = d.cas(d.send(b"gets k\r\n"), b"k")
    d.send(blk(b"cas", b"k", b"b", extra=b" " + c + b" noreply") + b"gets k\r\n")
    d.send(blk(b"cas", b"k", b"c", extra=b" " + c + b" noreply") + b"get k\r\n")


def dlg_cas_bogus_token_is_not_noreply(d):
    d.send(blk(b"set", b"k", b"a"))
    c = d.cas(d.send(b"gets k\r\n"), b"k")
    d.send(blk(b"cas", b"k", b"b", extra=b" " + c + b" junk") + b"gets k\r\n")


def dlg_cas_after_touch_and_gat(d):
    d.send(blk(b"set", b"k", b"a"))
    c = d.cas(d.send(b"gets k\r\n"), b"k")
    d.send(b"touch k 1000\r\ngat 2000 k\r\ngats 3000 k\r\n")
    d.send(blk(b"cas", b"k", b"b", extra=b" " + c) + b"gets k\r\n")


def dlg_cas_after_incr(d):
    d.send(blk(b"set", b"n", b"10"))
    c = d.cas(d.send(b"gets n\r\n"), b"n")
    d.send(b"incr n 1\r\ngets n\r\n")
    d.send(blk(b"cas", b"n", b"5", extra=b" " + c) + b"gets n\r\n")
    c2 = d.cas(d.send(b"gets n\r\n"), b"n")
    d.send(b"decr n 1\r\n" + blk(b"cas", b"n", b"7", extra=b" " + c2) + b"gets n\r\n")


def dlg_cas_after_append_prepend(d):
    d.send(blk(b"set", b"k", b"a"))
    c = d.cas(d.send(b"gets k\r\n"), b"k")
    d.send(blk(b"append", b"k", b"b") + blk(b"cas", b"k", b"x", extra=b" " + c) + b"gets k\r\n")
    c2 = d.cas(d.send(b"gets k\r\n"), b"k")
    d.send(blk(b"prepend", b"k", b"z") + blk(b"cas", b"k", b"x", extra=b" " + c2) + b"gets k\r\n")


def dlg_cas_after_delete_and_flush(d):
    d.send(blk(b"set", b"k", b"a") + blk(b"set", b"j", b"b"))
    ck = d.cas(d.send(b"gets k\r\n"), b"k")
    cj = d.cas(d.send(b"gets j\r\n"), b"j")
    d.send(b"delete k\r\n" + blk(b"cas", b"k", b"x", extra=b" " + ck))
    d.send(b"flush_all\r\n" + blk(b"cas", b"j", b"x", extra=b" " + cj) + b"gets k j\r\n")


def dlg_cas_on_expired_item(d):
    d.send(blk(b"set", b"k", b"a"))
    c = d.cas(d.send(b"gets k\r\n"), b"k")
    d.send(b"touch k -1\r\n" + blk(b"cas", b"k", b"b", extra=b" " + c) + b"gets k\r\n")


def dlg_cas_bad_chunk_keeps_item(d):
    d.send(blk(b"set", b"k", b"a"))
    c = d.cas(d.send(b"gets k\r\n"), b"k")
    d.send(blk(b"cas", b"k", b"bcd", length=1, extra=b" " + c) + b"gets k\r\n")
    d.send(blk(b"cas", b"k", b"e", extra=b" " + c) + b"gets k\r\n")


def dlg_cas_too_large(d):
    d.send(blk(b"set", b"k", b"a"))
    c = d.cas(d.send(b"gets k\r\n"), b"k")
    d.send(blk(b"cas", b"k", b"x" * 1100000, extra=b" " + c) + b"gets k\r\n")
    d.send(blk(b"cas", b"k", b"y", extra=b" " + c) + b"gets k\r\n")


def dlg_cas_many_keys(d):
    d.send(b"".join(blk(b"set", b"k%d" % i, b"%d" % i) for i in range(5)))
    r = d.send(b"gets k0 k1 k2 k3 k4 k0\r\n")
    cs = [d.cas(r, b"k%d" % i) for i in range(5)]
    d.send(b"".join(blk(b"cas", b"k%d" % i, b"v", extra=b" " + cs[(i + i % 2) % 5]) for i in range(5))
           + b"gets k0 k1 k2 k3 k4\r\n")


def dlg_cas_gats_value(d):
    d.send(blk(b"set", b"k", b"a"))
    c = d.cas(d.send(b"gats 100 k\r\n"), b"k")
    d.send(blk(b"cas", b"k", b"b", extra=b" " + c) + b"gats 0 k\r\n")


def dlg_cas_replace_add_and_set_change_cas(d):
    d.send(blk(b"set", b"k", b"a"))
    c1 = d.cas(d.send(b"gets k\r\n"), b"k")
    d.send(blk(b"replace", b"k", b"b") + blk(b"add", b"k", b"c") + b"gets k\r\n")
    d.send(blk(b"cas", b"k", b"d", extra=b" " + c1) + blk(b"set", b"k", b"e") + b"gets k\r\n")


def dlg_longkey_multiget_after_hits(d):
    d.send(blk(b"set", b"a", b"1") + blk(b"set", b"c", b"3"))
    d.send(b"get a " + K251 + b" c\r\n")
    d.send(b"gets a c " + K251 + b"\r\nget a\r\n")


DIALOGS = [f for name, f in sorted(globals().items()) if name.startswith("dlg_")]


# ---------------------------------------------------------------------------
# Tests


@pytest.fixture(scope="module", autouse=True)
def corpus_dump():
    """Writes the corpus to $RMC_DIFF_DUMP whichever tests are selected."""
    if os.environ.get("RMC_DIFF_DUMP"):
        all_cases()


differ = differ_fixture()


def test_handwritten_whole(differ):
    run_whole(differ("hand-written, whole"), all_cases()[0])


def test_generated_whole(differ):
    run_whole(differ("generated, whole"), all_cases()[1])


def test_split_random(differ):
    run_split(differ("random split"), *all_cases())


def test_one_byte_per_send(differ):
    run_one_byte(differ("one byte per send"), *all_cases(), SEED + 1, 20)


def test_interactive_cas(differ):
    run_dialogs(differ("interactive"), DIALOGS, strict=False)

"""Differential test of the meta commands (mg ms md ma mn me): the same bytes
go to memcached 1.6.18 and to rmemcached and the replies must be identical
after normalisation (CAS renamed by first appearance; t/l flags and me's
exp=/la= rounded to 10 s, see difftool.py).  Engine: difftool.py; modes
(sentinel / eof / close), barriers and split sends as described in
test_differential.py.

memcached 1.6.18 behaviours found while writing this (the spec to follow):

 * Return flags come in request order (`mg k t s f k v c` -> `VA 5 t100 s5
   f7 kk c2`); `b` is printed only right after `k<key>` (`k<b64> b`); on a
   miss (EN/NF) only k, b and O are echoed.  mg's W/X/Z come last:
   fresh win `... X W`, later fetches `... Z X`; vivified `W` then `Z`.
 * t reports the TTL at its position in the flags: `mg k t T3600` shows the
   old TTL, `mg k T3600 t` the new one (same for ma).  T with an absolute
   time in the past (T99999999999 wraps to 2008) expires the item at once.
 * mg: unknown flag -> `CLIENT_ERROR invalid flag`; repeated flag ->
   `CLIENT_ERROR duplicate flag` (checked before the lookup, miss or hit).
   mg/ms silently accept (and ignore) the other commands' flags I L P and
   C D F J M with a token.  A flag is its first byte: `vv`, `kk`, `q1`, `s9`
   are v, k, q, s.  `E` is not accepted by 1.6.18 (invalid flag).
 * Token-taking flags without a (valid) number, mg/ms: C N R T ->
   `CLIENT_ERROR bad token in command line format`, D -> `CLIENT_ERROR
   invalid numeric delta value`, J -> `... invalid numeric initial value`,
   F -> `CLIENT_ERROR bad command line format`, M -> `CLIENT_ERROR incorrect
   length for M token`.  md/ma report every bad flag or token (and
   duplicates) as `CLIENT_ERROR invalid or duplicate flag`.
 * Too many tokens (20 or more words incl. command, key, [datalen]): mg ->
   `CLIENT_ERROR options flags are too long`; ms/md/ma -> `CLIENT_ERROR
   options flags too long` (no "are"); ms data is then NOT swallowed (ERROR).
 * O longer than 32 bytes -> `CLIENT_ERROR opaque token too long` (even with q).
 * Keys: > 250 bytes -> `CLIENT_ERROR bad command line format` (ms: data
   line then parsed as a command -> ERROR).  `mg`, `ms`, `md`, `ma` alone ->
   `ERROR`; `me` alone and `ms k` (no length) -> bad command line format.
 * b (base64 key): undecodable -> `CLIENT_ERROR error decoding key` (ms:
   data swallowed; md/ma: `invalid or duplicate flag`; me: bad command line
   format).  The decoder skips bytes outside the alphabet (`Y@Q==` is `a`),
   fails when the count of alphabet bytes is 0 or not a multiple of 4, and
   stops at the first `=` pad (`YQ==YQ==` is `a`).  The 250 limit applies
   to the encoded token (>= 188 decoded bytes: bad command line format).
   The k flag echoes, on a hit, the ITEM's key: base64 + ` b` if the item
   was stored through b (ms, ma N), raw otherwise (an mg N vivified item is
   not marked binary); on a miss, base64 of the decoded key + ` b`.  me
   likewise prints the key base64-encoded only for items stored with b.
 * q: mg hides EN only (HD and VA are shown); ms hides HD (not NS/EX/NF);
   md hides HD but NOT NF; ma hides HD *and* VA but not NF/EX; errors are
   always shown.
 * ms data block: swallowed after flag errors (invalid/duplicate flag, bad
   token, invalid mode, base64 decode error); NOT swallowed (parsed as a
   command line, usually ERROR) after a bad/missing length, a key > 250 or
   too many tokens.
 * ms: modes are uppercase only (E A P R S); lowercase or other ->
   `CLIENT_ERROR invalid mode for ms M token` (data swallowed).  `MA N30`
   on a miss is NS (no vivify on append in 1.6.18).  C0 on an existing item
   -> EX; C on a miss -> NF (NS with MA).  Failed ms with c returns `c0`
   (`EX c0`).  ms ignores v s f t h l u (only c k O b q are returned/used).
   `I` with C older than the item's CAS stores and marks the item stale.
   Bad length token -> bad command line format, data not swallowed; length
   4294967296 wraps to 0 (-> bad data chunk); length > item max ->
   `SERVER_ERROR object too large for cache`, data swallowed, old value
   unlinked; `ms k 3 q` + 4 bytes -> `CLIENT_ERROR bad data chunk` (q does
   not hide it), the bytes after the consumed n+2 are parsed as commands.
   F4294967296 is accepted and stored as flags 0.
 * md: I marks stale (keeps value, next mg gets X W), I with T sets the TTL,
   T without I just deletes; md accepts (ignores) c f h l s t u v.
 * ma: `cannot increment or decrement non-numeric value`; 2**64-1 + 1 -> 0;
   decrement clamps at 0; D/J/N need digits only (D-1, Dx, 2**64 -> invalid
   or duplicate flag); modes I + D - (uppercase); others `CLIENT_ERROR invalid
   mode for ma M token`; `MII` -> invalid or duplicate flag.  N vivifies with
   J (default 0) and returns it (no W flag).  t returns -1 for no TTL.
 * me: `ME <key> exp=<E> la=<s> cas=<c> fetch=<yes|no> cls=<id> size=<n>`;
   exp is printed as (now - exptime), i.e. NEGATIVE for a future expiry
   (T100 -> exp=-100), -1 when none.  Extra tokens after the key are
   ignored (except a literal `b`).  Miss -> EN.
 * `mn` ignores any arguments.  MG / mG / mgx / mnx / mea -> ERROR.
"""
import base64
import random

from difftool import (SEED, Case, blk, corpus, differ_fixture, merge, run_dialogs, run_one_byte,
                      run_split, run_whole)
from test_differential import VALUES

K250 = b"a" * 249 + b"Z"
K251 = b"b" * 250 + b"Y"
MN = b"mn\r\n"


def ms(key, data, flags=b"", length=None, term=b"\r\n"):
    n = str(len(data) if length is None else length).encode()
    return b"ms " + key + b" " + n + (b" " + flags if flags else b"") + b"\r\n" + data + term


def b64(x):
    return base64.b64encode(x)


def handwritten_cases():
    c = []

    def add(name, chunks, **kw):
        c.append(Case(name, chunks, **kw))

    # --- mg: every flag, alone and together
    add("mg_miss_forms", b"mg nope\r\nmg nope v\r\nmg nope s v f t c k O1 h l\r\nmg nope q\r\n"
        b"mg nope q v k\r\nmg nope k O9\r\nmg nope O9 k\r\nmn\r\n", one_byte=True)
    add("mg_hit_each_flag", ms(b"k", b"hello", b"F7 T100") + b"mg k\r\nmg k v\r\nmg k s\r\n"
        b"mg k f\r\nmg k t\r\nmg k c\r\nmg k k\r\nmg k h\r\nmg k l\r\nmg k u\r\nmg k O123\r\n"
        b"mg k O\r\nmg k q\r\nmg k q v\r\nmn\r\n", one_byte=True)
    add("mg_flag_order_follows_request", ms(b"k", b"hello", b"F7 T100")
        + b"mg k v s f t c k h l O1\r\nmg k O1 l h k c t f s v\r\nmg k k v O2 c\r\n"
        b"mg k t s f k v c h l O123 q\r\nmg k c v\r\n")
    add("mg_hit_before_flag", ms(b"k", b"x") + b"mg k h\r\nmg k h\r\nmg k h v\r\n"
        + ms(b"k", b"y") + b"mg k h l\r\n")
    add("mg_flags_take_first_byte_only", ms(b"k", b"x", b"F3") + b"mg k vv\r\nmg k v1\r\n"
        b"mg k kk\r\nmg k ss\r\nmg k q1\r\nmg k ff\r\nmg k v\t\r\nmg k hx lx cx\r\n")
    add("mg_T_touches", ms(b"k", b"x", b"T100") + b"mg k T30 t\r\nmg k t\r\nmg k T0 t\r\n"
        b"mg k t v\r\nmg k T3600 t v c\r\nmg k T-1 v\r\nmg k v\r\n")
    add("mg_N_vivify_win_then_z", b"mg k N30 s v t c\r\nmg k N30 s v t c\r\nmg k v c\r\n"
        + ms(b"k", b"abc", b"T100") + b"mg k v c t\r\n", one_byte=True)
    add("mg_N_vivify_quiet", b"mg k q N30\r\nmg k q v\r\nmg j N30 q k O5\r\nmn\r\n")
    add("mg_N_on_hit_no_win", ms(b"k", b"x") + b"mg k N30 v t\r\nmg k N30 v\r\n")
    add("mg_N_vivified_item_md_and_ma", b"mg k N30\r\nma k\r\nmd k\r\nmg k N30 v\r\n")
    add("mg_R_recache_with_ttl", ms(b"k", b"abc", b"T30") + b"mg k R50 v t\r\nmg k R50 v t\r\n"
        b"mg k R15 v t\r\n")
    add("mg_R_no_ttl_then_touch", ms(b"k", b"abc") + b"mg k R50 v t\r\nmg k T100 t\r\n"
        b"mg k R500 v\r\nmg k R500 v\r\nmg k R15 v\r\n")
    add("md_I_stale_flow", ms(b"k", b"abc", b"T100") + b"md k I T30\r\nmg k v c t\r\n"
        b"mg k v c t\r\n" + ms(b"k", b"new", b"I") + b"mg k v c\r\n" + ms(b"k", b"new")
        + b"mg k v c\r\n")
    add("md_I_keeps_value_and_ttl", ms(b"k", b"x", b"T100") + b"md k I\r\nmg k v c t\r\n"
        b"md k I T50\r\nmg k t v\r\nmd k\r\nmg k v\r\n" + ms(b"k", b"x")
        + b"md k I T0\r\nmg k t v\r\nmd k T30\r\nmg k v\r\n")
    add("md_I_quiet", ms(b"k", b"x") + b"md k I\r\nmg k c\r\nmd k I q\r\nmg k\r\nmn\r\n")
    add("stale_item_ma_and_ms_modes", ms(b"n", b"5") + b"md n I\r\nma n v\r\nmg n v\r\n"
        + ms(b"n", b"7", b"MA") + b"mg n v\r\n")

    # --- mg: errors
    add("mg_E_flag_not_in_1_6_18", ms(b"k", b"x") + b"mg k E5\r\nmg k E\r\n"
        + ms(b"k", b"y", b"E5") + b"ma k E5\r\nmd k E5\r\nmg k v\r\n")
    add("mg_invalid_flags", ms(b"k", b"x") + b"mg k x\r\nmg k z\r\nmg k !\r\nmg k V\r\n"
        b"mg k 1\r\nmg k a\r\nmg k S\r\nmg k W\r\nmg k X\r\nmg k Z\r\nmg k -\r\nmg nope x\r\n"
        b"mg nope q x\r\n")
    add("mg_duplicate_flags", ms(b"k", b"x") + b"mg k v v\r\nmg nope v v v\r\nmg k t t\r\n"
        b"mg k O1 O2\r\nmg k k k\r\nmg nope q q\r\nmg k v f v\r\nmg k N30 N30\r\n")
    add("mg_accepts_other_commands_flags", ms(b"k", b"x") + b"mg k C1\r\nmg k D1\r\n"
        b"mg k F1\r\nmg k I\r\nmg k J1\r\nmg k L\r\nmg k M1\r\nmg k P\r\nmg k P1\r\n"
        b"mg k I L P v\r\nmg nope I\r\n")
    add("mg_token_flags_without_token", ms(b"k", b"x") + b"mg k C\r\nmg k D\r\nmg k F\r\n"
        b"mg k J\r\nmg k M\r\nmg k N\r\nmg k R\r\nmg k T\r\nmg nope T\r\nmg nope q N\r\n")
    add("mg_numeric_tokens_with_junk", ms(b"k", b"x") + b"mg k T1x\r\nmg k N30x\r\n"
        b"mg k R5x\r\nmg k T-5x\r\nmg k T-\r\nmg k T+10 t\r\nmg k R-1 v\r\nmg k T 10\r\n"
        b"mg k N30.5\r\nmg k T99999999999\r\nmg k v\r\n")
    # t reports the TTL at its position: before T the old one, after T the new one
    add("mg_ma_t_before_T_reports_old_ttl", ms(b"k", b"x", b"T100") + b"mg k t T3600\r\n"
        b"mg k t\r\nmg k T30 t\r\nmg k t\r\n" + ms(b"n", b"1") + b"ma n t T3600\r\n"
        b"ma n T30 t\r\nmg n t\r\n" + ms(b"x", b"abc", b"T100") + b"ma x t T3600\r\nmg x t\r\n")
    add("mg_17_flags_ok_18_too_long", ms(b"k", b"x")
        + b"mg k v s f t c k h l u O1 I L P C1 D1 F1 J1\r\n"
        b"mg k v s f t c k h l u O1 I L P C1 D1 F1 J1 M1\r\n"
        b"mg nope q u u u u u u u u u u u u u u u u u u u u\r\nmn\r\n")
    add("mg_opaque_lengths", ms(b"k", b"x") + b"mg k O" + b"x" * 31 + b"\r\nmg k O" + b"x" * 32
        + b"\r\nmg k O" + b"x" * 33 + b"\r\nmg nope O" + b"x" * 33 + b" q\r\nmg nope O"
        + b"y" * 32 + b" k\r\nmn\r\n")
    add("mg_keys", ms(K250, b"x") + b"mg " + K250 + b" k s v\r\nmg " + K251 + b" v\r\n"
        b"mg " + K251 + b" q\r\nmg\r\nmg \r\nmg  \r\nmn\r\n")
    add("mg_whitespace_forms", ms(b"k", b"x") + b"mg  k  v \r\nmg\tk v\r\nmg k\tv\r\n"
        b"mg k v\r\r\nmg k v\nmg k    s\r\n")
    add("meta_verbs_case_and_prefixes", ms(b"k", b"x") + b"MG k v\r\nmG k\r\nmgx k\r\nmnx\r\n"
        b"mn x y z\r\nmea k\r\nMS k 1\r\nx\r\nmsx k 1\r\nmdd k\r\nm\r\nmx k\r\n")
    add("mg_on_classic_items", blk(b"set", b"k", b"hello", flags=b"42", exptime=b"100")
        + b"mg k v f s t c\r\ngets k\r\nmg k c\r\n" + blk(b"set", b"z", b"", flags=b"4294967295")
        + b"mg z v f s\r\n")

    # --- base64 keys
    bk = b64(b"\x00\x01bin\xff")
    add("b64_binary_key_roundtrip", ms(bk, b"x", b"b") + b"mg " + bk + b" b k v c\r\nmg " + bk
        + b" k v\r\nme " + bk + b" b\r\nmd " + bk + b" b k\r\nmg " + bk + b" b k v\r\nme " + bk
        + b" b\r\nmn\r\n")
    add("b64_same_item_as_plain_key", ms(b"YQ==", b"z", b"b") + b"mg a v\r\nmg YQ== v\r\n"
        b"mg YWI= b k v\r\nme a\r\nme YQ== b\r\nme YQ==\r\nme a x y z\r\n"
        + ms(b"a", b"p") + b"me a\r\nmg YQ== b k v\r\n")
    add("b64_invalid", ms(b"a", b"z") + b"mg @@@@ b v\r\nmg abc b v\r\nmg YQ b v\r\n"
        b"mg YQ= b v\r\nmg YQ== b v k\r\nmg Y Q b\r\nmg ==== b\r\nmg YQ==YQ== b k v\r\n"
        b"mg YQ==@@ b k\r\nmg k b q\r\nmn\r\n")
    # the decoder skips bytes outside the alphabet; k echoes the item's key
    # (base64 + " b" only for items stored with b), on a miss the re-encoded key
    add("b64_decoder_skips_junk_and_k_echo", ms(b"a", b"z") + b"mg Y@Q== b k v\r\n"
        b"mg @@YQ== b k v\r\nmg Y!Q!=!= b v\r\nmg YQ==@ b v\r\nmg @YWJj b k\r\nmg ==YQ b k\r\n"
        b"mg Y=Q= b k\r\nmg YQ=a b k\r\nmg Y\x01Q== b v\r\nmd @ab b\r\nmd @abc b\r\n"
        b"md @abcd b\r\n" + ms(b"Yg==", b"y", b"b") + b"mg Yg== b k v\r\nmg b k v\r\n"
        b"mg @Y@g@=@= b k\r\nmn\r\n")
    add("b64_invalid_ms_md_ma_me", ms(b"k", b"x", b"b") + ms(b"k", b"x", b"b q")
        + b"md k b\r\nmd nope b\r\nma k b\r\nma nope b\r\nme k b\r\nme @@@@ b\r\nmg k v\r\nmn\r\n")
    add("b64_length_limits", ms(b64(b"\xfe" * 186), b"x", b"b") + b"mg " + b64(b"\xfe" * 186)
        + b" b k s\r\n" + ms(b64(b"\xfe" * 187), b"x", b"b") + b"mg " + b64(b"\xfe" * 188)
        + b" b v\r\nme " + b64(b"\xfe" * 188) + b" b\r\nmn\r\n")
    add("b64_ma_vivify", b"ma bm9wZQ== b k O9\r\nma bm9wZQ== b N0 J7 v k\r\nmg nope v\r\n"
        b"ma bm9wZQ== b v k c\r\nmn\r\n")
    add("b_flag_only_after_k", ms(b"YQ==", b"z", b"b O1 k c") + ms(b"YQ==", b"z", b"b O1")
        + b"mg YQ== b O2 v\r\nmg YQ== O3 b k\r\nmd YQ== b O4\r\n")

    # --- ms
    add("ms_basic_and_returned_flags", ms(b"k", b"hello") + b"mg k v\r\n"
        + ms(b"k", b"x", b"k O7 c") + ms(b"k", b"y", b"c f s t v h l u") + ms(b"k", b"z", b"q k")
        + ms(b"k", b"w", b"O1 q") + b"mg k v f t\r\nmn\r\n", one_byte=True)
    add("ms_F_and_T", ms(b"k", b"x", b"F7 T100") + b"mg k f t v\r\n" + ms(b"k", b"x", b"F0 T0")
        + b"mg k f t\r\n" + ms(b"k", b"x", b"F4294967295") + b"mg k f\r\n"
        + ms(b"k", b"x", b"F4294967296") + b"mg k f\r\n" + ms(b"k", b"x", b"F01") + b"mg k f\r\n"
        + ms(b"k", b"x", b"F+1") + b"mg k f\r\n" + ms(b"k", b"x", b"T-1") + b"mg k v\r\n"
        + ms(b"k", b"x", b"T+10") + b"mg k t\r\n")
    add("ms_modes", ms(b"k", b"a", b"MS") + ms(b"k", b"b", b"ME") + ms(b"j", b"b", b"ME")
        + ms(b"k", b"c", b"MA") + ms(b"x", b"c", b"MA") + ms(b"k", b"d", b"MP")
        + ms(b"x", b"d", b"MP") + ms(b"k", b"e", b"MR") + ms(b"x", b"e", b"MR")
        + b"mg k v\r\nmg j v\r\nmg x v\r\n", one_byte=True)
    add("ms_modes_invalid", ms(b"k", b"a") + ms(b"k", b"f", b"Ms") + ms(b"k", b"g", b"Me")
        + ms(b"k", b"h", b"Ma") + ms(b"k", b"i", b"Mp") + ms(b"k", b"j", b"Mr")
        + ms(b"k", b"z", b"MX") + ms(b"k", b"z", b"MSS") + ms(b"k", b"z", b"M")
        + ms(b"k", b"z", b"MI") + ms(b"k", b"z", b"M+") + b"mg k v\r\nmn\r\n")
    add("ms_append_modes_keep_flags_ttl", ms(b"k", b"mid", b"F5 T100") + ms(b"k", b"end", b"MA F9")
        + ms(b"k", b"sta", b"MP T0") + b"mg k v f t\r\n")
    add("ms_append_miss_with_N_no_vivify", ms(b"k", b"x", b"MA N30") + b"mg k v\r\n"
        + ms(b"j", b"y", b"MP N30 T40") + b"mg j v t\r\n")
    add("ms_C_compare", ms(b"k", b"x", b"I") + ms(b"k", b"abc", b"C0") + ms(b"k", b"abc", b"F5 T0")
        + ms(b"k", b"abc", b"C99999") + ms(b"nope", b"abc", b"C5") + ms(b"nope", b"abc", b"C5 MA")
        + ms(b"k", b"x", b"MP C1") + ms(b"k", b"x", b"C18446744073709551615 c")
        + ms(b"nope", b"x", b"C1 c q") + b"mg k v c\r\nmn\r\n")
    add("ms_S_flag_invalid", ms(b"k", b"x", b"S1") + ms(b"k", b"x", b"S") + b"mg k v\r\nmn\r\n")
    add("ms_bad_length_tokens", b"ms k\r\nms\r\nms k abc\r\nx\r\nms k 1x\r\nx\r\nms k -1\r\nx\r\n"
        b"ms k 01\r\nx\r\nms k +1\r\nx\r\nms k 1.0\r\nx\r\nms k 0\r\n\r\nmg k v s\r\nmn\r\n")
    add("ms_bad_flag_tokens_swallow_data", b"ms k 1 T1x\r\nx\r\nms k 1 Fabc\r\nx\r\n"
        b"ms k 1 F-1\r\nx\r\nms k 1 C\r\nx\r\nms k 1 T\r\nx\r\nms k 1 N\r\nx\r\nms k 1 D\r\nx\r\n"
        b"ms k 1 J\r\nx\r\nms k 1 M\r\nx\r\nms k 1 z\r\nx\r\nms k 1 v v\r\nx\r\nmg k v\r\nmn\r\n")
    add("ms_other_commands_flags_accepted", ms(b"k", b"x", b"D1 F1 I J1 L N1 P R1 T0")
        + ms(b"k", b"y", b"h l s t u v f") + b"mg k v f\r\n")
    add("ms_length_wraps_2_32", b"ms k 4294967296\r\nx\r\nmg k v\r\nmn\r\n")
    add("ms_length_huge", b"ms k 2147483647\r\nx\r\nms k 99999999999999999999\r\nx\r\n"
        b"ms k 18446744073709551615\r\nx\r\nmn\r\n")
    add("ms_bad_chunk_short_long_missing", ms(b"k", b"abc", length=2) + b"mg k v\r\n"
        + ms(b"k", b"ab") + ms(b"k", b"ab\r\n", length=5) + b"mg k v\r\n"
        + ms(b"k", b"abc", term=b"") + b"mg k v\r\nmn\r\n")
    add("ms_bad_chunk_quiet_still_reported", ms(b"k", b"abcd", b"q", length=3) + MN
        + ms(b"k", b"old") + ms(b"k", b"abcde", b"q", length=3) + b"mg k v\r\nmn\r\n")
    add("ms_bad_chunk_bare_lf", b"ms k 1\r\nx\nmg k v\r\nms k 1\nx\r\nmg k v\r\nmn\r\n")
    add("ms_too_large", ms(b"k", b"old") + ms(b"k", b"x" * 1048577) + b"mg k v\r\n"
        + ms(b"k", b"old") + ms(b"k", b"x" * 2000000, b"q") + b"mg k v\r\nmn\r\n")
    add("ms_size_limit_exact", ms(b"k", b"x" * 1048516) + b"mg k s\r\n"
        + ms(b"j", b"y" * 1048517) + b"mg j s\r\n" + ms(b"f", b"z" * 1048512, b"F1") + b"mg f s\r\n")
    add("ms_key_too_long_data_parsed", ms(K251, b"x") + ms(K251, b"mn") + ms(K250, b"y")
        + b"mg " + K250 + b" v\r\n")
    add("ms_too_many_tokens", ms(b"k", b"x", b" ".join([b"u"] * 16)) + ms(b"k", b"x", b" ".join(
        [b"u"] * 17)) + ms(b"k", b"x", b"c f s t v h l u O1 I L P D1 F1 J1 T0") + ms(
        b"k", b"x", b"c f s t v h l u O1 I L P D1 F1 J1 T0 N1") + b"mg k v\r\nmn\r\n")
    add("ms_empty_value_and_binary_value", ms(b"k", b"") + b"mg k v s\r\n"
        + ms(b"b", bytes(range(256))) + b"mg b v\r\n" + ms(b"c", b"VA 1\r\nx\r\nEN\r\n")
        + b"mg c v\r\n")
    add("ms_then_classic_get_gets", ms(b"k", b"hello", b"F9 c") + b"gets k\r\nget k\r\n"
        b"mg k c\r\n")
    add("ms_quiet_pipeline_ends_in_mn", ms(b"a", b"1", b"q") + ms(b"b", b"2", b"q")
        + ms(b"a", b"x", b"q ME") + ms(b"c", b"x", b"q MR") + b"mg a q v\r\nmg zz q v\r\n"
        b"md b q\r\nmd b q\r\nma a q\r\nmg c q k\r\nmn\r\nmg b v\r\nmn\r\n", one_byte=True)

    # --- md
    add("md_basic_and_quiet", b"md k\r\nmd k q\r\nmd k k O1 q\r\nmd k k O1\r\n" + ms(b"k", b"x")
        + b"md k q\r\nmg k v\r\n" + ms(b"k", b"x") + b"md k\r\nmd k\r\nmn\r\n", one_byte=True)
    add("md_C_mismatch", ms(b"k", b"x") + b"md k C1\r\nmd k C1 q\r\nmg k v\r\nmd k C0\r\n"
        b"md nope C1\r\nmn\r\n")
    add("md_flags_accepted_and_invalid", ms(b"k", b"x") + b"md k c f h l s t u v\r\n"
        + ms(b"k", b"x") + b"md k x\r\nmd k E\r\nmd k q q\r\nmd k C\r\nmd k T\r\nmd k T1x\r\n"
        b"md k O" + b"z" * 33 + b"\r\nmd k D\r\nmd k M\r\nmd k MS\r\nmd k D1 J1 N1 P L\r\n"
        b"mg k v\r\nmn\r\n")
    add("md_too_many_tokens_and_keys", ms(b"k", b"x") + b"md k " + b" ".join([b"u"] * 16)
        + b"\r\nmd k " + b" ".join([b"u"] * 17) + b"\r\nmd " + K251 + b"\r\nmd\r\nmd \r\n"
        b"mg k v\r\nmn\r\n")

    # --- ma
    add("ma_basic_vivify_modes", b"ma n\r\nma n N0\r\nma n N0 v t\r\nma n v\r\nma n N0 J13 v\r\n"
        b"ma m N0 J13 v t c\r\nma m N100 J13 v t\r\nma m MI D5 v\r\nma m MD D100 v\r\n"
        b"ma m M- D1 v\r\nma m M+ D1 v\r\nma m Mi v\r\nma m Md v\r\nma m MX v\r\n"
        b"ma m MII v\r\nma m M v\r\nmg m v\r\nmn\r\n", one_byte=True)
    add("ma_quiet_hides_hd_and_va", ms(b"m", b"1") + b"ma m q\r\nma m q v\r\nma nope q\r\n"
        b"ma nope q v\r\nma m q C1\r\nmg m v\r\nmn\r\n")
    add("ma_non_numeric_wrap_clamp", ms(b"n", b"abc") + b"ma n\r\nma n v\r\n"
        + ms(b"n", b"18446744073709551615\x00") + b"ma n v\r\nma n v D2\r\n" + ms(b"n", b"5")
        + b"ma n MD D10 v\r\nma n MD v\r\n" + ms(b"e", b"") + b"ma e v\r\n" + ms(b"d", b"-5")
        + b"ma d v\r\n" + ms(b"h", b"12abc") + b"ma h\r\n")
    add("ma_bad_tokens", ms(b"n", b"5") + b"ma n D18446744073709551616 v\r\nma n D-1 v\r\n"
        b"ma n Dx v\r\nma n D1x v\r\nma n J1x N0\r\nma n N1x\r\nma n D\r\nma n J\r\nma n N\r\n"
        b"ma n T\r\nma n C\r\nma n x\r\nma n v v\r\nma n E\r\nma n b\r\nma n s f h l u\r\n"
        b"ma n D18446744073709551615 v\r\nmn\r\n")
    add("ma_initial_values", b"ma x N0 J18446744073709551616 v\r\nma x N0 J18446744073709551615 v\r\n"
        b"ma x v\r\nma y N0 J5 MD D9 v\r\nma z N30 J0 v t\r\nma w J5 v\r\nmn\r\n")
    add("ma_returned_flags", ms(b"n", b"10") + b"ma n C1 v\r\nma n k O5 v c t\r\n"
        b"ma n T100 v t\r\nmg n t\r\nma nope O9 k\r\nma nope k O9 q\r\nma n O1 q k\r\n"
        b"ma n T0 t v\r\nmn\r\n")
    add("ma_padding_then_mg", ms(b"n", b"100") + b"ma n MD v\r\nmg n v s\r\nma n v\r\n"
        b"mg n v s\r\n")
    add("ma_on_classic_set_and_incr_mix", blk(b"set", b"n", b"7") + b"ma n v\r\nincr n 3\r\n"
        b"ma n MD D2 v\r\ndecr n 1\r\nmg n v\r\nget n\r\n")
    add("ma_keys_and_tokens", b"ma " + K251 + b"\r\nma\r\nma \r\nma n " + b" ".join([b"u"] * 16)
        + b"\r\nma n " + b" ".join([b"u"] * 17) + b"\r\nma n O" + b"o" * 33 + b"\r\nmn\r\n")

    # --- mn / me
    add("mn_forms", b"mn\r\nmn x\r\nmn q k v\r\nmn " + b"x " * 30 + b"\r\n", one_byte=True)
    add("me_basic", ms(b"k", b"hello") + b"me k\r\nmg k v\r\nme k\r\nme nope\r\nme\r\n"
        b"me " + K251 + b"\r\nme " + K250 + b"\r\nme k x y z\r\n")
    add("me_exp_sign_quirk", ms(b"k", b"x", b"T100") + b"me k\r\nmg k T3600\r\nme k\r\n"
        + ms(b"k", b"x", b"T0") + b"me k\r\n")
    add("me_sizes_and_classes", ms(b"a", b"x" * 100) + ms(b"b", b"x" * 1000)
        + ms(b"c", b"x" * 100000) + ms(b"d", b"x", b"F1") + b"me a\r\nme b\r\nme c\r\nme d\r\n")
    add("me_after_classic_and_meta", blk(b"set", b"k", b"x") + b"me k\r\nget k\r\nme k\r\n"
        + b"mg k N30\r\nme k\r\nmd k I\r\nme k\r\n")

    # --- long lines
    add("mg_long_line_in_one_read", ms(b"k", b"x") + b"mg k " + b"v" * 3000 + b"\r\n")
    add("mg_long_flag_list_closes_when_no_newline", b"mg k " + b"v " * 1500, mode="close")
    add("ms_value_larger_than_read_buffer", ms(b"k", b"q" * 70000) + b"mg k s\r\n")

    # --- incomplete input
    add("ms_incomplete_value_at_eof", b"ms k 10\r\nabc", mode="eof")
    add("mg_incomplete_line_at_eof", b"mg k v\r\nmg k", mode="eof")
    add("meta_then_quit", ms(b"k", b"x") + b"mg k v\r\nquit\r\n", mode="close")
    return c


# ---------------------------------------------------------------------------
# Interactive CAS dialogs (the request needs the CAS value the server gave)


def cas_of(d, reply):
    for line in reply.split(b"\r\n"):
        for tok in line.split(b" ")[1:]:
            if tok[:1] == b"c" and tok[1:].isdigit():
                return tok[1:]
    d.fail("no c<cas> in %r" % reply[:200])


def dlg_ms_C_match_then_stale(d):
    c = cas_of(d, d.send(ms(b"k", b"a", b"c")))
    d.send(ms(b"k", b"b", b"C" + c + b" c") + b"mg k v c\r\n")
    d.send(ms(b"k", b"c", b"C" + c + b" c") + b"mg k v\r\n")


def dlg_ms_C_modes(d):
    c = cas_of(d, d.send(ms(b"k", b"a", b"c")))
    d.send(ms(b"k", b"b", b"C" + c + b" MA c") + b"mg k v c\r\n")
    c = cas_of(d, d.send(b"mg k c\r\n"))
    d.send(ms(b"k", b"p", b"C" + c + b" MP q") + b"mg k v\r\nmn\r\n")
    c = cas_of(d, d.send(b"mg k c\r\n"))
    d.send(ms(b"k", b"e", b"C" + c + b" ME") + ms(b"k", b"r", b"C" + c + b" MR") + b"mg k v\r\n")


def dlg_ms_I_with_older_cas_marks_stale(d):
    c1 = cas_of(d, d.send(ms(b"k", b"a", b"c")))
    c2 = cas_of(d, d.send(ms(b"k", b"b", b"c")))
    d.send(ms(b"k", b"z", b"I C" + c1 + b" c") + b"mg k v c\r\nmg k v c\r\n")
    d.send(ms(b"k", b"y", b"I C" + str(int(c2) + 1000).encode() + b" c") + b"mg k v c\r\n")
    c3 = cas_of(d, d.send(b"mg k c\r\n"))
    d.send(ms(b"k", b"w", b"I C" + c3 + b" c") + b"mg k v c\r\n")


def dlg_md_C_match(d):
    c = cas_of(d, d.send(ms(b"k", b"a", b"c")))
    d.send(b"md k C" + c + b" q\r\nmg k v\r\nmn\r\n")
    c = cas_of(d, d.send(ms(b"k", b"a", b"c")))
    d.send(b"md k C" + c + b" I T30\r\nmg k v c t\r\nmg k v c t\r\n")


def dlg_ma_C_match(d):
    c = cas_of(d, d.send(ms(b"n", b"5", b"c")))
    d.send(b"ma n C" + c + b" v c\r\nma n C" + c + b" v c\r\n")


def dlg_win_flow_then_cas_set(d):
    c = cas_of(d, d.send(b"mg k N30 c v\r\n"))
    d.send(b"mg k N30 c v\r\n")
    d.send(ms(b"k", b"filled", b"C" + c + b" T100 c") + b"mg k v c t\r\n")


def dlg_invalidate_then_recache(d):
    d.send(ms(b"k", b"a", b"T100"))
    d.send(b"md k I\r\n")
    c = cas_of(d, d.send(b"mg k c v\r\n"))
    d.send(b"mg k c v\r\n")
    d.send(ms(b"k", b"fresh", b"C" + c + b" c") + b"mg k v c\r\n")


def dlg_mg_c_equals_gets_cas(d):
    d.send(blk(b"set", b"k", b"v"))
    r = d.send(b"gets k\r\nmg k c\r\n")
    toks = r.split(b"\r\n")[0].split(b" ")
    c = cas_of(d, r.split(b"END\r\n", 1)[1])
    if toks[-1] != c:
        d.fail("gets cas %r != mg cas %r" % (toks[-1], c))
    d.send(blk(b"cas", b"k", b"w", extra=b" " + c) + b"mg k v c\r\n")


def dlg_me_cas_matches(d):
    c = cas_of(d, d.send(ms(b"k", b"a", b"c")))
    r = d.send(b"me k\r\n")
    if b" cas=" + c + b" " not in r:
        d.fail("me cas differs from ms c: %r vs %r" % (r, c))


DIALOGS = [f for name, f in sorted(globals().items()) if name.startswith("dlg_")]


# ---------------------------------------------------------------------------
# Generated meta pipelines

PLAIN_KEYS = [b"k0", b"k1", b"n", b"cnt"]
B64_KEYS = {b"k0": b64(b"k0"), b"k1": b64(b"k1")}  # same items through b
BIN_KEY = b64(b"\x00\xffk")
NUM_KEYS = [b"n", b"cnt"]
SAFE_NUMBERS = [b"0", b"1", b"9", b"10", b"99", b"100", b"1000", b"4294967295", b"42",
                b"18446744073709551615\x00", b"abc", b"", b"12abc", b"-5", b"007"]
TTLS = [b"T0", b"T-1", b"T30", b"T100", b"T3600"]
MG_FLAGS = [b"v", b"s", b"f", b"t", b"h", b"l", b"c", b"k", b"u", b"q"]
JUNK = [b"mg k0 x\r\n", b"mg k0 v v\r\n", b"ms k0 1 Mz\r\nx\r\n", b"md k0 x\r\n", b"ma n D\r\n",
        b"mg " + K251 + b" v\r\n", b"mg @@ b\r\n", b"ms k1 1 T1x\r\nx\r\n", b"mg k0 O" + b"o" * 40
        + b"\r\n", b"ma n Mz\r\n", b"MG k0\r\n", b"mg\r\n",
        b"get k0 k1 n\r\n", b"gets k0\r\n", b"incr n 1\r\n", b"delete k1\r\n", b"mn\r\n"]


class MetaGen:
    def __init__(self, rng):
        self.r = rng

    def p(self, x):
        return self.r.random() < x

    def choice(self, seq):
        return self.r.choice(seq)

    def key(self, numeric=False):
        """(key token, flags to add for it)."""
        if numeric:
            return self.choice(NUM_KEYS), []
        x = self.r.random()
        if x < 0.15:
            k = self.choice(list(B64_KEYS))
            return B64_KEYS[k], [b"b"]
        if x < 0.2:
            return BIN_KEY, [b"b"]
        return self.choice(PLAIN_KEYS[:2] + [b"k2"]), []

    def opaque(self):
        return b"O" + str(self.r.randrange(0, 100000)).encode()

    def finish(self, verb, key, flags, numeric_tail=b""):
        self.r.shuffle(flags)
        return b" ".join([verb, key] + ([numeric_tail] if numeric_tail else []) + flags) + b"\r\n"

    def mg(self):
        key, flags = self.key(numeric=self.p(0.2))
        flags += self.r.sample(MG_FLAGS, self.r.randint(0, 6))
        if self.p(0.2):
            flags.append(self.opaque())
        if self.p(0.1):
            flags.append(b"N30")
        if self.p(0.1):
            flags.append(self.choice([b"R15", b"R50", b"R500"]))
        if self.p(0.1):
            flags.append(self.choice(TTLS))
        return self.finish(b"mg", key, flags)

    def ms(self):
        numeric = self.p(0.25)
        key, flags = self.key(numeric)
        if numeric:
            v = self.choice(SAFE_NUMBERS)
            modes = [b"MS", b"ME", b"MR"]  # no append: digits could pile up past 2**63
        else:
            v = self.choice(VALUES) if self.p(0.6) else bytes(
                self.r.randrange(32, 127) for _ in range(self.r.randint(0, 20)))
            v = v.replace(b"version", b"versi0n")
            if v and not v.strip(b" \t\n\v\f\r"):
                v = b"w" + v  # ma on an all-whitespace value reads past the item
            modes = [b"MS", b"ME", b"MA", b"MP", b"MR", b"Ms", b"MX"]
        if self.p(0.3):
            flags.append(self.choice(modes))
        if self.p(0.3):
            flags.append(self.choice(TTLS))
        if self.p(0.2):
            flags.append(b"F" + self.choice([b"0", b"1", b"42", b"4294967295"]))
        for f in (b"c", b"k", b"q", b"I"):
            if self.p(0.12):
                flags.append(f)
        if self.p(0.1):
            flags.append(self.opaque())
        if self.p(0.05):
            flags.append(self.choice([b"C0", b"C18446744073709551615"]))
        length = len(v)
        term = b"\r\n"
        x = self.r.random()
        if x < 0.05:
            length = max(0, length + self.choice([-2, -1, 1, 2]))
        elif x < 0.08:
            term = self.choice([b"\n", b"", b"XX"])
        return self.finish(b"ms", key, flags, str(length).encode()).rstrip(b"\r\n") \
            + b"\r\n" + v + term

    def md(self):
        key, flags = self.key(numeric=self.p(0.2))
        for f in (b"q", b"k", b"I"):
            if self.p(0.15):
                flags.append(f)
        if self.p(0.1):
            flags.append(self.choice([b"T30", b"T100", b"C0"]))
        if self.p(0.1):
            flags.append(self.opaque())
        return self.finish(b"md", key, flags)

    def ma(self):
        key, flags = self.key(numeric=self.p(0.85))
        if self.p(0.5):
            flags.append(b"v")
        for f in (b"t", b"c", b"k", b"q"):
            if self.p(0.12):
                flags.append(f)
        if self.p(0.3):
            flags.append(b"D" + self.choice([b"0", b"1", b"2", b"7", b"100", b"4294967296"]))
        if self.p(0.25):
            flags.append(self.choice([b"MI", b"MD", b"M+", b"M-", b"Mi"]))
        if self.p(0.2):
            flags.append(self.choice([b"N0", b"N30"]))
        if self.p(0.15):
            flags.append(b"J" + self.choice([b"0", b"5", b"1000"]))
        if self.p(0.05):
            flags.append(self.choice([b"T100", b"C0"]))
        if self.p(0.1):
            flags.append(self.opaque())
        return self.finish(b"ma", key, flags)

    def command(self):
        x = self.r.random()
        if x < 0.30:
            return self.ms()
        if x < 0.62:
            return self.mg()
        if x < 0.74:
            return self.md()
        if x < 0.9:
            return self.ma()
        if x < 0.95:
            return b"mn\r\n"
        return self.choice(JUNK)

    def pipeline(self):
        cmds = [self.command() for _ in range(self.r.randint(2, 16))]
        return merge(cmds + [b"mn\r\nmg k0 v f t s\r\nmg k1 v f\r\nmg k2 v\r\nmg n v\r\n"
                             b"mg cnt v\r\nmg " + BIN_KEY + b" b v k\r\nmn\r\n"])


def generated_cases():
    g = MetaGen(random.Random(SEED))
    cases = [Case("gen%03d_meta" % i, g.pipeline(), strict=False) for i in range(300)]
    for c in cases:
        assert not any(c.versions), c.name
    return cases


all_cases = corpus(handwritten_cases, generated_cases)


# ---------------------------------------------------------------------------
# Tests

differ = differ_fixture()


def test_meta_handwritten_whole(differ):
    run_whole(differ("meta hand-written, whole"), all_cases()[0])


def test_meta_generated_whole(differ):
    run_whole(differ("meta generated, whole"), all_cases()[1])


def test_meta_split_random(differ):
    run_split(differ("meta random split"), *all_cases())


def test_meta_one_byte_per_send(differ):
    run_one_byte(differ("meta one byte per send"), *all_cases(), SEED + 1, 15)


def test_meta_interactive_cas(differ):
    run_dialogs(differ("meta interactive"), DIALOGS, "text")


def test_meta_case_counts():
    hand, gen = all_cases()
    assert len(hand) >= 80 and len(gen) == 300 and len(DIALOGS) >= 9

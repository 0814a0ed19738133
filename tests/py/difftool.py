"""The engine of the differential suites: the same bytes go to memcached
1.6.18 and to rmemcached, and the replies must be identical after
normalisation.  Used by test_differential.py (classic text protocol; its
docstring describes modes, barriers and split sends), test_differential_meta.py
and test_differential_binary.py.

Two reply protocols:

  text    replies are text lines, with `VALUE ...` and meta `VA <n> ...` data
          blocks skipped by their declared length; the sentinel is
          `version\\r\\n` (VERSION line).
  binary  replies are 24-byte-header response packets; the sentinel is a
          binary Noop whose opaque is SENTINEL_OPAQUE (no case uses it).

A Case picks its protocol (`proto`); modes sentinel/eof/close, barriers,
whole/random-split/one-byte sends, CAS renaming and mismatch collection are
described in test_differential.py.  Each suite's Differs share one stall
counter (differ_fixture), so a stalled rmemcached in one module does not cut
short another module.

Normalisation (done on each side separately, then compared byte for byte):
  * CAS values are renamed by order of first appearance within a case
    (text `VALUE k f n <cas>`, meta `c<cas>` return flag, `me`'s `cas=<cas>`,
    the binary header's CAS field).  0 stays 0.
  * Time-dependent meta numbers are rounded to the nearest multiple of 10 and
    marked with `~`: the `t<ttl>` and `l<secs>` return flags and `me`'s
    `exp=` and `la=`.  memcached's clock ticks once a second, so a TTL of
    100 set by one command may read as 100 or 99 in the next one, and a
    last-access age as 0 or 1.  `t-1` / `exp=-1` (no expiry) are kept.  The
    cases only use TTLs that are multiples of 10 (or 0 / -1), so the rounding
    loses nothing else.
  * Binary `Stat` replies (opcode 0x10) are normalised by stat_value(); see
    test_differential_binary.py for the masked names.
"""
import difflib
import hashlib
import random
import re
import select
import socket
import struct
import time
from dataclasses import dataclass

import pytest

from conftest import MEMCACHED_BIN, RMEMCACHED_BIN

SEED = 20261124
TEXT_SENTINEL = b"version\r\n"
SENTINEL_OPAQUE = 0x5E471E11
CASE_TIMEOUT = 2.0
GAP = 0.001  # seconds between split sends
MAX_SHOWN = 30
MAX_SUT_STALLS = 6  # give up on a test function after this many rmemcached timeouts
# ... and on all the following ones of the same suite after twice as many

BARRIER = None  # in a chunk list: wait until everything before is answered


# ---------------------------------------------------------------------------
# Binary packets

HDR = struct.Struct(">BBHBBHIIQ")


def pkt(op, key=b"", value=b"", extras=b"", cas=0, opaque=0, magic=0x80, dtype=0, vbucket=0,
        bodylen=None, keylen=None, extlen=None):
    """A binary request packet; bodylen/keylen/extlen override the computed
    header fields (the body is still what is given)."""
    kl = len(key) if keylen is None else keylen
    el = len(extras) if extlen is None else extlen
    bl = len(extras) + len(key) + len(value) if bodylen is None else bodylen
    return HDR.pack(magic, op, kl, el, dtype, vbucket, bl, opaque, cas) + extras + key + value


BIN_SENTINEL = pkt(0x0A, opaque=SENTINEL_OPAQUE)


def parse_packets(buf):
    """Response packets in buf: list of dicts, plus ('tail', bytes) for an
    incomplete rest."""
    out = []
    i = 0
    while len(buf) - i >= 24:
        magic, op, kl, el, dt, st, bl, opq, cas = HDR.unpack_from(buf, i)
        if len(buf) - i - 24 < bl:
            break
        body = buf[i + 24:i + 24 + bl]
        out.append(dict(magic=magic, op=op, keylen=kl, extlen=el, dtype=dt, status=st,
                        bodylen=bl, opaque=opq, cas=cas, extras=body[:el], key=body[el:el + kl],
                        value=body[el + kl:], raw=buf[i:i + 24 + bl]))
        i += 24 + bl
    if i < len(buf):
        out.append(("tail", buf[i:]))
    return out


def bin_done(buf, _count):
    if len(buf) < 24 or buf[-24] != 0x81:
        return False
    magic, op, kl, el, dt, st, bl, opq, cas = HDR.unpack_from(buf, len(buf) - 24)
    if op != 0x0A or opq != SENTINEL_OPAQUE or bl != 0:
        return False
    # the whole buffer must parse into packets ending with this one
    ps = parse_packets(buf)
    return bool(ps) and isinstance(ps[-1], dict) and ps[-1]["opaque"] == SENTINEL_OPAQUE \
        and ps[-1]["op"] == 0x0A


def bin_strip(buf):
    return buf[:-24]


def stat_value_default(key, value):
    return value


# Stats rmemcached leaves out, documented in the README: fields of
# subsystems it does not have (libevent, response objects, read-buffer
# pools, the logger, NAPI, extstore, TLS, memory files).  Binary Stat
# packets with these keys are dropped from both sides before comparing.
STATS_RMC_OMITS = {x.encode() for x in (
    "libevent response_obj_oom response_obj_count response_obj_bytes read_buf_count "
    "read_buf_bytes read_buf_bytes_free read_buf_oom log_worker_dropped log_worker_written "
    "log_watcher_skipped log_watcher_sent log_watchers unexpected_napi_ids round_robin_fallback "
    "watcher_logbuf_size worker_logbuf_size read_buf_mem_limit inline_ascii_response "
    "ext_item_size ext_item_age ext_low_ttl ext_recache_rate ext_wbuf_size ext_compact_under "
    "ext_drop_under ext_max_sleep ext_max_frag ext_drop_unread ssl_enabled ssl_chain_cert "
    "ssl_key ssl_verify_mode ssl_keyformat ssl_ciphers ssl_ca_cert ssl_wbuf_size "
    "ssl_session_cache ssl_kernel_tls ssl_min_version num_napi_ids memory_file").split()}


def render_packets(buf, casmap, stat_value=stat_value_default):
    """Readable, CAS-normalised rendering of response packets, one per line."""
    lines = []
    for p in parse_packets(buf):
        if not isinstance(p, dict):
            lines.append(b"TAIL " + p[1].hex().encode())
            continue
        cas = p["cas"]
        cas_s = b"0" if cas == 0 else b"#%d" % casmap.setdefault(("bin", cas), len(casmap) + 1)
        value = p["value"]
        bodylen = b"%d" % p["bodylen"]
        if p["op"] == 0x10 and p["status"] == 0 and p["key"]:
            if p["key"] in STATS_RMC_OMITS:
                continue
            value = stat_value(p["key"], value)
            if value != p["value"]:
                bodylen = b"<n>"  # a masked value's length is not compared either
        lines.append(b"magic=%02x op=%02x st=%04x kl=%d el=%d dt=%02x bl=%s opq=%08x cas=%s "
                     b"ext=%s key=%r val=%r" % (p["magic"], p["op"], p["status"], p["keylen"],
                                                p["extlen"], p["dtype"], bodylen, p["opaque"],
                                                cas_s, p["extras"].hex().encode(), p["key"], value))
    return b"".join(x + b"\n" for x in lines)


# ---------------------------------------------------------------------------
# Text (classic + meta) replies

META_CODES = {b"HD", b"VA", b"EN", b"NF", b"NS", b"EX", b"MN", b"ME"}


def parse_text(buf):
    """('line', bytes) / ('data', bytes) / ('tail', bytes): lines, with the
    data blocks of `VALUE k f n [c]` and meta `VA n ...` skipped by length."""
    items = []
    i, n = 0, len(buf)
    while i < n:
        j = buf.find(b"\r\n", i)
        if j < 0:
            items.append(("tail", buf[i:]))
            break
        line = buf[i:j]
        items.append(("line", line))
        i = j + 2
        size = None
        toks = line.split(b" ")
        if toks[0] == b"VALUE" and len(toks) in (4, 5) and toks[3].isdigit():
            size = int(toks[3])
        elif toks[0] == b"VA" and len(toks) >= 2 and toks[1].isdigit():
            size = int(toks[1])
        if size is not None:
            end = i + size + 2
            if end <= n:
                items.append(("data", buf[i:end]))
                i = end
            else:
                items.append(("tail", buf[i:]))
                break
    return items


def _last_line_start(buf):
    i = buf.rfind(b"\r\n", 0, len(buf) - 2)
    return i + 2 if i >= 0 else 0


def text_done(buf, versions):
    if not buf.endswith(b"\r\n") or not buf.startswith(b"VERSION ", _last_line_start(buf)):
        return False
    seen = sum(1 for kind, v in parse_text(buf) if kind == "line" and v.startswith(b"VERSION "))
    return seen >= versions + 1


def text_strip(buf):
    return buf[:_last_line_start(buf)]


def _time_round(num):
    """A time-dependent number (see the module docstring)."""
    v = int(num)
    if v == -1:
        return num
    return b"~%d" % (int(round(v / 10.0)) * 10)


def _cas_name(casmap, num):
    if num == b"0":
        return b"0"
    return b"#%d" % casmap.setdefault(("text", num), len(casmap) + 1)


NUM = re.compile(rb"-?[0-9]+\Z")


def normalise_text(buf, casmap):
    out = []
    for kind, v in parse_text(buf):
        if kind != "line":
            out.append(v)
            continue
        toks = v.split(b" ")
        if toks[0] == b"VALUE" and len(toks) == 5 and toks[3].isdigit() and toks[4].isdigit():
            toks[4] = b"c" + _cas_name(casmap, toks[4])
        elif toks[0] == b"ME":
            for i in range(2, len(toks)):
                name, eq, val = toks[i].partition(b"=")
                if eq and NUM.match(val):
                    if name == b"cas":
                        toks[i] = b"cas=" + _cas_name(casmap, val)
                    elif name in (b"exp", b"la"):
                        toks[i] = name + b"=" + _time_round(val)
        elif toks[0] in META_CODES:
            first = 2 if toks[0] == b"VA" else 1
            for i in range(first, len(toks)):
                t = toks[i]
                if len(t) > 1 and NUM.match(t[1:]):
                    if t[:1] == b"c":
                        toks[i] = b"c" + _cas_name(casmap, t[1:])
                    elif t[:1] in (b"t", b"l"):
                        toks[i] = t[:1] + _time_round(t[1:])
        out.append(b" ".join(toks) + b"\r\n")
    return b"".join(out)


PADDED_NUMBER = re.compile(rb"([0-9]+) +\r\n\Z")


def padding_free_text(data):
    """Drop the space padding memcached leaves after an in-place incr/decr
    that shortened a number ("100" decr 1 -> "99 "), in VALUE and VA blocks,
    and fix the declared length (and a meta `s<size>` flag).  memcached only
    works in place when nothing else holds a reference to the item, and its
    LRU threads take references to items that were fetched before, so for
    such items padded and unpadded results both occur with the same input."""
    out = []
    pending = None
    for kind, v in parse_text(data):
        if kind == "line" and (v.startswith(b"VALUE ") or v.startswith(b"VA ")):
            if pending is not None:
                out.append(pending + b"\r\n")
            pending = v
            continue
        if kind == "data" and pending is not None:
            m = PADDED_NUMBER.match(v)
            if m:
                toks = pending.split(b" ")
                n = b"%d" % len(m.group(1))
                if toks[0] == b"VALUE":
                    toks[3] = n
                else:
                    toks[1] = n
                    toks = [b"s" + n if (i > 1 and t[:1] == b"s" and t[1:].isdigit()) else t
                            for i, t in enumerate(toks)]
                pending, v = b" ".join(toks), m.group(1) + b"\r\n"
            out.append(pending + b"\r\n")
            pending = None
            out.append(v)
            continue
        if pending is not None:
            out.append(pending + b"\r\n")
            pending = None
        out.append(v + b"\r\n" if kind == "line" else v)
    if pending is not None:
        out.append(pending + b"\r\n")
    return b"".join(out)


# ---------------------------------------------------------------------------
# Cases


@dataclass
class Case:
    name: str
    chunks: list  # bytes, or BARRIER; each bytes chunk is one send in "whole" mode
    mode: str = "sentinel"  # how the last step ends: "sentinel" | "eof" | "close"
    split: bool = True  # may be re-split into random pieces / single bytes
    one_byte: bool = False  # include in the one-byte-per-send subset
    strict: bool = True  # False: incr/decr space padding may differ (see padding_free_text)
    proto: str = "text"  # reply protocol: "text" | "binary"

    def __post_init__(self):
        if isinstance(self.chunks, bytes):
            self.chunks = [self.chunks]
        assert self.mode in ("sentinel", "eof", "close"), self.mode
        assert self.proto in ("text", "binary"), self.proto
        self.steps = [[]]
        for ch in self.chunks:
            if ch is BARRIER:
                self.steps.append([])
            else:
                self.steps[-1].append(ch)
        assert all(self.steps), "empty step in %s" % self.name
        if self.proto == "text":
            self.versions = [count_version_commands(b"".join(st)) for st in self.steps]
            if self.split and long_line_risk(self.stream):
                self.split = False
        else:
            self.versions = [0] * len(self.steps)

    @property
    def stream(self):
        return b"".join(ch for ch in self.chunks if ch is not BARRIER)


def count_version_commands(stream):
    """`version` command lines in a stream (approximate: ignores data blocks)."""
    n = 0
    for line in stream.split(b"\n")[:-1]:
        if len(line) > 1 and line.endswith(b"\r"):
            line = line[:-1]
        toks = [t for t in line.split(b"\x00")[0].split(b" ") if t]
        if toks and toks[0] == b"version":
            n += 1
    return n


def long_line_risk(stream):
    """True when a stretch of > 2000 bytes without newline is not a get/gets
    line: memcached closes the connection when it holds more than 2048 bytes
    without a newline (except for get/gets), so the outcome of splitting such
    a stream depends on read boundaries."""
    for seg in stream.split(b"\n"):
        if len(seg) > 2000 and not seg.lstrip(b" ").startswith((b"get ", b"gets ")):
            return True
    return False


def blk(verb, key, data, flags=b"0", exptime=b"0", extra=b"", length=None,
        term=b"\r\n", eol=b"\r\n"):
    """A storage command with its data block."""
    n = str(len(data) if length is None else length).encode()
    line = b" ".join([verb, key, flags, exptime, n]) + extra
    return line + eol + data + term


def merge(parts):
    """Flatten nested parts and join adjacent bytes into one chunk."""
    out = [b""]
    for p in parts:
        for q in (p if isinstance(p, list) else [p]):
            if q is not BARRIER:
                out[-1] += q
            elif out[-1]:  # no empty steps
                out += [BARRIER, b""]
    return out if out[-1] else out[:-1]


def corpus(handwritten, generated, built=None):
    """A suite's all_cases() -> (hand-written cases, generated cases), made
    on the first call; case names must be unique.  built(cases) is called
    once they are made."""
    cache = []

    def all_cases():
        if not cache:
            hand, gen = handwritten(), generated()
            names = [c.name for c in hand + gen]
            assert len(names) == len(set(names)), "duplicate case names"
            cache[:] = [hand, gen]
            if built is not None:
                built(hand + gen)
        return cache[0], cache[1]
    return all_cases


# ---------------------------------------------------------------------------
# Splitting


def random_pieces(chunks, rng):
    """Split each chunk at random points, favouring points next to CR/LF
    (between CR and LF, right after a command line)."""
    pieces = []
    for ch in chunks:
        if len(ch) < 2:
            pieces.append(ch)
            continue
        cuts = set()
        crlf = [i + 1 for i, b in enumerate(ch[:-1]) if b in (10, 13)]
        for _ in range(rng.randint(1, min(8, len(ch) - 1))):
            if crlf and rng.random() < 0.5:
                cuts.add(rng.choice(crlf))
            else:
                cuts.add(rng.randrange(1, len(ch)))
        prev = 0
        for cut in sorted(cuts):
            pieces.append(ch[prev:cut])
            prev = cut
        pieces.append(ch[prev:])
    return pieces


def seeded_split(case):
    """Random split of a case's chunks, seeded by SEED, name and content."""
    def split(chunks):
        return random_pieces(chunks, random.Random(
            "%d/%s/%s" % (SEED, case.name, hashlib.sha1(b"".join(chunks)).hexdigest())))
    return split


def byte_pieces(chunks):
    return [bytes([b]) for b in b"".join(chunks)]


# ---------------------------------------------------------------------------
# Talking to a server


PROTOS = {
    "text": (TEXT_SENTINEL, text_done, text_strip),
    "binary": (BIN_SENTINEL, bin_done, bin_strip),
}


def exchange(sock, pieces, mode, done, count):
    """Send pieces (GAP apart), reading concurrently, until the case is over;
    in sentinel mode done(buf, count) tells when the reply is complete.
    Returns (status, raw reply bytes)."""
    sock.setblocking(False)
    buf = bytearray()
    pending = list(pieces)
    out = b""
    sending = True
    next_at = 0.0
    deadline = time.monotonic() + CASE_TIMEOUT
    status = None
    while status is None:
        now = time.monotonic()
        if now >= deadline:
            status = "timeout"
            break
        if sending and not out and pending and now >= next_at:
            out = memoryview(pending.pop(0))
        wait = deadline - now
        if sending and not out and pending:
            wait = min(wait, max(0.0, next_at - now))
        r, w, _ = select.select([sock], [sock] if out else [], [], wait)
        if r:
            try:
                d = sock.recv(1 << 20)
            except BlockingIOError:
                d = None
            except OSError:  # reset by peer
                d = b""
            if d == b"":
                status = "closed"
                break
            if d:
                buf += d
                if mode == "sentinel" and done(bytes(buf), count):
                    status = "answered"
                    break
        if w and out:
            try:
                n = sock.send(out)
                out = out[n:]
            except BlockingIOError:
                pass
            except OSError:  # server closed: stop sending, keep reading
                out = b""
                pending = []
            if not out:
                out = b""
                next_at = time.monotonic() + GAP
                if not pending:
                    sending = False
                    if mode == "eof":
                        half_close(sock)
    if mode == "sentinel":
        if status == "closed":
            status = "closed before the sentinel reply"
        elif status == "timeout":
            half_close(sock)
            buf += read_to_eof(sock, 1.0)
            status = "no sentinel reply within %gs" % CASE_TIMEOUT
    elif mode == "eof":
        status = "eof" if status == "closed" else "no EOF within %gs after half-close" % CASE_TIMEOUT
    else:
        status = "closed by server" if status == "closed" else \
            "connection still open after %gs" % CASE_TIMEOUT
    return status, bytes(buf)


def half_close(sock):
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def read_to_eof(sock, timeout):
    buf = bytearray()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([sock], [], [], deadline - time.monotonic())
        if not r:
            break
        try:
            d = sock.recv(1 << 20)
        except BlockingIOError:
            continue
        except OSError:
            break
        if not d:
            break
        buf += d
    return bytes(buf)


class DialogError(Exception):
    pass


class Dialog:
    """Step-by-step exchange on one connection (for cases that must read a
    CAS value before building the next request): each step is answered fully
    (sentinel) before the next one is built.  The transcript holds the
    normalised replies, not the sent bytes (they contain raw CAS values)."""

    def __init__(self, sock, proto, normaliser, casmap):
        self.sock = sock
        self.proto = proto
        self.normaliser = normaliser
        self.casmap = casmap
        self.transcript = []

    def send(self, data, mode="sentinel"):
        sentinel, done, strip = PROTOS[self.proto]
        count = count_version_commands(data) if self.proto == "text" else 0
        pieces = [data + sentinel] if mode == "sentinel" else [data]
        status, buf = exchange(self.sock, pieces, mode, done, count)
        step = b"<step %d>" % len(self.transcript) + (b"\r\n" if self.proto == "text" else b"\n")
        if mode == "sentinel" and status != "answered":
            self.transcript.append(step + self.normaliser(buf, self.casmap)
                                   + b"<" + status.encode() + b">")
            raise DialogError(status)
        reply = strip(buf) if mode == "sentinel" else buf
        self.transcript.append(step + self.normaliser(reply, self.casmap)
                               + (b"" if mode == "sentinel" else b"<" + status.encode() + b">"))
        return reply

    def fail(self, why):
        self.transcript.append(b"<" + why.encode() + b">")
        raise DialogError(why)

    def cas(self, reply, key):
        """The CAS value of `key` in a text `VALUE` reply (gets, gats)."""
        for kind, v in parse_text(reply):
            toks = v.split(b" ")
            if kind == "line" and toks[0] == b"VALUE" and toks[1] == key and len(toks) == 5:
                return toks[4]
        self.transcript.append(b"<no cas for %r>" % key)
        raise DialogError("no cas value for %r in %r" % (key, reply[:200]))


@dataclass
class Obs:
    status: str
    data: bytes


class Target:
    """One server: a control connection for resets, a fresh connection per case."""

    def __init__(self, label, server, normalisers):
        self.label = label
        self.server = server
        self.normalisers = normalisers  # proto -> f(buf, casmap) -> bytes
        self.ctl = None

    def reset(self):
        code = self.server.proc.poll()
        if code is not None:
            raise ConnectionError("%s exited with status %s" % (self.label, code))
        last = None
        for _ in range(2):
            try:
                if self.ctl is None:
                    self.ctl = self.server.connect(timeout=2)
                self.ctl.sendall(b"flush_all\r\nverbosity 0\r\n")
                buf = b""
                while len(buf) < 8:
                    d = self.ctl.recv(64)
                    if not d:
                        raise ConnectionError("control connection closed")
                    buf += d
                if buf != b"OK\r\nOK\r\n":
                    raise ConnectionError("control reset replied %r" % buf)
                return
            except OSError as e:
                last = e
                if self.ctl is not None:
                    self.ctl.close()
                self.ctl = None
                time.sleep(0.05)
        raise ConnectionError("%s: cannot reset: %s" % (self.label, last))

    def connect(self):
        """A fresh connection after a reset, or the Obs of a harness error."""
        try:
            self.reset()
            return self.server.connect(timeout=5)
        except OSError as e:
            return Obs("harness error: %s" % e, b"")

    def run(self, case, split):
        """Run a case; split(chunks) -> pieces decides how each step is sent."""
        sock = self.connect()
        if isinstance(sock, Obs):
            return sock
        sentinel, done, strip = PROTOS[case.proto]
        replies = []
        try:
            for i, step in enumerate(case.steps):
                last = i == len(case.steps) - 1
                mode = case.mode if last else "sentinel"
                pieces = list(split(step))
                if mode == "sentinel":
                    pieces[-1] = pieces[-1] + sentinel
                status, buf = exchange(sock, pieces, mode, done, case.versions[i])
                if status == "answered":
                    buf = strip(buf)
                replies.append(buf)
                if not last and status != "answered":
                    status = "step %d: %s" % (i + 1, status)
                    break
        finally:
            sock.close()
        return Obs(status, self.normalisers[case.proto](b"".join(replies), {}))

    def dialog(self, fn, proto):
        sock = self.connect()
        if isinstance(sock, Obs):
            return sock
        d = Dialog(sock, proto, self.normalisers[proto], {})
        try:
            fn(d)
            status = "answered"
        except DialogError as e:
            status = "dialog aborted: %s" % e
        finally:
            sock.close()
        return Obs(status, b"".join(x + b"\n" for x in d.transcript))


# ---------------------------------------------------------------------------
# Reporting


def short_repr(b, limit=300):
    r = repr(b)
    if len(r) <= limit:
        return r
    return r[:limit] + "...<%d bytes, sha1 %s>" % (len(b), hashlib.sha1(b).hexdigest()[:10])


def reply_lines(obs):
    lines = [short_repr(x, 200) for x in obs.data.split(b"\n")]
    if lines and lines[-1] == "b''":
        lines.pop()
    return ["[%s]" % obs.status] + lines


def describe(label, name, stream, ref, sut):
    diff = list(difflib.unified_diff(reply_lines(ref), reply_lines(sut),
                                     "memcached", "rmemcached", n=2, lineterm=""))
    if len(diff) > 40:
        diff = diff[:40] + ["... (%d more diff lines)" % (len(diff) - 40)]
    return "\n".join(["--- [%s] %s" % (label, name),
                      "    stream (%d bytes): %s" % (len(stream), short_repr(stream))]
                     + ["    " + line for line in diff])


class Differ:
    """Runs cases on both servers and collects the mismatches; finish()
    prints the counts and fails the test if anything differed.  normalisers:
    proto -> f(buf, casmap) -> bytes; padding_free(data) is what non-strict
    cases are compared with when they differ."""

    def __init__(self, label, start_server, capsys, normalisers=None,
                 padding_free=padding_free_text, args=(), stall_box=None):
        if normalisers is None:
            normalisers = {"text": normalise_text}
        self.label = label
        self.capsys = capsys
        self.padding_free = padding_free
        self.ref = Target("memcached", start_server(MEMCACHED_BIN, args), normalisers)
        self.sut = Target("rmemcached", start_server(RMEMCACHED_BIN, args), normalisers)
        self.total = 0
        self.padding_only = 0
        self.mismatches = []
        self.stalls = 0
        self.stall_box = stall_box if stall_box is not None else [0]
        self.aborted = None

    def compare(self, name, stream, run, strict=True):
        if self.stall_box[0] >= 2 * MAX_SUT_STALLS and not self.aborted:
            self.aborted = "not run: rmemcached stalled %d times in this module" % self.stall_box[0]
        if self.aborted:
            return None
        self.total += 1
        ref = run(self.ref)
        sut = run(self.sut)
        if ref.status != sut.status and ("within" in sut.status or "still open" in sut.status
                                         or "harness error" in sut.status
                                         or "exited" in sut.status):
            self.stalls += 1
            self.stall_box[0] += 1
            if self.stalls >= MAX_SUT_STALLS:
                self.aborted = "gave up after %d rmemcached timeouts/errors (last: %s)" % (
                    self.stalls, name)
        if ref != sut:
            if not strict and self.padding_free and ref.status == sut.status and \
                    self.padding_free(ref.data) == self.padding_free(sut.data):
                self.padding_only += 1
            else:
                self.mismatches.append(describe(self.label, name, stream, ref, sut))
        return ref

    def case(self, case, split):
        return self.compare(case.name, case.stream, lambda t: t.run(case, split), case.strict)

    def dialog(self, fn, proto, strict=True):
        return self.compare(fn.__name__, b"<dialog>", lambda t: t.dialog(fn, proto), strict)

    def finish(self):
        matched = self.total - len(self.mismatches)
        summary = "differential [%s]: %d cases compared, %d identical%s, %d differ" % (
            self.label, self.total, matched,
            " (%d of them up to incr/decr space padding)" % self.padding_only
            if self.padding_only else "", len(self.mismatches))
        if self.aborted:
            summary += "; " + self.aborted
        with self.capsys.disabled():
            print("\n" + summary)
        if self.mismatches or self.aborted:
            shown = self.mismatches[:MAX_SHOWN]
            more = len(self.mismatches) - len(shown)
            pytest.fail(summary + "\n\n" + "\n\n".join(shown)
                        + ("\n\n... and %d more mismatches" % more if more else ""),
                        pytrace=False)


def differ_fixture(**options):
    """A suite's `differ` fixture: differ(label) -> Differ(label, ...,
    **options), on two fresh servers.  The suite's Differs share one stall
    counter."""
    stall_box = [0]

    @pytest.fixture
    def differ(start_server, capsys):
        return lambda label: Differ(label, start_server, capsys, stall_box=stall_box, **options)
    return differ


# ---------------------------------------------------------------------------
# The passes of a suite: each test function runs one and then finish()es


def run_whole(d, cases):
    """Each case as written: one send per chunk."""
    for case in cases:
        d.case(case, list)
    d.finish()


def run_split(d, hand, gen):
    """Every case that allows it, split at seeded random points."""
    for case in hand + gen:
        if case.split:
            d.case(case, seeded_split(case))
    d.finish()


def run_one_byte(d, hand, gen, seed, sample):
    """One byte per send: the hand-written cases marked one_byte, and
    `sample` short generated ones drawn with random.Random(seed)."""
    rng = random.Random(seed)
    small = [c for c in gen if c.split and len(c.stream) <= 300]
    chosen = [c for c in hand if c.one_byte and c.split] + rng.sample(small, sample)
    for case in chosen:
        d.case(case, byte_pieces)
    d.finish()


def run_dialogs(d, dialogs, proto="text", strict=True):
    for fn in dialogs:
        d.dialog(fn, proto, strict)
    d.finish()

#!/usr/bin/env python3
"""Memory benchmark: rmemcached against the real memcached 1.6, side by side.

    .venv/bin/python bench/memory.py [--quick] [--only 1,3] [--reps N]

Both servers are started by this script on 127.0.0.1 (free ports, -U 0, the
same flags), one fresh server per run, runs alternating rmemcached,
memcached, rmemcached, memcached... Workloads:

  1  items stored at -m 64 (10-byte keys, 32/100/1000-byte values): fill
     with distinct keys until curr_items stops growing while evictions rise
  2  RSS per item after 1,000,000 items of 100 bytes at -m 1024
  3  hit ratio, Zipf(0.99) cache-aside over a key space 10x larger than -m
  4  as 3, then values switch from 100 bytes to 10 KB (new keys): hit
     ratio and `SERVER_ERROR out of memory` replies after the shift
  5  for every run: RSS against maxbytes + hash_bytes + 8 MB

Results: a table on stdout, bench/results/memory.{csv,md} (plus
memory_runs.csv, one line per server run). Standard library only; one
client process (the machine has 2 cores), RSS from /proc (VmRSS, VmHWM).
"""

import argparse
import array
import bisect
import csv
import hashlib
import itertools
import math
import os
import random
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RMC_BIN = os.path.join(ROOT, "target", "release", "rmemcached")
MC_BIN = "/usr/bin/memcached"
RESULTS = os.path.join(ROOT, "bench", "results")

MB = 1 << 20
SLACK = 8 * MB          # section 5: RSS <= maxbytes + hash_bytes + SLACK
KEY_LEN = 10            # every key is 10 bytes
SOCK_TIMEOUT = 60.0     # seconds for any single reply
ZIPF_S = 0.99
SEED = 20240601


class BenchError(Exception):
    pass


def log(msg):
    print(msg, flush=True)


# --------------------------------------------------------------------------
# servers

def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def file_digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:12]


def read_proc_status(pid):
    """VmRSS and VmHWM of pid, in bytes."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                k, v = line.split(":", 1)
                out[k] = int(v.split()[0]) * 1024
    return out


def read_proc_cpu(pid):
    """user+system CPU seconds used by pid (all threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """One server process on a free port; use as a context manager."""

    def __init__(self, name, binary, mem_mb, wait_binary=0.0):
        self.name = name
        self.binary = binary
        self.mem_mb = mem_mb
        self.wait_binary = wait_binary
        self.proc = None
        self.logf = None
        self.port = None
        self.argv = None

    @staticmethod
    def flags(port, mem_mb):
        f = ["-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", str(mem_mb)]
        if os.geteuid() == 0:
            f += ["-u", "nobody"]   # both refuse to run as root otherwise
        return f

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self):
        deadline = time.monotonic() + self.wait_binary
        while not os.access(self.binary, os.X_OK):
            if time.monotonic() >= deadline:
                raise BenchError(f"{self.name}: binary {self.binary} is missing or not executable")
            log(f"  ({self.name}: {self.binary} missing, waiting for it to reappear)")
            time.sleep(5)
        self.logf = tempfile.TemporaryFile()
        for attempt in range(5):
            self.port = free_port()
            self.argv = [self.binary] + self.flags(self.port, self.mem_mb)
            try:
                self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                             stdout=self.logf, stderr=subprocess.STDOUT,
                                             start_new_session=True)
            except OSError as e:     # e.g. ETXTBSY while the binary is being rebuilt
                if attempt == 4:
                    raise BenchError(f"{self.name}: cannot execute {self.binary}: {e}")
                time.sleep(2)
                continue
            if self._wait_ready():
                return
            self.stop()
        raise BenchError(f"{self.name}: did not start; last command: {shlex.join(self.argv)}\n{self.log_tail()}")

    def _wait_ready(self):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                if b"bind" in self.log_tail().encode().lower():
                    return False         # port taken in the meantime: retry
                raise BenchError(f"{self.name} exited with status {self.proc.returncode} at start:\n"
                                 f"  {shlex.join(self.argv)}\n{self.log_tail()}")
            try:
                c = Client(self.port, timeout=2)
                c.sync()
                c.close()
                return True
            except (OSError, BenchError):
                time.sleep(0.05)
        raise BenchError(f"{self.name} did not answer within 10 s: {shlex.join(self.argv)}\n{self.log_tail()}")

    def log_tail(self, n=2000):
        if not self.logf:
            return ""
        self.logf.seek(0, os.SEEK_END)
        size = self.logf.tell()
        self.logf.seek(max(0, size - n))
        return self.logf.read().decode(errors="replace")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self):
        if not self.alive():
            raise BenchError(f"{self.name} died (exit status {self.proc.returncode}): "
                             f"{shlex.join(self.argv)}\n{self.log_tail()}")

    def rss(self):
        self.check_alive()
        return read_proc_status(self.proc.pid)

    def cpu(self):
        try:
            return read_proc_cpu(self.proc.pid)
        except OSError:
            return float("nan")

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            except ProcessLookupError:
                pass
        if self.logf:
            self.logf.close()
            self.logf = None


# --------------------------------------------------------------------------
# client: plain text protocol over one socket, strict request/reply

class Client:
    def __init__(self, port, timeout=SOCK_TIMEOUT):
        self.timeout = timeout
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.pos = 0

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        try:
            self.sock.sendall(data)
        except socket.timeout:
            raise BenchError(f"send timed out after {self.timeout:.0f} s (server not reading)")

    def _fill(self):
        if self.pos == len(self.buf):
            self.buf.clear()
            self.pos = 0
        elif self.pos > MB:
            del self.buf[:self.pos]
            self.pos = 0
        try:
            data = self.sock.recv(1 << 20)
        except socket.timeout:
            raise BenchError(f"no reply within {self.timeout:.0f} s")
        if not data:
            raise BenchError("server closed the connection")
        self.buf += data

    def read_line(self):
        while True:
            i = self.buf.find(b"\r\n", self.pos)
            if i >= 0:
                line = bytes(self.buf[self.pos:i])
                self.pos = i + 2
                return line
            self._fill()

    def skip(self, n):
        while len(self.buf) - self.pos < n:
            self._fill()
        self.pos += n

    def sync(self):
        """`version` round trip; returns any other lines that came before it."""
        self.send(b"version\r\n")
        other = []
        while True:
            line = self.read_line()
            if line.startswith(b"VERSION "):
                return other
            other.append(line)

    def stats(self, sub=b""):
        self.send(b"stats" + (b" " + sub if sub else b"") + b"\r\n")
        out = {}
        while True:
            line = self.read_line()
            if line == b"END":
                return out
            parts = line.split(b" ", 2)
            if parts[0] != b"STAT" or len(parts) < 3:
                raise BenchError(f"unexpected line in stats: {line[:100]!r}")
            out[parts[1].decode()] = parts[2].decode()


def stat_int(st, key, default=0):
    try:
        return int(st[key])
    except (KeyError, ValueError):
        return default


def slab_summary(cl):
    """(pages, idle bytes) from `stats slabs`: idle = free_chunks x chunk_size
    summed over the classes, memory given to a class that holds no item."""
    per = {}
    for k, v in cl.stats(b"slabs").items():
        cls, _, name = k.partition(":")
        if name in ("chunk_size", "free_chunks", "total_pages"):
            per.setdefault(cls, {})[name] = int(v)
    pages = sum(c.get("total_pages", 0) for c in per.values())
    idle = sum(c.get("free_chunks", 0) * c.get("chunk_size", 0) for c in per.values())
    return pages, idle


def fill(cl, prefix, start, count, vlen, batch=1000):
    """Pipelined `set <prefix><9 digits> 0 0 vlen noreply`, then a sync.

    Returns the lines the server sent although every set was noreply."""
    assert len(prefix) + 9 == KEY_LEN
    tmpl = (b"set " + prefix + b"%09d 0 0 " + str(vlen).encode() + b" noreply\r\n"
            + b"x" * vlen + b"\r\n")
    end = start + count
    for i in range(start, end, batch):
        cl.send(b"".join([tmpl % k for k in range(i, min(i + batch, end))]))
    return cl.sync()


# --------------------------------------------------------------------------
# Zipf key stream

class Zipf:
    """Ranks 0..n-1 with P(rank r) ~ 1/(r+1)^s: precomputed CDF + bisect."""

    def __init__(self, n, s=ZIPF_S):
        self.n = n
        self.cdf = array.array("d", itertools.accumulate(
            map(pow, range(1, n + 1), itertools.repeat(-s))))
        self.total = self.cdf[-1]
        # rank -> key index: multiply by a constant coprime with n, so the
        # popular keys are spread all over the key space.
        m = 2654435761 % n
        while math.gcd(m, n) != 1:
            m += 1
        self.mult = m

    def top_mass(self, k):
        """Share of requests that go to the k most popular keys."""
        if k <= 0:
            return 0.0
        return self.cdf[min(k, self.n) - 1] / self.total

    def stream(self, seed):
        rnd = random.Random(seed).random
        cdf, tot, n, m, bis = self.cdf, self.total, self.n, self.mult, bisect.bisect_right

        def batch(size):
            return [(bis(cdf, rnd() * tot) * m + 7919) % n for _ in range(size)]
        return batch


class OpCounter:
    __slots__ = ("gets", "hits", "sets", "stored", "oom", "other", "other_lines")

    def __init__(self):
        self.gets = self.hits = self.sets = self.stored = self.oom = self.other = 0
        self.other_lines = []

    @property
    def hit_ratio(self):
        return self.hits / self.gets if self.gets else float("nan")


class CacheAside:
    """get k1..k100 in one request; the misses are set (with replies, so
    out-of-memory errors are seen) in the same send as the next get."""

    def __init__(self, cl, next_batch, batch=100):
        self.cl = cl
        self.next_batch = next_batch
        self.batch = batch
        self.pending = []          # set commands not sent yet
        self.seen = None           # a set: collect the key indexes requested

    def run(self, prefix, vlen, ops=None, seconds=None, counter=None, tick=None, tick_every=None):
        cl, batch = self.cl, self.batch
        c = counter or OpCounter()
        assert len(prefix) + 8 == KEY_LEN
        kfmt = prefix + b"%08d"
        tmpl = b"set %s 0 0 " + str(vlen).encode() + b"\r\n" + b"x" * vlen + b"\r\n"
        t0 = time.monotonic()
        t_end = t0 + seconds if seconds is not None else None
        next_tick = t0 + tick_every if tick_every else None
        done = 0
        while True:
            if ops is not None and done >= ops:
                break
            if t_end is not None:
                now = time.monotonic()
                if now >= t_end:
                    break
                if next_tick is not None and now >= next_tick:
                    self.flush(c)
                    tick(now - t0)
                    next_tick += tick_every
            n = batch if ops is None else min(batch, ops - done)
            idx = self.next_batch(n)
            if self.seen is not None:
                self.seen.update(idx)
            keys = [kfmt % i for i in idx]
            pend = self.pending
            cl.send(b"".join(pend) + b"get " + b" ".join(keys) + b"\r\n")
            self._set_replies(c, len(pend))
            hit = set()
            read_line = cl.read_line
            while True:
                line = read_line()
                if line == b"END":
                    break
                if line.startswith(b"VALUE "):
                    parts = line.split()
                    hit.add(parts[1])
                    cl.skip(int(parts[3]) + 2)
                else:
                    raise BenchError(f"unexpected reply to get: {line[:200]!r}")
            missed = [k for k in keys if k not in hit]
            c.gets += n
            c.hits += n - len(missed)
            missed = set(missed)
            self.pending = [tmpl % k for k in missed]
            done += n
        self.flush(c)
        return c

    def warm(self, prefix, vlen, min_ops, maxbytes):
        """min_ops ops, and more until the distinct keys requested (each one
        set at its first miss) would fill maxbytes even without any overhead:
        the cache is then full on any server, and the number of warm-up ops
        depends only on the key stream, so it is the same on both servers."""
        target = maxbytes // (KEY_LEN + vlen)
        self.seen = set()
        c = self.run(prefix, vlen, ops=min_ops)
        while len(self.seen) < target:
            self.run(prefix, vlen, ops=50_000, counter=c)
        self.seen = None
        return c

    def _set_replies(self, c, n):
        c.sets += n
        for _ in range(n):
            line = self.cl.read_line()
            if line == b"STORED":
                c.stored += 1
            elif line.startswith(b"SERVER_ERROR out of memory"):
                c.oom += 1
            else:
                c.other += 1
                if len(c.other_lines) < 5:
                    c.other_lines.append(line[:200].decode(errors="replace"))

    def flush(self, c):
        if self.pending:
            self.cl.send(b"".join(self.pending))
            n = len(self.pending)
            self.pending = []
            self._set_replies(c, n)


# --------------------------------------------------------------------------
# bookkeeping

SERVERS = ("rmemcached", "memcached")


class Report:
    def __init__(self):
        self.rows = {}        # (section, metric) -> {"unit", "fmt", server: [values]}
        self.order = []
        self.runs = []        # one dict per server run
        self.notes = []
        self.timelines = []   # (label, server, rep, [(t, hit, gets, oom, curr_items, slabs_moved)])

    def add(self, section, metric, server, value, fmt="{:,.0f}", unit=""):
        key = (section, metric)
        if key not in self.rows:
            self.rows[key] = {"fmt": fmt, "unit": unit, "rmemcached": [], "memcached": []}
            self.order.append(key)
        self.rows[key][server].append(value)

    def note(self, msg):
        self.notes.append(msg)
        log("  NOTE: " + msg)


def mean(xs):
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return sum(xs) / len(xs) if xs else None


def settle_hash(cl, max_wait=20.0):
    """Wait for the hash table to finish growing: memcached checks for
    expansion once a second (clock handler) and grows one power at a time."""
    deadline = time.monotonic() + max_wait
    prev = None
    while True:
        st = cl.stats()
        hp, exp = stat_int(st, "hash_power_level"), stat_int(st, "hash_is_expanding")
        ci = stat_int(st, "curr_items")
        if not exp and (ci <= (1 << hp) * 3 // 2 or hp == prev) or time.monotonic() > deadline:
            return
        prev = None if exp else hp
        time.sleep(1.2)


def record_run(report, r, srv, workload, label, cl, t0, extra=None, error=None):
    """Section 5 line for one run: RSS against maxbytes + hash_bytes + slack."""
    row = {"workload": workload, "label": label, "server": srv.name, "rep": r + 1,
           "seconds": round(time.monotonic() - t0, 1), "command": shlex.join(srv.argv or []),
           "binary_sha256": getattr(srv, "digest", ""),
           "error": error or ""}
    try:
        st = cl.stats() if cl else {}
    except Exception as e:      # the server may be gone
        st = {}
        row["error"] = row["error"] or f"stats failed: {e}"
    try:
        mem = srv.rss()
    except Exception as e:
        mem = {}
        row["error"] = row["error"] or str(e).splitlines()[0]
    maxbytes = stat_int(st, "limit_maxbytes", srv.mem_mb * MB)
    hashb = stat_int(st, "hash_bytes", None)
    row.update({
        "maxbytes": maxbytes, "hash_bytes": hashb,
        "curr_items": stat_int(st, "curr_items", None), "evictions": stat_int(st, "evictions", None),
        "rss_end": mem.get("VmRSS"), "rss_peak": mem.get("VmHWM"), "server_cpu_s": round(srv.cpu(), 2),
    })
    if hashb is not None and mem:
        limit = maxbytes + hashb + SLACK
        row["limit"] = limit
        row["pass_end"] = "PASS" if mem["VmRSS"] <= limit else "FAIL"
        row["pass_peak"] = "PASS" if mem["VmHWM"] <= limit else "FAIL"
    else:
        row["limit"] = None
        row["pass_end"] = row["pass_peak"] = "n/a"
    if extra:
        row.update(extra)
    report.runs.append(row)
    return row


def run_pair(rep, args, workload, label, mem_mb, body, reps):
    """body(srv, cl, record) on rmemcached then memcached, `reps` times (A B A B)."""
    bins = {"rmemcached": args.rmemcached, "memcached": args.memcached}
    for r in range(reps):
        for name in SERVERS:
            log(f"[{workload}] {label}: {name} (rep {r + 1}/{reps})")
            t0 = time.monotonic()
            srv = Server(name, bins[name], mem_mb, wait_binary=args.wait_binary)
            cl = None
            try:
                srv.start()
                srv.digest = d = file_digest(srv.binary)[:12]
                if name == "rmemcached":
                    if d != args.rmc_digest:
                        rep.note(f"the rmemcached binary changed during the benchmark "
                                 f"(sha256 {args.rmc_digest} -> {d}); later rows use the new build")
                        args.rmc_digest = d
                cl = Client(srv.port)
                extra = body(srv, cl, r) or {}
                srv.check_alive()
                settle_hash(cl)
                record_run(rep, r, srv, workload, label, cl, t0, extra)
            except Exception as e:
                msg = f"{type(e).__name__}: {e}"
                if srv.proc is not None and not srv.alive():
                    msg += f" [server exit status {srv.proc.returncode}]"
                log(f"  ERROR in {name}: {msg}")
                rep.note(f"{workload} {label} on {name} failed: {msg.splitlines()[0]} "
                         f"(command: {shlex.join(srv.argv or [srv.binary])})")
                fresh = None
                if srv.alive():
                    try:
                        fresh = Client(srv.port, timeout=10)
                    except OSError:
                        fresh = None
                record_run(rep, r, srv, workload, label, fresh, t0, error=msg.splitlines()[0])
                if fresh:
                    fresh.close()
            finally:
                if cl:
                    cl.close()
                srv.stop()


# --------------------------------------------------------------------------
# workloads

def w1_items_stored(rep, args):
    mem = 64
    for vlen in (32, 100, 1000):
        sec = "1 items stored, -m 64"

        def body(srv, cl, r, vlen=vlen):
            upper = mem * MB // (KEY_LEN + vlen)           # nobody can store more than this
            step = max(1000, (upper // 40) // 1000 * 1000)
            cap = 4 * upper
            sent, stable, hist = 0, 0, []
            unexpected = []
            reason = "cap reached"
            while sent < cap:
                unexpected += fill(cl, b"k", sent, step, vlen)
                sent += step
                st = cl.stats()
                ci, ev = stat_int(st, "curr_items"), stat_int(st, "evictions")
                hist.append((sent, ci, ev))
                if len(hist) >= 2:
                    grew = ci - hist[-2][1]
                    if grew <= max(1, ci // 1000):
                        stable += 1
                    else:
                        stable = 0
                    if stable >= 2 and ev > hist[-2][2]:
                        reason = "plateau with evictions rising"
                        break
                    if stable >= 3 and ev == hist[-3][2]:
                        reason = "plateau WITHOUT evictions"
                        break
            ci, ev = hist[-1][1], hist[-1][2]
            if reason != "plateau with evictions rising":
                rep.note(f"w1 v={vlen} {srv.name}: stopped on '{reason}' after {sent:,} sets "
                         f"(curr_items {ci:,}, evictions {ev:,})")
            if unexpected:
                rep.note(f"w1 v={vlen} {srv.name}: {len(unexpected)} replies to noreply sets, "
                         f"first: {unexpected[0][:100]!r}")
            # the newest keys must be there
            last = [b"k%09d" % k for k in range(sent - 100, sent)]
            cl.send(b"get " + b" ".join(last) + b"\r\n")
            got = 0
            while True:
                line = cl.read_line()
                if line == b"END":
                    break
                got += 1
                cl.skip(int(line.split()[3]) + 2)
            if got != 100:
                rep.note(f"w1 v={vlen} {srv.name}: only {got}/100 of the most recently set keys are readable")
            rep.add(sec, f"curr_items, {vlen} B values", srv.name, ci)
            log(f"  curr_items {ci:,} evictions {ev:,} after {sent:,} sets ({reason})")
            return {"sets": sent, "curr_items_final": ci}

        run_pair(rep, args, "w1", f"v={vlen}", mem, body, args.reps)


def w2_rss_per_item(rep, args):
    mem, n, vlen = 1024, args.w2_items, 100
    sec = f"2 RSS, {n:,} x 100 B, -m 1024"

    def body(srv, cl, r):
        base = srv.rss()
        unexpected = []
        step = 50000
        for s in range(0, n, step):
            unexpected += fill(cl, b"k", s, min(step, n - s), vlen)
        settle_hash(cl)
        st = cl.stats()
        ci, ev = stat_int(st, "curr_items"), stat_int(st, "evictions")
        if ci != n or ev:
            rep.note(f"w2 {srv.name}: curr_items {ci:,} (expected {n:,}), evictions {ev:,}")
        if unexpected:
            rep.note(f"w2 {srv.name}: {len(unexpected)} replies to noreply sets, first: {unexpected[0][:100]!r}")
        m = srv.rss()
        items = ci or n
        rep.add(sec, "baseline RSS after start, MB", srv.name, base["VmRSS"] / MB, "{:.1f}")
        rep.add(sec, "peak RSS (VmHWM) per item, B", srv.name, m["VmHWM"] / items, "{:.1f}")
        rep.add(sec, "RSS (VmRSS) per item, B", srv.name, m["VmRSS"] / items, "{:.1f}")
        rep.add(sec, "(VmRSS - baseline) per item, B", srv.name, (m["VmRSS"] - base["VmRSS"]) / items, "{:.1f}")
        rep.add(sec, "(VmHWM - baseline) per item, B", srv.name, (m["VmHWM"] - base["VmRSS"]) / items, "{:.1f}")
        rep.add(sec, "stats bytes per item, B", srv.name, stat_int(st, "bytes") / items, "{:.1f}")
        log(f"  baseline {base['VmRSS'] / MB:.1f} MB, VmRSS {m['VmRSS'] / MB:.1f} MB, "
            f"VmHWM {m['VmHWM'] / MB:.1f} MB, curr_items {ci:,}")
        return {"sets": n, "rss_baseline": base["VmRSS"]}

    run_pair(rep, args, "w2", "1M x 100 B", mem, body, args.reps)


def zipf_for(args, rep):
    if args.zipf is None:
        mem = 64
        n = 10 * mem * MB // (KEY_LEN + 100)
        t = time.monotonic()
        args.zipf = Zipf(n)
        log(f"Zipf(s={ZIPF_S}) CDF over {n:,} keys built in {time.monotonic() - t:.1f} s")
    return args.zipf


def w3_zipf(rep, args):
    mem = 64
    z = zipf_for(args, rep)
    warm, measure = args.w3_ops
    sec = f"3 Zipf {ZIPF_S} cache-aside, -m 64, {z.n:,} keys x 100 B"

    def body(srv, cl, r):
        ca = CacheAside(cl, z.stream(SEED))
        t = time.monotonic()
        w = ca.warm(b"z:", 100, warm, mem * MB)
        st0 = cl.stats()
        t1 = time.monotonic()
        c = ca.run(b"z:", 100, ops=measure)
        t2 = time.monotonic()
        st = cl.stats()
        ci = stat_int(st, "curr_items")
        srv_hits = stat_int(st, "get_hits") - stat_int(st0, "get_hits")
        srv_gets = stat_int(st, "cmd_get") - stat_int(st0, "cmd_get")
        if srv_gets and abs(srv_hits / srv_gets - c.hit_ratio) > 0.001:
            rep.note(f"w3 {srv.name}: server-side hit ratio {srv_hits / srv_gets:.4f} differs from "
                     f"client-side {c.hit_ratio:.4f}")
        for cc, phase in ((w, "warm-up"), (c, "measured")):
            if cc.oom or cc.other:
                rep.note(f"w3 {srv.name} {phase}: {cc.oom} out-of-memory and {cc.other} other errors "
                         f"on {cc.sets:,} sets {cc.other_lines[:2]}")
        rep.add(sec, "hit ratio (measured window)", srv.name, c.hit_ratio, "{:.4f}")
        rep.add(sec, "curr_items at end", srv.name, ci)
        rep.add(sec, "stats bytes at end, MB", srv.name, stat_int(st, "bytes") / MB, "{:.1f}")
        rep.add(sec, "Zipf mass of top curr_items keys", srv.name, z.top_mass(ci), "{:.4f}")
        rep.add(sec, "evictions during measured window", srv.name,
                stat_int(st, "evictions") - stat_int(st0, "evictions"))
        rep.add(sec, "client ops/s (informative, client-bound)", srv.name, measure / (t2 - t1))
        log(f"  warm {w.gets:,} ops in {t1 - t:.1f} s; hit ratio {c.hit_ratio:.4f} over {measure:,} ops "
            f"({measure / (t2 - t1):,.0f} ops/s), curr_items {ci:,}")
        return {"ops": w.gets + measure, "hit_ratio": round(c.hit_ratio, 5), "ooms": w.oom + c.oom}

    run_pair(rep, args, "w3", "zipf 100 B", mem, body, args.reps)


def w4_shift(rep, args):
    mem, big = 64, 10240
    z = zipf_for(args, rep)
    warm = args.w3_ops[0]
    settle, window = args.w4_seconds
    tick_every = args.w4_tick
    sec = f"4 value size shift 100 B -> 10 KB, -m 64, {z.n:,} keys"

    def body(srv, cl, r):
        ca = CacheAside(cl, z.stream(SEED))
        w = ca.warm(b"z:", 100, warm, mem * MB)
        pre = ca.run(b"z:", 100, ops=args.w3_ops[1] // 4)
        st0 = cl.stats()
        log(f"  warm: {w.gets:,} + {pre.gets:,} ops, hit ratio {pre.hit_ratio:.4f}, curr_items {stat_int(st0, 'curr_items'):,}; "
            f"switching to {big} B values for {settle + window:.0f} s")
        timeline = []
        cur = OpCounter()
        last = [0, 0, 0]    # gets, hits, oom at the previous tick

        def tick(t):
            st = cl.stats()
            g, h, o = cur.gets - last[0], cur.hits - last[1], cur.oom - last[2]
            last[:] = [cur.gets, cur.hits, cur.oom]
            pages, idle = slab_summary(cl)
            timeline.append((round(t, 1), h / g if g else float("nan"), g, o,
                             stat_int(st, "curr_items"), stat_int(st, "bytes") / MB, idle / MB,
                             st.get("slabs_moved", "-"),
                             stat_int(st, "evictions") - stat_int(st0, "evictions")))

        t_start = time.monotonic()
        # settle phase: timeline ticks; then the measured window
        ca.run(b"y:", big, seconds=settle, counter=cur, tick=tick, tick_every=tick_every)
        tick(time.monotonic() - t_start)
        settle_c = cur
        cur = OpCounter()
        last[:] = [0, 0, 0]
        t_m = time.monotonic()
        ca.run(b"y:", big, seconds=window, counter=cur,
               tick=lambda t: tick(t + t_m - t_start), tick_every=tick_every)
        tick(time.monotonic() - t_start)
        c = cur
        st = cl.stats()
        ci = stat_int(st, "curr_items")
        rep.timelines.append((f"w4 after shift", srv.name, r, timeline))
        other = settle_c.other + c.other
        if other:
            rep.note(f"w4 {srv.name}: {other} unexpected set replies: {(settle_c.other_lines + c.other_lines)[:2]}")
        rep.add(sec, f"hit ratio before shift (last {pre.gets:,} ops of 100 B)", srv.name,
                pre.hit_ratio, "{:.4f}")
        rep.add(sec, f"hit ratio, last {window:.0f} s (after {settle:.0f} s of 10 KB)", srv.name,
                c.hit_ratio, "{:.4f}")
        rep.add(sec, f"hit ratio, first {settle:.0f} s after shift", srv.name, settle_c.hit_ratio, "{:.4f}")
        rep.add(sec, "OOM replies, all 10 KB sets", srv.name, settle_c.oom + c.oom)
        rep.add(sec, "10 KB sets sent", srv.name, settle_c.sets + c.sets)
        rep.add(sec, "OOM replies, measured window", srv.name, c.oom)
        pages, idle = slab_summary(cl)
        rep.add(sec, "curr_items at end", srv.name, ci)
        rep.add(sec, "stats bytes at end, MB", srv.name, stat_int(st, "bytes") / MB, "{:.1f}")
        rep.add(sec, "idle slab memory at end (free chunks x size), MB", srv.name, idle / MB, "{:.1f}")
        rep.add(sec, "slab pages at end", srv.name, pages)
        rep.add(sec, "slabs_moved at end", srv.name, stat_int(st, "slabs_moved", None))
        rep.add(sec, "Zipf mass of top curr_items keys", srv.name, z.top_mass(ci), "{:.4f}")
        rep.add(sec, "get ops after shift (informative)", srv.name, settle_c.gets + c.gets)
        log(f"  after shift: hit ratio {settle_c.hit_ratio:.4f} (first {settle:.0f} s), "
            f"{c.hit_ratio:.4f} (last {window:.0f} s); OOM {settle_c.oom + c.oom:,} of "
            f"{settle_c.sets + c.sets:,} sets; slabs_moved {st.get('slabs_moved', '-')}, curr_items {ci:,}, "
            f"bytes {stat_int(st, 'bytes') / MB:.1f} MB, idle slab memory {idle / MB:.1f} MB")
        return {"ops": w.gets + pre.gets + settle_c.gets + c.gets, "hit_ratio": round(c.hit_ratio, 5),
                "ooms": settle_c.oom + c.oom}

    run_pair(rep, args, "w4", "shift 100 B -> 10 KB", mem, body, args.reps4)


# --------------------------------------------------------------------------
# output

def fmt_val(fmt, v):
    if v is None:
        return "error"
    try:
        return fmt.format(v)
    except (ValueError, TypeError):
        return str(v)


def summary_rows(rep):
    out = []
    for key in rep.order:
        row = rep.rows[key]
        a, b = mean(row["rmemcached"]), mean(row["memcached"])
        ratio = (a / b) if (a is not None and b) else None
        reps = lambda xs: "/".join(fmt_val(row["fmt"], x) for x in xs) if len(xs) > 1 else ""
        out.append({"section": key[0], "metric": key[1],
                    "rmemcached": fmt_val(row["fmt"], a), "memcached": fmt_val(row["fmt"], b),
                    "ratio": "-" if ratio is None else f"{ratio:.3f}",
                    "rmemcached_reps": reps(row["rmemcached"]), "memcached_reps": reps(row["memcached"]),
                    "raw": (a, b, ratio)})
    return out


def table(headers, rows, aligns):
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    def line(cells):
        return "  ".join(str(c).rjust(w) if a == "r" else str(c).ljust(w)
                         for c, w, a in zip(cells, widths, aligns))
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def md_table(headers, rows, aligns):
    out = ["| " + " | ".join(headers) + " |",
           "|" + "|".join("---:" if a == "r" else "---" for a in aligns) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def mbs(x):
    return "-" if x is None else f"{x / MB:.1f}"


def render(rep, args, elapsed):
    summ = summary_rows(rep)
    H1 = ["workload", "metric", "rmemcached", "memcached", "ratio r/m", "reps (r)", "reps (m)"]
    A1 = ["l", "l", "r", "r", "r", "r", "r"]
    R1 = [[s["section"], s["metric"], s["rmemcached"], s["memcached"], s["ratio"],
           s["rmemcached_reps"], s["memcached_reps"]] for s in summ]
    H2 = ["run", "server", "maxbytes MB", "hash_bytes MB", "RSS end MB", "RSS peak MB",
          "limit MB", "end", "peak", "items", "srv CPU s", "build", "error"]
    A2 = ["l", "l", "r", "r", "r", "r", "r", "l", "l", "r", "r", "l", "l"]
    R2 = [[f"{r['workload']} {r['label']} #{r['rep']}", r["server"], mbs(r["maxbytes"]),
           "-" if r["hash_bytes"] is None else f"{r['hash_bytes'] / MB:.2f}",
           mbs(r["rss_end"]), mbs(r["rss_peak"]), mbs(r["limit"]), r["pass_end"], r["pass_peak"],
           "-" if r["curr_items"] is None else f"{r['curr_items']:,}", r["server_cpu_s"],
           r.get("binary_sha256", "")[:7], r["error"][:60]] for r in rep.runs]
    cmd_lines = [f"  {name}: {shlex.join([b] + Server.flags(0, 0)).replace('-p 0', '-p <free port>').replace('-m 0', '-m <64|1024>')}"
                 for name, b in (("rmemcached", args.rmemcached), ("memcached", args.memcached))]
    head = [f"rmemcached memory benchmark ({'quick' if args.quick else 'full'} run, "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')}, {elapsed:.0f} s)",
            f"rmemcached binary sha256 {args.rmc_digest_start}, built "
            f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(args.rmc_mtime))}; memcached {args.mc_version}",
            "server command lines (one fresh server per run; -m 64 except workload 2, -m 1024):"] + cmd_lines
    text = "\n".join(head) + "\n\n" + table(H1, R1, A1) + "\n\n" + \
        f"5. RSS bound per run: PASS when RSS <= maxbytes + hash_bytes + {SLACK // MB} MB " \
        "('end' = VmRSS at the end, 'peak' = VmHWM)\n" + table(H2, R2, A2)
    if rep.notes:
        text += "\n\nNotes:\n" + "\n".join("  - " + n for n in rep.notes)

    md = ["## Memory benchmark results", "",
          f"{'Quick' if args.quick else 'Full'} run of `bench/memory.py`, "
          f"{time.strftime('%Y-%m-%d %H:%M:%S')}, {elapsed:.0f} s. "
          f"rmemcached sha256 `{args.rmc_digest_start}`; memcached {args.mc_version}.", "",
          "Server command lines (one fresh server per run):", "", "```"] + \
         [c.strip() for c in cmd_lines] + ["```", "", md_table(H1, R1, A1), "",
         f"### RSS bound per run (limit = maxbytes + hash_bytes + {SLACK // MB} MB)", "",
         md_table(H2, R2, A2)]
    if rep.timelines:
        md += ["", "### Workload 4 timeline after the shift to 10 KB values", ""]
        for label, name, r, tl in rep.timelines:
            md += [f"{name} (rep {r + 1}):", "",
                   md_table(["t s", "hit ratio", "gets", "OOM replies", "curr_items", "bytes MB",
                             "idle slab MB", "slabs_moved", "evictions since shift"],
                            [[t, f"{h:.3f}", f"{g:,}", f"{o:,}", f"{ci:,}", f"{b:.1f}", f"{i:.1f}", sm, f"{ev:,}"]
                             for t, h, g, o, ci, b, i, sm, ev in tl], ["r"] * 9), ""]
    if rep.notes:
        md += ["", "### Notes", ""] + ["- " + n for n in rep.notes]
    return text, "\n".join(md) + "\n", summ


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="10x fewer ops, short shift phase (~1.5 min)")
    ap.add_argument("--only", default="1,2,3,4", help="workloads to run, e.g. 1,3 (default all)")
    ap.add_argument("--reps", type=int, help="A B repetitions of workloads 1-3 (default 2, quick 1)")
    ap.add_argument("--reps4", type=int, help="repetitions of workload 4 (default 2, quick 1)")
    ap.add_argument("--rmemcached", default=RMC_BIN)
    ap.add_argument("--memcached", default=MC_BIN)
    ap.add_argument("--wait-binary", type=float, default=120,
                    help="seconds to wait for a missing binary to reappear (rebuilds)")
    ap.add_argument("--out", default=RESULTS)
    args = ap.parse_args()

    for name, b in (("rmemcached", args.rmemcached), ("memcached", args.memcached)):
        if not os.access(b, os.X_OK):
            hint = "build it with `make build`" if name == "rmemcached" else \
                "install memcached 1.6 (apt-get install memcached) or pass --memcached PATH"
            sys.exit(f"error: {name} binary {b} not found or not executable; {hint}")
    args.mc_version = subprocess.run([args.memcached, "-V"], capture_output=True, text=True,
                                     timeout=10).stdout.strip()
    args.rmc_digest = args.rmc_digest_start = file_digest(args.rmemcached)
    args.rmc_mtime = os.path.getmtime(args.rmemcached)
    args.reps = args.reps or (1 if args.quick else 2)
    args.reps4 = args.reps4 or (1 if args.quick else 2)
    args.w2_items = 1_000_000
    args.w3_ops = (200_000, 200_000) if args.quick else (2_000_000, 2_000_000)
    args.w4_seconds = (10.0, 5.0) if args.quick else (45.0, 30.0)
    args.w4_tick = 2.5 if args.quick else 5.0
    args.zipf = None
    only = {int(x) for x in args.only.split(",") if x.strip()}

    def on_term(signum, frame):
        raise KeyboardInterrupt     # stop the servers (finally) and write what we have
    signal.signal(signal.SIGTERM, on_term)

    rep = Report()
    t0 = time.monotonic()
    try:
        for n, fn in ((1, w1_items_stored), (2, w2_rss_per_item), (3, w3_zipf), (4, w4_shift)):
            if n in only:
                fn(rep, args)
    except KeyboardInterrupt:
        rep.note("interrupted: partial results")
    elapsed = time.monotonic() - t0
    text, md, summ = render(rep, args, elapsed)
    print("\n" + text)

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "memory.md"), "w") as f:
        f.write(md)
    with open(os.path.join(args.out, "memory.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["workload", "metric", "rmemcached", "memcached", "ratio_r_over_m",
                    "rmemcached_reps", "memcached_reps"])
        for key, s in zip(rep.order, summ):
            row = rep.rows[key]
            a, b, ratio = s["raw"]
            w.writerow([key[0], key[1], a, b, ratio, " ".join(map(str, row["rmemcached"])),
                        " ".join(map(str, row["memcached"]))])
    fields = ["workload", "label", "server", "rep", "seconds", "maxbytes", "hash_bytes", "rss_end",
              "rss_peak", "limit", "pass_end", "pass_peak", "curr_items", "evictions", "server_cpu_s",
              "sets", "ops", "hit_ratio", "ooms", "rss_baseline", "error", "binary_sha256", "command"]
    with open(os.path.join(args.out, "memory_runs.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for r in rep.runs:
            w.writerow(r)
    log(f"\nwrote {os.path.relpath(args.out, os.getcwd())}/memory.csv, memory.md, memory_runs.csv "
        f"({elapsed:.0f} s)")
    return 1 if any(r["error"] for r in rep.runs) else 0


if __name__ == "__main__":
    sys.exit(main())

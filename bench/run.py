#!/usr/bin/env python3
"""Throughput, latency, CPU per request: rmemcached (epoll, io_uring), memcached.

    .venv/bin/python bench/run.py [--quick] [--only small-p1,zipf-read]
                                  [--seconds 8] [--rounds 2] [--driver auto]
                                  [--no-uring]
    make bench [ARGS="--quick"] [MEMTIER=/path/to/memtier_benchmark]

Three servers: rmemcached (epoll), rmemcached-uring (the same binary with
-o io_uring; --no-uring or BENCH_NO_URING=1 leaves it out) and memcached.
All are started here (fresh for every run, same flags, free ports on
127.0.0.1, -U 0, -t 1, -u nobody when root), the server pinned to one core
and the load generator (and this script) to the other.  The load comes from
memtier_benchmark when $MEMTIER is set or it is on PATH, else from the
bundled target/release/rmc-loadgen.  Every workload is prefilled, warmed up,
then measured; servers alternate rmemcached, rmemcached-uring, memcached,
rmemcached, ...; medians over the rounds are reported.

Server CPU is utime+stime from /proc/<pid>/stat, sampled every 25 ms and
interpolated to the measured interval only (prefill, warm-up, connection
set-up and tear-down excluded).  bench/README.md has the details.

Results: one table on stdout, and bench/results/bench-<timestamp>.{csv,txt,png}
(the PNG needs matplotlib: `make deps-bench`; without it the plot is skipped).
Standard library only otherwise.
"""

import argparse
import bisect
import csv
import datetime
import hashlib
import json
import math
import os
import platform
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RMC_BIN = os.path.join(ROOT, "target", "release", "rmemcached")
MC_BIN = "/usr/bin/memcached"
LOADGEN_BIN = os.path.join(ROOT, "target", "release", "rmc-loadgen")
RESULTS = os.path.join(ROOT, "bench", "results")

CLK_TCK = os.sysconf("SC_CLK_TCK")
SAMPLE_PERIOD = 0.025     # CPU sampling period (s)
STATS_PERIOD = 0.5        # `stats` polling period (s)
FD_PERIOD = 0.5           # /proc/<server>/fd counting period (s)
SATURATED = 0.90          # a process using >= 90% of its core is saturated
SERVERS = ("rmemcached", "rmemcached-uring", "memcached")   # the order of a round
URING = "rmemcached-uring"
URING_FLAGS = ["-o", "io_uring"]
# Output of rmemcached-uring that fails its run: it is not on io_uring.
URING_REFUSED = ("falling back to epoll",)
# Ratio rows: (numerator server, table label), each over memcached.
RATIOS = (("rmemcached", "rmc/mc"), (URING, "uring/mc"))
SERVER_W = max(len(s) for s in SERVERS)   # width of the table's server column
KEY_PREFIX = "key:"


class BenchError(Exception):
    pass


def log(msg=""):
    print(msg, flush=True)


# --------------------------------------------------------------------------
# workloads

class Workload:
    def __init__(self, name, desc, ratio="1:10", value=32, pipeline=1,
                 conns=50, idle=0, multiget=1, keys=100_000, quick_keys=None,
                 pattern="uniform"):
        self.name = name
        self.desc = desc
        self.ratio = ratio
        self.value = value
        self.pipeline = pipeline
        self.conns = conns
        self.idle = idle
        self.multiget = multiget
        self.keys = keys
        self.quick_keys = quick_keys or keys
        self.pattern = pattern

    def set_fraction(self):
        s, g = (int(x) for x in self.ratio.split(":"))
        return s / (s + g)


WORKLOADS = [
    Workload("small-p1", "set:get 1:10, 32 B values, pipeline 1, 50 connections"),
    Workload("small-p16", "set:get 1:10, 32 B values, pipeline 16, 50 connections",
             pipeline=16),
    Workload("mixed-1k", "set:get 1:1, 1 KB values, pipeline 1, 50 connections",
             ratio="1:1", value=1024),
    Workload("mget-100", "100-key multi-get (one get of 100 keys per request), "
             "set:get 1:10, 32 B, 50 connections", multiget=100),
    Workload("idle-10k", "10,000 idle connections + 50 busy ones "
             "(as small-p1 otherwise)", idle=10_000),
    Workload("large-100k", "100 KB values, set:get 1:10, pipeline 1, 50 connections",
             value=100 * 1024, keys=4_000, quick_keys=1_000),
    Workload("zipf-read", "Zipf s=0.99 over 1M keys, set:get 1:20, 32 B, "
             "pipeline 1, 50 connections", ratio="1:20", keys=1_000_000,
             quick_keys=100_000, pattern="zipf:0.99"),
]
WORKLOAD_BY_NAME = {w.name: w for w in WORKLOADS}


# --------------------------------------------------------------------------
# /proc helpers

def proc_times(pid):
    """(utime, stime) of pid (all threads) in seconds, or None when gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def proc_cpu(pid):
    """utime+stime of pid (all threads) in seconds, or None when gone."""
    t = proc_times(pid)
    return None if t is None else t[0] + t[1]


def cpu_busy():
    """{cpu index: busy seconds} from /proc/stat (everything but idle and
    iowait, so irq/softirq time the kernel charges to no process counts)."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if not line.startswith("cpu") or line.startswith("cpu "):
                continue
            parts = line.split()
            vals = [int(v) for v in parts[1:9]]
            idle = vals[3] + vals[4]
            out[int(parts[0][3:])] = (sum(vals) - idle) / CLK_TCK
    return out


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def file_digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:12]


def interp(series, t):
    """Linear interpolation in a list of (time, value), clamped at the ends."""
    if not series:
        return None
    times = [s[0] for s in series]
    i = bisect.bisect_left(times, t)
    if i <= 0:
        return series[0][1]
    if i >= len(series):
        return series[-1][1]
    (t0, v0), (t1, v1) = series[i - 1], series[i]
    if t1 == t0:
        return v1
    return v0 + (v1 - v0) * (t - t0) / (t1 - t0)


# --------------------------------------------------------------------------
# pinning

class Pinning:
    """Server on one core, load (and this script) on another.  Uses taskset
    when present; without it the same affinity is set with
    sched_setaffinity() in the child before exec."""

    def __init__(self, server_cpu=None, load_cpu=None, disabled=False):
        cpus = sorted(os.sched_getaffinity(0))
        self.taskset = shutil.which("taskset")
        self.enabled = not disabled and len(cpus) >= 2
        self.server_cpu = server_cpu if server_cpu is not None else (cpus[-1] if cpus else 0)
        self.load_cpu = load_cpu if load_cpu is not None else (cpus[0] if cpus else 0)
        if self.enabled and self.server_cpu == self.load_cpu:
            raise BenchError("server and load must be pinned to different cores")
        if disabled:
            self.how = "off (--no-pin): server and load share the cores"
        elif len(cpus) < 2:
            self.how = f"off: only {len(cpus)} usable core(s); server and load share it"
        elif self.taskset:
            self.how = (f"taskset -c {self.server_cpu} for the server, "
                        f"taskset -c {self.load_cpu} for the load generator and this script")
        else:
            self.how = (f"taskset not found: sched_setaffinity() instead, server on cpu "
                        f"{self.server_cpu}, load and this script on cpu {self.load_cpu}")

    def pin_self(self):
        if self.enabled:
            os.sched_setaffinity(0, {self.load_cpu})

    def wrap(self, argv, cpu):
        """(argv, preexec_fn) running argv pinned to cpu."""
        if not self.enabled:
            return argv, None
        if self.taskset:
            return [self.taskset, "-c", str(cpu)] + argv, None
        return argv, (lambda: os.sched_setaffinity(0, {cpu}))

    def check(self, pid, cpu):
        """The CPU list the kernel reports for pid, or None when unpinned."""
        if not self.enabled:
            return None
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("Cpus_allowed_list:"):
                        got = line.split(":", 1)[1].strip()
                        if got != str(cpu):
                            raise BenchError(f"pid {pid} runs on cpus {got}, wanted {cpu}")
                        return got
        except OSError:
            return None
        return None


# --------------------------------------------------------------------------
# servers

def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"server exited with status {proc.returncode} at start")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise BenchError(f"port {port} did not open within {timeout:.0f} s")


def stats_once(port, timeout=5.0):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        return stats_on(s)


def recv_until(sock, end, closed):
    """Reads from sock until the bytes read end with `end`; raises `closed`
    if the peer closes first."""
    buf = b""
    while not buf.endswith(end):
        chunk = sock.recv(65536)
        if not chunk:
            raise closed
        buf += chunk
    return buf


def stats_on(sock):
    sock.sendall(b"stats\r\n")
    buf = recv_until(sock, b"END\r\n", OSError("connection closed during stats"))
    out = {}
    for line in buf.decode(errors="replace").split("\r\n"):
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[0] == "STAT":
            out[parts[1]] = parts[2]
    return out


class Server:
    def __init__(self, name, binary, mem_mb, conn_limit, pinning, extra=(), refused=()):
        self.extra = list(extra)
        self.refused = refused   # output that fails the run (check_output)
        self.name = name
        self.binary = binary
        self.mem_mb = mem_mb
        self.conn_limit = conn_limit
        self.pinning = pinning
        self.proc = None
        self.port = None
        self.argv = None
        self.logf = None

    def flags(self, port):
        f = ["-l", "127.0.0.1", "-p", str(port), "-U", "0", "-t", "1",
             "-m", str(self.mem_mb), "-c", str(self.conn_limit)]
        if os.geteuid() == 0:
            f += ["-u", "nobody"]   # both refuse to run as root otherwise
        return f + self.extra

    @property
    def pid(self):
        return self.proc.pid

    def start(self):
        if not os.access(self.binary, os.X_OK):
            raise BenchError(f"{self.name}: {self.binary} is missing or not executable")
        self.sha = file_digest(self.binary)
        self.logf = tempfile.TemporaryFile()
        last = None
        for _ in range(3):
            self.port = free_port()
            self.argv = [self.binary] + self.flags(self.port)
            argv, pre = self.pinning.wrap(self.argv, self.pinning.server_cpu)
            # The backend is chosen by the flags alone, not by the environment.
            env = {k: v for k, v in os.environ.items() if k != "RMEMCACHED_IO_URING"}
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.logf,
                                         stderr=subprocess.STDOUT, preexec_fn=pre,
                                         start_new_session=True, env=env)
            try:
                wait_port(self.port, self.proc)
                break
            except BenchError as e:
                last = e
                self.stop()
        else:
            raise BenchError(f"{self.name} did not start: {last}; output: {self.output()!r}")
        try:
            exe = os.path.realpath(f"/proc/{self.pid}/exe")
            if exe != os.path.realpath(self.binary):
                raise BenchError(f"{self.name}: pid {self.pid} runs {exe}, not {self.binary}")
            self.pinning.check(self.pid, self.pinning.server_cpu)
            self.check_output()
        except BaseException:
            self.stop()
            raise

    def output(self, tail=2000):
        if self.logf is None:
            return ""
        self.logf.seek(0)
        return self.logf.read()[-tail:].decode(errors="replace")

    def check_output(self):
        """BenchError with the line of the server's output that says it does
        not run as asked (rmemcached-uring falling back to epoll)."""
        for line in self.output(tail=1 << 20).splitlines():
            if any(s in line for s in self.refused):
                raise BenchError(f"{self.name}: {line.strip()}")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            # Nothing here cares how the server exits, and memcached takes up
            # to a second to act on SIGTERM.
            self.proc.kill()
        if self.proc is not None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


def stop_debian_service():
    """Stop the memcached the Debian package starts on 11211, if running."""
    if not os.path.exists("/etc/init.d/memcached") or not shutil.which("service"):
        return None
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    try:
        st = subprocess.run(["service", "memcached", "status"], capture_output=True,
                            timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if st.returncode != 0:
        return None
    r = subprocess.run(prefix + ["service", "memcached", "stop"], capture_output=True,
                       timeout=30)
    if r.returncode == 0:
        return "stopped the Debian memcached service (it was running)"
    return ("could not stop the running Debian memcached service: "
            + (r.stderr or r.stdout).decode(errors="replace").strip())


# --------------------------------------------------------------------------
# sampling during a run

class Sampler(threading.Thread):
    """CPU of server, load generator, this script and every core, every
    SAMPLE_PERIOD; the server's `stats` every STATS_PERIOD; its fd count
    every FD_PERIOD."""

    def __init__(self, server, load_pid, count_fds):
        super().__init__(daemon=True)
        self.server = server
        self.load_pid = load_pid
        self.count_fds = count_fds
        self.stop_event = threading.Event()
        # (t, server_cpu, load_cpu, self_cpu, {cpu: busy}, server_user_cpu)
        self.cpu = []
        self.stats = []      # (t, stats dict)
        self.fd_max = None
        self.stats_error = None

    def take(self):
        t = time.monotonic()
        tm = os.times()
        srv = proc_times(self.server.pid)
        self.cpu.append((t, None if srv is None else srv[0] + srv[1],
                         proc_cpu(self.load_pid), tm.user + tm.system, cpu_busy(),
                         None if srv is None else srv[0]))

    def run(self):
        sock = None
        try:
            sock = socket.create_connection(("127.0.0.1", self.server.port), timeout=5)
        except OSError as e:
            self.stats_error = f"stats connection failed: {e}"
        next_stats = next_fd = 0.0
        while True:
            self.take()
            now = time.monotonic()
            if sock is not None and now >= next_stats:
                next_stats = now + STATS_PERIOD
                try:
                    st = stats_on(sock)
                    self.stats.append(((now + time.monotonic()) / 2, st))
                except OSError as e:
                    self.stats_error = f"stats polling failed: {e}"
                    sock.close()
                    sock = None
            if self.count_fds and now >= next_fd:
                next_fd = now + FD_PERIOD
                n = fd_count(self.server.pid)
                if n is not None:
                    self.fd_max = n if self.fd_max is None else max(self.fd_max, n)
            if self.stop_event.wait(SAMPLE_PERIOD):
                break
        self.take()
        if sock is not None:
            sock.close()

    def finish(self):
        self.stop_event.set()
        self.join(timeout=10)

    def series(self, idx, cpu=None):
        out = []
        for s in self.cpu:
            v = s[idx] if cpu is None else s[4].get(cpu)
            if v is not None:
                out.append((s[0], v))
        return out

    def delta(self, idx, t0, t1, cpu=None):
        ser = self.series(idx, cpu)
        if len(ser) < 2:
            return None
        a, b = interp(ser, t0), interp(ser, t1)
        return None if a is None or b is None else b - a

    def all_cores_delta(self, t0, t1):
        cores = self.cpu[0][4].keys() if self.cpu else []
        ds = [self.delta(4, t0, t1, c) for c in cores]
        return sum(d for d in ds if d is not None)

    def stat_rate(self, name, t0, t1):
        """Per-second rate of a `stats` counter from the polls inside the
        measured interval (the polls need not bracket it)."""
        ser = []
        for t, st in self.stats:
            if t0 <= t <= t1 and name in st:
                try:
                    ser.append((t, float(st[name])))
                except ValueError:
                    pass
        if len(ser) < 2 or ser[-1][0] - ser[0][0] < 0.4 * (t1 - t0):
            return None
        return (ser[-1][1] - ser[0][1]) / (ser[-1][0] - ser[0][0])


# --------------------------------------------------------------------------
# drivers

def fmt_num(x):
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


class IdleConnections:
    """n idle connections held by this process (the memtier driver has no
    such option), each after one `version` round trip."""

    def __init__(self, port, n):
        self.socks = []
        try:
            for _ in range(n):
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
                self.socks.append(s)
            for s in self.socks:
                s.sendall(b"version\r\n")
            for s in self.socks:
                recv_until(s, b"\r\n", BenchError("idle connection closed by the server"))
        except BaseException:
            self.close()
            raise

    def close(self):
        for s in self.socks:
            s.close()
        self.socks = []


class LoadgenDriver:
    name = "rmc-loadgen"

    def __init__(self, binary, protocol):
        self.binary = binary
        self.protocol = protocol

    def describe(self):
        return f"{self.binary} (sha256 {file_digest(self.binary)})"

    def check(self):
        if not os.access(self.binary, os.X_OK):
            raise BenchError(f"load generator {self.binary} is missing: `cargo build "
                             f"--release` (make build) builds it, or install "
                             f"memtier_benchmark / set $MEMTIER")

    def argv(self, wl, port, keys, seconds, warmup):
        return [self.binary, "--server", f"127.0.0.1:{port}",
                "--connections", str(wl.conns), "--idle-connections", str(wl.idle),
                "--pipeline", str(wl.pipeline), "--ratio", wl.ratio,
                "--keys", str(keys), "--key-pattern", wl.pattern,
                "--key-prefix", KEY_PREFIX, "--value-size", str(wl.value),
                "--multiget", str(wl.multiget), "--protocol", self.protocol,
                "--duration", fmt_num(seconds), "--warmup", fmt_num(warmup),
                "--prefill", "--json"]

    def run(self, wl, server, pinning, keys, seconds, warmup):
        """One process: connect, prefill, warm up, measure, print JSON."""
        argv = self.argv(wl, server.port, keys, seconds, warmup)
        cmd, pre = pinning.wrap(argv, pinning.load_cpu)
        errf = tempfile.TemporaryFile()
        t_spawn = time.monotonic()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=errf, preexec_fn=pre)
        sampler = Sampler(server, proc.pid, count_fds=wl.idle > 0)
        sampler.start()
        first = {}

        def reader():
            b = proc.stdout.read(1)
            first["t"] = time.monotonic()
            first["data"] = b + proc.stdout.read()

        rt = threading.Thread(target=reader, daemon=True)
        rt.start()
        # Prefill of the largest key space plus 10,000 connections fit easily.
        limit = 180 + seconds + warmup + keys * max(wl.value, 100) / 50e6
        try:
            proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            sampler.finish()
            raise BenchError(f"rmc-loadgen did not finish within {limit:.0f} s: "
                             f"{' '.join(argv)}")
        except BaseException:
            proc.kill()
            proc.wait()
            sampler.finish()
            raise
        rt.join(timeout=10)
        sampler.finish()
        errf.seek(0)
        err = errf.read().decode(errors="replace").strip()
        if proc.returncode != 0:
            raise BenchError(f"rmc-loadgen exited with status {proc.returncode}: "
                             f"{err[-1500:] or '(no message)'}\n  command: {' '.join(argv)}")
        try:
            res = json.loads(first.get("data", b"").decode())
        except ValueError as e:
            raise BenchError(f"rmc-loadgen printed no JSON object ({e}): "
                             f"{first.get('data', b'')[:500]!r}")
        missing = [k for k in ("ops", "seconds", "ops_per_sec", "gets", "sets", "hits",
                               "misses", "errors", "p50_us", "p99_us", "p999_us", "max_us")
                   if k not in res]
        if missing:
            raise BenchError(f"rmc-loadgen's JSON lacks {missing}: {res}")
        # The measured interval: from the generator itself when it reports it
        # (CLOCK_MONOTONIC seconds, the clock of time.monotonic()), else the
        # `seconds` before its output appeared (which also holds the drain
        # of in-flight replies and the closing of its connections, a few ms).
        notes = []
        t_end = first["t"]
        t_start = t_end - float(res["seconds"])
        ms, me = res.get("start_monotonic"), res.get("end_monotonic")
        if ms is not None and me is not None:
            ms, me = float(ms), float(me)
            if t_spawn <= ms < me <= t_end + 0.01 and abs((me - ms) - res["seconds"]) < 0.01:
                t_start, t_end = ms, me
            else:
                notes.append(f"start_monotonic/end_monotonic {ms:.3f}/{me:.3f} do not fit "
                             f"the run ({t_spawn:.3f}..{t_end:.3f}, {res['seconds']} s): "
                             f"ignored")
        if t_start < t_spawn:
            notes.append(f"the measured interval ({res['seconds']:.2f} s) starts before "
                         f"rmc-loadgen was started ({t_end - t_spawn:.2f} s before its "
                         f"output): `seconds` looks wrong")
        if err:
            notes.append("rmc-loadgen stderr: " + err[-300:].replace("\n", " | "))
        out = {k: res[k] for k in ("ops", "seconds", "ops_per_sec", "gets", "sets", "hits",
                                   "misses", "errors", "p50_us", "p99_us", "p999_us",
                                   "max_us")}
        out["reported_connections"] = res.get("connections")
        out["reported_pipeline"] = res.get("pipeline")
        return out, sampler, t_start, t_end, argv, notes


class MemtierDriver:
    name = "memtier_benchmark"

    def __init__(self, binary, protocol):
        self.binary = binary
        if protocol == "meta":
            raise BenchError("memtier_benchmark has no meta protocol; use --driver loadgen")
        self.protocol = {"text": "memcache_text", "binary": "memcache_binary"}[protocol]

    def describe(self):
        try:
            v = subprocess.run([self.binary, "--version"], capture_output=True, timeout=10)
            first = (v.stdout or v.stderr).decode(errors="replace").splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            first = "version unknown"
        return f"{self.binary} ({first})"

    def check(self):
        if not os.access(self.binary, os.X_OK):
            raise BenchError(f"memtier_benchmark {self.binary} is missing or not executable")

    @staticmethod
    def pattern(p):
        if p == "uniform":
            return ["--key-pattern=R:R"]
        if p == "sequential":
            return ["--key-pattern=S:S"]
        if p.startswith("zipf:"):
            return ["--key-pattern=Z:Z", f"--key-zipf-exp={p.split(':', 1)[1]}"]
        raise BenchError(f"no memtier key pattern for {p}")

    def base(self, wl, port, keys):
        return [self.binary, "-s", "127.0.0.1", "-p", str(port),
                f"--protocol={self.protocol}", "--threads=1", f"--clients={wl.conns}",
                f"--data-size={wl.value}", f"--key-prefix={KEY_PREFIX}",
                "--key-minimum=1", f"--key-maximum={keys}", "--hide-histogram"]

    def _run(self, argv, pinning, timeout, what):
        cmd, pre = pinning.wrap(argv, pinning.load_cpu)
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, preexec_fn=pre, timeout=timeout)
        if r.returncode != 0:
            raise BenchError(f"memtier_benchmark ({what}) exited with {r.returncode}: "
                             f"{r.stderr.decode(errors='replace')[-1500:]}\n"
                             f"  command: {' '.join(argv)}")

    def run(self, wl, server, pinning, keys, seconds, warmup):
        base = self.base(wl, server.port, keys)
        # Prefill: every key once, in order.
        self._run(base + ["--ratio=1:0", "--key-pattern=P:P", "--requests=allkeys",
                          f"--pipeline={max(wl.pipeline, 16)}"], pinning, 600, "prefill")
        work = base + [f"--ratio={wl.ratio}", f"--pipeline={wl.pipeline}"] + self.pattern(wl.pattern)
        if wl.multiget > 1:
            work.append(f"--multi-key-get={wl.multiget}")
        idle = IdleConnections(server.port, wl.idle) if wl.idle else None
        try:
            if warmup > 0:
                self._run(work + [f"--test-time={max(1, math.ceil(warmup))}"], pinning,
                          120 + warmup, "warm-up")
            fd, jpath = tempfile.mkstemp(suffix=".json")
            os.close(fd)
            test_time = max(1, math.ceil(seconds))
            argv = work + [f"--test-time={test_time}", f"--json-out-file={jpath}",
                           "--print-percentiles=50,99,99.9"]
            cmd, pre = pinning.wrap(argv, pinning.load_cpu)
            errf = tempfile.TemporaryFile()
            wall0 = time.time() - time.monotonic()
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=errf, preexec_fn=pre)
            sampler = Sampler(server, proc.pid, count_fds=wl.idle > 0)
            sampler.start()
            try:
                proc.wait(timeout=180 + test_time)
            except BaseException:
                proc.kill()
                proc.wait()
                if not isinstance(sys.exc_info()[1], subprocess.TimeoutExpired):
                    sampler.finish()
                    raise
            t_exit = time.monotonic()
            sampler.finish()
        finally:
            if idle is not None:
                idle.close()
        errf.seek(0)
        if proc.returncode != 0:
            raise BenchError(f"memtier_benchmark exited with {proc.returncode}: "
                             f"{errf.read().decode(errors='replace')[-1500:]}\n"
                             f"  command: {' '.join(argv)}")
        with open(jpath) as f:
            doc = json.load(f)
        os.unlink(jpath)
        res, t_start, t_end = self.parse(doc, test_time, wall0, t_exit, wl)
        return res, sampler, t_start, t_end, argv, []

    @staticmethod
    def parse(doc, test_time, wall0, t_exit, wl):
        allst = doc["ALL STATS"]
        tot = allst["Totals"]
        gets = allst.get("Gets", {})
        sets = allst.get("Sets", {})
        rt = allst.get("Runtime", {})
        start_ms, finish_ms = rt.get("Start time"), rt.get("Finish time")
        if (start_ms and finish_ms and finish_ms > start_ms
                and abs((finish_ms - start_ms) / 1000 - test_time) < 0.2 * test_time + 1):
            seconds = (finish_ms - start_ms) / 1000
            t_end = finish_ms / 1000 - wall0
        else:
            seconds = float(doc.get("run information", {}).get(
                "Actual benchmark duration (seconds)", test_time))
            t_end = t_exit
        pct = tot.get("Percentile Latencies", {})

        def p(key):
            v = pct.get(key)
            return None if v is None else float(v) * 1000.0   # ms -> us

        n_gets = int(gets.get("Count", 0))
        res = {
            "ops": int(tot["Count"]),
            "seconds": seconds,
            "ops_per_sec": int(tot["Count"]) / seconds if seconds else float(tot["Ops/sec"]),
            "gets": n_gets,
            "sets": int(sets.get("Count", 0)),
            "hits": int(round(float(gets.get("Hits/sec", 0)) * seconds)),
            "misses": int(round(float(gets.get("Misses/sec", 0)) * seconds)),
            "errors": 0,
            "p50_us": p("p50.00"),
            "p99_us": p("p99.00"),
            "p999_us": p("p99.90"),
            "max_us": float(tot.get("Max Latency", 0)) * 1000.0,
            "reported_connections": wl.conns,
            "reported_pipeline": wl.pipeline,
        }
        return res, t_end - seconds, t_end


# --------------------------------------------------------------------------
# one measured run

def measure(wl, server_name, binary, driver, pinning, args, rnd):
    keys = wl.quick_keys if args.quick else wl.keys
    extra = shlex.split(args.rmemcached_args) if server_name != "memcached" else []
    uring = server_name == URING
    server = Server(server_name, binary, args.memory, args.conn_limit, pinning,
                    extra + (URING_FLAGS if uring else []),
                    URING_REFUSED if uring else ())
    server.start()
    try:
        try:
            res, sampler, t0, t1, argv, notes = driver.run(wl, server, pinning, keys,
                                                           args.seconds, args.warmup)
        except BenchError as e:
            if not server.alive():
                raise BenchError(f"{server_name} died during the run (status "
                                 f"{server.proc.returncode}): {server.output()!r}; "
                                 f"load: {e}")
            out = server.output().strip()
            raise BenchError(f"{e}\n  server output: {out[-500:]!r}" if out else str(e))
        died = not server.alive()
        final_stats = None
        if not died:
            try:
                final_stats = stats_once(server.port)
            except OSError as e:
                notes.append(f"final stats failed: {e}")
    finally:
        server.stop()
    # The fallback may be printed after the port opened: checked again here.
    server.check_output()
    if died:
        raise BenchError(f"{server_name} died during the run (status "
                         f"{server.proc.returncode}): {server.output()}")
    secs = float(res["seconds"]) or 1e-9
    srv_cpu = sampler.delta(1, t0, t1)
    srv_user = sampler.delta(5, t0, t1)
    load_cpu = sampler.delta(2, t0, t1)
    self_cpu = sampler.delta(3, t0, t1)
    all_busy = sampler.all_cores_delta(t0, t1)
    row = dict(res)
    row.update({
        "workload": wl.name, "server": server_name, "round": rnd, "driver": driver.name,
        "connections": wl.conns, "idle_connections": wl.idle, "pipeline": wl.pipeline,
        "multiget": wl.multiget, "value_size": wl.value, "keys": keys, "ratio": wl.ratio,
        "key_pattern": wl.pattern,
        "server_cpu_s": srv_cpu,
        "cpu_s_per_1M": srv_cpu / res["ops"] * 1e6 if srv_cpu is not None and res["ops"] else None,
        "server_util": srv_cpu / secs if srv_cpu is not None else None,
        # The rest is the kernel's: at pipeline 1 mostly TCP over loopback.
        "server_user_share": (srv_user / srv_cpu
                              if srv_user is not None and srv_cpu else None),
        "load_cpu_s": load_cpu,
        "load_util": load_cpu / secs if load_cpu is not None else None,
        "server_core_busy": (sampler.delta(4, t0, t1, pinning.server_cpu) / secs
                             if pinning.enabled else None),
        "load_core_busy": (sampler.delta(4, t0, t1, pinning.load_cpu) / secs
                           if pinning.enabled else None),
        "other_cpu": None,
        "server_fd_max": sampler.fd_max,
        "server_ops_per_sec": None,
        "server_argv": " ".join(server.argv),
        "load_argv": " ".join(argv),
        "server_sha": server.sha,
        "load_sha": file_digest(argv[0]) if os.path.exists(argv[0]) else None,
    })
    if all_busy is not None and None not in (srv_cpu, load_cpu, self_cpu):
        # Busy time of all cores not charged to the server, the load or this
        # script: other processes, and irq/softirq time charged to nobody.
        row["other_cpu"] = max(0.0, (all_busy - srv_cpu - load_cpu - self_cpu) / secs)
    # The server's own count of requests in the same interval.
    r_get = sampler.stat_rate("cmd_get", t0, t1)
    r_set = sampler.stat_rate("cmd_set", t0, t1)
    if r_get is not None and r_set is not None:
        row["server_ops_per_sec"] = r_set + r_get / wl.multiget
    r_hits = sampler.stat_rate("get_hits", t0, t1)
    if os.environ.get("BENCH_DUMP"):
        # Raw samples, for checking the interval arithmetic by hand.
        with open(os.environ["BENCH_DUMP"], "a") as f:
            f.write(json.dumps({
                "workload": wl.name, "server": server_name, "round": rnd,
                "t0": t0, "t1": t1, "result": res,
                "cpu": [(s[0], s[1], s[2]) for s in sampler.cpu],
                "stats": [(t, {k: st.get(k) for k in ("cmd_get", "cmd_set", "get_hits",
                                                      "curr_connections")})
                          for t, st in sampler.stats]}) + "\n")
    notes += sanity(row, wl, keys, final_stats, sampler, r_get, r_hits)
    row["notes"] = "; ".join(notes)
    return row


def sanity(row, wl, keys, final_stats, sampler, r_get, r_hits):
    """Checks that catch a load generator (or server) gone wrong."""
    notes = []
    ops, gets, sets = row["ops"], row["gets"], row["sets"]
    if ops <= 0:
        notes.append("no operations measured")
        return notes
    if row["errors"]:
        notes.append(f"{row['errors']} errors")
    if gets + sets != ops:
        notes.append(f"gets {gets} + sets {sets} != ops {ops}")
    rate = ops / row["seconds"] if row["seconds"] else 0
    if rate and abs(row["ops_per_sec"] - rate) > 0.01 * rate:
        notes.append(f"ops_per_sec {row['ops_per_sec']:.0f} != ops/seconds {rate:.0f}")
    want = wl.set_fraction()
    got = sets / ops
    if abs(got - want) > max(0.2 * want, 0.005):
        notes.append(f"set fraction {got:.3f}, ratio {wl.ratio} wants {want:.3f}")
    looked_up = row["hits"] + row["misses"]
    # memtier reports hits and misses as rates: allow its rounding.
    slack = 0 if row["driver"] == "rmc-loadgen" else 0.01
    if gets and not any(abs(looked_up - n) <= slack * n for n in (gets, gets * wl.multiget)):
        notes.append(f"hits+misses {looked_up} is neither gets {gets} nor "
                     f"gets x multiget {gets * wl.multiget}")
    if looked_up and row["misses"] > 0.01 * looked_up:
        notes.append(f"{100 * row['misses'] / looked_up:.1f}% misses after prefill")
    lat = [row[k] for k in ("p50_us", "p99_us", "p999_us", "max_us")]
    if None in lat or any(v <= 0 for v in lat):
        notes.append(f"latency missing or zero: {lat}")
    elif sorted(lat) != lat:
        notes.append(f"latency percentiles not increasing: {lat}")
    else:
        # Little's law for a closed loop: throughput = outstanding / latency.
        outstanding = wl.conns * wl.pipeline
        implied = outstanding / (row["p50_us"] * 1e-6)
        if not 0.25 <= rate / implied <= 4:
            notes.append(f"ops/s {rate:.0f} vs {outstanding} outstanding / p50 "
                         f"{row['p50_us']:.1f} us = {implied:.0f}: latency and "
                         f"throughput disagree")
    if row["reported_connections"] not in (None, wl.conns):
        notes.append(f"loadgen reports {row['reported_connections']} connections, "
                     f"asked for {wl.conns}")
    if row["reported_pipeline"] not in (None, wl.pipeline):
        notes.append(f"loadgen reports pipeline {row['reported_pipeline']}, "
                     f"asked for {wl.pipeline}")
    srv = row["server_ops_per_sec"]
    if srv is not None and rate and abs(srv - rate) > 0.10 * rate:
        notes.append(f"server counted {srv:.0f} req/s (stats cmd_get/{wl.multiget} + "
                     f"cmd_set), loadgen {rate:.0f}")
    if r_get and r_hits is not None and looked_up:
        srv_ratio, lg_ratio = r_hits / r_get, row["hits"] / looked_up
        if abs(srv_ratio - lg_ratio) > 0.05:
            notes.append(f"server hit ratio {srv_ratio:.3f}, loadgen {lg_ratio:.3f}")
    if sampler.stats_error:
        notes.append(sampler.stats_error)
    if final_stats:
        items = int(final_stats.get("curr_items", "0"))
        ev = int(final_stats.get("evictions", "0"))
        if items < keys:
            notes.append(f"curr_items {items} < {keys} keys: prefill incomplete")
        if ev:
            notes.append(f"{ev} evictions")
        total = int(final_stats.get("total_connections", "0"))
        if total and total < wl.conns + wl.idle:
            notes.append(f"server saw only {total} connections in all, "
                         f"expected >= {wl.conns + wl.idle}")
    if wl.idle and row["server_fd_max"] is not None and row["server_fd_max"] < wl.conns + wl.idle:
        notes.append(f"server held at most {row['server_fd_max']} fds, expected "
                     f">= {wl.conns + wl.idle} connections")
    if row["other_cpu"] is not None and row["other_cpu"] > 0.15:
        notes.append(f"other load: {100 * row['other_cpu']:.0f}% of a core went to "
                     f"other processes or interrupts during the run")
    return notes


# --------------------------------------------------------------------------
# results

FIELDS = ["kind", "workload", "server", "round", "driver", "ops", "seconds", "ops_per_sec",
          "gets", "sets", "hits", "misses", "errors", "p50_us", "p99_us", "p999_us",
          "max_us", "server_cpu_s", "cpu_s_per_1M", "server_util", "server_user_share",
          "load_cpu_s", "load_util", "server_core_busy", "load_core_busy", "other_cpu", "saturated",
          "server_ops_per_sec", "server_fd_max", "connections", "idle_connections",
          "pipeline", "multiget", "value_size", "keys", "ratio", "key_pattern",
          "server_argv", "load_argv", "server_sha", "load_sha", "notes"]
MEDIAN_FIELDS = ["ops", "seconds", "ops_per_sec", "gets", "sets", "hits", "misses",
                 "errors", "p50_us", "p99_us", "p999_us", "max_us", "server_cpu_s",
                 "cpu_s_per_1M", "server_util", "server_user_share", "load_cpu_s",
                 "load_util", "server_core_busy", "load_core_busy", "other_cpu", "server_ops_per_sec",
                 "server_fd_max"]
RATIO_FIELDS = ["ops_per_sec", "p50_us", "p99_us", "p999_us", "max_us", "cpu_s_per_1M",
                "server_cpu_s"]


def saturation(row):
    """Which side ran out of CPU: `server` or `load` (>= SATURATED of its
    core), `both`, `neither` (latency-bound), or `contended` when neither
    process did but its core was busy with other processes' work."""
    s, l = row.get("server_util"), row.get("load_util")
    if s is None or l is None:
        return "unknown"
    if s >= SATURATED and l >= SATURATED:
        return "both"
    if s >= SATURATED:
        return "server"
    if l >= SATURATED:
        return "load"
    busy = [row.get("server_core_busy"), row.get("load_core_busy")]
    if (row.get("other_cpu") or 0) > 0.15 and any(b is not None and b >= SATURATED
                                                  for b in busy):
        return "contended"
    return "neither"


def median_row(rows):
    first = rows[0]
    m = {k: first[k] for k in ("workload", "server", "driver", "connections",
                               "idle_connections", "pipeline", "multiget", "value_size",
                               "keys", "ratio", "key_pattern", "server_argv", "load_argv",
                               "server_sha", "load_sha")}
    m["kind"] = "median"
    m["round"] = "median"
    for k in MEDIAN_FIELDS:
        vals = [r[k] for r in rows if r.get(k) is not None]
        m[k] = statistics.median(vals) if vals else None
    m["saturated"] = saturation(m)
    m["notes"] = f"median of {len(rows)} round(s)"
    return m


def ratio_row(num, den):
    """num's median / den's median for every RATIO_FIELDS figure."""
    out = {"kind": "ratio", "workload": num["workload"],
           "server": f"{num['server']}/{den['server']}",
           "round": "median", "driver": num["driver"]}
    for k in RATIO_FIELDS:
        a, b = num.get(k), den.get(k)
        out[k] = a / b if a is not None and b else None
    out["notes"] = f"{num['server']} median / {den['server']} median"
    return out


def fmt(v, spec):
    if v is None:
        return "-"
    return format(v, spec)


def pct(v):
    return "-" if v is None else f"{100 * v:.0f}%"


def build_table(workloads, servers, medians, ratios, failures):
    """Per workload a line per server, then its ratio lines (ratios:
    {workload: [(label, ratio row)]})."""
    sw = SERVER_W
    head = (f"{'workload':<11} {'server':<{sw}} {'ops/s':>10} {'p50 us':>8} {'p99 us':>8} "
            f"{'p99.9 us':>9} {'CPU s/1M':>9} {'srv CPU':>8} {'load CPU':>8}  saturated")
    lines = [head, "-" * len(head)]
    for wl in workloads:
        first = True
        for name in servers:
            m = medians.get((wl.name, name))
            label = wl.name if first else ""
            first = False
            if m is None:
                why = failures.get((wl.name, name), ["not run"])[0]
                lines.append(f"{label:<11} {name:<{sw}} failed: {why.splitlines()[0][:70]}")
                continue
            lines.append(
                f"{label:<11} {name:<{sw}} {fmt(m['ops_per_sec'], ',.0f'):>10} "
                f"{fmt(m['p50_us'], '.1f'):>8} {fmt(m['p99_us'], '.1f'):>8} "
                f"{fmt(m['p999_us'], '.1f'):>9} {fmt(m['cpu_s_per_1M'], '.2f'):>9} "
                f"{pct(m['server_util']):>8} {pct(m['load_util']):>8}  {m['saturated']}")
        for rlabel, r in ratios.get(wl.name, []):
            lines.append(
                f"{'':<11} {rlabel:<{sw}} {fmt(r['ops_per_sec'], '.2f') + 'x':>10} "
                f"{fmt(r['p50_us'], '.2f'):>8} {fmt(r['p99_us'], '.2f'):>8} "
                f"{fmt(r['p999_us'], '.2f'):>9} {fmt(r['cpu_s_per_1M'], '.2f'):>9}")
    return lines


def plot(path, workloads, servers, runs, medians, title):
    """Throughput, latency percentiles and CPU per request, the servers side
    by side per workload; an explanation instead when nothing is plotted."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (make deps-bench): no plot"
    names = [w.name for w in workloads if any((w.name, s) in medians for s in servers)]
    if not names:
        return "nothing to plot"
    colors = {"rmemcached": "#1f77b4", URING: "#2ca02c", "memcached": "#ff7f0e"}
    fig, axes = plt.subplots(3, 1, figsize=(max(8, 0.8 * len(servers) * len(names) + 2), 12))
    x = list(range(len(names)))
    width = 0.76 / len(servers)
    ax = axes[0]
    for i, srv in enumerate(servers):
        xs, ys, lo, hi = [], [], [], []
        for j, n in enumerate(names):
            m = medians.get((n, srv))
            if m is None or not m["ops_per_sec"]:
                continue
            vals = [r["ops_per_sec"] for r in runs if r["workload"] == n and r["server"] == srv]
            xs.append(j + (i - (len(servers) - 1) / 2) * width)
            ys.append(m["ops_per_sec"])
            lo.append(m["ops_per_sec"] - min(vals))
            hi.append(max(vals) - m["ops_per_sec"])
        ax.bar(xs, ys, width, yerr=[lo, hi], capsize=3, label=srv, color=colors[srv])
        for xv, yv in zip(xs, ys):
            ax.text(xv, yv, f"{yv / 1000:.3g}k", ha="center", va="bottom", fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("requests/s (median, min-max)")
    ax.set_title("Throughput")
    ax.legend()
    ax = axes[1]
    pcts = [("p50_us", "p50", 0.35), ("p99_us", "p99", 0.65), ("p999_us", "p99.9", 1.0)]
    w6 = 0.8 / (3 * len(servers))
    for i, srv in enumerate(servers):
        for k, (key, label, alpha) in enumerate(pcts):
            xs, ys = [], []
            for j, n in enumerate(names):
                m = medians.get((n, srv))
                if m is None or not m[key]:
                    continue
                xs.append(j - 0.4 + w6 * (i * 3 + k + 0.5))
                ys.append(m[key])
            ax.bar(xs, ys, w6, color=colors[srv], alpha=alpha, label=f"{srv} {label}")
    ax.set_yscale("log")
    ax.set_ylabel("latency, us (median of rounds)")
    ax.set_title("Latency percentiles")
    ax.legend(fontsize=7, ncol=len(servers))
    ax = axes[2]
    for i, srv in enumerate(servers):
        xs, ys = [], []
        for j, n in enumerate(names):
            m = medians.get((n, srv))
            if m is None or m["cpu_s_per_1M"] is None:
                continue
            xs.append(j + (i - (len(servers) - 1) / 2) * width)
            ys.append(m["cpu_s_per_1M"])
        ax.bar(xs, ys, width, label=srv, color=colors[srv])
    ax.set_yscale("log")
    ax.set_ylabel("server CPU s per 1M requests")
    ax.set_title("Server CPU per request")
    ax.legend()
    for ax in axes:
        ax.set_xticks(x)
        ax.set_xticklabels(names)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def machine_info():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"{platform.node()}: {model}, {os.cpu_count()} cores, "
            f"Linux {platform.release()}")


def version_of(binary):
    try:
        r = subprocess.run([binary, "-V"], capture_output=True, timeout=10)
        return (r.stdout or r.stderr).decode(errors="replace").strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "?"


def git_rev():
    try:
        r = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                           capture_output=True, timeout=10)
        return r.stdout.decode().strip() or "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


# --------------------------------------------------------------------------
# main

def parse_args(argv):
    env_float = lambda k, d: float(os.environ[k]) if os.environ.get(k) else d
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="workloads:\n" + "\n".join(
                                    f"  {w.name:<11} {w.desc}" for w in WORKLOADS))
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 2 s per run, 0.5 s warm-up, 1 round, smaller key spaces")
    p.add_argument("--only", default=None,
                   help="comma-separated workload names (see below)")
    p.add_argument("--seconds", type=float, default=None,
                   help="measured seconds per run (default $BENCH_SECONDS or 8; quick 2)")
    p.add_argument("--warmup", type=float, default=None,
                   help="warm-up seconds per run (default $BENCH_WARMUP or 2; quick 0.5)")
    p.add_argument("--rounds", type=int, default=None,
                   help="rounds of A B C (default $BENCH_ROUNDS or 2; quick 1)")
    p.add_argument("--driver", choices=("auto", "loadgen", "memtier"), default="auto",
                   help="auto: memtier_benchmark if $MEMTIER or on PATH, else rmc-loadgen")
    p.add_argument("--protocol", choices=("text", "meta", "binary"), default="text")
    p.add_argument("--memory", type=int, default=1024, help="-m for every server (MB)")
    p.add_argument("--conn-limit", type=int, default=12000,
                   help="-c for every server (default 12000: 10,000 idle + 50 busy fit)")
    p.add_argument("--rmemcached", default=os.environ.get("RMEMCACHED_BIN", RMC_BIN))
    p.add_argument("--rmemcached-args", default=os.environ.get("BENCH_RMC_ARGS", ""),
                   help="extra flags for both rmemcached servers, not memcached "
                   "(default $BENCH_RMC_ARGS)")
    p.add_argument("--no-uring", action="store_true",
                   default=os.environ.get("BENCH_NO_URING", "") not in ("", "0"),
                   help=f"leave {URING} (rmemcached with {' '.join(URING_FLAGS)}) out "
                   "(default: set when $BENCH_NO_URING=1)")
    p.add_argument("--memcached", default=os.environ.get("MEMCACHED_BIN", MC_BIN))
    p.add_argument("--loadgen", default=os.environ.get("RMC_LOADGEN", LOADGEN_BIN))
    p.add_argument("--results-dir", default=RESULTS)
    p.add_argument("--server-cpu", type=int, default=None)
    p.add_argument("--load-cpu", type=int, default=None)
    p.add_argument("--no-pin", action="store_true", help="do not pin anything")
    p.add_argument("--no-plot", action="store_true")
    a = p.parse_args(argv)
    if a.seconds is None:
        a.seconds = 2.0 if a.quick else env_float("BENCH_SECONDS", 8.0)
    if a.warmup is None:
        a.warmup = 0.5 if a.quick else env_float("BENCH_WARMUP", 2.0)
    if a.rounds is None:
        a.rounds = 1 if a.quick else int(env_float("BENCH_ROUNDS", 2))
    if a.seconds <= 0 or a.rounds < 1 or a.warmup < 0:
        p.error("--seconds must be > 0, --rounds >= 1, --warmup >= 0")
    if a.only:
        names = [n.strip() for n in a.only.split(",") if n.strip()]
        bad = [n for n in names if n not in WORKLOAD_BY_NAME]
        if bad:
            p.error(f"unknown workload(s) {', '.join(bad)}; known: "
                    f"{', '.join(WORKLOAD_BY_NAME)}")
        a.workloads = [WORKLOAD_BY_NAME[n] for n in names]
    else:
        a.workloads = list(WORKLOADS)
    a.servers = [s for s in SERVERS if not (a.no_uring and s == URING)]
    return a


def choose_driver(a):
    memtier = os.environ.get("MEMTIER") or shutil.which("memtier_benchmark")
    if a.driver == "memtier" or (a.driver == "auto" and memtier):
        if not memtier:
            raise BenchError("--driver memtier: set $MEMTIER or put memtier_benchmark on PATH")
        return MemtierDriver(memtier, a.protocol)
    return LoadgenDriver(a.loadgen, a.protocol)


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, need)
    if hard != resource.RLIM_INFINITY and hard < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return None
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            return (f"RLIMIT_NOFILE hard limit is {hard}, below the {need} the "
                    f"10,000-connection workload needs")
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return None


def main(argv=None):
    a = parse_args(argv)
    # Killed or hung up: unwind, so that every finally block stops the
    # server and the load generator it started.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: sys.exit(128 + signum))
    pinning = Pinning(a.server_cpu, a.load_cpu, a.no_pin)
    pinning.pin_self()
    driver = choose_driver(a)
    driver.check()
    for name, path in (("rmemcached", a.rmemcached), ("memcached", a.memcached)):
        if not os.access(path, os.X_OK):
            raise BenchError(f"{name} binary {path} is missing (make build / make deps-apt)")
    need = max(w.idle + w.conns for w in a.workloads) + 1000
    warnings = []
    w = raise_nofile(max(need, a.conn_limit + 100))
    if w:
        warnings.append(w)
    svc = stop_debian_service()
    if svc:
        log(svc)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    os.makedirs(a.results_dir, exist_ok=True)
    base = os.path.join(a.results_dir, f"bench-{stamp}")
    binaries = {"rmemcached": a.rmemcached, URING: a.rmemcached, "memcached": a.memcached}
    header = [
        f"machine:    {machine_info()}",
        f"rmemcached: {a.rmemcached} (git {git_rev()}, sha256 {file_digest(a.rmemcached)})"
        + (f", extra flags: {a.rmemcached_args}" if a.rmemcached_args else ""),
    ] + ([f"            {URING}: the same binary and flags plus {' '.join(URING_FLAGS)}"]
         if URING in a.servers else []) + [
        f"memcached:  {a.memcached} ({version_of(a.memcached)}), run with -t 1",
        f"load:       {driver.describe()}, protocol {a.protocol}",
        f"pinning:    {pinning.how}",
        f"runs:       {a.seconds:g} s measured after prefill + {a.warmup:g} s warm-up, "
        f"{a.rounds} round(s) of {', '.join(a.servers)} (in that order); "
        f"-m {a.memory} -c {a.conn_limit}",
    ]
    for line in header:
        log(line)
    for wmsg in warnings:
        log("warning: " + wmsg)
    log()

    runs, failures = [], {}
    rmc_sha = file_digest(a.rmemcached)
    load_bin = driver.binary
    load_sha = file_digest(load_bin) if os.path.exists(load_bin) else None
    try:
        for wl in a.workloads:
            log(f"== {wl.name}: {wl.desc}")
            for rnd in range(1, a.rounds + 1):
                for name in a.servers:
                    t = time.monotonic()
                    try:
                        row = measure(wl, name, binaries[name], driver, pinning, a, rnd)
                    except BenchError as e:
                        failures.setdefault((wl.name, name), []).append(f"round {rnd}: {e}")
                        log(f"   round {rnd} {name:<{SERVER_W}} FAILED: {e}")
                        continue
                    row["kind"] = "run"
                    row["saturated"] = saturation(row)
                    runs.append(row)
                    log(f"   round {rnd} {name:<{SERVER_W}} "
                        f"{row['ops_per_sec']:>12,.0f} ops/s  "
                        f"p99 {fmt(row['p99_us'], '.1f')} us  "
                        f"CPU {fmt(row['cpu_s_per_1M'], '.2f')} s/1M  "
                        f"server {pct(row['server_util'])} load {pct(row['load_util'])}  "
                        f"({time.monotonic() - t:.1f} s)")
                    if row["notes"]:
                        log(f"      note: {row['notes']}")
    except KeyboardInterrupt:
        log("interrupted: reporting what was measured")
    if file_digest(a.rmemcached) != rmc_sha:
        warnings.append(f"{a.rmemcached} was rebuilt during the run: rows mix two builds "
                        f"(CSV column server_sha)")
    if load_sha is not None and os.path.exists(load_bin) and file_digest(load_bin) != load_sha:
        warnings.append(f"{load_bin} was rebuilt during the run: rows mix two builds "
                        f"(CSV column load_sha)")

    medians, ratios = {}, {}
    ratio_pairs = [(num, label) for num, label in RATIOS if num in a.servers]
    for wl in a.workloads:
        for name in a.servers:
            rows = [r for r in runs if r["workload"] == wl.name and r["server"] == name]
            if rows:
                medians[(wl.name, name)] = median_row(rows)
        mc = medians.get((wl.name, "memcached"))
        ratios[wl.name] = [(label, ratio_row(medians[(wl.name, num)], mc))
                           for num, label in ratio_pairs
                           if mc is not None and (wl.name, num) in medians]

    table = build_table(a.workloads, a.servers, medians, ratios, failures)
    extra = []
    for name in a.servers:
        idle, busy = medians.get(("idle-10k", name)), medians.get(("small-p1", name))
        if idle and busy and busy["ops_per_sec"]:
            extra.append(f"{name}: throughput with 10,000 idle connections is "
                         f"{100 * idle['ops_per_sec'] / busy['ops_per_sec']:.0f}% "
                         f"of that with 50 (idle-10k / small-p1)")
    shares = [(name, medians.get(("small-p1", name), {}).get("server_user_share"))
              for name in a.servers]
    shares = [f"{name} {100 * v:.0f}%" for name, v in shares if v is not None]
    if shares:
        extra.append("server CPU spent in user space at small-p1 (the rest is the "
                     "kernel's): " + ", ".join(shares))
    for (wname, sname), m in medians.items():
        if m.get("other_cpu") is not None and m["other_cpu"] > 0.15:
            extra.append(f"{wname}/{sname}: {100 * m['other_cpu']:.0f}% of a core went to "
                         f"other processes or interrupts: numbers are disturbed")
    legend = [
        "ops/s: requests per second (a 100-key multi-get is one request); p50/p99/p99.9:",
        "per-request latency from the load generator's histogram; CPU s/1M: server",
        "utime+stime per million requests over the measured interval; srv/load CPU:",
        "share of one core used by the server / the load generator; saturated: which",
        f"side used >= {100 * SATURATED:.0f}% of its core (contended: neither did, but "
        "their cores were",
        "busy with other processes' work). Medians over the rounds. Ratio lines (ops/s:",
        "higher is better; latency and CPU: lower is better):",
    ] + [f"  {label}: {num} / memcached" for num, label in ratio_pairs]
    failed_lines = [f"{k[0]}/{k[1]} failed, {line}" for k, v in failures.items()
                    for line in (x.splitlines()[0] for x in v)]
    log()
    for line in table:
        log(line)
    log()
    for line in legend + ([""] + extra if extra else []) + (
            [""] + ["warning: " + x for x in warnings] if warnings else []) + (
            [""] + failed_lines if failed_lines else []):
        log(line)

    csv_path, txt_path, png_path = base + ".csv", base + ".txt", base + ".png"
    with open(csv_path, "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")
        wr.writeheader()
        for r in runs:
            wr.writerow(r)
        for wl in a.workloads:
            for name in a.servers:
                if (wl.name, name) in medians:
                    wr.writerow(medians[(wl.name, name)])
            for _, r in ratios[wl.name]:
                wr.writerow(r)
    with open(txt_path, "w") as f:
        f.write("\n".join(header + [""] + table + [""] + legend
                          + ([""] + extra if extra else [])
                          + ([""] + ["warning: " + x for x in warnings] if warnings else [])
                          + ([""] + failed_lines if failed_lines else [])) + "\n")
    msg = "plot skipped (--no-plot)" if a.no_plot else plot(
        png_path, a.workloads, a.servers, runs, medians,
        f"{' vs '.join(a.servers)} (-t 1), {stamp}, {driver.name}, {a.seconds:g} s x "
        f"{a.rounds} round(s)\n{machine_info()}")
    log()
    log(f"wrote {csv_path}")
    log(f"wrote {txt_path}")
    if msg:
        log(msg)
    else:
        log(f"wrote {png_path}")
    if failures:
        log(f"{sum(len(v) for v in failures.values())} run(s) failed")
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"bench/run.py: {e}", file=sys.stderr)
        sys.exit(2)

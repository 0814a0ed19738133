"""Smoke test of the benchmark harness (bench/run.py, `make bench`).

One light workload, one second, one round, against the three servers
(rmemcached, rmemcached-uring = rmemcached -o io_uring, memcached), with the
bundled load generator (target/release/rmc-loadgen, built by `make build`):
the harness must start and stop every server, produce its CSV with the
expected columns and measure positive throughput and CPU for each, and both
ratio rows.  About 10 s; the numbers themselves are not judged here.
"""
import csv
import glob
import os
import subprocess
import sys

from conftest import MEMCACHED_BIN, RMEMCACHED_BIN, ROOT

RUN = os.path.join(ROOT, "bench", "run.py")
LOADGEN = os.environ.get("RMC_LOADGEN",
                         os.path.join(ROOT, "target", "release", "rmc-loadgen"))

COLUMNS = [
    "kind", "workload", "server", "round", "driver", "ops", "seconds", "ops_per_sec",
    "gets", "sets", "hits", "misses", "errors", "p50_us", "p99_us", "p999_us", "max_us",
    "server_cpu_s", "cpu_s_per_1M", "server_util", "load_cpu_s", "load_util",
    "saturated", "connections", "idle_connections", "pipeline", "multiget",
    "value_size", "keys", "server_argv", "load_argv", "notes",
]


def test_bench_quick_smoke(tmp_path):
    assert os.access(LOADGEN, os.X_OK), f"{LOADGEN} missing: `make build` builds it"
    assert os.access(MEMCACHED_BIN, os.X_OK), f"{MEMCACHED_BIN} missing: make deps-apt"
    env = dict(os.environ)
    for k in ("MEMTIER", "BENCH_NO_URING", "BENCH_RMC_ARGS"):
        env.pop(k, None)
    r = subprocess.run(
        [sys.executable, RUN, "--quick", "--only", "small-p1", "--seconds", "1",
         "--rounds", "1", "--warmup", "0.5", "--driver", "loadgen",
         "--rmemcached", RMEMCACHED_BIN, "--memcached", MEMCACHED_BIN,
         "--loadgen", LOADGEN, "--results-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60, env=env)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]

    csvs = glob.glob(str(tmp_path / "bench-*.csv"))
    assert len(csvs) == 1, (os.listdir(tmp_path), out[-2000:])
    with open(csvs[0], newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in reader.fieldnames]
        assert not missing, f"CSV lacks {missing}: {reader.fieldnames}"
        rows = list(reader)

    for server in ("rmemcached", "rmemcached-uring", "memcached"):
        runs = [x for x in rows if x["kind"] == "run" and x["server"] == server]
        assert len(runs) == 1, rows
        row = runs[0]
        assert row["workload"] == "small-p1"
        assert row["driver"] == "rmc-loadgen"
        assert int(row["ops"]) > 0, row
        assert float(row["ops_per_sec"]) > 0, row
        assert int(row["gets"]) > 0 and int(row["sets"]) > 0, row
        assert int(row["errors"]) == 0, row
        assert 0 < float(row["p50_us"]) <= float(row["p99_us"]) <= float(row["p999_us"]), row
        assert float(row["server_cpu_s"]) > 0 and float(row["cpu_s_per_1M"]) > 0, row
        # Over loopback most of the time is the kernel's.  The kernel
        # splits a process's time into user and system by sampling, so a
        # one-second run may show no user time yet: 0 is possible, 1 not.
        assert 0 <= float(row["server_user_share"]) < 1, row
        assert row["server_argv"].split()[0] == (
            MEMCACHED_BIN if server == "memcached" else RMEMCACHED_BIN), row
        assert " -t 1 " in row["server_argv"] + " ", row
        assert (" -o io_uring" in row["server_argv"]) == (server == "rmemcached-uring"), row
        medians = [x for x in rows if x["kind"] == "median" and x["server"] == server]
        assert len(medians) == 1 and float(medians[0]["ops_per_sec"]) > 0, rows
    # Each run may tick no user time; all three together (about three
    # seconds of server CPU, a sixth of it in user space) cannot.
    assert max(float(x["server_user_share"]) for x in rows if x["kind"] == "run") > 0, rows
    ratios = {x["server"]: x for x in rows if x["kind"] == "ratio"}
    assert sorted(ratios) == ["rmemcached-uring/memcached", "rmemcached/memcached"], rows
    assert all(float(x["ops_per_sec"]) > 0 for x in ratios.values()), rows

    # The table: one line per server, then the two ratio lines.
    lines = r.stdout.splitlines()
    at = [i for i, x in enumerate(lines) if x.startswith("small-p1    rmemcached ")]
    assert len(at) == 1, r.stdout
    assert [x.split()[0] for x in lines[at[0] + 1:at[0] + 5]] == [
        "rmemcached-uring", "memcached", "rmc/mc", "uring/mc"], r.stdout
    share = [x for x in lines if x.startswith("server CPU spent in user space")]
    assert len(share) == 1, r.stdout
    named = [part.rsplit(" ", 1) for part in share[0].split(": ", 1)[1].split(", ")]
    assert [name for name, _ in named] == [
        "rmemcached", "rmemcached-uring", "memcached"], share[0]
    assert all(pct.endswith("%") and 0 <= int(pct[:-1]) < 100 for _, pct in named), share[0]
    assert glob.glob(str(tmp_path / "bench-*.txt"))
    png = glob.glob(str(tmp_path / "bench-*.png"))
    assert png or "matplotlib is not installed" in r.stdout, r.stdout[-1500:]


def test_per_request_profile_counts_instructions_and_syscalls():
    """bench/per-request.sh (`make bench-profile`) with a small request
    count: one line per server with a positive instruction count and the
    system calls each backend is built on."""
    env = dict(os.environ, RMEMCACHED=RMEMCACHED_BIN, MEMCACHED=MEMCACHED_BIN,
               LOADGEN=LOADGEN)
    r = subprocess.run(["bash", os.path.join(ROOT, "bench", "per-request.sh"), "5000"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = {}
    for line in r.stdout.splitlines()[1:4]:
        name, instr, calls, detail = line.split(None, 3)
        rows[name] = (int(instr), float(calls), detail)
    assert list(rows) == ["rmemcached", "rmemcached-uring", "memcached"]
    for name, (instr, calls, _) in rows.items():
        assert 500 < instr < 100_000, (name, instr)
    epoll, uring, mc = rows["rmemcached"], rows["rmemcached-uring"], rows["memcached"]
    # One read and one write per request on epoll, for both servers.
    assert "recvfrom 1.0" in epoll[2] and "writev 1.0" in epoll[2], epoll
    assert "read 1.0" in mc[2] and "sendmsg 1.0" in mc[2], mc
    # io_uring batches: well under one system call per request.
    assert "io_uring_enter" in uring[2] and uring[1] < 0.5, uring

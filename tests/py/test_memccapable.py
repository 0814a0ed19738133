"""libmemcached's conformance checker, memccapable (libmemcached-tools 1.1),
against RMEMCACHED_BIN and, to prove the expectations, the reference
memcached 1.6.18 (`server` fixture: both).

memccapable -a runs the ASCII checks only, -b the binary checks only, and no
flag runs both (ASCII first).  memcached 1.6.18 passes every check of both
sets: none fails, none is skipped (memccapable only prints [skip] when a test
is skipped interactively with -P).  A failed check prints `[FAIL]` on stderr
and "<n> of <m> tests failed" at the end instead of "All tests passed".
"""
import re
import shutil
import subprocess

import pytest

from conftest import MEMCACHED_BIN, RMEMCACHED_BIN
from mcutil import raw

MEMCCAPABLE = shutil.which("memccapable")

pytestmark = pytest.mark.skipif(
    MEMCCAPABLE is None,
    reason="memccapable not installed (apt-get install libmemcached-tools)")

# The checks `memccapable -a` runs (libmemcached-tools 1.1), in order.
ASCII_TESTS = [
    "version", "quit", "verbosity", "set", "set noreply", "get", "gets",
    "mget", "flush", "flush noreply", "add", "add noreply", "replace",
    "replace noreply", "cas", "cas noreply", "delete", "delete noreply",
    "incr", "incr noreply", "decr", "decr noreply", "append",
    "append noreply", "prepend", "prepend noreply", "stat",
]

# The checks `memccapable -b` runs, in order.  Each quiet variant (…q) checks
# that the server stays silent on success and answers on failure; every
# response must carry the request's opaque (0xdeadbeef), datatype 0 and a
# CAS on successful stores.
BINARY_TESTS = [
    "noop", "quit", "quitq", "set", "setq", "flush", "flushq", "add", "addq",
    "replace", "replaceq", "delete", "deleteq", "get", "getq", "getk",
    "getkq", "incr", "incrq", "decr", "decrq", "version", "append",
    "appendq", "prepend", "prependq", "stat",
]

LINE = re.compile(r"(ascii|binary) (\S+(?: noreply)?)\s+\[(\w+)\]")


def run_memccapable(port, flag=None, timeout=120):
    """memccapable against 127.0.0.1:port; (exit status, output, results)
    where results is a list of (protocol, check, status) in output order."""
    argv = [MEMCCAPABLE, "-h", "127.0.0.1", "-p", str(port), "-t", "10"]
    if flag:
        argv.append(flag)
    proc = subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # [FAIL] goes to stderr
        timeout=timeout,
    )
    output = proc.stdout.decode(errors="replace")
    print(output)  # shown by pytest when the test fails
    results = []
    for line in output.splitlines():
        m = LINE.fullmatch(line)
        if m:
            results.append(m.groups())
    return proc.returncode, output, results


ASCII_EXPECTED = [("ascii", t) for t in ASCII_TESTS]
BINARY_EXPECTED = [("binary", t) for t in BINARY_TESTS]


def assert_all_pass(port, flag, expected):
    """Run memccapable (run_memccapable); it must run exactly the `expected`
    (protocol, check) pairs, in order, and pass them all.  -> results."""
    returncode, output, results = run_memccapable(port, flag)
    assert [(proto, name) for proto, name, _ in results] == expected, output
    failed = [f"{p} {n}" for p, n, status in results if status != "pass"]
    assert failed == [], output
    assert "FAIL" not in output
    assert returncode == 0, output
    assert output.splitlines()[-1] == "All tests passed", output
    return results


def assert_alive(port):
    # the server survived the run (memccapable ends with quit/stat checks)
    assert re.fullmatch(rb"VERSION \d+\.\d+\.\d+\r\n", raw(port, b"version\r\n"))


def test_memccapable_ascii(server):
    assert_all_pass(server.port, "-a", ASCII_EXPECTED)
    assert_alive(server.port)


def test_memccapable_binary(server):
    assert_all_pass(server.port, "-b", BINARY_EXPECTED)
    assert_alive(server.port)


def test_memccapable_both_protocols_one_run(server):
    """No flag: the ASCII checks, then the binary ones, against the same
    server (memccapable reconnects after each test that asks for it, so one
    server sees both protocols on successive connections)."""
    results = assert_all_pass(server.port, None, ASCII_EXPECTED + BINARY_EXPECTED)
    assert len(results) == 54
    assert_alive(server.port)


each_binary = pytest.mark.parametrize("binary", [RMEMCACHED_BIN, MEMCACHED_BIN],
                                      ids=["rmemcached", "memcached"])


@each_binary
def test_memccapable_binary_only_server(start_server, binary):
    """-B binary: the binary checks all pass on a binary-only server."""
    srv = start_server(binary, ["-B", "binary"])
    assert_all_pass(srv.port, "-b", BINARY_EXPECTED)


@each_binary
def test_memccapable_ascii_only_server(start_server, binary):
    """-B ascii: the ASCII checks all pass on an ASCII-only server."""
    srv = start_server(binary, ["-B", "ascii"])
    assert_all_pass(srv.port, "-a", ASCII_EXPECTED)
    assert_alive(srv.port)

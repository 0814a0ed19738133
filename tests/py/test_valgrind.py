"""The server's unsafe code (arena, sockets) run under valgrind's memcheck.

A mixed workload touches every arena path: small and chained values,
evictions under a small -m, append/prepend copies, incr in place and by
reallocation, deletes while replies are still queued, flush_all.  The test
fails on any invalid read or write, use of uninitialised memory, or a
definite leak reported at exit.
"""
import os
import random
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import RMEMCACHED_BIN, free_port, user_args, wait_port

pytestmark = pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind missing")


def roundtrip(s, req, end):
    s.sendall(req)
    buf = b""
    while not buf.endswith(end):
        chunk = s.recv(1 << 20)
        assert chunk, buf[-200:]
        buf += chunk
    return buf


def test_server_workload_is_clean_under_memcheck(tmp_path):
    port = free_port()
    log = tmp_path / "vg.log"
    proc = subprocess.Popen(
        ["valgrind", "-q", "--error-exitcode=99", "--leak-check=full",
         "--errors-for-leak-kinds=definite", f"--log-file={log}",
         RMEMCACHED_BIN, "-p", str(port), "-l", "127.0.0.1", "-m", "4", "-I", "1m"]
        + user_args(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc, timeout=60)
        rng = random.Random(7)
        s = socket.create_connection(("127.0.0.1", port), timeout=60)
        big = bytes(rng.randrange(256) for _ in range(700_000))
        # Chained value, read back intact.
        assert roundtrip(s, b"set big 0 0 %d\r\n" % len(big) + big + b"\r\n", b"\r\n") == b"STORED\r\n"
        got = roundtrip(s, b"get big\r\n", b"END\r\n")
        assert got == b"VALUE big 0 %d\r\n" % len(big) + big + b"\r\nEND\r\n"
        # Appends that cross chunk boundaries.
        assert roundtrip(s, b"append big 0 0 5\r\nhello\r\n", b"\r\n") == b"STORED\r\n"
        assert roundtrip(s, b"prepend big 0 0 3\r\nabc\r\n", b"\r\n") == b"STORED\r\n"
        got = roundtrip(s, b"get big\r\n", b"END\r\n")
        assert got == b"VALUE big 0 %d\r\nabc" % (len(big) + 8) + big + b"hello\r\nEND\r\n"
        # Fill far past -m 4 to force evictions in several classes.
        for i in range(3000):
            v = b"v" * rng.choice([10, 100, 1000, 5000])
            s.sendall(b"set k%d 0 0 %d noreply\r\n%s\r\n" % (i, len(v), v))
        stats = roundtrip(s, b"stats\r\n", b"END\r\n")
        evictions = int(stats.split(b"STAT evictions ")[1].split(b"\r\n")[0])
        assert evictions > 0
        # incr in place and by reallocation; delete while a reply is queued.
        assert roundtrip(s, b"set n 0 0 1\r\n9\r\nincr n 1\r\nincr n 5\r\n", b"15\r\n").endswith(b"10\r\n15\r\n")
        reader = socket.create_connection(("127.0.0.1", port), timeout=60)
        roundtrip(s, b"set big 0 0 %d\r\n" % len(big) + big + b"\r\n", b"\r\n")
        reader.sendall(b"get big\r\nget big\r\n")
        time.sleep(0.5)
        assert roundtrip(s, b"delete big\r\n", b"\r\n") == b"DELETED\r\n"
        got = b""
        while got.count(b"END\r\n") < 2:
            chunk = reader.recv(1 << 20)
            assert chunk
            got += chunk
        one = b"VALUE big 0 %d\r\n" % len(big) + big + b"\r\nEND\r\n"
        assert got == one + one
        assert roundtrip(s, b"flush_all\r\nget n\r\n", b"END\r\n") == b"OK\r\nEND\r\n"
        reader.close()
        s.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
    report = log.read_text()
    assert rc == 0, report
    assert "Invalid" not in report and "uninitialised" not in report, report

"""libmemcached's conformance checker, memccapable, against RMEMCACHED_BIN
(ASCII protocol checks only: -a)."""
import re
import shutil
import subprocess

import pytest

from conftest import RMEMCACHED_BIN
from mcutil import raw

MEMCCAPABLE = shutil.which("memccapable")

# The checks `memccapable -a` runs (libmemcached-tools 1.1), in order.
ASCII_TESTS = [
    "version", "quit", "verbosity", "set", "set noreply", "get", "gets",
    "mget", "flush", "flush noreply", "add", "add noreply", "replace",
    "replace noreply", "cas", "cas noreply", "delete", "delete noreply",
    "incr", "incr noreply", "decr", "decr noreply", "append",
    "append noreply", "prepend", "prepend noreply", "stat",
]


@pytest.mark.skipif(MEMCCAPABLE is None, reason="memccapable not installed "
                    "(apt-get install libmemcached-tools)")
def test_memccapable_ascii(start_server):
    srv = start_server(RMEMCACHED_BIN)
    proc = subprocess.run(
        [MEMCCAPABLE, "-h", "127.0.0.1", "-p", str(srv.port), "-a", "-t", "10"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=120,
    )
    output = proc.stdout.decode(errors="replace")
    print(output)  # shown by pytest when the test fails
    assert proc.returncode == 0, output
    assert "FAIL" not in output
    lines = output.splitlines()
    results = {}
    for line in lines:
        m = re.fullmatch(r"ascii (\S+(?: noreply)?)\s+\[(\w+)\]", line)
        if m:
            results[m.group(1)] = m.group(2)
    assert list(results) == ASCII_TESTS, output
    assert set(results.values()) == {"pass"}, output
    assert lines[-1] == "All tests passed", output
    # the server survived the run
    assert re.fullmatch(rb"VERSION \d+\.\d+\.\d+\r\n", raw(srv.port, b"version\r\n"))

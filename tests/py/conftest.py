"""Shared fixtures for the Python test suites.

Servers are real processes on 127.0.0.1 with free ports chosen here; every
fixture stops what it starts.  The binary under test comes from
$RMEMCACHED_BIN (default: the release build); the reference server is the
Debian package's /usr/bin/memcached ($MEMCACHED_BIN).  Pointing
RMEMCACHED_BIN at memcached itself dry-runs every suite against the reference.
"""
import os
import socket
import subprocess
import time

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
RMEMCACHED_BIN = os.environ.get(
    "RMEMCACHED_BIN", os.path.join(ROOT, "target", "release", "rmemcached")
)
MEMCACHED_BIN = os.environ.get("MEMCACHED_BIN", "/usr/bin/memcached")


def free_port():
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def user_args():
    """Both servers refuse to run as root without -u."""
    return ["-u", "nobody"] if os.geteuid() == 0 else []


def wait_port(port, proc=None, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"port {port} did not open")


class Server:
    """A server process listening on 127.0.0.1:port."""

    def __init__(self, binary, extra_args=(), port=None):
        self.binary = binary
        self.port = port or free_port()
        self.args = [binary, "-p", str(self.port), "-l", "127.0.0.1", "-U", "0"]
        self.args += user_args() + list(extra_args)
        self.proc = subprocess.Popen(
            self.args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            wait_port(self.port, self.proc)
        except Exception:
            self.stop()
            raise

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def connect(self, timeout=5.0):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.proc.stderr:
            self.proc.stderr.close()


@pytest.fixture
def start_server():
    """Factory: start_server(binary=RMEMCACHED_BIN, args=()) -> Server."""
    started = []

    def _start(binary=RMEMCACHED_BIN, args=()):
        s = Server(binary, args)
        started.append(s)
        return s

    yield _start
    for s in started:
        s.stop()


@pytest.fixture
def rmc(start_server):
    """rmemcached with memcached's defaults."""
    return start_server(RMEMCACHED_BIN)


@pytest.fixture
def real_mc(start_server):
    """The reference memcached 1.6 with its defaults."""
    return start_server(MEMCACHED_BIN)


@pytest.fixture(params=["rmemcached", "memcached"])
def server(request, start_server):
    """Client tests run against both: memcached proves the test right,
    rmemcached proves the server right."""
    binary = RMEMCACHED_BIN if request.param == "rmemcached" else MEMCACHED_BIN
    return start_server(binary)

"""Shared fixtures for the Python test suites.

Servers are real processes on 127.0.0.1 with free ports chosen here; every
fixture stops what it starts.  The binary under test comes from
$RMEMCACHED_BIN (default: the release build); the reference server is the
Debian package's /usr/bin/memcached ($MEMCACHED_BIN).  Pointing
RMEMCACHED_BIN at memcached itself dry-runs every suite against the reference.
"""
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
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


def free_udp_port():
    """A UDP port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_unix(path, proc=None, timeout=10.0):
    """Wait until the unix socket at `path` accepts connections."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            try:
                s.connect(path)
                return
            except OSError:
                pass
        time.sleep(0.02)
    raise TimeoutError(f"unix socket {path} did not open")


def udp_port_bound(port):
    """True if some socket is bound to UDP 127.0.0.1:port or *:port
    (from /proc/net/udp, so no datagram is sent to find out)."""
    want = {f"0100007F:{port:04X}", f"00000000:{port:04X}"}
    try:
        with open("/proc/net/udp") as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        return False
    return any(line.split()[1] in want for line in lines if len(line.split()) > 1)


def wait_udp_bound(port, proc=None, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        if udp_port_bound(port):
            return
        time.sleep(0.02)
    raise TimeoutError(f"UDP port {port} was not bound")


class Server:
    """A server process listening on 127.0.0.1:port.

    Optional, for the suites that need them:
    * unix_path: listen on a unix socket instead (`-s path`, plus `-a mask`
      when unix_mask is given).  memcached then opens no TCP port at all;
      `-p port -l 127.0.0.1` are still passed, so a test can check that
      nothing listens there.  Readiness is the socket accepting connections.
    * udp: also listen on a free UDP port (`-U udp_port`, on 127.0.0.1)
      instead of `-U 0`.
    * env: extra environment variables for the server process.
    * fast_stop: stop() sends SIGKILL instead of SIGTERM (memcached takes up
      to a second to act on SIGTERM), for tests that do not look at how
      the server exits.
    """

    unix_path = None
    unix_mask = None
    udp_port = None
    env = None
    fast_stop = False

    def __init__(self, binary, extra_args=(), port=None, unix_path=None,
                 unix_mask=None, udp=False, env=None, fast_stop=False):
        self.binary = binary
        self.fast_stop = fast_stop
        self.port = port or free_port()
        self.unix_path = unix_path
        self.unix_mask = unix_mask
        self.udp_port = free_udp_port() if udp else None
        udp_arg = str(self.udp_port) if udp else "0"
        self.args = [binary, "-p", str(self.port), "-l", "127.0.0.1", "-U", udp_arg]
        if unix_path is not None:
            self.args += ["-s", unix_path]
            if unix_mask is not None:
                self.args += ["-a", unix_mask]
        self.args += user_args() + list(extra_args)
        self.env = dict(env) if env else None
        proc_env = None
        if env:
            proc_env = dict(os.environ)
            proc_env.update(env)
        self.proc = subprocess.Popen(
            self.args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env=proc_env,
        )
        try:
            if unix_path is not None:
                wait_unix(unix_path, self.proc)
            else:
                wait_port(self.port, self.proc)
            if self.udp_port is not None:
                wait_udp_bound(self.udp_port, self.proc)
        except Exception:
            self.stop()
            raise

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def connect(self, timeout=5.0):
        if self.unix_path is not None:
            return self.connect_unix(timeout)
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def connect_unix(self, timeout=5.0):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(self.unix_path)
        except Exception:
            s.close()
            raise
        return s

    def stop(self):
        if self.proc.poll() is None:
            if self.fast_stop:
                self.proc.kill()
            else:
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
    """Factory: start_server(binary=RMEMCACHED_BIN, args=(), **options) ->
    Server; options are Server's (port, unix_path, unix_mask, udp, env,
    fast_stop)."""
    started = []

    def _start(binary=RMEMCACHED_BIN, args=(), **options):
        s = Server(binary, args, **options)
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


@pytest.fixture(params=["rmemcached", "memcached"])
def server_bin(request):
    """The binary of each server in turn, for tests that start their servers
    themselves (with options) through start_server."""
    return RMEMCACHED_BIN if request.param == "rmemcached" else MEMCACHED_BIN


@pytest.fixture
def shared_tmp():
    """A fresh directory the server can write to and read from: the servers
    drop root for `nobody` (user_args) before they create a unix socket or
    read SASL files, and pytest's tmp_path is 0700 root.  Removed afterwards."""
    path = tempfile.mkdtemp(prefix="rmc-test-")
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        os.chown(path, nobody.pw_uid, nobody.pw_gid)
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module", params=["rmemcached", "memcached"])
def module_server(request):
    """One server of each kind shared by the tests of a module (memcached
    takes up to a second to stop, so a server per test adds up); tests that
    use it flush it first or use their own keys."""
    binary = RMEMCACHED_BIN if request.param == "rmemcached" else MEMCACHED_BIN
    s = Server(binary)
    yield s
    s.stop()

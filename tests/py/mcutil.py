"""Small shared helpers for the Python suites: raw text-protocol exchanges
over a socket and a few /proc utilities for daemonized servers.

Other suites add functions here; add, never rewrite existing ones.
"""
import os
import signal
import socket
import struct
import subprocess
import time
import uuid

DEFAULT_TIMEOUT = 5.0


def connect(port, timeout=DEFAULT_TIMEOUT):
    """A TCP connection to 127.0.0.1:port with TCP_NODELAY and a timeout."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.settimeout(timeout)
    return s


def recv_until(sock, terminator, timeout=DEFAULT_TIMEOUT):
    """Read until the buffer ends with `terminator` (bytes, or a tuple of
    bytes).  Raises EOFError if the peer closes first, socket.timeout after
    `timeout` seconds in total."""
    terms = (terminator,) if isinstance(terminator, bytes) else tuple(terminator)
    deadline = time.monotonic() + timeout
    buf = b""
    while not buf.endswith(terms):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout(f"no {terms!r} within {timeout}s; got {buf[-200:]!r}")
        sock.settimeout(left)
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError(f"EOF before {terms!r}; got {buf[-200:]!r}")
        buf += chunk
    return buf


def recv_until_eof(sock, timeout=DEFAULT_TIMEOUT):
    """Everything the peer sends until it closes (bounded by `timeout`)."""
    deadline = time.monotonic() + timeout
    buf = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout(f"no EOF within {timeout}s; got {buf[-200:]!r}")
        sock.settimeout(left)
        chunk = sock.recv(65536)
        if not chunk:
            return buf
        buf += chunk


def command(sock, data, terminator=b"\r\n", timeout=DEFAULT_TIMEOUT):
    """Send `data` (bytes or str) and read the reply up to `terminator`."""
    if isinstance(data, str):
        data = data.encode()
    sock.sendall(data)
    return recv_until(sock, terminator, timeout)


def raw(port, data, terminator=b"\r\n", timeout=DEFAULT_TIMEOUT):
    """One exchange on a fresh connection, closed afterwards."""
    with connect(port, timeout) as s:
        return command(s, data, terminator, timeout)


def parse_stats(reply):
    """`STAT name value` lines of a reply ending in END -> {name: value} (str)."""
    lines = reply.decode().split("\r\n")
    assert lines[-2:] == ["END", ""], reply[-200:]
    out = {}
    for line in lines[:-2]:
        tag, name, value = line.split(" ", 2)
        assert tag == "STAT", line
        out[name] = value
    return out


def stats(sock_or_port, arg=None, timeout=DEFAULT_TIMEOUT):
    """`stats [arg]` as a dict of str -> str, on a socket or a fresh
    connection to a port."""
    cmd = b"stats\r\n" if arg is None else b"stats " + arg.encode() + b"\r\n"
    if isinstance(sock_or_port, int):
        reply = raw(sock_or_port, cmd, b"END\r\n", timeout)
    else:
        reply = command(sock_or_port, cmd, b"END\r\n", timeout)
    return parse_stats(reply)


def wait_for(predicate, timeout=DEFAULT_TIMEOUT, interval=0.02):
    """Poll `predicate()` until it returns a truthy value; return that value,
    or the last (falsy) one after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def port_refuses(port):
    """True if nothing accepts TCP connections on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return False
    except ConnectionRefusedError:
        return True


# ---------------------------------------------------------------------------
# /proc helpers for daemons (not our children: they are reparented, and may
# linger as zombies when the init process does not reap them).


def proc_status(pid):
    """/proc/<pid>/status as {field: value}, or None if the pid is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def pid_alive(pid):
    """True while the process exists and has not exited (zombies count as
    exited)."""
    st = proc_status(pid)
    return st is not None and not st.get("State", "").startswith(("Z", "X"))


def wait_pid_exit(pid, timeout=DEFAULT_TIMEOUT):
    """True once the process has exited (or become a zombie) within timeout."""
    return wait_for(lambda: not pid_alive(pid), timeout)


def proc_cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return [a.decode(errors="replace") for a in data.split(b"\0")[:-1]]


def pids_with_cmdline(argv):
    """Live pids whose command line is exactly `argv`."""
    argv = [str(a) for a in argv]
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and proc_cmdline(int(name)) == argv and pid_alive(int(name)):
            found.append(int(name))
    return sorted(found)


def kill_pid(pid, timeout=DEFAULT_TIMEOUT):
    """SIGTERM, then SIGKILL if it has not exited within `timeout`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not pid_alive(pid):
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        if wait_pid_exit(pid, timeout):
            return


# ---------------------------------------------------------------------------
# Added for test_slabs_lru.py


def recv_until_big(sock, terminator, timeout=DEFAULT_TIMEOUT):
    """recv_until() for replies of many megabytes: the buffer is a
    bytearray, so reading stays linear in the reply size."""
    deadline = time.monotonic() + timeout
    buf = bytearray()
    while not buf.endswith(terminator):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout(f"no {terminator!r} within {timeout}s; got {len(buf)} bytes")
        sock.settimeout(left)
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise EOFError(f"EOF before {terminator!r}; got {len(buf)} bytes")
        buf += chunk
    return bytes(buf)


def recv_lines(sock, count, timeout=DEFAULT_TIMEOUT):
    """Exactly `count` CRLF-terminated lines (for pipelined one-line
    replies), as a list of lines with their CRLF."""
    deadline = time.monotonic() + timeout
    buf = b""
    while buf.count(b"\r\n") < count:
        buf += recv_until(sock, b"\r\n", max(0.001, deadline - time.monotonic()))
    lines = [line + b"\r\n" for line in buf.split(b"\r\n")[:-1]]
    assert len(lines) == count, lines[count:]
    return lines


# ---------------------------------------------------------------------------
# Added for test_bmemcached.py: raw binary-protocol packets.

BIN_HEADER = struct.Struct(">BBHBBHIIQ")


def bin_request(opcode, key=b"", value=b"", extras=b"", opaque=0, cas=0):
    """A binary-protocol request packet (magic 0x80)."""
    return BIN_HEADER.pack(0x80, opcode, len(key), len(extras), 0, 0,
                           len(extras) + len(key) + len(value), opaque, cas) + extras + key + value


def recv_exact(sock, n, timeout=DEFAULT_TIMEOUT):
    """Exactly n bytes; EOFError if the peer closes first."""
    deadline = time.monotonic() + timeout
    buf = b""
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout(f"got {len(buf)} of {n} bytes within {timeout}s")
        sock.settimeout(left)
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError(f"EOF after {len(buf)} of {n} bytes: {buf!r}")
        buf += chunk
    return buf


def bin_response(sock, timeout=DEFAULT_TIMEOUT):
    """One binary response as a dict: magic, opcode, status, opaque, cas,
    extras, key, value."""
    header = recv_exact(sock, 24, timeout)
    magic, opcode, keylen, extlen, _dtype, status, bodylen, opaque, cas = BIN_HEADER.unpack(header)
    body = recv_exact(sock, bodylen, timeout) if bodylen else b""
    return {
        "magic": magic, "opcode": opcode, "status": status, "opaque": opaque, "cas": cas,
        "extras": body[:extlen], "key": body[extlen:extlen + keylen],
        "value": body[extlen + keylen:],
    }


# ---------------------------------------------------------------------------
# Added for test_ascii_auth.py and test_sasl_options.py


def tmp_file(content, prefix="rmc-auth", mode=0o644):
    """A new file in /tmp holding `content` (bytes), with `mode`; -> its
    path.  In /tmp and world-readable by default: servers started as root
    read it after dropping to `nobody`.  The caller removes it."""
    path = f"/tmp/{prefix}-{os.getpid()}-{uuid.uuid4().hex}.txt"
    with open(path, "wb") as f:
        f.write(content)
    os.chmod(path, mode)
    return path


def run_refused(argv, env=None, timeout=5):
    """Run a server command line that must be refused: (returncode, stdout,
    stderr).  A server that starts anyway is killed after `timeout` seconds
    and reported with returncode None (the test's assertions then fail on
    its missing exit).  env: the process environment (None: inherited)."""
    proc = subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=5)
        return None, out, err
    return proc.returncode, out, err

"""Command-line behaviour of RMEMCACHED_BIN, asserted as memcached 1.6.18
behaves (every test passes with RMEMCACHED_BIN=/usr/bin/memcached).

Daemonized servers are not our children: they are found through their pid
file or /proc, and always killed in a finally block.
"""
import os
import pwd
import re
import resource
import signal
import subprocess
import time
import uuid

import pytest

from conftest import RMEMCACHED_BIN, free_port, user_args, wait_port
from mcutil import (
    command,
    connect,
    kill_pid,
    pid_alive,
    pids_with_cmdline,
    port_refuses,
    proc_status,
    raw,
    recv_until,
    recv_until_eof,
    stats,
    wait_for,
    wait_pid_exit,
)

BIN = RMEMCACHED_BIN
MB = 1024 * 1024
IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root (-u switching)")


def run(args, timeout=10):
    """Run the binary to completion (bounded); stdio captured."""
    return subprocess.run(
        [BIN] + [str(a) for a in args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
    )


def run_failing(args, timeout=5):
    """run() for command lines that must be refused.  Should the binary
    start a server anyway (a daemon survives the run; a foreground one hits
    the timeout), it is killed; the test's assertions still fail."""
    argv = [BIN] + [str(a) for a in args]
    try:
        return run(args, timeout)
    finally:
        if "-d" in argv:
            time.sleep(0.05)
        for pid in pids_with_cmdline(argv):
            kill_pid(pid)


def base_args(port):
    return user_args() + ["-l", "127.0.0.1", "-U", "0", "-p", str(port)]


def unique_pidfile():
    # /tmp itself: the daemon writes the file after dropping privileges, so
    # the directory must be writable by the unprivileged user
    return f"/tmp/rmc-test-{os.getpid()}-{uuid.uuid4().hex}.pid"


def read_pidfile(path, timeout=5.0):
    """The pid written to `path` ("<pid>\\n"), waiting for it to appear."""
    def ready():
        try:
            with open(path) as f:
                text = f.read()
        except FileNotFoundError:
            return None
        return text if re.fullmatch(r"[1-9][0-9]*\n", text) else None

    text = wait_for(ready, timeout)
    assert text is not None, f"pid file {path} not written within {timeout}s"
    return int(text)


def remove_quietly(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def settings(port):
    return stats(port, "settings")


# ---------------------------------------------------------------------------
# Daemon mode


def test_seed_deployment_daemon():
    """The deployment command line, exactly as typed in production."""
    try:
        user = pwd.getpwnam("memcache")
    except KeyError:
        pytest.skip("no user 'memcache' (getent passwd memcache fails); "
                    "the Makefile creates it")
    if not IS_ROOT:
        pytest.skip("-u memcache needs root")
    port = free_port()
    pidfile = unique_pidfile()
    argv = ["-d", "-m", "1024", "-u", "memcache", "-l", "127.0.0.1",
            "-p", str(port), "-c", "1024", "-P", pidfile]
    pid = None
    try:
        started = time.monotonic()
        result = run(argv, timeout=10)
        assert result.returncode == 0, result.stderr
        assert time.monotonic() - started < 3.0
        # daemonized: stdio detached, nothing printed
        assert result.stdout == b""
        assert result.stderr == b""

        pid = read_pidfile(pidfile)
        assert pid_alive(pid)
        status = proc_status(pid)
        uid, gid = str(user.pw_uid), str(user.pw_gid)
        assert status["Uid"].split() == [uid] * 4
        assert status["Gid"].split() == [gid] * 4
        assert status["Groups"] == ""  # root's supplementary groups dropped
        assert os.stat(pidfile).st_uid == user.pw_uid  # written after setuid
        # detached: own session, cwd /, stdio on /dev/null
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        assert int(fields[3]) == pid  # session id
        assert os.readlink(f"/proc/{pid}/cwd") == "/"
        for fd in (0, 1, 2):
            assert os.readlink(f"/proc/{pid}/fd/{fd}") == "/dev/null"

        wait_port(port, timeout=5)
        assert re.fullmatch(rb"VERSION \d+\.\d+\.\d+\r\n", raw(port, b"version\r\n"))
        s = settings(port)
        assert s["maxbytes"] == "1073741824"
        assert s["maxconns"] == "1024"
        assert s["tcpport"] == str(port)
        assert s["inter"] == "127.0.0.1"
        assert stats(port)["pid"] == str(pid)
        assert stats(port)["limit_maxbytes"] == "1073741824"

        # SIGTERM: the daemon exits and removes its pid file
        os.kill(pid, signal.SIGTERM)
        assert wait_pid_exit(pid, 5.0) is True
        assert os.path.exists(pidfile) is False
        assert port_refuses(port) is True
    finally:
        if pid is not None:
            kill_pid(pid)
        for leftover in pids_with_cmdline([BIN] + argv):
            kill_pid(leftover)
        remove_quietly(pidfile)


def test_daemon_memory_suffix():
    port = free_port()
    argv = [BIN, "-p", str(port), "-m", "64m", "-d", "-u", "nobody", "-l", "127.0.0.1"]
    pids = []
    try:
        result = subprocess.run(argv, stdin=subprocess.DEVNULL,
                                capture_output=True, timeout=10)
        assert result.returncode == 0, result.stderr
        assert result.stdout == b""
        assert result.stderr == b""
        wait_port(port, timeout=5)
        pids = pids_with_cmdline(argv)
        assert len(pids) == 1
        if IS_ROOT:
            assert proc_status(pids[0])["Uid"].split() == ["65534"] * 4
        s = settings(port)
        # -m takes megabytes; a trailing unit letter is ignored (atoi)
        assert s["maxbytes"] == str(64 * MB)
        assert s["tcpport"] == str(port)
    finally:
        for pid in pids + pids_with_cmdline(argv):
            kill_pid(pid)


def test_daemon_pidfile_removed_on_sigint():
    port = free_port()
    pidfile = unique_pidfile()
    argv = ["-d", "-P", pidfile] + base_args(port)
    pid = None
    try:
        result = run(argv)
        assert result.returncode == 0, result.stderr
        pid = read_pidfile(pidfile)
        wait_port(port, timeout=5)
        os.kill(pid, signal.SIGINT)
        assert wait_pid_exit(pid, 5.0) is True
        assert os.path.exists(pidfile) is False
    finally:
        if pid is not None:
            kill_pid(pid)
        for leftover in pids_with_cmdline([BIN] + argv):
            kill_pid(leftover)
        remove_quietly(pidfile)


def test_foreground_pidfile_written_and_kept(start_server):
    """-P without -d still writes the pid file, but only a daemon removes it."""
    pidfile = unique_pidfile()
    try:
        srv = start_server(BIN, ["-P", pidfile])
        assert read_pidfile(pidfile) == srv.proc.pid
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(timeout=5) == 0
        with open(pidfile) as f:
            assert f.read() == f"{srv.proc.pid}\n"
    finally:
        remove_quietly(pidfile)


def test_daemon_reports_option_errors_before_forking():
    port = free_port()
    result = run_failing(["-d", "-I", "1k"] + base_args(port))
    assert result.returncode == 64
    assert result.stderr == (
        b"slab_chunk_max (bytes: 524288) cannot be larger than -I (item_size_max 1024)\n")
    assert port_refuses(port) is True


def test_daemon_busy_port_still_exits_zero(start_server):
    """memcached forks before binding: the parent exits 0 and the daemon
    dies on its own when the port is taken."""
    busy = start_server(BIN)
    argv = [BIN, "-d"] + base_args(busy.port)
    try:
        result = subprocess.run(argv, stdin=subprocess.DEVNULL,
                                capture_output=True, timeout=10)
        assert result.returncode == 0
        assert result.stdout == b""
        assert result.stderr == b""
        assert wait_for(lambda: pids_with_cmdline(argv) == [], 5.0) is True
        assert raw(busy.port, b"version\r\n").startswith(b"VERSION ")
    finally:
        for pid in pids_with_cmdline(argv):
            kill_pid(pid)


# ---------------------------------------------------------------------------
# Refusals at startup


@needs_root
def test_root_without_u_refused():
    port = free_port()
    result = run_failing(["-l", "127.0.0.1", "-U", "0", "-p", str(port)])
    assert result.returncode == 64
    assert result.stdout == b""
    assert result.stderr == b"can't run as root without the -u switch\n"
    assert port_refuses(port) is True


@needs_root
def test_root_without_u_refused_as_daemon():
    port = free_port()
    result = run_failing(["-d", "-l", "127.0.0.1", "-U", "0", "-p", str(port)])
    assert result.returncode == 64
    assert result.stderr == b"can't run as root without the -u switch\n"
    assert port_refuses(port) is True


@needs_root
def test_unknown_user_refused():
    port = free_port()
    result = run_failing(["-u", "no-such-user-rmc", "-l", "127.0.0.1", "-U", "0",
                  "-p", str(port)])
    assert result.returncode == 67
    assert result.stdout == b""
    assert result.stderr == b"can't find the user no-such-user-rmc to switch to\n"
    assert port_refuses(port) is True


@pytest.mark.parametrize("opts, first_line", [
    (["--no-such-option"], "{0}: unrecognized option '--no-such-option'"),
    (["--foo=bar"], "{0}: unrecognized option '--foo=bar'"),
    (["-j"], "{0}: invalid option -- 'j'"),
    (["-jk"], "{0}: invalid option -- 'j'"),
])
def test_unknown_option(opts, first_line):
    port = free_port()
    result = run_failing(base_args(port) + opts)
    assert result.returncode == 1
    assert result.stdout == b""
    expected = first_line.format(BIN) + "\n" + 'Illegal argument "?"\n'
    assert result.stderr.decode() == expected
    assert port_refuses(port) is True


@pytest.mark.parametrize("opt, first_line", [
    ("-p", "{0}: option requires an argument -- 'p'"),
    ("-c", "{0}: option requires an argument -- 'c'"),
    ("--port", "{0}: option '--port' requires an argument"),
])
def test_missing_option_argument(opt, first_line):
    result = run_failing(user_args() + ["-l", "127.0.0.1", "-U", "0", opt])
    assert result.returncode == 1
    assert result.stdout == b""
    expected = first_line.format(BIN) + "\n" + 'Illegal argument "?"\n'
    assert result.stderr.decode() == expected


@pytest.mark.parametrize("opts, message", [
    (["-c", "0"], "Maximum connections must be greater than 0\n"),
    (["-c", "abc"], "Maximum connections must be greater than 0\n"),
    (["-t", "0"], "Number of threads must be greater than 0\n"),
    (["-f", "0.5"], "Factor must be greater than 1\n"),
    (["-n", "0"], "Chunk size must be greater than 0\n"),
    (["-R", "0"], "Number of requests per event must be greater than 0\n"),
])
def test_invalid_option_value(opts, message):
    port = free_port()
    result = run_failing(base_args(port) + opts)
    assert result.returncode == 1
    assert result.stdout == b""
    assert result.stderr.decode() == message
    assert port_refuses(port) is True


# ---------------------------------------------------------------------------
# -m


@pytest.mark.parametrize("value, maxbytes", [
    ("64m", 64 * MB),
    ("64M", 64 * MB),
    ("64mb", 64 * MB),
    ("64k", 64 * MB),  # the unit letter is ignored: always megabytes
    ("100", 100 * MB),
    ("2", 2 * MB),
    ("4096", 4096 * MB),
])
def test_memory_limit_values(start_server, value, maxbytes):
    srv = start_server(BIN, ["-m", value])
    assert settings(srv.port)["maxbytes"] == str(maxbytes)
    assert stats(srv.port)["limit_maxbytes"] == str(maxbytes)


@pytest.mark.parametrize("value", ["1g", "1G", "1", "0", "abc"])
def test_memory_limit_too_small_for_items(value):
    """atoi("1g") == 1 MB, which cannot hold a 1 MB item (half the memory)."""
    port = free_port()
    result = run_failing(base_args(port) + ["-m", value])
    assert result.returncode == 64
    assert result.stdout == b""
    assert result.stderr == b"Cannot set item size limit higher than 1/2 of memory max.\n"
    assert port_refuses(port) is True


def test_long_options(start_server):
    srv = start_server(BIN, ["--memory-limit=100", "--conn-limit=500",
                             "--max-item-size=2m", "--threads=2",
                             "--disable-evictions"])
    s = settings(srv.port)
    assert s["maxbytes"] == str(100 * MB)
    assert s["maxconns"] == "500"
    assert s["item_size_max"] == str(2 * MB)
    assert s["num_threads"] == "2"
    assert s["evictions"] == "off"
    assert stats(srv.port)["threads"] == "2"


# ---------------------------------------------------------------------------
# -c: connection limit


def open_admitted(port):
    s = connect(port)
    assert command(s, b"version\r\n").startswith(b"VERSION ")
    return s


def test_conn_limit_rejects_with_error(start_server):
    """memcached admits maxconns - 8 - 4 * threads clients with one TCP
    listener and UDP off: with -c 40 and the default 4 threads, 16.  The
    next connection gets the error line and is closed."""
    srv = start_server(BIN, ["-c", "40"])
    admitted = []
    try:
        ctl = connect(srv.port)
        admitted.append(ctl)
        # wait until the readiness probe of the fixture is gone
        assert wait_for(lambda: stats(ctl)["curr_connections"] == "1", 3.0) is True
        for _ in range(15):
            admitted.append(open_admitted(srv.port))
        assert stats(ctl)["curr_connections"] == "16"

        with connect(srv.port) as extra:
            assert recv_until_eof(extra) == b"ERROR Too many open connections\r\n"

        st = stats(ctl)
        assert st["rejected_connections"] == "1"
        assert st["curr_connections"] == "16"
        assert st["max_connections"] == "40"

        # admitted connections keep working
        for s in admitted:
            assert command(s, b"version\r\n").startswith(b"VERSION ")

        # a freed slot is usable again, then the limit applies again
        admitted.pop().close()
        assert wait_for(lambda: stats(ctl)["curr_connections"] == "15", 3.0) is True
        admitted.append(open_admitted(srv.port))
        with connect(srv.port) as extra:
            assert recv_until_eof(extra) == b"ERROR Too many open connections\r\n"
        assert stats(ctl)["rejected_connections"] == "2"
    finally:
        for s in admitted:
            s.close()


def test_conn_limit_depends_on_threads(start_server):
    """With -t 1 the reserve is smaller: -c 30 admits 30 - 8 - 4 = 18."""
    srv = start_server(BIN, ["-c", "30", "-t", "1"])
    admitted = []
    try:
        ctl = connect(srv.port)
        admitted.append(ctl)
        assert wait_for(lambda: stats(ctl)["curr_connections"] == "1", 3.0) is True
        for _ in range(17):
            admitted.append(open_admitted(srv.port))
        with connect(srv.port) as extra:
            assert recv_until_eof(extra) == b"ERROR Too many open connections\r\n"
        assert stats(ctl)["rejected_connections"] == "1"
    finally:
        for s in admitted:
            s.close()


def test_conn_limit_setting_reported(start_server):
    srv = start_server(BIN, ["-c", "1000"])
    assert settings(srv.port)["maxconns"] == "1000"
    assert stats(srv.port)["max_connections"] == "1000"


# ---------------------------------------------------------------------------
# -I: item size limit


def set_raw(sock, key, value):
    return command(sock, b"set %s 0 0 %d\r\n%s\r\n" % (key, len(value), value))


def test_item_size_2m(start_server):
    srv = start_server(BIN, ["-I", "2m"])
    s = settings(srv.port)
    assert s["item_size_max"] == str(2 * MB)
    assert s["maxbytes"] == str(64 * MB)
    value = bytes((i * 13) & 0xFF for i in range(MB + MB // 2))
    with connect(srv.port, timeout=10) as sock:
        assert set_raw(sock, b"big", value) == b"STORED\r\n"
        sock.sendall(b"get big\r\n")
        reply = recv_until(sock, b"END\r\n", timeout=10)
        assert reply == b"VALUE big 0 %d\r\n%s\r\nEND\r\n" % (len(value), value)


@pytest.mark.parametrize("opts, limit", [([], MB), (["-I", "2m"], 2 * MB)])
def test_item_size_exact_boundary(start_server, opts, limit):
    """An item is 48 header bytes + 8 CAS bytes + key + 1 + value + 2
    (+ 4 when flags != 0); it fits when that is <= item_size_max."""
    srv = start_server(BIN, opts)
    with connect(srv.port, timeout=10) as sock:
        fits = limit - 48 - 8 - 3 - 1 - 2
        assert set_raw(sock, b"abc", b"v" * fits) == b"STORED\r\n"
        assert set_raw(sock, b"abc", b"v" * (fits + 1)) == (
            b"SERVER_ERROR object too large for cache\r\n")
        # the failed set removed the previous value
        assert command(sock, b"get abc\r\n", b"END\r\n") == b"END\r\n"
        # nonzero flags cost 4 more bytes
        sock.sendall(b"set abc 1 0 %d\r\n%s\r\n" % (fits - 4, b"v" * (fits - 4)))
        assert recv_until(sock, b"\r\n") == b"STORED\r\n"
        sock.sendall(b"set abc 1 0 %d\r\n%s\r\n" % (fits - 3, b"v" * (fits - 3)))
        assert recv_until(sock, b"\r\n") == b"SERVER_ERROR object too large for cache\r\n"
        assert command(sock, b"version\r\n").startswith(b"VERSION ")


@pytest.mark.parametrize("opts, item_size_max", [
    (["-I", "512k"], 512 * 1024),
    (["-I", "1536k"], 1536 * 1024),
    (["-I", "2M"], 2 * MB),
    (["-I", "3m"], 3 * MB),
    (["-I", "1048576"], MB),
    (["-I", "1.5m"], MB),  # atoi("1.5") == 1
    (["-I", "4m", "-m", "8"], 4 * MB),
    (["-I", "1024m", "-m", "4096"], 1024 * MB),
])
def test_item_size_accepted(start_server, opts, item_size_max):
    srv = start_server(BIN, opts)
    assert settings(srv.port)["item_size_max"] == str(item_size_max)


@pytest.mark.parametrize("opts, message", [
    (["-I", "1k"], "slab_chunk_max (bytes: 524288) cannot be larger than -I (item_size_max 1024)\n"),
    (["-I", "1024"], "slab_chunk_max (bytes: 524288) cannot be larger than -I (item_size_max 1024)\n"),
    (["-I", "256k"], "slab_chunk_max (bytes: 524288) cannot be larger than -I (item_size_max 262144)\n"),
    (["-I", "1023"], "Item max size cannot be less than 1024 bytes.\n"),
    (["-I", "0"], "Item max size cannot be less than 1024 bytes.\n"),
    (["-I", "1g"], "Item max size cannot be less than 1024 bytes.\n"),  # atoi("1g") == 1
    (["-I", "768k"], "-I (item_size_max: 786432) must be evenly divisible by slab_chunk_max (bytes: 524288)\n"),
    (["-I", "1000k"], "-I (item_size_max: 1024000) must be evenly divisible by slab_chunk_max (bytes: 524288)\n"),
    (["-I", "64m"], "Cannot set item size limit higher than 1/2 of memory max.\n"),
    (["-I", "5m", "-m", "8"], "Cannot set item size limit higher than 1/2 of memory max.\n"),
    (["-I", "1025m", "-m", "4096"], "Cannot set item size limit higher than a gigabyte.\n"),
])
def test_item_size_rejected(opts, message):
    port = free_port()
    result = run_failing(base_args(port) + opts)
    assert result.returncode == 64
    assert result.stdout == b""
    assert result.stderr.decode() == message
    assert port_refuses(port) is True


# ---------------------------------------------------------------------------
# -m with -M: out of memory instead of evicting


def fill(sock, count, size=1024, batch=64):
    """Pipeline `count` sets of `size`-byte values key0..; return replies."""
    value = b"x" * size
    replies = []
    for start in range(0, count, batch):
        keys = range(start, min(start + batch, count))
        sock.sendall(b"".join(
            b"set key%d 0 0 %d\r\n%s\r\n" % (i, size, value) for i in keys))
        data = b""
        while data.count(b"\r\n") < len(keys):
            data += recv_until(sock, b"\r\n")
        replies += [line + b"\r\n" for line in data.split(b"\r\n")[:-1]]
    return replies


def test_disable_evictions_out_of_memory(start_server):
    srv = start_server(BIN, ["-m", "8", "-M"])
    assert settings(srv.port)["evictions"] == "off"
    with connect(srv.port, timeout=10) as sock:
        replies = fill(sock, 12000)
        oom = b"SERVER_ERROR out of memory storing object\r\n"
        assert set(replies) == {b"STORED\r\n", oom}
        stored = replies.index(oom)
        # all sets up to the first failure stored, all later ones failed
        assert replies[:stored] == [b"STORED\r\n"] * stored
        assert replies[stored:] == [oom] * (12000 - stored)
        # the 8 MB limit is honoured and mostly usable
        assert 4096 <= stored <= 8192, stored
        st = stats(sock)
        assert st["evictions"] == "0"
        assert st["curr_items"] == str(stored)
        # nothing was evicted: the first key is still there
        assert command(sock, b"get key0\r\n", b"END\r\n") == (
            b"VALUE key0 0 1024\r\n" + b"x" * 1024 + b"\r\nEND\r\n")
        # freeing an item makes room for one of the same size
        assert command(sock, b"delete key0\r\n") == b"DELETED\r\n"
        assert set_raw(sock, b"again", b"y" * 1024) == b"STORED\r\n"
        assert set_raw(sock, b"again2", b"y" * 1024) == oom
        assert command(sock, b"version\r\n").startswith(b"VERSION ")


def test_evictions_without_M(start_server):
    srv = start_server(BIN, ["-m", "8"])
    assert settings(srv.port)["evictions"] == "on"
    with connect(srv.port, timeout=10) as sock:
        replies = fill(sock, 12000)
        assert replies == [b"STORED\r\n"] * 12000
        st = stats(sock)
        curr, evicted = int(st["curr_items"]), int(st["evictions"])
        assert 4096 <= curr <= 8192, curr
        assert curr + evicted == 12000
        # the oldest keys went first, the newest is there
        assert command(sock, b"get key0\r\n", b"END\r\n") == b"END\r\n"
        assert command(sock, b"get key11999\r\n", b"END\r\n") == (
            b"VALUE key11999 0 1024\r\n" + b"x" * 1024 + b"\r\nEND\r\n")


# ---------------------------------------------------------------------------
# -h, -V


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help(flag):
    result = run([flag])
    assert result.returncode == 0
    assert result.stderr == b""
    out = result.stdout.decode()
    assert re.match(r"\S+ \d+\.\d+\.\d+\n", out), out[:100]
    for line in ("-p, --port=<num>", "-l, --listen=<addr>", "-d, --daemon",
                 "-u, --user=<user>", "-m, --memory-limit=<num>",
                 "-M, --disable-evictions", "-c, --conn-limit=<num>",
                 "-P, --pidfile=<file>", "-t, --threads=<num>",
                 "-I, --max-item-size=<num>", "-V, --version", "-h, --help"):
        assert "\n" + line in out, line


@pytest.mark.parametrize("flag", ["-V", "--version"])
def test_version_flag(flag):
    result = run([flag])
    assert result.returncode == 0
    assert result.stderr == b""
    assert re.fullmatch(rb"\S+ \d+\.\d+\.\d+\n", result.stdout), result.stdout


# ---------------------------------------------------------------------------
# Signals (foreground)


def stderr_after_exit(srv):
    return srv.proc.stderr.read()


@pytest.mark.parametrize("sig, err", [
    (signal.SIGTERM, b""),
    (signal.SIGINT, b""),
    (signal.SIGUSR1, b"Gracefully stopping\n"),  # printed even without -v
])
def test_signal_exits_cleanly(start_server, sig, err):
    srv = start_server(BIN)
    with connect(srv.port) as client:
        assert command(client, b"set k 0 0 1\r\nv\r\n") == b"STORED\r\n"
        srv.proc.send_signal(sig)
        assert srv.proc.wait(timeout=5) == 0
        # the open client connection is closed by the exit
        assert recv_until_eof(client) == b""
    assert stderr_after_exit(srv) == err
    assert port_refuses(srv.port) is True


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_verbose_message(start_server, sig):
    srv = start_server(BIN, ["-v"])
    srv.proc.send_signal(sig)
    assert srv.proc.wait(timeout=5) == 0
    assert stderr_after_exit(srv) == b"Exiting normally\n"


def test_sighup_keeps_running(start_server):
    srv = start_server(BIN)
    with connect(srv.port) as client:
        assert command(client, b"set k 0 0 1\r\nv\r\n") == b"STORED\r\n"
        srv.proc.send_signal(signal.SIGHUP)
        time.sleep(0.3)
        assert srv.proc.poll() is None
        assert command(client, b"get k\r\n", b"END\r\n") == b"VALUE k 0 1\r\nv\r\nEND\r\n"
    srv.proc.send_signal(signal.SIGTERM)
    assert srv.proc.wait(timeout=5) == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start as nobody")
def test_conn_limit_equal_to_hard_nofile_limit_starts():
    """An unprivileged user whose hard descriptor limit is exactly -c can
    start memcached (it sets the limit to -c): the same must hold here."""
    port = free_port()

    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (524, 524))

    proc = subprocess.Popen(
        [BIN, "-p", str(port), "-l", "127.0.0.1", "-U", "0", "-c", "524"],
        user="nobody", preexec_fn=limit,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        wait_port(port, proc)
        with connect(port) as s:
            assert command(s, b"version\r\n").startswith(b"VERSION ")
        assert settings(port)["maxconns"] == "524"
    finally:
        proc.kill()
        proc.wait()

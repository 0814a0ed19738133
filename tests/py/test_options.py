"""Run-time options and administrative commands of RMEMCACHED_BIN, asserted
as memcached 1.6.18 behaves (every test passes with
RMEMCACHED_BIN=/usr/bin/memcached).

Covers -o idle_timeout, -l with several addresses, -F, -C, -R, -A, -X, the
`stats detail|conns|reset|cachedump` subcommands, cache_memlimit,
verbosity, the options echoed by `stats settings`, and the -vv trace.
Values that change from run to run (fds, ports, times) are matched by
format, everything else exactly.
"""
import re
import select
import socket
import subprocess
import time

import pytest

from conftest import RMEMCACHED_BIN, Server, free_port, user_args, wait_port
from mcutil import (
    command,
    connect,
    port_refuses,
    recv_until,
    recv_until_eof,
    stats,
    wait_for,
)

BIN = RMEMCACHED_BIN
MB = 1024 * 1024
VERSION_RE = rb"VERSION [^\r\n]+\r\n"


def settings(sock_or_port):
    return stats(sock_or_port, "settings")


def assert_no_reply(sock, cmd):
    """`cmd` produces no output: the next bytes are the reply to a
    following `version`."""
    if isinstance(cmd, str):
        cmd = cmd.encode()
    reply = command(sock, cmd + b"version\r\n")
    assert re.fullmatch(VERSION_RE, reply), reply


def quiet_client(srv, timeout=3.0):
    """A control connection, once the fixture's readiness probe is gone
    (curr_connections counts client connections only)."""
    ctl = srv.connect()
    assert wait_for(lambda: stats(ctl)["curr_connections"] == "1", timeout) is True
    return ctl


# ---------------------------------------------------------------------------
# Servers with their own -l (the fixture always passes -l 127.0.0.1)


def ipv6_loopback_available():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


needs_ipv6 = pytest.mark.skipif(not ipv6_loopback_available(),
                                reason="::1 is not available on this host")


class ListenServer(Server):
    """Like conftest.Server, with the -l options given by the test."""

    def __init__(self, binary, listen_args, extra_args=()):
        self.binary = binary
        self.port = free_port()
        self.args = [binary, "-p", str(self.port), "-U", "0"]
        self.args += user_args() + list(listen_args) + list(extra_args)
        self.proc = subprocess.Popen(
            self.args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            wait_port(self.port, self.proc)
        except Exception:
            self.stop()
            raise


@pytest.fixture
def start_listen_server():
    started = []

    def _start(listen_args, extra_args=(), binary=BIN):
        s = ListenServer(binary, listen_args, extra_args)
        started.append(s)
        return s

    yield _start
    for s in started:
        s.stop()


def connect6(port, timeout=5.0):
    s = socket.create_connection(("::1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.settimeout(timeout)
    return s


# ---------------------------------------------------------------------------
# 1. -o idle_timeout


def test_idle_timeout(start_server):
    """memcached's idle-timeout thread checks connections with a 1 s clock:
    an idle connection is closed once more than 2 whole seconds passed
    (observed 2.3 s .. 4.8 s after connecting); a connection sending a
    command every 0.5 s is kept."""
    srv = start_server(BIN, ["-o", "idle_timeout=2"])
    assert settings(srv.port)["idle_timeout"] == "2"
    active = srv.connect()
    idle = srv.connect()
    started = time.monotonic()
    closed_after = None
    next_ping = started
    while time.monotonic() - started < 8.0:
        now = time.monotonic()
        if closed_after is not None and now - started > 4.2:
            break
        if now >= next_ping:
            reply = command(active, b"version\r\n")
            assert re.fullmatch(VERSION_RE, reply), reply
            next_ping += 0.5
            continue
        if closed_after is None:
            readable, _, _ = select.select([idle], [], [], next_ping - now)
            if readable:
                assert idle.recv(4096) == b""  # EOF, no message
                closed_after = time.monotonic() - started
        else:
            time.sleep(next_ping - now)
    assert closed_after is not None, "idle connection not closed within 8 s"
    assert 2.0 < closed_after < 6.0, closed_after
    assert time.monotonic() - started > 4.0
    # the active connection survived past 4 s
    assert re.fullmatch(VERSION_RE, command(active, b"version\r\n"))
    assert stats(active)["idle_kicks"] == "1"
    idle.close()
    active.close()


def test_idle_timeout_default_off(start_server):
    """Without -o idle_timeout, `stats` has no idle_kicks line at all."""
    srv = start_server(BIN)
    assert settings(srv.port)["idle_timeout"] == "0"
    assert "idle_kicks" not in stats(srv.port)


# ---------------------------------------------------------------------------
# 2. -l with several addresses


@needs_ipv6
@pytest.mark.parametrize("listen, inter", [
    (["-l", "127.0.0.1,::1"], "127.0.0.1,::1"),
    (["-l", "127.0.0.1", "-l", "::1"], "127.0.0.1,::1"),  # joined with ","
    (["-l", "::1,127.0.0.1"], "::1,127.0.0.1"),
])
def test_listen_several_addresses(start_listen_server, listen, inter):
    srv = start_listen_server(listen)
    port = srv.port
    with connect(port) as s4, connect6(port) as s6:
        assert re.fullmatch(VERSION_RE, command(s4, b"version\r\n"))
        assert re.fullmatch(VERSION_RE, command(s6, b"version\r\n"))
        assert settings(s4)["inter"] == inter
        assert settings(s6)["inter"] == inter
        # both listeners appear in stats conns, in the order given
        reply = command(s6, b"stats conns\r\n", b"END\r\n").decode()
        listeners = re.findall(r"STAT \d+:addr (\S+)\r\nSTAT \d+:state conn_listening\r\n",
                               reply)
        expected = {"127.0.0.1": f"tcp:127.0.0.1:{port}", "::1": f"tcp6:[::1]:{port}"}
        assert listeners == [expected[a] for a in inter.split(",")]
        # the IPv6 client is reported in tcp6 form
        assert re.search(
            r"STAT \d+:addr tcp6:\[::1\]:%d\r\nSTAT \d+:listen_addr tcp6:\[::1\]:%d\r\n"
            r"STAT \d+:state conn_parse_cmd\r\n" % (s6.getsockname()[1], port),
            reply), reply


# ---------------------------------------------------------------------------
# 3. -F: flush_all disabled


def test_flush_disabled(start_server):
    srv = start_server(BIN, ["-F"])
    assert settings(srv.port)["flush_enabled"] == "no"
    with connect(srv.port) as s:
        assert command(s, b"set k 0 0 1\r\nv\r\n") == b"STORED\r\n"
        assert command(s, b"flush_all\r\n") == b"CLIENT_ERROR flush_all not allowed\r\n"
        assert_no_reply(s, b"flush_all noreply\r\n")
        assert command(s, b"flush_all 0\r\n") == b"CLIENT_ERROR flush_all not allowed\r\n"
        # noreply only counts as the last token
        assert command(s, b"flush_all noreply 0\r\n") == \
            b"CLIENT_ERROR flush_all not allowed\r\n"
        assert command(s, b"get k\r\n", b"END\r\n") == b"VALUE k 0 1\r\nv\r\nEND\r\n"
        # refused flushes are still counted
        assert stats(s)["cmd_flush"] == "4"


def test_flush_enabled_by_default(start_server):
    srv = start_server(BIN)
    assert settings(srv.port)["flush_enabled"] == "yes"


# ---------------------------------------------------------------------------
# 4. -C: no CAS


def test_cas_disabled(start_server):
    srv = start_server(BIN, ["-C"])
    assert settings(srv.port)["cas_enabled"] == "no"
    with connect(srv.port) as s:
        assert command(s, b"set k 0 0 1\r\nv\r\n") == b"STORED\r\n"
        assert command(s, b"gets k\r\n", b"END\r\n") == b"VALUE k 0 1 0\r\nv\r\nEND\r\n"
        # even the reported unique 0 does not match
        assert command(s, b"cas k 0 0 1 0\r\nx\r\n") == b"EXISTS\r\n"
        assert command(s, b"cas k 0 0 1 1\r\nx\r\n") == b"EXISTS\r\n"
        assert command(s, b"cas nokey 0 0 1 0\r\nx\r\n") == b"NOT_FOUND\r\n"
        assert command(s, b"gets k\r\n", b"END\r\n") == b"VALUE k 0 1 0\r\nv\r\nEND\r\n"
        st = stats(s)
        assert (st["cas_hits"], st["cas_badval"], st["cas_misses"]) == ("0", "2", "1")


def test_cas_enabled_by_default(start_server):
    srv = start_server(BIN)
    assert settings(srv.port)["cas_enabled"] == "yes"
    with connect(srv.port) as s:
        assert command(s, b"set k 0 0 1\r\nv\r\n") == b"STORED\r\n"
        reply = command(s, b"gets k\r\n", b"END\r\n")
        m = re.fullmatch(rb"VALUE k 0 1 ([1-9][0-9]*)\r\nv\r\nEND\r\n", reply)
        assert m, reply


# ---------------------------------------------------------------------------
# 5. -R: requests per event


def test_reqs_per_event_yields(start_server):
    srv = start_server(BIN, ["-R", "1"])
    assert settings(srv.port)["reqs_per_event"] == "1"
    n = 50
    with connect(srv.port) as s:
        for i in range(n):
            v = str(i).encode()
            assert command(s, b"set k%d 0 0 %d\r\n%s\r\n" % (i, len(v), v)) == b"STORED\r\n"
    yields_before = int(stats(srv.port)["conn_yields"])
    request = b"".join(b"get k%d\r\n" % i for i in range(n))
    expected = b"".join(b"VALUE k%d 0 %d\r\n%d\r\nEND\r\n" % (i, len(str(i)), i)
                        for i in range(n))
    with connect(srv.port) as s:
        s.sendall(request)
        reply = b""
        deadline = time.monotonic() + 5
        while len(reply) < len(expected) and time.monotonic() < deadline:
            reply += recv_until(s, b"END\r\n", deadline - time.monotonic())
        assert reply == expected
        assert int(stats(s)["conn_yields"]) > yields_before


# ---------------------------------------------------------------------------
# 6. -A: shutdown command


@pytest.mark.parametrize("cmd, err", [
    (b"shutdown\r\n", b""),
    (b"shutdown graceful\r\n", b"Gracefully stopping\n"),
])
def test_shutdown_command(start_server, cmd, err):
    srv = start_server(BIN, ["-A"])
    assert settings(srv.port)["shutdown_command"] == "yes"
    other = srv.connect()
    assert re.fullmatch(VERSION_RE, command(other, b"version\r\n"))
    with srv.connect() as s:
        s.sendall(cmd)
        assert recv_until_eof(s) == b""  # no reply, connection closed
    assert srv.proc.wait(timeout=5) == 0
    assert recv_until_eof(other) == b""
    other.close()
    assert srv.proc.stderr.read() == err
    assert port_refuses(srv.port) is True


def test_shutdown_invalid_mode(start_server):
    srv = start_server(BIN, ["-A"])
    with srv.connect() as s:
        assert command(s, b"shutdown foo\r\n") == b"CLIENT_ERROR invalid shutdown mode\r\n"
        assert command(s, b"shutdown graceful extra\r\n") == \
            b"CLIENT_ERROR invalid shutdown mode\r\n"
        # noreply is not honoured: it is taken as a (bad) mode
        for cmd in (b"shutdown noreply", b"shutdown graceful noreply",
                    b"shutdown foo noreply"):
            assert command(s, cmd + b"\r\n") == \
                b"CLIENT_ERROR invalid shutdown mode\r\n", cmd
        time.sleep(1.5)
        assert srv.proc.poll() is None
        assert re.fullmatch(VERSION_RE, command(s, b"version\r\n"))


def test_shutdown_not_enabled(start_server):
    srv = start_server(BIN)
    assert settings(srv.port)["shutdown_command"] == "no"
    with srv.connect() as s:
        for cmd in (b"shutdown", b"shutdown graceful", b"shutdown foo", b"shutdown noreply"):
            assert command(s, cmd + b"\r\n") == b"ERROR: shutdown not enabled\r\n", cmd
        assert re.fullmatch(VERSION_RE, command(s, b"version\r\n"))
    assert srv.proc.poll() is None


# ---------------------------------------------------------------------------
# 7. -X and stats cachedump


def test_cachedump_disabled(start_server):
    srv = start_server(BIN, ["-X"])
    assert settings(srv.port)["dump_enabled"] == "no"
    with srv.connect() as s:
        assert command(s, b"set a 0 0 5\r\nhello\r\n") == b"STORED\r\n"
        for args in (b"1 1", b"1", b"x 1", b"200 1"):
            assert command(s, b"stats cachedump " + args + b"\r\n") == \
                b"CLIENT_ERROR stats cachedump not allowed\r\n", args


def test_cachedump_format(start_server):
    srv = start_server(BIN)
    assert settings(srv.port)["dump_enabled"] == "yes"
    with srv.connect() as s:
        t0 = int(stats(s)["time"])
        assert command(s, b"set a 0 0 5\r\nhello\r\n") == b"STORED\r\n"
        assert command(s, b"set bb 0 100 2\r\nhi\r\n") == b"STORED\r\n"
        t1 = int(stats(s)["time"])
        # both small items live in slab class 1 (96-byte chunks)
        items = stats(s, "items")
        assert items["items:1:number"] == "2"
        assert {k.split(":")[1] for k in items} == {"1"}
        assert stats(s, "slabs")["1:chunk_size"] == "96"

        # memcached dumps the COLD LRU only: new items show up once its LRU
        # maintainer has moved them there out of HOT (within about 1 s)
        line = rb"ITEM (\S+) \[(\d+) b; (\d+) s\]\r\n"

        def dump_both():
            r = command(s, b"stats cachedump 1 10\r\n", b"END\r\n")
            return re.fullmatch(line * 2 + rb"END\r\n", r) and r

        reply = wait_for(dump_both, 5.0, 0.1)
        assert reply, command(s, b"stats cachedump 1 10\r\n", b"END\r\n")
        m = re.fullmatch(line * 2 + rb"END\r\n", reply)
        # newest first; exptime 0 prints 0, otherwise an absolute unix time
        assert (m[1], m[2], m[4], m[5], m[6]) == (b"bb", b"2", b"a", b"5", b"0")
        assert t0 + 100 <= int(m[3]) <= t1 + 100, (t0, t1, m[3])

        # a limit of 0 means no limit
        assert command(s, b"stats cachedump 1 0\r\n", b"END\r\n") == reply
        one = command(s, b"stats cachedump 1 1\r\n", b"END\r\n")
        assert one == b"ITEM bb [2 b; %s s]\r\nEND\r\n" % m[3]
        # empty and out-of-range-but-legal classes
        for cls in (b"0", b"2", b"63"):
            assert command(s, b"stats cachedump " + cls + b" 10\r\n") == b"END\r\n", cls


@pytest.mark.parametrize("args, error", [
    (b"1", b"CLIENT_ERROR bad command line"),
    (b"", b"CLIENT_ERROR bad command line"),
    (b"x 1", b"CLIENT_ERROR bad command line format"),
    (b"1 x", b"CLIENT_ERROR bad command line format"),
    (b"-1 1", b"CLIENT_ERROR bad command line format"),
    (b"1 -1", b"CLIENT_ERROR bad command line format"),
    (b"200 1", b"CLIENT_ERROR Illegal slab id"),
    (b"64 1", b"CLIENT_ERROR Illegal slab id"),
])
def test_cachedump_errors(start_server, args, error):
    srv = start_server(BIN)
    with srv.connect() as s:
        assert command(s, b"set a 0 0 5\r\nhello\r\n") == b"STORED\r\n"
        cmd = b"stats cachedump" + (b" " + args if args else b"") + b"\r\n"
        assert command(s, cmd) == error + b"\r\n"
        assert re.fullmatch(VERSION_RE, command(s, b"version\r\n"))


# ---------------------------------------------------------------------------
# 8. stats detail


def test_stats_detail_dump(start_server):
    srv = start_server(BIN)
    with srv.connect() as s:
        assert settings(s)["detail_enabled"] == "no"
        assert command(s, b"stats detail dump\r\n") == b"END\r\n"
        assert command(s, b"stats detail on\r\n") == b"OK\r\n"
        assert settings(s)["detail_enabled"] == "yes"
        assert command(s, b"set user:1 0 0 1\r\na\r\n") == b"STORED\r\n"
        assert command(s, b"get user:1\r\n", b"END\r\n") == b"VALUE user:1 0 1\r\na\r\nEND\r\n"
        assert command(s, b"get user:2\r\n") == b"END\r\n"
        assert command(s, b"delete user:1\r\n") == b"DELETED\r\n"
        assert command(s, b"set other 0 0 1\r\nb\r\n") == b"STORED\r\n"
        dump = b"PREFIX user get 2 hit 1 set 1 del 1\r\nEND\r\n"
        # keys without the ":" delimiter are not counted
        assert command(s, b"stats detail dump\r\n", b"END\r\n") == dump
        assert command(s, b"stats detail off\r\n") == b"OK\r\n"
        assert settings(s)["detail_enabled"] == "no"
        # off stops counting but keeps what was counted
        assert command(s, b"set user:3 0 0 1\r\nc\r\n") == b"STORED\r\n"
        assert command(s, b"set new:1 0 0 1\r\nc\r\n") == b"STORED\r\n"
        assert command(s, b"stats detail dump\r\n", b"END\r\n") == dump


def test_stats_detail_what_counts(start_server):
    srv = start_server(BIN)
    with srv.connect() as s:
        assert command(s, b"stats detail on\r\n") == b"OK\r\n"
        assert command(s, b"set aa:1 0 0 1\r\nx\r\n") == b"STORED\r\n"
        # multi-key get counts every key; gets counts as get
        assert command(s, b"get aa:1 zz:1 plain\r\n", b"END\r\n") == \
            b"VALUE aa:1 0 1\r\nx\r\nEND\r\n"
        assert command(s, b"gets aa:1\r\n", b"END\r\n").startswith(b"VALUE aa:1 0 1 ")
        # touch and incr are not counted
        assert command(s, b"touch aa:1 100\r\n") == b"TOUCHED\r\n"
        assert command(s, b"incr aa:1 1\r\n") == \
            b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
        # a refused append is counted as a set, a missing delete as a del
        assert command(s, b"append zz:2 0 0 1\r\ny\r\n") == b"NOT_STORED\r\n"
        assert command(s, b"delete q:x\r\n") == b"NOT_FOUND\r\n"
        assert command(s, b"stats detail dump\r\n", b"END\r\n") == (
            b"PREFIX zz get 1 hit 0 set 1 del 0\r\n"
            b"PREFIX aa get 2 hit 2 set 1 del 0\r\n"
            b"PREFIX q get 0 hit 0 set 0 del 1\r\n"
            b"END\r\n")


def test_stats_detail_prefix_order(start_server):
    """Prefixes are dumped in memcached's hash-table order, not in order of
    appearance; the prefix ends at the first ':' and may be empty."""
    srv = start_server(BIN)
    with srv.connect() as s:
        assert command(s, b"stats detail on\r\n") == b"OK\r\n"
        for key in (b"q:1", b"aa:1", b"zz:1", b"user:1", b"a:b:c", b":x", b"x:"):
            assert command(s, b"get " + key + b"\r\n") == b"END\r\n", key
        assert command(s, b"stats detail dump\r\n", b"END\r\n") == (
            b"PREFIX  get 1 hit 0 set 0 del 0\r\n"
            b"PREFIX user get 1 hit 0 set 0 del 0\r\n"
            b"PREFIX zz get 1 hit 0 set 0 del 0\r\n"
            b"PREFIX x get 1 hit 0 set 0 del 0\r\n"
            b"PREFIX aa get 1 hit 0 set 0 del 0\r\n"
            b"PREFIX a get 1 hit 0 set 0 del 0\r\n"
            b"PREFIX q get 1 hit 0 set 0 del 0\r\n"
            b"END\r\n")


@pytest.mark.parametrize("args, reply", [
    (b"", b"CLIENT_ERROR usage: stats detail on|off|dump\r\n"),
    (b" bogus", b"CLIENT_ERROR usage: stats detail on|off|dump\r\n"),
    (b" ON", b"CLIENT_ERROR usage: stats detail on|off|dump\r\n"),
    # extra tokens after a valid subcommand are ignored
    (b" on extra", b"OK\r\n"),
    (b" on noreply", b"OK\r\n"),
    (b" dump x", b"END\r\n"),
])
def test_stats_detail_arguments(start_server, args, reply):
    srv = start_server(BIN)
    with srv.connect() as s:
        assert command(s, b"stats detail" + args + b"\r\n") == reply
        assert re.fullmatch(VERSION_RE, command(s, b"version\r\n"))


# ---------------------------------------------------------------------------
# 9. stats conns


def parse_conns(reply):
    """`stats conns` -> [(fd, [(field, value), ...]), ...] in reply order."""
    text = reply.decode()
    assert text.endswith("\r\nEND\r\n"), text[-200:]
    groups = []
    for line in text.split("\r\n")[:-2]:
        m = re.fullmatch(r"STAT (\d+):([a-z_]+) (\S+)", line)
        assert m, line
        fd = int(m[1])
        if not groups or groups[-1][0] != fd:
            groups.append((fd, []))
        groups[-1][1].append((m[2], m[3]))
    return groups


def test_stats_conns(start_server):
    srv = start_server(BIN)
    port = srv.port
    ctl = quiet_client(srv)
    ctl.close()
    fresh = srv.connect()             # never sends anything
    used = srv.connect()              # one complete command
    assert re.fullmatch(VERSION_RE, command(used, b"version\r\n"))
    partial = srv.connect()           # half a command line
    partial.sendall(b"get k")
    time.sleep(1.2)
    asker = srv.connect()
    reply = command(asker, b"stats conns\r\n", b"END\r\n")
    groups = parse_conns(reply)
    fds = [fd for fd, _ in groups]
    assert fds == sorted(set(fds)), fds
    # the listener first: no listen_addr
    lfd, lfields = groups[0]
    assert [f for f, _ in lfields] == ["addr", "state", "secs_since_last_cmd"]
    assert lfields[0][1] == f"tcp:127.0.0.1:{port}"
    assert lfields[1][1] == "conn_listening"
    assert re.fullmatch(r"\d+", lfields[2][1])
    clients = {}
    for fd, fields in groups[1:]:
        assert [f for f, _ in fields] == ["addr", "listen_addr", "state",
                                          "secs_since_last_cmd"], fields
        d = dict(fields)
        assert re.fullmatch(r"tcp:127\.0\.0\.1:\d+", d["addr"]), d
        assert d["listen_addr"] == f"tcp:127.0.0.1:{port}"
        clients[d["addr"]] = d
    expect = {
        fresh: "conn_new_cmd",
        used: "conn_read",
        partial: "conn_read",
        asker: "conn_parse_cmd",
    }
    assert sorted(clients) == sorted(f"tcp:127.0.0.1:{c.getsockname()[1]}" for c in expect)
    for sock, state in expect.items():
        d = clients[f"tcp:127.0.0.1:{sock.getsockname()[1]}"]
        assert d["state"] == state, (state, d)
        if sock is asker:
            assert d["secs_since_last_cmd"] == "0"
        else:
            assert int(d["secs_since_last_cmd"]) >= 1, d
    # the same reply shape with a stray argument
    again = parse_conns(command(asker, b"stats conns extra\r\n", b"END\r\n"))
    assert [fd for fd, _ in again] == fds
    for s in (fresh, used, partial, asker):
        s.close()


# ---------------------------------------------------------------------------
# 10. stats reset


def test_stats_reset(start_server):
    srv = start_server(BIN)
    s = quiet_client(srv)
    other = srv.connect()
    assert re.fullmatch(VERSION_RE, command(other, b"version\r\n"))
    assert command(s, b"stats detail on\r\n") == b"OK\r\n"
    assert command(s, b"set a 0 0 1\r\n1\r\n") == b"STORED\r\n"
    assert command(s, b"set b:1 0 0 1\r\n1\r\n") == b"STORED\r\n"
    assert command(s, b"set c 0 0 1\r\n1\r\n") == b"STORED\r\n"
    assert command(s, b"get a\r\n", b"END\r\n") == b"VALUE a 0 1\r\n1\r\nEND\r\n"
    assert command(s, b"get zz\r\n") == b"END\r\n"
    assert command(s, b"delete c\r\n") == b"DELETED\r\n"
    assert command(s, b"delete c\r\n") == b"NOT_FOUND\r\n"
    assert command(s, b"incr a 1\r\n") == b"2\r\n"
    assert command(s, b"touch a 100\r\n") == b"TOUCHED\r\n"
    before = stats(s)
    assert (before["cmd_get"], before["get_hits"], before["get_misses"]) == ("2", "1", "1")
    assert (before["cmd_set"], before["total_items"], before["delete_hits"]) == ("3", "3", "1")
    assert before["curr_items"] == "2"
    assert before["curr_connections"] == "2"

    assert command(s, b"stats reset\r\n") == b"RESET\r\n"
    after = stats(s)
    for name in ("cmd_get", "cmd_set", "cmd_touch", "cmd_flush", "get_hits",
                 "get_misses", "delete_hits", "delete_misses", "incr_hits",
                 "touch_hits", "total_items", "total_connections"):
        assert after[name] == "0", (name, before[name], after[name])
    # counted after the reset: "RESET\r\n" written, "stats\r\n" read
    assert (after["bytes_read"], after["bytes_written"]) == ("7", "7")
    # gauges and identity are kept
    for name in ("curr_items", "bytes", "curr_connections", "connection_structures",
                 "pid", "limit_maxbytes", "threads", "max_connections"):
        assert after[name] == before[name], (name, before[name], after[name])
    assert int(after["uptime"]) >= int(before["uptime"])
    # prefix stats are cleared too
    assert command(s, b"stats detail dump\r\n") == b"END\r\n"
    # a new connection counts from zero
    with srv.connect() as third:
        assert stats(third)["total_connections"] == "1"
    # extra tokens are ignored; noreply is not honoured
    assert command(s, b"stats reset extra\r\n") == b"RESET\r\n"
    assert command(s, b"stats reset noreply\r\n") == b"RESET\r\n"
    s.close()
    other.close()


# ---------------------------------------------------------------------------
# 11. cache_memlimit


@pytest.mark.parametrize("arg, reply, maxbytes", [
    (b"100", b"OK\r\n", 100 * MB),
    (b"8", b"OK\r\n", 8 * MB),
    (b"4096", b"OK\r\n", 4096 * MB),
    (b"100 extra", b"OK\r\n", 100 * MB),
    (b"7", b"MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\n", 64 * MB),
    (b"0", b"MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\n", 64 * MB),
    (b"2000000000",
     b"MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes\r\n", 64 * MB),
    (b"abc", b"ERROR\r\n", 64 * MB),
    (b"-1", b"ERROR\r\n", 64 * MB),
    (b"", b"ERROR\r\n", 64 * MB),
    (b"50 extra more", b"ERROR\r\n", 64 * MB),
])
def test_cache_memlimit(start_server, arg, reply, maxbytes):
    srv = start_server(BIN)
    with srv.connect() as s:
        cmd = b"cache_memlimit" + (b" " + arg if arg else b"") + b"\r\n"
        assert command(s, cmd) == reply
        assert settings(s)["maxbytes"] == str(maxbytes)
        assert stats(s)["limit_maxbytes"] == str(maxbytes)


def test_cache_memlimit_noreply(start_server):
    srv = start_server(BIN)
    with srv.connect() as s:
        assert_no_reply(s, b"cache_memlimit 100 noreply\r\n")
        assert settings(s)["maxbytes"] == str(100 * MB)
        # errors are swallowed too
        assert_no_reply(s, b"cache_memlimit 7 noreply\r\n")
        assert_no_reply(s, b"cache_memlimit abc noreply\r\n")
        assert settings(s)["maxbytes"] == str(100 * MB)


# ---------------------------------------------------------------------------
# 12. verbosity


@pytest.mark.parametrize("arg, reply, level", [
    (b"5", b"OK\r\n", "2"),        # clamped to 2
    (b"3", b"OK\r\n", "2"),
    (b"2", b"OK\r\n", "2"),
    (b"1", b"OK\r\n", "1"),
    (b"1 extra", b"OK\r\n", "1"),
    (b"", b"ERROR\r\n", "0"),
    (b"abc", b"CLIENT_ERROR bad command line format\r\n", "0"),
    (b"-1", b"CLIENT_ERROR bad command line format\r\n", "0"),
    (b"1 2 3", b"ERROR\r\n", "0"),
])
def test_verbosity(start_server, arg, reply, level):
    srv = start_server(BIN)
    with srv.connect() as s:
        assert settings(s)["verbosity"] == "0"
        cmd = b"verbosity" + (b" " + arg if arg else b"") + b"\r\n"
        assert command(s, cmd) == reply
        assert settings(s)["verbosity"] == level


def test_verbosity_noreply(start_server):
    srv = start_server(BIN)
    with srv.connect() as s:
        assert command(s, b"verbosity 5\r\n") == b"OK\r\n"
        assert settings(s)["verbosity"] == "2"
        assert_no_reply(s, b"verbosity 1 noreply\r\n")
        assert settings(s)["verbosity"] == "1"
        assert command(s, b"verbosity 0\r\n") == b"OK\r\n"
        assert settings(s)["verbosity"] == "0"


# ---------------------------------------------------------------------------
# 13. options echoed by stats settings / stats


def test_options_in_settings(start_server):
    default = settings(start_server(BIN).port)
    srv = start_server(BIN, ["-t", "1", "-b", "512", "-B", "ascii", "-f", "1.5",
                             "-n", "32", "-R", "7", "-I", "2m", "-M", "-c", "77"])
    st = settings(srv.port)
    changed = {k: v for k, v in st.items() if default.get(k) != v and k != "tcpport"}
    assert changed == {
        "num_threads": "1",
        "num_threads_per_udp": "1",
        "tcp_backlog": "512",
        "binding_protocol": "ascii",
        "growth_factor": "1.50",
        "chunk_size": "32",
        "reqs_per_event": "7",
        "item_size_max": str(2 * MB),
        "evictions": "off",
        "maxconns": "77",
    }
    assert st["tcpport"] == str(srv.port)
    # defaults these options replace
    assert (default["num_threads"], default["tcp_backlog"], default["binding_protocol"],
            default["growth_factor"], default["chunk_size"], default["reqs_per_event"],
            default["item_size_max"], default["evictions"], default["maxconns"]) == (
        "4", "1024", "auto-negotiate", "1.25", "48", "20", str(MB), "on", "1024")
    st = stats(srv.port)
    assert st["threads"] == "1"
    assert st["max_connections"] == "77"
    assert st["limit_maxbytes"] == str(64 * MB)


@pytest.mark.parametrize("factor, shown", [("2", "2.00"), ("1.05", "1.05"),
                                           ("1.123", "1.12")])
def test_growth_factor_format(start_server, factor, shown):
    srv = start_server(BIN, ["-f", factor])
    assert settings(srv.port)["growth_factor"] == shown


def test_binding_protocol_auto(start_server):
    srv = start_server(BIN, ["-B", "auto"])
    assert settings(srv.port)["binding_protocol"] == "auto-negotiate"


# ---------------------------------------------------------------------------
# 14. -vv trace


DEFAULT_SLAB_TABLE = [
    (96, 10922), (120, 8738), (152, 6898), (192, 5461), (240, 4369),
    (304, 3449), (384, 2730), (480, 2184), (600, 1747), (752, 1394),
    (944, 1110), (1184, 885), (1480, 708), (1856, 564), (2320, 451),
    (2904, 361), (3632, 288), (4544, 230), (5680, 184), (7104, 147),
    (8880, 118), (11104, 94), (13880, 75), (17352, 60), (21696, 48),
    (27120, 38), (33904, 30), (42384, 24), (52984, 19), (66232, 15),
    (82792, 12), (103496, 10), (129376, 8), (161720, 6), (202152, 5),
    (252696, 4), (315872, 3), (394840, 2), (524288, 2),
]


def test_vv_trace(start_server):
    srv = start_server(BIN, ["-vv"])
    with srv.connect() as s:
        s.sendall(b"set k 0 0 1\r\nv\r\nget k\r\n")
        assert recv_until(s, b"END\r\n") == b"STORED\r\nVALUE k 0 1\r\nv\r\nEND\r\n"
    time.sleep(0.3)
    srv.proc.terminate()
    assert srv.proc.wait(timeout=5) == 0
    err = srv.proc.stderr.read().decode()
    lines = err.split("\n")
    assert lines[-1] == ""
    lines = lines[:-1]

    # the slab class table comes first
    table = ["slab class %3d: chunk size %9d perslab %7d" % (i + 1, size, per)
             for i, (size, per) in enumerate(DEFAULT_SLAB_TABLE)]
    assert lines[:len(table)] == table
    assert lines[0] == "slab class   1: chunk size        96 perslab   10922"
    assert re.fullmatch(r"<\d+ server listening \(auto-negotiate\)", lines[len(table)])
    assert lines[-1] == "Exiting normally"

    # our connection's lines, in order (other connections may interleave)
    set_at = next(i for i, l in enumerate(lines) if re.fullmatch(r"<\d+ set k 0 0 1", l))
    fd = re.fullmatch(r"<(\d+) set k 0 0 1", lines[set_at])[1]
    new_at = max(i for i in range(set_at)
                 if lines[i] == f"<{fd} new auto-negotiating client connection")
    mine = [l for l in lines[new_at:]
            if l.startswith((f"<{fd} ", f">{fd} ", f"{fd}: "))]
    assert mine[:8] == [
        f"<{fd} new auto-negotiating client connection",
        f"{fd}: Client using the ascii protocol",
        f"<{fd} set k 0 0 1",
        f">{fd} STORED",
        f"<{fd} get k",
        f">{fd} sending key k",
        f">{fd} END",
        f"<{fd} connection closed.",
    ]
    # every line after the table has one of the known shapes
    shapes = re.compile(
        r"<\d+ server listening \(auto-negotiate\)"
        r"|<\d+ new auto-negotiating client connection"
        r"|\d+: Client using the ascii protocol"
        r"|<\d+ (set k 0 0 1|get k|connection closed\.)"
        r"|>\d+ (STORED|sending key k|END)"
        r"|Exiting normally")
    for l in lines[len(table):]:
        assert shapes.fullmatch(l), l

"""libmemcached-tools 1.1 (memcp, memcat, memrm, memflush, memstat, memping,
memtouch, memexist) against RMEMCACHED_BIN and the reference memcached
1.6.18, over the ASCII protocol and, where the tool has --binary, the binary
protocol.  Every expectation was recorded against memcached 1.6.18.

Debian names the tools memccp, memccat, ... (memc* prefix); other systems
memcp, memcat, ...; both are looked up.

Tool behaviour worth knowing when reading the assertions:
  * memcat prints each value followed by "\\n" (so exactly the file's bytes
    plus one newline); with -F the flags on a line of their own first.
  * Without -v the tools print nothing on a miss; the exit status says it.
  * memexist checks with `add <key> 0 2678400 0` (binary: ADD with the same
    expiration): 2678400 s is more than 30 days, hence an absolute unix time
    (1970-02-01), hence in the past: the add stores an already expired item,
    so a missing key stays missing.
  * memping sends `version`; memstat -S prints the versions on stderr.
"""
import os
import re
import shutil
import socket
import subprocess
import time

import pytest

from conftest import free_port, user_args, wait_port, RMEMCACHED_BIN, MEMCACHED_BIN
from mcutil import raw, stats, wait_for

TOOL_TIMEOUT = 30


def find_tool(name):
    """memXXX or Debian's memcXXX."""
    for candidate in (f"mem{name}", f"memc{name}"):
        path = shutil.which(candidate)
        if path:
            return path
    return None


TOOLS = {n: find_tool(n) for n in
         ("cp", "cat", "rm", "flush", "stat", "ping", "touch", "exist")}

pytestmark = pytest.mark.skipif(
    any(p is None for p in TOOLS.values()),
    reason="libmemcached-tools not installed (apt-get install libmemcached-tools); "
           f"found {TOOLS}")

# memping has no --binary; the others do.
PROTOCOLS = pytest.mark.parametrize("proto", ["ascii", "binary"])


def tool(name, port, *args, proto="ascii", cwd=None):
    """Run one tool against 127.0.0.1:port (bounded); stdio captured."""
    argv = [TOOLS[name], f"--servers=127.0.0.1:{port}"]
    if proto == "binary":
        argv.append("--binary")
    argv += [str(a) for a in args]
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=TOOL_TIMEOUT, cwd=cwd)


def ok(result):
    """Exit 0 and silent."""
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b""), result


def raw_get(port, key):
    return raw(port, b"get " + key.encode() + b"\r\n", b"END\r\n")


def raw_set(port, key, value, flags=0, exptime=0):
    reply = raw(port, b"set %s %d %d %d\r\n%s\r\n" % (key.encode(), flags, exptime,
                                                      len(value), value))
    assert reply == b"STORED\r\n"


def write_file(directory, name, data):
    path = os.path.join(directory, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


# Bytes a text-protocol implementation could trip over: NUL, CR LF inside
# the value, a line that looks like END, high bytes.
AWKWARD = b"hello\x00world\r\nEND\r\n\xff\xfe tail \r"


# ---------------------------------------------------------------------------
# memcp / memcat


@PROTOCOLS
def test_memcp_then_memcat_exact_bytes(server, tmp_path, proto):
    path = write_file(tmp_path, "blob.bin", AWKWARD)
    ok(tool("cp", server.port, path, proto=proto))
    # the key is the file's basename; flags 0, no expiry
    assert raw_get(server.port, "blob.bin") == (
        b"VALUE blob.bin 0 %d\r\n" % len(AWKWARD) + AWKWARD + b"\r\nEND\r\n")
    cat = tool("cat", server.port, "blob.bin", proto=proto)
    assert (cat.returncode, cat.stdout, cat.stderr) == (0, AWKWARD + b"\n", b"")


@PROTOCOLS
def test_memcp_empty_and_large_files(server, tmp_path, proto):
    empty = write_file(tmp_path, "empty", b"")
    ok(tool("cp", server.port, empty, proto=proto))
    assert raw_get(server.port, "empty") == b"VALUE empty 0 0\r\n\r\nEND\r\n"
    assert tool("cat", server.port, "empty", proto=proto).stdout == b"\n"

    # 600 KB: several reads/writes on both sides, well under the 1 MB limit
    data = bytes(range(256)) * 2400
    big = write_file(tmp_path, "big", data)
    ok(tool("cp", server.port, big, proto=proto))
    cat = tool("cat", server.port, "big", proto=proto)
    assert (cat.returncode, cat.stdout, cat.stderr) == (0, data + b"\n", b"")


@PROTOCOLS
def test_memcp_several_files_and_memcat_several_keys(server, tmp_path, proto):
    a = write_file(tmp_path, "a", b"AAA")
    b = write_file(tmp_path, "b", b"BB")
    ok(tool("cp", server.port, a, b, proto=proto))
    cat = tool("cat", server.port, "a", "b", "a", proto=proto)
    assert (cat.returncode, cat.stdout, cat.stderr) == (0, b"AAA\nBB\nAAA\n", b"")
    # a miss in the middle: the hits are still printed, exit status 1
    cat = tool("cat", server.port, "a", "nokey", "b", proto=proto)
    assert (cat.returncode, cat.stdout, cat.stderr) == (1, b"AAA\nBB\n", b"")


@PROTOCOLS
def test_memcp_flags_and_expire(server, tmp_path, proto):
    path = write_file(tmp_path, "fe", b"flagged")
    ok(tool("cp", server.port, "--flags=123", "--expire=100", path, proto=proto))
    assert raw_get(server.port, "fe") == b"VALUE fe 123 7\r\nflagged\r\nEND\r\n"
    cat = tool("cat", server.port, "-F", "fe", proto=proto)
    assert (cat.returncode, cat.stdout, cat.stderr) == (0, b"123\nflagged\n", b"")
    reply = raw(server.port, b"mg fe t f\r\n")
    assert re.fullmatch(rb"HD t(99|100) f123\r\n", reply), reply

    # the whole 32-bit flags range survives both protocols
    ok(tool("cp", server.port, "--flags=4294967295", path, proto=proto))
    assert raw_get(server.port, "fe") == b"VALUE fe 4294967295 7\r\nflagged\r\nEND\r\n"
    cat = tool("cat", server.port, "--flags", "fe", proto=proto)
    assert cat.stdout == b"4294967295\nflagged\n"
    # no --expire: no expiry (mg t reports -1)
    assert raw(server.port, b"mg fe t\r\n") == b"HD t-1\r\n"


def test_memcp_negative_expire_ascii_stores_an_expired_item(server, tmp_path):
    """ASCII: `set gone 0 -1 2`: a negative exptime expires at once."""
    path = write_file(tmp_path, "gone", b"x")
    ok(tool("cp", server.port, "--expire=-1", path))
    assert raw_get(server.port, "gone") == b"END\r\n"
    assert tool("cat", server.port, "gone").returncode == 1


def test_memcp_negative_expire_binary_is_far_future(server, tmp_path):
    """Binary: the expiration extra is unsigned, so -1 arrives as
    0xFFFFFFFF: an absolute unix time in 2106, and the item lives."""
    path = write_file(tmp_path, "kept", b"x")
    ok(tool("cp", server.port, "--expire=-1", path, proto="binary"))
    assert raw_get(server.port, "kept") == b"VALUE kept 0 1\r\nx\r\nEND\r\n"
    reply = raw(server.port, b"mg kept t\r\n")
    m = re.fullmatch(rb"HD t(\d+)\r\n", reply)
    assert m, reply
    assert abs(int(m.group(1)) - (0xFFFFFFFF - int(time.time()))) <= 3


@PROTOCOLS
def test_memcp_add_and_replace(server, tmp_path, proto):
    path = write_file(tmp_path, "k", b"one")
    # --add on a missing key stores it
    ok(tool("cp", server.port, "--add", path, proto=proto))
    # --add on an existing key: refused
    r = tool("cp", server.port, "--add", path, proto=proto)
    detail = b"NOT STORED" if proto == "ascii" else b"CONNECTION DATA EXISTS"
    assert (r.returncode, r.stdout, r.stderr) == (
        1, b"", b"Error occurred during memcached_add('k'): " + detail + b"\n")
    # --replace on an existing key replaces it
    write_file(tmp_path, "k", b"two")
    ok(tool("cp", server.port, "--replace", path, proto=proto))
    assert raw_get(server.port, "k") == b"VALUE k 0 3\r\ntwo\r\nEND\r\n"
    # --replace on a missing key: refused
    other = write_file(tmp_path, "missing", b"zzz")
    r = tool("cp", server.port, "--replace", other, proto=proto)
    detail = b"NOT STORED" if proto == "ascii" else b"NOT FOUND"
    assert (r.returncode, r.stdout, r.stderr) == (
        1, b"", b"Error occurred during memcached_replace('missing'): " + detail + b"\n")
    assert raw_get(server.port, "missing") == b"END\r\n"


@PROTOCOLS
def test_memcp_item_too_large(server, tmp_path, proto):
    """2 MB against the default 1 MB item size: ASCII `SERVER_ERROR object
    too large for cache`, binary status 0x0003 (E2BIG); the tool reports
    ITEM TOO BIG either way and the server keeps serving."""
    path = write_file(tmp_path, "huge", b"\0" * 2_000_000)
    r = tool("cp", server.port, path, proto=proto)
    assert (r.returncode, r.stdout, r.stderr) == (
        1, b"", b"Error occurred during memcached_set('huge'): ITEM TOO BIG\n")
    assert raw_get(server.port, "huge") == b"END\r\n"
    assert raw(server.port, b"version\r\n") == b"VERSION 1.6.18\r\n"


def test_memcp_unreadable_file(server, tmp_path):
    r = tool("cp", server.port, str(tmp_path / "nonexistent"))
    assert (r.returncode, r.stdout) == (1, b"")
    assert r.stderr == (f"Failed to open '{tmp_path / 'nonexistent'}' for reading: "
                        "No such file or directory.\n").encode()


@PROTOCOLS
def test_memcat_missing_key(server, proto):
    r = tool("cat", server.port, "nokey", proto=proto)
    assert (r.returncode, r.stdout, r.stderr) == (1, b"", b"")
    r = tool("cat", server.port, "-v", "nokey", proto=proto)
    assert (r.returncode, r.stdout, r.stderr) == (
        1, b"", b"Could not find key 'nokey': NOT FOUND\n")


@PROTOCOLS
def test_memcat_verbose_shows_key(server, proto):
    raw_set(server.port, "vk", b"v1", flags=7)
    r = tool("cat", server.port, "-v", "vk", proto=proto)
    assert (r.returncode, r.stdout, r.stderr) == (0, b"key: vk\nvalue: v1\n", b"")


# ---------------------------------------------------------------------------
# memcp over UDP (-U): libmemcached sends the store as a noreply command in
# one datagram with the 8-byte UDP frame header; ASCII `set ... noreply` or
# binary SETQ.


class UdpServer:
    """A server listening on the same TCP and UDP port (the conftest Server
    always passes -U 0)."""

    def __init__(self, binary):
        for _ in range(50):
            port = free_port()
            try:  # the UDP port must be free too
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                    u.bind(("127.0.0.1", port))
                break
            except OSError:
                continue
        self.port = port
        self.proc = subprocess.Popen(
            [binary, "-p", str(port), "-U", str(port), "-l", "127.0.0.1"] + user_args(),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_port(port, self.proc)
        except Exception:
            self.stop()
            raise

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc.stderr.close()


@pytest.fixture(params=["rmemcached", "memcached"])
def udp_server(request):
    srv = UdpServer(RMEMCACHED_BIN if request.param == "rmemcached" else MEMCACHED_BIN)
    yield srv
    srv.stop()


@PROTOCOLS
def test_memcp_over_udp(udp_server, tmp_path, proto):
    data = b"sent over udp\x00\xff\r\n" * 20  # one datagram (< 1400 bytes)
    path = write_file(tmp_path, "udpkey", data)
    ok(tool("cp", udp_server.port, "--udp", "--flags=9", path, proto=proto))
    expected = b"VALUE udpkey 9 %d\r\n" % len(data) + data + b"\r\nEND\r\n"
    # UDP is fire-and-forget: the set lands asynchronously
    got = wait_for(lambda: raw_get(udp_server.port, "udpkey") == expected, timeout=3)
    assert got, raw_get(udp_server.port, "udpkey")
    assert stats(udp_server.port)["cmd_set"] == "1"


# ---------------------------------------------------------------------------
# memrm


@PROTOCOLS
def test_memrm(server, tmp_path, proto):
    path = write_file(tmp_path, "victim", b"data")
    ok(tool("cp", server.port, path, proto=proto))
    ok(tool("rm", server.port, "victim", proto=proto))
    assert raw_get(server.port, "victim") == b"END\r\n"
    r = tool("cat", server.port, "victim", proto=proto)
    assert (r.returncode, r.stdout, r.stderr) == (1, b"", b"")
    # removing again: NOT FOUND, exit 1
    r = tool("rm", server.port, "victim", proto=proto)
    assert (r.returncode, r.stdout, r.stderr) == (1, b"", b"")
    r = tool("rm", server.port, "-v", "victim", proto=proto)
    assert (r.returncode, r.stdout, r.stderr) == (
        1, b"", b"Could not find key 'victim': NOT FOUND\n")
    s = stats(server.port)
    assert (s["delete_hits"], s["delete_misses"]) == ("1", "2")


@PROTOCOLS
def test_memrm_several_keys_one_missing(server, proto):
    raw_set(server.port, "r1", b"1")
    raw_set(server.port, "r2", b"2")
    r = tool("rm", server.port, "r1", "nokey", "r2", proto=proto)
    assert (r.returncode, r.stdout, r.stderr) == (1, b"", b"")
    # the keys around the miss were removed all the same
    assert raw_get(server.port, "r1") == b"END\r\n"
    assert raw_get(server.port, "r2") == b"END\r\n"


# ---------------------------------------------------------------------------
# memflush


@PROTOCOLS
def test_memflush(server, proto):
    for i in range(5):
        raw_set(server.port, f"f{i}", b"v%d" % i)
    ok(tool("flush", server.port, proto=proto))
    for i in range(5):
        assert raw_get(server.port, f"f{i}") == b"END\r\n"
    reply = raw(server.port, b"get f0 f1 f2 f3 f4\r\n", b"END\r\n")
    assert reply == b"END\r\n"
    assert stats(server.port)["cmd_flush"] == "1"
    # the server still stores after a flush
    raw_set(server.port, "after", b"ok")
    assert raw_get(server.port, "after") == b"VALUE after 0 2\r\nok\r\nEND\r\n"


@PROTOCOLS
def test_memflush_with_delay(server, proto):
    """--expire=3 sends `flush_all 3` (binary FLUSH with a 4-byte extra):
    items stay readable for at least a second, then vanish."""
    raw_set(server.port, "later", b"still here")
    ok(tool("flush", server.port, "--expire=3", proto=proto))
    assert raw_get(server.port, "later") == b"VALUE later 0 10\r\nstill here\r\nEND\r\n"
    gone = wait_for(lambda: raw_get(server.port, "later") == b"END\r\n", timeout=6)
    assert gone


# ---------------------------------------------------------------------------
# memstat


def memstat_lines(stdout, port):
    """memstat's output -> [(name, value)] after checking its framing."""
    lines = stdout.decode().split("\n")
    assert lines[0] == f"Server: 127.0.0.1 ({port})", lines[:2]
    assert lines[-1] == ""
    out = []
    for line in lines[1:-1]:
        m = re.fullmatch(r"\t([^:\s]+): (.*)", line)
        assert m, line
        out.append(m.groups())
    return out


@PROTOCOLS
def test_memstat(server, proto):
    r = tool("stat", server.port, proto=proto)
    assert (r.returncode, r.stderr) == (0, b""), r
    pairs = memstat_lines(r.stdout, server.port)
    got = dict(pairs)
    # the same names, in the same order, as the server's own `stats`
    assert [n for n, _ in pairs] == list(stats(server.port))
    # lines that are identical for both servers on a fresh default start
    text = r.stdout.decode()
    for line in (
        f"\tpid: {server.proc.pid}\n",
        "\tversion: 1.6.18\n",
        "\tpointer_size: 64\n",
        "\tmax_connections: 1024\n",
        "\tlimit_maxbytes: 67108864\n",
        "\tthreads: 4\n",
        "\tcmd_get: 0\n",
        "\tcmd_set: 0\n",
        "\tget_hits: 0\n",
        "\tauth_cmds: 0\n",
        "\tauth_errors: 0\n",
        "\tcurr_items: 0\n",
        "\ttotal_items: 0\n",
        "\taccepting_conns: 1\n",
        "\thash_power_level: 16\n",
    ):
        assert line in text, line
    assert int(got["uptime"]) >= 0
    assert abs(int(got["time"]) - time.time()) <= 5


@PROTOCOLS
def test_memstat_counts_items(server, tmp_path, proto):
    path = write_file(tmp_path, "counted", b"12345")
    ok(tool("cp", server.port, path, proto=proto))
    assert tool("cat", server.port, "counted", proto=proto).returncode == 0
    got = dict(memstat_lines(tool("stat", server.port, proto=proto).stdout, server.port))
    assert (got["cmd_set"], got["cmd_get"], got["get_hits"]) == ("1", "1", "1")
    assert (got["curr_items"], got["total_items"]) == ("1", "1")


@PROTOCOLS
def test_memstat_settings(server, proto):
    r = tool("stat", server.port, "settings", proto=proto)
    assert (r.returncode, r.stderr) == (0, b""), r
    pairs = memstat_lines(r.stdout, server.port)
    assert [n for n, _ in pairs] == list(stats(server.port, "settings"))
    got = dict(pairs)
    assert got["tcpport"] == str(server.port)
    assert got["udpport"] == "0"
    assert got["inter"] == "127.0.0.1"
    assert got["maxbytes"] == "67108864"
    assert got["maxconns"] == "1024"
    assert got["binding_protocol"] == "auto-negotiate"
    assert got["auth_enabled_sasl"] == "no"
    assert got["auth_enabled_ascii"] == "no"
    assert got["item_size_max"] == "1048576"


@PROTOCOLS
def test_memstat_server_version(server, proto):
    r = tool("stat", server.port, "--server-version", proto=proto)
    assert (r.returncode, r.stdout, r.stderr) == (
        0, b"", f"127.0.0.1:{server.port} 1.6.18\n".encode())


# ---------------------------------------------------------------------------
# memping (no --binary option)


def test_memping_live_server(server):
    r = tool("ping", server.port)
    assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")
    r = tool("ping", server.port, "-v")
    assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")


def test_memping_closed_port(server):
    server.stop()
    r = tool("ping", server.port)
    assert (r.returncode, r.stdout) == (1, b"")
    assert r.stderr == f"Failed to ping '127.0.0.1:{server.port}:CONNECTION FAILURE.\n".encode()


# ---------------------------------------------------------------------------
# memtouch


@PROTOCOLS
def test_memtouch(server, proto):
    raw_set(server.port, "t", b"touchme", exptime=1000)
    ok(tool("touch", server.port, "t", proto=proto))  # no -e: expiration 0
    assert raw(server.port, b"mg t t v\r\n") == b"VA 7 t-1\r\ntouchme\r\n"
    ok(tool("touch", server.port, "--expire=100", "t", proto=proto))
    reply = raw(server.port, b"mg t t\r\n")
    assert re.fullmatch(rb"HD t(99|100)\r\n", reply), reply
    assert raw_get(server.port, "t") == b"VALUE t 0 7\r\ntouchme\r\nEND\r\n"
    s = stats(server.port)
    assert (s["cmd_touch"], s["touch_hits"], s["touch_misses"]) == ("2", "2", "0")


@PROTOCOLS
def test_memtouch_missing_key(server, proto):
    r = tool("touch", server.port, "nokey", proto=proto)
    assert (r.returncode, r.stdout, r.stderr) == (1, b"", b"")
    r = tool("touch", server.port, "-v", "nokey", proto=proto)
    assert (r.returncode, r.stdout, r.stderr) == (
        1, b"", b"Could not find key 'nokey': NOT FOUND\n")
    assert raw_get(server.port, "nokey") == b"END\r\n"
    s = stats(server.port)
    assert (s["cmd_touch"], s["touch_hits"], s["touch_misses"]) == ("2", "0", "2")


@PROTOCOLS
def test_memtouch_absolute_time_in_the_past_expires(server, proto):
    """2678400 (> 30 days) is a unix timestamp: 1970-02-01, long past."""
    raw_set(server.port, "old", b"x")
    ok(tool("touch", server.port, "--expire=2678400", "old", proto=proto))
    assert raw_get(server.port, "old") == b"END\r\n"


# ---------------------------------------------------------------------------
# memexist


@PROTOCOLS
def test_memexist(server, proto):
    raw_set(server.port, "here", b"value")
    ok(tool("exist", server.port, "here", proto=proto))
    # the probe left the value alone
    assert raw_get(server.port, "here") == b"VALUE here 0 5\r\nvalue\r\nEND\r\n"

    r = tool("exist", server.port, "nokey", proto=proto)
    assert (r.returncode, r.stdout, r.stderr) == (1, b"", b"")
    r = tool("exist", server.port, "-v", "nokey", proto=proto)
    assert (r.returncode, r.stdout, r.stderr) == (
        1, b"", b"Could not find key 'nokey': NOT FOUND\n")
    # the add with a past absolute expiry stored nothing visible
    assert raw_get(server.port, "nokey") == b"END\r\n"
    r = tool("exist", server.port, "nokey", proto=proto)
    assert r.returncode == 1
    # several keys: exit 1 if any is missing
    assert tool("exist", server.port, "here", "nokey", proto=proto).returncode == 1
    assert tool("exist", server.port, "here", "here", proto=proto).returncode == 0

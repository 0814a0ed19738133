"""Hostile input: after each kind of abuse the server must still be up and
serve other clients correctly.  Every test runs against both servers
(memcached proves the test right, rmemcached the server): a canary key is
stored before the abuse and read back on a fresh connection afterwards,
together with a fresh set/get and `version`.  Where memcached answers the
abuse in a fixed way the reply is asserted exactly.

All traffic goes to 127.0.0.1; loops are bounded in count and time; the
random inputs are seeded (SEED 20261124).

memcached 1.6.18 behaviours relied on here (see also the two differential
files' docstrings):
 * A truncated binary packet followed by EOF gets no reply; the connection
   is simply closed.
 * Binary Get/Noop with bodylen 0xFFFFFFFF -> status 0x04 "Invalid
   arguments", then close.  Binary Set with bodylen 0xFFFFFFFF computes a
   negative value length in memcached (int overflow): its reply is
   unspecified (Too large, nothing, or close), only survival is asserted.
   Set with a body larger than the item limit that never arrives: no reply
   until the body is complete; EOF -> close without reply.
 * Meta with an undecodable base64 key: mg/ms -> `CLIENT_ERROR error
   decoding key` (ms swallows its data block), md/ma -> `CLIENT_ERROR
   invalid or duplicate flag`, me -> `CLIENT_ERROR bad command line format`.
   memcached's decoder skips bytes outside the base64 alphabet (`Y@Q==` is
   `a`) and fails only when the count of alphabet bytes is 0 or not a
   multiple of 4 (or the padding is bad); it stops at the first pad.
 * mg with 18 or more flags -> `CLIENT_ERROR options flags are too long`;
   a text line of more than 2048 bytes without a newline closes the
   connection (no reply); a long line that arrives with its newline in one
   read is parsed normally.
 * UDP garbage is dropped or answered with ERROR; TCP is unaffected.
"""
import random
import select
import socket
import struct
import time

import pytest

from conftest import MEMCACHED_BIN, RMEMCACHED_BIN, free_port
from difftool import pkt

SEED = 20261124
CANARY_KEY = b"hostile_canary"
CANARY = b"intact \x00\xff value"
IO_TIMEOUT = 5.0


@pytest.fixture(params=["memcached", "rmemcached"])
def server(request, start_server):
    binary = RMEMCACHED_BIN if request.param == "rmemcached" else MEMCACHED_BIN
    s = start_server(binary)
    store_canary(s)
    return s


# ---------------------------------------------------------------------------
# Helpers


def connect(srv):
    s = srv.connect(timeout=IO_TIMEOUT)
    s.settimeout(IO_TIMEOUT)
    return s


def recv_exact_or_eof(sock, n, timeout=IO_TIMEOUT):
    buf = b""
    deadline = time.monotonic() + timeout
    while len(buf) < n:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            d = sock.recv(n - len(buf))
        except socket.timeout:
            break
        if not d:
            break
        buf += d
    return buf


def read_until_eof(sock, timeout=IO_TIMEOUT):
    """(bytes read, True if EOF/reset was seen within timeout)."""
    buf = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))
        if not r:
            break
        try:
            d = sock.recv(65536)
        except (ConnectionResetError, OSError):
            return buf, True
        if not d:
            return buf, True
        buf += d
    return buf, False


def exchange(srv, data, terminator, timeout=IO_TIMEOUT):
    with connect(srv) as s:
        s.sendall(data)
        buf = b""
        deadline = time.monotonic() + timeout
        while not buf.endswith(terminator):
            s.settimeout(max(0.01, deadline - time.monotonic()))
            d = s.recv(65536)
            assert d, "EOF before %r; got %r" % (terminator, buf[-300:])
            buf += d
        return buf


def store_canary(srv):
    data = b"set " + CANARY_KEY + b" 7 0 %d\r\n" % len(CANARY) + CANARY + b"\r\n"
    assert exchange(srv, data, b"\r\n") == b"STORED\r\n"


def assert_serving(srv, what):
    """The server process is alive, the canary is intact and a new
    connection can store and fetch."""
    assert srv.proc.poll() is None, "%s: server exited (%s) after %s" % (
        srv.binary, srv.proc.returncode, what)
    buf = b""
    try:
        with connect(srv) as s:
            s.sendall(b"get " + CANARY_KEY + b"\r\nset fresh 0 0 2\r\nok\r\nget fresh\r\n"
                      b"version\r\n")
            deadline = time.monotonic() + IO_TIMEOUT
            while b"VERSION " not in buf or not buf.endswith(b"\r\n"):
                s.settimeout(max(0.01, deadline - time.monotonic()))
                d = s.recv(65536)
                assert d, "%s: EOF while checking after %s; got %r" % (srv.binary, what, buf)
                buf += d
    except OSError as e:  # refused, reset, timeout
        pytest.fail("%s: a fresh client is not served after %s: %r (got %r)"
                    % (srv.binary, what, e, buf[:200]), pytrace=False)
    expected = (b"VALUE " + CANARY_KEY + b" 7 %d\r\n" % len(CANARY) + CANARY + b"\r\nEND\r\n"
                b"STORED\r\nVALUE fresh 0 2\r\nok\r\nEND\r\n")
    assert buf.startswith(expected), "%s after %s: %r" % (srv.binary, what, buf[:400])
    assert buf[len(expected):].startswith(b"VERSION "), buf


def raw_send_close(srv, data, linger=0.0):
    s = connect(srv)
    try:
        s.sendall(data)
        if linger:
            time.sleep(linger)
    except OSError:
        pass
    finally:
        s.close()


def send_peek_close(srv, data):
    """Send on a fresh connection, read a little of whatever has come back
    (without waiting), close; errors on the way are ignored."""
    s = connect(srv)
    try:
        s.sendall(data)
        s.setblocking(False)
        try:
            s.recv(65536)
        except OSError:
            pass
    except OSError:
        pass
    finally:
        s.close()


def send_then_eof(srv, data, timeout=IO_TIMEOUT):
    """Send, half-close, read to EOF: (reply, eof_seen)."""
    with connect(srv) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        return read_until_eof(s, timeout)


# ---------------------------------------------------------------------------
# Binary abuse


NOOP = pkt(0x0A)
SET_HELLO = pkt(0x01, b"key", b"hello", struct.pack(">II", 0, 0))


def test_truncated_binary_headers_then_close(server):
    for n in range(1, 24):
        raw_send_close(server, NOOP[:n])
        raw_send_close(server, SET_HELLO[:n])
    for n in range(24, len(SET_HELLO)):
        raw_send_close(server, SET_HELLO[:n])
    # truncated, then EOF: no reply at all, connection closed
    for data in (NOOP[:1], NOOP[:23], SET_HELLO[:30], NOOP + SET_HELLO[:27]):
        reply, eof = send_then_eof(server, data)
        assert eof, "no EOF after a truncated packet and half-close"
        assert reply == (b"\x81\x0a" + b"\x00" * 22 if data.startswith(NOOP + b"\x80") else b""), reply
    assert_serving(server, "truncated binary packets")


def test_binary_bodylen_4g(server):
    invalid = struct.pack(">BBHBBHIIQ", 0x81, 0x0A, 0, 0, 0, 4, 17, 0, 0) + b"Invalid arguments"
    # no-value opcodes: exact reply, then close
    for op, key in ((0x0A, b""), (0x00, b"k"), (0x04, b"k")):
        reply, eof = send_then_eof(server, pkt(op, key, bodylen=0xFFFFFFFF), timeout=3)
        assert eof
        assert reply == invalid[:1] + bytes([op]) + invalid[2:], reply
    # Set with bodylen 0xFFFFFFFF: then nothing / then close / then bytes
    set4g = pkt(0x01, b"k", b"", struct.pack(">II", 0, 0), bodylen=0xFFFFFFFF)
    held = [connect(server) for _ in range(5)]
    for s in held:
        s.sendall(set4g)
    assert_serving(server, "Set bodylen 0xFFFFFFFF, connections held open")
    for s in held:
        s.close()
    raw_send_close(server, set4g)
    raw_send_close(server, set4g + b"x" * 100000)
    raw_send_close(server, pkt(0x01, b"k", b"", struct.pack(">II", 0, 0), bodylen=0x80000008) + b"x" * 1000)
    # body larger than the item limit that never arrives: EOF -> closed, no reply
    reply, eof = send_then_eof(server, pkt(0x01, b"k", b"", struct.pack(">II", 0, 0),
                                           bodylen=200 * 1048576 + 9) + b"abc")
    assert eof and reply == b"", reply
    assert_serving(server, "binary bodylen 4 GB")


def test_random_binary_flood(server):
    rng = random.Random(SEED)
    # every opcode but Flush/FlushQ, which would legitimately drop the canary
    ops = [op for op in range(0x00, 0x25) if op not in (0x08, 0x18)] + [0x30, 0x70, 0xFE]
    deadline = time.monotonic() + 20
    for conn in range(150):
        if time.monotonic() > deadline:
            break
        data = bytearray()
        for _ in range(rng.randint(1, 30)):
            x = rng.random()
            if x < 0.7:  # well-formed header, random fields
                op = rng.choice(ops)
                key = bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 5, 250, 251])))
                extras = bytes(rng.randrange(256) for _ in range(rng.choice([0, 4, 8, 20, 3])))
                value = bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 100, 2000])))
                bodylen = None
                if rng.random() < 0.1:
                    bodylen = rng.choice([0, 1, len(key) + len(extras) + len(value) + 7,
                                          0x7FFFFFFF, 2 * 1048576])
                data += pkt(op, key, value, extras, cas=rng.choice([0, 1, 2 ** 64 - 1]),
                            opaque=rng.randrange(2 ** 32), dtype=rng.choice([0, 0, 1, 255]),
                            vbucket=rng.randrange(65536), bodylen=bodylen)
            elif x < 0.85:  # random bytes
                data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 200)))
            else:  # a header with random bytes after the magic
                data += b"\x80" + bytes(rng.randrange(256) for _ in range(23))
        if data[:1] != b"\x80":
            data[:0] = NOOP
        send_peek_close(server, bytes(data))
        if conn % 50 == 49:
            assert_serving(server, "random binary flood, %d connections" % (conn + 1))
    assert_serving(server, "random binary flood")


# ---------------------------------------------------------------------------
# Meta abuse


def test_meta_undecodable_base64(server):
    rng = random.Random(SEED)
    # memcached's decoder skips bytes outside the alphabet and fails when the
    # count of alphabet bytes is not a multiple of 4: these never decode
    alnum = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/"

    def undecodable(n):
        body = bytes(rng.choice(alnum) for _ in range(4 * n + rng.choice([1, 2, 3])))
        junk = bytes(rng.choice(b"@!#$%&*()[]{}<>?~^") for _ in range(rng.randint(0, 20)))
        cut = rng.randint(0, len(body))
        return body[:cut] + junk + body[cut:]

    with connect(server) as s:
        for i in range(300):
            tok = undecodable(rng.randint(0, 45))
            cmd = rng.choice(["mg", "ms", "md", "ma", "me"])
            if cmd == "mg":
                req, want = b"mg " + tok + b" b v k c\r\n", b"CLIENT_ERROR error decoding key\r\n"
            elif cmd == "ms":
                req = b"ms " + tok + b" 5 b T0\r\nhello\r\n"
                want = b"CLIENT_ERROR error decoding key\r\n"
            elif cmd in ("md", "ma"):
                req = b"%s %s b q\r\n" % (cmd.encode(), tok)
                want = b"CLIENT_ERROR invalid or duplicate flag\r\n"
            else:
                req, want = b"me " + tok + b" b\r\n", b"CLIENT_ERROR bad command line format\r\n"
            s.sendall(req + b"mn\r\n")
            buf = b""
            deadline = time.monotonic() + IO_TIMEOUT
            while not buf.endswith(b"MN\r\n"):
                s.settimeout(max(0.01, deadline - time.monotonic()))
                d = s.recv(65536)
                assert d, "EOF after %r" % req
                buf += d
            assert buf == want + b"MN\r\n", (req, buf)
    # the same, pipelined in one send, plus keys whose encoding is over 250 bytes
    pipe = b"".join(b"mg " + undecodable(12) + b" b v\r\n" for _ in range(200)) + b"mg " + b"QUFB" * 70 + b" b v\r\nmn\r\n"
    reply = exchange(server, pipe, b"MN\r\n")
    assert reply == b"CLIENT_ERROR error decoding key\r\n" * 200 \
        + b"CLIENT_ERROR bad command line format\r\nMN\r\n", reply[-200:]
    assert_serving(server, "meta commands with undecodable base64 keys")


def test_long_meta_flag_lists(server):
    flags17 = b"v s f t c k h l u O1 I L P C1 D1 F1 J1"
    reply = exchange(server, b"mg " + CANARY_KEY + b" " + flags17 + b"\r\nmg " + CANARY_KEY
                     + b" " + flags17 + b" M1\r\nmg " + CANARY_KEY + b" " + b"O1 " * 500
                     + b"\r\nms " + CANARY_KEY + b" 1 " + b"T0 " * 30 + b"\r\nx\r\nmn\r\n",
                     b"MN\r\n")
    head = b"VA %d s%d f7 t-1 c" % (len(CANARY), len(CANARY))
    assert reply.startswith(head), reply[:200]
    rest = reply.split(b"\r\n", 2)[2]
    assert rest == (b"CLIENT_ERROR options flags are too long\r\n"
                    b"CLIENT_ERROR options flags are too long\r\n"
                    b"CLIENT_ERROR options flags too long\r\nERROR\r\nMN\r\n"), rest
    # a flag list far over 2048 bytes without a newline: closed, no reply
    reply, eof = send_then_eof(server, b"mg " + CANARY_KEY + b" " + b"v " * 20000)
    assert eof and reply == b"", reply[:200]
    # many connections doing it at once, some with a newline at the very end
    socks = []
    for i in range(20):
        s = connect(server)
        try:
            s.sendall(b"mg k " + b"O12345678 " * 2000 + (b"\r\n" if i % 2 else b""))
        except OSError:
            pass
        socks.append(s)
    assert_serving(server, "long meta flag lists (connections open)")
    for s in socks:
        s.close()
    assert_serving(server, "long meta flag lists")


# ---------------------------------------------------------------------------
# Text abuse


def test_random_bytes_on_text_connection(server):
    reply = exchange(server, b"\x00\xff garbage\r\n\x01\x02\r\nversion\r\n", b"\r\nVERSION 1.6.18\r\n")
    assert reply.startswith(b"ERROR\r\n"), reply
    rng = random.Random(SEED + 7)
    deadline = time.monotonic() + 15
    for conn in range(60):
        if time.monotonic() > deadline:
            break
        data = bytearray(b"version\r\n")
        for _ in range(rng.randint(1, 20)):
            x = rng.random()
            if x < 0.6:
                data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 3000)))
            elif x < 0.8:  # printable junk lines
                data += bytes(rng.randrange(32, 127) for _ in range(rng.randint(0, 300))) + b"\r\n"
            else:  # mangled commands
                data += rng.choice([b"get ", b"gets ", b"mg ", b"ms x 5 ", b"set x 0 0 ",
                                    b"incr ", b"gat 0 ", b"md ", b"ma ", b"cas x 0 0 1 "]) \
                    + bytes(rng.randrange(33, 127) for _ in range(rng.randint(0, 40))) \
                    + rng.choice([b"\r\n", b"\n", b"", b"\r"])
        # never touch the canary's key or the whole cache by accident
        data = bytes(data).replace(b"flush_all", b"flush_al1").replace(CANARY_KEY, b"x")
        data = data.replace(b"shutdown", b"shutd0wn").replace(b"verbosity", b"verb0sity")
        send_peek_close(server, data)
        if conn % 20 == 19:
            assert_serving(server, "random bytes, %d connections" % (conn + 1))
    assert_serving(server, "random bytes on text connections")


# ---------------------------------------------------------------------------
# UDP flood


@pytest.fixture(params=["memcached", "rmemcached"])
def udp_server(request, start_server):
    binary = RMEMCACHED_BIN if request.param == "rmemcached" else MEMCACHED_BIN
    try:
        s = start_server(binary, udp=True)
    except TypeError:  # an older conftest without udp=: pass -U ourselves
        port = free_port()  # a TCP port number free a moment ago; free for UDP too, mostly
        s = start_server(binary, ["-U", str(port)])
        s.udp_port = port
        time.sleep(0.2)
    store_canary(s)
    return s


def udp_request(port, payload, rid, timeout=2.0):
    """Send one framed request; return the reassembled payload of the reply
    datagrams with that request id (None if nothing arrives)."""
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", 0))
        u.connect(("127.0.0.1", port))
        u.send(struct.pack(">HHHH", rid, 0, 1, 0) + payload)
        parts = {}
        total = None
        deadline = time.monotonic() + timeout
        while total is None or len(parts) < total:
            u.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                d = u.recv(65536)
            except socket.timeout:
                break
            r, seq, tot, _ = struct.unpack(">HHHH", d[:8])
            if r != rid:
                continue
            parts[seq] = d[8:]
            total = tot
        if not parts:
            return None
        return b"".join(parts[i] for i in sorted(parts))
    finally:
        u.close()


def test_udp_garbage_flood(udp_server):
    port = udp_server.udp_port
    rng = random.Random(SEED)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 0))
    u.setblocking(False)
    sent = 0
    deadline = time.monotonic() + 20
    try:
        for i in range(5000):
            if time.monotonic() > deadline:
                break
            x = rng.random()
            if x < 0.4:  # pure garbage of any length
                d = bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 7, 8, 9, 100, 1400])))
            elif x < 0.8:  # valid frame header, garbage command
                d = struct.pack(">HHHH", rng.randrange(65536), rng.randrange(4), 1, 0) \
                    + bytes(rng.randrange(256) for _ in range(rng.randint(1, 600)))
            else:  # odd frame headers around real commands
                d = struct.pack(">HHHH", rng.randrange(65536), rng.randrange(65536),
                                rng.choice([0, 1, 2, 65535]), rng.randrange(65536)) \
                    + rng.choice([b"get k\r\n", b"set k 0 0 1\r\nx\r\n", b"mg k v\r\n",
                                  b"\x80\x00\x00\x01", b"stats\r\n", b"get " + b"k " * 500 + b"\r\n"])
            try:
                u.sendto(d, ("127.0.0.1", port))
                sent += 1
            except BlockingIOError:
                time.sleep(0.001)
            if i % 500 == 0:  # drain replies so our buffer does not matter
                while True:
                    try:
                        u.recv(65536)
                    except OSError:
                        break
    finally:
        u.close()
    assert sent > 4000
    assert_serving(udp_server, "UDP garbage flood")
    # UDP itself still answers (a lost datagram is retried a few times)
    want = b"VALUE " + CANARY_KEY + b" 7 %d\r\n" % len(CANARY) + CANARY + b"\r\nEND\r\n"
    got = None
    for attempt in range(5):
        got = udp_request(port, b"get " + CANARY_KEY + b"\r\n", rid=4242 + attempt)
        if got is not None:
            break
    assert got == want, got

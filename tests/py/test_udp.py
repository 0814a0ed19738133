"""The UDP transport (-U <port>), with raw datagrams, against both servers.

Every datagram, both ways, starts with an 8-byte frame header of four
big-endian u16: request id, sequence number, total datagrams, reserved.
What memcached 1.6.18 does (the spec these tests pin):
  * A request must be one datagram longer than 8 bytes whose `total` field
    is exactly 1; anything else (8 bytes or fewer, total 0 or 2, ...) is
    dropped without a reply.  The sequence number and the reserved field of
    a request are ignored.
  * Every reply datagram echoes the request id and carries its own sequence
    number, the number of datagrams of that reply, and 0.
  * A datagram is at most 1400 bytes including its header (1392 bytes of
    payload): a 5,000-byte value comes back in 4 datagrams of 1400, 1400,
    1400 and 857 bytes (seq 0..3, total 4).
  * Each command of a datagram is answered; memcached sends a separate
    reply (datagram run) per command and per value of a multi-key get.
    The tests only pin the concatenated payload for those.

The server is started with -l 127.0.0.1, so all traffic stays on loopback;
every receive is bounded by a short timeout.
"""
import random
import socket
import struct
import time

import pytest

from conftest import MEMCACHED_BIN, RMEMCACHED_BIN, Server
from mcutil import raw

HEADER = struct.Struct(">HHHH")
SILENCE = 0.3  # how long "no reply" is waited for


@pytest.fixture(scope="module", params=["rmemcached", "memcached"])
def udp_server(request):
    """One server of each kind for the module (tests use distinct keys):
    TCP on -p and UDP on -U, both on 127.0.0.1."""
    binary = RMEMCACHED_BIN if request.param == "rmemcached" else MEMCACHED_BIN
    s = Server(binary, udp=True)
    yield s
    s.stop()


class Udp:
    """A UDP socket connect()ed to the server (so only its datagrams are
    received)."""

    def __init__(self, port):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.connect(("127.0.0.1", port))

    def close(self):
        self.sock.close()

    def send(self, payload, rid=1, seq=0, total=1, reserved=0):
        self.sock.send(HEADER.pack(rid, seq, total, reserved) + payload)

    def send_raw(self, data):
        self.sock.send(data)

    def recv(self, timeout):
        """One datagram, or None after `timeout` seconds."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(65536)
        except socket.timeout:
            return None

    def recv_all(self, quiet=SILENCE):
        """Every datagram until none arrives for `quiet` seconds."""
        out = []
        while True:
            d = self.recv(quiet)
            if d is None:
                return out
            out.append(d)

    def request(self, payload, terminator, rid, timeout=5.0):
        """Send one request and collect the datagrams carrying `rid` until
        their payloads, concatenated, end with `terminator`.  Returns the
        list of datagrams (headers included)."""
        self.send(payload, rid=rid)
        deadline = time.monotonic() + timeout
        got = []
        while not b"".join(d[8:] for d in got).endswith(terminator):
            left = deadline - time.monotonic()
            assert left > 0, f"no complete reply for rid {rid}: {got!r}"
            d = self.recv(left)
            assert d is not None, f"no complete reply for rid {rid}: {got!r}"
            if HEADER.unpack(d[:8])[0] == rid:
                got.append(d)
        return got

    def reply(self, payload, terminator, rid):
        """request(), with every datagram's header checked (check_headers);
        returns the concatenated payloads."""
        got = self.request(payload, terminator, rid)
        check_headers(got, rid)
        return payloads(got)


@pytest.fixture
def udp(udp_server):
    u = Udp(udp_server.udp_port)
    yield u
    u.close()


def payloads(datagrams):
    return b"".join(d[8:] for d in datagrams)


def check_headers(datagrams, rid):
    """Every datagram carries the request id, a sequence number below its
    total, and a zero reserved field."""
    for d in datagrams:
        r, seq, total, reserved = HEADER.unpack(d[:8])
        assert (r, reserved) == (rid, 0), d[:8]
        assert 0 <= seq < total, d[:8]


def test_set_then_get(udp, udp_server):
    # seq and reserved of a request are ignored; the reply echoes the id
    udp.send(b"set k 5 0 3\r\nabc\r\n", rid=0x1234, seq=7, reserved=9)
    assert udp.recv(5.0) == HEADER.pack(0x1234, 0, 1, 0) + b"STORED\r\n"
    udp.send(b"get k\r\n", rid=0xFFFE)
    assert udp.recv(5.0) == (HEADER.pack(0xFFFE, 0, 1, 0)
                             + b"VALUE k 5 3\r\nabc\r\nEND\r\n")
    assert udp.recv_all() == []
    # the same cache as TCP, both ways
    assert raw(udp_server.port, b"get k\r\n", b"END\r\n") == (
        b"VALUE k 5 3\r\nabc\r\nEND\r\n")
    assert raw(udp_server.port, b"set t 0 0 2\r\nhi\r\n") == b"STORED\r\n"
    udp.send(b"get t\r\n", rid=0)
    assert udp.recv(5.0) == HEADER.pack(0, 0, 1, 0) + b"VALUE t 0 2\r\nhi\r\nEND\r\n"


def test_miss_delete_incr_version(udp):
    for rid, request, reply in [(10, b"get nothing\r\n", b"END\r\n"),
                                (11, b"set n 0 0 2\r\n41\r\n", b"STORED\r\n"),
                                (12, b"incr n 1\r\n", b"42\r\n"),
                                (13, b"delete n\r\n", b"DELETED\r\n"),
                                (14, b"delete n\r\n", b"NOT_FOUND\r\n"),
                                (15, b"version\r\n", b"VERSION 1.6.18\r\n"),
                                (16, b"bogus\r\n", b"ERROR\r\n")]:
        udp.send(request, rid=rid)
        assert udp.recv(5.0) == HEADER.pack(rid, 0, 1, 0) + reply


def test_reply_larger_than_one_datagram(udp, udp_server):
    value = bytes((i * 7 + 3) & 0xFF for i in range(5000))
    assert raw(udp_server.port, b"set big 0 0 5000\r\n" + value + b"\r\n") == b"STORED\r\n"
    expected = b"VALUE big 0 5000\r\n" + value + b"\r\nEND\r\n"
    assert len(expected) == 5025
    udp.send(b"get big\r\n", rid=42)
    got = [udp.recv(5.0) for _ in range(4)]
    assert None not in got
    assert [len(d) for d in got] == [1400, 1400, 1400, 857]
    assert [d[:8] for d in got] == [HEADER.pack(42, seq, 4, 0) for seq in range(4)]
    assert payloads(got) == expected
    assert udp.recv_all() == []


def test_multi_key_get(udp):
    udp.send(b"set a 1 0 1\r\nA\r\n", rid=1)
    assert udp.recv(5.0) == HEADER.pack(1, 0, 1, 0) + b"STORED\r\n"
    udp.send(b"set b 2 0 2\r\nBB\r\n", rid=2)
    assert udp.recv(5.0) == HEADER.pack(2, 0, 1, 0) + b"STORED\r\n"
    got = udp.reply(b"get a b c\r\n", b"END\r\n", rid=3)
    assert got == b"VALUE a 1 1\r\nA\r\nVALUE b 2 2\r\nBB\r\nEND\r\n"
    got = udp.reply(b"gets a\r\n", b"END\r\n", rid=4)
    assert got.startswith(b"VALUE a 1 1 ")
    assert got.endswith(b"\r\nA\r\nEND\r\n")
    assert udp.recv_all() == []


def test_several_commands_in_one_datagram(udp):
    # noreply suppresses its reply; the others are answered in order
    got = udp.reply(b"set x 0 0 1 noreply\r\nX\r\nset y 0 0 1\r\nY\r\nget x y\r\n",
                    b"END\r\n", rid=5)
    assert got == b"STORED\r\nVALUE x 0 1\r\nX\r\nVALUE y 0 1\r\nY\r\nEND\r\n"
    assert udp.recv_all() == []


def test_meta_commands_over_udp(udp):
    got = udp.reply(b"mn\r\nmg m v\r\nms m 2 T0 F3\r\nhi\r\nmg m v f\r\nmn\r\n",
                    b"f3\r\nhi\r\nMN\r\n", rid=6)
    assert got == b"MN\r\nEN\r\nHD\r\nVA 2 f3\r\nhi\r\nMN\r\n"
    assert udp.recv_all() == []


def test_binary_protocol_over_udp(udp):
    # a binary `version` request (opcode 0x0b, opaque 0xcafebabe)
    req = struct.pack(">BBHBBHIIQ", 0x80, 0x0B, 0, 0, 0, 0, 0, 0xCAFEBABE, 0)
    udp.send(req, rid=7)
    reply = udp.recv(5.0)
    assert reply == (HEADER.pack(7, 0, 1, 0)
                     + struct.pack(">BBHBBHIIQ", 0x81, 0x0B, 0, 0, 0, 0, 6, 0xCAFEBABE, 0)
                     + b"1.6.18")


@pytest.mark.parametrize("total", [0, 2, 3])
def test_multi_datagram_request_is_dropped(udp, total):
    udp.send(b"set dropped 0 0 1\r\nX\r\n", rid=20, total=total)
    assert udp.recv_all() == []
    # nothing was stored, and the server still answers a good request
    udp.send(b"get dropped\r\n", rid=21)
    assert udp.recv(5.0) == HEADER.pack(21, 0, 1, 0) + b"END\r\n"


@pytest.mark.parametrize("length", [0, 1, 7, 8])
def test_datagram_of_8_bytes_or_fewer_is_ignored(udp, length):
    # 8 bytes is a header with an empty request: ignored too
    udp.send_raw(HEADER.pack(30, 0, 1, 0)[:length])
    assert udp.recv_all() == []
    udp.send(b"version\r\n", rid=31)
    assert udp.recv(5.0) == HEADER.pack(31, 0, 1, 0) + b"VERSION 1.6.18\r\n"


def garbage(rng, i):
    """Datagram i of the flood, from a seeded generator: short ones, bad
    totals, good headers followed by text junk, and good headers followed
    by binary junk (a truncated binary header, or a complete one with an
    unknown opcode and no body)."""
    kind = i % 5
    if kind == 0:
        return bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 9)))
    body = bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 1400)))
    if kind == 1:
        return HEADER.pack(i & 0xFFFF, 0, rng.choice([0, 2, 7, 0xFFFF]), 0) + body
    if kind in (2, 3):
        if body[0] == 0x80:
            body = b"?" + body[1:]
        return HEADER.pack(i & 0xFFFF, rng.randrange(0, 65536), 1, 0) + body
    if i % 10 == 4:
        return HEADER.pack(i & 0xFFFF, 0, 1, 0) + b"\x80" + body[: rng.randrange(0, 23)]
    return HEADER.pack(i & 0xFFFF, 0, 1, 0) + struct.pack(
        ">BBHBBHIIQ", 0x80, 0xFE, 0, 0, 0, 0, 0, i, 0)


def test_garbage_flood_then_server_still_answers(udp, udp_server):
    assert raw(udp_server.port, b"set keep 9 0 4\r\ndata\r\n") == b"STORED\r\n"
    rng = random.Random(20240611)
    for i in range(2000):
        udp.send_raw(garbage(rng, i))
    # drain whatever the junk provoked (ERROR lines and the like)
    deadline = time.monotonic() + 10.0
    while udp.recv(0.3) is not None:
        assert time.monotonic() < deadline, "the server kept sending"
    assert udp_server.proc.poll() is None
    # UDP still answers, with the data intact
    got = udp.request(b"get keep\r\n", b"END\r\n", rid=0xBEEF)
    assert got == [HEADER.pack(0xBEEF, 0, 1, 0) + b"VALUE keep 9 4\r\ndata\r\nEND\r\n"]
    udp.send(b"set after 0 0 2\r\nok\r\n", rid=0xBEF0)
    assert udp.recv(5.0) == HEADER.pack(0xBEF0, 0, 1, 0) + b"STORED\r\n"
    # and so does TCP
    assert raw(udp_server.port, b"get keep after\r\n", b"END\r\n") == (
        b"VALUE keep 9 4\r\ndata\r\nVALUE after 0 2\r\nok\r\nEND\r\n")

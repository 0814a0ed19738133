"""pylibmc (libmemcached 1.1, bundled in its wheel) against both servers,
over the text protocol and over the binary protocol (binary=True).

The results asserted are what pylibmc reports against memcached 1.6.18;
where libmemcached maps a reply differently per protocol (replace of a
missing key: NOT_STORED in text -> False, KEY_ENOENT in binary ->
NotFound) both are pinned.  libmemcached 1.1 mishandles the binary reply to
incr of a non-numeric value (it marks the server dead), so that case is
only run over text.
"""
import pylibmc
import pytest

from conftest import MEMCACHED_BIN, RMEMCACHED_BIN, Server
from mcutil import raw

# pylibmc's own flags for what it stores
FLAG_BYTES, FLAG_INT, FLAG_TEXT = 0, 4, 16


@pytest.fixture(params=["text", "binary"])
def protocol(request):
    return request.param


def make_client(servers, protocol, **behaviors):
    behaviors.setdefault("cas", True)
    return pylibmc.Client(
        [s.address for s in servers],
        binary=(protocol == "binary"),
        behaviors=dict(behaviors, connect_timeout=5000,
                       send_timeout=5_000_000, receive_timeout=5_000_000),
    )


@pytest.fixture
def mc(module_server):
    """The module's server, emptied."""
    assert raw(module_server.port, b"flush_all\r\n") == b"OK\r\n"
    return module_server


@pytest.fixture
def client(mc, protocol):
    c = make_client([mc], protocol)
    yield c
    c.disconnect_all()


def test_set_get(client, mc):
    assert client.set("bytes", b"v1") is True
    assert client.set("text", "h\u00e9llo") is True
    assert client.set("int", 42) is True
    assert client.get("bytes") == b"v1"
    assert client.get("text") == "h\u00e9llo"
    assert client.get("int") == 42
    assert client.get("missing") is None
    # what the server stored, seen over text: the value bytes and pylibmc's flags
    assert raw(mc.port, b"get bytes text int\r\n", b"END\r\n") == (
        b"VALUE bytes %d 2\r\nv1\r\n" % FLAG_BYTES
        + b"VALUE text %d 6\r\nh\xc3\xa9llo\r\n" % FLAG_TEXT
        + b"VALUE int %d 2\r\n42\r\nEND\r\n" % FLAG_INT)


def test_set_multi_get_multi(client):
    assert client.set_multi({"a": b"1", "b": b"2", "c": b"3"}) == []
    assert client.get_multi(["a", "b", "c", "d"]) == {"a": b"1", "b": b"2", "c": b"3"}
    assert client.get_multi(["x", "y"]) == {}
    assert client.get_multi(["1", "2"], key_prefix="p") == {}
    assert client.set_multi({"1": b"one", "2": b"two"}, key_prefix="p") == []
    assert client.get_multi(["1", "2", "3"], key_prefix="p") == {"1": b"one", "2": b"two"}
    assert client.get("p1") == b"one"


def test_incr_decr(client):
    assert client.set("n", b"10") is True
    assert client.incr("n", 5) == 15
    assert client.decr("n", 3) == 12
    assert client.decr("n", 100) == 0
    assert client.get("n") == b"0 "  # memcached rewrites in place, space-padded
    assert client.incr("n") == 1
    with pytest.raises(pylibmc.NotFound):
        client.incr("missing")
    with pytest.raises(pylibmc.NotFound):
        client.decr("missing")
    assert client.get("missing") is None


def test_incr_non_numeric_text_protocol(mc):
    c = make_client([mc], "text")
    try:
        assert c.set("s", b"abc") is True
        with pytest.raises(pylibmc.ClientError) as e:
            c.incr("s")
        assert e.value.args == ("1 keys failed",)
        assert c.get("s") == b"abc"
    finally:
        c.disconnect_all()


def test_delete(client):
    assert client.set("d", b"x") is True
    assert client.delete("d") is True
    assert client.delete("d") is False
    assert client.get("d") is None
    assert client.set_multi({"d1": b"1", "d2": b"2"}) == []
    assert client.delete_multi(["d1", "d2"]) is True
    assert client.delete_multi(["d1", "never"]) is False
    assert client.get_multi(["d1", "d2"]) == {}


def test_add_replace(client, protocol):
    assert client.add("a", b"first") is True
    assert client.add("a", b"second") is False
    assert client.get("a") == b"first"
    assert client.replace("a", b"third") is True
    assert client.get("a") == b"third"
    if protocol == "text":
        assert client.replace("nope", b"x") is False
    else:
        with pytest.raises(pylibmc.NotFound):
            client.replace("nope", b"x")
    assert client.get("nope") is None


def test_append_prepend(client):
    assert client.set("ap", b"mid") is True
    assert client.append("ap", b">>") is True
    assert client.prepend("ap", b"<<") is True
    assert client.get("ap") == b"<<mid>>"
    assert client.append("nope", b"x") is False
    assert client.prepend("nope", b"x") is False
    assert client.get("nope") is None


def test_gets_cas(client):
    assert client.gets("nokey") == (None, None)
    assert client.set("k", b"v1") is True
    value, cas = client.gets("k")
    assert value == b"v1"
    assert isinstance(cas, int) and cas > 0
    assert client.cas("k", b"v2", cas) is True
    assert client.get("k") == b"v2"
    # the token is stale now
    assert client.cas("k", b"v3", cas) is False
    assert client.get("k") == b"v2"
    value2, cas2 = client.gets("k")
    assert value2 == b"v2"
    assert cas2 != cas
    with pytest.raises(pylibmc.NotFound):
        client.cas("nokey", b"v", cas2)
    assert client.get("nokey") is None


def test_touch(client, mc, protocol):
    if protocol == "binary":
        # libmemcached 1.1 waits out its 5 s poll timeout after a binary
        # TOUCH hit (memcached answers with 4 bytes of extras, the flags);
        # test_bmemcached.py checks binary touch with raw packets.
        assert client.touch("missing", 500) is False
        return
    assert client.set("t", b"v", time=5) is True
    assert client.touch("t", 500) is True
    assert client.touch("missing", 500) is False
    assert client.get("t") == b"v"
    ttl = raw(mc.port, b"mg t t\r\n")
    assert ttl in (b"HD t500\r\n", b"HD t499\r\n"), ttl


def test_large_value_and_too_big(client):
    value = bytes(range(256)) * 2000  # 512,000 bytes
    assert client.set("big", value) is True
    assert client.get("big") == value
    with pytest.raises(pylibmc.TooBig):
        client.set("huge", b"x" * (1024 * 1024 + 1))
    assert client.get("huge") is None
    assert client.set("after", b"ok") is True
    assert client.get("after") == b"ok"


def test_stats(client, mc):
    (name, before), = client.get_stats()
    assert client.set_multi({"s1": b"1", "s2": b"2"}) == []
    assert client.get_multi(["s1", "s2", "s3"]) == {"s1": b"1", "s2": b"2"}
    (name, st), = client.get_stats()
    assert name == f"{mc.address} (0)".encode()
    assert st["version"] == b"1.6.18"
    assert st["pid"] == str(mc.proc.pid).encode()
    delta = {k: int(st[k]) - int(before[k])
             for k in ("total_items", "cmd_set", "cmd_get", "get_hits", "get_misses")}
    assert delta == {"total_items": 2, "cmd_set": 2, "cmd_get": 3,
                     "get_hits": 2, "get_misses": 1}


@pytest.fixture(scope="module", params=["rmemcached", "memcached"])
def server_pair(request):
    """Two servers of the same kind for the module."""
    binary = RMEMCACHED_BIN if request.param == "rmemcached" else MEMCACHED_BIN
    pair = []
    try:
        pair.append(Server(binary))
        pair.append(Server(binary))
        yield pair
    finally:
        for s in pair:
            s.stop()


def test_ketama_spreads_keys_over_two_servers(server_pair, protocol):
    for s in server_pair:
        assert raw(s.port, b"flush_all\r\n") == b"OK\r\n"
    c = make_client(server_pair, protocol, ketama=True)
    try:
        assert c.behaviors["ketama"] == 1
        data = {f"key:{i}": f"value-{i}".encode() for i in range(200)}
        assert c.set_multi(data) == []
        assert c.get_multi(list(data)) == data
        # ask each server directly which keys it holds
        held = []
        for s in server_pair:
            reply = raw(s.port, ("get " + " ".join(data) + "\r\n").encode(), b"END\r\n")
            lines = reply.split(b"\r\n")
            keys = {line.split()[1].decode() for line in lines if line.startswith(b"VALUE ")}
            held.append(keys)
        assert held[0] and held[1], [len(h) for h in held]
        assert held[0].isdisjoint(held[1])
        assert held[0] | held[1] == set(data)
        # every key reads back through the client, one by one too
        for key, value in data.items():
            assert c.get(key) == value
    finally:
        c.disconnect_all()

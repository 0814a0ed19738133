"""The pymemcache client against both servers."""
import re

import pytest
from pymemcache.client.base import Client
from pymemcache.exceptions import (
    MemcacheClientError,
    MemcacheServerError,
    MemcacheUnknownCommandError,
)

from mcutil import wait_for

MB = 1024 * 1024


@pytest.fixture
def client(server):
    c = Client(("127.0.0.1", server.port), connect_timeout=5, timeout=5)
    yield c
    c.close()


def test_set_get(client):
    assert client.set("key", "value") is True
    assert client.get("key") == b"value"
    assert client.get("missing") is None
    assert client.get("missing", default=b"dflt") == b"dflt"


def test_set_get_binary(client):
    data = bytes(range(256)) * 4 + b"\r\nEND\r\n"
    assert client.set("bin", data, noreply=False) is True
    assert client.get("bin") == data


def test_get_many(client):
    assert client.set("a", "1", noreply=False) is True
    assert client.set("b", "2", noreply=False) is True
    assert client.get_many(["a", "b", "c"]) == {"a": b"1", "b": b"2"}
    assert client.get_many(["x", "y"]) == {}
    assert client.get_many([]) == {}


def test_set_many_delete_many(client):
    assert client.set_many({"m1": "1", "m2": "2", "m3": "3"}, noreply=False) == []
    assert client.get_many(["m1", "m2", "m3"]) == {"m1": b"1", "m2": b"2", "m3": b"3"}
    assert client.delete_many(["m1", "m2", "nope"], noreply=False) is True
    assert client.get_many(["m1", "m2", "m3"]) == {"m3": b"3"}


def test_gets_and_cas(client):
    assert client.gets("missing") == (None, None)
    assert client.set("k", "v1", noreply=False) is True
    value, cas = client.gets("k")
    assert value == b"v1"
    assert re.fullmatch(rb"[1-9][0-9]*", cas), cas
    assert client.cas("k", "v2", cas, noreply=False) is True
    assert client.get("k") == b"v2"
    # the token is stale now
    assert client.cas("k", "v3", cas, noreply=False) is False
    assert client.get("k") == b"v2"
    value2, cas2 = client.gets("k")
    assert value2 == b"v2"
    assert cas2 != cas


def test_cas_missing_is_none(client):
    assert client.cas("missing", "v", b"1", noreply=False) is None
    assert client.get("missing") is None


def test_gets_many(client):
    assert client.set("g1", "a", noreply=False) is True
    assert client.set("g2", "b", noreply=False) is True
    result = client.gets_many(["g1", "g2", "g3"])
    assert sorted(result) == ["g1", "g2"]
    assert result["g1"][0] == b"a"
    assert result["g2"][0] == b"b"
    assert result["g1"][1] != result["g2"][1]
    assert client.gets("g1") == result["g1"]


def test_touch(client):
    assert client.set("t", "v", expire=1, noreply=False) is True
    assert client.touch("t", 100, noreply=False) is True
    assert client.touch("missing", 100, noreply=False) is False
    assert client.get("t") == b"v"


def test_incr_decr(client):
    assert client.set("n", "10", noreply=False) is True
    result = client.incr("n", 5)
    assert result == 15
    assert type(result) is int
    assert client.decr("n", 3) == 12
    assert client.decr("n", 100) == 0
    assert client.get("n") == b"0 "
    assert client.incr("n", 1) == 1


def test_incr_decr_missing_is_none(client):
    assert client.incr("missing", 1) is None
    assert client.decr("missing", 1) is None


def test_incr_wraps_at_64_bits(client):
    assert client.set("n", "5", noreply=False) is True
    assert client.incr("n", 2**64 - 1) == 4
    assert client.get("n") == b"4"


def test_incr_non_numeric(client):
    assert client.set("s", "abc", noreply=False) is True
    with pytest.raises(MemcacheClientError) as e:
        client.incr("s", 1)
    assert e.value.args == (b"cannot increment or decrement non-numeric value",)


def test_noreply_variants(client):
    # noreply=True: the client cannot see the outcome and reports True
    assert client.set("nr", "1", noreply=True) is True
    assert client.add("nr", "2", noreply=True) is True
    assert client.delete("never-there", noreply=True) is True
    assert client.get("nr") == b"1"
    # noreply=False: the server's answers
    assert client.set("r", "1", noreply=False) is True
    assert client.add("r", "2", noreply=False) is False
    assert client.get("r") == b"1"
    assert client.add("r2", "2", noreply=False) is True
    assert client.delete("r2", noreply=False) is True
    assert client.delete("r2", noreply=False) is False
    assert client.delete("nr", noreply=True) is True
    assert client.get_many(["nr", "r", "r2"]) == {"r": b"1"}


def test_replace_append_prepend(client):
    assert client.replace("rp", "x", noreply=False) is False
    assert client.set("rp", "mid", noreply=False) is True
    assert client.replace("rp", "MID", noreply=False) is True
    assert client.append("rp", ">>", noreply=False) is True
    assert client.prepend("rp", "<<", noreply=False) is True
    assert client.get("rp") == b"<<MID>>"
    assert client.append("nope", "x", noreply=False) is False
    assert client.prepend("nope", "x", noreply=False) is False


def test_large_value_under_1m(client):
    value = bytes((i * 7) & 0xFF for i in range(MB - 100))
    assert client.set("big", value, noreply=False) is True
    assert client.get("big") == value


def test_value_over_1m_rejected(client):
    assert client.set("big", "old", noreply=False) is True
    with pytest.raises(MemcacheServerError) as e:
        client.set("big", b"x" * (MB + 1), noreply=False)
    assert e.value.args == (b"object too large for cache",)
    # a failed oversized set also drops the old value of the key
    assert client.get("big") is None
    # the connection still works
    assert client.set("small", "ok", noreply=False) is True
    assert client.get("small") == b"ok"


def test_flush_all(client):
    assert client.set_many({"f1": "1", "f2": "2"}, noreply=False) == []
    assert client.flush_all(noreply=False) is True
    assert client.get_many(["f1", "f2"]) == {}
    assert client.set("f3", "3", noreply=False) is True
    assert client.get("f3") == b"3"


def test_version(client):
    version = client.version()
    assert type(version) is bytes
    assert re.match(rb"^\d+\.\d+\.\d+", version), version


def test_stats(client):
    assert client.set("s1", "a", noreply=False) is True
    assert client.set("s2", "b", noreply=False) is True
    assert client.get("s1") == b"a"
    assert client.get("nope") is None
    stats = client.stats()
    for key in (b"pid", b"uptime", b"time", b"version", b"curr_connections",
                b"total_connections", b"cmd_get", b"cmd_set", b"get_hits",
                b"get_misses", b"curr_items", b"total_items", b"bytes",
                b"limit_maxbytes", b"threads", b"evictions"):
        assert key in stats, key
    assert stats[b"curr_items"] == 2
    assert stats[b"total_items"] == 2
    assert stats[b"cmd_set"] == 2
    assert stats[b"cmd_get"] == 2
    assert stats[b"get_hits"] == 1
    assert stats[b"get_misses"] == 1
    assert stats[b"limit_maxbytes"] == 64 * MB
    assert stats[b"threads"] == 4
    # only this connection (the fixture's readiness probe has gone)
    assert wait_for(lambda: client.stats()[b"curr_connections"] == 1, 2.0) is True
    assert stats[b"version"] == client.version()


def test_stats_settings(client):
    settings = client.stats("settings")
    assert settings[b"maxbytes"] == 64 * MB
    assert settings[b"maxconns"] == 1024
    assert settings[b"item_size_max"] == MB


def test_cache_memlimit(client):
    assert client.cache_memlimit(100) is True
    assert client.stats()[b"limit_maxbytes"] == 100 * MB


def test_gat_gats(client):
    assert client.set("ga", "val", expire=1, noreply=False) is True
    _, cas = client.gets("ga")
    assert client.raw_command("gat 100 ga", b"END\r\n") == b"VALUE ga 0 3\r\nval\r\n"
    assert client.raw_command("gats 100 ga nope", b"END\r\n") == (
        b"VALUE ga 0 3 " + cas + b"\r\nval\r\n")
    assert client.raw_command("gat 100 nope", b"END\r\n") == b""


def test_shutdown_disabled(client):
    # without -A the server refuses shutdown and keeps running
    with pytest.raises(MemcacheUnknownCommandError):
        client.shutdown()
    assert client.set("alive", "yes", noreply=False) is True
    assert client.get("alive") == b"yes"


def test_quit_then_reconnect(client):
    assert client.set("q", "v", noreply=False) is True
    assert client.quit() is None
    assert client.sock is None
    assert client.get("q") == b"v"
    client.close()
    assert client.sock is None
    assert client.get("q") == b"v"
    # memcached counts its listening socket too: listener + readiness
    # probe + the three connections of this client
    assert client.stats()[b"total_connections"] == 5

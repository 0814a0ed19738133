"""The python-memcached client (`import memcache`) against both servers,
following the usage shown in the memcached guide."""
import time

import memcache
import pytest


@pytest.fixture
def mc(server):
    client = memcache.Client([server.address], socket_timeout=5)
    yield client
    client.disconnect_all()


def test_set_get_str(mc):
    assert mc.set("greeting", "hello world") is True
    assert mc.get("greeting") == "hello world"


def test_get_missing_is_none(mc):
    assert mc.get("no-such-key") is None


def test_set_int_returns_int(mc):
    assert mc.set("five", 5) is True
    value = mc.get("five")
    assert value == 5
    assert type(value) is int


def test_set_overwrites(mc):
    assert mc.set("k", "one") is True
    assert mc.set("k", "two") is True
    assert mc.get("k") == "two"


def test_delete(mc):
    assert mc.set("gone", "soon") is True
    assert mc.delete("gone") == 1
    assert mc.get("gone") is None
    # NOT_FOUND on the second delete
    assert mc.delete("gone") == 0


def test_incr_decr_string_number(mc):
    assert mc.set("counter", "10") is True
    assert mc.incr("counter", 3) == 13
    assert mc.get("counter") == "13"
    assert mc.decr("counter", 1) == 12
    assert mc.incr("counter") == 13


def test_decr_stops_at_zero(mc):
    assert mc.set("counter", "10") is True
    assert mc.decr("counter", 100) == 0
    # memcached decrements in place and pads the shorter number with spaces
    assert mc.get("counter") == "0 "
    assert mc.decr("counter", 1) == 0
    assert mc.incr("counter", 7) == 7
    assert mc.get("counter") == "7 "


def test_incr_decr_missing_is_none(mc):
    assert mc.incr("missing-counter") is None
    assert mc.decr("missing-counter") is None
    assert mc.get("missing-counter") is None


def test_get_multi(mc):
    assert mc.set("a", "1") is True
    assert mc.set("b", 2) is True
    assert mc.get_multi(["a", "b", "c"]) == {"a": "1", "b": 2}
    assert mc.get_multi(["x", "y"]) == {}


def test_set_multi(mc):
    assert mc.set_multi({"k1": "v1", "k2": "v2", "k3": 3}) == []
    assert mc.get_multi(["k1", "k2", "k3"]) == {"k1": "v1", "k2": "v2", "k3": 3}


def test_set_multi_key_prefix(mc):
    assert mc.set_multi({"a": "x", "b": "y"}, key_prefix="user:") == []
    assert mc.get("user:a") == "x"
    assert mc.get_multi(["a", "b"], key_prefix="user:") == {"a": "x", "b": "y"}


def test_delete_multi(mc):
    assert mc.set_multi({"d1": "1", "d2": "2", "keep": "3"}) == []
    assert mc.delete_multi(["d1", "d2"]) == 1
    assert mc.get_multi(["d1", "d2", "keep"]) == {"keep": "3"}


def test_add(mc):
    assert mc.add("fresh", "first") is True
    assert mc.add("fresh", "second") is False
    assert mc.get("fresh") == "first"


def test_replace(mc):
    assert mc.replace("absent", "x") is False
    assert mc.get("absent") is None
    assert mc.set("present", "old") is True
    assert mc.replace("present", "new") is True
    assert mc.get("present") == "new"


def test_expiry(mc):
    assert mc.set("short", "lived", time=1) is True
    assert mc.set("long", "lived", time=100) is True
    assert mc.get("short") == "lived"
    time.sleep(2.1)
    assert mc.get("short") is None
    assert mc.get("long") == "lived"


def test_unicode_value(mc):
    text = "héllo wörld € 漢字 \U0001F600"
    assert mc.set("uni", text) is True
    assert mc.get("uni") == text


def test_bytes_value(mc):
    data = bytes(range(256)) + b"\r\nEND\r\n\x00"
    assert mc.set("bin", data) is True
    value = mc.get("bin")
    assert value == data
    assert type(value) is bytes


def test_pickled_value(mc):
    obj = {"list": [1, 2, 3], "nested": {"a": (4, 5)}, "f": 1.5}
    assert mc.set("obj", obj) is True
    assert mc.get("obj") == obj


def test_value_500k(mc):
    value = "".join(chr(ord("a") + i % 26) for i in range(500 * 1024))
    assert mc.set("big", value) is True
    assert mc.get("big") == value


def test_cache_aside(mc):
    calls = []

    def load_user_from_db(user_id):
        calls.append(user_id)
        return {"id": user_id, "name": f"user{user_id}"}

    def get_user(user_id):
        key = f"user:{user_id}"
        user = mc.get(key)
        if user is None:
            user = load_user_from_db(user_id)
            assert mc.set(key, user, time=300) is True
        return user

    first = get_user(42)
    second = get_user(42)
    assert first == {"id": 42, "name": "user42"}
    assert second == first
    assert calls == [42]
    assert mc.get("user:42") == first
    assert get_user(7) == {"id": 7, "name": "user7"}
    assert calls == [42, 7]


def test_get_stats_curr_items(mc, server):
    assert mc.set_multi({"s1": "1", "s2": "2", "s3": "3"}) == []
    stats = mc.get_stats()
    assert len(stats) == 1
    name, values = stats[0]
    assert name == f"{server.address} (1)"
    # python-memcached 1.62 yields str keys and str values
    assert values["curr_items"] == "3"
    assert values["total_items"] == "3"
    assert values["cmd_set"] == "3"


def test_get_stats_settings(mc):
    name, values = mc.get_stats("settings")[0]
    assert values["maxbytes"] == str(64 * 1024 * 1024)
    assert values["maxconns"] == "1024"
    assert values["item_size_max"] == str(1024 * 1024)

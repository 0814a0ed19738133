"""meta-memcache (RevenueCat's client; module meta_memcache) against both
servers.  It speaks only the meta protocol: mg/ms/md/ma (and mn), e.g.
  ms <key> <len> T<ttl> F<flags> [C<cas>] [I] [M<mode>] [c]
  mg <key> f v t l h [c] [R<ttl>] [N<ttl>] [T<ttl>]
  md <key> [I T<ttl>] [C<cas>]
  ma <key> [D<n>] [MD] [N<ttl> J<init>] [v]
and base64 keys with the `b` flag for keys that are not plain ASCII or
too long.  Two independent clients (separate connection pools) stand for
two processes racing on the same keys.

The herd-control flows pinned here, as memcached 1.6.18 runs them:
  * stale-while-revalidate: `md <key> I T30` marks the item stale instead of
    deleting it; the next reader gets the win flag (W) and, through the
    library, a miss plus a CAS token; every other reader gets the stale
    value (Z, X); the winner's `ms ... C<token>` stores a fresh value.
  * recache: a reader with R<ttl> whose item has less TTL left wins (W)
    and the library reports a miss; the others keep the value.
  * lease on miss: `mg ... N<ttl>` creates an empty placeholder; the first
    reader wins, the others get an empty value with Z and retry.
"""
import pytest
from meta_memcache import (
    CacheClient,
    Key,
    LeasePolicy,
    RecachePolicy,
    RequestFlags,
    ServerAddress,
    SetMode,
    StalePolicy,
    connection_pool_factory_builder,
)

from mcutil import raw


@pytest.fixture
def mc(module_server):
    """The module's server, emptied."""
    assert raw(module_server.port, b"flush_all\r\n") == b"OK\r\n"
    return module_server


def make_cache(srv):
    return CacheClient.cache_client_from_servers(
        servers=[ServerAddress(host="127.0.0.1", port=srv.port)],
        connection_pool_factory_fn=connection_pool_factory_builder(
            connection_timeout=5, recv_timeout=5),
    )


@pytest.fixture
def cache(mc):
    return make_cache(mc)


@pytest.fixture
def cache2(mc):
    return make_cache(mc)


def test_set_get_types(cache, mc):
    assert cache.set("s", "text", ttl=0) is True
    assert cache.set("b", b"\x00\x01", ttl=0) is True
    assert cache.set("i", 42, ttl=0) is True
    assert cache.set("o", {"x": [1]}, ttl=100) is True
    assert cache.get("s") == "text"
    assert cache.get("b") == b"\x00\x01"
    assert cache.get("i") == 42
    assert cache.get("o") == {"x": [1]}
    assert cache.get("missing") is None
    # the library's encoding ids are the client flags the server keeps
    assert raw(mc.port, b"get s b i\r\n", b"END\r\n") == (
        b"VALUE s 0 4\r\ntext\r\nVALUE b 16 2\r\n\x00\x01\r\nVALUE i 2 2\r\n42\r\nEND\r\n")
    assert raw(mc.port, b"mg s v f t\r\n") == b"VA 4 f0 t-1\r\ntext\r\n"
    assert raw(mc.port, b"mg o f\r\n") == b"HD f1\r\n"


def test_compressed_value(cache, mc):
    value = "z" * 10000
    assert cache.set("big", value, ttl=0) is True
    assert cache.get("big") == value
    # zlib-compressed string: encoding id 8 | 0, 33 bytes on the server
    assert raw(mc.port, b"mg big f s\r\n") == b"HD f8 s33\r\n"


def test_non_ascii_and_long_keys_use_base64(cache, mc):
    assert cache.set("cl\u00e9 \u00fc", "x", ttl=0) is True
    assert cache.set("L" * 300, "y", ttl=0) is True
    assert cache.get("cl\u00e9 \u00fc") == "x"
    assert cache.get("L" * 300) == "y"
    # sent as `ms Y2zDqSDDvA== 1 b ...`: the server keeps the decoded key
    # and hands it back base64-encoded with the b flag
    assert raw(mc.port, b"mg Y2zDqSDDvA== b k v\r\n") == b"VA 1 kY2zDqSDDvA== b\r\nx\r\n"


def test_multi_get(cache):
    assert cache.set("a", "1", ttl=0) is True
    assert cache.set("b", 2, ttl=0) is True
    assert cache.multi_get(["a", "b", "c"]) == {Key("a"): "1", Key("b"): 2, Key("c"): None}
    assert cache.multi_get(["x"]) == {Key("x"): None}
    values = cache.multi_get_cas(["a", "c"])
    assert values[Key("c")] == (None, None)
    value, token = values[Key("a")]
    assert value == "1" and isinstance(token, int) and token > 0


def test_delete_and_invalidate(cache):
    assert cache.set("d", "v", ttl=0) is True
    assert cache.delete("d") is True
    assert cache.delete("d") is False
    assert cache.invalidate("d") is True  # missing is fine for invalidate
    assert cache.get("d") is None
    assert cache.set("d", "v", ttl=0) is True
    assert cache.invalidate("d") is True
    assert cache.get("d") is None


def test_touch(cache, mc):
    assert cache.set("t", "v", ttl=5) is True
    assert cache.touch("t", 500) is True
    assert cache.touch("missing", 500) is False
    assert raw(mc.port, b"mg t t\r\n") in (b"HD t500\r\n", b"HD t499\r\n")
    # get with touch_ttl refreshes the TTL too
    assert cache.get("t", touch_ttl=900) == "v"
    assert raw(mc.port, b"mg t t\r\n") in (b"HD t900\r\n", b"HD t899\r\n")


def test_set_modes_and_refill(cache):
    assert cache.set("m", "A", ttl=0, set_mode=SetMode.ADD) is True
    assert cache.set("m", "B", ttl=0, set_mode=SetMode.ADD) is False
    assert cache.set("m", ">", ttl=0, set_mode=SetMode.APPEND) is True
    assert cache.set("m", "<", ttl=0, set_mode=SetMode.PREPEND) is True
    assert cache.get("m") == "<A>"
    assert cache.set("m", "R", ttl=0, set_mode=SetMode.REPLACE) is True
    assert cache.set("nope", "R", ttl=0, set_mode=SetMode.REPLACE) is False
    assert cache.set("nope", "x", ttl=0, set_mode=SetMode.APPEND) is False
    assert cache.get("m") == "R"
    assert cache.get("nope") is None
    # refill is an add
    assert cache.refill("m", "other", ttl=0) is False
    assert cache.refill("r", "filled", ttl=0) is True
    assert cache.multi_get(["m", "r"]) == {Key("m"): "R", Key("r"): "filled"}


def test_delta(cache, mc):
    assert cache.set("n", 10, ttl=0) is True
    assert cache.delta("n", 5) is True
    assert cache.delta_and_get("n", 5) == 20
    assert cache.delta_and_get("n", -30) == 0  # decrements stop at 0
    assert cache.delta("missing", 1) is False
    assert cache.delta_and_get("missing", 1) is None
    assert cache.delta_initialize_and_get("ctr", 1, initial_value=100, initial_ttl=60) == 100
    assert cache.delta_initialize_and_get("ctr", 1, initial_value=100, initial_ttl=60) == 101
    assert cache.delta_initialize("ctr2", -1, initial_value=5, initial_ttl=60) is True
    assert cache.delta_and_get("ctr2", -1) == 4
    assert raw(mc.port, b"mg ctr v t\r\n") in (b"VA 3 t60\r\n101\r\n", b"VA 3 t59\r\n101\r\n")
    assert cache.get("n") == 0


def test_cas_flow(cache, cache2):
    assert cache.get_cas("k") == (None, None)
    assert cache.set("k", "v1", ttl=0) is True
    value, token = cache.get_cas("k")
    assert value == "v1" and isinstance(token, int) and token > 0
    assert cache2.set("k", "v2", ttl=0, cas_token=token) is True
    # the first writer's token is stale now
    assert cache.set("k", "v3", ttl=0, cas_token=token) is False
    assert cache.get("k") == "v2"
    # set_cas returns the new item's token, which a following write can use
    token2 = cache.set_cas("k", "v4", ttl=0)
    assert isinstance(token2, int) and token2 != token
    assert cache.get_cas("k") == ("v4", token2)
    assert cache.set("k", "v5", ttl=0, cas_token=token2) is True
    # delete with a token: wrong one refused, right one deletes
    value, token3 = cache.get_cas("k")
    assert value == "v5"
    assert cache.delete("k", cas_token=token3 + 1) is False
    assert cache.delete("k", cas_token=token3) is True
    assert cache.get("k") is None


def test_stale_while_revalidate(cache, cache2, mc):
    stale = StalePolicy(mark_stale_on_deletion_ttl=30)
    assert cache.set("sw", "old", ttl=100) is True
    _, token_before = cache.get_cas("sw")
    # invalidate marks it stale (md sw I T30) instead of deleting it
    assert cache.invalidate("sw", stale_policy=stale) is True
    # the first reader wins the right to recompute: a miss, with a token
    value, token = cache.get_cas("sw")
    assert value is None
    assert isinstance(token, int) and token != token_before
    # the others are served the stale value meanwhile
    assert cache2.get("sw") == "old"
    assert cache2.get_cas("sw") == ("old", token)
    # what the server says of the item: stale (X) and already won (Z)
    item = cache2.meta_get(Key("sw"), flags=RequestFlags(return_value=True))
    assert (item.flags.win, item.flags.stale) == (False, True)
    # a write with the pre-invalidation token is refused
    assert cache2.set("sw", "late", ttl=100, cas_token=token_before) is False
    # the winner's write, with its token, makes it fresh again
    assert cache.set("sw", "new", ttl=100, cas_token=token) is True
    assert cache2.get("sw") == "new"
    assert raw(mc.port, b"mg sw v\r\n") == b"VA 3\r\nnew\r\n"


def test_stale_on_cas_mismatch(cache, cache2):
    assert cache.set("sc", "old", ttl=100) is True
    _, token_before = cache.get_cas("sc")
    assert cache.invalidate("sc", stale_policy=StalePolicy(mark_stale_on_deletion_ttl=30)) is True
    # a late writer with mark_stale_on_cas_mismatch stores its value, stale
    late = StalePolicy(mark_stale_on_cas_mismatch=True)
    assert cache2.set("sc", "late", ttl=100, cas_token=token_before, stale_policy=late) is True
    value, token = cache.get_cas("sc")
    assert value is None  # still stale: the next reader wins the recompute
    assert cache2.get("sc") == "late"
    assert cache.set("sc", "fresh", ttl=100, cas_token=token) is True
    assert cache2.get("sc") == "fresh"


def test_recache_policy(cache, cache2):
    recache = RecachePolicy(ttl=30)
    assert cache.set("rc", "val", ttl=10) is True
    # 10 s left < 30: the first reader wins the early recompute ...
    value, token = cache.get_cas("rc", recache_policy=recache)
    assert value is None and isinstance(token, int)
    # ... the others keep getting the value
    assert cache2.get("rc", recache_policy=recache) == "val"
    assert cache2.get("rc", recache_policy=recache) == "val"
    assert cache.set("rc", "val2", ttl=100, cas_token=token) is True
    # plenty of TTL left now: nobody wins
    assert cache.get("rc", recache_policy=recache) == "val2"
    assert cache2.get("rc", recache_policy=recache) == "val2"


def test_get_or_lease(cache, cache2, mc):
    lease = LeasePolicy(ttl=30, miss_retries=3, miss_retry_wait=0.01)
    # the first reader of a missing key wins the lease: a miss and a token
    value, token = cache.get_or_lease_cas("lz", lease)
    assert value is None and isinstance(token, int) and token > 0
    # the placeholder: empty, lease TTL, win already handed out (Z)
    assert raw(mc.port, b"mg lz s t\r\n") in (b"HD s0 t30 Z\r\n", b"HD s0 t29 Z\r\n")
    # a second reader waits; the winner fills the key during that wait
    waits = []

    def wait(seconds):
        waits.append(seconds)
        assert cache.set("lz", "filled", ttl=100, cas_token=token) is True

    assert cache2.get_or_lease("lz", lease, lease_wait_fn=wait) == "filled"
    assert waits == [0.01]
    # a reader that runs out of retries gets a miss
    value, token = cache.get_or_lease_cas("lz2", lease)
    assert value is None
    waits.clear()
    assert cache2.get_or_lease("lz2", lease, lease_wait_fn=waits.append) is None
    assert waits == [0.01, 0.01 * 1.2]

"""python-binary-memcached (module bmemcached, binary protocol only) against
both servers, and SASL PLAIN authentication (-S).

SASL setup, for both servers at once:
  * rmemcached follows memcached's --enable-sasl-pwdb build: the password
    file named by $MEMCACHED_SASL_PWDB, `user:password` lines.
  * Debian's /usr/bin/memcached 1.6.18 is built without sasl-pwdb (it
    ignores MEMCACHED_SASL_PWDB) and goes through Cyrus SASL: it needs a
    config directory ($SASL_CONF_PATH, holding memcached.conf with
    `mech_list: plain` and `sasldb_path: <file>`; without any config path
    it refuses to start: "Error initializing sasl."), the PLAIN plugin
    (libsasl2-modules) and the sasldb plugin (libsasl2-modules-db), and a
    sasldb file made by saslpasswd2 (sasl2-bin) with the user in the realm
    of the host name (memcached passes gethostname() as the user realm).
  Each server gets both environment variables; each uses its own.  The
  files are readable by nobody: the servers drop root before reading them.

What memcached 1.6.18 does with -S (the spec these tests pin):
  * LIST_MECHS answers `PLAIN` (the mech_list); VERSION and the SASL
    commands work before authentication.
  * Any other command before authentication: status 0x20, body
    `Auth failure.`, and the server closes the connection.
  * SASL_AUTH PLAIN `\\0user\\0password`: status 0 `Authenticated`, or status
    0x20 `Auth failure.` with the connection left open (a retry on the same
    connection may succeed).
  * stats auth_cmds counts SASL_AUTH requests, auth_errors the failed ones.
  * The text protocol is off: a text line of 24 bytes or more is read as
    a bad binary header and the connection is closed without a reply.
bmemcached reports a failed login as MemcachedException(
"Code: 32 Message: b'Auth failure.'", 32) from the first command (it only
maps status 0x08 to InvalidCredentials, and memcached sends 0x20).
"""
import os
import shutil
import socket
import struct
import subprocess

import bmemcached
import pytest
from bmemcached.exceptions import MemcachedException

from conftest import MEMCACHED_BIN
from mcutil import bin_request, bin_response, raw, recv_until_eof

AUTH_FAILURE = ("Code: 32 Message: b'Auth failure.'", 32)

# binary opcodes
GET, SET, DELETE, VERSION, STAT = 0x00, 0x01, 0x04, 0x0B, 0x10
TOUCH, GAT, GATQ = 0x1C, 0x1D, 0x1E
SASL_LIST_MECHS, SASL_AUTH = 0x20, 0x21


@pytest.fixture
def mc(module_server):
    """The module's server, emptied."""
    assert raw(module_server.port, b"flush_all\r\n") == b"OK\r\n"
    return module_server


@pytest.fixture
def client(mc):
    c = bmemcached.Client([mc.address], socket_timeout=5)
    yield c
    c.disconnect_all()


def test_set_get_types(client, mc):
    assert client.set("s", "text") is True
    assert client.set("b", b"\x00\xff") is True
    assert client.set("i", 5) is True
    assert client.set("d", {"a": [1, 2]}) is True
    assert client.get("s") == "text"
    assert client.get("b") == b"\x00\xff"
    assert client.get("i") == 5
    assert client.get("d") == {"a": [1, 2]}
    assert client.get("missing") is None
    assert client.get("missing", default="dflt") == "dflt"
    # what the server stored, seen over text: bmemcached's flags and bytes
    assert raw(mc.port, b"get s b i\r\n", b"END\r\n") == (
        b"VALUE s 0 4\r\ntext\r\nVALUE b 16 2\r\n\x00\xff\r\nVALUE i 2 1\r\n5\r\nEND\r\n")
    assert raw(mc.port, b"get d\r\n", b"END\r\n").startswith(b"VALUE d 1 ")


def test_set_multi_get_multi(client):
    assert client.set_multi({"m1": "1", "m2": b"2", "m3": 3}) == []
    assert client.get_multi(["m1", "m2", "m3", "m4"]) == {"m1": "1", "m2": b"2", "m3": 3}
    assert client.get_multi(["x", "y"]) == {}


def test_add_replace(client):
    assert client.add("a", "first") is True
    assert client.add("a", "second") is False
    assert client.replace("a", "third") is True
    assert client.replace("nope", "x") is False
    assert client.get_multi(["a", "nope"]) == {"a": "third"}


def test_incr_decr(client, mc):
    assert client.set("n", "10") is True
    assert client.incr("n", 5) == 15
    assert client.decr("n", 3) == 12
    assert client.decr("n", 100) == 0
    assert client.get("n") == "0 "
    # a missing counter is created with the default (returned as is)
    assert client.incr("cnt", 1, default=7) == 7
    assert client.incr("cnt", 1) == 8
    assert client.decr("down", 1, default=3) == 3
    assert raw(mc.port, b"get cnt down\r\n", b"END\r\n") == (
        b"VALUE cnt 0 1\r\n8\r\nVALUE down 0 1\r\n3\r\nEND\r\n")
    assert client.set("s", "abc") is True
    with pytest.raises(MemcachedException) as e:
        client.incr("s", 1)
    assert e.value.args == (
        "Code: 6 Message: b'Non-numeric server-side value for incr or decr'", 6)


def test_delete(client):
    assert client.set("k", "v") is True
    assert client.delete("k") is True
    assert client.get("k") is None
    # bmemcached reports a missing key as deleted too
    assert client.delete("k") is True
    assert client.set_multi({"d1": "1", "d2": "2"}) == []
    assert client.delete_multi(["d1", "d2"]) is True
    assert client.get_multi(["d1", "d2"]) == {}


def test_cas(client):
    assert client.gets("k") == (None, None)
    assert client.set("k", "v1") is True
    value, cas = client.gets("k")
    assert value == "v1"
    assert isinstance(cas, int) and cas > 0
    # delete with a stale token is refused (status 0x02)
    assert client.delete("k", cas + 1000) is False
    assert client.cas("k", "v2", cas) is True
    assert client.cas("k", "v3", cas) is False
    assert client.get("k") == "v2"
    assert client.cas("nokey", "x", 5) is False
    assert client.get("nokey") is None


def test_stats(client, mc):
    assert client.set("s1", "1") is True
    st = client.stats()
    assert list(st) == [mc.address]
    st = st[mc.address]
    assert st["version"] == b"1.6.18"
    assert st["pid"] == str(mc.proc.pid).encode()
    settings = client.stats("settings")[mc.address]
    assert settings["tcpport"] == str(mc.port).encode()
    assert settings["item_size_max"] == b"1048576"


def test_flush_all(client):
    assert client.set("f", "v") is True
    assert client.flush_all() is True
    assert client.get("f") is None


def test_raw_touch_and_gat(mc):
    with mc.connect() as s:
        s.sendall(bin_request(SET, b"t", b"val", struct.pack(">II", 0xDEADBEEF, 5), opaque=1))
        r = bin_response(s)
        assert (r["opcode"], r["status"], r["opaque"]) == (SET, 0, 1)
        cas = r["cas"]
        assert cas > 0
        s.sendall(bin_request(TOUCH, b"t", extras=struct.pack(">I", 100), opaque=2))
        r = bin_response(s)
        assert r == {"magic": 0x81, "opcode": TOUCH, "status": 0, "opaque": 2, "cas": cas,
                     "extras": b"\xde\xad\xbe\xef", "key": b"", "value": b""}
        s.sendall(bin_request(GAT, b"t", extras=struct.pack(">I", 200), opaque=3))
        r = bin_response(s)
        assert r == {"magic": 0x81, "opcode": GAT, "status": 0, "opaque": 3, "cas": cas,
                     "extras": b"\xde\xad\xbe\xef", "key": b"", "value": b"val"}
        s.sendall(bin_request(TOUCH, b"zz", extras=struct.pack(">I", 100), opaque=4))
        r = bin_response(s)
        assert (r["opcode"], r["status"], r["opaque"], r["value"]) == (TOUCH, 1, 4, b"Not found")
    assert raw(mc.port, b"mg t t\r\n") in (b"HD t200\r\n", b"HD t199\r\n")


# ---------------------------------------------------------------------------
# SASL


@pytest.fixture
def sasl_server(server_bin, start_server, shared_tmp):
    """A server with -S; user alice, password secret."""
    pwdb = os.path.join(shared_tmp, "pwdb")
    with open(pwdb, "w") as f:
        f.write("alice:secret\n")
    os.chmod(pwdb, 0o644)
    sasldb = os.path.join(shared_tmp, "sasldb2")
    with open(os.path.join(shared_tmp, "memcached.conf"), "w") as f:
        f.write(f"mech_list: plain\nsasldb_path: {sasldb}\n")
    os.chmod(os.path.join(shared_tmp, "memcached.conf"), 0o644)
    saslpasswd2 = shutil.which("saslpasswd2") or (
        "/usr/sbin/saslpasswd2" if os.path.exists("/usr/sbin/saslpasswd2") else None)
    if saslpasswd2:
        subprocess.run([saslpasswd2, "-p", "-c", "-a", "memcached", "-u", socket.gethostname(),
                        "-f", sasldb, "alice"], input=b"secret", check=True, timeout=30)
        os.chmod(sasldb, 0o644)
    elif server_bin == MEMCACHED_BIN:
        pytest.skip("saslpasswd2 (Debian sasl2-bin, installed by make deps-apt) is missing")
    env = {"MEMCACHED_SASL_PWDB": pwdb, "SASL_CONF_PATH": shared_tmp}
    return start_server(server_bin, ["-S"], env=env, fast_stop=True)


def test_sasl_login_then_commands(sasl_server):
    c = bmemcached.Client([sasl_server.address], "alice", "secret", socket_timeout=5)
    try:
        assert c.set("k", "v") is True
        assert c.get("k") == "v"
        assert c.set_multi({"a": 1, "b": 2}) == []
        assert c.get_multi(["a", "b", "k", "z"]) == {"a": 1, "b": 2, "k": "v"}
        assert c.incr("a", 41) == 42
        assert c.delete("b") is True
        assert c.stats()[sasl_server.address]["version"] == b"1.6.18"
    finally:
        c.disconnect_all()


@pytest.mark.parametrize("user, password", [
    ("alice", "wrong"),
    ("bob", "secret"),
    ("alice", ""),  # bmemcached then sends no credentials at all
])
def test_sasl_bad_login_is_refused(sasl_server, user, password):
    bad = bmemcached.Client([sasl_server.address], user, password, socket_timeout=5)
    try:
        with pytest.raises(MemcachedException) as e:
            bad.set("k", "intruder")
        assert e.value.args == AUTH_FAILURE
        assert e.value.code == 32
    finally:
        bad.disconnect_all()
    good = bmemcached.Client([sasl_server.address], "alice", "secret", socket_timeout=5)
    try:
        assert good.get("k") is None
    finally:
        good.disconnect_all()


def test_sasl_raw_unauthenticated_command(sasl_server):
    with sasl_server.connect() as s:
        s.sendall(bin_request(GET, b"foo", opaque=0xDEADBEEF))
        assert bin_response(s) == {
            "magic": 0x81, "opcode": GET, "status": 0x20, "opaque": 0xDEADBEEF, "cas": 0,
            "extras": b"", "key": b"", "value": b"Auth failure."}
        # and the server hangs up
        assert recv_until_eof(s) == b""
    with sasl_server.connect() as s:
        s.sendall(bin_request(SET, b"foo", b"bar", struct.pack(">II", 0, 0), opaque=7))
        r = bin_response(s)
        assert (r["opcode"], r["status"], r["opaque"], r["value"]) == (SET, 0x20, 7, b"Auth failure.")
        assert recv_until_eof(s) == b""


def test_sasl_raw_login_flow(sasl_server):
    with sasl_server.connect() as s:
        # allowed before login
        s.sendall(bin_request(SASL_LIST_MECHS, opaque=1))
        r = bin_response(s)
        assert (r["opcode"], r["status"], r["opaque"], r["value"]) == (SASL_LIST_MECHS, 0, 1, b"PLAIN")
        s.sendall(bin_request(VERSION, opaque=2))
        r = bin_response(s)
        assert (r["opcode"], r["status"], r["value"]) == (VERSION, 0, b"1.6.18")
        # a wrong password leaves the connection open ...
        s.sendall(bin_request(SASL_AUTH, b"PLAIN", b"\0alice\0wrong", opaque=3))
        r = bin_response(s)
        assert (r["opcode"], r["status"], r["opaque"], r["key"], r["value"]) == (
            SASL_AUTH, 0x20, 3, b"", b"Auth failure.")
        # ... and the right one then works
        s.sendall(bin_request(SASL_AUTH, b"PLAIN", b"\0alice\0secret", opaque=4))
        r = bin_response(s)
        assert (r["opcode"], r["status"], r["opaque"], r["value"]) == (
            SASL_AUTH, 0, 4, b"Authenticated")
        s.sendall(bin_request(SET, b"k", b"val", struct.pack(">II", 9, 0), opaque=5)
                  + bin_request(GET, b"k", opaque=6))
        r = bin_response(s)
        assert (r["opcode"], r["status"], r["opaque"]) == (SET, 0, 5)
        r = bin_response(s)
        assert (r["opcode"], r["status"], r["opaque"], r["extras"], r["value"]) == (
            GET, 0, 6, struct.pack(">I", 9), b"val")
        # stats over the authenticated connection
        s.sendall(bin_request(STAT))
        st = {}
        while True:
            r = bin_response(s)
            assert (r["opcode"], r["status"]) == (STAT, 0)
            if not r["key"]:
                break
            st[r["key"].decode()] = r["value"].decode()
        assert (st["auth_cmds"], st["auth_errors"]) == ("2", "1")


def test_sasl_text_protocol_is_off(sasl_server):
    with sasl_server.connect() as s:
        s.sendall(b"set k 0 0 5\r\nvalue\r\nget k\r\nversion\r\n")
        assert recv_until_eof(s) == b""
    c = bmemcached.Client([sasl_server.address], "alice", "secret", socket_timeout=5)
    try:
        assert c.get("k") is None
    finally:
        c.disconnect_all()

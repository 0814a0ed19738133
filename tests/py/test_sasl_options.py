"""Start-up behaviour around -S (SASL), asserted as memcached 1.6.18 behaves
(RMEMCACHED_BIN and /usr/bin/memcached).  The SASL login flow itself is
tested elsewhere.

memcached 1.6.18, in the order it checks:
  1. option checks, exit 64 (EX_USAGE):
     -S with -B ascii or -B auto:
       "ERROR: You cannot allow the ASCII protocol while using SASL.\\n"
     -Y with -B binary or -B auto (after the -S check):
       "ERROR: You cannot allow the BINARY protocol while using ascii
        authentication tokens.\\n"
     -S with a UDP port:
       "ERROR: Cannot enable UDP while using binary SASL authentication.\\n"
  2. SASL initialisation, exit 1: without $SASL_CONF_PATH and without
     /etc/sasl/memcached.conf or /etc/sasl2/memcached.conf:
       "Error initializing sasl.\\n"
  3. the -Y file (see test_ascii_auth.py), exit 1.
-S alone selects the binary protocol; text sent to it is not answered: it
waits for 24 bytes of header, then closes the connection (bad magic).
-S with -Y runs the text protocol with ASCII authentication
(binding_protocol ascii, auth_enabled_sasl yes).

Servers started with -S get SASL_CONF_PATH pointing at a directory holding
a memcached.conf (`mech_list: plain`), which is all SASL initialisation
needs.
"""
import os
import shutil
import struct
import uuid

import pytest

from conftest import free_port, user_args
from mcutil import command, connect, recv_until_eof, run_refused, stats, tmp_file

ASCII_WITH_SASL = b"ERROR: You cannot allow the ASCII protocol while using SASL.\n"
BINARY_WITH_ASCII_AUTH = (b"ERROR: You cannot allow the BINARY protocol while using "
                          b"ascii authentication tokens.\n")
UDP_WITH_SASL = b"ERROR: Cannot enable UDP while using binary SASL authentication.\n"
SASL_INIT_FAILED = b"Error initializing sasl.\n"


@pytest.fixture
def sasl_conf():
    """A SASL config directory (world-readable, in /tmp) -> its path."""
    path = f"/tmp/rmc-sasl-{os.getpid()}-{uuid.uuid4().hex}"
    os.mkdir(path, 0o755)
    os.chmod(path, 0o755)
    with open(os.path.join(path, "memcached.conf"), "w") as f:
        f.write("mech_list: plain\n")
    os.chmod(os.path.join(path, "memcached.conf"), 0o644)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def sasl_env(monkeypatch, sasl_conf):
    """SASL_CONF_PATH set for servers started by start_server."""
    monkeypatch.setenv("SASL_CONF_PATH", sasl_conf)
    return sasl_conf


@pytest.fixture
def auth_path():
    path = tmp_file(b"alice:secret\n")
    yield path
    os.unlink(path)


def env_with(conf):
    env = {k: v for k, v in os.environ.items() if k != "SASL_CONF_PATH"}
    if conf is not None:
        env["SASL_CONF_PATH"] = conf
    return env


def argv(binary, *extra, udp=False):
    port = free_port()
    return ([binary, "-p", str(port), "-l", "127.0.0.1", "-U", str(port) if udp else "0"]
            + user_args() + list(extra))


def no_system_sasl_conf():
    return not any(os.path.exists(p) for p in
                   ("/etc/sasl/memcached.conf", "/etc/sasl2/memcached.conf"))


# ---------------------------------------------------------------------------
# Refused combinations


@pytest.mark.parametrize("proto", ["ascii", "auto"])
@pytest.mark.parametrize("configured", [True, False], ids=["conf", "noconf"])
def test_sasl_refuses_ascii_protocol(server_bin, sasl_conf, proto, configured):
    """Refused before SASL is initialised: same answer without a config."""
    rc, out, err = run_refused(argv(server_bin, "-S", "-B", proto),
                               env_with(sasl_conf if configured else None))
    assert (rc, out, err) == (64, b"", ASCII_WITH_SASL)


def test_sasl_refuses_ascii_protocol_given_first(server_bin, sasl_conf):
    rc, out, err = run_refused(argv(server_bin, "-B", "ascii", "-S"), env_with(sasl_conf))
    assert (rc, out, err) == (64, b"", ASCII_WITH_SASL)


@pytest.mark.parametrize("extra", [["-S"], ["-S", "-B", "binary"]], ids=["S", "S-Bbinary"])
@pytest.mark.parametrize("configured", [True, False], ids=["conf", "noconf"])
def test_sasl_refuses_udp(server_bin, sasl_conf, extra, configured):
    rc, out, err = run_refused(argv(server_bin, *extra, udp=True),
                               env_with(sasl_conf if configured else None))
    assert (rc, out, err) == (64, b"", UDP_WITH_SASL)


def test_sasl_with_ascii_auth_and_binary_protocol(server_bin, sasl_conf, auth_path):
    rc, out, err = run_refused(argv(server_bin, "-S", "-Y", auth_path, "-B", "binary"),
                               env_with(sasl_conf))
    assert (rc, out, err) == (64, b"", BINARY_WITH_ASCII_AUTH)


@pytest.mark.parametrize("proto", ["ascii", "auto"])
def test_sasl_with_ascii_auth_and_text_protocol(server_bin, sasl_conf, auth_path, proto):
    """-S's check comes first: the ASCII message, not -Y's."""
    rc, out, err = run_refused(argv(server_bin, "-S", "-Y", auth_path, "-B", proto),
                               env_with(sasl_conf))
    assert (rc, out, err) == (64, b"", ASCII_WITH_SASL)


def test_sasl_with_ascii_auth_and_udp(server_bin, sasl_conf, auth_path):
    rc, out, err = run_refused(argv(server_bin, "-S", "-Y", auth_path, udp=True),
                               env_with(sasl_conf))
    assert (rc, out, err) == (64, b"", UDP_WITH_SASL)


# ---------------------------------------------------------------------------
# SASL initialisation


@pytest.mark.skipif(not no_system_sasl_conf(),
                    reason="a system-wide /etc/sasl*/memcached.conf exists")
@pytest.mark.parametrize("extra", [["-S"], ["-S", "-B", "binary"]], ids=["S", "S-Bbinary"])
def test_sasl_without_config(server_bin, extra):
    rc, out, err = run_refused(argv(server_bin, *extra), env_with(None))
    assert (rc, out, err) == (1, b"", SASL_INIT_FAILED)


@pytest.mark.skipif(not no_system_sasl_conf(),
                    reason="a system-wide /etc/sasl*/memcached.conf exists")
def test_sasl_initialised_before_auth_file(server_bin):
    """Without a SASL config -S fails first, even with an unreadable -Y."""
    rc, out, err = run_refused(argv(server_bin, "-S", "-Y", "/nonexistent/auth"),
                               env_with(None))
    assert (rc, out, err) == (1, b"", SASL_INIT_FAILED)


def test_sasl_then_missing_auth_file(server_bin, sasl_conf):
    path = f"/tmp/rmc-auth-missing-{uuid.uuid4().hex}"
    rc, out, err = run_refused(argv(server_bin, "-S", "-Y", path), env_with(sasl_conf))
    assert (rc, out) == (1, b"")
    assert err == (f"Could not open authfile [{path}] for reading, error "
                   "No such file or directory: No such file or directory\n").encode()


# ---------------------------------------------------------------------------
# Running with -S


def bin_request(opcode, key=b"", opaque=0):
    return struct.pack(">BBHBBHIIQ", 0x80, opcode, len(key), 0, 0, 0, len(key),
                       opaque, 0) + key


def bin_version_reply(sock):
    header = b""
    while len(header) < 24:
        chunk = sock.recv(24 - len(header))
        assert chunk, header
        header += chunk
    magic, opcode, keylen, extlen, dtype, status, bodylen, opaque, cas = struct.unpack(
        ">BBHBBHIIQ", header)
    body = b""
    while len(body) < bodylen:
        chunk = sock.recv(bodylen - len(body))
        assert chunk
        body += chunk
    return (magic, opcode, keylen, extlen, dtype, status, opaque, cas), body


@pytest.mark.parametrize("extra", [["-S"], ["-S", "-B", "binary"]], ids=["S", "S-Bbinary"])
def test_sasl_server_does_not_speak_text(start_server, server_bin, sasl_env, extra):
    srv = start_server(server_bin, extra)
    with connect(srv.port) as s:
        # under 24 bytes: the server waits for the rest of a binary header
        s.sendall(b"version\r\n")
        s.settimeout(0.5)
        with pytest.raises(TimeoutError):
            s.recv(100)
        # 24 bytes and more: not a binary request magic: closed, no reply
        s.sendall(b"get k\r\nget k\r\nget k\r\n")
        assert recv_until_eof(s) == b""
    with connect(srv.port) as s:
        s.sendall(b"stats\r\n" * 4)
        assert recv_until_eof(s) == b""
    # the binary protocol answers VERSION without authentication
    with connect(srv.port) as s:
        s.sendall(bin_request(0x0B, opaque=0x1234))
        header, body = bin_version_reply(s)
        assert header == (0x81, 0x0B, 0, 0, 0, 0, 0x1234, 0)
        assert body == b"1.6.18"


@pytest.mark.parametrize("order", ["S-first", "Y-first"])
def test_sasl_with_ascii_auth_runs_text_protocol(start_server, server_bin, sasl_env,
                                                 auth_path, order):
    extra = ["-S", "-Y", auth_path] if order == "S-first" else ["-Y", auth_path, "-S"]
    srv = start_server(server_bin, extra)
    with connect(srv.port) as s:
        assert command(s, b"version\r\n") == b"CLIENT_ERROR unauthenticated\r\n"
        assert command(s, b"set a 0 0 12\r\nalice secret\r\n") == b"STORED\r\n"
        assert command(s, b"version\r\n") == b"VERSION 1.6.18\r\n"
        st = stats(s, "settings")
    assert st["binding_protocol"] == "ascii"
    assert st["auth_enabled_sasl"] == "yes"
    assert st["auth_enabled_ascii"] == auth_path
    # binary requests are text here: VERSION (no '\n' in it) is an
    # unfinished line
    with connect(srv.port) as s:
        s.sendall(bin_request(0x0B))
        s.settimeout(0.5)
        with pytest.raises(TimeoutError):
            s.recv(100)

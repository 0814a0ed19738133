"""Unix-domain sockets (-s <path>, -a <mask>) against both servers.

What memcached 1.6.18 does (the spec these tests pin):
  * With -s the server listens on the socket only: no TCP port (even with
    -p given) and no UDP port (even with -U given).
  * The socket file is created after the server dropped root for `-u
    nobody`, so it belongs to nobody; its permission bits are exactly the
    -a mask (the server's umask is ~mask while it binds): default 0700,
    -a 777 -> 0777, -a 755 -> 0755, -a 600 -> 0600, -a 0 -> 0000.
  * `stats settings` shows `domain_socket <path>` and `umask <mask>`
    (octal, as given; default 700).
  * On SIGTERM the server exits 0 and leaves the socket file behind; a
    new server on the same path replaces the stale socket.  A regular file
    at the path is not replaced: the server exits 71 (EX_OSERR).

The sockets live in a fresh directory owned by nobody (fixture shared_tmp).
"""
import os
import pwd
import signal
import socket
import stat

import pytest
import bmemcached
from pymemcache.client.base import Client

from conftest import MEMCACHED_BIN, Server, free_udp_port, udp_port_bound
from mcutil import command, parse_stats, port_refuses, recv_until


@pytest.fixture
def sock_path(shared_tmp):
    return os.path.join(shared_tmp, "mc.sock")


@pytest.fixture
def unix_server(server_bin, start_server, sock_path):
    """Factory: unix_server(mask=None, args=()) -> Server on sock_path.
    Servers still running after the test are SIGKILLed (memcached takes up
    to a second to act on SIGTERM; the SIGTERM path has its own test)."""

    def _start(mask=None, args=()):
        return start_server(server_bin, args, unix_path=sock_path, unix_mask=mask,
                            fast_stop=True)

    return _start


def settings(srv):
    with srv.connect() as s:
        return parse_stats(command(s, b"stats settings\r\n", b"END\r\n"))


def test_pymemcache_over_unix_socket(unix_server, sock_path):
    srv = unix_server()
    c = Client(sock_path, connect_timeout=5, timeout=5)
    try:
        assert c.set("k", "v", noreply=False) is True
        assert c.get("k") == b"v"
        assert c.set_many({"a": "1", "b": "2"}, noreply=False) == []
        assert c.get_many(["a", "b", "k", "nope"]) == {"a": b"1", "b": b"2", "k": b"v"}
        assert c.incr("a", 41) == 42
        assert c.delete("k", noreply=False) is True
        assert c.delete("k", noreply=False) is False
        assert c.get_many(["k", "a"]) == {"a": b"42"}
        assert c.version() == b"1.6.18"
    finally:
        c.close()
    st = settings(srv)
    assert st["domain_socket"] == sock_path
    assert st["umask"] == "700"


def test_binary_protocol_over_unix_socket(unix_server, sock_path):
    unix_server()
    c = bmemcached.Client([sock_path], socket_timeout=5)
    try:
        assert c.set("bk", b"\x00\x01\xff") is True
        assert c.get("bk") == b"\x00\x01\xff"
        assert c.get_multi(["bk", "none"]) == {"bk": b"\x00\x01\xff"}
        assert c.incr("cnt", 1, default=10) == 10
        assert c.incr("cnt", 5) == 15
        assert c.delete("bk") is True
        assert c.get("bk") is None
    finally:
        c.disconnect_all()


@pytest.mark.parametrize("mask, mode, shown", [
    (None, 0o700, "700"),
    ("700", 0o700, "700"),
    ("777", 0o777, "777"),
    ("755", 0o755, "755"),
    ("600", 0o600, "600"),
    pytest.param("0", 0o000, "0", marks=pytest.mark.skipif(
        os.geteuid() != 0, reason="mode 0000 admits root only")),
])
def test_socket_file_mode_is_the_mask(unix_server, sock_path, mask, mode, shown):
    srv = unix_server(mask)
    st = os.lstat(sock_path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == mode
    if os.geteuid() == 0:
        # made after dropping root for -u nobody
        nobody = pwd.getpwnam("nobody")
        assert (st.st_uid, st.st_gid) == (nobody.pw_uid, nobody.pw_gid)
    assert settings(srv)["umask"] == shown


def connect_as_other_user(path):
    """In a child running as uid/gid 1 (daemon): connect to `path` and ask
    `version`.  Returns 0 and the reply, or the errno of the failure."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: no pytest machinery from here on
        code = 99
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(1)
            os.setuid(1)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(5)
            s.connect(path)
            s.sendall(b"version\r\n")
            os.write(w, recv_until(s, b"\r\n"))
            code = 0
        except OSError as e:
            code = e.errno or 98
        except BaseException:
            code = 97
        finally:
            os._exit(code)
    os.close(w)
    data = b""
    while True:
        chunk = os.read(r, 4096)
        if not chunk:
            break
        data += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), data


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
@pytest.mark.parametrize("mask, expected", [
    ("700", (13, b"")),  # EACCES: only nobody may connect
    ("777", (0, b"VERSION 1.6.18\r\n")),
])
def test_mask_decides_who_may_connect(unix_server, sock_path, mask, expected):
    unix_server(mask)
    assert connect_as_other_user(sock_path) == expected


def test_no_tcp_or_udp_listener_with_unix_socket(unix_server, sock_path):
    udp_port = free_udp_port()
    srv = unix_server(args=["-U", str(udp_port)])
    with srv.connect() as s:
        assert command(s, b"version\r\n") == b"VERSION 1.6.18\r\n"
    assert port_refuses(srv.port) is True
    assert udp_port_bound(udp_port) is False


def test_socket_file_after_sigterm_and_reuse(unix_server, sock_path, server_bin):
    """memcached leaves its socket file behind at exit; rmemcached removes
    it (the issue asks for that). Either way a new server on the path
    replaces a stale socket."""
    srv = unix_server("777")
    srv.proc.send_signal(signal.SIGTERM)
    assert srv.proc.wait(timeout=10) == 0
    if server_bin == MEMCACHED_BIN:
        st = os.lstat(sock_path)
        assert stat.S_ISSOCK(st.st_mode)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            with pytest.raises(ConnectionRefusedError):
                s.connect(sock_path)
    else:
        assert not os.path.lexists(sock_path)
        # a stale socket left by another process is replaced too
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(sock_path)
        stale.close()
    srv2 = unix_server("700")
    assert stat.S_IMODE(os.lstat(sock_path).st_mode) == 0o700
    with srv2.connect() as s:
        assert command(s, b"set k 0 0 1\r\nx\r\n") == b"STORED\r\n"


def test_regular_file_at_the_path_is_not_replaced(server_bin, sock_path):
    with open(sock_path, "w") as f:
        f.write("not a socket\n")
    with pytest.raises(RuntimeError, match="server exited with 71"):
        Server(server_bin, unix_path=sock_path)
    with open(sock_path) as f:
        assert f.read() == "not a socket\n"

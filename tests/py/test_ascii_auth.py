"""ASCII authentication (-Y <file> of `user:password` lines), asserted as
memcached 1.6.18 behaves; every test runs against RMEMCACHED_BIN and the
reference /usr/bin/memcached.

What memcached 1.6.18 does (the spec these tests pin):
  * -Y forces the text protocol (`stats settings`: binding_protocol ascii,
    auth_enabled_ascii <path>); a binary packet is just bytes of a text line.
  * Until a connection logs in, every line gets
    `CLIENT_ERROR unauthenticated` and the connection stays open (even
    `quit`), except a line `set <k> <f> <e> <n>[ ...]` whose 5th token is an
    unsigned number: that one starts a login and <n>+2 bytes are read as
    its data.  The key, flags and exptime are ignored (any text).
  * The data must end in \\r\\n (else `CLIENT_ERROR bad command line
    termination`) and hold at least two space-separated tokens (else
    `CLIENT_ERROR bad authentication token format`); the first two are the
    user and the password, compared exactly.  A match answers `STORED` and
    the connection is authenticated for good (the login stores nothing);
    otherwise `CLIENT_ERROR authentication failure`, and the client may try
    again on the same connection.
  * More than 2048 bytes without a newline before login: the connection is
    closed without a reply.
  * stats auth_cmds counts login attempts that reached the password check
    (success or failure), auth_errors the failures.
  * SIGHUP reloads the file; a reload that fails keeps the old entries.

Pipelining caveat, deliberately not pinned: before login, memcached 1.6.18
reuses one response object per read batch, so of several pre-login lines
that arrive in one read only the last reply is sent.  These tests wait for
each pre-login reply before sending the next line.

The auth files live directly in /tmp with mode 0644: a root test run starts
the servers with -u nobody, and memcached reads the file after dropping
privileges (pytest's tmp_path is 0700, unreadable to nobody).
"""
import os
import signal
import socket
import struct
import time
import uuid

import pytest

from conftest import free_port, user_args
from mcutil import (
    command,
    connect,
    recv_until,
    recv_until_eof,
    run_refused,
    stats,
    tmp_file,
    wait_for,
)

UNAUTH = b"CLIENT_ERROR unauthenticated\r\n"
FAILURE = b"CLIENT_ERROR authentication failure\r\n"
BAD_FORMAT = b"CLIENT_ERROR bad authentication token format\r\n"
BAD_TERM = b"CLIENT_ERROR bad command line termination\r\n"

USERS = b"alice:secret\nbob:hunter2\n"


@pytest.fixture
def auth_file():
    """Factory: auth_file(content bytes, mode=0o644) -> path in /tmp."""
    made = []

    def _make(content, mode=0o644):
        path = tmp_file(content, mode=mode)
        made.append(path)
        return path

    yield _make
    for path in made:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


@pytest.fixture
def auth_server(start_server, server_bin, auth_file):
    """A server with -Y over alice:secret and bob:hunter2."""
    path = auth_file(USERS)
    srv = start_server(server_bin, ["-Y", path])
    srv.auth_path = path
    return srv


def login_cmd(user, password, key=b"auth"):
    body = user + b" " + password
    return b"set %s 0 0 %d\r\n%s\r\n" % (key, len(body), body)


def login(sock, user=b"alice", password=b"secret"):
    return command(sock, login_cmd(user, password))


def fresh_login(port, user, password):
    """One login attempt on a fresh connection; its reply."""
    with connect(port) as s:
        return login(s, user, password)


def no_reply(sock, wait=0.3):
    """True if nothing arrives (and the peer does not close) within wait."""
    sock.settimeout(wait)
    try:
        data = sock.recv(4096)
    except socket.timeout:
        return True
    raise AssertionError(f"unexpected {'EOF' if not data else data!r}")


def authed_stats(port, arg=None):
    """stats over a freshly authenticated connection (counts one login)."""
    with connect(port) as s:
        assert login(s) == b"STORED\r\n"
        return stats(s, arg)


# ---------------------------------------------------------------------------
# Before login


PRE_LOGIN_LINES = [
    b"version\r\n",
    b"get foo\r\n",
    b"gets foo\r\n",
    b"gat 10 foo\r\n",
    b"touch foo 10\r\n",
    b"delete foo\r\n",
    b"incr foo 1\r\n",
    b"decr foo 1\r\n",
    b"add foo 0 0 1\r\n",
    b"replace foo 0 0 1\r\n",
    b"append foo 0 0 1\r\n",
    b"cas foo 0 0 1 1\r\n",
    b"stats\r\n",
    b"stats settings\r\n",
    b"flush_all\r\n",
    b"verbosity 1\r\n",
    b"mn\r\n",
    b"mg foo v\r\n",
    b"ms foo 1\r\n",
    b"md foo\r\n",
    b"ma foo\r\n",
    b"me foo\r\n",
    b"watch\r\n",
    b"lru_crawler metadump all\r\n",
    b"slabs automove 0\r\n",
    b"cache_memlimit 100\r\n",
    b"shutdown\r\n",
    b"bogus command\r\n",
    b"\r\n",
    b"x\n",
    b"version\n",
    b"SET foo 0 0 12\r\n",   # case-sensitive
    b"set foo 0 0\r\n",       # too few tokens
    b"set foo 0 0 x\r\n",     # size not a number
    b"set foo 0 0 -1\r\n",    # size not unsigned
    b"quit\r\n",             # does not close either
]


def test_every_command_refused_before_login(auth_server):
    with connect(auth_server.port) as s:
        for line in PRE_LOGIN_LINES:
            assert command(s, line) == UNAUTH, line
        # still open, still unauthenticated, and a login still works
        assert login(s) == b"STORED\r\n"
        assert command(s, b"version\r\n") == b"VERSION 1.6.18\r\n"
    assert auth_server.proc.poll() is None  # `shutdown` did nothing


def test_refused_commands_have_no_effect(auth_server):
    with connect(auth_server.port) as s:
        assert login(s) == b"STORED\r\n"
        assert command(s, b"set k 0 0 2\r\nv1\r\n") == b"STORED\r\n"
    with connect(auth_server.port) as s:
        assert command(s, b"delete k\r\n") == UNAUTH
        assert command(s, b"flush_all\r\n") == UNAUTH
        assert command(s, b"ms k2 2\r\n") == UNAUTH
        assert command(s, b"hi\r\n") == UNAUTH
        assert command(s, b"incr k 1\r\n") == UNAUTH
    with connect(auth_server.port) as s:
        assert login(s) == b"STORED\r\n"
        assert command(s, b"get k k2\r\n", b"END\r\n") == b"VALUE k 0 2\r\nv1\r\nEND\r\n"
        st = stats(s)
    assert (st["cmd_set"], st["cmd_flush"], st["curr_items"]) == ("1", "0", "1")
    assert (st["delete_hits"], st["delete_misses"], st["incr_misses"]) == ("0", "0", "0")


# ---------------------------------------------------------------------------
# Login


def test_login_then_normal_service(auth_server):
    with connect(auth_server.port) as s:
        assert command(s, b"set anykey 0 0 12\r\nalice secret\r\n") == b"STORED\r\n"
        assert command(s, b"version\r\n") == b"VERSION 1.6.18\r\n"
        # the login stored nothing
        assert command(s, b"get anykey\r\n") == b"END\r\n"
        assert command(s, b"set k 5 0 2\r\nhi\r\n") == b"STORED\r\n"
        assert command(s, b"get k\r\n", b"END\r\n") == b"VALUE k 5 2\r\nhi\r\nEND\r\n"
        # a second `set` is now an ordinary set
        assert command(s, b"set anykey 0 0 12\r\nalice secret\r\n") == b"STORED\r\n"
        assert command(s, b"get anykey\r\n", b"END\r\n") == (
            b"VALUE anykey 0 12\r\nalice secret\r\nEND\r\n")
        assert command(s, b"mn\r\n") == b"MN\r\n"
        s.sendall(b"quit\r\n")
        assert recv_until_eof(s) == b""


def test_login_pipelined_with_commands(auth_server):
    with connect(auth_server.port) as s:
        s.sendall(login_cmd(b"bob", b"hunter2")
                  + b"set k 0 0 2\r\nhi\r\nget k\r\nversion\r\n")
        assert recv_until(s, b"VERSION 1.6.18\r\n") == (
            b"STORED\r\nSTORED\r\nVALUE k 0 2\r\nhi\r\nEND\r\nVERSION 1.6.18\r\n")


def test_login_split_across_writes(auth_server):
    with connect(auth_server.port) as s:
        for piece in (b"set a 0 0 12", b"\r\n", b"alice ", b"secret\r"):
            s.sendall(piece)
            assert no_reply(s, 0.2)
        assert command(s, b"\n") == b"STORED\r\n"
        assert command(s, b"version\r\n") == b"VERSION 1.6.18\r\n"


@pytest.mark.parametrize("line, body", [
    (b"set a 0 0 12\r\n", b"alice secret"),
    (b"set a 0 0 12\n", b"alice secret"),                 # bare \n line
    (b"set a x y 12\r\n", b"alice secret"),               # flags/exptime ignored
    (b"set a 0 0 12 noreply\r\n", b"alice secret"),       # still answers
    (b"set a 0 0 12 more tokens here\r\n", b"alice secret"),
    (b"set  a  0  0  12\r\n", b"alice secret"),           # runs of spaces
    (b"set a 0 0 13\r\n", b"alice  secret"),
    (b"set a 0 0 13\r\n", b" alice secret"),
    (b"set a 0 0 17\r\n", b"alice secret more"),          # extra tokens ignored
    (b"set a 0 0 11\r\n", b"bob hunter2"),
])
def test_login_accepted_forms(auth_server, line, body):
    with connect(auth_server.port) as s:
        assert command(s, line + body + b"\r\n") == b"STORED\r\n"
        assert command(s, b"version\r\n") == b"VERSION 1.6.18\r\n"


@pytest.mark.parametrize("user, password", [
    (b"alice", b"wrongg"),
    (b"alice", b"hunter2"),     # bob's password
    (b"bob", b"secret"),        # alice's password
    (b"ALICE", b"secret"),
    (b"alice", b"secreT"),
    (b"alice", b"secre"),       # prefix
    (b"alice", b"secrett"),     # longer
    (b"mallory", b"secret"),
])
def test_wrong_credentials(auth_server, user, password):
    with connect(auth_server.port) as s:
        assert login(s, user, password) == FAILURE
        # still open, still unauthenticated
        assert command(s, b"version\r\n") == UNAUTH
        # and may try again
        assert login(s) == b"STORED\r\n"
        assert command(s, b"version\r\n") == b"VERSION 1.6.18\r\n"


@pytest.mark.parametrize("data", [
    b"alice\r\n",
    b"alice:secret\r\n",
    b"\r\n",
    b" \r\n",
])
def test_bad_token_format(auth_server, data):
    with connect(auth_server.port) as s:
        assert command(s, b"set a 0 0 %d\r\n%s" % (len(data) - 2, data)) == BAD_FORMAT
        assert command(s, b"version\r\n") == UNAUTH
        assert login(s) == b"STORED\r\n"


def test_login_data_longer_than_a_line_limit(auth_server):
    """The data is read by its length, whatever its size."""
    with connect(auth_server.port) as s:
        s.sendall(b"set a 0 0 5000\r\n")
        assert no_reply(s, 0.2)
        assert command(s, b"x" * 5000 + b"\r\n") == BAD_FORMAT
        assert login(s) == b"STORED\r\n"


def test_bad_termination(auth_server):
    with connect(auth_server.port) as s:
        # 3 bytes announced; the 2 after them must be \r\n
        assert command(s, b"set a 0 0 3\r\nabcde") == BAD_TERM
        assert command(s, b"version\r\n") == UNAUTH
        assert login(s) == b"STORED\r\n"


def test_long_line_before_login_closes(auth_server):
    with connect(auth_server.port) as s:
        s.sendall(b"x" * 2049)
        assert recv_until_eof(s) == b""
    with connect(auth_server.port) as s:
        s.sendall(b"x" * 2048)  # at the limit: still waiting for a newline
        assert no_reply(s)
        assert command(s, b"\n") == UNAUTH


def test_login_is_per_connection(auth_server):
    with connect(auth_server.port) as a, connect(auth_server.port) as b:
        assert login(a) == b"STORED\r\n"
        assert command(b, b"version\r\n") == UNAUTH
        assert command(a, b"version\r\n") == b"VERSION 1.6.18\r\n"
    with connect(auth_server.port) as c:
        assert command(c, b"get k\r\n") == UNAUTH


# ---------------------------------------------------------------------------
# -Y forces the text protocol


def bin_header(opcode, opaque=0):
    return struct.pack(">BBHBBHIIQ", 0x80, opcode, 0, 0, 0, 0, 0, opaque, 0)


def test_binary_packet_is_text_before_login(auth_server):
    with connect(auth_server.port) as s:
        # VERSION request: 24 bytes with no \n in them: an unfinished line
        s.sendall(bin_header(0x0B))
        assert no_reply(s)
    with connect(auth_server.port) as s:
        # NOOP's opcode is 0x0a, '\n': the line "\x80" is refused as text
        s.sendall(bin_header(0x0A))
        assert recv_until(s, b"\r\n") == UNAUTH
        assert no_reply(s)  # the rest is another unfinished line


def test_binary_packet_is_text_after_login(auth_server):
    with connect(auth_server.port) as s:
        assert login(s) == b"STORED\r\n"
        s.sendall(bin_header(0x0A))
        assert recv_until(s, b"\r\n") == b"ERROR\r\n"
    with connect(auth_server.port) as s:
        assert login(s) == b"STORED\r\n"
        s.sendall(bin_header(0x0B))
        assert no_reply(s)


def test_settings_report_ascii_auth(auth_server):
    st = authed_stats(auth_server.port, "settings")
    assert st["binding_protocol"] == "ascii"
    assert st["auth_enabled_ascii"] == auth_server.auth_path
    assert st["auth_enabled_sasl"] == "no"


def test_settings_without_auth(server):
    st = stats(server.port, "settings")
    assert st["auth_enabled_ascii"] == "no"
    assert st["auth_enabled_sasl"] == "no"
    assert st["binding_protocol"] == "auto-negotiate"


def test_explicit_ascii_protocol_allowed(start_server, server_bin, auth_file):
    srv = start_server(server_bin, ["-B", "ascii", "-Y", auth_file(USERS)])
    assert fresh_login(srv.port, b"alice", b"secret") == b"STORED\r\n"


# ---------------------------------------------------------------------------
# Counters


def test_auth_stats(auth_server):
    port = auth_server.port
    with connect(port) as s:
        assert login(s, b"alice", b"nope") == FAILURE          # counted, error
        assert command(s, b"set a 0 0 5\r\nalice\r\n") == BAD_FORMAT  # not counted
        assert command(s, b"get k\r\n") == UNAUTH               # not counted
        assert command(s, b"set a 0 0 3\r\nabcde") == BAD_TERM  # not counted
        assert login(s, b"bob", b"hunter2") == b"STORED\r\n"    # counted
        st = stats(s)
        assert (st["auth_cmds"], st["auth_errors"]) == ("2", "1")
        # after login, sets are plain sets and count nowhere near auth
        assert command(s, login_cmd(b"alice", b"secret")) == b"STORED\r\n"
        st = stats(s)
        assert (st["auth_cmds"], st["auth_errors"]) == ("2", "1")
        assert st["cmd_set"] == "1"
    with connect(port) as s:
        assert login(s, b"mallory", b"x") == FAILURE
        assert login(s, b"mallory", b"y") == FAILURE
        assert login(s) == b"STORED\r\n"
        st = stats(s)
        assert (st["auth_cmds"], st["auth_errors"]) == ("5", "3")


# ---------------------------------------------------------------------------
# The file


def test_several_users(start_server, server_bin, auth_file):
    path = auth_file(b"alice:secret\nbob:hunter2\ncarol:c0l0n:ok\n"
                     b"alice:second\ndave:p@ss!word\n")
    srv = start_server(server_bin, ["-Y", path])
    good = [(b"alice", b"secret"), (b"bob", b"hunter2"),
            (b"carol", b"c0l0n:ok"),   # the password is all after the 1st ':'
            (b"alice", b"second"),     # a user may have several entries
            (b"dave", b"p@ss!word")]
    bad = [(b"carol", b"c0l0n"), (b"carol:c0l0n", b"ok"), (b"bob", b"secret"),
           (b"dave", b"hunter2")]
    for user, password in good:
        assert fresh_login(srv.port, user, password) == b"STORED\r\n", user
    for user, password in bad:
        assert fresh_login(srv.port, user, password) == FAILURE, (user, password)


def test_only_the_first_eight_entries_count(start_server, server_bin, auth_file):
    """memcached keeps at most 8 entries (MAX_ENTRIES) and silently ignores
    the rest of the file."""
    path = auth_file(b"".join(b"user%d:pass%d\n" % (i, i) for i in range(10)))
    srv = start_server(server_bin, ["-Y", path])
    for i in range(8):
        assert fresh_login(srv.port, b"user%d" % i, b"pass%d" % i) == b"STORED\r\n", i
    for i in (8, 9):
        assert fresh_login(srv.port, b"user%d" % i, b"pass%d" % i) == FAILURE, i


def test_last_line_without_newline(start_server, server_bin, auth_file):
    srv = start_server(server_bin, ["-Y", auth_file(b"alice:secret\nbob:hunter2")])
    assert fresh_login(srv.port, b"alice", b"secret") == b"STORED\r\n"
    assert fresh_login(srv.port, b"bob", b"hunter2") == b"STORED\r\n"
    assert fresh_login(srv.port, b"bob", b"hunter") == FAILURE


def test_empty_file_lets_nobody_in(start_server, server_bin, auth_file):
    srv = start_server(server_bin, ["-Y", auth_file(b"")])
    with connect(srv.port) as s:
        assert command(s, b"version\r\n") == UNAUTH
        assert login(s) == FAILURE


# ---------------------------------------------------------------------------
# Start-up errors


def base(binary):
    return [binary, "-p", str(free_port()), "-l", "127.0.0.1"] + user_args()


def test_missing_file(server_bin):
    path = f"/tmp/rmc-auth-missing-{uuid.uuid4().hex}"
    rc, out, err = run_refused(base(server_bin) + ["-U", "0", "-Y", path])
    assert (rc, out) == (1, b"")
    assert err == (f"Could not open authfile [{path}] for reading, error "
                   "No such file or directory: No such file or directory\n").encode()


def test_unreadable_file(server_bin, auth_file):
    """Read after dropping privileges: as root with -u nobody, a 0600 root
    file is as unreadable as a 0000 one is to anyone else."""
    path = auth_file(USERS, mode=0o000)
    if os.access(path, os.R_OK) and os.geteuid() != 0:
        pytest.skip("mode 000 is readable here")
    rc, out, err = run_refused(base(server_bin) + ["-U", "0", "-Y", path])
    assert (rc, out) == (1, b"")
    assert err == (f"Could not open authfile [{path}] for reading, error "
                   "Permission denied: Permission denied\n").encode()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (-u nobody)")
def test_root_only_file_unreadable_after_dropping_privileges(server_bin, auth_file):
    path = auth_file(USERS, mode=0o600)
    rc, out, err = run_refused(base(server_bin) + ["-U", "0", "-Y", path])
    assert (rc, out) == (1, b"")
    assert err == (f"Could not open authfile [{path}] for reading, error "
                   "Permission denied: Permission denied\n").encode()


@pytest.mark.parametrize("content", [
    b"nocolon\n",
    b"alice:secret\nnocolon\n",
    b"alice:secret\n\nbob:hunter2\n",    # blank line
    b"alice:secret\n\n",                  # trailing blank line
    b"# comment\nalice:secret\n",         # no comments
    b"\n",
], ids=["nocolon", "second-line", "blank-line", "trailing-blank", "comment", "only-newline"])
def test_malformed_file(server_bin, auth_file, content):
    path = auth_file(content)
    rc, out, err = run_refused(base(server_bin) + ["-U", "0", "-Y", path])
    assert (rc, out) == (1, b"")
    # no trailing newline in memcached's message
    assert err == (f"Authfile [{path}] has a malformed entry. "
                   "Should be 'user:password'").encode()


def test_udp_refused_with_ascii_auth(server_bin, auth_file):
    port = free_port()
    rc, out, err = run_refused(
        [server_bin, "-p", str(port), "-U", str(port), "-l", "127.0.0.1"] + user_args()
        + ["-Y", auth_file(USERS)])
    assert (rc, out) == (64, b"")
    assert err == b"Cannot use UDP with ascii authentication enabled (-U 0 to disable)\n"


@pytest.mark.parametrize("proto", ["binary", "auto"])
def test_binary_protocol_refused_with_ascii_auth(server_bin, auth_file, proto):
    rc, out, err = run_refused(base(server_bin) + ["-U", "0", "-Y", auth_file(USERS),
                                                   "-B", proto])
    assert (rc, out) == (64, b"")
    assert err == (b"ERROR: You cannot allow the BINARY protocol while using "
                   b"ascii authentication tokens.\n")


def test_protocol_checked_before_the_file(server_bin):
    """-B binary is refused before the file is even opened."""
    rc, out, err = run_refused(base(server_bin) + ["-U", "0", "-Y", "/nonexistent/auth",
                                                   "-B", "binary"])
    assert (rc, out) == (64, b"")
    assert err == (b"ERROR: You cannot allow the BINARY protocol while using "
                   b"ascii authentication tokens.\n")


# ---------------------------------------------------------------------------
# SIGHUP reloads the file


def rewrite(path, content):
    with open(path, "wb") as f:
        f.write(content)


def test_sighup_reloads_file(auth_server):
    port, path = auth_server.port, auth_server.auth_path
    with connect(port) as kept:
        assert login(kept) == b"STORED\r\n"

        rewrite(path, b"zoe:newpass\n")
        auth_server.proc.send_signal(signal.SIGHUP)
        # reloaded on the server's next clock tick (about a second)
        assert wait_for(lambda: fresh_login(port, b"zoe", b"newpass") == b"STORED\r\n",
                        timeout=5)
        assert fresh_login(port, b"alice", b"secret") == FAILURE
        assert fresh_login(port, b"bob", b"hunter2") == FAILURE
        # a connection that logged in before stays in
        assert command(kept, b"version\r\n") == b"VERSION 1.6.18\r\n"

        # a reload that fails keeps the entries loaded before
        rewrite(path, b"garbage\n")
        auth_server.proc.send_signal(signal.SIGHUP)
        time.sleep(2.5)
        assert auth_server.proc.poll() is None
        assert fresh_login(port, b"zoe", b"newpass") == b"STORED\r\n"

        os.unlink(path)
        auth_server.proc.send_signal(signal.SIGHUP)
        time.sleep(2.5)
        assert auth_server.proc.poll() is None
        assert fresh_login(port, b"zoe", b"newpass") == b"STORED\r\n"
        assert command(kept, b"version\r\n") == b"VERSION 1.6.18\r\n"
        rewrite(path, b"")  # for the fixture's clean-up


def test_sighup_without_auth_file_is_harmless(server):
    server.proc.send_signal(signal.SIGHUP)
    time.sleep(1.5)
    assert server.proc.poll() is None
    with connect(server.port) as s:
        assert command(s, b"version\r\n") == b"VERSION 1.6.18\r\n"

//! End-to-end tests: the built binary on 127.0.0.1, raw protocol bytes.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    port: u16,
    /// Where the server's standard error goes.
    stderr: std::path::PathBuf,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut args = vec![
            "-l".to_string(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
        ];
        // The server refuses root without -u, as memcached does.
        // SAFETY-free check: /proc tells the effective uid.
        if is_root() {
            args.extend(["-u".into(), "nobody".into()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let stderr = std::env::temp_dir().join(format!("rmemcached-test-{port}.err"));
        let child = Command::new(env!("CARGO_BIN_EXE_rmemcached"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("spawn rmemcached");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        Server {
            child,
            port,
            stderr,
        }
    }

    /// What the server has written to standard error so far.
    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.stderr);
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        .unwrap_or(false)
}

/// Reads until the reply ends with `end`.
fn read_until(s: &mut TcpStream, end: &[u8]) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    while !buf.ends_with(end) {
        let n = s.read(&mut chunk).expect("read");
        assert!(n > 0, "EOF after {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    }
    buf
}

fn roundtrip(s: &mut TcpStream, req: &[u8], end: &[u8]) -> Vec<u8> {
    s.write_all(req).unwrap();
    read_until(s, end)
}

#[test]
fn request_reply_table() {
    let srv = Server::start(&[]);
    let mut c = srv.connect();
    let table: &[(&[u8], &[u8])] = &[
        (b"get nothing\r\n", b"END\r\n"),
        (b"set a 7 0 5\r\nhello\r\n", b"STORED\r\n"),
        (b"get a\r\n", b"VALUE a 7 5\r\nhello\r\nEND\r\n"),
        (b"add a 0 0 1\r\nx\r\n", b"NOT_STORED\r\n"),
        (b"replace zz 0 0 1\r\nx\r\n", b"NOT_STORED\r\n"),
        (b"append a 0 0 1\r\n!\r\n", b"STORED\r\n"),
        (b"prepend a 0 0 1\r\n>\r\n", b"STORED\r\n"),
        (
            b"get a zz a\r\n",
            b"VALUE a 7 7\r\n>hello!\r\nVALUE a 7 7\r\n>hello!\r\nEND\r\n",
        ),
        (b"set n 0 0 2\r\n99\r\n", b"STORED\r\n"),
        (b"incr n 1\r\n", b"100\r\n"),
        (b"decr n 1\r\n", b"99\r\n"),
        (b"get n\r\n", b"VALUE n 0 3\r\n99 \r\nEND\r\n"),
        (b"decr n 1000\r\n", b"0\r\n"),
        (b"set w 0 0 20\r\n18446744073709551615\r\n", b"STORED\r\n"),
        (b"incr w 2\r\n", b"1\r\n"),
        (
            b"incr a 1\r\n",
            b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
        ),
        (
            b"incr n -1\r\n",
            b"CLIENT_ERROR invalid numeric delta argument\r\n",
        ),
        (b"touch a 100\r\n", b"TOUCHED\r\n"),
        (b"touch zz 100\r\n", b"NOT_FOUND\r\n"),
        (b"delete a 0\r\n", b"DELETED\r\n"),
        (b"delete a\r\n", b"NOT_FOUND\r\n"),
        (
            b"delete a 5\r\n",
            b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n",
        ),
        (b"set x 0 -1 1\r\nx\r\n", b"STORED\r\n"),
        (b"get x\r\n", b"END\r\n"),
        (
            b"set y 0 0 1 noreply\r\ny\r\nget y\r\n",
            b"VALUE y 0 1\r\ny\r\nEND\r\n",
        ),
        (
            b"set z 0 0 1\r\nzz\r\n",
            b"CLIENT_ERROR bad data chunk\r\nERROR\r\n",
        ),
        (b"cas y 0 0 1 999\r\nq\r\n", b"EXISTS\r\n"),
        (b"cas nope 0 0 1 1\r\nq\r\n", b"NOT_FOUND\r\n"),
        (b"GET y\r\n", b"ERROR\r\n"),
        (b"get\r\n", b"ERROR\r\n"),
        (
            b"flush_all abc\r\n",
            b"CLIENT_ERROR invalid exptime argument\r\n",
        ),
        (b"verbosity\r\n", b"ERROR\r\n"),
        (b"verbosity 1\r\n", b"OK\r\n"),
        (b"version\r\n", b"VERSION 1.6.18\r\n"),
        (b"flush_all\r\n", b"OK\r\n"),
        (b"get y\r\n", b"END\r\n"),
        (b"shutdown\r\n", b"ERROR: shutdown not enabled\r\n"),
    ];
    for (req, want) in table {
        let got = roundtrip(&mut c, req, want);
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(want),
            "request {:?}",
            String::from_utf8_lossy(req)
        );
    }
}

#[test]
fn gets_then_cas_round_trip() {
    let srv = Server::start(&[]);
    let mut c = srv.connect();
    roundtrip(&mut c, b"set k 0 0 1\r\na\r\n", b"STORED\r\n");
    let got = roundtrip(&mut c, b"gets k\r\n", b"END\r\n");
    let line = String::from_utf8(got).unwrap();
    let cas: u64 = line
        .lines()
        .next()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let req = format!("cas k 0 0 1 {cas}\r\nb\r\n");
    assert_eq!(roundtrip(&mut c, req.as_bytes(), b"\r\n"), b"STORED\r\n");
    assert_eq!(roundtrip(&mut c, req.as_bytes(), b"\r\n"), b"EXISTS\r\n");
    assert_eq!(
        roundtrip(&mut c, b"get k\r\n", b"END\r\n"),
        b"VALUE k 0 1\r\nb\r\nEND\r\n"
    );
}

#[test]
fn pipelined_and_one_byte_per_packet_give_the_same_replies() {
    let srv = Server::start(&[]);
    let stream: &[u8] =
        b"set p 0 0 3\r\nabc\r\nget p\r\nincr p 1\r\nset q 1 0 0\r\n\r\nget q p\r\ndelete p\r\n";
    let want: &[u8] = b"STORED\r\nVALUE p 0 3\r\nabc\r\nEND\r\nCLIENT_ERROR cannot increment or decrement non-numeric value\r\nSTORED\r\nVALUE q 1 0\r\n\r\nVALUE p 0 3\r\nabc\r\nEND\r\nDELETED\r\n";
    let mut whole = srv.connect();
    assert_eq!(roundtrip(&mut whole, stream, b"DELETED\r\n"), want);
    let mut bytewise = srv.connect();
    for b in stream {
        bytewise.write_all(std::slice::from_ref(b)).unwrap();
        std::thread::sleep(Duration::from_micros(200));
    }
    assert_eq!(read_until(&mut bytewise, b"DELETED\r\n"), want);
}

#[test]
fn large_values_span_chunks_and_too_large_is_swallowed() {
    let srv = Server::start(&[]);
    let mut c = srv.connect();
    let value: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut req = format!("set big 0 0 {}\r\n", value.len()).into_bytes();
    req.extend_from_slice(&value);
    req.extend_from_slice(b"\r\n");
    assert_eq!(roundtrip(&mut c, &req, b"\r\n"), b"STORED\r\n");
    let got = roundtrip(&mut c, b"get big\r\n", b"END\r\n");
    let header = b"VALUE big 0 1000000\r\n";
    assert_eq!(&got[..header.len()], header);
    assert_eq!(&got[header.len()..header.len() + value.len()], &value[..]);
    // One byte over memcached's limit for this key: refused, value
    // swallowed, and the connection stays in sync.
    let limit = 1024 * 1024 - 56 - 3 - 1 - 2;
    let mut req = format!("set big 0 0 {}\r\n", limit + 1).into_bytes();
    req.resize(req.len() + limit + 1, b'v');
    req.extend_from_slice(b"\r\nget big\r\n");
    assert_eq!(
        roundtrip(&mut c, &req, b"END\r\n"),
        b"SERVER_ERROR object too large for cache\r\nEND\r\n"
    );
    let mut req = format!("set big 0 0 {limit}\r\n").into_bytes();
    req.resize(req.len() + limit, b'v');
    req.extend_from_slice(b"\r\n");
    assert_eq!(roundtrip(&mut c, &req, b"\r\n"), b"STORED\r\n");
}

#[test]
fn reply_stays_intact_when_item_is_overwritten_before_it_is_sent() {
    let srv = Server::start(&[]);
    let mut writer = srv.connect();
    let value = vec![b'A'; 900_000];
    let mut req = format!("set k 0 0 {}\r\n", value.len()).into_bytes();
    req.extend_from_slice(&value);
    req.extend_from_slice(b"\r\n");
    assert_eq!(roundtrip(&mut writer, &req, b"\r\n"), b"STORED\r\n");
    // The reader asks several times but does not read yet: the replies
    // cannot all fit in the socket buffers, so items stay pinned.
    let mut reader = srv.connect();
    reader.write_all(b"get k\r\nget k\r\nget k\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let mut req = format!("set k 0 0 {}\r\n", value.len()).into_bytes();
    req.resize(req.len() + value.len(), b'B');
    req.extend_from_slice(b"\r\n");
    assert_eq!(roundtrip(&mut writer, &req, b"\r\n"), b"STORED\r\n");
    assert_eq!(
        roundtrip(&mut writer, b"delete k\r\n", b"\r\n"),
        b"DELETED\r\n"
    );
    let mut all = Vec::new();
    while all.iter().filter(|&&b| b == b'E').count() < 3 || !all.ends_with(b"END\r\n") {
        let mut chunk = [0u8; 65536];
        let n = reader.read(&mut chunk).unwrap();
        assert!(n > 0);
        all.extend_from_slice(&chunk[..n]);
    }
    let one = [&b"VALUE k 0 900000\r\n"[..], &value, b"\r\nEND\r\n"].concat();
    assert_eq!(all, [one.clone(), one.clone(), one].concat());
}

#[test]
fn a_client_that_never_reads_does_not_stall_others() {
    let srv = Server::start(&[]);
    let mut setter = srv.connect();
    let value = vec![b'x'; 100_000];
    let mut req = format!("set v 0 0 {}\r\n", value.len()).into_bytes();
    req.extend_from_slice(&value);
    req.extend_from_slice(b"\r\n");
    assert_eq!(roundtrip(&mut setter, &req, b"\r\n"), b"STORED\r\n");
    // A hostile client pipelines gets and never reads the replies.
    let mut hog = srv.connect();
    hog.set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let burst = b"get v\r\n".repeat(1000);
    let mut sent_total = 0usize;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match hog.write(&burst) {
            Ok(n) => sent_total += n,
            Err(_) => break, // its buffers are full: the server stopped reading
        }
    }
    // The server stopped reading long before 5 s of gets were sent...
    assert!(sent_total < 50_000_000, "server kept reading: {sent_total}");
    // ...and everyone else is still served (a stalled server would fail
    // the read at the socket's timeout).
    let mut other = srv.connect();
    assert_eq!(
        roundtrip(&mut other, b"version\r\n", b"\r\n"),
        b"VERSION 1.6.18\r\n"
    );
    // The server's memory did not grow with the hog's backlog.
    let status = std::fs::read_to_string(format!("/proc/{}/status", srv.child.id())).unwrap();
    let rss_kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap();
    assert!(rss_kb < 64 * 1024, "RSS grew to {rss_kb} kB");
}

#[test]
fn over_long_line_closes_and_multiget_key_too_long_drops_batch() {
    let srv = Server::start(&[]);
    let mut c = srv.connect();
    c.write_all(&[b'x'; 3000]).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(c.read(&mut buf).unwrap(), 0, "connection should be closed");
    let mut c = srv.connect();
    roundtrip(&mut c, b"set a 0 0 1\r\n1\r\n", b"STORED\r\n");
    let long = "k".repeat(251);
    let req = format!("get a\r\nget a {long}\r\nversion\r\n");
    assert_eq!(
        roundtrip(&mut c, req.as_bytes(), b"VERSION 1.6.18\r\n"),
        b"CLIENT_ERROR bad command line format\r\nVERSION 1.6.18\r\n"
    );
}

#[test]
fn connection_limit_rejects_with_memcached_message() {
    // -c 30 with 4 "threads": memcached admits 30 - 7 - 4 * 4 - 1 (one
    // listener) clients and refuses the next.
    let srv = Server::start(&["-c", "30"]);
    let mut held = Vec::new();
    let rejected = loop {
        let mut c = srv.connect();
        c.write_all(b"version\r\n").unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 64];
        loop {
            let n = c.read(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.ends_with(b"\r\n") {
                break;
            }
        }
        if buf == b"ERROR Too many open connections\r\n" {
            break held.len();
        }
        assert_eq!(buf, b"VERSION 1.6.18\r\n");
        held.push(c);
        assert!(held.len() < 30);
    };
    assert_eq!(rejected, 30 - 7 - 4 * 4 - 1);
}

#[test]
fn without_maxconns_fast_a_full_server_pauses_accepting() {
    full_server_pauses_accepting("no_maxconns_fast");
}

/// The same through io_uring's multishot accept, which has to be
/// cancelled when the server fills and armed again when a slot frees.
#[cfg(feature = "io-uring")]
#[test]
fn without_maxconns_fast_a_full_server_pauses_accepting_on_io_uring() {
    full_server_pauses_accepting("no_maxconns_fast,io_uring");
}

fn full_server_pauses_accepting(options: &str) {
    let srv = Server::start(&["-c", "30", "-o", options]);
    // A kernel that refuses io_uring would leave this on epoll.
    assert!(!srv.stderr().contains("falling back"), "{}", srv.stderr());
    // memcached's limit admits 30 - 7 - 4 * 4 - 1 clients.
    let mut held: Vec<TcpStream> = (0..6)
        .map(|_| {
            let mut c = srv.connect();
            assert_eq!(
                roundtrip(&mut c, b"version\r\n", b"\r\n"),
                b"VERSION 1.6.18\r\n"
            );
            c
        })
        .collect();
    // The next client is left in the backlog: no reply, no rejection.
    let mut waiting = srv.connect();
    waiting.write_all(b"version\r\n").unwrap();
    waiting
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(waiting.read(&mut buf).is_err(), "served while full");
    // A slot frees, the server closing a client that quits (on io_uring
    // the slot is freed once the kernel holds nothing of it): the
    // waiting client is taken in and answered.
    let mut quitting = held.pop().unwrap();
    quitting.write_all(b"quit\r\n").unwrap();
    assert_eq!(quitting.read(&mut buf).unwrap(), 0);
    waiting
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(read_until(&mut waiting, b"\r\n"), b"VERSION 1.6.18\r\n");
    let stats = roundtrip(&mut held[0], b"stats\r\n", b"END\r\n");
    let stats = String::from_utf8(stats).unwrap();
    // Paused when the seventh client came, and again once it filled the
    // freed slot.
    assert!(stats.contains("STAT listen_disabled_num 2\r\n"), "{stats}");
    assert!(stats.contains("STAT accepting_conns 0\r\n"), "{stats}");
    assert!(stats.contains("STAT rejected_connections 0\r\n"));
    // Two slots free (three clients go; the one that waited holds a
    // slot): accepting goes on for the next two clients.
    drop(held.pop());
    drop(held.pop());
    drop(held.pop());
    let mut next = srv.connect();
    assert_eq!(
        roundtrip(&mut next, b"version\r\n", b"\r\n"),
        b"VERSION 1.6.18\r\n"
    );
    let mut last = srv.connect();
    assert_eq!(
        roundtrip(&mut last, b"version\r\n", b"\r\n"),
        b"VERSION 1.6.18\r\n"
    );
}

/// A binary request: header, extras, key, value.
fn bin_request(opcode: u8, extras: &[u8], key: &[u8], value: &[u8], opaque: u32) -> Vec<u8> {
    let body = extras.len() + key.len() + value.len();
    let mut p = vec![0x80, opcode];
    p.extend_from_slice(&(key.len() as u16).to_be_bytes());
    p.push(extras.len() as u8);
    p.extend_from_slice(&[0, 0, 0]);
    p.extend_from_slice(&(body as u32).to_be_bytes());
    p.extend_from_slice(&opaque.to_be_bytes());
    p.extend_from_slice(&[0; 8]);
    p.extend_from_slice(extras);
    p.extend_from_slice(key);
    p.extend_from_slice(value);
    p
}

#[test]
fn binary_values_of_every_length_are_read_exactly_when_pipelined() {
    // Values are read straight into items; each must end at its declared
    // length, so the next packet in the same write is parsed intact.
    let srv = Server::start(&[]);
    let mut s = srv.connect();
    for len in [0usize, 1, 2, 3, 100, 941, 942, 943, 2000, 5000] {
        let value = vec![b'v'; len];
        let mut req = bin_request(0x11, &[0, 0, 0, 7, 0, 0, 0, 0], b"k", &value, 1);
        req.extend(bin_request(0x00, &[], b"k", &[], 2));
        s.write_all(&req).unwrap();
        let mut hdr = [0u8; 24];
        s.read_exact(&mut hdr).unwrap();
        assert_eq!(&hdr[..2], &[0x81, 0x00], "len {len}");
        assert_eq!(&hdr[6..8], &[0, 0], "status, len {len}");
        assert_eq!(&hdr[12..16], &2u32.to_be_bytes());
        let body = u32::from_be_bytes(hdr[8..12].try_into().unwrap()) as usize;
        assert_eq!(body, 4 + len, "len {len}");
        let mut rest = vec![0u8; body];
        s.read_exact(&mut rest).unwrap();
        assert_eq!(&rest[..4], &7u32.to_be_bytes());
        assert_eq!(&rest[4..], &value[..]);
    }
}

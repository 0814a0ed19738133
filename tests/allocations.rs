//! The hot path allocates nothing per request: the server runs in this
//! process on its own thread, under an allocator that counts the
//! allocations made on that thread, while a client sends gets and sets in
//! the text, meta and binary protocols.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rmemcached::config::{self, Parsed};
use rmemcached::server;

/// Counts allocations made on threads that asked to be counted.
struct Counting;

static COUNTED: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static COUNT_HERE: Cell<bool> = const { Cell::new(false) };
}

fn note() {
    if COUNT_HERE.with(Cell::get) {
        COUNTED.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counting touches only an atomic and a const-initialised thread local,
// neither of which allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Starts a server on a free port in a thread of this process.
fn start(extra: &[&str]) -> (u16, Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut args: Vec<String> = ["-l", "127.0.0.1", "-p", &port.to_string(), "-U", "0"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    let Ok(Parsed::Run(cfg)) = config::parse("rmemcached", &args) else {
        panic!("arguments refused");
    };
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let handle = std::thread::spawn(move || {
        COUNT_HERE.with(|c| c.set(true));
        let bound = server::bind(&cfg).expect("bind");
        let mut srv = server::Server::new(*cfg, bound).expect("server");
        srv.run(&|| flag.load(Ordering::Relaxed)).expect("run");
    });
    for _ in 0..500 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    (port, stop, handle)
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Sends `req` and reads exactly `reply_len` bytes back.
fn round_trip(s: &mut TcpStream, req: &[u8], reply_len: usize) -> Vec<u8> {
    s.write_all(req).unwrap();
    let mut buf = vec![0u8; reply_len];
    s.read_exact(&mut buf).unwrap();
    buf
}

/// A request and the exact reply it must get.
type Exchange<'a> = (&'a [u8], &'a [u8]);

/// Allocations the server thread made while `requests` ran `rounds` times
/// over 20 connections, after `setup` ran once and one warm-up round (which
/// may size buffers) ran.
fn allocations_for(setup: &[Exchange], requests: &[Exchange], rounds: usize) -> usize {
    let (port, stop, handle) = start(&[]);
    let mut conns: Vec<TcpStream> = (0..20).map(|_| connect(port)).collect();
    let exchange = |c: &mut TcpStream, (req, reply): &Exchange| {
        assert_eq!(
            round_trip(c, req, reply.len()),
            *reply,
            "reply to {:?}",
            String::from_utf8_lossy(req)
        );
    };
    // On a connection of its own: the first byte of a connection picks
    // its protocol.
    let mut first = connect(port);
    for x in setup {
        exchange(&mut first, x);
    }
    drop(first);
    let run = |conns: &mut Vec<TcpStream>| {
        for c in conns.iter_mut() {
            for x in requests {
                exchange(c, x);
            }
        }
    };
    run(&mut conns);
    let before = COUNTED.load(Ordering::Relaxed);
    for _ in 0..rounds {
        run(&mut conns);
    }
    let made = COUNTED.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    drop(conns);
    // Wake the loop so that it sees the stop flag.
    let _ = TcpStream::connect(("127.0.0.1", port));
    handle.join().unwrap();
    made
}

/// 20 connections x 50 rounds x each request: the test allows one
/// allocation per 20 requests, room for what a loop turn may still make (a
/// connection's buffers growing, the clock's second tick) but not for one
/// per request.
const ROUNDS: usize = 50;

// get "k": magic, opcode 0, key length 1, no extras, body length 1.
const BINARY_GET: &[u8] = &[
    0x80, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, b'k',
];
// Success with 4 bytes of extras (the flags, 5) and the value; CAS 1, that
// of the only store.
const BINARY_HIT: &[u8] = &[
    0x81, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 1, 0, 0, 0, 5, b'a', b'b', b'c',
];

/// Per protocol: what is stored first, then the requests measured.
const CASES: &[(&str, &[Exchange], &[Exchange])] = &[
    (
        "text",
        &[],
        &[
            (b"set k 5 0 3\r\nabc\r\n", b"STORED\r\n"),
            (b"get k\r\n", b"VALUE k 5 3\r\nabc\r\nEND\r\n"),
            (b"get nope\r\n", b"END\r\n"),
            (b"incr n 1\r\n", b"NOT_FOUND\r\n"),
            (b"delete nope\r\n", b"NOT_FOUND\r\n"),
        ],
    ),
    (
        "meta",
        &[(b"set m 7 0 2\r\nhi\r\n", b"STORED\r\n")],
        &[
            (b"mg m v f k Oab\r\n", b"VA 2 f7 km Oab\r\nhi\r\n"),
            (b"mg nope v Oab\r\n", b"EN Oab\r\n"),
            (b"md nope q\r\nmn\r\n", b"NF\r\nMN\r\n"),
            (b"ma nope\r\n", b"NF\r\n"),
            (b"ms s 2 T0 Oab k\r\nhi\r\n", b"HD Oab ks\r\n"),
            (b"ms s 2 q\r\nhi\r\nmn\r\n", b"MN\r\n"),
        ],
    ),
    (
        "binary",
        &[(b"set k 5 0 3\r\nabc\r\n", b"STORED\r\n")],
        &[(BINARY_GET, BINARY_HIT)],
    ),
];

#[test]
fn text_meta_and_binary_requests_allocate_nothing_per_request() {
    for (protocol, setup, requests) in CASES {
        let total = 20 * ROUNDS * requests.len();
        let made = allocations_for(setup, requests, ROUNDS);
        assert!(
            made * 20 < total,
            "{protocol}: {made} allocations for {total} requests on the server thread"
        );
    }
}

//! Thin, safe wrappers over the process and socket calls std lacks.
//!
//! This is the I/O layer's system side: listening sockets with a chosen
//! backlog, fork/setsid, user switching, signal flags, resource limits.
//! Each `unsafe` block has its reason next to it; nothing here knows about
//! memcached.

use std::ffi::CString;
use std::io;
use std::net::SocketAddr;
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set by SIGTERM, SIGINT and SIGUSR1; the event loop polls it every turn.
static STOP: AtomicBool = AtomicBool::new(false);
/// Set by SIGUSR1, memcached's graceful stop.
static GRACEFUL: AtomicBool = AtomicBool::new(false);
/// Set by SIGHUP: reload the `-Y` password file.
static HUP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_hup(_sig: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    HUP.store(true, Ordering::SeqCst);
}

/// Whether SIGHUP arrived since the last call.
pub fn take_hup() -> bool {
    HUP.swap(false, Ordering::SeqCst)
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

extern "C" fn on_stop_signal(sig: libc::c_int) {
    // Only atomic stores: async-signal-safe.
    if sig == libc::SIGUSR1 {
        GRACEFUL.store(true, Ordering::SeqCst);
    }
    STOP.store(true, Ordering::SeqCst);
}

/// Whether the stop was SIGUSR1's graceful one.
pub fn graceful_stop() -> bool {
    GRACEFUL.load(Ordering::SeqCst)
}

/// Whether a stop signal arrived.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// SIGTERM/SIGINT/SIGUSR1 request a clean stop; SIGPIPE is ignored
/// (writes report EPIPE instead); SIGHUP asks for the `-Y` file to be
/// reloaded, as memcached does.
pub fn install_signal_handlers() -> io::Result<()> {
    let handler = on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    for (sig, action) in [
        (libc::SIGTERM, handler),
        (libc::SIGINT, handler),
        (libc::SIGUSR1, handler),
        (libc::SIGPIPE, libc::SIG_IGN),
        (
            libc::SIGHUP,
            on_hup as extern "C" fn(libc::c_int) as libc::sighandler_t,
        ),
    ] {
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask"
        // value; the handler only performs an atomic store.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = action;
            libc::sigemptyset(&mut sa.sa_mask);
            check(libc::sigaction(sig, &sa, std::ptr::null_mut()))?;
        }
    }
    Ok(())
}

/// A non-blocking listening TCP socket with `SO_REUSEADDR`, IPv6 sockets
/// restricted to IPv6, and the given backlog (std's `bind` picks its own).
pub fn listen_tcp(addr: SocketAddr, backlog: i32) -> io::Result<std::net::TcpListener> {
    let domain = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket(2) call; the result is checked.
    let fd = check(unsafe {
        libc::socket(
            domain,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })?;
    // SAFETY: `fd` is a fresh socket this function owns; wrapping it at
    // once closes it on every error path below.
    let listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    let setopt = |level, name| {
        // SAFETY: `one` outlives the call and its size is passed.
        check(unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                &one as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        })
    };
    setopt(libc::SOL_SOCKET, libc::SO_REUSEADDR)?;
    if addr.is_ipv6() {
        setopt(libc::IPPROTO_IPV6, libc::IPV6_V6ONLY)?;
    }
    // SAFETY: sockaddr_storage is large enough for either family and
    // zeroed is a valid starting value; the length passed matches the
    // family written.
    let ret = unsafe {
        let mut ss: libc::sockaddr_storage = std::mem::zeroed();
        let len = match addr {
            SocketAddr::V4(a) => {
                let sin = &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in);
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = a.port().to_be();
                sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
                std::mem::size_of::<libc::sockaddr_in>()
            }
            SocketAddr::V6(a) => {
                let sin6 = &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in6);
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = a.port().to_be();
                sin6.sin6_addr.s6_addr = a.ip().octets();
                sin6.sin6_scope_id = a.scope_id();
                std::mem::size_of::<libc::sockaddr_in6>()
            }
        };
        libc::bind(
            fd,
            &ss as *const _ as *const libc::sockaddr,
            len as libc::socklen_t,
        )
    };
    check(ret)?;
    // SAFETY: plain listen(2) on the socket bound above.
    check(unsafe { libc::listen(fd, backlog) })?;
    Ok(listener)
}

/// Whether the process runs with root privileges.
/// Binds a unix stream socket at `path` with permissions `mask`, as
/// memcached does: a stale socket file is removed first, and the process
/// umask is narrowed around bind(2) so the file is created with `mask`.
pub fn listen_unix(
    path: &str,
    mask: u32,
    backlog: i32,
) -> io::Result<std::os::unix::net::UnixListener> {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_socket() {
            let _ = std::fs::remove_file(path);
        }
    }
    // SAFETY: umask(2) only swaps the process mask; start-up is single
    // threaded, and the old mask is restored right after bind.
    let old = unsafe { libc::umask(!(mask & 0o777) as libc::mode_t) };
    let bound = std::os::unix::net::UnixListener::bind(path);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let listener = bound?;
    use std::os::fd::AsRawFd;
    // SAFETY: plain listen(2) on the socket bound above, to set memcached's
    // backlog (std's bind listens with its own).
    check(unsafe { libc::listen(listener.as_raw_fd(), backlog) })?;
    Ok(listener)
}

pub fn is_root() -> bool {
    // SAFETY: getuid/geteuid cannot fail.
    unsafe { libc::getuid() == 0 || libc::geteuid() == 0 }
}

/// User and group ids of `name`, if the user exists.
pub fn lookup_user(name: &str) -> Option<(libc::uid_t, libc::gid_t)> {
    let cname = CString::new(name).ok()?;
    // SAFETY: getpwnam returns a pointer to static storage or null; it is
    // read at once, before any other call could overwrite it.
    unsafe {
        let pw = libc::getpwnam(cname.as_ptr());
        if pw.is_null() {
            None
        } else {
            Some(((*pw).pw_uid, (*pw).pw_gid))
        }
    }
}

/// Drops supplementary groups, then takes `gid` and `uid`.
pub fn switch_user(uid: libc::uid_t, gid: libc::gid_t) -> io::Result<()> {
    // SAFETY: plain credential syscalls; results are checked.
    unsafe {
        check(libc::setgroups(0, std::ptr::null()))?;
        check(libc::setgid(gid))?;
        check(libc::setuid(uid))?;
    }
    Ok(())
}

/// Detaches like memcached's `daemonize`: fork (the parent exits 0),
/// setsid, chdir to /, and standard streams to /dev/null.
pub fn daemonize() -> io::Result<()> {
    // SAFETY: the process is single-threaded at this point, so fork is
    // safe; the parent leaves with _exit, running no destructors twice.
    unsafe {
        match check(libc::fork())? {
            0 => {}
            _ => libc::_exit(0),
        }
        check(libc::setsid())?;
        let root = CString::new("/").expect("no NUL");
        check(libc::chdir(root.as_ptr()))?;
        let null = CString::new("/dev/null").expect("no NUL");
        let fd = check(libc::open(null.as_ptr(), libc::O_RDWR))?;
        for std_fd in 0..3 {
            check(libc::dup2(fd, std_fd))?;
        }
        if fd > 2 {
            libc::close(fd);
        }
    }
    Ok(())
}

/// Raises the open-file limit to at least `want` where permitted.
pub fn raise_nofile(want: u64) -> io::Result<()> {
    // SAFETY: getrlimit/setrlimit with a valid rlimit struct.
    unsafe {
        let mut rl: libc::rlimit = std::mem::zeroed();
        check(libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl))?;
        if rl.rlim_cur < want {
            rl.rlim_cur = want;
            if rl.rlim_max < want {
                rl.rlim_max = want;
            }
            check(libc::setrlimit(libc::RLIMIT_NOFILE, &rl))?;
        }
    }
    Ok(())
}

/// Raises the core file limit to its maximum (`-r`).
pub fn enable_coredumps() -> io::Result<()> {
    // SAFETY: getrlimit/setrlimit with a valid rlimit struct.
    unsafe {
        let mut rl: libc::rlimit = std::mem::zeroed();
        check(libc::getrlimit(libc::RLIMIT_CORE, &mut rl))?;
        rl.rlim_cur = rl.rlim_max;
        check(libc::setrlimit(libc::RLIMIT_CORE, &rl))?;
    }
    Ok(())
}

/// Locks current and future memory (`-k`).
pub fn lock_memory() -> io::Result<()> {
    // SAFETY: plain mlockall(2).
    check(unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) }).map(|_| ())
}

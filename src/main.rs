//! `rmemcached`: command line → configuration → server, as memcached starts.

use std::process::ExitCode;

use rmemcached::config::{self, Parsed};
use rmemcached::{server, sys};

/// memcached's exit codes for start-up failures (sysexits.h).
const EX_NOUSER: u8 = 67;
const EX_OSERR: u8 = 71;

fn fail(code: u8, msg: &str) -> ExitCode {
    eprintln!("{msg}");
    ExitCode::from(code)
}

fn main() -> ExitCode {
    let mut argv = std::env::args();
    let prog = argv.next().unwrap_or_else(|| "rmemcached".to_owned());
    let args: Vec<String> = argv.collect();
    let mut cfg = match config::parse(&prog, &args) {
        Ok(Parsed::Run(cfg)) => *cfg,
        Ok(Parsed::Print(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(config::Refused(msg, code)) => return fail(code as u8, &msg),
    };

    // The environment can pick the io_uring backend too, so that a whole
    // deployment (or test suite) switches without touching command lines.
    if std::env::var_os("RMEMCACHED_IO_URING").is_some_and(|v| v == "1") {
        if !cfg!(feature = "io-uring") {
            return fail(
                1,
                "rmemcached: RMEMCACHED_IO_URING=1 needs a build with --features io-uring",
            );
        }
        cfg.io_uring = true;
    }
    // memcached's SASL start-up needs a configuration to find.
    if cfg.sasl && !rmemcached::auth::sasl_config_exists() {
        return fail(1, "Error initializing sasl.");
    }
    if cfg.coredumps {
        if let Err(e) = sys::enable_coredumps() {
            eprintln!("failed to ensure corefile creation: {e}");
        }
    }
    // Room for every connection plus memcached's reserved descriptors; a
    // hard limit that allows only what memcached asks for (-c itself) is
    // enough to start, as it is for memcached.
    let nofile = sys::raise_nofile(cfg.maxconns as u64 + 32)
        .or_else(|_| sys::raise_nofile(cfg.maxconns as u64));
    if let Err(e) = nofile {
        eprintln!("failed to set rlimit for open files. Try starting as root or requesting smaller maxconns value: {e}");
        return ExitCode::from(EX_OSERR);
    }

    let user = if sys::is_root() {
        let Some(name) = cfg.user.as_deref().filter(|u| !u.is_empty()) else {
            return fail(64, "can't run as root without the -u switch");
        };
        let Some(ids) = sys::lookup_user(name) else {
            return fail(
                EX_NOUSER,
                &format!("can't find the user {name} to switch to"),
            );
        };
        Some((name.to_owned(), ids))
    } else {
        None
    };

    if let Some((name, (uid, gid))) = user {
        if sys::switch_user(uid, gid).is_err() {
            return fail(
                EX_OSERR,
                &format!("failed to assume identity of user {name}"),
            );
        }
    }

    // Read with the dropped privileges, as memcached does.
    if let Some(path) = &cfg.auth_file {
        match rmemcached::auth::Passwords::load_strict(path) {
            Ok(p) => cfg.auth = Some(p),
            Err(e) => {
                // memcached prints the malformed-file message without a
                // newline.
                eprint!("{e}");
                if e.starts_with("Could not open") {
                    eprintln!();
                }
                return ExitCode::from(1);
            }
        }
    }

    // memcached detaches before it binds: with -d the parent exits 0 even
    // when the port turns out to be taken.
    if cfg.daemonize {
        if let Err(e) = sys::daemonize() {
            return fail(
                EX_OSERR,
                &format!("failed to daemon() in order to daemonize: {e}"),
            );
        }
    }
    if let Err(e) = sys::install_signal_handlers() {
        return fail(EX_OSERR, &format!("failed to install signal handlers: {e}"));
    }
    if cfg.lock_memory {
        if let Err(e) = sys::lock_memory() {
            eprintln!("warning: -k invalid, mlockall() failed: {e}");
        }
    }

    let listeners = match server::bind(&cfg) {
        Ok(l) => l,
        Err(e) => return fail(EX_OSERR, &e),
    };

    let pidfile = cfg.pidfile.clone();
    if let Some(path) = &pidfile {
        if let Err(e) = std::fs::write(path, format!("{}\n", std::process::id())) {
            eprintln!("Could not open the pid file {path} for writing: {e}");
        }
    }

    let verbose = cfg.verbose;
    let daemonized = cfg.daemonize;
    let unix_socket = cfg.unix_socket.clone();
    let result = server::Server::new(cfg, listeners).and_then(|mut s| s.run(&sys::stop_requested));

    let graceful = matches!(result, Ok(Some(rmemcached::conn::Shutdown::Graceful)));
    if graceful || sys::graceful_stop() {
        eprintln!("Gracefully stopping");
    } else if verbose > 0 && result.is_ok() {
        eprintln!("Exiting normally");
    }
    // Like memcached, only a daemon removes its pid file.
    if let Some(path) = pidfile.as_ref().filter(|_| daemonized) {
        if let Err(e) = std::fs::remove_file(path) {
            if verbose > 0 {
                eprintln!("Could not remove the pid file {path}: {e}");
            }
        }
    }
    if let Some(path) = &unix_socket {
        let _ = std::fs::remove_file(path);
    }
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => fail(EX_OSERR, &format!("event loop failed: {e}")),
    }
}

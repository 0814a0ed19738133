//! Password files: SASL PLAIN (`-S`, file named by `MEMCACHED_SASL_PWDB`)
//! and ASCII authentication (`-Y <file>`), both `user:password` lines.

/// memcached reads at most this many users from a `-Y` file.
pub const AUTH_FILE_MAX_ENTRIES: usize = 8;

/// Users and passwords of a password file.
#[derive(Debug, Clone, Default)]
pub struct Passwords {
    entries: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Passwords {
    /// Parses `user:password` lines; lines without a colon are skipped.
    pub fn parse(text: &[u8]) -> Passwords {
        let entries = lines(text)
            .filter_map(|l| {
                let colon = memchr::memchr(b':', l)?;
                Some((l[..colon].to_vec(), l[colon + 1..].to_vec()))
            })
            .collect();
        Passwords { entries }
    }

    pub fn load(path: &str) -> std::io::Result<Passwords> {
        Ok(Passwords::parse(&std::fs::read(path)?))
    }

    /// Loads `-Y`'s file as memcached does: every line (a blank one too)
    /// must be `user:password`, and only the first
    /// [`AUTH_FILE_MAX_ENTRIES`] count.
    pub fn load_strict(path: &str) -> Result<Passwords, String> {
        let text = std::fs::read(path).map_err(|e| {
            // strerror's text, as memcached prints it (twice).
            let e = e.to_string();
            let e = e.split(" (os error").next().unwrap_or_default();
            format!("Could not open authfile [{path}] for reading, error {e}: {e}")
        })?;
        let body = text.strip_suffix(b"\n").unwrap_or(&text);
        let malformed = !text.is_empty()
            && body
                .split(|&b| b == b'\n')
                .any(|l| memchr::memchr(b':', l).is_none());
        if malformed {
            return Err(format!(
                "Authfile [{path}] has a malformed entry. Should be 'user:password'"
            ));
        }
        let mut p = Passwords::parse(&text);
        p.entries.truncate(AUTH_FILE_MAX_ENTRIES);
        Ok(p)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `user` has password `pass`.
    pub fn check(&self, user: &[u8], pass: &[u8]) -> bool {
        self.entries.iter().any(|(u, p)| u == user && p == pass)
    }
}

/// Whether a SASL configuration is where memcached looks for one:
/// `$SASL_CONF_PATH`, `/etc/sasl/memcached.conf` or
/// `/etc/sasl2/memcached.conf`.  memcached refuses to start without one.
pub fn sasl_config_exists() -> bool {
    let from_env =
        std::env::var_os("SASL_CONF_PATH").is_some_and(|p| std::path::Path::new(&p).exists());
    from_env
        || ["/etc/sasl/memcached.conf", "/etc/sasl2/memcached.conf"]
            .iter()
            .any(|p| std::path::Path::new(p).exists())
}

/// Non-empty lines, without their line endings.
fn lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    text.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.is_empty())
}

/// Checks a SASL PLAIN message (`authzid NUL authcid NUL password`)
/// against the file `MEMCACHED_SASL_PWDB` names, read afresh so that edits
/// take effect without a restart.
pub fn check_plain(data: &[u8]) -> bool {
    let mut parts = data.split(|&b| b == 0);
    let (Some(_authzid), Some(user), Some(pass), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let Ok(path) = std::env::var("MEMCACHED_SASL_PWDB") else {
        return false;
    };
    Passwords::load(&path).is_ok_and(|p| p.check(user, pass))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_user_password_lines() {
        let p = Passwords::parse(b"alice:s3cret\r\nbob:pa:ss\nnocolon\n");
        assert!(p.check(b"alice", b"s3cret"));
        assert!(p.check(b"bob", b"pa:ss"));
        assert!(!p.check(b"alice", b"wrong"));
        assert!(!p.check(b"nocolon", b""));
    }
}

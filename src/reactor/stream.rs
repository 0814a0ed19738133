//! Byte streams a connection can run over: TCP, unix sockets, and one UDP
//! datagram at a time.
//!
//! A datagram "stream" reads the payload of the datagram being served and
//! collects whatever is written into a buffer; the server frames and sends
//! that buffer once the request is done.  So connection code serves all
//! transports with one state machine.

use std::io::{self, IoSlice, Read, Write};

use mio::net::{TcpStream, UnixStream};

/// One request datagram's payload in, reply bytes out.
#[derive(Debug, Default)]
pub struct Datagram {
    pub input: Vec<u8>,
    pub pos: usize,
    pub output: Vec<u8>,
}

/// A connection's transport.
#[derive(Debug)]
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    Datagram(Datagram),
    /// A TCP or unix socket served by the io_uring backend.
    #[cfg(feature = "io-uring")]
    Uring(super::uring::UringIo),
}

impl Stream {
    /// Moves an accepted socket onto the io_uring backend.
    #[cfg(feature = "io-uring")]
    pub fn into_uring(self) -> Stream {
        use super::uring::{Socket, UringIo};
        use std::os::fd::{FromRawFd, IntoRawFd};
        match self {
            // SAFETY: `into_raw_fd` gives up the only owner of the
            // descriptor, which the std stream takes over.
            Stream::Tcp(s) => Stream::Uring(UringIo::new(Socket::Tcp(unsafe {
                std::net::TcpStream::from_raw_fd(s.into_raw_fd())
            }))),
            // SAFETY: as above.
            Stream::Unix(s) => Stream::Uring(UringIo::new(Socket::Unix(unsafe {
                std::os::unix::net::UnixStream::from_raw_fd(s.into_raw_fd())
            }))),
            other => other,
        }
    }

    /// The descriptor `stats conns` and `-vv` name (-1 for datagrams, which
    /// share the server's UDP socket).
    pub fn fd(&self) -> i32 {
        use std::os::fd::AsRawFd;
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
            Stream::Datagram(_) => -1,
            #[cfg(feature = "io-uring")]
            Stream::Uring(u) => u.fd(),
        }
    }

    /// `(peer, local)` as `stats conns` prints them.
    pub fn addrs(&self) -> (String, Option<String>) {
        match self {
            Stream::Tcp(s) => (
                tcp_text(s.peer_addr().ok()),
                Some(tcp_text(s.local_addr().ok())),
            ),
            Stream::Unix(s) => (unix_text(s.local_addr().ok()), None),
            Stream::Datagram(_) => ("udp".to_owned(), None),
            #[cfg(feature = "io-uring")]
            Stream::Uring(u) => match &u.socket {
                super::uring::Socket::Tcp(s) => (
                    tcp_text(s.peer_addr().ok()),
                    Some(tcp_text(s.local_addr().ok())),
                ),
                super::uring::Socket::Unix(s) => (unix_text(s.local_addr().ok()), None),
            },
        }
    }

    /// Starts readiness reports for the stream.
    pub fn register(&mut self, registry: &mio::Registry, token: mio::Token) -> io::Result<()> {
        let both = mio::Interest::READABLE | mio::Interest::WRITABLE;
        match self {
            Stream::Tcp(s) => registry.register(s, token, both),
            Stream::Unix(s) => registry.register(s, token, both),
            Stream::Datagram(_) => Ok(()),
            #[cfg(feature = "io-uring")]
            Stream::Uring(_) => Ok(()),
        }
    }

    /// Stops readiness reports for the stream.
    pub fn deregister(&mut self, registry: &mio::Registry) {
        let _ = match self {
            Stream::Tcp(s) => registry.deregister(s),
            Stream::Unix(s) => registry.deregister(s),
            Stream::Datagram(_) => Ok(()),
            #[cfg(feature = "io-uring")]
            Stream::Uring(_) => Ok(()),
        };
    }
}

/// A listening socket.
#[derive(Debug)]
pub enum Listener {
    Tcp(mio::net::TcpListener),
    Unix(mio::net::UnixListener),
}

impl Listener {
    /// Accepts one connection, with Nagle off for TCP.
    pub fn accept(&self) -> io::Result<Stream> {
        match self {
            Listener::Tcp(l) => {
                let (s, _) = l.accept()?;
                let _ = s.set_nodelay(true);
                Ok(Stream::Tcp(s))
            }
            Listener::Unix(l) => Ok(Stream::Unix(l.accept()?.0)),
        }
    }

    /// Takes over a connection the ring accepted on this listener, with
    /// Nagle off for TCP as `accept` does.
    #[cfg(feature = "io-uring")]
    pub fn adopt(&self, fd: std::os::fd::OwnedFd) -> Stream {
        match self {
            Listener::Tcp(_) => {
                let s = std::net::TcpStream::from(fd);
                let _ = s.set_nodelay(true);
                Stream::Tcp(mio::net::TcpStream::from_std(s))
            }
            Listener::Unix(_) => Stream::Unix(mio::net::UnixStream::from_std(
                std::os::unix::net::UnixStream::from(fd),
            )),
        }
    }

    pub fn fd(&self) -> i32 {
        use std::os::fd::AsRawFd;
        match self {
            Listener::Tcp(l) => l.as_raw_fd(),
            Listener::Unix(l) => l.as_raw_fd(),
        }
    }

    /// The address `stats conns` prints for the listener.
    pub fn local_text(&self) -> String {
        match self {
            Listener::Tcp(l) => tcp_text(l.local_addr().ok()),
            Listener::Unix(l) => unix_text(l.local_addr().ok()),
        }
    }

    /// The TCP address, if a TCP listener.
    pub fn tcp_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            Listener::Tcp(l) => l.local_addr().ok(),
            Listener::Unix(_) => None,
        }
    }

    pub fn register(&mut self, registry: &mio::Registry, token: mio::Token) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => registry.register(l, token, mio::Interest::READABLE),
            Listener::Unix(l) => registry.register(l, token, mio::Interest::READABLE),
        }
    }
}

/// memcached's `unix:` address text.
fn unix_text(a: Option<std::os::unix::net::SocketAddr>) -> String {
    let path = a
        .and_then(|a| a.as_pathname().map(|p| p.display().to_string()))
        .unwrap_or_default();
    format!("unix:{path}")
}

/// memcached's `tcp:` / `tcp6:` address text.
pub fn tcp_text(a: Option<std::net::SocketAddr>) -> String {
    match a {
        Some(std::net::SocketAddr::V4(a)) => format!("tcp:{}:{}", a.ip(), a.port()),
        Some(std::net::SocketAddr::V6(a)) => format!("tcp6:[{}]:{}", a.ip(), a.port()),
        None => "<closed>".to_owned(),
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
            #[cfg(feature = "io-uring")]
            Stream::Uring(u) => u.read(buf),
            Stream::Datagram(d) => {
                if d.pos == d.input.len() {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(super::io::take_buffered(&d.input, &mut d.pos, buf))
            }
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
            #[cfg(feature = "io-uring")]
            Stream::Uring(u) => u.write(buf),
            Stream::Datagram(d) => {
                d.output.extend_from_slice(buf);
                Ok(buf.len())
            }
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write_vectored(bufs),
            Stream::Unix(s) => s.write_vectored(bufs),
            #[cfg(feature = "io-uring")]
            Stream::Uring(u) => u.write_vectored(bufs),
            Stream::Datagram(d) => {
                let mut n = 0;
                for b in bufs {
                    d.output.extend_from_slice(b);
                    n += b.len();
                }
                Ok(n)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagram_reads_its_payload_then_would_block() {
        let mut s = Stream::Datagram(Datagram {
            input: b"get a\r\n".to_vec(),
            ..Datagram::default()
        });
        let mut buf = [0u8; 4];
        assert_eq!(s.read(&mut buf).unwrap(), 4);
        assert_eq!(s.read(&mut buf).unwrap(), 3);
        assert_eq!(
            s.read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        let n = s
            .write_vectored(&[IoSlice::new(b"EN"), IoSlice::new(b"D\r\n")])
            .unwrap();
        assert_eq!(n, 5);
        let Stream::Datagram(d) = s else { panic!() };
        assert_eq!(d.output, b"END\r\n");
    }
}

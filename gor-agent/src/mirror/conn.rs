//! Staging connections: connecting with loop prevention, and the per-target pool of idle
//! keep-alive connections that lanes hand over to each other.
//!
//! Loop prevention: the agent captures traffic by port, so the mirror's own connections
//! would be captured and mirrored again. Each connection therefore binds its local port
//! first and reports it to a [`PortExclusion`] before connecting; the port is withdrawn
//! when the connection is dropped, whatever the reason.
//!
//! For `https://` targets the TLS handshake follows the TCP connect, under the same port
//! exclusion; a failed handshake is a failed connect.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;

use super::tls::TlsTarget;

/// Receives the mirror's own connections (local port, staging address) before they
/// open and after they close, so capture can skip them.
pub trait PortExclusion: Send + Sync {
    fn add(&self, local_port: u16, remote: SocketAddr);
    fn remove(&self, local_port: u16, remote: SocketAddr);
}

/// Withdraws an excluded connection on drop.
struct PortGuard {
    port: u16,
    remote: SocketAddr,
    exclusion: Option<Arc<dyn PortExclusion>>,
}

impl Drop for PortGuard {
    fn drop(&mut self) {
        if let Some(ex) = &self.exclusion {
            ex.remove(self.port, self.remote);
        }
    }
}

/// An open connection to staging; dropping it closes the socket, then frees the port.
pub(crate) struct StagingConn {
    // Field order matters: the stream is closed before the port guard withdraws the port.
    pub stream: Stream,
    _port: PortGuard,
}

impl StagingConn {
    /// False if staging closed the connection (or sent unsolicited bytes) while it was
    /// idle. Uses readiness already known to tokio, so it never blocks. With TLS the
    /// socket under it is probed: on an idle keep-alive connection any byte (a
    /// close_notify alert or stray data) or EOF means it cannot be reused, and a
    /// connection found dead is dropped, so consuming the probed byte does no harm.
    fn looks_alive(&self) -> bool {
        let mut probe = [0u8; 1];
        let tcp = self.tcp();
        matches!(tcp.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Before waiting for a pipelined response: takes what has already arrived into
    /// `buf`, and if nothing has, acknowledges what was received at once rather than when
    /// the delayed-ACK timer fires (40 ms here). A staging server that writes each
    /// response on its own under Nagle's algorithm holds the next one back until the
    /// previous one is acknowledged, and with no request to carry the acknowledgement,
    /// every batch would wait 40 ms. (Over TLS the socket cannot be read past rustls, so
    /// the acknowledgement is always sent.)
    pub fn take_ready_or_ack(&self, buf: &mut BytesMut) {
        if let Stream::Plain(s) = &self.stream {
            buf.reserve(8 * 1024);
            match s.try_read_buf(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // Data, or the end (which the response reader then meets again).
                _ => return,
            }
        }
        let one: libc::c_int = 1;
        // SAFETY: setsockopt on a socket we own, reading an int of the given size. A
        // failure only leaves the delayed acknowledgement in place.
        unsafe {
            libc::setsockopt(
                self.tcp().as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_QUICKACK,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }

    fn tcp(&self) -> &TcpStream {
        match &self.stream {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref().0,
        }
    }
}

/// A staging connection's byte stream: plain TCP, or TLS over TCP.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}

/// Why a staging connection could not be opened: the two are told apart in the results
/// (and counted together as connect errors).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("connect failed: {0}")]
    Tcp(#[source] io::Error),
    #[error("TLS handshake failed: {0}")]
    Tls(#[source] io::Error),
}

/// Resolves `addr` (`host:port`), binds a local port of the same family, excludes it,
/// then connects, and with `tls` does the handshake.
pub(crate) async fn connect(
    addr: &str,
    tls: Option<&TlsTarget>,
    exclusion: Option<&Arc<dyn PortExclusion>>,
) -> Result<StagingConn, ConnectError> {
    let (stream, guard) = connect_tcp(addr, exclusion)
        .await
        .map_err(ConnectError::Tcp)?;
    let stream = match tls {
        None => Stream::Plain(stream),
        Some(tls) => Stream::Tls(Box::new(
            tls.handshake(stream).await.map_err(ConnectError::Tls)?,
        )),
    };
    Ok(StagingConn {
        stream,
        _port: guard,
    })
}

/// The TCP part of [`connect`]; the guard withdraws the port when dropped.
async fn connect_tcp(
    addr: &str,
    exclusion: Option<&Arc<dyn PortExclusion>>,
) -> io::Result<(TcpStream, PortGuard)> {
    let remote = resolve(addr).await?;
    let (socket, local_ip) = match remote {
        SocketAddr::V4(_) => (TcpSocket::new_v4()?, IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        SocketAddr::V6(_) => (TcpSocket::new_v6()?, IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
    };
    socket.bind(SocketAddr::new(local_ip, 0))?;
    let port = socket.local_addr()?.port();
    if let Some(ex) = exclusion {
        ex.add(port, remote);
    }
    // From here on the guard withdraws the port, also when the connect fails.
    let guard = PortGuard {
        port,
        remote,
        exclusion: exclusion.cloned(),
    };
    let stream = socket.connect(remote).await?;
    // Requests are written whole; Nagle would only delay the last segment.
    stream.set_nodelay(true)?;
    Ok((stream, guard))
}

async fn resolve(addr: &str) -> io::Result<SocketAddr> {
    // Literal addresses skip the resolver (a blocking-pool round trip).
    if let Ok(sa) = addr.parse::<SocketAddr>() {
        return Ok(sa);
    }
    tokio::net::lookup_host(addr)
        .await?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{addr}: no address")))
}

/// How long an idle connection stays pooled: below common server keep-alive timeouts
/// (e.g. 5 s in Node.js), so staging rarely closes one under us.
pub(crate) const POOL_MAX_IDLE: Duration = Duration::from_secs(4);

/// Idle keep-alive connections of one target. A connection is only opened when this pool
/// is empty, so the connections open never exceed the lanes allowed to run (`workers`).
pub(crate) struct Pool {
    idle: Mutex<VecDeque<(StagingConn, Instant)>>,
    cap: usize,
}

impl Pool {
    pub fn new(cap: usize) -> Self {
        Pool {
            idle: Mutex::new(VecDeque::new()),
            cap,
        }
    }

    /// The most recently used live connection, discarding stale ones on the way.
    pub fn take(&self) -> Option<StagingConn> {
        let mut idle = self.lock();
        while let Some((conn, since)) = idle.pop_back() {
            if since.elapsed() < POOL_MAX_IDLE && conn.looks_alive() {
                return Some(conn);
            }
        }
        None
    }

    pub fn put(&self, conn: StagingConn) {
        let mut idle = self.lock();
        idle.push_back((conn, Instant::now()));
        while idle.len() > self.cap {
            idle.pop_front();
        }
    }

    /// Closes connections idle for too long (called periodically).
    pub fn prune(&self) {
        let mut idle = self.lock();
        idle.retain(|(_, since)| since.elapsed() < POOL_MAX_IDLE);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(StagingConn, Instant)>> {
        // A panic while holding this lock cannot leave the deque inconsistent.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

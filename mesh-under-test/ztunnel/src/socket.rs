//! The proxy's two socket-level I/O boundaries, injectable so the proxy core runs on loopback in
//! tests: reading a redirected connection's original destination (`SO_ORIGINAL_DST`), and
//! opening upstream sockets marked 1337 so the harness's iptables `REDIRECT` rule skips them.

use std::io;
use std::mem::{MaybeUninit, size_of};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// The mark on every socket the proxy opens (0x539); iptables rules match `! --mark 0x539/0xfff`.
pub const PROXY_MARK: u32 = 1337;

/// Finds where a redirected client meant to connect.
pub trait OriginalDst: Send + Sync + 'static {
    /// `local` is the client socket's own address, which the caller already has.
    fn original_dst(&self, client: &TcpStream, local: SocketAddr) -> io::Result<SocketAddr>;
}

/// Opens the sockets for upstream connections and health checks.
pub trait SocketFactory: Send + Sync + 'static {
    fn tcp_socket(&self, dst: SocketAddr) -> io::Result<TcpSocket>;
}

/// The kernel's record of the pre-`REDIRECT` destination.
#[derive(Debug, Clone, Copy, Default)]
pub struct SoOriginalDst;

impl OriginalDst for SoOriginalDst {
    fn original_dst(&self, client: &TcpStream, local: SocketAddr) -> io::Result<SocketAddr> {
        let fd = client.as_raw_fd();
        match local {
            SocketAddr::V4(_) => original_dst_v4(fd),
            SocketAddr::V6(_) => original_dst_v6(fd),
        }
    }
}

/// Any function, for tests: `|client| Ok(vip)`.
impl<F> OriginalDst for F
where
    F: Fn(&TcpStream) -> io::Result<SocketAddr> + Send + Sync + 'static,
{
    fn original_dst(&self, client: &TcpStream, _local: SocketAddr) -> io::Result<SocketAddr> {
        self(client)
    }
}

fn getsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<T> {
    let mut value = MaybeUninit::<T>::zeroed();
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` is a writable buffer of `len` bytes that outlives the call; the kernel
    // writes at most `len` bytes, and a zeroed T is valid for the plain C structs used here.
    let rc = unsafe { libc::getsockopt(fd, level, name, value.as_mut_ptr().cast(), &mut len) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: zero-initialised above and possibly overwritten by the kernel: initialised.
    Ok(unsafe { value.assume_init() })
}

fn original_dst_v4(fd: RawFd) -> io::Result<SocketAddr> {
    let addr: libc::sockaddr_in = getsockopt(fd, libc::SOL_IP, libc::SO_ORIGINAL_DST)?;
    let ip = Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr));
    Ok(SocketAddr::V4(SocketAddrV4::new(
        ip,
        u16::from_be(addr.sin_port),
    )))
}

fn original_dst_v6(fd: RawFd) -> io::Result<SocketAddr> {
    let addr: libc::sockaddr_in6 = getsockopt(fd, libc::SOL_IPV6, libc::IP6T_SO_ORIGINAL_DST)?;
    let ip = Ipv6Addr::from(addr.sin6_addr.s6_addr);
    Ok(SocketAddr::V6(SocketAddrV6::new(
        ip,
        u16::from_be(addr.sin6_port),
        0,
        0,
    )))
}

fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: passes a pointer to a live c_int and its exact size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

pub fn set_mark(fd: RawFd, mark: u32) -> io::Result<()> {
    setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_MARK, mark as libc::c_int)
}

/// TCP_NODELAY on a listener: Linux copies it to every accepted socket, which saves a
/// setsockopt(2) per connection.
pub fn set_listener_nodelay(listener: &TcpListener) -> io::Result<()> {
    setsockopt_int(
        listener.as_raw_fd(),
        libc::IPPROTO_TCP,
        libc::TCP_NODELAY,
        1,
    )
}

fn new_socket(dst: SocketAddr) -> io::Result<TcpSocket> {
    match dst {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
}

/// Sockets marked `mark` (needs CAP_NET_ADMIN): what the real proxy uses.
#[derive(Debug, Clone, Copy)]
pub struct MarkedSockets {
    pub mark: u32,
}

impl Default for MarkedSockets {
    fn default() -> Self {
        Self { mark: PROXY_MARK }
    }
}

impl MarkedSockets {
    /// Fails early, with the fix, when this process may not mark sockets.
    pub fn check(&self) -> io::Result<()> {
        let socket = TcpSocket::new_v4()?;
        set_mark(socket.as_raw_fd(), self.mark).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot set SO_MARK {} on sockets ({e}); run as root or with CAP_NET_ADMIN",
                    self.mark
                ),
            )
        })
    }
}

impl SocketFactory for MarkedSockets {
    fn tcp_socket(&self, dst: SocketAddr) -> io::Result<TcpSocket> {
        let socket = new_socket(dst)?;
        set_mark(socket.as_raw_fd(), self.mark)?;
        Ok(socket)
    }
}

/// Unmarked sockets, for loopback tests without privileges.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainSockets;

impl SocketFactory for PlainSockets {
    fn tcp_socket(&self, dst: SocketAddr) -> io::Result<TcpSocket> {
        new_socket(dst)
    }
}

/// Why a connect to an upstream failed; the text is what the logs show as `error`.
#[derive(Debug)]
pub enum ConnectError {
    Timeout,
    Io(io::Error),
    /// The TCP connect to the destination's ztunnel succeeded (or was not needed), but HBONE
    /// did not: no certificate, TLS refused, or the CONNECT was not answered 200.
    Hbone(Box<crate::ZtunnelError>),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Timeout => f.write_str("connection timeout"),
            ConnectError::Io(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                f.write_str("connection refused")
            }
            ConnectError::Io(e) => write!(f, "{e}"),
            ConnectError::Hbone(e) => write!(f, "{e}"),
        }
    }
}

/// Connects within `timeout`.
pub async fn connect(
    sockets: &dyn SocketFactory,
    dst: SocketAddr,
    timeout: Duration,
) -> Result<TcpStream, ConnectError> {
    let socket = sockets.tcp_socket(dst).map_err(ConnectError::Io)?;
    match tokio::time::timeout(timeout, socket.connect(dst)).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Ok(Err(e)) => Err(ConnectError::Io(e)),
        Err(_) => Err(ConnectError::Timeout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connect_errors_read_like_the_guide() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let free = listener.local_addr().unwrap();
        drop(listener);
        let err = connect(&PlainSockets, free, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "connection refused");
        assert_eq!(ConnectError::Timeout.to_string(), "connection timeout");
    }

    #[tokio::test]
    async fn original_dst_of_an_unredirected_connection_is_an_error_or_itself() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        // Without a NAT rule the kernel either has no entry or reports the listener itself;
        // both mean "direct connection", which the proxy refuses.
        match SoOriginalDst.original_dst(&server, server.local_addr().unwrap()) {
            Ok(dst) => assert_eq!(dst, addr),
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "{e}"),
        }
    }

    #[tokio::test]
    async fn accepted_sockets_inherit_the_listeners_nodelay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        set_listener_nodelay(&listener).unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        assert!(accepted.nodelay().unwrap());
    }

    #[tokio::test]
    async fn marked_sockets_carry_the_mark_when_permitted() {
        let factory = MarkedSockets::default();
        if let Err(e) = factory.check() {
            // Unprivileged run: the startup check reports it with the fix.
            assert!(e.to_string().contains("CAP_NET_ADMIN"), "{e}");
            return;
        }
        let socket = factory.tcp_socket("127.0.0.1:1".parse().unwrap()).unwrap();
        let mark: libc::c_int =
            getsockopt(socket.as_raw_fd(), libc::SOL_SOCKET, libc::SO_MARK).unwrap();
        assert_eq!(mark as u32, PROXY_MARK);
    }
}

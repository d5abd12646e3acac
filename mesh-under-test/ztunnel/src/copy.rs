//! Copies bytes both ways between the client and the upstream, with half-close, counting bytes
//! even when a side fails (the access log and metrics need them), and keeping the first bytes
//! the upstream sent (the `eject-on-http-5xx` defect looks at them).
//!
//! Each direction starts with a user-space buffer (cheap for the short exchanges of most
//! connections) and, once it has carried `SPLICE_AFTER` bytes, moves the rest with `splice(2)`
//! through a pipe, so bulk transfers never cross into user space.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use tokio::io::Interest;
use tokio::net::TcpStream;

const BUFFER: usize = 16 * 1024;
/// Bytes a direction carries through the buffer before it switches to splice.
const SPLICE_AFTER: u64 = 64 * 1024;
/// Most bytes one splice call moves.
const SPLICE_CHUNK: usize = 1024 * 1024;
/// Enough for `HTTP/1.1 503`.
const HEAD: usize = 16;

/// What a relayed connection carried.
#[derive(Debug, Default)]
pub struct Transfer {
    /// Client -> upstream.
    pub sent: u64,
    /// Upstream -> client.
    pub received: u64,
    /// The first bytes the upstream sent.
    pub upstream_head: Vec<u8>,
    /// The first error of either direction; the other direction is dropped then.
    pub error: Option<io::Error>,
}

impl Transfer {
    /// True when the upstream's answer starts like an HTTP/1.x 5xx status line.
    pub fn upstream_answered_5xx(&self) -> bool {
        let h = &self.upstream_head;
        h.len() >= 10 && h.starts_with(b"HTTP/1.") && h[8] == b' ' && h[9] == b'5'
    }
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// Writes all of `buf` to a stream shared by both directions.
async fn write_all(dst: &TcpStream, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        dst.writable().await?;
        match dst.try_write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if would_block(&e) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn shutdown_write(dst: &TcpStream) -> io::Result<()> {
    // SAFETY: shutdown(2) on a socket we hold open.
    if unsafe { libc::shutdown(dst.as_raw_fd(), libc::SHUT_WR) } == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    // The peer already went away: nothing left to half-close.
    if e.raw_os_error() == Some(libc::ENOTCONN) {
        return Ok(());
    }
    Err(e)
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: splice(2) between descriptors we own; null offsets for sockets and pipes.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptors from pipe2.
    let pair = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // A larger pipe moves more per call; refused above /proc/sys/fs/pipe-max-size, which is
    // only a slower path, not an error.
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        libc::fcntl(
            pair.1.as_raw_fd(),
            libc::F_SETPIPE_SZ,
            SPLICE_CHUNK as libc::c_int,
        );
    }
    Ok(pair)
}

/// One direction: buffered at first, then by splice; passes the half-close on.
async fn pump(
    src: &TcpStream,
    dst: &TcpStream,
    count: &mut u64,
    mut head: Option<&mut Vec<u8>>,
) -> io::Result<()> {
    let mut buf = vec![0u8; BUFFER];
    while *count < SPLICE_AFTER {
        src.readable().await?;
        let n = match src.try_read(&mut buf) {
            Ok(n) => n,
            Err(e) if would_block(&e) => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            // Pass the half-close on: the other side may still answer.
            return shutdown_write(dst);
        }
        if let Some(head) = head.as_deref_mut() {
            let room = HEAD.saturating_sub(head.len()).min(n);
            head.extend_from_slice(&buf[..room]);
        }
        write_all(dst, &buf[..n]).await?;
        *count += n as u64;
    }
    drop(buf);
    let (pipe_read, pipe_write) = pipe()?;
    loop {
        src.readable().await?;
        let n = match src.try_io(Interest::READABLE, || {
            splice(src.as_raw_fd(), pipe_write.as_raw_fd(), SPLICE_CHUNK)
        }) {
            Ok(n) => n,
            Err(e) if would_block(&e) => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return shutdown_write(dst);
        }
        let mut left = n;
        while left > 0 {
            dst.writable().await?;
            match dst.try_io(Interest::WRITABLE, || {
                splice(pipe_read.as_raw_fd(), dst.as_raw_fd(), left)
            }) {
                Ok(m) => {
                    left -= m;
                    *count += m as u64;
                }
                Err(e) if would_block(&e) => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// Relays until both directions end, or either fails.
pub async fn relay(client: TcpStream, upstream: TcpStream) -> Transfer {
    let mut transfer = Transfer::default();
    {
        let to_upstream = pump(&client, &upstream, &mut transfer.sent, None);
        let to_client = pump(
            &upstream,
            &client,
            &mut transfer.received,
            Some(&mut transfer.upstream_head),
        );
        tokio::pin!(to_upstream, to_client);
        let (mut up_done, mut down_done) = (false, false);
        while !(up_done && down_done) {
            let result = tokio::select! {
                r = &mut to_upstream, if !up_done => { up_done = true; r }
                r = &mut to_client, if !down_done => { down_done = true; r }
            };
            if let Err(e) = result {
                transfer.error = Some(e);
                break;
            }
        }
    }
    transfer
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (b, _) = listener.accept().await.unwrap();
        (a, b)
    }

    #[tokio::test]
    async fn relays_both_ways_with_half_close_and_counts() {
        let (mut client, proxy_client_side) = pair().await;
        let (proxy_upstream_side, mut server) = pair().await;
        let relay = tokio::spawn(relay(proxy_client_side, proxy_upstream_side));
        client
            .write_all(b"GET /hostname HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        client.shutdown().await.unwrap();
        let mut request = Vec::new();
        server.read_to_end(&mut request).await.unwrap();
        server
            .write_all(b"HTTP/1.1 503 Service Unavailable\r\n\r\nbusy")
            .await
            .unwrap();
        drop(server);
        let mut response = Vec::new();
        client.read_to_end(&mut response).await.unwrap();
        let transfer = relay.await.unwrap();
        assert_eq!(request, b"GET /hostname HTTP/1.1\r\n\r\n");
        assert_eq!(transfer.sent, request.len() as u64);
        assert_eq!(transfer.received, response.len() as u64);
        assert_eq!(transfer.upstream_head, b"HTTP/1.1 503 Ser");
        assert!(transfer.upstream_answered_5xx());
        assert!(transfer.error.is_none());
    }

    #[tokio::test]
    async fn bulk_transfers_switch_to_splice_and_arrive_whole_both_ways() {
        let (mut client, proxy_client_side) = pair().await;
        let (proxy_upstream_side, mut server) = pair().await;
        let relay = tokio::spawn(relay(proxy_client_side, proxy_upstream_side));
        // Far more than SPLICE_AFTER, with a pattern that shows any loss or reordering.
        let upload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let download: Vec<u8> = (0..5_000_000u32).map(|i| (i % 241) as u8).collect();
        let (up, down) = (upload.clone(), download.clone());
        let server_side = tokio::spawn(async move {
            let (mut r, mut w) = server.split();
            let reading = async {
                let mut got = Vec::new();
                r.read_to_end(&mut got).await.unwrap();
                got
            };
            let writing = async {
                w.write_all(&down).await.unwrap();
                w.shutdown().await.unwrap();
            };
            let (got, ()) = tokio::join!(reading, writing);
            got
        });
        let (mut r, mut w) = client.split();
        let writing = async {
            w.write_all(&up).await.unwrap();
            w.shutdown().await.unwrap();
        };
        let reading = async {
            let mut got = Vec::new();
            r.read_to_end(&mut got).await.unwrap();
            got
        };
        let ((), got) = tokio::join!(writing, reading);
        assert!(got == download, "download corrupted ({} bytes)", got.len());
        assert!(server_side.await.unwrap() == upload, "upload corrupted");
        let transfer = relay.await.unwrap();
        assert_eq!(transfer.sent, upload.len() as u64);
        assert_eq!(transfer.received, download.len() as u64);
        assert!(transfer.error.is_none(), "{:?}", transfer.error);
    }

    #[rstest]
    #[case(b"HTTP/1.1 500 Internal", true)]
    #[case(b"HTTP/1.0 503 x", true)]
    #[case(b"HTTP/1.1 200 OK", false)]
    #[case(b"HTTP/1.1 5", true)]
    #[case(b"HTTP/1.1 ", false)]
    #[case(b"HTTP/2 500", false)]
    #[case(b"in-ambient-abc12", false)]
    fn detects_5xx_status_lines(#[case] head: &[u8], #[case] expected: bool) {
        let t = Transfer {
            upstream_head: head.to_vec(),
            ..Transfer::default()
        };
        assert_eq!(t.upstream_answered_5xx(), expected);
    }
}

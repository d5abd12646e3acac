//! Copies bytes both ways between the client and the upstream, with half-close, counting bytes
//! even when a side fails (the access log and metrics need them), and keeping the first bytes
//! the upstream sent (the `eject-on-http-5xx` defect looks at them).
//!
//! Between two TCP sockets each direction reads into a user-space buffer (cheap for
//! request/response traffic, however long a keep-alive connection lives) and switches to
//! `splice(2)` through a pipe while reads keep filling the buffer, so bulk transfers never cross
//! into user space; see `Mode`. When one side is an HBONE stream, bytes go through the buffer.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use std::future::Future;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::net::tcp::{ReadHalf, WriteHalf};

const BUFFER: usize = 16 * 1024;
/// Back-to-back reads that fill the buffer before a direction switches to splice (64 KiB).
const FULL_READS_TO_SPLICE: u32 = 4;
/// A splice that moves less than this ends the burst: back to the buffer.
const SPLICE_BACK_BELOW: usize = BUFFER / 4;
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

/// Half-closes `dst`; a peer that already went away has nothing left to half-close.
async fn shutdown_write<W: AsyncWrite + Unpin>(dst: &mut W) -> io::Result<()> {
    match dst.shutdown().await {
        Err(e) if e.kind() != io::ErrorKind::NotConnected => Err(e),
        _ => Ok(()),
    }
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

fn new_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
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

/// How a direction moves its bytes. Bulk shows as reads that fill the buffer back to back;
/// request/response traffic as short reads, so the splice pair of syscalls (and its pipe) is
/// only paid where it saves copying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Buffered { full_reads: u32 },
    Splice,
}

impl Mode {
    const START: Mode = Mode::Buffered { full_reads: 0 };

    /// The mode for the next read, after one that moved `n` bytes.
    fn after(self, n: usize) -> Mode {
        match self {
            Mode::Buffered { full_reads } if n >= BUFFER => {
                if full_reads + 1 >= FULL_READS_TO_SPLICE {
                    Mode::Splice
                } else {
                    Mode::Buffered {
                        full_reads: full_reads + 1,
                    }
                }
            }
            Mode::Buffered { .. } => Mode::START,
            Mode::Splice if n < SPLICE_BACK_BELOW => Mode::START,
            Mode::Splice => Mode::Splice,
        }
    }
}

/// Reads what `src` has into `buf` and writes it all to `dst`, counting it and keeping the
/// first bytes in `head`; returns the bytes moved, 0 at end of stream.
async fn move_chunk<R, W>(
    src: &mut R,
    dst: &mut W,
    buf: &mut Vec<u8>,
    count: &mut u64,
    head: Option<&mut Vec<u8>>,
) -> io::Result<usize>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    buf.clear();
    let n = src.read_buf(buf).await?;
    if let Some(head) = head {
        let room = HEAD.saturating_sub(head.len()).min(n);
        head.extend_from_slice(&buf[..room]);
    }
    dst.write_all(&buf[..n]).await?;
    *count += n as u64;
    Ok(n)
}

/// One direction until the source's end of stream, through the buffer only.
async fn buffered_pump<R, W>(
    src: &mut R,
    mut dst: W,
    count: &mut u64,
    mut head: Option<&mut Vec<u8>>,
) -> io::Result<W>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = Vec::with_capacity(BUFFER);
    while move_chunk(src, &mut dst, &mut buf, count, head.as_deref_mut()).await? > 0 {}
    Ok(dst)
}

/// One direction until the source's end of stream. The half-close is the caller's to pass on:
/// it knows whether the other direction still runs.
async fn pump(
    src: &mut ReadHalf<'_>,
    dst: &mut WriteHalf<'_>,
    count: &mut u64,
    mut head: Option<&mut Vec<u8>>,
) -> io::Result<()> {
    // Reads go into spare capacity (no memset per connection). Tokio's read and write take a
    // short read or write as "drained" and skip the EAGAIN call that readable() + try_read
    // would make on every exchange.
    let mut buf = Vec::with_capacity(BUFFER);
    let mut pipe: Option<(OwnedFd, OwnedFd)> = None;
    let mut mode = Mode::START;
    loop {
        let n = match mode {
            Mode::Buffered { .. } => {
                move_chunk(src, dst, &mut buf, count, head.as_deref_mut()).await?
            }
            Mode::Splice => {
                let pipe = match &pipe {
                    Some(pipe) => pipe,
                    None => pipe.insert(new_pipe()?),
                };
                splice_through(src.as_ref(), dst.as_ref(), pipe, count).await?
            }
        };
        if n == 0 {
            return Ok(());
        }
        mode = mode.after(n);
    }
}

/// Moves what `src` has (up to the pipe's size) to `dst` through the pipe, counting bytes as
/// they are written; returns the bytes read, 0 at end of stream.
async fn splice_through(
    src: &TcpStream,
    dst: &TcpStream,
    (pipe_read, pipe_write): &(OwnedFd, OwnedFd),
    count: &mut u64,
) -> io::Result<usize> {
    let n = loop {
        src.readable().await?;
        match src.try_io(Interest::READABLE, || {
            splice(src.as_raw_fd(), pipe_write.as_raw_fd(), SPLICE_CHUNK)
        }) {
            Ok(n) => break n,
            Err(e) if would_block(&e) => continue,
            Err(e) => return Err(e),
        }
    };
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
    Ok(n)
}

/// Runs both directions until both end, or either fails; returns the first failure. Each
/// direction yields its destination when its source ends, and the end is passed on to it; the
/// second to end is passed on only when `shut_down_last` (two TCP sockets need no shutdown(2)
/// there: closing them sends the FIN, but an HBONE stream must send its END_STREAM).
async fn both_ways<U, C>(
    to_upstream: impl Future<Output = io::Result<U>>,
    to_client: impl Future<Output = io::Result<C>>,
    shut_down_last: bool,
) -> Option<io::Error>
where
    U: AsyncWrite + Unpin,
    C: AsyncWrite + Unpin,
{
    tokio::pin!(to_upstream, to_client);
    let (mut up_done, mut down_done) = (false, false);
    while !(up_done && down_done) {
        let result = tokio::select! {
            r = &mut to_upstream, if !up_done => {
                up_done = true;
                pass_end(r, !down_done || shut_down_last).await
            }
            r = &mut to_client, if !down_done => {
                down_done = true;
                pass_end(r, !up_done || shut_down_last).await
            }
        };
        if let Err(e) = result {
            return Some(e);
        }
    }
    None
}

/// Half-closes the destination of a direction that ended, when `shut_down`.
async fn pass_end<W: AsyncWrite + Unpin>(ended: io::Result<W>, shut_down: bool) -> io::Result<()> {
    match ended {
        Ok(mut dst) if shut_down => shutdown_write(&mut dst).await,
        Ok(_) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Relays until both directions end, or either fails. The first direction to end is
/// half-closed; the second needs no shutdown(2): closing both sockets sends its FIN.
pub async fn relay(mut client: TcpStream, mut upstream: TcpStream) -> Transfer {
    let mut transfer = Transfer::default();
    {
        let (mut client_read, mut client_write) = client.split();
        let (mut upstream_read, mut upstream_write) = upstream.split();
        let to_upstream = async {
            pump(
                &mut client_read,
                &mut upstream_write,
                &mut transfer.sent,
                None,
            )
            .await
            .map(|()| upstream_write)
        };
        let to_client = async {
            pump(
                &mut upstream_read,
                &mut client_write,
                &mut transfer.received,
                Some(&mut transfer.upstream_head),
            )
            .await
            .map(|()| client_write)
        };
        transfer.error = both_ways(to_upstream, to_client, false).await;
    }
    transfer
}

/// Relays between any two byte streams (an HBONE stream on one side) until both directions
/// end, or either fails; every end is passed on.
pub async fn relay_streams<C, U>(client: C, upstream: U) -> Transfer
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let mut transfer = Transfer::default();
    {
        let (mut client_read, client_write) = tokio::io::split(client);
        let (mut upstream_read, upstream_write) = tokio::io::split(upstream);
        let to_upstream = buffered_pump(&mut client_read, upstream_write, &mut transfer.sent, None);
        let to_client = buffered_pump(
            &mut upstream_read,
            client_write,
            &mut transfer.received,
            Some(&mut transfer.upstream_head),
        );
        transfer.error = both_ways(to_upstream, to_client, true).await;
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
        // Far more than a few buffers, with a pattern that shows any loss or reordering.
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
    #[case::short_reads_stay_buffered(&[100, 16384, 16384, 16384, 200, 16384], Mode::Buffered { full_reads: 1 })]
    #[case::four_full_reads_splice(&[16384, 16384, 16384, 16384], Mode::Splice)]
    #[case::big_splices_stay(&[16384, 16384, 16384, 16384, 1 << 20, 65536, 4096], Mode::Splice)]
    #[case::a_small_splice_ends_the_burst(&[16384, 16384, 16384, 16384, 65536, 300], Mode::START)]
    fn bulk_switches_to_splice_and_request_response_stays_buffered(
        #[case] reads: &[usize],
        #[case] expected: Mode,
    ) {
        let mode = reads.iter().fold(Mode::START, |mode, &n| mode.after(n));
        assert_eq!(mode, expected);
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

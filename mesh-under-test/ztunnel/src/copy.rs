//! Copies bytes both ways between the client and the upstream, with half-close, counting bytes
//! even when a side fails (the access log and metrics need them), and keeping the first bytes
//! the upstream sent (the `eject-on-http-5xx` defect looks at them).

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

const BUFFER: usize = 16 * 1024;
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

async fn pump<R, W>(
    reader: &mut R,
    writer: &mut W,
    count: &mut u64,
    mut head: Option<&mut Vec<u8>>,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUFFER];
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            // Pass the half-close on: the other side may still answer.
            return writer.shutdown().await;
        }
        if let Some(head) = head.as_deref_mut() {
            let room = HEAD.saturating_sub(head.len()).min(n);
            head.extend_from_slice(&buf[..room]);
        }
        writer.write_all(&buf[..n]).await?;
        *count += n as u64;
    }
}

/// Relays until both directions end, or either fails.
pub async fn relay(client: TcpStream, upstream: TcpStream) -> Transfer {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    let mut transfer = Transfer::default();
    {
        let to_upstream = pump(
            &mut client_read,
            &mut upstream_write,
            &mut transfer.sent,
            None,
        );
        let to_client = pump(
            &mut upstream_read,
            &mut client_write,
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

//! The HBONE client: a pool of HTTP/2 connections over mTLS to other ztunnels, keyed as
//! upstream keys them (destination ztunnel address, our identity, the identity the destination
//! must prove), each carrying up to 100 concurrent CONNECT streams (upstream's default). Callers
//! for one key wait while its connection is being opened rather than open one each; a
//! connection that broke (or stopped answering pings) or is full is replaced, and lives on
//! until its last stream ends. Unlike upstream, an idle connection is not released after 5
//! minutes: it stays pooled while it answers pings.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, Version, header};
use http_body_util::Empty;
use hyper::client::conn::http2;
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use meshcert_model::Identity;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{CONNECTION_WINDOW, FRAME_SIZE, STREAM_WINDOW};
use crate::ZtunnelError;
use crate::config::INBOUND_PORT;
use crate::log::lock;
use crate::picker::XorShift64;
use crate::socket::{ConnectError, SocketFactory, connect};
use crate::tls::{self, CertificateSource, WorkloadCertificate};

/// Upstream's `POOL_MAX_STREAMS_PER_CONNECTION` default.
const MAX_STREAMS_PER_CONNECTION: usize = 100;
/// Bounds the TLS and HTTP/2 handshakes of a new pooled connection (see [`HboneClient::connect`]).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Upstream pings every pooled connection this often and drops it when a ping is not answered
/// in `PING_TIMEOUT`, so a dead peer leaves the pool.
const PING_INTERVAL: Duration = Duration::from_secs(10);
const PING_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PoolKey {
    ztunnel: SocketAddr,
    src: Identity,
    dst: Identity,
}

/// One pooled connection; `streams` counts its open CONNECT streams.
#[derive(Clone)]
struct Tunnel {
    sender: http2::SendRequest<Empty<Bytes>>,
    streams: Arc<AtomicUsize>,
}

impl Tunnel {
    fn usable(&self) -> bool {
        self.sender.is_ready() && self.streams.load(Ordering::SeqCst) < MAX_STREAMS_PER_CONNECTION
    }
}

/// Counts a stream of a tunnel while it is open.
struct OpenStream(Arc<AtomicUsize>);

impl OpenStream {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(Arc::clone(count))
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One proxied connection to carry.
#[derive(Debug, Clone)]
pub struct ConnectRequest<'a> {
    /// The destination workload's address: the CONNECT's `:authority`.
    pub target: SocketAddr,
    /// The identity the destination's ztunnel must prove (the workload's).
    pub identity: Identity,
    /// The client, for the `forwarded` header.
    pub src: SocketAddr,
    /// The service the client asked for, if any, for the `forwarded` header.
    pub service: Option<&'a str>,
    /// The `baggage` header (see [`super::baggage`]).
    pub baggage: String,
}

/// An open CONNECT stream: bytes both ways to the destination workload. It keeps its
/// connection alive until it is dropped.
pub struct HboneStream {
    io: TokioIo<Upgraded>,
    _tunnel: Tunnel,
    _open: OpenStream,
}

impl AsyncRead for HboneStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for HboneStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

type Slot = Arc<tokio::sync::Mutex<Option<Tunnel>>>;

/// The outbound side of HBONE, shared by every data-plane thread.
pub struct HboneClient {
    certs: CertificateSource,
    sockets: Arc<dyn SocketFactory>,
    connect_timeout: Duration,
    port: u16,
    pool: Mutex<HashMap<PoolKey, Slot>>,
}

impl HboneClient {
    /// `connect_timeout` bounds a whole connect: TCP, TLS, HTTP/2 and the CONNECT's answer.
    pub fn new(
        certs: CertificateSource,
        sockets: Arc<dyn SocketFactory>,
        connect_timeout: Duration,
    ) -> Self {
        Self {
            certs,
            sockets,
            connect_timeout,
            port: INBOUND_PORT,
            pool: Mutex::new(HashMap::new()),
        }
    }

    /// Destination ztunnels on another port than 15008 (tests, all on one loopback).
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Where the ztunnel serving the workload at `target` listens for HBONE.
    pub fn ztunnel_addr(&self, target: SocketAddr) -> SocketAddr {
        SocketAddr::new(target.ip(), self.port)
    }

    /// Opens a CONNECT stream to `request.target` through its ztunnel, on a pooled connection.
    /// Fails like a TCP connect: on a timeout, or with the reason HBONE gave. The connect timeout
    /// bounds what a TCP connect to the endpoint stands for (reaching its ztunnel, and the
    /// CONNECT's answer, which waits on the ztunnel's own connect to the pod); the TLS and
    /// HTTP/2 handshakes of a new pooled connection, paid once per peer ztunnel, have their own
    /// bound, so a loaded machine's slow handshake is not taken for a dead endpoint.
    pub async fn connect(&self, request: &ConnectRequest<'_>) -> Result<HboneStream, ConnectError> {
        match self.try_connect(request).await {
            Ok(stream) => Ok(stream),
            Err(ConnectError::Hbone(e)) => Err(ConnectError::Hbone(e)),
            Err(ConnectError::Timeout) => Err(ConnectError::Timeout),
            Err(e) => Err(ConnectError::Hbone(Box::new(ZtunnelError::Hbone {
                peer: self.ztunnel_addr(request.target),
                reason: e.to_string(),
            }))),
        }
    }

    async fn try_connect(&self, request: &ConnectRequest<'_>) -> Result<HboneStream, ConnectError> {
        let hbone = |e: ZtunnelError| ConnectError::Hbone(Box::new(e));
        let cert = tls::current(&self.certs).map_err(hbone)?;
        let key = PoolKey {
            ztunnel: self.ztunnel_addr(request.target),
            src: cert.identity.clone(),
            dst: request.identity.clone(),
        };
        let slot = Arc::clone(lock(&self.pool).entry(key.clone()).or_default());
        let tunnel = self.checkout(&slot, &key, &cert).await?;
        let opened = tokio::time::timeout(self.connect_timeout, open_stream(&tunnel, request));
        match opened.await.map_err(|_| ConnectError::Timeout)? {
            Ok(stream) => Ok(stream),
            Err(reason) => {
                if !tunnel.sender.is_ready() {
                    evict(&slot, &tunnel).await;
                }
                Err(hbone(ZtunnelError::Hbone {
                    peer: key.ztunnel,
                    reason,
                }))
            }
        }
    }

    /// The pooled connection for `key`, opened if there is none that can take a stream.
    async fn checkout(
        &self,
        slot: &Slot,
        key: &PoolKey,
        cert: &WorkloadCertificate,
    ) -> Result<Tunnel, ConnectError> {
        let mut slot = slot.lock().await;
        if let Some(tunnel) = slot.as_ref().filter(|t| t.usable()) {
            return Ok(tunnel.clone());
        }
        let tunnel = self.open_tunnel(key, cert).await?;
        *slot = Some(tunnel.clone());
        Ok(tunnel)
    }

    async fn open_tunnel(
        &self,
        key: &PoolKey,
        cert: &WorkloadCertificate,
    ) -> Result<Tunnel, ConnectError> {
        let failed = |reason: String| {
            ConnectError::Hbone(Box::new(ZtunnelError::Hbone {
                peer: key.ztunnel,
                reason,
            }))
        };
        let config = tls::client_config(cert, key.dst.clone())
            .map_err(|e| ConnectError::Hbone(Box::new(e)))?;
        let tcp = connect(&*self.sockets, key.ztunnel, self.connect_timeout).await?;
        tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(config, tcp))
            .await
            .map_err(|_| {
                failed(format!(
                    "no TLS and HTTP/2 handshake within {HANDSHAKE_TIMEOUT:?}"
                ))
            })?
            .map_err(failed)
    }
}

/// TLS, then HTTP/2 over it: a pooled connection to a peer ztunnel.
async fn handshake(config: rustls::ClientConfig, tcp: TcpStream) -> Result<Tunnel, String> {
    let tls = TlsConnector::from(Arc::new(config))
        .connect(tls::hbone_server_name(), tcp)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let (sender, connection) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(PING_INTERVAL)
        .keep_alive_timeout(PING_TIMEOUT)
        .keep_alive_while_idle(true)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(FRAME_SIZE)
        .initial_max_send_streams(MAX_STREAMS_PER_CONNECTION)
        .handshake(TokioIo::new(tls))
        .await
        .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
    // Ends when the connection breaks or its last sender and stream are gone.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(Tunnel {
        sender,
        streams: Arc::default(),
    })
}

/// Forgets `tunnel` if `slot` still holds it (it broke).
async fn evict(slot: &Slot, tunnel: &Tunnel) {
    let mut slot = slot.lock().await;
    if slot
        .as_ref()
        .is_some_and(|t| Arc::ptr_eq(&t.streams, &tunnel.streams))
    {
        *slot = None;
    }
}

/// Sends the CONNECT and waits for its 200.
async fn open_stream(tunnel: &Tunnel, request: &ConnectRequest<'_>) -> Result<HboneStream, String> {
    let open = OpenStream::new(&tunnel.streams);
    let mut sender = tunnel.sender.clone();
    sender
        .ready()
        .await
        .map_err(|e| format!("connection closed: {e}"))?;
    let connect = connect_request(request).map_err(|e| e.to_string())?;
    let response = sender
        .send_request(connect)
        .await
        .map_err(|e| format!("CONNECT failed: {e}"))?;
    if response.status() != StatusCode::OK {
        return Err(format!("CONNECT answered {}", response.status()));
    }
    let upgraded = hyper::upgrade::on(response)
        .await
        .map_err(|e| format!("CONNECT stream: {e}"))?;
    Ok(HboneStream {
        io: TokioIo::new(upgraded),
        _tunnel: tunnel.clone(),
        _open: open,
    })
}

/// The CONNECT with upstream's headers: `forwarded`, `baggage` and a fresh `traceparent`.
fn connect_request(request: &ConnectRequest<'_>) -> Result<Request<Empty<Bytes>>, http::Error> {
    let forwarded = match request.service {
        Some(host) => format!("for=\"{}\";host={host}", request.src),
        None => format!("for=\"{}\"", request.src),
    };
    Request::builder()
        .method(Method::CONNECT)
        .uri(request.target.to_string())
        .version(Version::HTTP_2)
        .header("baggage", &request.baggage)
        .header(header::FORWARDED, forwarded)
        .header("traceparent", traceparent())
        .body(Empty::new())
}

/// A W3C `traceparent` for a new trace: version 00, random trace and span ids, not sampled.
fn traceparent() -> String {
    let mut rng = XorShift64::from_clock();
    let (trace_high, trace_low, span) = (rng.next_u64(), rng.next_u64(), rng.next_u64());
    format!("00-{trace_high:016x}{trace_low:016x}-{span:016x}-00")
}

//! The HBONE server on 15008: terminates mTLS with the workload certificate (a client
//! certificate is required; its URI SAN is the peer's identity), serves HTTP/2 CONNECT to an
//! address of the workload this ztunnel serves, connects to it with a marked socket, answers
//! 200 and relays; a refused request is answered 400, a failed connect 503, as upstream. Each
//! stream ends with an inbound access line.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::{CONNECTION_WINDOW, FRAME_SIZE, STREAM_WINDOW};
use crate::access::{AccessLine, early_deny};
use crate::copy::{self, Transfer};
use crate::log::{Level, Record};
use crate::model::Model;
use crate::shutdown::Shutdown;
use crate::socket::{SocketFactory, connect};
use crate::state::ProxyState;
use crate::tls::{self, CertificateSource, ServerTls};

/// A client that connects and does not finish its TLS handshake in this time is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Upstream's limit of concurrent streams per inbound connection.
const MAX_STREAMS: u32 = 200;

/// The peer of one HBONE connection.
#[derive(Debug)]
struct Peer {
    addr: SocketAddr,
    /// Our end: `<ip>:15008`.
    local: SocketAddr,
    /// The SPIFFE identity its client certificate names.
    identity: Option<String>,
}

/// The inbound side of HBONE, its I/O boundaries injected.
pub struct Inbound {
    state: Arc<ProxyState>,
    sockets: Arc<dyn SocketFactory>,
    tls: ServerTls,
}

impl Inbound {
    pub fn new(
        state: Arc<ProxyState>,
        sockets: Arc<dyn SocketFactory>,
        certs: CertificateSource,
    ) -> Arc<Self> {
        Arc::new(Self {
            state,
            sockets,
            tls: ServerTls::new(certs),
        })
    }

    /// Accepts until shutdown; each connection runs in its own task.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, mut shutdown: Shutdown) {
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((tcp, addr)) => {
                        let this = Arc::clone(&self);
                        tokio::spawn(this.serve_connection(tcp, addr, shutdown.clone()));
                    }
                    Err(e) => {
                        self.state.log(
                            Record::new(Level::Warn, "inbound", "accept failed")
                                .str("error", e.to_string()),
                        );
                        // Out of file descriptors and the like: give the system a moment.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
                _ = shutdown.wait() => return,
            }
        }
    }

    pub(super) async fn serve_connection(
        self: Arc<Self>,
        tcp: TcpStream,
        addr: SocketAddr,
        mut shutdown: Shutdown,
    ) {
        let Ok(local) = tcp.local_addr() else {
            return;
        };
        let tls = match self.handshake(tcp).await {
            Ok(tls) => tls,
            Err(error) => {
                self.state.log(early_deny(addr, local, "inbound", &error));
                return;
            }
        };
        let peer = Arc::new(Peer {
            addr,
            local,
            identity: tls::peer_identity(tls.get_ref().1.peer_certificates())
                .map(|id| id.to_string()),
        });
        let this = Arc::clone(&self);
        let service = service_fn(move |request| {
            let (this, peer) = (Arc::clone(&this), Arc::clone(&peer));
            async move { Ok::<_, Infallible>(this.serve_connect(request, peer).await) }
        });
        let connection = http2::Builder::new(TokioExecutor::new())
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_frame_size(FRAME_SIZE)
            .max_concurrent_streams(MAX_STREAMS)
            .serve_connection(TokioIo::new(tls), service);
        tokio::pin!(connection);
        tokio::select! {
            _ = connection.as_mut() => return,
            _ = shutdown.wait() => connection.as_mut().graceful_shutdown(),
        }
        let _ = connection.await;
    }

    async fn handshake(&self, tcp: TcpStream) -> Result<TlsStream<TcpStream>, String> {
        let config = self.tls.current().map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, TlsAcceptor::from(config).accept(tcp)).await {
            Ok(Ok(tls)) => Ok(tls),
            Ok(Err(e)) => Err(format!("TLS handshake: {e}")),
            Err(_) => Err("TLS handshake timeout".to_string()),
        }
    }

    /// One CONNECT: connect to the workload, answer, and relay in a task of its own.
    async fn serve_connect(
        self: Arc<Self>,
        mut request: Request<Incoming>,
        peer: Arc<Peer>,
    ) -> Response<Empty<Bytes>> {
        let started = Instant::now();
        let model = self.state.model();
        let target = match connect_target(&request, &model) {
            Ok(target) => target,
            Err(error) => {
                self.state
                    .log(early_deny(peer.addr, peer.local, "inbound", &error));
                return answer(StatusCode::BAD_REQUEST);
            }
        };
        let timeout = self.state.config.connect_timeout;
        let upstream = match connect(&*self.sockets, target, timeout).await {
            Ok(upstream) => upstream,
            Err(e) => {
                let error = e.to_string();
                let transfer = Transfer::default();
                let line = inbound_line(&model, &peer, target, &transfer, Some(&error), started);
                self.state.log(line.record());
                return answer(StatusCode::SERVICE_UNAVAILABLE);
            }
        };
        let on_upgrade = hyper::upgrade::on(&mut request);
        tokio::spawn(async move {
            let (transfer, error) = match on_upgrade.await {
                Ok(stream) => (
                    copy::relay_streams(TokioIo::new(stream), upstream).await,
                    None,
                ),
                Err(e) => (Transfer::default(), Some(format!("CONNECT stream: {e}"))),
            };
            let line = inbound_line(&model, &peer, target, &transfer, error.as_deref(), started);
            self.state.log(line.record());
        });
        answer(StatusCode::OK)
    }
}

fn answer(status: StatusCode) -> Response<Empty<Bytes>> {
    let mut response = Response::new(Empty::new());
    *response.status_mut() = status;
    response
}

/// Where a CONNECT goes: its `:authority`, which must be an address of our own workload.
fn connect_target(request: &Request<Incoming>, model: &Model) -> Result<SocketAddr, String> {
    if request.method() != Method::CONNECT {
        return Err(format!(
            "HBONE requests must be CONNECT, got {}",
            request.method()
        ));
    }
    let authority = request.uri().authority().map(|a| a.as_str()).unwrap_or("");
    let target: SocketAddr = authority
        .parse()
        .map_err(|_| format!("CONNECT to {authority:?}: not an ip:port"))?;
    let Some(own) = &model.proxy.workload else {
        return Err(format!(
            "CONNECT to {target}: this ztunnel's workload {}/{} is not in the config",
            model.proxy.info.namespace, model.proxy.info.name
        ));
    };
    if !own.workload_ips.contains(&target.ip()) {
        return Err(format!(
            "CONNECT to {target}: not an address of {}/{}, the workload this ztunnel serves",
            own.namespace, own.name
        ));
    }
    Ok(target)
}

/// The inbound access line. `transfer` counts from the peer (`sent`) to the workload;
/// upstream's inbound line counts from the workload's side.
fn inbound_line<'a>(
    model: &'a Model,
    peer: &'a Peer,
    target: SocketAddr,
    transfer: &Transfer,
    error: Option<&'a str>,
    started: Instant,
) -> AccessLine<'a> {
    let source = model.workload_at(peer.addr.ip());
    let own = model.proxy.workload.as_ref();
    AccessLine {
        src_addr: Some(peer.addr),
        src_workload: source.map(|w| w.name.as_str()),
        src_namespace: source.map(|w| w.namespace.as_str()),
        src_identity: peer.identity.as_deref(),
        dst_addr: Some(peer.local),
        dst_hbone_addr: Some(target),
        dst_service: own.and_then(|w| service_on_port(model, w, target.port())),
        dst_workload: own.map(|w| w.name.as_str()),
        dst_namespace: own.map(|w| w.namespace.as_str()),
        dst_identity: Some(model.proxy.identity.as_str()),
        direction: "inbound",
        bytes_sent: transfer.received,
        bytes_recv: transfer.sent,
        duration: started.elapsed(),
        error,
    }
}

/// The hostname of a service of `own` whose target port is `port` (upstream's guess of the
/// inbound service when the client does not say).
fn service_on_port<'a>(
    model: &'a Model,
    own: &crate::local_config::LocalWorkload,
    port: u16,
) -> Option<&'a str> {
    model
        .config()
        .services
        .iter()
        .find(|service| {
            let key = format!("{}/{}", service.namespace, service.hostname);
            own.services.get(&key).is_some_and(|ports| {
                service.ports.iter().any(|(service_port, target)| {
                    ports.get(service_port).unwrap_or(target) == &port
                })
            })
        })
        .map(|service| service.hostname.as_str())
}

//! HBONE between reference ztunnels on loopback, with a root and leaves made by rcgen: a client
//! ztunnel (`client-1`, 127.0.0.1) reaches the `echo` service, whose two endpoints `server-a`
//! (127.0.0.2) and `server-b` (127.0.0.3) each have their own ztunnel on one port of their
//! address. Every test runs under one overall bound; the only waits are for an inbound access
//! line, written after its relay ends, and they are bounded in time.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use meshcert_model::Identity;
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, SanType,
};
use rustls::RootCertStore;
use rustls::pki_types::{PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::{ConnectRequest, HboneClient, Inbound};
use crate::config::{self, Config};
use crate::log::{LogFilter, LogFormat, Logger};
use crate::proxy::Outbound;
use crate::reload::build_model;
use crate::shutdown::{self, Shutdown, ShutdownTrigger};
use crate::socket::{ConnectError, PlainSockets};
use crate::state::ProxyState;
use crate::tls::{self, CertificateSource, WorkloadCertificate};

const BOUND: Duration = Duration::from_secs(20);
const VIP: &str = "127.0.1.20:8000";
const CLIENT: &str = "spiffe://cluster.local/ns/httpbin/sa/client-1";
const SERVER_A: &str = "spiffe://cluster.local/ns/httpbin/sa/server-a";

async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(BOUND, f)
        .await
        .expect("the test finished in time")
}

/// A root and the leaves it signs.
struct Pki {
    issuer: Issuer<'static, KeyPair>,
    roots: Arc<RootCertStore>,
}

impl Pki {
    fn new() -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let root = params.self_signed(&key).unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(root.der().clone()).unwrap();
        Self {
            issuer: Issuer::new(params, key),
            roots: Arc::new(roots),
        }
    }

    fn certificate(&self, identity: &str) -> Arc<WorkloadCertificate> {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![SanType::URI(identity.try_into().unwrap())];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let leaf = params.signed_by(&key, &self.issuer).unwrap();
        Arc::new(WorkloadCertificate {
            identity: identity.parse().unwrap(),
            chain: vec![leaf.der().clone()],
            key: PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            roots: Arc::clone(&self.roots),
        })
    }

    fn source(&self, identity: &str) -> CertificateSource {
        watch::channel(Some(self.certificate(identity))).1
    }
}

fn workload(name: &str, ip: &str, echo_port: Option<u16>) -> String {
    let services = match echo_port {
        Some(port) => format!("{{\"httpbin/echo.httpbin.svc.cluster.local\": {{8000: {port}}}}}"),
        None => "{}".to_string(),
    };
    format!(
        "- uid: c1//v1/Pod/httpbin/{name}\n  name: {name}\n  namespace: httpbin\n  \
         serviceAccount: {name}\n  workloadIps: [\"{ip}\"]\n  protocol: HBONE\n  \
         services: {services}\n"
    )
}

fn topology(port_a: u16, port_b: u16) -> String {
    let ip = VIP.split(':').next().unwrap();
    format!(
        "workloads:\n{}{}{}services:\n- name: echo\n  namespace: httpbin\n  \
         hostname: echo.httpbin.svc.cluster.local\n  vips: [\"/{ip}\"]\n  ports: {{8000: 8080}}\n",
        workload("client-1", "127.0.0.1", None),
        workload("server-a", "127.0.0.2", Some(port_a)),
        workload("server-b", "127.0.0.3", Some(port_b)),
    )
}

/// The state of the ztunnel serving `name`, its logs captured.
fn state(text: &str, name: &str) -> Arc<ProxyState> {
    let vars: HashMap<&str, String> = HashMap::from([
        (config::LOCAL_XDS_PATH, "hbone-test.yaml".to_string()),
        (config::PROXY_MODE, "dedicated".to_string()),
        (
            config::PROXY_WORKLOAD_INFO,
            format!("httpbin/{name}/{name}"),
        ),
        (config::FAKE_CA, "true".to_string()),
        (config::XDS_ADDRESS, String::new()),
    ]);
    let config = Config::from_lookup(|k| vars.get(k).cloned()).unwrap();
    let model = build_model(
        text,
        "hbone-test.yaml",
        &config.workload_info,
        &config.defects,
    )
    .unwrap();
    let logger = Logger::capture(LogFormat::Text, LogFilter::default());
    ProxyState::new(config, model, logger)
}

/// An app that answers its name, then echoes what it read, then closes.
async fn echo(ip: &str, name: &'static str) -> u16 {
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let _ = stream.read_to_end(&mut request).await;
                let _ = stream.write_all(name.as_bytes()).await;
                let _ = stream.write_all(&request).await;
            });
        }
    });
    port
}

/// A port on `ip` where nothing listens.
async fn closed_port(ip: &str) -> u16 {
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    listener.local_addr().unwrap().port()
}

/// Serves HBONE on `listener` for `state` until shutdown; counts the TCP connections accepted.
fn serve_inbound(
    state: &Arc<ProxyState>,
    certs: CertificateSource,
    listener: TcpListener,
    mut shutdown: Shutdown,
) -> Arc<AtomicUsize> {
    let inbound = Inbound::new(Arc::clone(state), Arc::new(PlainSockets), certs);
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                Ok((tcp, addr)) = listener.accept() => {
                    count.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(Arc::clone(&inbound).serve_connection(tcp, addr, shutdown.clone()));
                }
                _ = shutdown.wait() => return,
            }
        }
    });
    accepted
}

struct Mesh {
    pki: Pki,
    client: Arc<ProxyState>,
    outbound: Outbound,
    listener: TcpListener,
    /// The port every server ztunnel listens on, each on its own address.
    hbone_port: u16,
    servers: [Arc<ProxyState>; 2],
    accepted: [Arc<AtomicUsize>; 2],
    _stop: ShutdownTrigger,
}

/// The mesh; `server-a`'s app is down unless `a_serves`, and its ztunnel proves `a_identity`.
async fn mesh(a_serves: bool, a_identity: &str) -> Mesh {
    let pki = Pki::new();
    let port_a = match a_serves {
        true => echo("127.0.0.2", "server-a:").await,
        false => closed_port("127.0.0.2").await,
    };
    let text = topology(port_a, echo("127.0.0.3", "server-b:").await);
    let listener_a = TcpListener::bind("127.0.0.2:0").await.unwrap();
    let hbone_port = listener_a.local_addr().unwrap().port();
    let listener_b = TcpListener::bind(("127.0.0.3", hbone_port)).await.unwrap();
    let (stop, shutdown) = shutdown::channel();
    let servers = [state(&text, "server-a"), state(&text, "server-b")];
    let accepted = [
        serve_inbound(
            &servers[0],
            pki.source(a_identity),
            listener_a,
            shutdown.clone(),
        ),
        serve_inbound(
            &servers[1],
            pki.source(&SERVER_A.replace("-a", "-b")),
            listener_b,
            shutdown,
        ),
    ];
    let client = state(&text, "client-1");
    let vip: SocketAddr = VIP.parse().unwrap();
    let original_dst = move |_: &TcpStream| -> io::Result<SocketAddr> { Ok(vip) };
    let hbone =
        HboneClient::new(pki.source(CLIENT), Arc::new(PlainSockets), BOUND).with_port(hbone_port);
    let outbound = Outbound::new(
        Arc::clone(&client),
        Arc::new(original_dst),
        Arc::new(PlainSockets),
    )
    .with_hbone(Arc::new(hbone));
    Mesh {
        pki,
        client,
        outbound,
        listener: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        hbone_port,
        servers,
        accepted,
        _stop: stop,
    }
}

impl Mesh {
    /// `n` requests at once through the client's proxy; their answers. Returns once the proxy
    /// has finished with each (its access line written).
    async fn requests(&self, n: usize, body: &'static [u8]) -> Vec<String> {
        let addr = self.listener.local_addr().unwrap();
        let mut clients = tokio::task::JoinSet::new();
        for _ in 0..n {
            clients.spawn(call(addr, body));
        }
        let mut handled = tokio::task::JoinSet::new();
        for _ in 0..n {
            let (stream, src) = self.listener.accept().await.unwrap();
            let outbound = self.outbound.clone();
            handled.spawn(async move { outbound.handle(stream, src).await });
        }
        handled.join_all().await;
        clients.join_all().await
    }

    async fn request(&self, body: &'static [u8]) -> String {
        self.requests(1, body).await.remove(0)
    }
}

/// Sends `body`, half-closes, and reads the answer to its end.
async fn call(addr: SocketAddr, body: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(body).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}

fn lines(state: &ProxyState, prefix: &str) -> Vec<String> {
    state.logger.captured_starting_with(prefix)
}

/// The first line of `state` starting with `prefix`, waiting for it up to 5 s.
async fn line_eventually(state: &ProxyState, prefix: &str) -> String {
    for _ in 0..500 {
        if let Some(line) = lines(state, prefix).into_iter().next() {
            return line;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no line {prefix:?} in 5 s: {:#?}", state.logger.captured());
}

fn consecutive_failures(state: &ProxyState, workload: &str) -> u64 {
    let dump = state.config_dump();
    let endpoint = dump["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["workload"] == workload)
        .unwrap()
        .clone();
    endpoint["consecutiveFailures"].as_u64().unwrap()
}

#[tokio::test]
async fn a_round_trip_carries_bytes_both_ways_and_both_lines_name_the_identities() {
    bounded(async {
        let mesh = mesh(true, SERVER_A).await;
        let body: &[u8] = b"GET /hostname HTTP/1.1\r\n\r\n";
        assert_eq!(
            mesh.request(body).await,
            format!("server-a:{}", std::str::from_utf8(body).unwrap())
        );
        let target = mesh.servers[0].model().proxy.workload.clone().unwrap();
        let port_a = target.services.values().next().unwrap()[&8000];
        // Both lines alike but for the direction and the byte counts (each from its side).
        let expected = |direction: &str, sent: usize, recv: usize| {
            format!(
                "info access connection complete src.addr=127.0.0.1:PORT \
                 src.workload=\"client-1\" src.namespace=\"httpbin\" src.identity=\"{CLIENT}\" \
                 dst.addr=127.0.0.2:{} dst.hbone_addr=127.0.0.2:{port_a} \
                 dst.service=\"echo.httpbin.svc.cluster.local\" dst.workload=\"server-a\" \
                 dst.namespace=\"httpbin\" dst.identity=\"{SERVER_A}\" \
                 direction=\"{direction}\" bytes_sent={sent} bytes_recv={recv}",
                mesh.hbone_port
            )
        };
        let (asked, answered) = (body.len(), body.len() + "server-a:".len());
        let outbound = lines(&mesh.client, "info access connection complete");
        let [line] = &outbound[..] else {
            panic!("{outbound:#?}")
        };
        assert_eq!(
            without_port_and_duration(line),
            expected("outbound", asked, answered)
        );
        let inbound = line_eventually(&mesh.servers[0], "info access").await;
        assert_eq!(
            without_port_and_duration(&inbound),
            expected("inbound", answered, asked)
        );
    })
    .await
}

/// The line with the client's ephemeral port and the duration taken out.
fn without_port_and_duration(line: &str) -> String {
    let (head, rest) = line.split_once("src.addr=127.0.0.1:").unwrap();
    let rest = rest.split_once(' ').unwrap().1;
    let line = format!("{head}src.addr=127.0.0.1:PORT {rest}");
    line.split(" duration=").next().unwrap().to_string()
}

#[tokio::test]
async fn the_pool_carries_every_stream_to_a_ztunnel_on_one_connection() {
    bounded(async {
        let mesh = mesh(true, SERVER_A).await;
        // Round robin: half of each batch goes to each server.
        let concurrent = mesh.requests(8, b"x").await;
        let mut sequential = Vec::new();
        for _ in 0..6 {
            sequential.push(mesh.request(b"y").await);
        }
        for (answers, body) in [(&concurrent, "x"), (&sequential, "y")] {
            let a = answers
                .iter()
                .filter(|a| **a == format!("server-a:{body}"))
                .count();
            let b = answers
                .iter()
                .filter(|a| **a == format!("server-b:{body}"))
                .count();
            assert_eq!(
                (a, b),
                (answers.len() / 2, answers.len() / 2),
                "{answers:?}"
            );
        }
        let accepted = mesh.accepted.each_ref().map(|n| n.load(Ordering::SeqCst));
        assert_eq!(
            accepted,
            [1, 1],
            "TCP connections each server ztunnel accepted"
        );
    })
    .await
}

#[tokio::test]
async fn a_connect_the_destination_cannot_complete_is_a_failed_connect_and_fails_over() {
    bounded(async {
        let mesh = mesh(false, SERVER_A).await;
        assert_eq!(mesh.request(b"z").await, "server-b:z");
        assert_eq!(consecutive_failures(&mesh.client, "server-a"), 1);
        let outbound = lines(&mesh.client, "info access connection complete");
        assert!(
            outbound[0].contains("dst.workload=\"server-b\""),
            "{outbound:?}"
        );
        // The destination ztunnel answered 503 and says why, naming the peer.
        let refused = line_eventually(&mesh.servers[0], "warn access connection failed").await;
        assert!(
            refused.contains(&format!("src.identity=\"{CLIENT}\"")),
            "{refused}"
        );
        assert!(refused.contains("direction=\"inbound\""), "{refused}");
        assert!(
            refused.ends_with("error=\"connection refused\""),
            "{refused}"
        );
    })
    .await
}

#[tokio::test]
async fn a_server_proving_another_identity_is_refused_by_the_client() {
    bounded(async {
        let impostor = "spiffe://cluster.local/ns/httpbin/sa/impostor";
        let mesh = mesh(true, impostor).await;
        let hbone = HboneClient::new(mesh.pki.source(CLIENT), Arc::new(PlainSockets), BOUND)
            .with_port(mesh.hbone_port);
        let target = mesh.servers[0].model().proxy.workload.clone().unwrap();
        let request = ConnectRequest {
            target: SocketAddr::new(target.workload_ips[0], 8080),
            identity: SERVER_A.parse::<Identity>().unwrap(),
            src: "127.0.0.1:40000".parse().unwrap(),
            service: None,
            baggage: String::new(),
        };
        let Err(ConnectError::Hbone(error)) = hbone.connect(&request).await else {
            panic!("the impostor was accepted");
        };
        let error = error.to_string();
        assert!(
            error.contains(impostor) && error.contains(SERVER_A),
            "{error}"
        );
        // Through the proxy: a failed connect, and the other endpoint takes the connection.
        assert_eq!(mesh.request(b"w").await, "server-b:w");
        assert_eq!(consecutive_failures(&mesh.client, "server-a"), 1);
    })
    .await
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused_by_the_inbound() {
    bounded(async {
        let pki = Pki::new();
        let text = topology(echo("127.0.0.2", "server-a:").await, 1);
        let server = state(&text, "server-a");
        let listener = TcpListener::bind("127.0.0.2:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let inbound = Inbound::new(
            Arc::clone(&server),
            Arc::new(PlainSockets),
            pki.source(SERVER_A),
        );
        let (_stop, shutdown) = shutdown::channel();
        let serving = async {
            let (tcp, peer) = listener.accept().await.unwrap();
            inbound.serve_connection(tcp, peer, shutdown).await;
        };
        let config = rustls::ClientConfig::builder_with_provider(tls::provider())
            .with_protocol_versions(tls::TLS13_ONLY)
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(tls::server_verifier(
                &pki.roots,
                SERVER_A.parse().unwrap(),
            ))
            .with_no_client_auth();
        let client = async {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let name = ServerName::IpAddress(addr.ip().into());
            // TLS 1.3: the client's side of the handshake may finish before the server refuses.
            let Ok(mut tls) = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(name, tcp)
                .await
            else {
                return;
            };
            let mut buf = [0u8; 16];
            assert!(
                !matches!(tls.read(&mut buf).await, Ok(n) if n > 0),
                "the server talked"
            );
        };
        tokio::join!(serving, client);
        let refused = lines(&server, "warn access connection failed");
        let [line] = &refused[..] else {
            panic!("{refused:#?}")
        };
        assert!(
            line.contains("direction=\"inbound\" error=\"TLS handshake:"),
            "{line}"
        );
        assert!(line.contains("certificate"), "{line}");
    })
    .await
}

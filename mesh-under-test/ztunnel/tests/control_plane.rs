//! The reference ztunnel against a tiny in-test control plane on 127.0.0.1 (TLS from an rcgen
//! root): it asks the CA for its certificate with a token, subscribes over delta xDS, applies
//! pushed config (the model changes), ACKs, NACKs what it cannot use and keeps the old model,
//! and turns ready only once both have arrived. An unreachable CA is one log line naming its
//! address, and the start probe stays failing. Every wait is bounded.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meshcert_istio_api::auth::istio_certificate_service_server::{
    IstioCertificateService, IstioCertificateServiceServer,
};
use meshcert_istio_api::auth::{IstioCertificateRequest, IstioCertificateResponse};
use meshcert_istio_api::discovery::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use meshcert_istio_api::discovery::{DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource};
use meshcert_istio_api::workload::{self as xds, Address, address};
use meshcert_istio_api::{ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL};
use meshcert_ztunnel::config::{self, Config, Listeners};
use meshcert_ztunnel::log::{LogFilter, LogFormat, Logger, strip_timestamp};
use prost::Message;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_stream::{Stream, StreamExt};
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

const BOUND: Duration = Duration::from_secs(20);
const TOKEN: &str = "t0ken";

/// The run's root and a serving certificate for 127.0.0.1 signed by it.
struct Pki {
    root_pem: String,
    issuer: Issuer<'static, KeyPair>,
    serving: (String, String),
}

fn pki() -> Pki {
    let root_key = KeyPair::generate().unwrap();
    let mut root = CertificateParams::new(Vec::<String>::new()).unwrap();
    root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let root_pem = root.self_signed(&root_key).unwrap().pem();
    let issuer = Issuer::new(root, root_key);
    let serving_key = KeyPair::generate().unwrap();
    let mut serving = CertificateParams::new(vec!["istiod.istio-system.svc".to_string()]).unwrap();
    serving
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let cert = serving.signed_by(&serving_key, &issuer).unwrap();
    Pki {
        root_pem,
        issuer,
        serving: (cert.pem(), serving_key.serialize_pem()),
    }
}

/// What the control plane saw: certificate requests with their token, and every xDS request.
#[derive(Default)]
struct Seen {
    csrs: Vec<(IstioCertificateRequest, Option<String>)>,
    xds_tokens: Vec<Option<String>>,
}

struct Ca {
    pki: Arc<Pki>,
    seen: Arc<Mutex<Seen>>,
}

fn bearer<T>(request: &Request<T>) -> Option<String> {
    let value = request.metadata().get("authorization")?;
    Some(value.to_str().unwrap().to_string())
}

#[tonic::async_trait]
impl IstioCertificateService for Ca {
    async fn create_certificate(
        &self,
        request: Request<IstioCertificateRequest>,
    ) -> Result<Response<IstioCertificateResponse>, Status> {
        let token = bearer(&request);
        let body = request.into_inner();
        let csr = rcgen::CertificateSigningRequestParams::from_pem(&body.csr)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let leaf = csr.signed_by(&self.pki.issuer).unwrap().pem();
        self.seen.lock().unwrap().csrs.push((body, token));
        Ok(Response::new(IstioCertificateResponse {
            cert_chain: vec![leaf, self.pki.root_pem.clone()],
        }))
    }
}

type Responses = Pin<Box<dyn Stream<Item = Result<DeltaDiscoveryResponse, Status>> + Send>>;

/// One ADS stream at a time, driven by the test: requests go to `requests`, the test's
/// responses come from `pushes` (handed over when the stream opens).
struct Ads {
    seen: Arc<Mutex<Seen>>,
    requests: mpsc::Sender<DeltaDiscoveryRequest>,
    pushes: Mutex<Option<mpsc::Receiver<DeltaDiscoveryResponse>>>,
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for Ads {
    type DeltaAggregatedResourcesStream = Responses;

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Responses>, Status> {
        self.seen.lock().unwrap().xds_tokens.push(bearer(&request));
        let pushes = self.pushes.lock().unwrap().take();
        let pushes = pushes.ok_or_else(|| Status::unavailable("one stream at a time"))?;
        let mut incoming = request.into_inner();
        let requests = self.requests.clone();
        tokio::spawn(async move {
            while let Some(Ok(request)) = incoming.next().await {
                if requests.send(request).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(pushes).map(Ok))))
    }
}

/// The control plane's end of the test.
struct ControlPlane {
    address: String,
    root_file: TempFile,
    seen: Arc<Mutex<Seen>>,
    requests: mpsc::Receiver<DeltaDiscoveryRequest>,
    pushes: mpsc::Sender<DeltaDiscoveryResponse>,
}

async fn control_plane(tag: &str) -> ControlPlane {
    let pki = Arc::new(pki());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("https://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (requests_sender, requests) = mpsc::channel(64);
    let (pushes, pushed) = mpsc::channel(64);
    let ca = Ca {
        pki: Arc::clone(&pki),
        seen: Arc::clone(&seen),
    };
    let ads = Ads {
        seen: Arc::clone(&seen),
        requests: requests_sender,
        pushes: Mutex::new(Some(pushed)),
    };
    let (cert, key) = pki.serving.clone();
    let server = Server::builder()
        .tls_config(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)))
        .unwrap()
        .add_service(IstioCertificateServiceServer::new(ca))
        .add_service(AggregatedDiscoveryServiceServer::new(ads))
        .serve_with_incoming(TcpListenerStream::new(listener));
    tokio::spawn(server);
    ControlPlane {
        address,
        root_file: TempFile::new(&format!("{tag}-root.pem"), &pki.root_pem),
        seen,
        requests,
        pushes,
    }
}

/// A file removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> Self {
        let path = std::env::temp_dir().join(format!("meshcert-cp-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        Self(path)
    }

    fn path(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A loopback port nothing listens on now.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A running reference ztunnel: its logs, its readiness and admin ports, and its stop switch.
struct Ztunnel {
    logger: Logger,
    readiness: SocketAddr,
    admin: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    ended: tokio::task::JoinHandle<()>,
}

fn start(env: &[(&str, String)]) -> Ztunnel {
    let mut vars: BTreeMap<String, String> = [
        (config::PROXY_MODE, "dedicated"),
        (config::PROXY_WORKLOAD_INFO, "httpbin/client-1/client"),
        (config::POD_NAME, "client-1"),
        (config::POD_NAMESPACE, "httpbin"),
        (config::INSTANCE_IP, "127.0.0.1"),
        (config::PACKET_MARK, "0"),
        (config::control_plane::SECRET_TTL, "1h"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.clone())));
    let mut config = Config::from_lookup(|k| vars.get(k).cloned()).unwrap();
    let at = |port| SocketAddr::from(([127, 0, 0, 1], port));
    let (readiness, admin) = (at(free_port()), at(free_port()));
    config.listeners = Listeners {
        outbound: at(0),
        admin,
        inbound: at(0),
        stats: at(0),
        readiness,
    };
    let logger = Logger::capture(LogFormat::Text, LogFilter::default());
    let (stop, stopped) = oneshot::channel();
    let run = meshcert_ztunnel::app::run_with_logger(config, logger.clone(), async {
        let _ = stopped.await;
    });
    let ended = tokio::spawn(async move { run.await.unwrap() });
    Ztunnel {
        logger,
        readiness,
        admin,
        stop: Some(stop),
        ended,
    }
}

impl Ztunnel {
    /// The status and body of `GET path` on `addr`; `None` before the server listens.
    async fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        let status = response.split(' ').nth(1)?.parse().ok()?;
        let body = response.split_once("\r\n\r\n")?.1.to_string();
        Some((status, body))
    }

    async fn ready_status(&self) -> Option<u16> {
        Self::get(self.readiness, "/healthz/ready")
            .await
            .map(|(s, _)| s)
    }

    async fn workload_names(&self) -> Vec<String> {
        let (_, body) = Self::get(self.admin, "/config_dump").await.unwrap();
        let dump: serde_json::Value = serde_json::from_str(&body).unwrap();
        let names = dump["workloads"].as_array().unwrap().iter();
        names
            .map(|w| w["name"].as_str().unwrap().to_string())
            .collect()
    }

    /// Log lines without their timestamps that start with `prefix`.
    fn lines(&self, prefix: &str) -> Vec<String> {
        let lines = self.logger.captured();
        let stripped = lines.iter().map(|l| strip_timestamp(l).to_string());
        stripped.filter(|l| l.starts_with(prefix)).collect()
    }

    /// Waits (bounded: 200 looks, 25 ms apart) until `prefix` has been logged `count` times.
    async fn logged(&self, prefix: &str, count: usize) {
        for _ in 0..200 {
            if self.lines(prefix).len() >= count {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "{prefix:?} not logged {count} times: {:#?}",
            self.logger.captured()
        );
    }

    /// Waits (bounded like `logged`) for the readiness probe to answer `status`.
    async fn probe_answers(&self, status: u16) {
        for _ in 0..200 {
            if self.ready_status().await == Some(status) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "readiness never answered {status}: {:#?}",
            self.logger.captured()
        );
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(BOUND, self.ended)
            .await
            .unwrap()
            .unwrap();
    }
}

async fn bounded<F: std::future::Future>(test: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), test)
        .await
        .expect("the test did not finish in 60s")
}

fn workload(name: &str, ip: [u8; 4]) -> (String, Address) {
    let uid = format!("cluster1//v1/Pod/httpbin/{name}");
    let services = [(
        "httpbin/in-ambient.httpbin.svc.cluster.local".to_string(),
        xds::PortList {
            ports: vec![xds::Port {
                service_port: 8000,
                target_port: 8080,
            }],
        },
    )];
    let w = xds::Workload {
        uid: uid.clone(),
        name: name.into(),
        namespace: "httpbin".into(),
        addresses: vec![ip.to_vec()],
        cluster_id: "cluster1".into(),
        services: services.into_iter().collect(),
        ..xds::Workload::default()
    };
    let resource = address::Type::Workload(w);
    (
        uid,
        Address {
            r#type: Some(resource),
        },
    )
}

fn service() -> (String, Address) {
    let s = xds::Service {
        name: "in-ambient".into(),
        namespace: "httpbin".into(),
        hostname: "in-ambient.httpbin.svc.cluster.local".into(),
        addresses: vec![xds::NetworkAddress {
            network: String::new(),
            address: vec![127, 0, 1, 10],
        }],
        ports: vec![xds::Port {
            service_port: 8000,
            target_port: 8080,
        }],
        ..xds::Service::default()
    };
    let name = "httpbin/in-ambient.httpbin.svc.cluster.local".to_string();
    (
        name,
        Address {
            r#type: Some(address::Type::Service(s)),
        },
    )
}

fn push(
    type_url: &str,
    nonce: &str,
    added: Vec<(String, Address)>,
    removed: &[&str],
) -> DeltaDiscoveryResponse {
    let resources = added.into_iter().map(|(name, address)| Resource {
        name,
        version: "v1".into(),
        resource: Some(prost_types::Any {
            type_url: type_url.into(),
            value: address.encode_to_vec(),
        }),
        ..Resource::default()
    });
    DeltaDiscoveryResponse {
        type_url: type_url.into(),
        nonce: nonce.into(),
        resources: resources.collect(),
        removed_resources: removed.iter().map(|r| r.to_string()).collect(),
        ..DeltaDiscoveryResponse::default()
    }
}

impl ControlPlane {
    async fn next_request(&mut self) -> DeltaDiscoveryRequest {
        let next = tokio::time::timeout(BOUND, self.requests.recv()).await;
        next.expect("no xDS request within the bound").unwrap()
    }

    /// Pushes `response` and returns the answer to it (its nonce echoed).
    async fn answer_to(&mut self, response: DeltaDiscoveryResponse) -> DeltaDiscoveryRequest {
        let nonce = response.nonce.clone();
        self.pushes.send(response).await.unwrap();
        let answer = self.next_request().await;
        assert_eq!(answer.response_nonce, nonce, "{answer:?}");
        answer
    }

    /// A cluster launch against this control plane, the token given as a file.
    fn launch_env(&self, token: &TempFile) -> Vec<(&'static str, String)> {
        vec![
            (config::XDS_ADDRESS, self.address.clone()),
            (config::control_plane::CA_ADDRESS, self.address.clone()),
            (config::control_plane::XDS_ROOT_CA, self.root_file.path()),
            (config::control_plane::CA_ROOT_CA, self.root_file.path()),
            (config::control_plane::AUTH_TOKEN, token.path()),
        ]
    }
}

#[tokio::test]
async fn fetches_a_certificate_and_follows_pushed_config() {
    bounded(async {
        let mut cp = control_plane("follow").await;
        let token = TempFile::new("follow-token", &format!("{TOKEN}\n"));
        let zt = start(&cp.launch_env(&token));
        subscribes_as_upstream(&mut cp).await;
        zt.logged(
            "info ca certificate issued identity=\"spiffe://cluster.local/ns/httpbin/sa/client\"",
            1,
        )
        .await;
        certificate_asked_as_upstream(&cp);
        zt.probe_answers(503).await;

        let first = push(
            ADDRESS_TYPE_URL,
            "n1",
            vec![workload("a", [127, 0, 0, 2]), service()],
            &[],
        );
        let ack = cp.answer_to(first).await;
        assert_eq!(
            (ack.type_url.as_str(), ack.error_detail),
            (ADDRESS_TYPE_URL, None)
        );
        assert_eq!(
            zt.ready_status().await,
            Some(503),
            "ready before Authorization"
        );
        let ack = cp
            .answer_to(push(AUTHORIZATION_TYPE_URL, "a1", vec![], &[]))
            .await;
        assert_eq!(ack.error_detail, None);
        zt.probe_answers(200).await;
        assert_eq!(zt.workload_names().await, ["a"]);

        pushes_change_the_model(&mut cp, &zt).await;
        assert_eq!(
            cp.seen.lock().unwrap().xds_tokens,
            [Some(format!("Bearer {TOKEN}"))]
        );
        zt.stop().await;
    })
    .await;
}

/// The initial requests: Address (wildcard, with the node) then Authorization.
async fn subscribes_as_upstream(cp: &mut ControlPlane) {
    let addresses = cp.next_request().await;
    assert_eq!(addresses.type_url, ADDRESS_TYPE_URL);
    assert!(
        addresses.resource_names_subscribe.is_empty(),
        "wildcard, as upstream"
    );
    let node = addresses.node.unwrap();
    assert_eq!(
        node.id,
        "ztunnel~127.0.0.1~client-1.httpbin~httpbin.svc.cluster.local"
    );
    let metadata = node.metadata.unwrap().fields;
    let name = metadata["NAME"].kind.clone().unwrap();
    assert_eq!(
        name,
        prost_types::value::Kind::StringValue("client-1".into())
    );
    let authorization = cp.next_request().await;
    assert_eq!(authorization.type_url, AUTHORIZATION_TYPE_URL);
}

/// One CSR, the TTL asked for, the token read from its file (newline dropped).
fn certificate_asked_as_upstream(cp: &ControlPlane) {
    let seen = cp.seen.lock().unwrap();
    let (request, token) = &seen.csrs[0];
    assert_eq!(request.validity_duration, 3600);
    assert_eq!(token.as_deref(), Some(format!("Bearer {TOKEN}").as_str()));
}

/// A change is applied and ACKed; a bad resource and an authorization policy are NACKed and
/// the model kept.
async fn pushes_change_the_model(cp: &mut ControlPlane, zt: &Ztunnel) {
    let uid_a = "cluster1//v1/Pod/httpbin/a";
    let change = push(
        ADDRESS_TYPE_URL,
        "n2",
        vec![workload("b", [127, 0, 0, 3])],
        &[uid_a],
    );
    assert_eq!(cp.answer_to(change).await.error_detail, None);
    assert_eq!(zt.workload_names().await, ["b"]);
    zt.logged("info config config reloaded workloads=1 services=1", 2)
        .await;

    let (name, mut bad) = workload("c", [127, 0, 0, 4]);
    if let Some(address::Type::Workload(w)) = &mut bad.r#type {
        w.addresses = vec![vec![1, 2, 3, 4, 5]];
    }
    let nack = cp
        .answer_to(push(ADDRESS_TYPE_URL, "n3", vec![(name, bad)], &[]))
        .await;
    let error = nack.error_detail.expect("a NACK").message;
    assert!(error.contains("an address of 5 bytes"), "{error}");
    assert_eq!(zt.workload_names().await, ["b"], "the old model is kept");
    zt.logged(
        "error config config reload failed, keeping the previous config",
        1,
    )
    .await;

    let policy = push(AUTHORIZATION_TYPE_URL, "a2", vec![service()], &[]);
    let nack = cp.answer_to(policy).await;
    let error = nack.error_detail.expect("a NACK").message;
    assert!(
        error.contains("authorization policies are not supported"),
        "{error}"
    );
}

#[tokio::test]
async fn an_unreachable_ca_is_one_line_naming_it_and_never_ready() {
    bounded(async {
        let file = TempFile::new("unreachable.yaml", "workloads: []\nservices: []\n");
        let root = TempFile::new("unreachable-root.pem", &pki().root_pem);
        let ca = format!("https://127.0.0.1:{}", free_port());
        let zt = start(&[
            (config::LOCAL_XDS_PATH, file.path()),
            (config::control_plane::CA_ADDRESS, ca.clone()),
            (config::control_plane::CA_ROOT_CA, root.path()),
        ]);
        let line = format!("error ca cannot reach the CA at {ca}: ");
        zt.logged(&line, 1).await;
        // Retries at 0.5 s then 1 s: two more attempts, no more lines, never ready.
        for _ in 0..8 {
            assert_eq!(zt.ready_status().await, Some(503));
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let lines = zt.lines("error");
        assert_eq!(lines.len(), 1, "{lines:#?}");
        assert!(lines[0].contains("Connection refused"), "{}", lines[0]);
        assert!(zt.lines("info ztunnel ready").is_empty());
        zt.stop().await;
    })
    .await;
}

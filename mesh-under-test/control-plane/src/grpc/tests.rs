//! The control plane's listener on loopback, called as ztunnel calls it: delta ADS streams
//! (subscribe, ACK, NACK, reconnect, unknown types) and the certificate service on the same
//! port, the client verifying the server by the IP it dialled. Every wait is bounded.

use std::collections::HashMap;
use std::time::Duration;

use meshcert_istio_api::auth::istio_certificate_service_client::IstioCertificateServiceClient;
use meshcert_istio_api::discovery::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use meshcert_istio_api::discovery::{DeltaDiscoveryRequest, DeltaDiscoveryResponse};
use meshcert_istio_api::envoy::config::core::v3::Node;
use meshcert_istio_api::google::rpc;
use meshcert_istio_api::{ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL};
use meshcert_ztunnel::local_config::{HealthStatus, LocalConfig};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Streaming};

use super::serve_control_plane;
use crate::ControlPlaneError;
use crate::ca::server::tests::{Loopback, node_a_may_request_reviews, on_loopback, request_for};
use crate::xds::{ConfigVersion, XdsServer};

/// Longest wait for anything the server should do at once.
const PROMPTLY: Duration = Duration::from_secs(5);

const CONFIG: &str = "
workloads:
- uid: Kubernetes//Pod/default/reviews-1
  name: reviews-1
  namespace: default
  serviceAccount: reviews
  workloadIps: ['10.244.0.11']
  protocol: HBONE
  services: {'default/reviews.default.svc.cluster.local': {9080: 9080}}
- uid: Kubernetes//Pod/default/reviews-2
  name: reviews-2
  namespace: default
  serviceAccount: reviews
  workloadIps: ['10.244.0.12']
  protocol: HBONE
  services: {'default/reviews.default.svc.cluster.local': {9080: 9080}}
services:
- name: reviews
  namespace: default
  hostname: reviews.default.svc.cluster.local
  vips: ['/10.96.0.9']
  ports: {9080: 9080}
";

fn config() -> LocalConfig {
    LocalConfig::parse(CONFIG, "test").expect("a valid config")
}

/// reviews-1 turns unhealthy and reviews-2 is gone.
fn scaled_down() -> LocalConfig {
    let mut config = config();
    config.workloads[0].status = HealthStatus::Unhealthy;
    config.workloads.truncate(1);
    config
}

struct ControlPlane {
    served: Loopback<Result<(), ControlPlaneError>>,
    configs: watch::Sender<LocalConfig>,
    xds: XdsServer,
}

async fn start() -> ControlPlane {
    let (configs, watched) = watch::channel(config());
    let xds = XdsServer::new(watched);
    let serving = xds.clone();
    let served = on_loopback(|listener, ca, shutdown| {
        serve_control_plane(listener, ca, node_a_may_request_reviews, serving, shutdown)
    })
    .await;
    ControlPlane {
        served,
        configs,
        xds,
    }
}

impl ControlPlane {
    /// A TLS channel trusting the run's root, verifying the server as the IP it dials.
    async fn channel(&self) -> Channel {
        let root = Certificate::from_pem(self.served.ca.root_pem());
        let tls = ClientTlsConfig::new().ca_certificate(root);
        let endpoint = Endpoint::from_shared(format!("https://{}", self.served.address))
            .expect("an endpoint")
            .tls_config(tls)
            .expect("TLS");
        within(endpoint.connect())
            .await
            .expect("connects, trusting the root")
    }

    /// Waits until `clients` streams have ACKed `config`.
    async fn acked_by(&self, config: &LocalConfig, clients: usize) {
        self.xds
            .wait_until_acked(&ConfigVersion::of(config), clients, PROMPTLY)
            .await
            .expect("every ACK is recorded");
    }

    /// Writes [`scaled_down`]; each client gets the diff and ACKs it, and the server records
    /// every ACK.
    async fn scale_down(&self, ztunnels: &mut [AdsClient]) -> Vec<DeltaDiscoveryResponse> {
        self.configs.send_replace(scaled_down());
        let mut diffs = Vec::new();
        for ztunnel in ztunnels.iter_mut() {
            let diff = ztunnel.next().await;
            assert_eq!(names(&diff), ["Kubernetes//Pod/default/reviews-1"]);
            assert_eq!(
                diff.removed_resources,
                ["Kubernetes//Pod/default/reviews-2"]
            );
            ztunnel.answer(&diff, None).await;
            diffs.push(diff);
        }
        self.acked_by(&scaled_down(), ztunnels.len()).await;
        diffs
    }

    async fn shut_down(self) {
        self.served.stop.send(()).expect("the server is running");
        within(self.served.server)
            .await
            .expect("joined")
            .expect("served until shutdown");
    }
}

async fn within<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(PROMPTLY, future)
        .await
        .expect("the control plane answers promptly")
}

/// One ADS stream, driven as upstream ztunnel drives it.
struct AdsClient {
    requests: mpsc::Sender<DeltaDiscoveryRequest>,
    responses: Streaming<DeltaDiscoveryResponse>,
}

/// Upstream's node id: `ztunnel~<ip>~<pod>.<namespace>~<namespace>.svc.cluster.local`.
fn node_id(pod: &str) -> String {
    format!("ztunnel~10.244.0.1~{pod}.istio-system~istio-system.svc.cluster.local")
}

/// Upstream's first request for a type: the node, no names (everything), what it still holds.
fn subscribe(type_url: &str, pod: &str, held: HashMap<String, String>) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        node: Some(Node {
            id: node_id(pod),
            ..Node::default()
        }),
        type_url: type_url.into(),
        initial_resource_versions: held,
        ..DeltaDiscoveryRequest::default()
    }
}

impl AdsClient {
    /// Opens a stream whose first request is `first`.
    async fn open(channel: Channel, first: DeltaDiscoveryRequest) -> Self {
        let (requests, outbound) = mpsc::channel(8);
        requests.send(first).await.expect("queued");
        let mut client = AggregatedDiscoveryServiceClient::new(channel);
        let call = client.delta_aggregated_resources(ReceiverStream::new(outbound));
        let responses = within(call).await.expect("the stream opens").into_inner();
        Self {
            requests,
            responses,
        }
    }

    /// Subscribes to addresses as `pod`'s ztunnel.
    async fn addresses(channel: Channel, pod: &str) -> Self {
        Self::open(channel, subscribe(ADDRESS_TYPE_URL, pod, HashMap::new())).await
    }

    async fn next(&mut self) -> DeltaDiscoveryResponse {
        within(self.responses.message())
            .await
            .expect("a response, not an error")
            .expect("the stream goes on")
    }

    /// ACKs `response`, or NACKs it with `error`, as upstream answers.
    async fn answer(&self, response: &DeltaDiscoveryResponse, error: Option<&str>) {
        let request = DeltaDiscoveryRequest {
            type_url: response.type_url.clone(),
            response_nonce: response.nonce.clone(),
            error_detail: error.map(|message| rpc::Status {
                message: message.into(),
                ..rpc::Status::default()
            }),
            ..DeltaDiscoveryRequest::default()
        };
        self.requests
            .send(request)
            .await
            .expect("the stream is open");
    }
}

fn names(response: &DeltaDiscoveryResponse) -> Vec<&str> {
    response.resources.iter().map(|r| r.name.as_str()).collect()
}

#[tokio::test]
async fn first_response_is_everything_then_only_what_changed() {
    let control_plane = start().await;
    let mut ztunnel = AdsClient::addresses(control_plane.channel().await, "reviews-1").await;

    let first = ztunnel.next().await;
    assert_eq!(first.type_url, ADDRESS_TYPE_URL);
    assert_eq!(
        names(&first),
        [
            "Kubernetes//Pod/default/reviews-1",
            "Kubernetes//Pod/default/reviews-2",
            "default/reviews.default.svc.cluster.local",
        ]
    );
    assert!(first.resources.iter().all(|r| !r.version.is_empty()));
    assert!(first.removed_resources.is_empty());
    let version = ConfigVersion::of(&config());
    assert_eq!(first.system_version_info, version.to_string());
    ztunnel.answer(&first, None).await;
    control_plane.acked_by(&config(), 1).await;
    let streams = control_plane.xds.streams().borrow().clone();
    let state = streams.values().next().expect("one stream");
    assert_eq!(state.node_id, node_id("reviews-1"));

    let diffs = control_plane.scale_down(&mut [ztunnel]).await;
    assert_ne!(diffs[0].nonce, first.nonce);
    control_plane.shut_down().await;
}

#[tokio::test]
async fn every_connected_client_gets_every_push() {
    let control_plane = start().await;
    let mut ztunnels = Vec::new();
    for pod in ["reviews-1", "reviews-2"] {
        let mut ztunnel = AdsClient::addresses(control_plane.channel().await, pod).await;
        let first = ztunnel.next().await;
        assert_eq!(first.resources.len(), 3);
        ztunnel.answer(&first, None).await;
        ztunnels.push(ztunnel);
    }
    control_plane.scale_down(&mut ztunnels).await;
    control_plane.shut_down().await;
}

#[tokio::test]
async fn a_reconnecting_client_gets_only_what_it_lacks() {
    let control_plane = start().await;
    let held = HashMap::from([
        (
            "Kubernetes//Pod/default/reviews-1".to_string(),
            "stale".to_string(),
        ),
        ("Kubernetes//Pod/default/gone".to_string(), "v".to_string()),
    ]);
    let request = subscribe(ADDRESS_TYPE_URL, "reviews-1", held);
    let mut ztunnel = AdsClient::open(control_plane.channel().await, request).await;
    let first = ztunnel.next().await;
    assert_eq!(first.resources.len(), 3, "a stale version is resent");
    assert_eq!(first.removed_resources, ["Kubernetes//Pod/default/gone"]);

    let current: HashMap<String, String> = first
        .resources
        .iter()
        .map(|r| (r.name.clone(), r.version.clone()))
        .collect();
    let request = subscribe(ADDRESS_TYPE_URL, "reviews-1", current);
    let mut again = AdsClient::open(control_plane.channel().await, request).await;
    let first = again.next().await;
    assert!(first.resources.is_empty() && first.removed_resources.is_empty());
    assert!(
        !first.nonce.is_empty(),
        "still answered, so the client can be ready"
    );
    control_plane.shut_down().await;
}

#[tokio::test]
async fn authorization_gets_one_empty_response() {
    let control_plane = start().await;
    let request = subscribe(AUTHORIZATION_TYPE_URL, "reviews-1", HashMap::new());
    let mut ztunnel = AdsClient::open(control_plane.channel().await, request).await;
    let response = ztunnel.next().await;
    assert_eq!(response.type_url, AUTHORIZATION_TYPE_URL);
    assert!(response.resources.is_empty() && response.removed_resources.is_empty());
    assert!(!response.nonce.is_empty());
    ztunnel.answer(&response, None).await;
    control_plane.shut_down().await;
}

#[tokio::test]
async fn an_unknown_type_ends_the_stream_with_invalid_argument() {
    let control_plane = start().await;
    let cluster = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
    let request = subscribe(cluster, "reviews-1", HashMap::new());
    let mut client = AdsClient::open(control_plane.channel().await, request).await;
    let refused = within(client.responses.message())
        .await
        .expect_err("an error, not a hang");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains(cluster), "{refused:?}");
    assert!(refused.message().contains(ADDRESS_TYPE_URL), "{refused:?}");
    control_plane.shut_down().await;
}

#[tokio::test]
async fn a_nack_is_recorded_and_not_resent() {
    let control_plane = start().await;
    let mut ztunnel = AdsClient::addresses(control_plane.channel().await, "reviews-1").await;
    let first = ztunnel.next().await;
    ztunnel.answer(&first, Some("bad workload")).await;
    let mut streams = control_plane.xds.streams();
    let nacked = within(streams.wait_for(|s| s.values().any(|s| s.nack.is_some())))
        .await
        .expect("the server runs")
        .clone();
    let state = nacked.values().next().expect("one stream");
    assert_eq!(state.nack.as_deref(), Some("bad workload"));
    assert_eq!(state.acked, None);
    let not_acked = control_plane
        .xds
        .wait_until_acked(&ConfigVersion::of(&config()), 1, Duration::from_millis(50))
        .await
        .expect_err("a NACK is not an ACK");
    assert!(
        not_acked.to_string().contains("bad workload"),
        "{not_acked}"
    );

    // Nothing is resent; the next change is pushed as a diff.
    control_plane.configs.send_replace(scaled_down());
    let diff = ztunnel.next().await;
    assert_eq!(names(&diff), ["Kubernetes//Pod/default/reviews-1"]);
    control_plane.shut_down().await;
}

#[tokio::test]
async fn certificates_are_served_on_the_same_port() {
    let control_plane = start().await;
    let mut client = IstioCertificateServiceClient::new(control_plane.channel().await);
    let request = request_for("reviews", "node-a");
    let chain = within(client.create_certificate(request))
        .await
        .expect("signed")
        .into_inner()
        .cert_chain;
    assert_eq!(
        chain.last().map(String::as_str),
        Some(control_plane.served.ca.root_pem())
    );
    control_plane.shut_down().await;
}

#[tokio::test]
async fn shutdown_ends_open_streams_and_forgets_them() {
    let control_plane = start().await;
    let mut ztunnel = AdsClient::addresses(control_plane.channel().await, "reviews-1").await;
    ztunnel.next().await;
    let mut streams = control_plane.xds.streams();
    assert_eq!(streams.borrow().len(), 1);
    control_plane.shut_down().await;
    let ended = within(ztunnel.responses.message()).await;
    assert!(
        matches!(&ended, Err(status) if status.code() == Code::Unavailable)
            || matches!(ended, Ok(None)),
        "{ended:?}"
    );
    within(streams.wait_for(|s| s.is_empty()))
        .await
        .expect("the stream is forgotten");
}

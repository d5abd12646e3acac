//! `MeshUnderTest`: the one trait steps talk to, whichever driver runs (bundled reference,
//! external ztunnel binary, real cluster), and the typed values that cross it.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::MeshError;
use crate::manifest::ManifestSet;
use meshcert_model::LogLine;
use meshcert_model::MetricSample;

pub use meshcert_model::Profile;

/// What a target can do; a scenario needing a missing capability is skipped with the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    /// iptables faults inside pods.
    NetworkFaults,
    /// Make a backend answer a chosen HTTP status.
    AppFaults,
    /// Scale deployments.
    Scale,
    /// ztunnel log lines can be read.
    ZtunnelLogs,
    /// ztunnel's Prometheus metrics can be read.
    ZtunnelMetrics,
    /// Nodes with chosen locality labels, and pods pinned to them.
    Topology,
    /// Endpoints on another network reachable from the client (the local driver's fabric is
    /// flat; a real multi-network mesh needs an east-west gateway).
    CrossNetwork,
    /// A waypoint proxy bound to a service (L7 load balancing, DestinationRules).
    Waypoint,
}

impl Capability {
    /// What a local mesh offers: everything but waypoints.
    pub const LOCAL: [Capability; 7] = [
        Capability::NetworkFaults,
        Capability::AppFaults,
        Capability::Scale,
        Capability::ZtunnelLogs,
        Capability::ZtunnelMetrics,
        Capability::Topology,
        Capability::CrossNetwork,
    ];
}

/// What an external ztunnel binary offers locally: no cross-network endpoints, since
/// upstream reaches them through an east-west gateway the local fabric does not have.
pub fn external_ztunnel_capabilities() -> Vec<Capability> {
    Capability::LOCAL
        .into_iter()
        .filter(|c| *c != Capability::CrossNetwork)
        .collect()
}

impl FromStr for Capability {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "network-faults" => Capability::NetworkFaults,
            "app-faults" => Capability::AppFaults,
            "scale" => Capability::Scale,
            "ztunnel-logs" => Capability::ZtunnelLogs,
            "ztunnel-metrics" => Capability::ZtunnelMetrics,
            "topology" => Capability::Topology,
            "cross-network" => Capability::CrossNetwork,
            "waypoint" => Capability::Waypoint,
            other => return Err(format!("unknown capability {other:?}")),
        })
    }
}

/// Identity of the mesh under test, written into every report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetInfo {
    /// `reference`, `ztunnel` or `kube`.
    pub kind: String,
    /// Human name, e.g. "meshcert reference ztunnel".
    pub name: String,
    pub version: String,
    pub profile: Profile,
    pub capabilities: Vec<Capability>,
}

impl TargetInfo {
    pub fn supports(&self, capability: Capability) -> bool {
        self.capabilities.contains(&capability)
    }
}

/// `namespace/name` of a Deployment.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DeploymentRef {
    pub namespace: String,
    pub name: String,
}

impl DeploymentRef {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for DeploymentRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// `namespace/name` of a Pod.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for PodRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A pod as `kubectl get pods` would list it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub ip: IpAddr,
    pub node: String,
    pub ready: bool,
}

impl PodInfo {
    pub fn pod_ref(&self) -> PodRef {
        PodRef {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }
}

/// Requests a client sends, one new TCP connection each (as `curl` in the guide's loop).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestPlan {
    /// The client deployment; its first pod sends.
    pub client: DeploymentRef,
    /// e.g. `http://in-ambient:8000/hostname`, resolved as the client pod's DNS would.
    pub url: String,
    pub count: u32,
    /// Time between the starts of consecutive requests; zero sends each as soon as the previous ends.
    pub interval: Duration,
    /// Per-request client timeout (`curl --max-time`).
    pub timeout: Duration,
}

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum RequestOutcome {
    /// A response came back; `replica` is the pod that answered (the body of `/hostname`).
    Answered {
        replica: String,
        status: u16,
    },
    Failed {
        failure: RequestFailure,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestFailure {
    /// No complete response within the client timeout.
    Timeout,
    ConnectionRefused,
    ConnectionReset,
    /// The connection closed before any response byte (`curl: (52) Empty reply`).
    EmptyReply,
    /// Anything else, with the error text.
    Other(String),
}

impl fmt::Display for RequestFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestFailure::Timeout => f.write_str("timeout"),
            RequestFailure::ConnectionRefused => f.write_str("connection refused"),
            RequestFailure::ConnectionReset => f.write_str("connection reset"),
            RequestFailure::EmptyReply => f.write_str("empty reply"),
            RequestFailure::Other(e) => f.write_str(e),
        }
    }
}

/// One request as observed by the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// 0-based position in its plan.
    pub index: u32,
    /// When it started, on the mesh's clock (`MeshUnderTest::elapsed`).
    pub started_at: Duration,
    pub latency: Duration,
    /// The client's end of the connection (`ip:port`), as ztunnel logs it in `src.addr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(flatten)]
    pub outcome: RequestOutcome,
}

impl RequestRecord {
    pub fn replica(&self) -> Option<&str> {
        match &self.outcome {
            RequestOutcome::Answered { replica, .. } => Some(replica),
            RequestOutcome::Failed { .. } => None,
        }
    }

    pub fn failed(&self) -> bool {
        matches!(self.outcome, RequestOutcome::Failed { .. })
    }
}

/// The replica named by a `/hostname` body: the trimmed text, or its `hostname` field when the
/// app answers JSON (httpbin does).
pub fn replica_of(body: &str) -> String {
    let text = body.trim();
    if text.starts_with('{')
        && let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(text)
        && let Some(serde_json::Value::String(host)) = map.get("hostname")
    {
        return host.clone();
    }
    text.to_string()
}

/// A ztunnel restarted to take a config change (a binary that reads its config once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restart {
    /// The client pod whose ztunnel restarted.
    pub pod: String,
    /// When the change began, on the mesh's clock.
    pub at: Duration,
    /// Stop, start, ready and serving the new config.
    pub took: Duration,
}

/// The kubelet changed a pod's Ready condition, and when the control plane had the change in
/// force in every ztunnel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadinessChange {
    pub pod: PodRef,
    pub ready: bool,
    /// When the kubelet reported it, on the mesh's clock.
    pub at: Duration,
    /// When every ztunnel served the config with the change; `None` until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pushed_at: Option<Duration>,
    /// The probe result (or event) that changed it.
    pub reason: String,
}

/// A fault to inject into one pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    pub pod: PodRef,
    pub kind: FaultKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum FaultKind {
    /// `iptables -A INPUT -p tcp --dport <port> -j DROP` inside the pod: connects hang.
    IptablesDrop { port: u16 },
    /// `iptables -A INPUT -p tcp --dport <port> -j REJECT --reject-with tcp-reset`: connects fail fast.
    IptablesReject { port: u16 },
    /// The app answers every request with this HTTP status (still naming itself in the body),
    /// except its readiness probe's path: the pod stays Ready, so only the data plane can
    /// shun it (`NotReady` is the fault for the probe).
    HttpStatus { status: u16 },
    /// The pod's readiness probe fails (its app answers the probe's path with 503; a
    /// tcpSocket probe is refused) while the app serves every other request: the kubelet
    /// turns the pod NotReady after `failureThreshold` probes and the control plane marks
    /// its endpoint unhealthy, so only that marking moves traffic.
    NotReady,
    /// The app's process is killed: its ports refuse connections, open ones are dropped and
    /// the kubelet reports the pod NotReady at once; undoing it restarts the app, which is
    /// Ready again once its readiness probe passes.
    ProcessKill,
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultKind::IptablesDrop { port } => {
                write!(f, "iptables -A INPUT -p tcp --dport {port} -j DROP")
            }
            FaultKind::IptablesReject { port } => {
                write!(
                    f,
                    "iptables -A INPUT -p tcp --dport {port} -j REJECT --reject-with tcp-reset"
                )
            }
            FaultKind::HttpStatus { status } => write!(f, "app answers HTTP {status}"),
            FaultKind::NotReady => f.write_str("readiness probe fails (the app keeps serving)"),
            FaultKind::ProcessKill => {
                f.write_str("app process killed (its ports refuse connections)")
            }
        }
    }
}

/// A fault in force, returned by `inject` and given back to `undo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultHandle {
    pub id: u64,
    pub fault: Fault,
    /// When the driver had made it take effect, on the mesh's clock: windows that a mesh gets
    /// to react start here.
    pub injected_at: Duration,
    /// When the driver began to inject it: it took effect between this and `injected_at`, so
    /// what the mesh logs about it is looked for from here.
    #[serde(default)]
    pub requested_at: Duration,
}

/// The mesh under test. Every method is bounded in time; everything a driver creates is
/// recorded and removed by `teardown`, and by the driver's own guard on panic or Ctrl-C.
#[async_trait]
pub trait MeshUnderTest: Send {
    fn target(&self) -> &TargetInfo;

    /// Time since the mesh was created: the clock of `RequestRecord::started_at`,
    /// `FaultHandle::injected_at` and `LogLine::observed_at`.
    fn elapsed(&self) -> Duration;

    /// Every ztunnel restart so far; empty for a ztunnel that reloads its config.
    fn restarts(&self) -> Vec<Restart> {
        Vec::new()
    }

    /// Every change of a pod's Ready condition the driver made happen (readiness probes,
    /// faults), with when it was pushed; empty for a driver that leaves readiness to a cluster.
    fn readiness_changes(&self) -> Vec<ReadinessChange> {
        Vec::new()
    }

    /// Creates the objects of the manifests and waits until their pods are ready and the
    /// client's ztunnel knows every endpoint.
    async fn deploy(&mut self, manifests: &ManifestSet) -> Result<(), MeshError>;

    /// Scales a deployment and waits until the new pods are ready and known to ztunnel
    /// (or the removed ones are gone).
    async fn scale(&mut self, deployment: &DeploymentRef, replicas: u32) -> Result<(), MeshError>;

    /// The deployment's pods, sorted by name (as `kubectl get pods` lists them).
    async fn pods(&self, deployment: &DeploymentRef) -> Result<Vec<PodInfo>, MeshError>;

    /// Sends the plan's requests from inside the client pod, one after another.
    async fn send_requests(&mut self, plan: &RequestPlan) -> Result<Vec<RequestRecord>, MeshError>;

    async fn inject(&mut self, fault: &Fault) -> Result<FaultHandle, MeshError>;

    async fn undo(&mut self, handle: &FaultHandle) -> Result<(), MeshError>;

    /// Every ztunnel log line written since `deploy`, parsed.
    async fn ztunnel_logs(&self) -> Result<Vec<LogLine>, MeshError>;

    /// The client ztunnel's metrics, parsed.
    async fn metrics(&self) -> Result<Vec<MetricSample>, MeshError>;

    /// Removes everything this mesh created. Idempotent.
    async fn teardown(&mut self) -> Result<(), MeshError>;
}

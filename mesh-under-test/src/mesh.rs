//! `MeshUnderTest`: the one trait steps talk to, whichever driver runs (bundled reference,
//! external ztunnel binary, real cluster), and the typed values that cross it (the observations
//! among them are the model's, re-exported).

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::MeshError;
use crate::manifest::ManifestSet;
use meshcert_model::LogLine;
use meshcert_model::MetricSample;

pub use meshcert_model::{
    DeploymentRef, Fault, FaultHandle, FaultKind, PodInfo, PodRef, Profile, ReadinessChange,
    RequestFailure, RequestOutcome, RequestPlan, RequestRecord, Restart,
};

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

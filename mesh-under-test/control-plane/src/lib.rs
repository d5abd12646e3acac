//! The local control plane: Kubernetes and Istio objects translated to ztunnel's workload model
//! (the local config), playing istiod's part.
//!
//! This is what istiod does for ambient, reduced to the objects meshcert deploys: pods and
//! WorkloadEntries of namespaces labelled `istio.io/dataplane-mode: ambient` become workloads,
//! the Services and ServiceEntries of those namespaces become services, and each service's load
//! balancing is derived from `internalTrafficPolicy`, `trafficDistribution` and the
//! `networking.istio.io/traffic-distribution` annotation (a ServiceEntry has only the
//! annotation), with the profile deciding the default and how unknown values are treated
//! (DESIGN.md, "control plane"). DestinationRules are read by waypoints, gateways and sidecars,
//! never by ztunnel, so they change nothing here. The function is pure: same snapshot, same
//! output, sorted.
//!
//! By concern: [`distribution`] resolves each service's mode, `services` turns Services and
//! ServiceEntries into services, `workloads` turns pods, WorkloadEntries and inline endpoints
//! into workloads, [`istio`] types the Istio objects read. [`ca`] is the run's certificate
//! authority, issuing workload identities as istiod's CA does. [`xds`] serves the translated
//! config to ztunnels as istiod does, over delta ADS; [`serve_control_plane`] serves both on
//! one gRPC + TLS listener.

pub mod ca;
pub mod distribution;
pub mod error;
mod grpc;
pub mod istio;
mod services;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;
mod workloads;
pub mod xds;

use std::fmt;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use meshcert_model::Profile;
pub use meshcert_model::TrafficDistribution;
use meshcert_ztunnel::local_config::LocalConfig;

pub use ca::{CertificateAuthority, CertificateChain};
pub use distribution::{Source, load_balancer, service_entry_distribution, traffic_distribution};
pub use error::ControlPlaneError;
pub use grpc::serve_control_plane;
use istio::{DestinationRule, ServiceEntry, WorkloadEntry};

/// Everything the translation reads, as a control plane would see it.
#[derive(Debug, Clone, Default)]
pub struct ClusterSnapshot {
    /// `clusterId` of every workload, e.g. `Kubernetes` or `cluster1`.
    pub cluster_id: String,
    /// Trust domain, e.g. `cluster.local`.
    pub trust_domain: String,
    pub nodes: Vec<Node>,
    pub namespaces: Vec<Namespace>,
    pub services: Vec<Service>,
    pub pods: Vec<Pod>,
    /// Services named by host, with endpoints selected by label or listed inline.
    pub service_entries: Vec<ServiceEntry>,
    /// Workloads that are not pods (VMs, remote endpoints on a flat network).
    pub workload_entries: Vec<WorkloadEntry>,
    /// Read by waypoints, gateways and sidecars only: kept so a snapshot is the whole
    /// control-plane view, and so tests can show they change nothing on the ztunnel path.
    pub destination_rules: Vec<DestinationRule>,
}

/// The translated model, and what the translation chose to tolerate.
#[derive(Debug, Clone, PartialEq)]
pub struct Translation {
    pub config: LocalConfig,
    /// One line per object skipped or value ignored, naming the object; the driver logs them.
    pub warnings: Vec<String>,
}

/// Namespace (or pod) label that enrols workloads in the ambient mesh.
pub const DATAPLANE_MODE_LABEL: &str = "istio.io/dataplane-mode";
/// Label on the `istio-system` namespace that names the cluster's network; on a pod or
/// WorkloadEntry, the network of that workload when it differs (multi-network meshes).
pub const NETWORK_LABEL: &str = "topology.istio.io/network";
/// Service (and ServiceEntry) annotation that istiod reads when `spec.trafficDistribution` is
/// unset.
pub const TRAFFIC_DISTRIBUTION_ANNOTATION: &str = "networking.istio.io/traffic-distribution";
pub const REGION_LABEL: &str = "topology.kubernetes.io/region";
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
pub const SUBZONE_LABEL: &str = "topology.istio.io/subzone";
/// The namespace whose network label is the mesh's network.
pub const ISTIO_SYSTEM: &str = "istio-system";
/// DNS suffix of Service hostnames.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// Control-plane defect switches, so the suite can prove a scenario fails when the control
/// plane is wrong; all off in any real use. The driver sets them from the reference's defect
/// names (`wrong-precedence`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ControlPlaneDefects {
    /// The Service annotation beats `spec.trafficDistribution` (breaks TD-PREC-1).
    pub wrong_precedence: bool,
}

/// `<name>.<namespace>.svc.cluster.local`.
pub fn service_hostname(name: &str, namespace: &str) -> String {
    format!("{name}.{namespace}.svc.{CLUSTER_DOMAIN}")
}

/// Translates the snapshot into ztunnel's local config, under the profile's rules.
pub fn to_local_config(
    snapshot: &ClusterSnapshot,
    profile: Profile,
) -> Result<Translation, ControlPlaneError> {
    to_local_config_with(snapshot, profile, ControlPlaneDefects::default())
}

/// [`to_local_config`] with control-plane defect switches.
pub fn to_local_config_with(
    snapshot: &ClusterSnapshot,
    profile: Profile,
    defects: ControlPlaneDefects,
) -> Result<Translation, ControlPlaneError> {
    let mut warnings = Vec::new();
    let scope = MeshScope::of(snapshot);
    let catalog = services::catalog(snapshot, &scope, profile, defects, &mut warnings)?;
    let mut workloads = workloads::workloads(snapshot, &scope, &catalog, &mut warnings)?;
    let mut services = catalog.services;
    workloads.sort_by(|a, b| a.uid.cmp(&b.uid));
    services.sort_by(|a, b| a.hostname.cmp(&b.hostname));
    Ok(Translation {
        config: LocalConfig {
            workloads,
            policies: Vec::new(),
            services,
        },
        warnings,
    })
}

/// What of a snapshot is in the ambient mesh, and on which network.
pub(crate) struct MeshScope<'a> {
    /// The `istio-system` namespace's network label; empty when unset.
    pub(crate) network: String,
    ambient: Vec<&'a str>,
}

impl<'a> MeshScope<'a> {
    fn of(snapshot: &'a ClusterSnapshot) -> Self {
        let network = snapshot
            .namespaces
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(ISTIO_SYSTEM))
            .and_then(|n| label(&n.metadata, NETWORK_LABEL))
            .unwrap_or_default()
            .to_string();
        let ambient = snapshot
            .namespaces
            .iter()
            .filter(|n| label(&n.metadata, DATAPLANE_MODE_LABEL) == Some("ambient"))
            .filter_map(|n| n.metadata.name.as_deref())
            .collect();
        MeshScope { network, ambient }
    }

    /// Whether the object's namespace is labelled into the ambient mesh.
    pub(crate) fn contains(&self, meta: &ObjectMeta) -> bool {
        self.ambient.contains(&namespace_of(meta))
    }
}

pub(crate) fn describe(kind: &str, meta: &ObjectMeta) -> String {
    format!(
        "{kind} {}/{}",
        meta.namespace.as_deref().unwrap_or("default"),
        meta.name.as_deref().unwrap_or("<unnamed>")
    )
}

pub(crate) fn invalid(what: &str, field: &str, problem: impl fmt::Display) -> ControlPlaneError {
    ControlPlaneError::Refused {
        object: what.to_string(),
        field: field.to_string(),
        problem: problem.to_string(),
    }
}

pub(crate) fn namespace_of(meta: &ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or("default")
}

pub(crate) fn label<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(key))
        .map(String::as_str)
}

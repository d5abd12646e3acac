//! Control-plane translation: Kubernetes and Istio objects to ztunnel's workload model (the
//! local config).
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

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
pub use meshcert_model::TrafficDistribution;
use meshcert_ztunnel::defects::{Defect, Defects};

use crate::MeshError;
use crate::istio::{
    self, DestinationRule, Location, Resolution, ServiceEntry, WorkloadEntry, WorkloadEntrySpec,
};
use crate::local_config::{
    self, HealthPolicy, HealthStatus, LoadBalancer, LoadBalancerMode, LocalConfig, LocalWorkload,
    Locality, NetworkAddress, Protocol, RoutingPreference,
};
use crate::mesh::Profile;

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

/// The service's `loadBalancer` in the local config; `None` for `Any`.
pub fn load_balancer(distribution: TrafficDistribution) -> Option<LoadBalancer> {
    use RoutingPreference::*;
    let (routing_preferences, mode) = match distribution {
        TrafficDistribution::NodeLocal => (vec![Node], LoadBalancerMode::Strict),
        TrafficDistribution::PreferClose => {
            (vec![Network, Region, Zone], LoadBalancerMode::Failover)
        }
        TrafficDistribution::PreferSameNode => (
            vec![Network, Region, Zone, Subzone, Node],
            LoadBalancerMode::Failover,
        ),
        TrafficDistribution::PreferNetwork => (vec![Network], LoadBalancerMode::Failover),
        TrafficDistribution::PreferRegion => (vec![Network, Region], LoadBalancerMode::Failover),
        TrafficDistribution::Any => return None,
    };
    Some(LoadBalancer {
        routing_preferences,
        mode,
        health_policy: HealthPolicy::OnlyHealthy,
    })
}

/// Where a service's traffic distribution came from, highest precedence first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    InternalTrafficPolicy,
    /// `spec.trafficDistribution`.
    Spec,
    /// The `networking.istio.io/traffic-distribution` annotation.
    Annotation,
    /// Nothing set: the profile's default.
    Default,
}

/// A service's traffic distribution and where it came from (warnings are dropped; see
/// [`to_local_config`] for them).
pub fn traffic_distribution(
    service: &Service,
    profile: Profile,
) -> Result<(TrafficDistribution, Source), MeshError> {
    let resolved = resolve_distribution(service, profile, &Defects::none())?;
    Ok((resolved.distribution, resolved.source))
}

/// A ServiceEntry's traffic distribution: its annotation, else the profile's default (TD-PREC-3).
pub fn service_entry_distribution(
    entry: &ServiceEntry,
    profile: Profile,
) -> Result<(TrafficDistribution, Source), MeshError> {
    let resolved = resolve_entry_distribution(entry, profile)?;
    Ok((resolved.distribution, resolved.source))
}

struct Resolved {
    distribution: TrafficDistribution,
    source: Source,
    warning: Option<String>,
}

fn resolve_distribution(
    service: &Service,
    profile: Profile,
    defects: &Defects,
) -> Result<Resolved, MeshError> {
    let spec = service.spec.as_ref();
    if spec.and_then(|s| s.internal_traffic_policy.as_deref()) == Some("Local") {
        return Ok(Resolved {
            distribution: TrafficDistribution::NodeLocal,
            source: Source::InternalTrafficPolicy,
            warning: None,
        });
    }
    let what = describe("Service", &service.metadata);
    let from_spec = spec
        .and_then(|s| s.traffic_distribution.as_deref())
        .filter(|v| !v.is_empty())
        .map(|v| (Source::Spec, v));
    let from_annotation = annotation_value(&service.metadata).map(|v| (Source::Annotation, v));
    let chosen = if defects.is_on(Defect::WrongPrecedence) {
        from_annotation.or(from_spec)
    } else {
        from_spec.or(from_annotation)
    };
    match chosen {
        Some((Source::Spec, value)) => spec_distribution(&what, value, profile),
        Some((_, value)) => annotation_distribution(&what, value, profile),
        None => Ok(default_distribution(profile)),
    }
}

fn resolve_entry_distribution(
    entry: &ServiceEntry,
    profile: Profile,
) -> Result<Resolved, MeshError> {
    match annotation_value(&entry.metadata) {
        Some(value) => {
            annotation_distribution(&describe("ServiceEntry", &entry.metadata), value, profile)
        }
        None => Ok(default_distribution(profile)),
    }
}

fn annotation_value(meta: &ObjectMeta) -> Option<&str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(TRAFFIC_DISTRIBUTION_ANNOTATION))
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

fn default_distribution(profile: Profile) -> Resolved {
    Resolved {
        distribution: match profile {
            Profile::Solo => TrafficDistribution::PreferNetwork,
            Profile::Istio => TrafficDistribution::Any,
        },
        source: Source::Default,
        warning: None,
    }
}

/// `spec.trafficDistribution`: the API server accepts only the Kubernetes values here; the
/// Istio-only ones (Any, PreferNetwork, PreferRegion) belong in the annotation.
fn spec_distribution(what: &str, value: &str, profile: Profile) -> Result<Resolved, MeshError> {
    let distribution = match value {
        "PreferClose" | "PreferSameZone" => TrafficDistribution::PreferClose,
        "PreferSameNode" => TrafficDistribution::PreferSameNode,
        other => {
            return unknown_value(
                what,
                profile,
                Source::Spec,
                "spec.trafficDistribution",
                other,
                "PreferClose, PreferSameZone, PreferSameNode",
            );
        }
    };
    Ok(Resolved {
        distribution,
        source: Source::Spec,
        warning: None,
    })
}

/// The `networking.istio.io/traffic-distribution` annotation of a Service or ServiceEntry.
fn annotation_distribution(
    what: &str,
    value: &str,
    profile: Profile,
) -> Result<Resolved, MeshError> {
    let distribution = match (value, profile) {
        ("PreferClose" | "PreferSameZone", _) => TrafficDistribution::PreferClose,
        ("PreferSameNode", _) => TrafficDistribution::PreferSameNode,
        ("Any", _) => TrafficDistribution::Any,
        ("PreferNetwork", Profile::Solo) => TrafficDistribution::PreferNetwork,
        ("PreferRegion", Profile::Solo) => TrafficDistribution::PreferRegion,
        (other, profile) => {
            let accepted = match profile {
                Profile::Solo => {
                    "PreferClose, PreferSameZone, PreferSameNode, PreferNetwork, PreferRegion, Any"
                }
                Profile::Istio => "PreferClose, PreferSameZone, PreferSameNode, Any",
            };
            let field = format!("metadata.annotations[{TRAFFIC_DISTRIBUTION_ANNOTATION}]");
            return unknown_value(what, profile, Source::Annotation, &field, other, accepted);
        }
    };
    Ok(Resolved {
        distribution,
        source: Source::Annotation,
        warning: None,
    })
}

/// Istio falls back to `Any` on a value it does not know; the Solo profile promises to refuse
/// it, so a misspelt value cannot silently change failover behaviour.
fn unknown_value(
    what: &str,
    profile: Profile,
    source: Source,
    field: &str,
    value: &str,
    accepted: &str,
) -> Result<Resolved, MeshError> {
    match profile {
        Profile::Istio => Ok(Resolved {
            distribution: TrafficDistribution::Any,
            source,
            warning: Some(format!(
                "{what}: field `{field}` is {value:?}, which profile istio does not know \
                 (it accepts {accepted}): treated as Any, every healthy endpoint with equal weight"
            )),
        }),
        Profile::Solo => Err(MeshError::InvalidRequest(format!(
            "{what}: field `{field}` is {value:?}, which profile solo does not accept: \
             use one of {accepted}"
        ))),
    }
}

fn describe(kind: &str, meta: &ObjectMeta) -> String {
    format!(
        "{kind} {}/{}",
        meta.namespace.as_deref().unwrap_or("default"),
        meta.name.as_deref().unwrap_or("<unnamed>")
    )
}

fn invalid(what: &str, field: &str, problem: impl fmt::Display) -> MeshError {
    MeshError::InvalidRequest(format!("{what}: field `{field}` {problem}"))
}

fn namespace_of(meta: &ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or("default")
}

fn label<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(key))
        .map(String::as_str)
}

/// `<name>.<namespace>.svc.cluster.local`.
pub fn service_hostname(name: &str, namespace: &str) -> String {
    format!("{name}.{namespace}.svc.{CLUSTER_DOMAIN}")
}

/// Translates the snapshot into ztunnel's local config, under the profile's rules.
pub fn to_local_config(
    snapshot: &ClusterSnapshot,
    profile: Profile,
) -> Result<Translation, MeshError> {
    to_local_config_with(snapshot, profile, &Defects::none())
}

/// [`to_local_config`] with control-plane defect switches (`Defect::WrongPrecedence`), so the
/// suite can prove a scenario fails when the control plane is wrong.
pub fn to_local_config_with(
    snapshot: &ClusterSnapshot,
    profile: Profile,
    defects: &Defects,
) -> Result<Translation, MeshError> {
    let mut warnings = Vec::new();
    let network = snapshot
        .namespaces
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some(ISTIO_SYSTEM))
        .and_then(|n| label(&n.metadata, NETWORK_LABEL))
        .unwrap_or_default()
        .to_string();
    let ambient: Vec<&str> = snapshot
        .namespaces
        .iter()
        .filter(|n| label(&n.metadata, DATAPLANE_MODE_LABEL) == Some("ambient"))
        .filter_map(|n| n.metadata.name.as_deref())
        .collect();
    let in_mesh = |namespace: &str| ambient.contains(&namespace);

    let mut services = Vec::new();
    let mut backends: Vec<Backend> = Vec::new();
    for service in &snapshot.services {
        if !in_mesh(namespace_of(&service.metadata)) {
            continue;
        }
        if let Some((translated, backend)) =
            translate_service(service, profile, defects, &network, &mut warnings)?
        {
            services.push(translated);
            backends.push(backend);
        }
    }
    // Sorted, so which of two entries naming one host wins does not depend on input order.
    let mut entries: Vec<&ServiceEntry> = snapshot
        .service_entries
        .iter()
        .filter(|e| in_mesh(namespace_of(&e.metadata)))
        .collect();
    entries.sort_by_key(|e| (namespace_of(&e.metadata), e.metadata.name.as_deref()));
    let mut entries_in_mesh = Vec::new();
    for entry in entries {
        let Some(translated) = translate_service_entry(entry, profile, &network, &mut warnings)?
        else {
            continue;
        };
        entries_in_mesh.push(entry);
        for (service, backend) in translated {
            if let Some(taken) = backends.iter().find(|b| b.key == backend.key) {
                warnings.push(format!(
                    "{}: host {:?} is already a service of {}: skipped",
                    backend.what, service.hostname, taken.what
                ));
                continue;
            }
            services.push(service);
            backends.push(backend);
        }
    }

    let mut workloads = Vec::new();
    for pod in &snapshot.pods {
        if in_mesh(namespace_of(&pod.metadata)) {
            workloads.extend(pod_workload(
                snapshot,
                pod,
                &backends,
                &network,
                &mut warnings,
            )?);
        }
    }

    let base = EntryBase {
        cluster_id: &snapshot.cluster_id,
        trust_domain: &snapshot.trust_domain,
        network: &network,
    };
    for entry in &snapshot.workload_entries {
        let meta = &entry.metadata;
        let namespace = namespace_of(meta);
        if !in_mesh(namespace) || label(meta, DATAPLANE_MODE_LABEL) == Some("none") {
            continue;
        }
        let name = meta.name.clone().unwrap_or_default();
        // istiod matches a WorkloadEntry's object labels; Istio's examples put them in the
        // spec, so both count, the spec's winning.
        let mut labels = meta.labels.clone().unwrap_or_default();
        labels.extend(entry.spec.labels.clone());
        let endpoint = Endpoint {
            what: describe("WorkloadEntry", meta),
            field: "spec",
            uid: format!(
                "{}//networking.istio.io/WorkloadEntry/{namespace}/{name}",
                snapshot.cluster_id
            ),
            name: name.clone(),
            namespace,
            spec: &entry.spec,
            labels: &labels,
        };
        let backed: Vec<&Backend> = backends
            .iter()
            .filter(|b| b.namespace == namespace && b.selects(&labels))
            .collect();
        workloads.extend(entry_workload(&base, &endpoint, &backed, &mut warnings)?);
    }
    for entry in entries_in_mesh {
        let meta = &entry.metadata;
        let namespace = namespace_of(meta);
        let name = meta.name.clone().unwrap_or_default();
        let own = format!("{namespace}/{name}");
        let backed: Vec<&Backend> = backends
            .iter()
            .filter(|b| b.entry.as_deref() == Some(own.as_str()))
            .collect();
        for (i, spec) in entry.spec.endpoints.iter().enumerate() {
            let field = format!("spec.endpoints[{i}]");
            let endpoint = Endpoint {
                what: describe("ServiceEntry", meta),
                field: &field,
                uid: format!(
                    "{}//networking.istio.io/ServiceEntry/{namespace}/{name}/{}",
                    snapshot.cluster_id, spec.address
                ),
                name: name.clone(),
                namespace,
                spec,
                labels: &spec.labels,
            };
            workloads.extend(entry_workload(&base, &endpoint, &backed, &mut warnings)?);
        }
    }

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

/// A pod as a workload, as istiod builds it; `None` when it is not (yet) in the mesh.
fn pod_workload(
    snapshot: &ClusterSnapshot,
    pod: &Pod,
    backends: &[Backend<'_>],
    network: &str,
    warnings: &mut Vec<String>,
) -> Result<Option<LocalWorkload>, MeshError> {
    let namespace = namespace_of(&pod.metadata);
    let what = describe("Pod", &pod.metadata);
    if label(&pod.metadata, DATAPLANE_MODE_LABEL) == Some("none") {
        // The pod opted out of its namespace's mesh enrolment.
        return Ok(None);
    }
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return Ok(None);
    }
    let ips = pod_ips(pod, &what)?;
    if ips.is_empty() {
        warnings.push(format!(
            "{what}: has no IP yet (status.podIP is unset): not in the mesh until it has one"
        ));
        return Ok(None);
    }
    let spec = pod.spec.as_ref();
    let node = spec.and_then(|s| s.node_name.clone()).unwrap_or_default();
    let locality = if node.is_empty() {
        Locality::default()
    } else {
        match snapshot
            .nodes
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(node.as_str()))
        {
            Some(n) => node_locality(n),
            None => {
                warnings.push(format!(
                    "{what}: runs on node {node:?}, which the snapshot lacks: locality left empty"
                ));
                Locality::default()
            }
        }
    };
    let empty = BTreeMap::new();
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    let backed: Vec<&Backend> = backends
        .iter()
        .filter(|b| b.namespace == namespace && b.selects(labels))
        .collect();
    let backs = backed_services(
        &what,
        &backed,
        "container port",
        |_, rule| {
            Ok(match rule.target {
                PortTarget::Number(n) => Some(n),
                PortTarget::Named(name) => container_port(pod, name),
            })
        },
        warnings,
    )?;
    let name = pod.metadata.name.clone().unwrap_or_default();
    Ok(Some(LocalWorkload {
        uid: format!("{}//v1/Pod/{namespace}/{name}", snapshot.cluster_id),
        name: name.clone(),
        namespace: namespace.to_string(),
        service_account: spec
            .and_then(|s| s.service_account_name.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".to_string()),
        workload_ips: ips,
        protocol: Protocol::TCP,
        node,
        // A pod of another network (multi-network mesh) says so with its own label.
        network: label(&pod.metadata, NETWORK_LABEL)
            .filter(|n| !n.is_empty())
            .unwrap_or(network)
            .to_string(),
        cluster_id: snapshot.cluster_id.clone(),
        trust_domain: snapshot.trust_domain.clone(),
        workload_name: workload_name(pod),
        hostname: String::new(),
        status: if is_ready(pod) {
            HealthStatus::Healthy
        } else {
            HealthStatus::Unhealthy
        },
        capacity: 1,
        locality,
        services: backs,
    }))
}

/// A translated service as its endpoints see it: what it selects and how its ports map.
struct Backend<'a> {
    /// `<namespace>/<hostname>`: the key of a workload's `services`.
    key: String,
    namespace: &'a str,
    /// `Service ns/name` or `ServiceEntry ns/name`, for messages.
    what: String,
    /// Label selector; `None` selects nothing (endpoints managed elsewhere, or inline).
    selector: Option<&'a BTreeMap<String, String>>,
    /// `<namespace>/<name>` of the ServiceEntry this host comes from; `None` for a Service.
    entry: Option<String>,
    ports: Vec<PortRule<'a>>,
}

/// One TCP port of a service and where its endpoints serve it.
#[derive(Clone, Copy)]
struct PortRule<'a> {
    port: u16,
    /// The port's name: a ServiceEntry's endpoints map service port names to their ports.
    name: &'a str,
    target: PortTarget<'a>,
}

#[derive(Clone, Copy)]
enum PortTarget<'a> {
    Number(u16),
    /// A Service's named targetPort: each endpoint has its own number for it.
    Named(&'a str),
}

impl Backend<'_> {
    /// Label selector semantics: every selector pair on the workload; no (or an empty)
    /// selector selects nothing.
    fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.selector.is_some_and(|selector| {
            !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
        })
    }
}

impl PortRule<'_> {
    fn target_name(&self) -> String {
        match self.target {
            PortTarget::Number(n) => n.to_string(),
            PortTarget::Named(name) => name.to_string(),
        }
    }
}

/// A service for the local config, and how its endpoints back it.
type Translated<'a> = (local_config::Service, Backend<'a>);

fn translate_service<'a>(
    service: &'a Service,
    profile: Profile,
    defects: &Defects,
    network: &str,
    warnings: &mut Vec<String>,
) -> Result<Option<Translated<'a>>, MeshError> {
    let what = describe("Service", &service.metadata);
    let name = service
        .metadata
        .name
        .clone()
        .ok_or_else(|| invalid(&what, "metadata.name", "is missing"))?;
    let namespace = namespace_of(&service.metadata);
    let spec = service
        .spec
        .as_ref()
        .ok_or_else(|| invalid(&what, "spec", "is missing"))?;
    if spec.type_.as_deref() == Some("ExternalName") {
        warnings.push(format!(
            "{what}: type ExternalName has no endpoints in the mesh: skipped"
        ));
        return Ok(None);
    }
    let addresses: Vec<&String> = match (&spec.cluster_ips, &spec.cluster_ip) {
        (Some(ips), _) if !ips.is_empty() => ips.iter().collect(),
        (_, Some(ip)) if !ip.is_empty() => vec![ip],
        _ => {
            return Err(invalid(
                &what,
                "spec.clusterIP",
                "is not set: assign the service a cluster IP, as the API server would",
            ));
        }
    };
    if addresses.iter().any(|a| a.as_str() == "None") {
        warnings.push(format!(
            "{what}: is headless (clusterIP None): no VIP to balance, skipped"
        ));
        return Ok(None);
    }
    let vips = addresses
        .into_iter()
        .map(|address| vip(&what, "spec.clusterIPs", address, network))
        .collect::<Result<Vec<_>, _>>()?;
    let mut ports = BTreeMap::new();
    let mut rules = Vec::new();
    for (i, port) in spec.ports.iter().flatten().enumerate() {
        if !is_tcp(port) {
            warnings.push(format!(
                "{what}: port {} is {}, which ztunnel does not proxy: skipped",
                port.port,
                port.protocol.as_deref().unwrap_or_default()
            ));
            continue;
        }
        let service_port = port_number(&what, &format!("spec.ports[{i}].port"), port.port)?;
        // A named targetPort can differ per pod: as istiod does, the service says 0 and each
        // workload's own port map carries the number.
        let target = match &port.target_port {
            None => PortTarget::Number(service_port),
            Some(IntOrString::Int(t)) => PortTarget::Number(port_number(
                &what,
                &format!("spec.ports[{i}].targetPort"),
                *t,
            )?),
            Some(IntOrString::String(name)) => PortTarget::Named(name),
        };
        ports.insert(
            service_port,
            match target {
                PortTarget::Number(n) => n,
                PortTarget::Named(_) => 0,
            },
        );
        rules.push(PortRule {
            port: service_port,
            name: port.name.as_deref().unwrap_or_default(),
            target,
        });
    }
    let resolved = resolve_distribution(service, profile, defects)?;
    warnings.extend(resolved.warning);
    let hostname = service_hostname(&name, namespace);
    let backend = Backend {
        key: format!("{namespace}/{hostname}"),
        namespace,
        what,
        selector: spec.selector.as_ref(),
        entry: None,
        ports: rules,
    };
    Ok(Some((
        local_config::Service {
            hostname,
            name,
            namespace: namespace.to_string(),
            vips,
            ports,
            subject_alt_names: Vec::new(),
            load_balancer: load_balancer(resolved.distribution),
        },
        backend,
    )))
}

/// One service per host of a MESH_INTERNAL, STATIC ServiceEntry; `None` when the entry is
/// skipped as a whole (with a warning).
fn translate_service_entry<'a>(
    entry: &'a ServiceEntry,
    profile: Profile,
    network: &str,
    warnings: &mut Vec<String>,
) -> Result<Option<Vec<Translated<'a>>>, MeshError> {
    let what = describe("ServiceEntry", &entry.metadata);
    let name = entry
        .metadata
        .name
        .clone()
        .ok_or_else(|| invalid(&what, "metadata.name", "is missing"))?;
    let namespace = namespace_of(&entry.metadata);
    let spec = &entry.spec;
    if spec.location != Location::MeshInternal {
        warnings.push(format!(
            "{what}: location is {}: meshcert translates MESH_INTERNAL ServiceEntries only \
             (set `spec.location: MESH_INTERNAL`): skipped",
            spec.location
        ));
        return Ok(None);
    }
    if spec.resolution != Resolution::Static {
        warnings.push(format!(
            "{what}: resolution is {}: meshcert translates STATIC ServiceEntries only (set \
             `spec.resolution: STATIC`, endpoints by workloadSelector or spec.endpoints): skipped",
            spec.resolution
        ));
        return Ok(None);
    }
    let mut ports = BTreeMap::new();
    let mut rules = Vec::new();
    for (i, port) in spec.ports.iter().enumerate() {
        let protocol = port.protocol.as_deref().unwrap_or_default();
        if protocol.eq_ignore_ascii_case("UDP") {
            warnings.push(format!(
                "{what}: port {} is UDP, which ztunnel does not proxy: skipped",
                port.number
            ));
            continue;
        }
        let number = port_number(&what, &format!("spec.ports[{i}].number"), port.number)?;
        let target = match port.target_port {
            Some(t) => port_number(&what, &format!("spec.ports[{i}].targetPort"), t)?,
            None => number,
        };
        ports.insert(number, target);
        rules.push(PortRule {
            port: number,
            name: &port.name,
            target: PortTarget::Number(target),
        });
    }
    let resolved = resolve_entry_distribution(entry, profile)?;
    warnings.extend(resolved.warning);
    let mut translated = Vec::new();
    for host in &spec.hosts {
        let addresses = entry.addresses_of(host);
        if addresses.is_empty() {
            warnings.push(format!(
                "{what}: host {host:?} has no address (`spec.addresses` is empty and none was \
                 allocated): ztunnel captures traffic by address, so it is skipped"
            ));
            continue;
        }
        let field = if spec.addresses.is_empty() {
            "status.addresses"
        } else {
            "spec.addresses"
        };
        let vips = addresses
            .into_iter()
            .map(|address| vip(&what, field, address, network))
            .collect::<Result<Vec<_>, _>>()?;
        let backend = Backend {
            key: format!("{namespace}/{host}"),
            namespace,
            what: what.clone(),
            selector: spec.workload_selector.as_ref().map(|s| &s.labels),
            entry: Some(format!("{namespace}/{name}")),
            ports: rules.clone(),
        };
        translated.push((
            local_config::Service {
                name: name.clone(),
                namespace: namespace.to_string(),
                hostname: host.clone(),
                vips,
                ports: ports.clone(),
                subject_alt_names: spec.subject_alt_names.clone(),
                load_balancer: load_balancer(resolved.distribution),
            },
            backend,
        ));
    }
    Ok(Some(translated))
}

/// A VIP: an IP address on the cluster's network. A ServiceEntry may name a CIDR range, which
/// ztunnel cannot capture as one address.
fn vip(what: &str, field: &str, address: &str, network: &str) -> Result<NetworkAddress, MeshError> {
    let ip: IpAddr = address.parse().map_err(|e| {
        invalid(
            what,
            field,
            format_args!("has {address:?}, not an IP address ({e})"),
        )
    })?;
    Ok(NetworkAddress {
        network: network.to_string(),
        address: ip,
    })
}

fn port_number<N: Copy + fmt::Display + TryInto<u16>>(
    what: &str,
    field: &str,
    port: N,
) -> Result<u16, MeshError> {
    port.try_into()
        .ok()
        .filter(|p: &u16| *p != 0)
        .ok_or_else(|| invalid(what, field, format_args!("is {port}: it must be 1..65535")))
}

/// What the workload of a WorkloadEntry or of a ServiceEntry's inline endpoint is made from.
struct Endpoint<'a> {
    what: String,
    /// Where the endpoint's spec sits in its object, for messages.
    field: &'a str,
    uid: String,
    name: String,
    namespace: &'a str,
    spec: &'a WorkloadEntrySpec,
    labels: &'a BTreeMap<String, String>,
}

/// What every workload of a snapshot shares.
struct EntryBase<'a> {
    cluster_id: &'a str,
    trust_domain: &'a str,
    network: &'a str,
}

/// A WorkloadEntry-shaped endpoint as a workload, as istiod builds it: always Healthy, no node,
/// locality from `locality`, network from `network`, else its label, else the cluster's.
fn entry_workload(
    base: &EntryBase<'_>,
    endpoint: &Endpoint<'_>,
    backed: &[&Backend<'_>],
    warnings: &mut Vec<String>,
) -> Result<Option<LocalWorkload>, MeshError> {
    let (what, spec) = (&endpoint.what, endpoint.spec);
    let Ok(ip) = spec.address.parse::<IpAddr>() else {
        warnings.push(format!(
            "{what}: field `{}.address` is {:?}, not an IP address: ztunnel needs one to reach \
             the workload, so it is skipped",
            endpoint.field, spec.address
        ));
        return Ok(None);
    };
    let locality = istio::parse_locality(&spec.locality)
        .map_err(|problem| invalid(what, &format!("{}.locality", endpoint.field), problem))?;
    let own_port = |name: &str| {
        spec.ports
            .get(name)
            .map(|p| port_number(what, &format!("{}.ports.{name}", endpoint.field), *p))
            .transpose()
    };
    let services = backed_services(
        what,
        backed,
        &format!("port in `{}.ports`", endpoint.field),
        |backend, rule| match (&backend.entry, rule.target) {
            // A ServiceEntry's endpoints map its port names to their own ports.
            (Some(_), PortTarget::Number(n)) => Ok(Some(own_port(rule.name)?.unwrap_or(n))),
            (None, PortTarget::Number(n)) => Ok(Some(n)),
            (_, PortTarget::Named(name)) => own_port(name),
        },
        warnings,
    )?;
    let network = [spec.network.as_str()]
        .into_iter()
        .chain(endpoint.labels.get(NETWORK_LABEL).map(String::as_str))
        .find(|n| !n.is_empty())
        .unwrap_or(base.network);
    Ok(Some(LocalWorkload {
        uid: endpoint.uid.clone(),
        name: endpoint.name.clone(),
        namespace: endpoint.namespace.to_string(),
        service_account: Some(spec.service_account.as_str())
            .filter(|s| !s.is_empty())
            .unwrap_or("default")
            .to_string(),
        workload_ips: vec![ip],
        protocol: Protocol::TCP,
        node: String::new(),
        network: network.to_string(),
        cluster_id: base.cluster_id.to_string(),
        trust_domain: base.trust_domain.to_string(),
        workload_name: endpoint.name.clone(),
        hostname: String::new(),
        status: HealthStatus::Healthy,
        capacity: 1,
        locality,
        services,
    }))
}

/// The `services` of a workload: the port map of each service that selects it. `target` says
/// on which port the workload serves a service port (`None`: it has no `missing` of that name,
/// so it does not serve that port, as istiod leaves it out).
fn backed_services(
    what: &str,
    backed: &[&Backend<'_>],
    missing: &str,
    target: impl Fn(&Backend<'_>, &PortRule<'_>) -> Result<Option<u16>, MeshError>,
    warnings: &mut Vec<String>,
) -> Result<BTreeMap<String, BTreeMap<u16, u16>>, MeshError> {
    let mut services = BTreeMap::new();
    for backend in backed {
        let mut ports = BTreeMap::new();
        for rule in &backend.ports {
            match target(backend, rule)? {
                Some(port) => {
                    ports.insert(rule.port, port);
                }
                None => warnings.push(format!(
                    "{what}: has no {missing} named {:?} (targetPort of port {} of {}): it does \
                     not serve that port",
                    rule.target_name(),
                    rule.port,
                    backend.what
                )),
            }
        }
        services.insert(backend.key.clone(), ports);
    }
    Ok(services)
}

fn is_tcp(port: &ServicePort) -> bool {
    matches!(port.protocol.as_deref(), None | Some("TCP"))
}

/// The number of a pod's container port of that name.
fn container_port(pod: &Pod, name: &str) -> Option<u16> {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some(name))
        .and_then(|p| u16::try_from(p.container_port).ok())
}

fn pod_ips(pod: &Pod, what: &str) -> Result<Vec<IpAddr>, MeshError> {
    let status = pod.status.as_ref();
    let listed: Vec<(&str, &str)> = match status
        .and_then(|s| s.pod_ips.as_ref())
        .filter(|v| !v.is_empty())
    {
        Some(ips) => ips
            .iter()
            .map(|p| ("status.podIPs", p.ip.as_str()))
            .collect(),
        None => status
            .and_then(|s| s.pod_ip.as_deref())
            .filter(|ip| !ip.is_empty())
            .map(|ip| ("status.podIP", ip))
            .into_iter()
            .collect(),
    };
    listed
        .into_iter()
        .map(|(field, ip)| {
            ip.parse::<IpAddr>().map_err(|e| {
                invalid(
                    what,
                    field,
                    format_args!("has {ip:?}, not an IP address ({e})"),
                )
            })
        })
        .collect()
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn node_locality(node: &Node) -> Locality {
    let get = |key| label(&node.metadata, key).unwrap_or_default().to_string();
    Locality {
        region: get(REGION_LABEL),
        zone: get(ZONE_LABEL),
        subzone: get(SUBZONE_LABEL),
    }
}

/// The `app` label, else the owning Deployment (through its ReplicaSet), else the pod's name.
fn workload_name(pod: &Pod) -> String {
    if let Some(app) = label(&pod.metadata, "app").filter(|a| !a.is_empty()) {
        return app.to_string();
    }
    for owner in pod.metadata.owner_references.iter().flatten() {
        match owner.kind.as_str() {
            "Deployment" => return owner.name.clone(),
            "ReplicaSet" => {
                // A Deployment names its ReplicaSets `<deployment>-<pod-template-hash>`.
                let hash = label(&pod.metadata, "pod-template-hash");
                if let Some((deployment, suffix)) = owner.name.rsplit_once('-')
                    && hash.is_none_or(|h| h == suffix)
                {
                    return deployment.to_string();
                }
            }
            _ => {}
        }
    }
    pod.metadata.name.clone().unwrap_or_default()
}

/// Builders of Kubernetes objects over sensible defaults, so translation tests read as tables.
/// Public so that driver and step tests can build snapshots the same way.
pub mod testing {
    use k8s_openapi::api::core::v1::{
        Container, ContainerPort, PodCondition, PodIP, PodSpec, PodStatus, ServiceSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    use super::*;

    fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_string()),
            namespace: namespace.map(str::to_string),
            ..Default::default()
        }
    }

    fn insert(map: &mut Option<BTreeMap<String, String>>, key: &str, value: &str) {
        map.get_or_insert_default()
            .insert(key.to_string(), value.to_string());
    }

    /// A snapshot of cluster `cluster1`, trust domain `cluster.local`, with namespace `httpbin`
    /// in the ambient mesh and nothing else.
    pub fn snapshot() -> ClusterSnapshot {
        ClusterSnapshot {
            cluster_id: "cluster1".into(),
            trust_domain: "cluster.local".into(),
            namespaces: vec![namespace("httpbin").ambient().build()],
            ..Default::default()
        }
    }

    pub struct NamespaceBuilder(Namespace);

    pub fn namespace(name: &str) -> NamespaceBuilder {
        NamespaceBuilder(Namespace {
            metadata: meta(name, None),
            ..Default::default()
        })
    }

    impl NamespaceBuilder {
        pub fn label(mut self, key: &str, value: &str) -> Self {
            insert(&mut self.0.metadata.labels, key, value);
            self
        }
        pub fn ambient(self) -> Self {
            self.label(DATAPLANE_MODE_LABEL, "ambient")
        }
        /// For `istio-system`: the mesh's network.
        pub fn network(self, network: &str) -> Self {
            self.label(NETWORK_LABEL, network)
        }
        pub fn build(self) -> Namespace {
            self.0
        }
    }

    pub struct NodeBuilder(Node);

    pub fn node(name: &str) -> NodeBuilder {
        NodeBuilder(Node {
            metadata: meta(name, None),
            ..Default::default()
        })
    }

    impl NodeBuilder {
        pub fn label(mut self, key: &str, value: &str) -> Self {
            insert(&mut self.0.metadata.labels, key, value);
            self
        }
        pub fn region(self, region: &str) -> Self {
            self.label(REGION_LABEL, region)
        }
        pub fn zone(self, zone: &str) -> Self {
            self.label(ZONE_LABEL, zone)
        }
        pub fn subzone(self, subzone: &str) -> Self {
            self.label(SUBZONE_LABEL, subzone)
        }
        pub fn build(self) -> Node {
            self.0
        }
    }

    /// A pod in `httpbin` with IP 10.244.0.10, ready, on no node, with no labels.
    pub struct PodBuilder(Pod);

    pub fn pod(name: &str) -> PodBuilder {
        PodBuilder(Pod {
            metadata: meta(name, Some("httpbin")),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "app".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                pod_ip: Some("10.244.0.10".into()),
                ..Default::default()
            }),
        })
        .ready(true)
    }

    impl From<Pod> for PodBuilder {
        fn from(pod: Pod) -> Self {
            PodBuilder(pod)
        }
    }

    impl PodBuilder {
        fn spec(&mut self) -> &mut PodSpec {
            self.0.spec.get_or_insert_default()
        }
        fn status(&mut self) -> &mut PodStatus {
            self.0.status.get_or_insert_default()
        }
        pub fn namespace(mut self, namespace: &str) -> Self {
            self.0.metadata.namespace = Some(namespace.into());
            self
        }
        pub fn label(mut self, key: &str, value: &str) -> Self {
            insert(&mut self.0.metadata.labels, key, value);
            self
        }
        pub fn app(self, app: &str) -> Self {
            self.label("app", app)
        }
        pub fn node(mut self, node: &str) -> Self {
            self.spec().node_name = Some(node.into());
            self
        }
        pub fn service_account(mut self, sa: &str) -> Self {
            self.spec().service_account_name = Some(sa.into());
            self
        }
        /// Sets `status.podIP` and clears `status.podIPs`.
        pub fn ip(mut self, ip: &str) -> Self {
            self.status().pod_ip = Some(ip.into());
            self.status().pod_ips = None;
            self
        }
        /// Sets `status.podIPs` (dual stack).
        pub fn ips(mut self, ips: &[&str]) -> Self {
            self.status().pod_ips =
                Some(ips.iter().map(|ip| PodIP { ip: ip.to_string() }).collect());
            self
        }
        pub fn no_ip(mut self) -> Self {
            self.status().pod_ip = None;
            self.status().pod_ips = None;
            self
        }
        pub fn ready(mut self, ready: bool) -> Self {
            let condition = PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..Default::default()
            };
            self.status().conditions = Some(vec![condition]);
            self
        }
        pub fn phase(mut self, phase: &str) -> Self {
            self.status().phase = Some(phase.into());
            self
        }
        pub fn container_port(mut self, name: &str, port: i32) -> Self {
            let container = &mut self.spec().containers[0];
            container.ports.get_or_insert_default().push(ContainerPort {
                name: Some(name.into()),
                container_port: port,
                ..Default::default()
            });
            self
        }
        pub fn owner(mut self, kind: &str, name: &str) -> Self {
            self.0
                .metadata
                .owner_references
                .get_or_insert_default()
                .push(OwnerReference {
                    api_version: if kind == "Deployment" || kind == "ReplicaSet" {
                        "apps/v1"
                    } else {
                        "v1"
                    }
                    .into(),
                    kind: kind.into(),
                    name: name.into(),
                    uid: format!("uid-{name}"),
                    ..Default::default()
                });
            self
        }
        pub fn build(self) -> Pod {
            self.0
        }
    }

    /// A service in `httpbin` with cluster IP 10.96.0.10, no ports and no selector.
    pub struct ServiceBuilder(Service);

    pub fn service(name: &str) -> ServiceBuilder {
        ServiceBuilder(Service {
            metadata: meta(name, Some("httpbin")),
            spec: Some(ServiceSpec {
                cluster_ip: Some("10.96.0.10".into()),
                ..Default::default()
            }),
            status: None,
        })
    }

    impl From<Service> for ServiceBuilder {
        fn from(service: Service) -> Self {
            ServiceBuilder(service)
        }
    }

    impl ServiceBuilder {
        fn spec(&mut self) -> &mut ServiceSpec {
            self.0.spec.get_or_insert_default()
        }
        pub fn namespace(mut self, namespace: &str) -> Self {
            self.0.metadata.namespace = Some(namespace.into());
            self
        }
        pub fn cluster_ip(mut self, ip: &str) -> Self {
            self.spec().cluster_ip = Some(ip.into());
            self
        }
        pub fn cluster_ips(mut self, ips: &[&str]) -> Self {
            self.spec().cluster_ips = Some(ips.iter().map(|s| s.to_string()).collect());
            self
        }
        pub fn selector(mut self, key: &str, value: &str) -> Self {
            insert(&mut self.spec().selector, key, value);
            self
        }
        pub fn port(mut self, port: i32, target: i32) -> Self {
            self.spec().ports.get_or_insert_default().push(ServicePort {
                port,
                target_port: Some(IntOrString::Int(target)),
                ..Default::default()
            });
            self
        }
        pub fn named_port(mut self, port: i32, target: &str) -> Self {
            self.spec().ports.get_or_insert_default().push(ServicePort {
                port,
                target_port: Some(IntOrString::String(target.into())),
                ..Default::default()
            });
            self
        }
        pub fn udp_port(mut self, port: i32) -> Self {
            self.spec().ports.get_or_insert_default().push(ServicePort {
                port,
                protocol: Some("UDP".into()),
                ..Default::default()
            });
            self
        }
        pub fn internal_traffic_policy(mut self, policy: &str) -> Self {
            self.spec().internal_traffic_policy = Some(policy.into());
            self
        }
        pub fn traffic_distribution(mut self, value: &str) -> Self {
            self.spec().traffic_distribution = Some(value.into());
            self
        }
        pub fn annotation(mut self, value: &str) -> Self {
            insert(
                &mut self.0.metadata.annotations,
                TRAFFIC_DISTRIBUTION_ANNOTATION,
                value,
            );
            self
        }
        pub fn build(self) -> Service {
            self.0
        }
    }

    /// A ServiceEntry in `httpbin`: MESH_INTERNAL, STATIC, host `<name>.mesh.example`,
    /// address 10.96.1.10, no ports, no endpoints, no annotation.
    pub struct ServiceEntryBuilder(ServiceEntry);

    pub fn service_entry(name: &str) -> ServiceEntryBuilder {
        ServiceEntryBuilder(ServiceEntry::new(
            meta(name, Some("httpbin")),
            crate::istio::ServiceEntrySpec {
                hosts: vec![format!("{name}.mesh.example")],
                addresses: vec!["10.96.1.10".into()],
                location: Location::MeshInternal,
                resolution: Resolution::Static,
                ..Default::default()
            },
        ))
    }

    impl ServiceEntryBuilder {
        pub fn namespace(mut self, namespace: &str) -> Self {
            self.0.metadata.namespace = Some(namespace.into());
            self
        }
        pub fn hosts(mut self, hosts: &[&str]) -> Self {
            self.0.spec.hosts = hosts.iter().map(|h| h.to_string()).collect();
            self
        }
        /// Replaces `spec.addresses`; no addresses leaves the entry to allocation.
        pub fn addresses(mut self, addresses: &[&str]) -> Self {
            self.0.spec.addresses = addresses.iter().map(|a| a.to_string()).collect();
            self
        }
        /// An address in `status.addresses`, as auto-allocation writes it.
        pub fn allocated(mut self, host: &str, address: &str) -> Self {
            let status = self.0.status.get_or_insert_default();
            status.addresses.push(crate::istio::ServiceEntryAddress {
                value: address.into(),
                host: host.into(),
            });
            self
        }
        pub fn port(mut self, number: u32, name: &str, target: Option<u32>) -> Self {
            self.0.spec.ports.push(crate::istio::ServiceEntryPort {
                number,
                name: name.into(),
                target_port: target,
                protocol: Some("TCP".into()),
            });
            self
        }
        pub fn udp_port(mut self, number: u32) -> Self {
            self.0.spec.ports.push(crate::istio::ServiceEntryPort {
                number,
                name: format!("udp-{number}"),
                protocol: Some("UDP".into()),
                target_port: None,
            });
            self
        }
        pub fn selector(mut self, key: &str, value: &str) -> Self {
            let selector = self.0.spec.workload_selector.get_or_insert_default();
            selector.labels.insert(key.into(), value.into());
            self
        }
        pub fn endpoint(mut self, endpoint: WorkloadEntrySpec) -> Self {
            self.0.spec.endpoints.push(endpoint);
            self
        }
        pub fn location(mut self, location: Location) -> Self {
            self.0.spec.location = location;
            self
        }
        pub fn resolution(mut self, resolution: Resolution) -> Self {
            self.0.spec.resolution = resolution;
            self
        }
        pub fn annotation(mut self, value: &str) -> Self {
            insert(
                &mut self.0.metadata.annotations,
                TRAFFIC_DISTRIBUTION_ANNOTATION,
                value,
            );
            self
        }
        pub fn build(self) -> ServiceEntry {
            self.0
        }
    }

    /// A WorkloadEntry in `httpbin` with address 10.244.9.9 and nothing else.
    pub struct WorkloadEntryBuilder(WorkloadEntry);

    pub fn workload_entry(name: &str) -> WorkloadEntryBuilder {
        WorkloadEntryBuilder(WorkloadEntry::new(
            meta(name, Some("httpbin")),
            WorkloadEntrySpec {
                address: "10.244.9.9".into(),
                ..Default::default()
            },
        ))
    }

    impl WorkloadEntryBuilder {
        pub fn namespace(mut self, namespace: &str) -> Self {
            self.0.metadata.namespace = Some(namespace.into());
            self
        }
        pub fn address(mut self, address: &str) -> Self {
            self.0.spec.address = address.into();
            self
        }
        /// A label in `spec.labels`.
        pub fn label(mut self, key: &str, value: &str) -> Self {
            self.0.spec.labels.insert(key.into(), value.into());
            self
        }
        /// A label in `metadata.labels`.
        pub fn object_label(mut self, key: &str, value: &str) -> Self {
            insert(&mut self.0.metadata.labels, key, value);
            self
        }
        pub fn app(self, app: &str) -> Self {
            self.label("app", app)
        }
        pub fn locality(mut self, locality: &str) -> Self {
            self.0.spec.locality = locality.into();
            self
        }
        pub fn network(mut self, network: &str) -> Self {
            self.0.spec.network = network.into();
            self
        }
        pub fn port(mut self, name: &str, number: u32) -> Self {
            self.0.spec.ports.insert(name.into(), number);
            self
        }
        pub fn service_account(mut self, sa: &str) -> Self {
            self.0.spec.service_account = sa.into();
            self
        }
        /// The spec alone: an inline endpoint of a ServiceEntry.
        pub fn spec(self) -> WorkloadEntrySpec {
            self.0.spec
        }
        pub fn build(self) -> WorkloadEntry {
            self.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use RoutingPreference::*;
    use TrafficDistribution as TD;
    use rstest::rstest;

    /// `None` leaves the setting unset.
    fn svc(itp: Option<&str>, spec: Option<&str>, annotation: Option<&str>) -> Service {
        let mut b = service("in-ambient");
        if let Some(v) = itp {
            b = b.internal_traffic_policy(v);
        }
        if let Some(v) = spec {
            b = b.traffic_distribution(v);
        }
        if let Some(v) = annotation {
            b = b.annotation(v);
        }
        b.build()
    }

    #[rstest]
    // internalTrafficPolicy Local beats everything.
    #[case::itp_beats_spec(
        Some("Local"),
        Some("PreferClose"),
        Some("Any"),
        Profile::Istio,
        TD::NodeLocal,
        Source::InternalTrafficPolicy
    )]
    #[case::itp_beats_bad_values_solo(
        Some("Local"),
        Some("Bogus"),
        Some("Bogus"),
        Profile::Solo,
        TD::NodeLocal,
        Source::InternalTrafficPolicy
    )]
    #[case::itp_cluster_is_no_preference(
        Some("Cluster"),
        None,
        None,
        Profile::Istio,
        TD::Any,
        Source::Default
    )]
    // spec beats the annotation.
    #[case::spec_beats_annotation_istio(
        None,
        Some("PreferSameNode"),
        Some("Any"),
        Profile::Istio,
        TD::PreferSameNode,
        Source::Spec
    )]
    #[case::spec_beats_annotation_solo(
        None,
        Some("PreferClose"),
        Some("PreferNetwork"),
        Profile::Solo,
        TD::PreferClose,
        Source::Spec
    )]
    #[case::spec_same_zone(
        None,
        Some("PreferSameZone"),
        None,
        Profile::Istio,
        TD::PreferClose,
        Source::Spec
    )]
    #[case::empty_spec_is_unset(
        None,
        Some(""),
        Some("PreferSameNode"),
        Profile::Istio,
        TD::PreferSameNode,
        Source::Annotation
    )]
    // the annotation beats the default.
    #[case::annotation_close_istio(
        None,
        None,
        Some("PreferClose"),
        Profile::Istio,
        TD::PreferClose,
        Source::Annotation
    )]
    #[case::annotation_same_zone_solo(
        None,
        None,
        Some("PreferSameZone"),
        Profile::Solo,
        TD::PreferClose,
        Source::Annotation
    )]
    #[case::annotation_same_node(
        None,
        None,
        Some("PreferSameNode"),
        Profile::Solo,
        TD::PreferSameNode,
        Source::Annotation
    )]
    #[case::annotation_any_solo(
        None,
        None,
        Some("Any"),
        Profile::Solo,
        TD::Any,
        Source::Annotation
    )]
    #[case::annotation_network_solo(
        None,
        None,
        Some("PreferNetwork"),
        Profile::Solo,
        TD::PreferNetwork,
        Source::Annotation
    )]
    #[case::annotation_region_solo(
        None,
        None,
        Some("PreferRegion"),
        Profile::Solo,
        TD::PreferRegion,
        Source::Annotation
    )]
    // istio treats unknown values, including the Solo ones, as Any.
    #[case::annotation_network_istio(
        None,
        None,
        Some("PreferNetwork"),
        Profile::Istio,
        TD::Any,
        Source::Annotation
    )]
    #[case::annotation_region_istio(
        None,
        None,
        Some("PreferRegion"),
        Profile::Istio,
        TD::Any,
        Source::Annotation
    )]
    #[case::annotation_bogus_istio(
        None,
        None,
        Some("Bogus"),
        Profile::Istio,
        TD::Any,
        Source::Annotation
    )]
    #[case::spec_bogus_istio(
        None,
        Some("PreferNetwork"),
        None,
        Profile::Istio,
        TD::Any,
        Source::Spec
    )]
    // defaults.
    #[case::default_istio(None, None, None, Profile::Istio, TD::Any, Source::Default)]
    #[case::default_solo(None, None, None, Profile::Solo, TD::PreferNetwork, Source::Default)]
    fn precedence(
        #[case] itp: Option<&str>,
        #[case] spec: Option<&str>,
        #[case] annotation: Option<&str>,
        #[case] profile: Profile,
        #[case] expected: TrafficDistribution,
        #[case] source: Source,
    ) {
        let got = traffic_distribution(&svc(itp, spec, annotation), profile).unwrap();
        assert_eq!(got, (expected, source));
    }

    #[rstest]
    #[case::node_local(TD::NodeLocal, Some((vec![Node], LoadBalancerMode::Strict)))]
    #[case::close(TD::PreferClose, Some((vec![Network, Region, Zone], LoadBalancerMode::Failover)))]
    #[case::same_node(TD::PreferSameNode, Some((vec![Network, Region, Zone, Subzone, Node], LoadBalancerMode::Failover)))]
    #[case::network(TD::PreferNetwork, Some((vec![Network], LoadBalancerMode::Failover)))]
    #[case::region(TD::PreferRegion, Some((vec![Network, Region], LoadBalancerMode::Failover)))]
    #[case::any(TD::Any, None)]
    fn modes(
        #[case] distribution: TrafficDistribution,
        #[case] expected: Option<(Vec<RoutingPreference>, LoadBalancerMode)>,
    ) {
        let expected = expected.map(|(routing_preferences, mode)| LoadBalancer {
            routing_preferences,
            mode,
            health_policy: HealthPolicy::OnlyHealthy,
        });
        assert_eq!(load_balancer(distribution), expected);
    }

    #[rstest]
    #[case::spec(
        None,
        Some("PreferNetwork"),
        "`spec.trafficDistribution` is \"PreferNetwork\""
    )]
    #[case::annotation(
        None,
        None,
        "`metadata.annotations[networking.istio.io/traffic-distribution]` is \"Nearby\""
    )]
    fn solo_refuses_unknown_values(
        #[case] itp: Option<&str>,
        #[case] spec: Option<&str>,
        #[case] fragment: &str,
    ) {
        let service = svc(itp, spec, spec.is_none().then_some("Nearby"));
        let err = traffic_distribution(&service, Profile::Solo)
            .unwrap_err()
            .to_string();
        assert!(err.contains("Service httpbin/in-ambient"), "{err}");
        assert!(err.contains(fragment), "{err}");
        let mut snap = snapshot();
        snap.services.push(service);
        assert!(to_local_config(&snap, Profile::Solo).is_err());
    }

    #[test]
    fn istio_warns_about_unknown_values() {
        let mut snap = snapshot();
        snap.services.push(
            service("in-ambient")
                .annotation("PreferRegion")
                .port(8000, 8080)
                .build(),
        );
        let t = to_local_config(&snap, Profile::Istio).unwrap();
        assert_eq!(t.config.services[0].load_balancer, None);
        assert_eq!(t.warnings.len(), 1, "{:?}", t.warnings);
        assert!(
            t.warnings[0].contains("Service httpbin/in-ambient"),
            "{}",
            t.warnings[0]
        );
        assert!(
            t.warnings[0].contains("\"PreferRegion\""),
            "{}",
            t.warnings[0]
        );
    }

    /// The guide's setup: three in-ambient replicas and a client, in network `net1`.
    fn guide() -> ClusterSnapshot {
        let mut snap = snapshot();
        snap.namespaces
            .push(namespace(ISTIO_SYSTEM).network("net1").build());
        snap.nodes
            .push(node("node-a").region("r1").zone("z1").build());
        snap.services.push(
            service("in-ambient")
                .port(8000, 8080)
                .selector("app", "in-ambient")
                .build(),
        );
        for (i, name) in ["in-ambient-1", "in-ambient-2", "in-ambient-3"]
            .iter()
            .enumerate()
        {
            snap.pods.push(
                pod(name)
                    .app("in-ambient")
                    .service_account("in-ambient")
                    .node("node-a")
                    .ip(&format!("10.244.1.{}", 11 + i))
                    .build(),
            );
        }
        snap.pods.push(
            pod("client-in-ambient-1")
                .app("client-in-ambient")
                .node("node-a")
                .ip("10.244.1.2")
                .build(),
        );
        snap
    }

    #[test]
    fn the_guide_translates_to_the_design_example() {
        let t = to_local_config(&guide(), Profile::Solo).unwrap();
        assert!(t.warnings.is_empty(), "{:?}", t.warnings);
        let config = t.config;
        config.validate().unwrap();
        assert_eq!(config.services.len(), 1);
        let s = &config.services[0];
        assert_eq!(s.hostname, "in-ambient.httpbin.svc.cluster.local");
        assert_eq!(s.vips[0].to_string(), "net1/10.96.0.10");
        assert_eq!(s.ports, BTreeMap::from([(8000, 8080)]));
        assert_eq!(s.load_balancer, load_balancer(TD::PreferNetwork));
        let uids: Vec<&str> = config.workloads.iter().map(|w| w.uid.as_str()).collect();
        assert_eq!(
            uids,
            [
                "cluster1//v1/Pod/httpbin/client-in-ambient-1",
                "cluster1//v1/Pod/httpbin/in-ambient-1",
                "cluster1//v1/Pod/httpbin/in-ambient-2",
                "cluster1//v1/Pod/httpbin/in-ambient-3",
            ]
        );
        let w = &config.workloads[1];
        assert_eq!(w.name, "in-ambient-1");
        assert_eq!(w.service_account, "in-ambient");
        assert_eq!(w.workload_ips, ["10.244.1.11".parse::<IpAddr>().unwrap()]);
        assert_eq!(w.network, "net1");
        assert_eq!(w.cluster_id, "cluster1");
        assert_eq!(w.trust_domain, "cluster.local");
        assert_eq!(w.workload_name, "in-ambient");
        assert_eq!(w.status, HealthStatus::Healthy);
        assert_eq!(
            w.locality,
            Locality {
                region: "r1".into(),
                zone: "z1".into(),
                subzone: String::new()
            }
        );
        assert_eq!(
            w.services,
            BTreeMap::from([(
                "httpbin/in-ambient.httpbin.svc.cluster.local".to_string(),
                BTreeMap::from([(8000, 8080)])
            )])
        );
        // The client backs no service and has the default service account.
        assert!(config.workloads[0].services.is_empty());
        assert_eq!(config.workloads[0].service_account, "default");
        // And the YAML written for ztunnel reads back as the same config.
        assert_eq!(LocalConfig::parse(&config.to_yaml(), "t").unwrap(), config);
    }

    #[test]
    fn output_does_not_depend_on_input_order() {
        let mut reversed = guide();
        reversed.pods.reverse();
        reversed
            .services
            .push(service("b-svc").cluster_ip("10.96.0.11").build());
        let mut forward = guide();
        forward
            .services
            .insert(0, service("b-svc").cluster_ip("10.96.0.11").build());
        let a = to_local_config(&forward, Profile::Istio).unwrap();
        let b = to_local_config(&reversed, Profile::Istio).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.config.services[0].name, "b-svc");
    }

    #[rstest]
    #[case::all_labels(node("n1").region("r1").zone("z1").subzone("s1"), ("r1", "z1", "s1"))]
    #[case::no_subzone(node("n1").region("r1").zone("z2"), ("r1", "z2", ""))]
    #[case::no_labels(node("n1"), ("", "", ""))]
    #[case::other_node(node("n2").region("r9"), ("", "", ""))]
    fn locality_from_node_labels(#[case] n: NodeBuilder, #[case] expected: (&str, &str, &str)) {
        let mut snap = snapshot();
        snap.nodes.push(n.build());
        snap.pods.push(pod("p").node("n1").build());
        let t = to_local_config(&snap, Profile::Istio).unwrap();
        let l = &t.config.workloads[0].locality;
        assert_eq!(
            (l.region.as_str(), l.zone.as_str(), l.subzone.as_str()),
            expected
        );
    }

    #[test]
    fn a_missing_node_is_a_warning() {
        let mut snap = snapshot();
        snap.pods.push(pod("p").node("ghost").build());
        let t = to_local_config(&snap, Profile::Istio).unwrap();
        assert_eq!(t.config.workloads[0].node, "ghost");
        assert!(
            t.warnings[0].contains("Pod httpbin/p") && t.warnings[0].contains("ghost"),
            "{:?}",
            t.warnings
        );
    }

    #[rstest]
    #[case::ready(pod("p").ready(true), HealthStatus::Healthy)]
    #[case::not_ready(pod("p").ready(false), HealthStatus::Unhealthy)]
    #[case::no_conditions(PodBuilder::from(Pod { status: Some(k8s_openapi::api::core::v1::PodStatus { pod_ip: Some("10.0.0.1".into()), ..Default::default() }), ..pod("p").build() }), HealthStatus::Unhealthy)]
    fn readiness_is_status(#[case] p: PodBuilder, #[case] expected: HealthStatus) {
        let mut snap = snapshot();
        snap.pods.push(p.build());
        let t = to_local_config(&snap, Profile::Istio).unwrap();
        assert_eq!(t.config.workloads[0].status, expected);
    }

    #[rstest]
    #[case::matches(service("s").selector("app", "a"), pod("p").app("a"), true)]
    #[case::subset(service("s").selector("app", "a"), pod("p").app("a").label("version", "v1"), true)]
    #[case::all_pairs(service("s").selector("app", "a").selector("version", "v2"), pod("p").app("a").label("version", "v1"), false)]
    #[case::other_value(service("s").selector("app", "a"), pod("p").app("b"), false)]
    #[case::empty_selector(service("s"), pod("p").app("a"), false)]
    #[case::other_namespace(service("s").selector("app", "a").namespace("other"), pod("p").app("a"), false)]
    fn selector_matching(#[case] s: ServiceBuilder, #[case] p: PodBuilder, #[case] selected: bool) {
        let mut snap = snapshot();
        snap.namespaces.push(namespace("other").ambient().build());
        snap.services.push(s.port(80, 8080).build());
        snap.pods.push(p.build());
        let t = to_local_config(&snap, Profile::Istio).unwrap();
        assert_eq!(!t.config.workloads[0].services.is_empty(), selected);
        t.config.validate().unwrap();
    }

    #[test]
    fn named_target_port_is_resolved_per_pod() {
        let mut snap = snapshot();
        snap.services.push(
            service("s")
                .selector("app", "a")
                .named_port(80, "http")
                .port(81, 9000)
                .build(),
        );
        snap.pods.push(
            pod("p1")
                .app("a")
                .container_port("http", 8080)
                .ip("10.0.0.1")
                .build(),
        );
        snap.pods.push(
            pod("p2")
                .app("a")
                .container_port("http", 9090)
                .ip("10.0.0.2")
                .build(),
        );
        snap.pods.push(pod("p3").app("a").ip("10.0.0.3").build());
        let t = to_local_config(&snap, Profile::Istio).unwrap();
        let key = "httpbin/s.httpbin.svc.cluster.local";
        assert_eq!(
            t.config.services[0].ports,
            BTreeMap::from([(80, 0), (81, 9000)])
        );
        let ports: Vec<&BTreeMap<u16, u16>> = t
            .config
            .workloads
            .iter()
            .map(|w| &w.services[key])
            .collect();
        assert_eq!(ports[0], &BTreeMap::from([(80, 8080), (81, 9000)]));
        assert_eq!(ports[1], &BTreeMap::from([(80, 9090), (81, 9000)]));
        assert_eq!(ports[2], &BTreeMap::from([(81, 9000)]));
        assert_eq!(t.warnings.len(), 1, "{:?}", t.warnings);
        assert!(t.warnings[0].contains("Pod httpbin/p3") && t.warnings[0].contains("\"http\""));
    }

    #[test]
    fn only_ambient_namespaces_are_in_the_mesh() {
        let mut snap = snapshot();
        snap.namespaces.push(namespace("plain").build());
        snap.services.push(
            service("s")
                .namespace("plain")
                .selector("app", "a")
                .port(80, 80)
                .build(),
        );
        snap.pods
            .push(pod("outside").namespace("plain").app("a").build());
        snap.pods
            .push(pod("nowhere").namespace("unknown-ns").build());
        snap.pods
            .push(pod("opted-out").label(DATAPLANE_MODE_LABEL, "none").build());
        snap.pods.push(pod("done").phase("Succeeded").build());
        snap.pods.push(pod("inside").build());
        let t = to_local_config(&snap, Profile::Istio).unwrap();
        let names: Vec<&str> = t.config.workloads.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(names, ["inside"]);
        assert!(t.config.services.is_empty());
    }

    #[rstest]
    #[case::label(pod("in-ambient-7d8f9b6c54-abc12").app("httpbin"), "httpbin")]
    #[case::replica_set(pod("in-ambient-7d8f9b6c54-abc12").label("pod-template-hash", "7d8f9b6c54").owner("ReplicaSet", "in-ambient-7d8f9b6c54"), "in-ambient")]
    #[case::deployment(pod("x-1").owner("Deployment", "x"), "x")]
    #[case::bare(pod("lonely"), "lonely")]
    fn workload_name_rules(#[case] p: PodBuilder, #[case] expected: &str) {
        let mut snap = snapshot();
        snap.pods.push(p.build());
        let t = to_local_config(&snap, Profile::Istio).unwrap();
        assert_eq!(t.config.workloads[0].workload_name, expected);
    }

    #[test]
    fn dual_stack_ips_and_vips() {
        let mut snap = snapshot();
        snap.services.push(
            service("s")
                .cluster_ips(&["10.96.0.10", "fd00::10"])
                .build(),
        );
        snap.pods
            .push(pod("p").ips(&["10.244.0.5", "fd00:244::5"]).build());
        let t = to_local_config(&snap, Profile::Istio).unwrap();
        let vips: Vec<String> = t.config.services[0]
            .vips
            .iter()
            .map(|v| v.to_string())
            .collect();
        assert_eq!(vips, ["/10.96.0.10", "/fd00::10"]);
        assert_eq!(t.config.workloads[0].workload_ips.len(), 2);
    }

    #[test]
    fn skipped_objects_are_warnings() {
        let mut snap = snapshot();
        snap.services
            .push(service("headless").cluster_ip("None").build());
        snap.services.push(
            service("dns")
                .cluster_ip("10.96.0.53")
                .udp_port(53)
                .port(5353, 5353)
                .build(),
        );
        snap.pods.push(pod("pending").no_ip().build());
        let t = to_local_config(&snap, Profile::Istio).unwrap();
        assert_eq!(t.config.services.len(), 1);
        assert_eq!(t.config.services[0].ports, BTreeMap::from([(5353, 5353)]));
        assert!(t.config.workloads.is_empty());
        let joined = t.warnings.join("\n");
        for fragment in [
            "Service httpbin/headless",
            "port 53 is UDP",
            "Pod httpbin/pending",
        ] {
            assert!(joined.contains(fragment), "{joined}");
        }
    }

    #[rstest]
    #[case::no_cluster_ip(service("s").build_without_ip(), "Service httpbin/s: field `spec.clusterIP`")]
    #[case::bad_cluster_ip(service("s").cluster_ip("10.96.0.x"), "Service httpbin/s: field `spec.clusterIPs` has \"10.96.0.x\"")]
    #[case::bad_port(service("s").port(70000, 80), "Service httpbin/s: field `spec.ports[0].port` is 70000")]
    #[case::bad_target(service("s").port(80, 0), "Service httpbin/s: field `spec.ports[0].targetPort` is 0")]
    fn service_errors_name_object_and_field(#[case] s: ServiceBuilder, #[case] fragment: &str) {
        let mut snap = snapshot();
        snap.services.push(s.build());
        let err = to_local_config(&snap, Profile::Istio)
            .unwrap_err()
            .to_string();
        assert!(err.contains(fragment), "{err}");
    }

    #[test]
    fn pod_errors_name_object_and_field() {
        let mut snap = snapshot();
        snap.pods.push(pod("p").ip("300.1.1.1").build());
        let err = to_local_config(&snap, Profile::Istio)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("Pod httpbin/p: field `status.podIP` has \"300.1.1.1\""),
            "{err}"
        );
    }

    /// Every combination of the three settings, both profiles: the defect changes the result
    /// exactly where both spec and annotation are set (and internalTrafficPolicy is not Local),
    /// and there the annotation wins.
    #[test]
    fn wrong_precedence_flips_exactly_the_spec_versus_annotation_rows() {
        let wrong: Defects = [Defect::WrongPrecedence].into_iter().collect();
        let mut flipped = 0;
        for itp in [None, Some("Local"), Some("Cluster")] {
            for spec in [None, Some(""), Some("PreferClose"), Some("PreferSameNode")] {
                for annotation in [
                    None,
                    Some("Any"),
                    Some("PreferSameNode"),
                    Some("PreferClose"),
                ] {
                    for profile in [Profile::Istio, Profile::Solo] {
                        let service = svc(itp, spec, annotation);
                        let right =
                            resolve_distribution(&service, profile, &Defects::none()).unwrap();
                        let got = resolve_distribution(&service, profile, &wrong).unwrap();
                        let conflict = itp != Some("Local")
                            && spec.is_some_and(|s| !s.is_empty())
                            && annotation.is_some();
                        let row = format!("{itp:?} {spec:?} {annotation:?} {profile}");
                        if conflict {
                            let annotation_only =
                                traffic_distribution(&svc(itp, None, annotation), profile).unwrap();
                            assert_eq!((got.distribution, got.source), annotation_only, "{row}");
                            flipped += usize::from(got.distribution != right.distribution);
                        } else {
                            assert_eq!(
                                (got.distribution, got.source),
                                (right.distribution, right.source),
                                "{row}"
                            );
                        }
                    }
                }
            }
        }
        // Rows where spec and annotation name different modes: each of the 2 spec values
        // against the 2 other annotation values, for itp unset and Cluster, in both profiles.
        assert_eq!(flipped, 2 * 2 * 2 * 2);
    }

    #[test]
    fn the_defect_reaches_the_translated_service() {
        let mut snap = snapshot();
        snap.services.push(
            service("in-ambient")
                .traffic_distribution("PreferClose")
                .annotation("PreferSameNode")
                .build(),
        );
        let wrong: Defects = [Defect::WrongPrecedence].into_iter().collect();
        let right = to_local_config(&snap, Profile::Istio).unwrap();
        let broken = to_local_config_with(&snap, Profile::Istio, &wrong).unwrap();
        assert_eq!(
            right.config.services[0].load_balancer,
            load_balancer(TD::PreferClose)
        );
        assert_eq!(
            broken.config.services[0].load_balancer,
            load_balancer(TD::PreferSameNode)
        );
    }

    #[rstest]
    #[case::close_istio(
        Some("PreferClose"),
        Profile::Istio,
        TD::PreferClose,
        Source::Annotation
    )]
    #[case::same_zone_solo(
        Some("PreferSameZone"),
        Profile::Solo,
        TD::PreferClose,
        Source::Annotation
    )]
    #[case::same_node_istio(
        Some("PreferSameNode"),
        Profile::Istio,
        TD::PreferSameNode,
        Source::Annotation
    )]
    #[case::any_solo(Some("Any"), Profile::Solo, TD::Any, Source::Annotation)]
    #[case::any_istio(Some("Any"), Profile::Istio, TD::Any, Source::Annotation)]
    #[case::network_solo(
        Some("PreferNetwork"),
        Profile::Solo,
        TD::PreferNetwork,
        Source::Annotation
    )]
    #[case::region_solo(
        Some("PreferRegion"),
        Profile::Solo,
        TD::PreferRegion,
        Source::Annotation
    )]
    #[case::network_istio(Some("PreferNetwork"), Profile::Istio, TD::Any, Source::Annotation)]
    #[case::region_istio(Some("PreferRegion"), Profile::Istio, TD::Any, Source::Annotation)]
    #[case::empty_is_unset(Some(""), Profile::Solo, TD::PreferNetwork, Source::Default)]
    #[case::default_istio(None, Profile::Istio, TD::Any, Source::Default)]
    #[case::default_solo(None, Profile::Solo, TD::PreferNetwork, Source::Default)]
    fn service_entries_take_the_mode_from_their_annotation(
        #[case] annotation: Option<&str>,
        #[case] profile: Profile,
        #[case] expected: TrafficDistribution,
        #[case] source: Source,
    ) {
        let mut entry = service_entry("in-ambient-se").port(80, "http", Some(8080));
        if let Some(value) = annotation {
            entry = entry.annotation(value);
        }
        let entry = entry.build();
        assert_eq!(
            service_entry_distribution(&entry, profile).unwrap(),
            (expected, source)
        );
        let mut snap = snapshot();
        snap.service_entries.push(entry);
        let t = to_local_config(&snap, profile).unwrap();
        assert_eq!(t.config.services[0].load_balancer, load_balancer(expected));
    }

    #[rstest]
    #[case::istio_warns(Profile::Istio, true)]
    #[case::solo_refuses(Profile::Solo, false)]
    fn unknown_service_entry_modes_follow_the_profile(
        #[case] profile: Profile,
        #[case] translated: bool,
    ) {
        let mut snap = snapshot();
        snap.service_entries
            .push(service_entry("se").annotation("Nearby").build());
        let fragment = "ServiceEntry httpbin/se: field \
                        `metadata.annotations[networking.istio.io/traffic-distribution]` is \"Nearby\"";
        match to_local_config(&snap, profile) {
            Ok(t) => {
                assert!(translated);
                assert_eq!(t.config.services[0].load_balancer, None);
                assert!(t.warnings[0].contains(fragment), "{:?}", t.warnings);
            }
            Err(e) => {
                assert!(!translated);
                assert!(e.to_string().contains(fragment), "{e}");
            }
        }
    }

    /// The guide with its pods also behind a ServiceEntry and a WorkloadEntry on a VM.
    fn with_entries() -> ClusterSnapshot {
        let mut snap = guide();
        snap.service_entries.push(
            service_entry("in-ambient-se")
                .hosts(&["in-ambient.mesh.example", "alias.mesh.example"])
                .addresses(&["10.96.1.10"])
                .port(80, "http", Some(8080))
                .port(81, "admin", None)
                .udp_port(53)
                .selector("app", "in-ambient")
                .build(),
        );
        snap.workload_entries.push(
            workload_entry("vm-1")
                .app("in-ambient")
                .address("10.244.9.9")
                .port("http", 9080)
                .locality("r2/z3/s4")
                .network("net2")
                .service_account("vm")
                .build(),
        );
        snap
    }

    #[test]
    fn service_entries_become_one_service_per_host() {
        let t = to_local_config(&with_entries(), Profile::Solo).unwrap();
        t.config.validate().unwrap();
        let hosts: Vec<&str> = t
            .config
            .services
            .iter()
            .map(|s| s.hostname.as_str())
            .collect();
        assert_eq!(
            hosts,
            [
                "alias.mesh.example",
                "in-ambient.httpbin.svc.cluster.local",
                "in-ambient.mesh.example"
            ]
        );
        let s = &t.config.services[2];
        assert_eq!(
            (s.name.as_str(), s.namespace.as_str()),
            ("in-ambient-se", "httpbin")
        );
        assert_eq!(s.vips[0].to_string(), "net1/10.96.1.10");
        assert_eq!(s.ports, BTreeMap::from([(80, 8080), (81, 81)]));
        assert_eq!(s.load_balancer, load_balancer(TD::PreferNetwork));
        assert!(
            t.warnings.iter().any(|w| w.contains("port 53 is UDP")),
            "{:?}",
            t.warnings
        );
        // Every in-ambient pod backs the Service and both hosts of the entry.
        let pod = t
            .config
            .workloads
            .iter()
            .find(|w| w.name == "in-ambient-1")
            .unwrap();
        assert_eq!(
            pod.services.keys().collect::<Vec<_>>(),
            [
                "httpbin/alias.mesh.example",
                "httpbin/in-ambient.httpbin.svc.cluster.local",
                "httpbin/in-ambient.mesh.example"
            ]
        );
        assert_eq!(
            pod.services["httpbin/in-ambient.mesh.example"],
            BTreeMap::from([(80, 8080), (81, 81)])
        );
    }

    #[test]
    fn workload_entries_become_workloads_that_services_and_entries_select() {
        let t = to_local_config(&with_entries(), Profile::Solo).unwrap();
        let vm = t
            .config
            .workloads
            .iter()
            .find(|w| w.name == "vm-1")
            .expect("the WorkloadEntry is a workload");
        assert_eq!(
            vm.uid,
            "cluster1//networking.istio.io/WorkloadEntry/httpbin/vm-1"
        );
        assert_eq!(vm.workload_name, "vm-1");
        assert_eq!(vm.service_account, "vm");
        assert_eq!(vm.workload_ips, ["10.244.9.9".parse::<IpAddr>().unwrap()]);
        assert_eq!(vm.status, HealthStatus::Healthy);
        assert_eq!(vm.node, "");
        assert_eq!(vm.network, "net2");
        assert_eq!(
            vm.locality,
            Locality {
                region: "r2".into(),
                zone: "z3".into(),
                subzone: "s4".into()
            }
        );
        // The Service's numeric targetPort stands; the entry's port named http maps to 9080.
        assert_eq!(
            vm.services["httpbin/in-ambient.httpbin.svc.cluster.local"],
            BTreeMap::from([(8000, 8080)])
        );
        assert_eq!(
            vm.services["httpbin/in-ambient.mesh.example"],
            BTreeMap::from([(80, 9080), (81, 81)])
        );
    }

    #[rstest]
    #[case::spec_network(workload_entry("w").network("net2").object_label(NETWORK_LABEL, "net3"), "net2")]
    #[case::object_label(workload_entry("w").object_label(NETWORK_LABEL, "net3"), "net3")]
    #[case::spec_label(workload_entry("w").label(NETWORK_LABEL, "net4"), "net4")]
    #[case::cluster_network(workload_entry("w"), "net1")]
    fn workload_entry_network(#[case] entry: WorkloadEntryBuilder, #[case] expected: &str) {
        let mut snap = on_net1();
        snap.workload_entries.push(entry.build());
        assert_eq!(the_workload(&snap).network, expected);
    }

    /// The snapshot, in the mesh network `net1`.
    fn on_net1() -> ClusterSnapshot {
        let mut snap = snapshot();
        snap.namespaces
            .push(namespace(ISTIO_SYSTEM).network("net1").build());
        snap
    }

    /// The one workload a snapshot translates to, under profile istio.
    fn the_workload(snap: &ClusterSnapshot) -> LocalWorkload {
        let t = to_local_config(snap, Profile::Istio).unwrap();
        assert_eq!(t.config.workloads.len(), 1, "{:?}", t.config.workloads);
        t.config.workloads.into_iter().next().unwrap()
    }

    #[rstest]
    #[case::full("r1/z1/s1", ("r1", "z1", "s1"))]
    #[case::region_zone("r1/z1", ("r1", "z1", ""))]
    #[case::region("r1", ("r1", "", ""))]
    #[case::none("", ("", "", ""))]
    fn workload_entry_locality(#[case] locality: &str, #[case] expected: (&str, &str, &str)) {
        let mut snap = snapshot();
        snap.workload_entries
            .push(workload_entry("w").locality(locality).build());
        let l = the_workload(&snap).locality;
        assert_eq!(
            (l.region.as_str(), l.zone.as_str(), l.subzone.as_str()),
            expected
        );
    }

    #[rstest]
    #[case::pod_label(pod("p").label(NETWORK_LABEL, "net2"), "net2")]
    #[case::empty_pod_label(pod("p").label(NETWORK_LABEL, ""), "net1")]
    #[case::cluster_network(pod("p"), "net1")]
    fn pod_network_label_beats_the_cluster_network(#[case] p: PodBuilder, #[case] expected: &str) {
        let mut snap = on_net1();
        snap.pods.push(p.build());
        assert_eq!(the_workload(&snap).network, expected);
    }

    #[test]
    fn services_select_workload_entries_by_label_and_named_ports() {
        let mut snap = snapshot();
        snap.services.push(
            service("s")
                .selector("app", "vm")
                .named_port(80, "web")
                .port(81, 9000)
                .build(),
        );
        snap.workload_entries
            .push(workload_entry("vm-a").app("vm").port("web", 8080).build());
        snap.workload_entries.push(
            workload_entry("vm-b")
                .object_label("app", "vm")
                .address("10.244.9.10")
                .build(),
        );
        snap.workload_entries.push(
            workload_entry("other")
                .app("other")
                .address("10.244.9.11")
                .build(),
        );
        let t = to_local_config(&snap, Profile::Istio).unwrap();
        t.config.validate().unwrap();
        let key = "httpbin/s.httpbin.svc.cluster.local";
        let by_name = |n: &str| t.config.workloads.iter().find(|w| w.name == n).unwrap();
        assert_eq!(
            by_name("vm-a").services[key],
            BTreeMap::from([(80, 8080), (81, 9000)])
        );
        assert_eq!(by_name("vm-b").services[key], BTreeMap::from([(81, 9000)]));
        assert!(by_name("other").services.is_empty());
        assert_eq!(t.warnings.len(), 1, "{:?}", t.warnings);
        assert!(
            t.warnings[0].contains("WorkloadEntry httpbin/vm-b")
                && t.warnings[0].contains("\"web\""),
            "{}",
            t.warnings[0]
        );
    }

    #[test]
    fn inline_endpoints_become_workloads_of_their_entry() {
        let mut snap = snapshot();
        snap.service_entries.push(
            service_entry("ext")
                .port(80, "http", None)
                .endpoint(
                    workload_entry("x")
                        .address("10.244.7.1")
                        .port("http", 8080)
                        .locality("r1/z2")
                        .spec(),
                )
                .endpoint(workload_entry("x").address("10.244.7.2").spec())
                .build(),
        );
        let t = to_local_config(&snap, Profile::Istio).unwrap();
        t.config.validate().unwrap();
        let uids: Vec<&str> = t.config.workloads.iter().map(|w| w.uid.as_str()).collect();
        assert_eq!(
            uids,
            [
                "cluster1//networking.istio.io/ServiceEntry/httpbin/ext/10.244.7.1",
                "cluster1//networking.istio.io/ServiceEntry/httpbin/ext/10.244.7.2",
            ]
        );
        let key = "httpbin/ext.mesh.example";
        assert_eq!(
            t.config.workloads[0].services[key],
            BTreeMap::from([(80, 8080)])
        );
        assert_eq!(
            t.config.workloads[1].services[key],
            BTreeMap::from([(80, 80)])
        );
        assert_eq!(t.config.workloads[0].locality.zone, "z2");
        assert_eq!(t.config.workloads[0].name, "ext");
    }

    #[rstest]
    #[case::external(service_entry("se").location(Location::MeshExternal), "location is MESH_EXTERNAL")]
    #[case::dns(service_entry("se").resolution(Resolution::Dns), "resolution is DNS")]
    #[case::no_address(service_entry("se").addresses(&[]), "has no address")]
    #[case::duplicate_host(service_entry("se").hosts(&["in-ambient.httpbin.svc.cluster.local"]), "already a service of Service httpbin/in-ambient")]
    fn skipped_service_entries_are_warnings(
        #[case] entry: ServiceEntryBuilder,
        #[case] fragment: &str,
    ) {
        let mut snap = snapshot();
        snap.services.push(service("in-ambient").build());
        snap.service_entries
            .push(entry.port(80, "http", None).selector("app", "a").build());
        snap.pods.push(pod("p").app("a").build());
        let t = to_local_config(&snap, Profile::Istio).unwrap();
        t.config.validate().unwrap();
        assert_eq!(t.config.services.len(), 1);
        assert!(t.config.workloads[0].services.is_empty());
        assert_eq!(t.warnings.len(), 1, "{:?}", t.warnings);
        assert!(
            t.warnings[0].starts_with("ServiceEntry httpbin/se: ")
                && t.warnings[0].contains(fragment),
            "{}",
            t.warnings[0]
        );
    }

    #[test]
    fn allocated_addresses_are_per_host() {
        let mut snap = snapshot();
        snap.service_entries.push(
            service_entry("se")
                .hosts(&["a.example", "b.example"])
                .addresses(&[])
                .allocated("a.example", "10.96.0.20")
                .allocated("b.example", "10.96.0.21")
                .build(),
        );
        let t = to_local_config(&snap, Profile::Istio).unwrap();
        let vips: Vec<String> = t
            .config
            .services
            .iter()
            .map(|s| format!("{} {}", s.hostname, s.vips[0]))
            .collect();
        assert_eq!(vips, ["a.example /10.96.0.20", "b.example /10.96.0.21"]);
    }

    #[test]
    fn entries_outside_ambient_namespaces_are_not_in_the_mesh() {
        let mut snap = snapshot();
        snap.namespaces.push(namespace("plain").build());
        snap.service_entries
            .push(service_entry("se").namespace("plain").build());
        snap.workload_entries
            .push(workload_entry("w").namespace("plain").build());
        snap.workload_entries.push(
            workload_entry("opted-out")
                .object_label(DATAPLANE_MODE_LABEL, "none")
                .build(),
        );
        let t = to_local_config(&snap, Profile::Istio).unwrap();
        assert!(t.config.services.is_empty() && t.config.workloads.is_empty());
        assert!(t.warnings.is_empty(), "{:?}", t.warnings);
    }

    #[test]
    fn destination_rules_change_nothing() {
        let rules = crate::manifest::ManifestSet::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../fixtures/destination-rule.yaml"),
        )
        .unwrap();
        for profile in [Profile::Istio, Profile::Solo] {
            let without = to_local_config(&with_entries(), profile).unwrap();
            let mut snap = with_entries();
            snap.destination_rules
                .extend(rules.destination_rules().cloned());
            assert_eq!(snap.destination_rules.len(), 1);
            let with = to_local_config(&snap, profile).unwrap();
            assert_eq!(with, without, "{profile}");
            assert_eq!(with.config.to_yaml(), without.config.to_yaml());
        }
    }

    #[rstest]
    #[case::bad_locality(workload_entry("vm").locality("r1/z1/s1/extra").build(), "WorkloadEntry httpbin/vm: field `spec.locality` is \"r1/z1/s1/extra\", which has 4 parts")]
    #[case::empty_zone(workload_entry("vm").locality("r1//s1").build(), "WorkloadEntry httpbin/vm: field `spec.locality` is \"r1//s1\", whose zone is empty")]
    #[case::bad_port(workload_entry("vm").app("a").port("http", 70000).build(), "WorkloadEntry httpbin/vm: field `spec.ports.http` is 70000")]
    fn workload_entry_errors_name_object_and_field(
        #[case] entry: WorkloadEntry,
        #[case] fragment: &str,
    ) {
        let mut snap = snapshot();
        snap.service_entries.push(
            service_entry("se")
                .port(80, "http", None)
                .selector("app", "a")
                .build(),
        );
        snap.workload_entries.push(entry);
        let err = to_local_config(&snap, Profile::Istio)
            .unwrap_err()
            .to_string();
        assert!(err.contains(fragment), "{err}");
    }

    #[rstest]
    #[case::cidr(service_entry("se").addresses(&["10.96.1.0/24"]), "ServiceEntry httpbin/se: field `spec.addresses` has \"10.96.1.0/24\"")]
    #[case::bad_allocation(service_entry("se").addresses(&[]).allocated("se.mesh.example", "x"), "ServiceEntry httpbin/se: field `status.addresses` has \"x\"")]
    #[case::port(service_entry("se").port(0, "http", None), "ServiceEntry httpbin/se: field `spec.ports[0].number` is 0")]
    #[case::target(service_entry("se").port(80, "http", Some(70000)), "ServiceEntry httpbin/se: field `spec.ports[0].targetPort` is 70000")]
    #[case::endpoint_locality(service_entry("se").endpoint(workload_entry("x").locality("a/b/c/d").spec()), "ServiceEntry httpbin/se: field `spec.endpoints[0].locality`")]
    fn service_entry_errors_name_object_and_field(
        #[case] entry: ServiceEntryBuilder,
        #[case] fragment: &str,
    ) {
        let mut snap = snapshot();
        snap.service_entries.push(entry.build());
        let err = to_local_config(&snap, Profile::Istio)
            .unwrap_err()
            .to_string();
        assert!(err.contains(fragment), "{err}");
    }

    impl ServiceBuilder {
        fn build_without_ip(self) -> ServiceBuilder {
            let mut s = self.build();
            s.spec.as_mut().unwrap().cluster_ip = None;
            ServiceBuilder::from(s)
        }
    }
}

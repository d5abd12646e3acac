//! Control-plane translation: Kubernetes objects to ztunnel's workload model (the local config).
//!
//! This is what istiod does for ambient, reduced to the objects meshcert deploys: pods of
//! namespaces labelled `istio.io/dataplane-mode: ambient` become workloads, the Services of
//! those namespaces become services, and each Service's load balancing is derived from
//! `internalTrafficPolicy`, `trafficDistribution` and the `networking.istio.io/traffic-distribution`
//! annotation, with the profile deciding the default and how unknown values are treated
//! (DESIGN.md, "control plane"). The function is pure: same snapshot, same output, sorted.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::MeshError;
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
/// Label on the `istio-system` namespace that names the cluster's network.
pub const NETWORK_LABEL: &str = "topology.istio.io/network";
/// Service annotation that istiod reads when `spec.trafficDistribution` is unset.
pub const TRAFFIC_DISTRIBUTION_ANNOTATION: &str = "networking.istio.io/traffic-distribution";
pub const REGION_LABEL: &str = "topology.kubernetes.io/region";
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
pub const SUBZONE_LABEL: &str = "topology.istio.io/subzone";
/// The namespace whose network label is the mesh's network.
pub const ISTIO_SYSTEM: &str = "istio-system";
/// DNS suffix of Service hostnames.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// How a service spreads connections over its endpoints, as the control plane understood it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrafficDistribution {
    /// `internalTrafficPolicy: Local`: only endpoints on the client's node, none means failure.
    NodeLocal,
    /// `PreferClose` (or its newer spelling `PreferSameZone`): same network, region, zone first.
    PreferClose,
    /// Same node first, then subzone, zone, region, network.
    PreferSameNode,
    /// Solo only: same network first (the Solo default).
    PreferNetwork,
    /// Solo only: same network and region first.
    PreferRegion,
    /// No preference: every healthy endpoint, equal weight (the Istio default).
    Any,
}

impl TrafficDistribution {
    /// The service's `loadBalancer` in the local config; `None` for `Any`.
    pub fn load_balancer(self) -> Option<LoadBalancer> {
        use RoutingPreference::*;
        let (routing_preferences, mode) = match self {
            TrafficDistribution::NodeLocal => (vec![Node], LoadBalancerMode::Strict),
            TrafficDistribution::PreferClose => {
                (vec![Network, Region, Zone], LoadBalancerMode::Failover)
            }
            TrafficDistribution::PreferSameNode => (
                vec![Network, Region, Zone, Subzone, Node],
                LoadBalancerMode::Failover,
            ),
            TrafficDistribution::PreferNetwork => (vec![Network], LoadBalancerMode::Failover),
            TrafficDistribution::PreferRegion => {
                (vec![Network, Region], LoadBalancerMode::Failover)
            }
            TrafficDistribution::Any => return None,
        };
        Some(LoadBalancer {
            routing_preferences,
            mode,
            health_policy: HealthPolicy::OnlyHealthy,
        })
    }
}

impl fmt::Display for TrafficDistribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TrafficDistribution::NodeLocal => "internalTrafficPolicy Local",
            TrafficDistribution::PreferClose => "PreferClose",
            TrafficDistribution::PreferSameNode => "PreferSameNode",
            TrafficDistribution::PreferNetwork => "PreferNetwork",
            TrafficDistribution::PreferRegion => "PreferRegion",
            TrafficDistribution::Any => "Any",
        })
    }
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
    let resolved = resolve_distribution(service, profile)?;
    Ok((resolved.distribution, resolved.source))
}

struct Resolved {
    distribution: TrafficDistribution,
    source: Source,
    warning: Option<String>,
}

fn resolve_distribution(service: &Service, profile: Profile) -> Result<Resolved, MeshError> {
    let found = |distribution, source| Resolved {
        distribution,
        source,
        warning: None,
    };
    let spec = service.spec.as_ref();
    if spec.and_then(|s| s.internal_traffic_policy.as_deref()) == Some("Local") {
        return Ok(found(
            TrafficDistribution::NodeLocal,
            Source::InternalTrafficPolicy,
        ));
    }
    if let Some(value) = spec
        .and_then(|s| s.traffic_distribution.as_deref())
        .filter(|v| !v.is_empty())
    {
        // The API server accepts only the Kubernetes values here; the Istio-only ones
        // (Any, PreferNetwork, PreferRegion) belong in the annotation.
        return match value {
            "PreferClose" | "PreferSameZone" => {
                Ok(found(TrafficDistribution::PreferClose, Source::Spec))
            }
            "PreferSameNode" => Ok(found(TrafficDistribution::PreferSameNode, Source::Spec)),
            other => unknown_value(
                service,
                profile,
                Source::Spec,
                "spec.trafficDistribution",
                other,
                "PreferClose, PreferSameZone, PreferSameNode",
            ),
        };
    }
    let annotation = service
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(TRAFFIC_DISTRIBUTION_ANNOTATION))
        .filter(|v| !v.is_empty());
    if let Some(value) = annotation {
        let field = format!("metadata.annotations[{TRAFFIC_DISTRIBUTION_ANNOTATION}]");
        return match (value.as_str(), profile) {
            ("PreferClose" | "PreferSameZone", _) => {
                Ok(found(TrafficDistribution::PreferClose, Source::Annotation))
            }
            ("PreferSameNode", _) => Ok(found(
                TrafficDistribution::PreferSameNode,
                Source::Annotation,
            )),
            ("Any", _) => Ok(found(TrafficDistribution::Any, Source::Annotation)),
            ("PreferNetwork", Profile::Solo) => Ok(found(
                TrafficDistribution::PreferNetwork,
                Source::Annotation,
            )),
            ("PreferRegion", Profile::Solo) => {
                Ok(found(TrafficDistribution::PreferRegion, Source::Annotation))
            }
            (other, Profile::Solo) => unknown_value(
                service,
                profile,
                Source::Annotation,
                &field,
                other,
                "PreferClose, PreferSameZone, PreferSameNode, PreferNetwork, PreferRegion, Any",
            ),
            (other, Profile::Istio) => unknown_value(
                service,
                profile,
                Source::Annotation,
                &field,
                other,
                "PreferClose, PreferSameZone, PreferSameNode, Any",
            ),
        };
    }
    Ok(found(
        match profile {
            Profile::Solo => TrafficDistribution::PreferNetwork,
            Profile::Istio => TrafficDistribution::Any,
        },
        Source::Default,
    ))
}

/// Istio falls back to `Any` on a value it does not know; the Solo profile promises to refuse
/// it, so a misspelt value cannot silently change failover behaviour.
fn unknown_value(
    service: &Service,
    profile: Profile,
    source: Source,
    field: &str,
    value: &str,
    accepted: &str,
) -> Result<Resolved, MeshError> {
    let what = describe("Service", &service.metadata);
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

fn describe(
    kind: &str,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> String {
    format!(
        "{kind} {}/{}",
        meta.namespace.as_deref().unwrap_or("default"),
        meta.name.as_deref().unwrap_or("<unnamed>")
    )
}

fn invalid(what: &str, field: &str, problem: impl fmt::Display) -> MeshError {
    MeshError::InvalidRequest(format!("{what}: field `{field}` {problem}"))
}

fn namespace_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or("default")
}

fn label<'a>(
    meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<&'a str> {
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
    let mut mesh_services: Vec<&Service> = Vec::new();
    for service in &snapshot.services {
        if !in_mesh(namespace_of(&service.metadata)) {
            continue;
        }
        if let Some(translated) = translate_service(service, profile, &network, &mut warnings)? {
            services.push(translated);
            mesh_services.push(service);
        }
    }

    let mut workloads = Vec::new();
    for pod in &snapshot.pods {
        let namespace = namespace_of(&pod.metadata);
        let what = describe("Pod", &pod.metadata);
        if !in_mesh(namespace) {
            continue;
        }
        if label(&pod.metadata, DATAPLANE_MODE_LABEL) == Some("none") {
            // The pod opted out of its namespace's mesh enrolment.
            continue;
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            continue;
        }
        let ips = pod_ips(pod, &what)?;
        if ips.is_empty() {
            warnings.push(format!(
                "{what}: has no IP yet (status.podIP is unset): not in the mesh until it has one"
            ));
            continue;
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
        let name = pod.metadata.name.clone().unwrap_or_default();
        let mut backs = BTreeMap::new();
        for service in &mesh_services {
            if namespace_of(&service.metadata) != namespace || !selects(service, pod) {
                continue;
            }
            let service_name = service.metadata.name.as_deref().unwrap_or_default();
            let mut ports = BTreeMap::new();
            for port in tcp_ports(service) {
                let service_port = u16::try_from(port.port).map_err(|_| {
                    invalid(
                        &describe("Service", &service.metadata),
                        "spec.ports[].port",
                        "is out of range",
                    )
                })?;
                match workload_target_port(port, pod) {
                    Some(target) => {
                        ports.insert(service_port, target);
                    }
                    None => warnings.push(format!(
                        "{what}: has no container port named {:?} (targetPort of port {} of {}): \
                         it does not serve that port",
                        target_name(port),
                        port.port,
                        describe("Service", &service.metadata)
                    )),
                }
            }
            backs.insert(
                format!("{namespace}/{}", service_hostname(service_name, namespace)),
                ports,
            );
        }
        workloads.push(LocalWorkload {
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
            network: network.clone(),
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
        });
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

fn translate_service(
    service: &Service,
    profile: Profile,
    network: &str,
    warnings: &mut Vec<String>,
) -> Result<Option<local_config::Service>, MeshError> {
    let what = describe("Service", &service.metadata);
    let name = service
        .metadata
        .name
        .clone()
        .ok_or_else(|| invalid(&what, "metadata.name", "is missing"))?;
    let namespace = namespace_of(&service.metadata).to_string();
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
    let mut vips = Vec::new();
    for address in addresses {
        let ip: IpAddr = address.parse().map_err(|e| {
            invalid(
                &what,
                "spec.clusterIPs",
                format_args!("has {address:?}, not an IP address ({e})"),
            )
        })?;
        vips.push(NetworkAddress {
            network: network.to_string(),
            address: ip,
        });
    }
    let mut ports = BTreeMap::new();
    for (i, port) in spec.ports.iter().flatten().enumerate() {
        if !is_tcp(port) {
            warnings.push(format!(
                "{what}: port {} is {}, which ztunnel does not proxy: skipped",
                port.port,
                port.protocol.as_deref().unwrap_or_default()
            ));
            continue;
        }
        let service_port = u16::try_from(port.port)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| {
                invalid(
                    &what,
                    &format!("spec.ports[{i}].port"),
                    format_args!("is {}: it must be 1..65535", port.port),
                )
            })?;
        // A named targetPort can differ per pod: as istiod does, the service says 0 and each
        // workload's own port map carries the number.
        let target = match &port.target_port {
            None => service_port,
            Some(IntOrString::Int(t)) => {
                u16::try_from(*t).ok().filter(|p| *p != 0).ok_or_else(|| {
                    invalid(
                        &what,
                        &format!("spec.ports[{i}].targetPort"),
                        format_args!("is {t}: it must be 1..65535"),
                    )
                })?
            }
            Some(IntOrString::String(_)) => 0,
        };
        ports.insert(service_port, target);
    }
    let resolved = resolve_distribution(service, profile)?;
    warnings.extend(resolved.warning);
    Ok(Some(local_config::Service {
        hostname: service_hostname(&name, &namespace),
        name,
        namespace,
        vips,
        ports,
        subject_alt_names: Vec::new(),
        load_balancer: resolved.distribution.load_balancer(),
    }))
}

fn is_tcp(port: &ServicePort) -> bool {
    matches!(port.protocol.as_deref(), None | Some("TCP"))
}

fn tcp_ports(service: &Service) -> impl Iterator<Item = &ServicePort> {
    service
        .spec
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .filter(|p| is_tcp(p))
}

fn target_name(port: &ServicePort) -> String {
    match &port.target_port {
        Some(IntOrString::String(name)) => name.clone(),
        Some(IntOrString::Int(n)) => n.to_string(),
        None => port.port.to_string(),
    }
}

/// The port this pod serves a service port on: the number, or the container port of that name.
fn workload_target_port(port: &ServicePort, pod: &Pod) -> Option<u16> {
    match &port.target_port {
        None => u16::try_from(port.port).ok(),
        Some(IntOrString::Int(n)) => u16::try_from(*n).ok(),
        Some(IntOrString::String(name)) => pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok()),
    }
}

/// Label selector semantics of a Service: every selector pair on the pod; no selector selects
/// nothing (such a Service has manually managed endpoints, which meshcert does not model).
fn selects(service: &Service, pod: &Pod) -> bool {
    let Some(selector) = service.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return false;
    };
    !selector.is_empty()
        && selector
            .iter()
            .all(|(k, v)| label(&pod.metadata, k) == Some(v.as_str()))
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
        assert_eq!(distribution.load_balancer(), expected);
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
        assert_eq!(s.load_balancer, TD::PreferNetwork.load_balancer());
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

    impl ServiceBuilder {
        fn build_without_ip(self) -> ServiceBuilder {
            let mut s = self.build();
            s.spec.as_mut().unwrap().cluster_ip = None;
            ServiceBuilder::from(s)
        }
    }
}

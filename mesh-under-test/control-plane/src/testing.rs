//! Builders of Kubernetes and Istio objects over sensible defaults, so translation tests read
//! as tables. Behind the `testing` feature, so that driver and step tests can build snapshots
//! the same way without the builders reaching the library users link.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Namespace, Node, Pod, PodCondition, PodIP, PodSpec, PodStatus,
    Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::istio::{
    Location, Resolution, ServiceEntry, ServiceEntryAddress, ServiceEntryPort, ServiceEntrySpec,
    WorkloadEntry, WorkloadEntrySpec,
};
use crate::{
    ClusterSnapshot, DATAPLANE_MODE_LABEL, NETWORK_LABEL, REGION_LABEL, SUBZONE_LABEL,
    TRAFFIC_DISTRIBUTION_ANNOTATION, ZONE_LABEL,
};

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
        self.status().pod_ips = Some(ips.iter().map(|ip| PodIP { ip: ip.to_string() }).collect());
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
        ServiceEntrySpec {
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
        status.addresses.push(ServiceEntryAddress {
            value: address.into(),
            host: host.into(),
        });
        self
    }
    pub fn port(mut self, number: u32, name: &str, target: Option<u32>) -> Self {
        self.0.spec.ports.push(ServiceEntryPort {
            number,
            name: name.into(),
            target_port: target,
            protocol: Some("TCP".into()),
        });
        self
    }
    pub fn udp_port(mut self, number: u32) -> Self {
        self.0.spec.ports.push(ServiceEntryPort {
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

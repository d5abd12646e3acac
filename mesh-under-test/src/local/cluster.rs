//! What the API server and the controllers of a real cluster would decide for a local mesh,
//! without any I/O: cluster IPs for Services, pod names (`<deployment>-<hash>-<suffix>`,
//! deterministic per run), node placement, and the Pod and Node objects the control-plane
//! translation reads.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod, PodCondition, PodIP, PodStatus, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::MeshError;

/// The alphabet Kubernetes uses for generated name parts (no vowels, no look-alikes).
pub const NAME_ALPHABET: &[u8; 27] = b"bcdfghjklmnpqrstvwxz2456789";

/// The label `kubernetes.io/hostname`, which pins a pod to a node through a nodeSelector.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// FNV-1a: a small, stable hash, so generated names do not change between Rust versions.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn name_part(mut bits: u64, len: usize) -> String {
    let mut out = String::with_capacity(len);
    for _ in 0..len {
        out.push(NAME_ALPHABET[(bits % 27) as usize] as char);
        bits /= 27;
    }
    out
}

/// The 10-character pod-template-hash of a deployment, from the run's seed.
pub fn template_hash(seed: u64, namespace: &str, deployment: &str) -> String {
    name_part(
        fnv1a(format!("{seed:x}/{namespace}/{deployment}").as_bytes()),
        10,
    )
}

/// The 5-character suffix of the `ordinal`-th pod ever made for a deployment.
pub fn pod_suffix(seed: u64, namespace: &str, deployment: &str, ordinal: u32) -> String {
    name_part(
        fnv1a(format!("{seed:x}/{namespace}/{deployment}#{ordinal}").as_bytes()),
        5,
    )
}

/// Cluster IPs from 10.96.0.10 upwards, as a fresh cluster's API server would hand them out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterIpAllocator {
    next: u32,
}

impl Default for ClusterIpAllocator {
    fn default() -> Self {
        Self {
            next: u32::from(Ipv4Addr::new(10, 96, 0, 10)),
        }
    }
}

impl ClusterIpAllocator {
    pub fn allocate(&mut self) -> Result<Ipv4Addr, MeshError> {
        let ip = Ipv4Addr::from(self.next);
        if ip > Ipv4Addr::new(10, 96, 255, 254) {
            return Err(MeshError::InvalidRequest(
                "the service CIDR 10.96.0.0/16 is full".into(),
            ));
        }
        self.next += 1;
        Ok(ip)
    }
}

/// Gives a Service a cluster IP unless it has one (or is headless), as the API server does.
pub fn assign_cluster_ip(
    service: &mut Service,
    ips: &mut ClusterIpAllocator,
) -> Result<(), MeshError> {
    let spec = service.spec.get_or_insert_with(Default::default);
    if spec.type_.as_deref() == Some("ExternalName") {
        return Ok(());
    }
    let given = spec.cluster_ip.clone().filter(|ip| !ip.is_empty());
    let ip = match given {
        Some(ip) => ip,
        None => ips.allocate()?.to_string(),
    };
    spec.cluster_ips = Some(vec![ip.clone()]);
    spec.cluster_ip = Some(ip);
    Ok(())
}

/// A deployment's pod template, read once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub labels: BTreeMap<String, String>,
    pub ports: Vec<u16>,
    pub service_account: String,
    /// `spec.nodeName`, or a nodeSelector on `kubernetes.io/hostname`.
    pub pinned_node: Option<String>,
}

impl Template {
    pub fn of(deployment: &Deployment) -> Result<Template, MeshError> {
        let what = format!(
            "Deployment {}/{}",
            deployment
                .metadata
                .namespace
                .as_deref()
                .unwrap_or("default"),
            deployment.metadata.name.as_deref().unwrap_or("")
        );
        let template = deployment.spec.as_ref().map(|s| &s.template);
        let labels = template
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        let spec = template.and_then(|t| t.spec.as_ref());
        let mut ports = Vec::new();
        for container in spec.map(|s| s.containers.as_slice()).unwrap_or_default() {
            for port in container.ports.iter().flatten() {
                if port.protocol.as_deref().is_some_and(|p| p != "TCP") {
                    continue;
                }
                let p = u16::try_from(port.container_port)
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| {
                        MeshError::InvalidRequest(format!(
                            "{what}: containerPort {} is not a TCP port number",
                            port.container_port
                        ))
                    })?;
                if !ports.contains(&p) {
                    ports.push(p);
                }
            }
        }
        let service_account = spec
            .and_then(|s| s.service_account_name.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".to_string());
        let pinned_node = spec.and_then(|s| {
            s.node_name.clone().filter(|n| !n.is_empty()).or_else(|| {
                s.node_selector
                    .as_ref()
                    .and_then(|sel| sel.get(HOSTNAME_LABEL).cloned())
            })
        });
        Ok(Template {
            labels,
            ports,
            service_account,
            pinned_node,
        })
    }

    /// A deployment whose pods listen on no port is a client: it gets a ztunnel, not an app.
    pub fn is_client(&self) -> bool {
        self.ports.is_empty()
    }
}

/// The node of the `placed`-th pod of a deployment: its pinned node, else round robin.
pub fn place(nodes: &[String], pinned: Option<&str>, placed: usize) -> Result<String, MeshError> {
    if let Some(node) = pinned {
        return if nodes.iter().any(|n| n == node) {
            Ok(node.to_string())
        } else {
            Err(MeshError::InvalidRequest(format!(
                "a pod is pinned to node {node:?}, which this mesh does not have (nodes: {})",
                nodes.join(", ")
            )))
        };
    }
    if nodes.is_empty() {
        return Err(MeshError::InvalidRequest(
            "the mesh has no nodes to place pods on".into(),
        ));
    }
    Ok(nodes[placed % nodes.len()].clone())
}

/// Everything a Pod object says, as the kubelet would report it once running.
#[derive(Debug, Clone, PartialEq)]
pub struct PodFacts<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub deployment: &'a Deployment,
    pub template_hash: &'a str,
    pub node: &'a str,
    pub ip: Ipv4Addr,
    pub ready: bool,
}

/// A Pod object: the template's metadata and spec, the node, the address and Ready condition.
pub fn build_pod(facts: &PodFacts<'_>) -> Pod {
    let template = facts.deployment.spec.as_ref().map(|s| &s.template);
    let mut labels = template
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert("pod-template-hash".into(), facts.template_hash.to_string());
    let mut spec = template.and_then(|t| t.spec.clone()).unwrap_or_default();
    spec.node_name = Some(facts.node.to_string());
    let deployment = facts.deployment.metadata.name.clone().unwrap_or_default();
    let ready = if facts.ready { "True" } else { "False" };
    Pod {
        metadata: ObjectMeta {
            name: Some(facts.name.to_string()),
            namespace: Some(facts.namespace.to_string()),
            labels: Some(labels),
            owner_references: Some(vec![OwnerReference {
                api_version: "apps/v1".into(),
                kind: "ReplicaSet".into(),
                name: format!("{deployment}-{}", facts.template_hash),
                controller: Some(true),
                ..Default::default()
            }]),
            ..Default::default()
        },
        spec: Some(spec),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            pod_ip: Some(facts.ip.to_string()),
            pod_ips: Some(vec![PodIP {
                ip: facts.ip.to_string(),
            }]),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: ready.into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

/// A Node object with its labels (and `kubernetes.io/hostname`, as the kubelet sets it).
pub fn build_node(name: &str, labels: &BTreeMap<String, String>) -> Node {
    let mut labels = labels.clone();
    labels
        .entry(HOSTNAME_LABEL.to_string())
        .or_insert_with(|| name.to_string());
    Node {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(labels),
            ..Default::default()
        },
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::DeploymentSpec;
    use k8s_openapi::api::core::v1::{
        Container, ContainerPort, PodSpec, PodTemplateSpec, ServiceSpec,
    };
    use rstest::rstest;

    #[test]
    fn names_use_the_kubernetes_alphabet_and_are_stable() {
        let hash = template_hash(0x1234, "httpbin", "in-ambient");
        assert_eq!(hash.len(), 10);
        assert!(hash.bytes().all(|b| NAME_ALPHABET.contains(&b)), "{hash}");
        assert_eq!(hash, template_hash(0x1234, "httpbin", "in-ambient"));
        assert_ne!(hash, template_hash(0x1235, "httpbin", "in-ambient"));
        assert_ne!(hash, template_hash(0x1234, "other", "in-ambient"));
        let suffixes: Vec<String> = (0..3)
            .map(|i| pod_suffix(0x1234, "httpbin", "in-ambient", i))
            .collect();
        assert!(
            suffixes
                .iter()
                .all(|s| s.len() == 5 && s.bytes().all(|b| NAME_ALPHABET.contains(&b)))
        );
        assert_ne!(suffixes[0], suffixes[1]);
        assert_ne!(suffixes[1], suffixes[2]);
    }

    #[rstest]
    #[case(b"", 0xcbf2_9ce4_8422_2325)]
    #[case(b"a", 0xaf63_dc4c_8601_ec8c)]
    #[case(b"foobar", 0x8594_4171_f739_67e8)]
    fn fnv1a_matches_the_reference_vectors(#[case] input: &[u8], #[case] hash: u64) {
        assert_eq!(fnv1a(input), hash);
    }

    #[rstest]
    #[case(0, "bbbbbbbbbb")]
    #[case(1, "cbbbbbbbbb")]
    #[case(26, "9bbbbbbbbb")]
    #[case(27, "bcbbbbbbbb")]
    fn name_parts_are_little_endian_base27(#[case] bits: u64, #[case] part: &str) {
        assert_eq!(name_part(bits, 10), part);
    }

    #[test]
    fn cluster_ips_start_at_10_96_0_10() {
        let mut ips = ClusterIpAllocator::default();
        assert_eq!(ips.allocate().unwrap(), Ipv4Addr::new(10, 96, 0, 10));
        assert_eq!(ips.allocate().unwrap(), Ipv4Addr::new(10, 96, 0, 11));
    }

    #[rstest]
    #[case(None, None, Some("10.96.0.10"))]
    #[case(Some(""), None, Some("10.96.0.10"))]
    #[case(Some("10.96.7.7"), None, Some("10.96.7.7"))]
    #[case(Some("None"), None, Some("None"))]
    #[case(None, Some("ExternalName"), None)]
    fn services_get_a_cluster_ip_unless_they_have_one(
        #[case] given: Option<&str>,
        #[case] type_: Option<&str>,
        #[case] expected: Option<&str>,
    ) {
        let mut service = Service {
            spec: Some(ServiceSpec {
                cluster_ip: given.map(str::to_string),
                type_: type_.map(str::to_string),
                ..Default::default()
            }),
            ..Default::default()
        };
        assign_cluster_ip(&mut service, &mut ClusterIpAllocator::default()).unwrap();
        let spec = service.spec.unwrap();
        assert_eq!(
            spec.cluster_ip.as_deref().filter(|s| !s.is_empty()),
            expected
        );
        if let Some(ip) = expected {
            assert_eq!(spec.cluster_ips, Some(vec![ip.to_string()]));
        }
    }

    fn nodes() -> Vec<String> {
        vec!["node-1".into(), "node-2".into(), "node-3".into()]
    }

    #[rstest]
    #[case(None, 0, Ok("node-1"))]
    #[case(None, 1, Ok("node-2"))]
    #[case(None, 3, Ok("node-1"))]
    #[case(Some("node-3"), 0, Ok("node-3"))]
    #[case(Some("node-3"), 1, Ok("node-3"))]
    #[case(Some("node-9"), 0, Err(()))]
    fn placement_is_round_robin_unless_pinned(
        #[case] pinned: Option<&str>,
        #[case] placed: usize,
        #[case] expected: Result<&str, ()>,
    ) {
        let got = place(&nodes(), pinned, placed).map_err(|_| ());
        assert_eq!(got.as_deref(), expected.as_deref().map_err(|_| &()));
    }

    fn deployment(ports: &[i32], node_name: Option<&str>, selector: Option<&str>) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                name: Some("in-ambient".into()),
                namespace: Some("httpbin".into()),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(BTreeMap::from([(
                            "app".to_string(),
                            "in-ambient".to_string(),
                        )])),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        service_account_name: Some("in-ambient".into()),
                        node_name: node_name.map(str::to_string),
                        node_selector: selector
                            .map(|n| BTreeMap::from([(HOSTNAME_LABEL.to_string(), n.to_string())])),
                        containers: vec![Container {
                            name: "app".into(),
                            ports: Some(
                                ports
                                    .iter()
                                    .map(|&p| ContainerPort {
                                        container_port: p,
                                        ..Default::default()
                                    })
                                    .collect(),
                            ),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[rstest]
    #[case(&[8080], None, None, vec![8080], None)]
    #[case(&[8080, 9090, 8080], None, None, vec![8080, 9090], None)]
    #[case(&[], Some("node-2"), None, vec![], Some("node-2"))]
    #[case(&[], None, Some("node-3"), vec![], Some("node-3"))]
    fn templates_give_ports_and_pinning(
        #[case] ports: &[i32],
        #[case] node_name: Option<&str>,
        #[case] selector: Option<&str>,
        #[case] expected_ports: Vec<u16>,
        #[case] pinned: Option<&str>,
    ) {
        let t = Template::of(&deployment(ports, node_name, selector)).unwrap();
        assert_eq!(t.ports, expected_ports);
        assert_eq!(t.pinned_node.as_deref(), pinned);
        assert_eq!(t.is_client(), expected_ports.is_empty());
        assert_eq!(t.service_account, "in-ambient");
    }

    #[test]
    fn pods_carry_template_labels_node_address_and_readiness() {
        let d = deployment(&[8080], None, None);
        let pod = build_pod(&PodFacts {
            namespace: "httpbin",
            name: "in-ambient-bcdfghjklm-bcdfg",
            deployment: &d,
            template_hash: "bcdfghjklm",
            node: "node-2",
            ip: Ipv4Addr::new(10, 244, 2, 10),
            ready: true,
        });
        let labels = pod.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["app"], "in-ambient");
        assert_eq!(labels["pod-template-hash"], "bcdfghjklm");
        assert_eq!(
            pod.metadata.owner_references.as_ref().unwrap()[0].name,
            "in-ambient-bcdfghjklm"
        );
        assert_eq!(
            pod.spec.as_ref().unwrap().node_name.as_deref(),
            Some("node-2")
        );
        let status = pod.status.as_ref().unwrap();
        assert_eq!(status.pod_ip.as_deref(), Some("10.244.2.10"));
        assert_eq!(status.pod_ips.as_ref().unwrap()[0].ip, "10.244.2.10");
        let ready = &status.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (ready.type_.as_str(), ready.status.as_str()),
            ("Ready", "True")
        );
    }

    #[test]
    fn nodes_carry_their_hostname_label() {
        let node = build_node(
            "node-a",
            &BTreeMap::from([("topology.kubernetes.io/zone".into(), "z1".into())]),
        );
        let labels = node.metadata.labels.unwrap();
        assert_eq!(labels[HOSTNAME_LABEL], "node-a");
        assert_eq!(labels["topology.kubernetes.io/zone"], "z1");
    }
}

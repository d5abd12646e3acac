//! What the API server and the controllers of a real cluster would decide for a local mesh,
//! without any I/O: which Services it admits, cluster IPs for Services and addresses for
//! ServiceEntries, pod names (`<deployment>-<hash>-<suffix>`, deterministic per run), node
//! placement, and the Pod and Node objects the control-plane translation reads.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod, PodCondition, PodIP, PodStatus, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use meshcert_control_plane::istio::{ServiceEntry, ServiceEntryAddress};
use meshcert_mesh::MeshError;

use crate::netns::SERVICE_CIDR;
use crate::readiness::ProbeSpec;

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

/// Cluster IPs from 10.96.0.10 upwards, as a fresh cluster's API server would hand them out,
/// skipping addresses that objects named themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterIpAllocator {
    next: u32,
    reserved: BTreeSet<Ipv4Addr>,
}

impl Default for ClusterIpAllocator {
    fn default() -> Self {
        Self {
            next: u32::from(Ipv4Addr::new(10, 96, 0, 10)),
            reserved: BTreeSet::new(),
        }
    }
}

impl ClusterIpAllocator {
    pub fn allocate(&mut self) -> Result<Ipv4Addr, MeshError> {
        loop {
            let ip = Ipv4Addr::from(self.next);
            if ip > Ipv4Addr::new(10, 96, 255, 254) {
                return Err(MeshError::InvalidRequest(
                    "the service CIDR 10.96.0.0/16 is full".into(),
                ));
            }
            self.next += 1;
            if !self.reserved.contains(&ip) {
                return Ok(ip);
            }
        }
    }

    /// Marks an address an object chose itself, so it is never handed out.
    pub fn reserve(&mut self, ip: Ipv4Addr) {
        self.reserved.insert(ip);
    }
}

/// Whether the client ztunnel's iptables REDIRECT captures connections to `ip`: the service
/// CIDR, 10.96.0.0/16.
pub fn in_service_cidr(ip: IpAddr) -> bool {
    let (net, len) = SERVICE_CIDR;
    let mask = u32::MAX << (32 - len);
    matches!(ip, IpAddr::V4(v4) if u32::from(v4) & mask == u32::from(net) & mask)
}

/// The API server's validation of the Service fields the translation reads: it refuses the
/// Istio-only traffic distribution modes in `spec.trafficDistribution` (TD-PREC-2).
pub fn validate_service(service: &Service) -> Result<(), MeshError> {
    let what = object_name("Service", &service.metadata);
    let Some(spec) = service.spec.as_ref() else {
        return Ok(());
    };
    if let Some(value) = spec
        .traffic_distribution
        .as_deref()
        .filter(|v| !v.is_empty())
        && !["PreferClose", "PreferSameZone", "PreferSameNode"].contains(&value)
    {
        return Err(MeshError::Refused {
            object: what,
            field: "spec.trafficDistribution".into(),
            problem: format!(
                "is {value:?}: the API server supports only PreferClose, PreferSameZone and \
                 PreferSameNode; Istio's other modes (Any, PreferNetwork, PreferRegion) go in \
                 the annotation networking.istio.io/traffic-distribution"
            ),
        });
    }
    if let Some(value) = spec.internal_traffic_policy.as_deref()
        && !["Cluster", "Local"].contains(&value)
    {
        return Err(MeshError::Refused {
            object: what,
            field: "spec.internalTrafficPolicy".into(),
            problem: format!("is {value:?}: the API server supports only Cluster and Local"),
        });
    }
    Ok(())
}

/// Checks that every address a ServiceEntry names is one the local mesh captures.
pub fn check_service_entry_addresses(entry: &ServiceEntry) -> Result<(), MeshError> {
    let what = object_name("ServiceEntry", &entry.metadata);
    for (i, address) in entry.spec.addresses.iter().enumerate() {
        let captured = address.parse::<IpAddr>().is_ok_and(in_service_cidr);
        if !captured {
            let (net, len) = SERVICE_CIDR;
            return Err(MeshError::InvalidRequest(format!(
                "{what}: field `spec.addresses[{i}]` is {address:?}: a local mesh captures \
                 service traffic for {net}/{len} only (the client ztunnel's iptables REDIRECT); \
                 use a single address in that range, or leave `spec.addresses` empty to have one \
                 allocated"
            )));
        }
    }
    Ok(())
}

/// Gives each host of a ServiceEntry without `spec.addresses` an address, in
/// `status.addresses`, as Istio ambient's auto-allocation does; a host keeps the address an
/// earlier version of the entry was given.
pub fn assign_service_entry_addresses(
    entry: &mut ServiceEntry,
    earlier: Option<&ServiceEntry>,
    ips: &mut ClusterIpAllocator,
) -> Result<(), MeshError> {
    if !entry.spec.addresses.is_empty() {
        entry.status = None;
        return Ok(());
    }
    let mut allocated = Vec::new();
    for host in &entry.spec.hosts {
        let kept = earlier
            .and_then(|e| e.status.as_ref())
            .and_then(|s| s.addresses.iter().find(|a| &a.host == host))
            .map(|a| a.value.clone());
        let value = match kept {
            Some(value) => value,
            None => ips.allocate()?.to_string(),
        };
        allocated.push(ServiceEntryAddress {
            value,
            host: host.clone(),
        });
    }
    entry.status.get_or_insert_default().addresses = allocated;
    Ok(())
}

fn object_name(kind: &str, meta: &ObjectMeta) -> String {
    format!(
        "{kind} {}/{}",
        meta.namespace.as_deref().unwrap_or("default"),
        meta.name.as_deref().unwrap_or_default()
    )
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

/// Kubernetes' default `terminationGracePeriodSeconds`.
pub const DEFAULT_TERMINATION_GRACE: Duration = Duration::from_secs(30);

/// The longest a removed local pod keeps serving: a scenario's requests right after a
/// scale-down take well under this, and a scenario of several scale-downs must not hold pods
/// for 30 s each.
pub const LOCAL_GRACE_CAP: Duration = Duration::from_secs(5);

/// A deployment's pod template, read once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub labels: BTreeMap<String, String>,
    pub ports: Vec<u16>,
    pub service_account: String,
    /// `spec.nodeName`, or a nodeSelector on `kubernetes.io/hostname`.
    pub pinned_node: Option<String>,
    /// The containers' readiness probes.
    pub readiness: Vec<ProbeSpec>,
    /// `terminationGracePeriodSeconds` (30 s when absent), before [`LOCAL_GRACE_CAP`].
    pub termination_grace: Duration,
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
        let containers = spec.map(|s| s.containers.as_slice()).unwrap_or_default();
        let readiness = ProbeSpec::of_containers(&what, containers)?;
        let termination_grace = match spec.and_then(|s| s.termination_grace_period_seconds) {
            None => DEFAULT_TERMINATION_GRACE,
            Some(seconds) => Duration::from_secs(u64::try_from(seconds).map_err(|_| {
                MeshError::InvalidRequest(format!(
                    "{what}: field `spec.template.spec.terminationGracePeriodSeconds` is \
                     {seconds}: the API server requires at least 0"
                ))
            })?),
        };
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
            readiness,
            termination_grace,
        })
    }

    /// How long a removed pod keeps serving here: its grace period, at most [`LOCAL_GRACE_CAP`].
    pub fn local_grace(&self) -> Duration {
        self.termination_grace.min(LOCAL_GRACE_CAP)
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

/// Whether a Pod's Ready condition is True.
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Writes a Pod's Ready condition as the kubelet reports it: `ContainersNotReady` with the
/// probe's last word when not ready.
pub fn set_ready(pod: &mut Pod, ready: bool, why: &str) {
    let status = pod.status.get_or_insert_with(Default::default);
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    conditions.retain(|c| c.type_ != "Ready");
    conditions.push(PodCondition {
        type_: "Ready".into(),
        status: if ready { "True" } else { "False" }.into(),
        reason: (!ready).then(|| "ContainersNotReady".into()),
        message: (!ready).then(|| why.to_string()),
        ..Default::default()
    });
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
    fn grace_defaults_to_30s_and_is_capped_locally() {
        let mut d = deployment(&[8080], None, None);
        let t = Template::of(&d).unwrap();
        assert_eq!(t.termination_grace, DEFAULT_TERMINATION_GRACE);
        assert_eq!(t.local_grace(), LOCAL_GRACE_CAP);
        assert!(t.readiness.is_empty());
        let spec = d.spec.as_mut().unwrap().template.spec.as_mut().unwrap();
        spec.termination_grace_period_seconds = Some(2);
        assert_eq!(
            Template::of(&d).unwrap().local_grace(),
            Duration::from_secs(2)
        );
        let spec = d.spec.as_mut().unwrap().template.spec.as_mut().unwrap();
        spec.termination_grace_period_seconds = Some(-1);
        let err = Template::of(&d).unwrap_err().to_string();
        assert!(
            err.contains("terminationGracePeriodSeconds` is -1"),
            "{err}"
        );
    }

    #[test]
    fn the_ready_condition_is_rewritten_with_the_kubelets_reason() {
        let d = deployment(&[8080], None, None);
        let mut pod = build_pod(&PodFacts {
            namespace: "httpbin",
            name: "p",
            deployment: &d,
            template_hash: "h",
            node: "node-1",
            ip: Ipv4Addr::new(10, 244, 1, 10),
            ready: true,
        });
        assert!(pod_ready(&pod));
        set_ready(&mut pod, false, "HTTP probe failed with statuscode: 503");
        assert!(!pod_ready(&pod));
        let conditions = pod.status.as_ref().unwrap().conditions.as_ref().unwrap();
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].reason.as_deref(), Some("ContainersNotReady"));
        set_ready(&mut pod, true, "");
        assert!(pod_ready(&pod));
    }

    #[test]
    fn allocation_skips_reserved_addresses() {
        let mut ips = ClusterIpAllocator::default();
        ips.reserve(Ipv4Addr::new(10, 96, 0, 10));
        ips.reserve(Ipv4Addr::new(10, 96, 0, 12));
        assert_eq!(ips.allocate().unwrap(), Ipv4Addr::new(10, 96, 0, 11));
        assert_eq!(ips.allocate().unwrap(), Ipv4Addr::new(10, 96, 0, 13));
    }

    #[rstest]
    #[case("10.96.0.10", true)]
    #[case("10.96.255.254", true)]
    #[case("10.97.0.1", false)]
    #[case("192.168.1.1", false)]
    #[case("fd00::10", false)]
    fn the_service_cidr_is_what_the_redirect_captures(#[case] ip: &str, #[case] inside: bool) {
        assert_eq!(in_service_cidr(ip.parse().unwrap()), inside);
    }

    fn service_with(td: Option<&str>, itp: Option<&str>) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("in-ambient".into()),
                namespace: Some("httpbin".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                traffic_distribution: td.map(str::to_string),
                internal_traffic_policy: itp.map(str::to_string),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[rstest]
    #[case(None, None, None)]
    #[case(Some("PreferClose"), Some("Cluster"), None)]
    #[case(Some("PreferSameZone"), Some("Local"), None)]
    #[case(Some("PreferSameNode"), None, None)]
    #[case(Some(""), None, None)]
    #[case(
        Some("PreferNetwork"),
        None,
        Some(
            "field `spec.trafficDistribution` is \"PreferNetwork\": the API server supports only PreferClose, PreferSameZone and PreferSameNode"
        )
    )]
    #[case(
        Some("Any"),
        None,
        Some("go in the annotation networking.istio.io/traffic-distribution")
    )]
    #[case(Some("preferclose"), None, Some("\"preferclose\""))]
    #[case(
        None,
        Some("Node"),
        Some(
            "field `spec.internalTrafficPolicy` is \"Node\": the API server supports only Cluster and Local"
        )
    )]
    fn the_api_server_admits_only_kubernetes_values(
        #[case] td: Option<&str>,
        #[case] itp: Option<&str>,
        #[case] refusal: Option<&str>,
    ) {
        let result = validate_service(&service_with(td, itp));
        match refusal {
            None => result.unwrap(),
            Some(fragment) => {
                let err = result.unwrap_err();
                let text = err.to_string();
                assert!(matches!(err, MeshError::Refused { .. }), "{text}");
                assert!(text.starts_with("Service httpbin/in-ambient: "), "{text}");
                assert!(text.contains(fragment), "{text}");
            }
        }
    }

    fn entry(hosts: &[&str], addresses: &[&str]) -> ServiceEntry {
        ServiceEntry::new(
            ObjectMeta {
                name: Some("se".into()),
                namespace: Some("httpbin".into()),
                ..Default::default()
            },
            meshcert_control_plane::istio::ServiceEntrySpec {
                hosts: hosts.iter().map(|h| h.to_string()).collect(),
                addresses: addresses.iter().map(|a| a.to_string()).collect(),
                ..Default::default()
            },
        )
    }

    #[rstest]
    #[case(&[], None)]
    #[case(&["10.96.1.1", "10.96.200.7"], None)]
    #[case(&["10.96.1.1", "192.168.0.1"], Some("field `spec.addresses[1]` is \"192.168.0.1\": a local mesh captures service traffic for 10.96.0.0/16 only"))]
    #[case(&["10.96.1.0/24"], Some("field `spec.addresses[0]` is \"10.96.1.0/24\""))]
    #[case(&["fd00::1"], Some("`spec.addresses[0]`"))]
    fn service_entry_addresses_must_be_captured(
        #[case] addresses: &[&str],
        #[case] refusal: Option<&str>,
    ) {
        let result = check_service_entry_addresses(&entry(&["a.example"], addresses));
        match refusal {
            None => result.unwrap(),
            Some(fragment) => {
                let text = result.unwrap_err().to_string();
                assert!(text.starts_with("ServiceEntry httpbin/se: "), "{text}");
                assert!(text.contains(fragment), "{text}");
            }
        }
    }

    #[test]
    fn service_entries_without_addresses_get_one_per_host_and_keep_it() {
        let mut ips = ClusterIpAllocator::default();
        let mut first = entry(&["a.example", "b.example"], &[]);
        assign_service_entry_addresses(&mut first, None, &mut ips).unwrap();
        assert_eq!(first.addresses_of("a.example"), ["10.96.0.10"]);
        assert_eq!(first.addresses_of("b.example"), ["10.96.0.11"]);
        // Re-applied with one host more: the old hosts keep theirs, the new one gets the next.
        let mut again = entry(&["a.example", "b.example", "c.example"], &[]);
        assign_service_entry_addresses(&mut again, Some(&first), &mut ips).unwrap();
        assert_eq!(
            again.all_addresses(),
            ["10.96.0.10", "10.96.0.11", "10.96.0.12"]
        );
        // Addresses of its own: nothing is allocated.
        let mut own = entry(&["a.example"], &["10.96.9.9"]);
        assign_service_entry_addresses(&mut own, Some(&again), &mut ips).unwrap();
        assert_eq!(own.status, None);
        assert_eq!(own.addresses_of("a.example"), ["10.96.9.9"]);
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

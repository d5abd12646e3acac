//! Workloads: pods, WorkloadEntries and ServiceEntries' inline endpoints of ambient namespaces
//! as workloads of the local config (addresses, readiness, node, network, locality), each with
//! the port maps of the services that select it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Node, Pod};
use meshcert_ztunnel::local_config::{HealthStatus, LocalWorkload, Locality, Protocol};

use crate::istio::{ServiceEntry, WorkloadEntrySpec, parse_locality};
use crate::services::{Backend, Catalog, PortRule, PortTarget, port_number};
use crate::{
    ClusterSnapshot, ControlPlaneError, DATAPLANE_MODE_LABEL, MeshScope, NETWORK_LABEL,
    REGION_LABEL, SUBZONE_LABEL, ZONE_LABEL, describe, invalid, label, namespace_of,
};

/// Every workload of the mesh's namespaces: pods, then WorkloadEntries, then the inline
/// endpoints of the ServiceEntries translated; unsorted.
pub(crate) fn workloads(
    snapshot: &ClusterSnapshot,
    scope: &MeshScope<'_>,
    catalog: &Catalog<'_>,
    warnings: &mut Vec<String>,
) -> Result<Vec<LocalWorkload>, ControlPlaneError> {
    let mut workloads = Vec::new();
    for pod in &snapshot.pods {
        if scope.contains(&pod.metadata) {
            workloads.extend(pod_workload(
                snapshot,
                pod,
                &catalog.backends,
                &scope.network,
                warnings,
            )?);
        }
    }
    let base = EntryBase {
        cluster_id: &snapshot.cluster_id,
        trust_domain: &snapshot.trust_domain,
        network: &scope.network,
    };
    for entry in &snapshot.workload_entries {
        let meta = &entry.metadata;
        if !scope.contains(meta) || label(meta, DATAPLANE_MODE_LABEL) == Some("none") {
            continue;
        }
        let namespace = namespace_of(meta);
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
        let backed: Vec<&Backend> = catalog
            .backends
            .iter()
            .filter(|b| b.namespace == namespace && b.selects(&labels))
            .collect();
        workloads.extend(entry_workload(&base, &endpoint, &backed, warnings)?);
    }
    for entry in &catalog.entries {
        workloads.extend(inline_endpoint_workloads(&base, entry, catalog, warnings)?);
    }
    Ok(workloads)
}

/// The workloads of a ServiceEntry's `spec.endpoints`, which back only that entry's hosts.
fn inline_endpoint_workloads(
    base: &EntryBase<'_>,
    entry: &ServiceEntry,
    catalog: &Catalog<'_>,
    warnings: &mut Vec<String>,
) -> Result<Vec<LocalWorkload>, ControlPlaneError> {
    let meta = &entry.metadata;
    let namespace = namespace_of(meta);
    let name = meta.name.clone().unwrap_or_default();
    let own = format!("{namespace}/{name}");
    let backed: Vec<&Backend> = catalog
        .backends
        .iter()
        .filter(|b| b.entry.as_deref() == Some(own.as_str()))
        .collect();
    let mut workloads = Vec::new();
    for (i, spec) in entry.spec.endpoints.iter().enumerate() {
        let field = format!("spec.endpoints[{i}]");
        let endpoint = Endpoint {
            what: describe("ServiceEntry", meta),
            field: &field,
            uid: format!(
                "{}//networking.istio.io/ServiceEntry/{namespace}/{name}/{}",
                base.cluster_id, spec.address
            ),
            name: name.clone(),
            namespace,
            spec,
            labels: &spec.labels,
        };
        workloads.extend(entry_workload(base, &endpoint, &backed, warnings)?);
    }
    Ok(workloads)
}

/// A pod as a workload, as istiod builds it; `None` when it is not (yet) in the mesh.
fn pod_workload(
    snapshot: &ClusterSnapshot,
    pod: &Pod,
    backends: &[Backend<'_>],
    network: &str,
    warnings: &mut Vec<String>,
) -> Result<Option<LocalWorkload>, ControlPlaneError> {
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
    let locality = pod_locality(snapshot, &what, &node, warnings);
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

/// The locality of the pod's node; empty with no node, and with a warning for a node the
/// snapshot lacks.
fn pod_locality(
    snapshot: &ClusterSnapshot,
    what: &str,
    node: &str,
    warnings: &mut Vec<String>,
) -> Locality {
    if node.is_empty() {
        return Locality::default();
    }
    match snapshot
        .nodes
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some(node))
    {
        Some(n) => node_locality(n),
        None => {
            warnings.push(format!(
                "{what}: runs on node {node:?}, which the snapshot lacks: locality left empty"
            ));
            Locality::default()
        }
    }
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
) -> Result<Option<LocalWorkload>, ControlPlaneError> {
    let (what, spec) = (&endpoint.what, endpoint.spec);
    let Ok(ip) = spec.address.parse::<IpAddr>() else {
        warnings.push(format!(
            "{what}: field `{}.address` is {:?}, not an IP address: ztunnel needs one to reach \
             the workload, so it is skipped",
            endpoint.field, spec.address
        ));
        return Ok(None);
    };
    let locality = parse_locality(&spec.locality)
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
    target: impl Fn(&Backend<'_>, &PortRule<'_>) -> Result<Option<u16>, ControlPlaneError>,
    warnings: &mut Vec<String>,
) -> Result<BTreeMap<String, BTreeMap<u16, u16>>, ControlPlaneError> {
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

/// The number of a pod's container port of that name.
fn container_port(pod: &Pod, name: &str) -> Option<u16> {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some(name))
        .and_then(|p| u16::try_from(p.container_port).ok())
}

fn pod_ips(pod: &Pod, what: &str) -> Result<Vec<IpAddr>, ControlPlaneError> {
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

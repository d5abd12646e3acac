//! Services: the Services and ServiceEntries of ambient namespaces as services of the local
//! config (hostname, VIPs, ports, load balancing), and, for each, what its endpoints must match
//! to back it (a [`Backend`]).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use meshcert_model::Profile;
use meshcert_ztunnel::local_config::{self, NetworkAddress};

use crate::distribution::{load_balancer, resolve_distribution, resolve_entry_distribution};
use crate::istio::{Location, Resolution, ServiceEntry, ServiceEntryPort};
use crate::{
    ClusterSnapshot, ControlPlaneDefects, ControlPlaneError, MeshScope, describe, invalid,
    namespace_of, service_hostname,
};

/// The services of a snapshot's mesh, how their endpoints back them, and the ServiceEntries
/// translated (their inline endpoints become workloads).
pub(crate) struct Catalog<'a> {
    pub(crate) services: Vec<local_config::Service>,
    pub(crate) backends: Vec<Backend<'a>>,
    pub(crate) entries: Vec<&'a ServiceEntry>,
}

/// Every Service, then every ServiceEntry, of the mesh's namespaces; a host already taken is
/// skipped with a warning.
pub(crate) fn catalog<'a>(
    snapshot: &'a ClusterSnapshot,
    scope: &MeshScope<'_>,
    profile: Profile,
    defects: ControlPlaneDefects,
    warnings: &mut Vec<String>,
) -> Result<Catalog<'a>, ControlPlaneError> {
    let mut catalog = Catalog {
        services: Vec::new(),
        backends: Vec::new(),
        entries: Vec::new(),
    };
    for service in &snapshot.services {
        if !scope.contains(&service.metadata) {
            continue;
        }
        if let Some((translated, backend)) =
            translate_service(service, profile, defects, &scope.network, warnings)?
        {
            catalog.services.push(translated);
            catalog.backends.push(backend);
        }
    }
    // Sorted, so which of two entries naming one host wins does not depend on input order.
    let mut entries: Vec<&ServiceEntry> = snapshot
        .service_entries
        .iter()
        .filter(|e| scope.contains(&e.metadata))
        .collect();
    entries.sort_by_key(|e| (namespace_of(&e.metadata), e.metadata.name.as_deref()));
    for entry in entries {
        let Some(translated) = translate_service_entry(entry, profile, &scope.network, warnings)?
        else {
            continue;
        };
        catalog.entries.push(entry);
        for (service, backend) in translated {
            if let Some(taken) = catalog.backends.iter().find(|b| b.key == backend.key) {
                warnings.push(format!(
                    "{}: host {:?} is already a service of {}: skipped",
                    backend.what, service.hostname, taken.what
                ));
                continue;
            }
            catalog.services.push(service);
            catalog.backends.push(backend);
        }
    }
    Ok(catalog)
}

/// A translated service as its endpoints see it: what it selects and how its ports map.
pub(crate) struct Backend<'a> {
    /// `<namespace>/<hostname>`: the key of a workload's `services`.
    pub(crate) key: String,
    pub(crate) namespace: &'a str,
    /// `Service ns/name` or `ServiceEntry ns/name`, for messages.
    pub(crate) what: String,
    /// Label selector; `None` selects nothing (endpoints managed elsewhere, or inline).
    selector: Option<&'a BTreeMap<String, String>>,
    /// `<namespace>/<name>` of the ServiceEntry this host comes from; `None` for a Service.
    pub(crate) entry: Option<String>,
    pub(crate) ports: Vec<PortRule<'a>>,
}

/// One TCP port of a service and where its endpoints serve it.
#[derive(Clone, Copy)]
pub(crate) struct PortRule<'a> {
    pub(crate) port: u16,
    /// The port's name: a ServiceEntry's endpoints map service port names to their ports.
    pub(crate) name: &'a str,
    pub(crate) target: PortTarget<'a>,
}

#[derive(Clone, Copy)]
pub(crate) enum PortTarget<'a> {
    Number(u16),
    /// A Service's named targetPort: each endpoint has its own number for it.
    Named(&'a str),
}

impl Backend<'_> {
    /// Label selector semantics: every selector pair on the workload; no (or an empty)
    /// selector selects nothing.
    pub(crate) fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.selector.is_some_and(|selector| {
            !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
        })
    }
}

impl PortRule<'_> {
    pub(crate) fn target_name(&self) -> String {
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
    defects: ControlPlaneDefects,
    network: &str,
    warnings: &mut Vec<String>,
) -> Result<Option<Translated<'a>>, ControlPlaneError> {
    let (what, name, namespace) = identify("Service", &service.metadata)?;
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
    let Some(vips) = service_vips(&what, spec, network, warnings)? else {
        return Ok(None);
    };
    let rules = port_rules(&what, spec.ports.iter().flatten(), warnings)?;
    let ports = port_map(&rules);
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

/// A Service's VIPs, its cluster IPs; `None` for a headless service (with a warning).
fn service_vips(
    what: &str,
    spec: &ServiceSpec,
    network: &str,
    warnings: &mut Vec<String>,
) -> Result<Option<Vec<NetworkAddress>>, ControlPlaneError> {
    let addresses: Vec<&String> = match (&spec.cluster_ips, &spec.cluster_ip) {
        (Some(ips), _) if !ips.is_empty() => ips.iter().collect(),
        (_, Some(ip)) if !ip.is_empty() => vec![ip],
        _ => {
            return Err(invalid(
                what,
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
    addresses
        .into_iter()
        .map(|address| vip(what, "spec.clusterIPs", address, network))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// A port of a Service or ServiceEntry, as its rule.
trait PortSpec {
    /// The warning the port is skipped with; `None` when ztunnel proxies it.
    fn skipped(&self, what: &str) -> Option<String>;
    /// The port's rule; `i` is its index in `spec.ports`, for messages.
    fn rule(&self, what: &str, i: usize) -> Result<PortRule<'_>, ControlPlaneError>;
}

impl PortSpec for ServicePort {
    fn skipped(&self, what: &str) -> Option<String> {
        (!is_tcp(self)).then(|| {
            format!(
                "{what}: port {} is {}, which ztunnel does not proxy: skipped",
                self.port,
                self.protocol.as_deref().unwrap_or_default()
            )
        })
    }

    fn rule(&self, what: &str, i: usize) -> Result<PortRule<'_>, ControlPlaneError> {
        let service_port = port_number(what, &format!("spec.ports[{i}].port"), self.port)?;
        // A named targetPort can differ per pod: each workload's own port map has the number.
        let target = match &self.target_port {
            None => PortTarget::Number(service_port),
            Some(IntOrString::Int(t)) => PortTarget::Number(port_number(
                what,
                &format!("spec.ports[{i}].targetPort"),
                *t,
            )?),
            Some(IntOrString::String(name)) => PortTarget::Named(name),
        };
        Ok(PortRule {
            port: service_port,
            name: self.name.as_deref().unwrap_or_default(),
            target,
        })
    }
}

/// A ServiceEntry's ports are TCP unless UDP.
impl PortSpec for ServiceEntryPort {
    fn skipped(&self, what: &str) -> Option<String> {
        let protocol = self.protocol.as_deref().unwrap_or_default();
        protocol.eq_ignore_ascii_case("UDP").then(|| {
            format!(
                "{what}: port {} is UDP, which ztunnel does not proxy: skipped",
                self.number
            )
        })
    }

    fn rule(&self, what: &str, i: usize) -> Result<PortRule<'_>, ControlPlaneError> {
        let number = port_number(what, &format!("spec.ports[{i}].number"), self.number)?;
        let target = match self.target_port {
            Some(t) => port_number(what, &format!("spec.ports[{i}].targetPort"), t)?,
            None => number,
        };
        Ok(PortRule {
            port: number,
            name: &self.name,
            target: PortTarget::Number(target),
        })
    }
}

/// A service's port rules in order; a skipped port is left out with a warning.
fn port_rules<'a, P: PortSpec + 'a>(
    what: &str,
    ports: impl IntoIterator<Item = &'a P>,
    warnings: &mut Vec<String>,
) -> Result<Vec<PortRule<'a>>, ControlPlaneError> {
    let mut rules = Vec::new();
    for (i, port) in ports.into_iter().enumerate() {
        match port.skipped(what) {
            Some(warning) => warnings.push(warning),
            None => rules.push(port.rule(what, i)?),
        }
    }
    Ok(rules)
}

/// The port map of the local config, service port -> target port: as istiod does, 0 for a
/// named targetPort, which each workload's own port map resolves.
fn port_map(rules: &[PortRule<'_>]) -> BTreeMap<u16, u16> {
    let mut ports = BTreeMap::new();
    for rule in rules {
        let target = match rule.target {
            PortTarget::Number(n) => n,
            PortTarget::Named(_) => 0,
        };
        ports.insert(rule.port, target);
    }
    ports
}

/// One service per host of a MESH_INTERNAL, STATIC ServiceEntry; `None` when the entry is
/// skipped as a whole (with a warning).
fn translate_service_entry<'a>(
    entry: &'a ServiceEntry,
    profile: Profile,
    network: &str,
    warnings: &mut Vec<String>,
) -> Result<Option<Vec<Translated<'a>>>, ControlPlaneError> {
    let (what, name, namespace) = identify("ServiceEntry", &entry.metadata)?;
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
    let rules = port_rules(&what, &spec.ports, warnings)?;
    let ports = port_map(&rules);
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

/// `Kind namespace/name` for messages, the object's name (required) and its namespace.
fn identify<'a>(
    kind: &str,
    meta: &'a ObjectMeta,
) -> Result<(String, String, &'a str), ControlPlaneError> {
    let what = describe(kind, meta);
    let name = meta
        .name
        .clone()
        .ok_or_else(|| invalid(&what, "metadata.name", "is missing"))?;
    Ok((what, name, namespace_of(meta)))
}

/// A VIP: an IP address on the cluster's network. A ServiceEntry may name a CIDR range, which
/// ztunnel cannot capture as one address.
fn vip(
    what: &str,
    field: &str,
    address: &str,
    network: &str,
) -> Result<NetworkAddress, ControlPlaneError> {
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

pub(crate) fn port_number<N: Copy + fmt::Display + TryInto<u16>>(
    what: &str,
    field: &str,
    port: N,
) -> Result<u16, ControlPlaneError> {
    port.try_into()
        .ok()
        .filter(|p: &u16| *p != 0)
        .ok_or_else(|| invalid(what, field, format_args!("is {port}: it must be 1..65535")))
}

fn is_tcp(port: &ServicePort) -> bool {
    matches!(port.protocol.as_deref(), None | Some("TCP"))
}

//! The local config as the `istio.workload.Address` resources istiod serves ztunnel, named as
//! istiod names them: a workload by its uid, a service by `<namespace>/<hostname>`.
//!
//! Every field the local config carries reaches the message with the meaning upstream ztunnel
//! reads it with (`TryFrom<XdsWorkload>` in `src/state/workload.rs`, `TryFrom<&XdsService>` in
//! `src/state/service.rs`), so an xDS-fed ztunnel builds the state a file-fed one does.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use meshcert_istio_api::workload::{
    self as api, Address, LoadBalancing, PortList, TunnelProtocol, WorkloadStatus, WorkloadType,
    address, load_balancing,
};
use meshcert_ztunnel::local_config::{
    HealthPolicy, HealthStatus, LoadBalancer, LoadBalancerMode, LocalConfig, LocalWorkload,
    Locality, NetworkAddress, Protocol, RoutingPreference, Service,
};

/// Every workload and service of `config` as a named resource, workloads first, each group in
/// the config's order.
pub fn addresses(config: &LocalConfig) -> Vec<(String, Address)> {
    let workloads = config
        .workloads
        .iter()
        .map(|w| (workload_resource_name(w), workload_address(w)));
    let services = config
        .services
        .iter()
        .map(|s| (service_resource_name(s), service_address(s)));
    workloads.chain(services).collect()
}

/// An address with the version it is served at.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct VersionedAddress {
    pub(crate) version: String,
    pub(crate) address: Address,
}

/// [`addresses`] by name, each versioned by a digest of the config entry it comes from, so the
/// same entry has the same version on every stream and after a reconnect.
pub(crate) fn versioned_addresses(config: &LocalConfig) -> BTreeMap<String, VersionedAddress> {
    let workloads = config.workloads.iter().map(|w| {
        let version = digest(w);
        (workload_resource_name(w), version, workload_address(w))
    });
    let services = config.services.iter().map(|s| {
        let version = digest(s);
        (service_resource_name(s), version, service_address(s))
    });
    workloads
        .chain(services)
        .map(|(name, version, address)| (name, VersionedAddress { version, address }))
        .collect()
}

/// A digest of the entry's JSON (its maps are ordered, so equal entries give equal text).
pub(crate) fn digest(entry: &impl serde::Serialize) -> String {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let text = serde_json::to_string(entry).expect("a local config entry always serialises");
    let mut hasher = DefaultHasher::new();
    text.hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// Istiod names a workload resource by its uid.
pub fn workload_resource_name(workload: &LocalWorkload) -> String {
    workload.uid.clone()
}

/// Istiod names a service resource `<namespace>/<hostname>`, the key workloads use for it.
pub fn service_resource_name(service: &Service) -> String {
    format!("{}/{}", service.namespace, service.hostname)
}

fn workload_address(w: &LocalWorkload) -> Address {
    Address {
        r#type: Some(address::Type::Workload(workload(w))),
    }
}

fn service_address(s: &Service) -> Address {
    Address {
        r#type: Some(address::Type::Service(service(s))),
    }
}

fn workload(w: &LocalWorkload) -> api::Workload {
    api::Workload {
        uid: w.uid.clone(),
        name: w.name.clone(),
        namespace: w.namespace.clone(),
        addresses: w.workload_ips.iter().map(ip_bytes).collect(),
        hostname: w.hostname.clone(),
        network: w.network.clone(),
        tunnel_protocol: tunnel_protocol(w.protocol) as i32,
        // Upstream reads an empty trust domain as `cluster.local`, an empty service account as
        // `default` and an empty cluster id as `Kubernetes`: passed as they are, they mean the
        // same on both paths.
        trust_domain: w.trust_domain.clone(),
        service_account: w.service_account.clone(),
        node: w.node.clone(),
        // The local config has no workload type; istiod sets POD for a pod it cannot trace to a
        // controller, and upstream only lowercases it into metric labels.
        workload_type: WorkloadType::Pod as i32,
        workload_name: w.workload_name.clone(),
        services: w
            .services
            .iter()
            .map(|(host, ports)| (host.clone(), port_list(ports)))
            .collect::<HashMap<_, _>>(),
        status: workload_status(w.status) as i32,
        cluster_id: w.cluster_id.clone(),
        locality: locality(&w.locality),
        // Upstream reads unset as 1, so the value always travels.
        capacity: Some(w.capacity),
        ..api::Workload::default()
    }
}

fn service(s: &Service) -> api::Service {
    api::Service {
        hostname: s.hostname.clone(),
        addresses: s.vips.iter().map(network_address).collect(),
        ports: port_list(&s.ports).ports,
        name: s.name.clone(),
        namespace: s.namespace.clone(),
        subject_alt_names: s.subject_alt_names.clone(),
        load_balancing: s.load_balancer.as_ref().map(load_balancing),
        ..api::Service::default()
    }
}

/// Upstream reads an address as 4 bytes (IPv4) or 16 (IPv6), nothing else.
fn ip_bytes(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

fn network_address(vip: &NetworkAddress) -> api::NetworkAddress {
    api::NetworkAddress {
        network: vip.network.clone(),
        address: ip_bytes(&vip.address),
    }
}

/// Ports by service port, so the message is the same for the same map.
fn port_list(ports: &BTreeMap<u16, u16>) -> PortList {
    PortList {
        ports: ports
            .iter()
            .map(|(&service_port, &target_port)| api::Port {
                service_port: service_port.into(),
                target_port: target_port.into(),
            })
            .collect(),
    }
}

/// Upstream: HBONE -> HBONE, NONE -> TCP.
fn tunnel_protocol(protocol: Protocol) -> TunnelProtocol {
    match protocol {
        Protocol::TCP => TunnelProtocol::None,
        Protocol::HBONE => TunnelProtocol::Hbone,
    }
}

fn workload_status(status: HealthStatus) -> WorkloadStatus {
    match status {
        HealthStatus::Healthy => WorkloadStatus::Healthy,
        HealthStatus::Unhealthy => WorkloadStatus::Unhealthy,
    }
}

/// Unset when every part is empty: upstream reads a missing locality as the empty one.
fn locality(locality: &Locality) -> Option<api::Locality> {
    (*locality != Locality::default()).then(|| api::Locality {
        region: locality.region.clone(),
        zone: locality.zone.clone(),
        subzone: locality.subzone.clone(),
    })
}

fn load_balancing(balancer: &LoadBalancer) -> LoadBalancing {
    LoadBalancing {
        routing_preference: balancer
            .routing_preferences
            .iter()
            .map(|&p| scope(p) as i32)
            .collect(),
        mode: mode(balancer.mode) as i32,
        health_policy: health_policy(balancer.health_policy) as i32,
    }
}

fn scope(preference: RoutingPreference) -> load_balancing::Scope {
    use load_balancing::Scope;
    match preference {
        RoutingPreference::Region => Scope::Region,
        RoutingPreference::Zone => Scope::Zone,
        RoutingPreference::Subzone => Scope::Subzone,
        RoutingPreference::Node => Scope::Node,
        RoutingPreference::Cluster => Scope::Cluster,
        RoutingPreference::Network => Scope::Network,
    }
}

/// Upstream reads UNSPECIFIED_MODE as its `Standard` (preferences ignored).
fn mode(mode: LoadBalancerMode) -> load_balancing::Mode {
    use load_balancing::Mode;
    match mode {
        LoadBalancerMode::Standard => Mode::UnspecifiedMode,
        LoadBalancerMode::Strict => Mode::Strict,
        LoadBalancerMode::Failover => Mode::Failover,
        LoadBalancerMode::Passthrough => Mode::Passthrough,
    }
}

fn health_policy(policy: HealthPolicy) -> load_balancing::HealthPolicy {
    match policy {
        HealthPolicy::OnlyHealthy => load_balancing::HealthPolicy::OnlyHealthy,
        HealthPolicy::AllowAll => load_balancing::HealthPolicy::AllowAll,
    }
}

#[cfg(test)]
#[path = "translate_tests.rs"]
mod tests;

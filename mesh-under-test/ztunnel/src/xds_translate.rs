//! `istio.workload.Address` resources -> [`LocalConfig`]: the exact inverse of the control
//! plane's translation of the file's fields, so a model pushed over xDS is the one the file
//! would have given. Each field is read as upstream reads it (`TryFrom<&XdsWorkload>` in
//! src/state/workload.rs, `TryFrom<&XdsService>` in src/state/service.rs): addresses as raw 4
//! or 16 bytes, `services` keyed `<namespace>/<hostname>`, an unset capacity as 1, an
//! unspecified load-balancing mode as Standard. Strings are kept as sent (defaults such as the
//! trust domain are the model's business, as for the file). What the file cannot say (waypoints,
//! network gateways, application tunnels, authorization policies) is refused with the
//! resource's name; what it need not say (workload type, canonical names) is ignored.

use std::collections::BTreeMap;
use std::net::IpAddr;

use meshcert_istio_api::workload::{
    self as xds, Address, LoadBalancing, Port, TunnelProtocol, WorkloadStatus, address,
    load_balancing,
};

use crate::local_config::{
    HealthPolicy, HealthStatus, LoadBalancer, LoadBalancerMode, LocalConfig, LocalWorkload,
    Locality, NetworkAddress, Protocol, RoutingPreference, Service,
};

/// The config the named resources describe, in the order given. Errors name the resource.
pub fn local_config<'a>(
    resources: impl IntoIterator<Item = (&'a String, &'a Address)>,
) -> Result<LocalConfig, String> {
    let mut config = LocalConfig::default();
    for (name, resource) in resources {
        let named = |e: String| format!("resource {name:?}: {e}");
        match &resource.r#type {
            Some(address::Type::Workload(w)) => config.workloads.push(workload(w).map_err(named)?),
            Some(address::Type::Service(s)) => config.services.push(service(s).map_err(named)?),
            None => return Err(named("holds neither a workload nor a service".into())),
        }
    }
    config.validate()?;
    Ok(config)
}

fn workload(w: &xds::Workload) -> Result<LocalWorkload, String> {
    let unsupported = [
        ("waypoint", w.waypoint.is_some()),
        ("network_gateway", w.network_gateway.is_some()),
        ("application_tunnel", w.application_tunnel.is_some()),
        (
            "authorization_policies",
            !w.authorization_policies.is_empty(),
        ),
    ];
    refuse(&unsupported)?;
    let protocol = match TunnelProtocol::try_from(w.tunnel_protocol) {
        Ok(TunnelProtocol::None) => Protocol::TCP,
        Ok(TunnelProtocol::Hbone) => Protocol::HBONE,
        Err(_) => return Err(format!("unknown tunnel_protocol {}", w.tunnel_protocol)),
    };
    let status = match WorkloadStatus::try_from(w.status) {
        Ok(WorkloadStatus::Healthy) => HealthStatus::Healthy,
        Ok(WorkloadStatus::Unhealthy) => HealthStatus::Unhealthy,
        Err(_) => return Err(format!("unknown status {}", w.status)),
    };
    let services = w
        .services
        .iter()
        .map(|(key, list)| Ok((key.clone(), ports(&list.ports)?)))
        .collect::<Result<BTreeMap<_, _>, String>>()?;
    Ok(LocalWorkload {
        uid: w.uid.clone(),
        name: w.name.clone(),
        namespace: w.namespace.clone(),
        service_account: w.service_account.clone(),
        workload_ips: w
            .addresses
            .iter()
            .map(|a| ip(a))
            .collect::<Result<_, _>>()?,
        protocol,
        node: w.node.clone(),
        network: w.network.clone(),
        cluster_id: w.cluster_id.clone(),
        trust_domain: w.trust_domain.clone(),
        workload_name: w.workload_name.clone(),
        hostname: w.hostname.clone(),
        status,
        capacity: w.capacity.unwrap_or(1),
        locality: w
            .locality
            .as_ref()
            .map(|l| Locality {
                region: l.region.clone(),
                zone: l.zone.clone(),
                subzone: l.subzone.clone(),
            })
            .unwrap_or_default(),
        services,
    })
}

fn service(s: &xds::Service) -> Result<Service, String> {
    refuse(&[("waypoint", s.waypoint.is_some())])?;
    let vips = s
        .addresses
        .iter()
        .map(|a| {
            Ok(NetworkAddress {
                network: a.network.clone(),
                address: ip(&a.address)?,
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(Service {
        name: s.name.clone(),
        namespace: s.namespace.clone(),
        hostname: s.hostname.clone(),
        vips,
        ports: ports(&s.ports)?,
        subject_alt_names: s.subject_alt_names.clone(),
        load_balancer: s.load_balancing.as_ref().map(load_balancer).transpose()?,
    })
}

fn load_balancer(lb: &LoadBalancing) -> Result<LoadBalancer, String> {
    use load_balancing::{HealthPolicy as XdsPolicy, Mode, Scope};
    let routing_preferences = lb
        .routing_preference
        .iter()
        .map(|&scope| match Scope::try_from(scope) {
            Ok(Scope::Region) => Ok(RoutingPreference::Region),
            Ok(Scope::Zone) => Ok(RoutingPreference::Zone),
            Ok(Scope::Subzone) => Ok(RoutingPreference::Subzone),
            Ok(Scope::Node) => Ok(RoutingPreference::Node),
            Ok(Scope::Cluster) => Ok(RoutingPreference::Cluster),
            Ok(Scope::Network) => Ok(RoutingPreference::Network),
            Ok(Scope::UnspecifiedScope) | Err(_) => {
                Err(format!("invalid routing_preference {scope}"))
            }
        })
        .collect::<Result<_, _>>()?;
    let mode = match Mode::try_from(lb.mode) {
        Ok(Mode::UnspecifiedMode) => LoadBalancerMode::Standard,
        Ok(Mode::Strict) => LoadBalancerMode::Strict,
        Ok(Mode::Failover) => LoadBalancerMode::Failover,
        Ok(Mode::Passthrough) => LoadBalancerMode::Passthrough,
        Err(_) => return Err(format!("unknown load_balancing mode {}", lb.mode)),
    };
    let health_policy = match XdsPolicy::try_from(lb.health_policy) {
        Ok(XdsPolicy::OnlyHealthy) => HealthPolicy::OnlyHealthy,
        Ok(XdsPolicy::AllowAll) => HealthPolicy::AllowAll,
        Err(_) => return Err(format!("unknown health_policy {}", lb.health_policy)),
    };
    Ok(LoadBalancer {
        routing_preferences,
        mode,
        health_policy,
    })
}

/// Service port -> target port; ports are 16-bit.
fn ports(ports: &[Port]) -> Result<BTreeMap<u16, u16>, String> {
    let port = |p: u32| u16::try_from(p).map_err(|_| format!("port {p} is above 65535"));
    ports
        .iter()
        .map(|p| Ok((port(p.service_port)?, port(p.target_port)?)))
        .collect()
}

/// 4 bytes: IPv4; 16: IPv6; anything else is an error, as upstream's `byte_to_ip`.
fn ip(bytes: &[u8]) -> Result<IpAddr, String> {
    match bytes.len() {
        4 => Ok(IpAddr::from(<[u8; 4]>::try_from(bytes).expect("4 bytes"))),
        16 => Ok(IpAddr::from(<[u8; 16]>::try_from(bytes).expect("16 bytes"))),
        n => Err(format!("an address of {n} bytes (expected 4 or 16)")),
    }
}

fn refuse(fields: &[(&str, bool)]) -> Result<(), String> {
    match fields.iter().find(|(_, set)| *set) {
        Some((field, _)) => Err(format!(
            "{field} is set, which the reference ztunnel does not support"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
#[path = "xds_translate_tests.rs"]
mod tests;

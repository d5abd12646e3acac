//! The routing model built from one local config file: this proxy's own workload, and for every
//! service VIP and port the endpoints grouped into priority levels relative to that workload's
//! locality. Immutable; a config reload builds a new one and swaps it in.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use meshcert_model::Identity;

use crate::ZtunnelError;
use crate::config::WorkloadInfo;
use crate::defects::Defects;
use crate::local_config::{
    HealthPolicy, HealthStatus, LoadBalancerMode, LocalConfig, LocalWorkload, Service,
};
use crate::log::{Level, Record};
use crate::ranking::{Ranking, StrictScope};

const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";

/// The pod this proxy serves (`PROXY_WORKLOAD_INFO`), as the config file describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyWorkload {
    pub info: WorkloadInfo,
    /// `None` when the file does not define it: then this proxy's locality is unknown.
    pub workload: Option<LocalWorkload>,
    /// `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`.
    pub identity: String,
}

impl ProxyWorkload {
    /// The warning to log when the file does not define this proxy's workload. Upstream waits
    /// for it and meanwhile fails connections; the reference keeps serving, but with no
    /// locality to compare, no endpoint ranks as close and `Strict` services drop everything.
    pub fn missing_record(&self, origin: &str) -> Option<Record> {
        if self.workload.is_some() {
            return None;
        }
        Some(
            Record::new(
                Level::Warn,
                "config",
                "proxy workload not in the config, its locality is unknown",
            )
            .str(
                "workload",
                format!("{}/{}", self.info.namespace, self.info.name),
            )
            .str("path", origin)
            .str(
                "effect",
                "every endpoint ranks alike; Strict services drop every connection",
            )
            .str(
                "hint",
                "add the workload PROXY_WORKLOAD_INFO names to workloads, or fix PROXY_WORKLOAD_INFO",
            ),
        )
    }
}

/// One endpoint: a workload on one target port. Outlier state is kept per key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndpointKey {
    pub uid: String,
    pub port: u16,
}

impl fmt::Display for EndpointKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.uid, self.port)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub key: EndpointKey,
    pub addr: SocketAddr,
    pub workload: Arc<LocalWorkload>,
    /// Hostname of the (first) service this endpoint was found through, for logs.
    pub service: String,
}

/// A service port and its endpoints, ranked for this proxy.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// `<namespace>/<hostname>`: the round-robin counter is kept per service.
    pub service_key: String,
    pub hostname: String,
    pub port: u16,
    /// Best first; endpoints sorted by workload uid inside each level.
    pub levels: Vec<Vec<Arc<Endpoint>>>,
    /// Set for a `Strict` service: a connection with no usable endpoint here is dropped.
    pub strict: Option<StrictScope>,
}

impl Route {
    pub fn endpoints(&self) -> impl Iterator<Item = &Arc<Endpoint>> {
        self.levels.iter().flatten()
    }

    /// Another endpoint of this route than `key` (the next one in order), if there is one.
    pub fn other_endpoint(&self, key: &EndpointKey) -> Option<&Arc<Endpoint>> {
        let all: Vec<&Arc<Endpoint>> = self.endpoints().collect();
        let at = all.iter().position(|e| &e.key == key)?;
        (1..all.len()).map(|i| all[(at + i) % all.len()]).next()
    }
}

/// Where a redirected connection goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Destination {
    /// A service VIP and port: pick an endpoint.
    Service(Arc<Route>),
    /// A workload's own address: connect to it.
    Workload {
        workload: Arc<LocalWorkload>,
        addr: SocketAddr,
    },
    /// Unknown address, or a service in `Passthrough` mode: connect to the original destination.
    Passthrough(SocketAddr),
    /// A service VIP on a port the service does not expose.
    Unroutable { hostname: String, reason: String },
}

#[derive(Debug)]
pub struct Model {
    config: LocalConfig,
    pub proxy: ProxyWorkload,
    /// VIP address -> (VIP network, index into `config.services`).
    vips: HashMap<IpAddr, Vec<(String, usize)>>,
    routes: HashMap<(usize, u16), Arc<Route>>,
    workloads_by_ip: HashMap<IpAddr, Vec<Arc<LocalWorkload>>>,
    endpoints: Vec<Arc<Endpoint>>,
}

impl Model {
    /// Builds the model; `_origin` would name the config file in errors (every parsed file
    /// builds today: HBONE workloads too). A file that does not define this proxy's own
    /// workload still builds (see [`ProxyWorkload::missing_record`]).
    pub fn build(
        config: LocalConfig,
        info: &WorkloadInfo,
        defects: &Defects,
        _origin: &str,
    ) -> Result<Self, ZtunnelError> {
        let own = config
            .workloads
            .iter()
            .find(|w| w.namespace == info.namespace && w.name == info.name)
            .cloned();
        let trust_domain = match own.as_ref() {
            Some(w) if !w.trust_domain.is_empty() => w.trust_domain.as_str(),
            _ => DEFAULT_TRUST_DOMAIN,
        };
        let proxy = ProxyWorkload {
            identity: format!(
                "spiffe://{trust_domain}/ns/{}/sa/{}",
                info.namespace, info.service_account
            ),
            info: info.clone(),
            workload: own,
        };

        let workloads: Vec<Arc<LocalWorkload>> =
            config.workloads.iter().cloned().map(Arc::new).collect();
        let mut workloads_by_ip: HashMap<IpAddr, Vec<Arc<LocalWorkload>>> = HashMap::new();
        for w in &workloads {
            for ip in &w.workload_ips {
                workloads_by_ip.entry(*ip).or_default().push(Arc::clone(w));
            }
        }

        let mut vips: HashMap<IpAddr, Vec<(String, usize)>> = HashMap::new();
        let mut routes = HashMap::new();
        let mut endpoints: BTreeMap<EndpointKey, Arc<Endpoint>> = BTreeMap::new();
        for (index, service) in config.services.iter().enumerate() {
            for vip in &service.vips {
                vips.entry(vip.address)
                    .or_default()
                    .push((vip.network.clone(), index));
            }
            for &port in service.ports.keys() {
                let route =
                    build_route(service, port, &workloads, proxy.workload.as_ref(), defects);
                for e in route.endpoints() {
                    endpoints
                        .entry(e.key.clone())
                        .or_insert_with(|| Arc::clone(e));
                }
                routes.insert((index, port), Arc::new(route));
            }
        }
        Ok(Self {
            config,
            proxy,
            vips,
            routes,
            workloads_by_ip,
            endpoints: endpoints.into_values().collect(),
        })
    }

    pub fn config(&self) -> &LocalConfig {
        &self.config
    }

    /// Every endpoint of every service, once each, sorted by key: what the health checker probes.
    pub fn endpoints(&self) -> &[Arc<Endpoint>] {
        &self.endpoints
    }

    /// Routes an original destination. Addresses on this proxy's network win over others.
    pub fn destination(&self, dst: SocketAddr) -> Destination {
        let network = self.proxy.workload.as_ref().map(|w| w.network.as_str());
        if let Some(entries) = self.vips.get(&dst.ip()) {
            let (_, index) = entries
                .iter()
                .find(|(n, _)| Some(n.as_str()) == network)
                .unwrap_or(&entries[0]);
            let service = &self.config.services[*index];
            let passthrough = service
                .load_balancer
                .as_ref()
                .is_some_and(|lb| lb.mode == LoadBalancerMode::Passthrough);
            if passthrough {
                return Destination::Passthrough(dst);
            }
            return match self.routes.get(&(*index, dst.port())) {
                Some(route) => Destination::Service(Arc::clone(route)),
                None => Destination::Unroutable {
                    hostname: service.hostname.clone(),
                    reason: format!("service {} has no port {}", service.hostname, dst.port()),
                },
            };
        }
        if let Some(workload) = self.workload_at(dst.ip()) {
            return Destination::Workload {
                workload: Arc::clone(workload),
                addr: dst,
            };
        }
        Destination::Passthrough(dst)
    }

    /// The workload with address `ip`, preferring one on this proxy's network.
    pub fn workload_at(&self, ip: IpAddr) -> Option<&Arc<LocalWorkload>> {
        let network = self.proxy.workload.as_ref().map(|w| w.network.as_str());
        let candidates = self.workloads_by_ip.get(&ip)?;
        candidates
            .iter()
            .find(|w| Some(w.network.as_str()) == network)
            .or(candidates.first())
    }
}

/// The endpoints of one service port: workloads listing the service, healthy unless the
/// service allows all, on the workload's target port (else the service's), ranked for `client`
/// (`None`: unknown locality).
fn build_route(
    service: &Service,
    port: u16,
    workloads: &[Arc<LocalWorkload>],
    client: Option<&LocalWorkload>,
    defects: &Defects,
) -> Route {
    let service_key = format!("{}/{}", service.namespace, service.hostname);
    let allow_all = service
        .load_balancer
        .as_ref()
        .is_some_and(|lb| lb.health_policy == HealthPolicy::AllowAll);
    let mut endpoints: Vec<Arc<Endpoint>> = workloads
        .iter()
        .filter(|w| allow_all || w.status == HealthStatus::Healthy)
        .filter_map(|w| {
            let ports = w.services.get(&service_key)?;
            let target = ports
                .get(&port)
                .copied()
                .or_else(|| service.ports.get(&port).copied())
                .filter(|p| *p != 0)?;
            Some(Arc::new(Endpoint {
                key: EndpointKey {
                    uid: w.uid.clone(),
                    port: target,
                },
                addr: SocketAddr::new(*w.workload_ips.first()?, target),
                workload: Arc::clone(w),
                service: service.hostname.clone(),
            }))
        })
        .collect();
    endpoints.sort_by(|a, b| a.key.cmp(&b.key));
    let ranking = Ranking::of(service.load_balancer.as_ref(), defects);
    Route {
        service_key,
        hostname: service.hostname.clone(),
        port,
        levels: ranking.levels(client, endpoints, |e| &e.workload),
        strict: ranking.strict_scope(),
    }
}

/// A workload's SPIFFE identity, with upstream's defaults for an empty trust domain or
/// service account: what its certificate must name.
pub fn workload_identity(w: &LocalWorkload) -> Identity {
    let or = |value: &str, default: &str| {
        if value.is_empty() {
            default.to_string()
        } else {
            value.to_string()
        }
    };
    Identity::new(
        or(&w.trust_domain, DEFAULT_TRUST_DOMAIN),
        w.namespace.clone(),
        or(&w.service_account, "default"),
    )
}

/// The workload name metrics use (upstream's canonical name), falling back to the pod name.
pub fn canonical_name(w: &LocalWorkload) -> &str {
    if w.workload_name.is_empty() {
        &w.name
    } else {
        &w.workload_name
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const CONFIG: &str = r#"
workloads:
- uid: c1//v1/Pod/httpbin/client-1
  name: client-1
  namespace: httpbin
  serviceAccount: client
  workloadIps: ["10.244.0.5"]
  node: node-a
  network: ""
  clusterId: c1
  locality: {region: r1, zone: z1, subzone: ""}
  services: {}
- uid: c1//v1/Pod/httpbin/in-ambient-c
  name: in-ambient-c
  namespace: httpbin
  workloadIps: ["10.244.1.13"]
  node: node-b
  clusterId: c1
  locality: {region: r1, zone: z2, subzone: ""}
  services: {"httpbin/in-ambient.httpbin.svc.cluster.local": {8000: 9090}}
- uid: c1//v1/Pod/httpbin/in-ambient-a
  name: in-ambient-a
  namespace: httpbin
  workloadIps: ["10.244.1.11"]
  node: node-a
  clusterId: c1
  locality: {region: r1, zone: z1, subzone: ""}
  services: {"httpbin/in-ambient.httpbin.svc.cluster.local": {}}
- uid: c1//v1/Pod/httpbin/in-ambient-b
  name: in-ambient-b
  namespace: httpbin
  workloadIps: ["10.244.1.12"]
  status: Unhealthy
  clusterId: c1
  locality: {region: r1, zone: z1, subzone: ""}
  services: {"httpbin/in-ambient.httpbin.svc.cluster.local": {8000: 8080}}
services:
- name: in-ambient
  namespace: httpbin
  hostname: in-ambient.httpbin.svc.cluster.local
  vips: ["/10.96.0.10"]
  ports: {8000: 8080}
  loadBalancer: {routingPreferences: [Network, Region, Zone], mode: Failover, healthPolicy: OnlyHealthy}
- name: raw
  namespace: httpbin
  hostname: raw.httpbin.svc.cluster.local
  vips: ["/10.96.0.11"]
  ports: {9000: 9000}
  loadBalancer: {routingPreferences: [], mode: Passthrough, healthPolicy: OnlyHealthy}
"#;

    pub(crate) fn client_info() -> WorkloadInfo {
        WorkloadInfo {
            namespace: "httpbin".into(),
            name: "client-1".into(),
            service_account: "client".into(),
        }
    }

    fn model(text: &str) -> Result<Model, ZtunnelError> {
        let config = LocalConfig::parse(text, "test.yaml").unwrap();
        Model::build(config, &client_info(), &Defects::none(), "test.yaml")
    }

    fn service_route(model: &Model) -> Arc<Route> {
        match model.destination("10.96.0.10:8000".parse().unwrap()) {
            Destination::Service(route) => route,
            other => panic!("not a service route: {other:?}"),
        }
    }

    fn level_names(route: &Route) -> Vec<Vec<&str>> {
        route
            .levels
            .iter()
            .map(|l| l.iter().map(|e| e.workload.name.as_str()).collect())
            .collect()
    }

    #[test]
    fn service_vip_routes_to_ranked_healthy_endpoints() {
        let model = model(CONFIG).unwrap();
        let route = service_route(&model);
        let levels: Vec<Vec<String>> = route
            .levels
            .iter()
            .map(|l| {
                l.iter()
                    .map(|e| format!("{} {}", e.workload.name, e.addr))
                    .collect()
            })
            .collect();
        // b is Unhealthy; a shares network+region+zone; c only network+region, with its own port.
        assert_eq!(
            levels,
            [
                vec!["in-ambient-a 10.244.1.11:8080"],
                vec!["in-ambient-c 10.244.1.13:9090"]
            ]
        );
        assert_eq!(
            route.service_key,
            "httpbin/in-ambient.httpbin.svc.cluster.local"
        );
        assert_eq!(
            model.proxy.identity,
            "spiffe://cluster.local/ns/httpbin/sa/client"
        );
        assert_eq!(model.endpoints().len(), 2);
    }

    #[test]
    fn other_destinations() {
        let model = model(CONFIG).unwrap();
        assert!(matches!(
            model.destination("10.96.0.10:9999".parse().unwrap()),
            Destination::Unroutable { reason, .. } if reason.contains("no port 9999")
        ));
        assert_eq!(
            model.destination("10.96.0.11:9000".parse().unwrap()),
            Destination::Passthrough("10.96.0.11:9000".parse().unwrap())
        );
        assert!(matches!(
            model.destination("10.244.1.12:8080".parse().unwrap()),
            Destination::Workload { workload, .. } if workload.name == "in-ambient-b"
        ));
        assert_eq!(
            model.destination("1.2.3.4:80".parse().unwrap()),
            Destination::Passthrough("1.2.3.4:80".parse().unwrap())
        );
    }

    #[test]
    fn allow_all_keeps_unhealthy_endpoints() {
        let model =
            model(&CONFIG.replacen("healthPolicy: OnlyHealthy", "healthPolicy: AllowAll", 1))
                .unwrap();
        let route = service_route(&model);
        assert_eq!(route.endpoints().count(), 3);
        let b = route
            .endpoints()
            .find(|e| e.workload.name == "in-ambient-b")
            .unwrap();
        assert_eq!(
            route.other_endpoint(&b.key).unwrap().workload.name,
            "in-ambient-c"
        );
    }

    #[test]
    fn hbone_workloads_route_like_tcp_ones_and_have_identities() {
        let text = CONFIG.replacen("  node: node-b\n", "  node: node-b\n  protocol: HBONE\n", 1);
        let model = model(&text).unwrap();
        let c = service_route(&model)
            .endpoints()
            .find(|e| e.workload.name == "in-ambient-c")
            .cloned()
            .unwrap();
        assert_eq!(c.workload.protocol, crate::local_config::Protocol::HBONE);
        assert_eq!(
            workload_identity(&c.workload).to_string(),
            "spiffe://cluster.local/ns/httpbin/sa/default"
        );
        let client = model.workload_at("10.244.0.5".parse().unwrap()).unwrap();
        assert_eq!(
            workload_identity(client).to_string(),
            "spiffe://cluster.local/ns/httpbin/sa/client"
        );
    }

    #[test]
    fn missing_own_workload_leaves_the_locality_unknown_and_says_so() {
        let config = LocalConfig::parse(CONFIG, "test.yaml").unwrap();
        let info = WorkloadInfo {
            name: "ghost".into(),
            ..client_info()
        };
        let unknown = Model::build(config, &info, &Defects::none(), "test.yaml").unwrap();
        assert_eq!(unknown.proxy.workload, None);
        assert_eq!(
            unknown.proxy.identity,
            "spiffe://cluster.local/ns/httpbin/sa/client"
        );
        // Nothing is known to be close: the Failover service has one level.
        assert_eq!(
            level_names(&service_route(&unknown)),
            [["in-ambient-a", "in-ambient-c"]]
        );
        let record = unknown.proxy.missing_record("test.yaml").unwrap();
        let line = crate::log::strip_timestamp(&crate::log::format_text(
            &record,
            std::time::SystemTime::now(),
        ))
        .to_string();
        assert_eq!(
            line,
            "warn config proxy workload not in the config, its locality is unknown \
             workload=\"httpbin/ghost\" path=\"test.yaml\" \
             effect=\"every endpoint ranks alike; Strict services drop every connection\" \
             hint=\"add the workload PROXY_WORKLOAD_INFO names to workloads, or fix PROXY_WORKLOAD_INFO\""
        );
        let known = model(CONFIG).unwrap();
        assert_eq!(known.proxy.missing_record("test.yaml"), None);
    }

    #[test]
    fn strict_services_keep_only_matching_endpoints_and_their_scope() {
        let text = CONFIG.replacen(
            "routingPreferences: [Network, Region, Zone], mode: Failover",
            "routingPreferences: [Node], mode: Strict",
            1,
        );
        let route = service_route(&model(&text).unwrap());
        // The client and in-ambient-a run on node-a; c runs on node-b.
        assert_eq!(level_names(&route), [["in-ambient-a"]]);
        assert_eq!(route.strict.as_ref().unwrap().place, "on this node");
        assert_eq!(service_route(&model(CONFIG).unwrap()).strict, None);
    }

    #[test]
    fn defects_reach_the_ranking() {
        let config = LocalConfig::parse(CONFIG, "test.yaml").unwrap();
        let defects: Defects = [crate::defects::Defect::IgnoreLocality]
            .into_iter()
            .collect();
        let model = Model::build(config, &client_info(), &defects, "test.yaml").unwrap();
        assert_eq!(
            level_names(&service_route(&model)),
            [["in-ambient-a", "in-ambient-c"]]
        );
    }
}

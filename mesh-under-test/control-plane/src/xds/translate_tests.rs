//! One table: a local config in, the named resources istiod would serve out. Each
//! non-obvious field says how upstream ztunnel reads it back.

use std::collections::HashMap;

use meshcert_istio_api::workload::{
    self as api, Address, LoadBalancing, PortList, TunnelProtocol, WorkloadStatus, WorkloadType,
    address, load_balancing,
};
use meshcert_ztunnel::local_config::LocalConfig;
use rstest::rstest;

const SERVICE: &str = "
- name: reviews
  namespace: default
  hostname: reviews.default.svc.cluster.local
  vips: ['/10.96.0.9']
  ports: {9080: 8080}
";

fn config(workloads: &str, services: &str) -> LocalConfig {
    LocalConfig::parse(
        &format!("workloads:{workloads}\nservices:{services}"),
        "table",
    )
    .expect("a valid local config")
}

fn ports(pairs: &[(u32, u32)]) -> Vec<api::Port> {
    pairs
        .iter()
        .map(|&(service_port, target_port)| api::Port {
            service_port,
            target_port,
        })
        .collect()
}

fn workload(w: api::Workload) -> Address {
    Address {
        r#type: Some(address::Type::Workload(w)),
    }
}

fn service(s: api::Service) -> Address {
    Address {
        r#type: Some(address::Type::Service(s)),
    }
}

fn reviews() -> (String, Address) {
    (
        "default/reviews.default.svc.cluster.local".into(),
        service(api::Service {
            name: "reviews".into(),
            namespace: "default".into(),
            hostname: "reviews.default.svc.cluster.local".into(),
            addresses: vec![api::NetworkAddress {
                network: String::new(),
                address: vec![10, 96, 0, 9],
            }],
            ports: ports(&[(9080, 8080)]),
            ..api::Service::default()
        }),
    )
}

/// Every field of a pod: upstream reads `addresses` as raw 4/16 bytes, `tunnel_protocol` HBONE
/// as its inbound HBONE, `services` keys split at `/` into namespace and hostname,
/// `capacity` unset as 1, `locality` unset as empty.
fn every_workload_field() -> (LocalConfig, Vec<(String, Address)>) {
    let input = config(
        "
- uid: cluster1//v1/Pod/default/reviews-1
  name: reviews-1
  namespace: default
  serviceAccount: reviews
  workloadIps: ['10.244.1.11', 'fd00::b']
  protocol: HBONE
  node: node-a
  network: net1
  clusterId: cluster1
  trustDomain: example.org
  workloadName: reviews
  hostname: reviews-1.example
  status: Unhealthy
  capacity: 3
  locality: {region: r1, zone: z1, subzone: s1}
  services: {'default/reviews.default.svc.cluster.local': {9080: 8080, 80: 8081}}
",
        SERVICE,
    );
    let expected = api::Workload {
        uid: "cluster1//v1/Pod/default/reviews-1".into(),
        name: "reviews-1".into(),
        namespace: "default".into(),
        addresses: vec![
            vec![10, 244, 1, 11],
            vec![0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0b],
        ],
        hostname: "reviews-1.example".into(),
        network: "net1".into(),
        tunnel_protocol: TunnelProtocol::Hbone as i32,
        trust_domain: "example.org".into(),
        service_account: "reviews".into(),
        node: "node-a".into(),
        workload_type: WorkloadType::Pod as i32,
        workload_name: "reviews".into(),
        services: HashMap::from([(
            "default/reviews.default.svc.cluster.local".into(),
            PortList {
                ports: ports(&[(80, 8081), (9080, 8080)]),
            },
        )]),
        status: WorkloadStatus::Unhealthy as i32,
        cluster_id: "cluster1".into(),
        locality: Some(api::Locality {
            region: "r1".into(),
            zone: "z1".into(),
            subzone: "s1".into(),
        }),
        capacity: Some(3),
        ..api::Workload::default()
    };
    let name = "cluster1//v1/Pod/default/reviews-1".to_string();
    (input, vec![(name, workload(expected)), reviews()])
}

/// A workload with only the required keys: TCP is tunnel NONE (upstream: plain TCP); an empty
/// trust domain, service account and cluster id stay empty (upstream reads them as
/// `cluster.local`, `default`, `Kubernetes`); the default capacity 1 still travels.
fn workload_defaults() -> (LocalConfig, Vec<(String, Address)>) {
    let input = config(
        "
- uid: u1
  name: p1
  namespace: default
  workloadIps: ['10.0.0.1']
  services: {}
",
        " []",
    );
    let expected = api::Workload {
        uid: "u1".into(),
        name: "p1".into(),
        namespace: "default".into(),
        addresses: vec![vec![10, 0, 0, 1]],
        tunnel_protocol: TunnelProtocol::None as i32,
        workload_type: WorkloadType::Pod as i32,
        status: WorkloadStatus::Healthy as i32,
        capacity: Some(1),
        ..api::Workload::default()
    };
    (input, vec![("u1".into(), workload(expected))])
}

/// A service with its load balancing: Standard is UNSPECIFIED_MODE (upstream reads it back as
/// Standard); preferences keep their order; VIPs carry their network beside the raw address.
fn service_load_balancing() -> (LocalConfig, Vec<(String, Address)>) {
    let input = config(
        " []",
        "
- name: ratings
  namespace: shop
  hostname: ratings.shop.svc.cluster.local
  vips: ['net1/10.96.0.10', '/fd00::a']
  ports: {80: 8080, 443: 8443}
  subjectAltNames: ['spiffe://cluster.local/ns/shop/sa/ratings']
  loadBalancer: {routingPreferences: [Network, Region, Zone, Subzone, Node, Cluster], mode: Standard, healthPolicy: AllowAll}
",
    );
    let expected = api::Service {
        name: "ratings".into(),
        namespace: "shop".into(),
        hostname: "ratings.shop.svc.cluster.local".into(),
        addresses: vec![
            api::NetworkAddress {
                network: "net1".into(),
                address: vec![10, 96, 0, 10],
            },
            api::NetworkAddress {
                network: String::new(),
                address: vec![0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a],
            },
        ],
        ports: ports(&[(80, 8080), (443, 8443)]),
        subject_alt_names: vec!["spiffe://cluster.local/ns/shop/sa/ratings".into()],
        load_balancing: Some(LoadBalancing {
            routing_preference: [
                load_balancing::Scope::Network,
                load_balancing::Scope::Region,
                load_balancing::Scope::Zone,
                load_balancing::Scope::Subzone,
                load_balancing::Scope::Node,
                load_balancing::Scope::Cluster,
            ]
            .map(|s| s as i32)
            .to_vec(),
            mode: load_balancing::Mode::UnspecifiedMode as i32,
            health_policy: load_balancing::HealthPolicy::AllowAll as i32,
        }),
        ..api::Service::default()
    };
    let name = "shop/ratings.shop.svc.cluster.local".to_string();
    (input, vec![(name, service(expected))])
}

/// The other modes keep their names; no load balancer stays unset (upstream: none).
fn service_modes() -> (LocalConfig, Vec<(String, Address)>) {
    let with_mode = |name: &str, mode: &str| {
        format!(
            "
- name: {name}
  namespace: default
  hostname: {name}.default.svc.cluster.local
  vips: ['/10.96.0.1']
  ports: {{}}
  loadBalancer: {{routingPreferences: [], mode: {mode}, healthPolicy: OnlyHealthy}}
"
        )
    };
    let services = [
        with_mode("a", "Strict"),
        with_mode("b", "Failover"),
        with_mode("c", "Passthrough"),
    ]
    .concat();
    let input = config(" []", &services);
    let expected = [
        ("a", load_balancing::Mode::Strict),
        ("b", load_balancing::Mode::Failover),
        ("c", load_balancing::Mode::Passthrough),
    ]
    .map(|(name, mode)| {
        let hostname = format!("{name}.default.svc.cluster.local");
        let address = service(api::Service {
            name: name.into(),
            namespace: "default".into(),
            hostname: hostname.clone(),
            addresses: vec![api::NetworkAddress {
                network: String::new(),
                address: vec![10, 96, 0, 1],
            }],
            load_balancing: Some(LoadBalancing {
                routing_preference: vec![],
                mode: mode as i32,
                health_policy: load_balancing::HealthPolicy::OnlyHealthy as i32,
            }),
            ..api::Service::default()
        });
        (format!("default/{hostname}"), address)
    });
    (input, expected.to_vec())
}

#[rstest]
#[case::every_workload_field(every_workload_field())]
#[case::workload_defaults(workload_defaults())]
#[case::service_load_balancing(service_load_balancing())]
#[case::service_modes(service_modes())]
#[case::service_without_load_balancer((config(" []", SERVICE), vec![reviews()]))]
fn local_config_becomes_named_addresses(#[case] case: (LocalConfig, Vec<(String, Address)>)) {
    let (input, expected) = case;
    assert_eq!(super::addresses(&input), expected);
}

/// The reference ztunnel's reading of the resources gives back the file they came from: what
/// the control plane pushes is exactly what `LOCAL_XDS_PATH` would have said.
#[rstest]
#[case::every_workload_field(every_workload_field())]
#[case::service_load_balancing(service_load_balancing())]
#[case::workload_defaults(workload_defaults())]
#[case::service_modes(service_modes())]
#[case::service_without_load_balancer((config(" []", SERVICE), vec![reviews()]))]
fn the_reference_reads_back_the_config_pushed(#[case] case: (LocalConfig, Vec<(String, Address)>)) {
    let (input, _) = case;
    let pushed = super::addresses(&input);
    let read = meshcert_ztunnel::xds_translate::local_config(pushed.iter().map(|(n, a)| (n, a)))
        .expect("the reference accepts every resource the control plane pushes");
    assert_eq!(read, input);
}

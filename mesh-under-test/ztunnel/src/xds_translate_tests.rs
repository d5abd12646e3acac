//! One table: Address resources in, the file text they stand for out (or the error).

use std::collections::HashMap;

use meshcert_istio_api::workload::{
    self as xds, Address, GatewayAddress, LoadBalancing, NetworkAddress as XdsNetworkAddress, Port,
    PortList, address,
};
use rstest::rstest;

use super::local_config;
use crate::local_config::LocalConfig;

fn port(service_port: u32, target_port: u32) -> Port {
    Port {
        service_port,
        target_port,
    }
}

/// Every field the file can say, set.
fn full_workload() -> xds::Workload {
    xds::Workload {
        uid: "cluster1//v1/Pod/httpbin/in-ambient-1".into(),
        name: "in-ambient-1".into(),
        namespace: "httpbin".into(),
        service_account: "in-ambient".into(),
        addresses: vec![vec![10, 244, 1, 11]],
        tunnel_protocol: xds::TunnelProtocol::Hbone as i32,
        node: "node-a".into(),
        network: "net1".into(),
        cluster_id: "cluster1".into(),
        trust_domain: "cluster.local".into(),
        workload_name: "in-ambient".into(),
        hostname: String::new(),
        status: xds::WorkloadStatus::Unhealthy as i32,
        capacity: Some(3),
        locality: Some(xds::Locality {
            region: "r1".into(),
            zone: "z1".into(),
            subzone: "s1".into(),
        }),
        services: HashMap::from([(
            "httpbin/in-ambient.httpbin.svc.cluster.local".into(),
            PortList {
                ports: vec![port(8000, 8080)],
            },
        )]),
        // What istiod sets for a pod and the file cannot say: ignored.
        workload_type: xds::WorkloadType::Pod as i32,
        canonical_name: "in-ambient".into(),
        canonical_revision: "latest".into(),
        ..xds::Workload::default()
    }
}

fn full_service() -> xds::Service {
    xds::Service {
        name: "in-ambient".into(),
        namespace: "httpbin".into(),
        hostname: "in-ambient.httpbin.svc.cluster.local".into(),
        addresses: vec![XdsNetworkAddress {
            network: "net1".into(),
            address: vec![10, 96, 0, 10],
        }],
        ports: vec![port(8000, 8080)],
        subject_alt_names: vec!["spiffe://cluster.local/ns/httpbin/sa/in-ambient".into()],
        load_balancing: Some(LoadBalancing {
            routing_preference: vec![6, 1, 2, 3, 4, 5],
            mode: 2,
            health_policy: 1,
        }),
        ..xds::Service::default()
    }
}

const FULL: &str = r#"
workloads:
- {uid: "cluster1//v1/Pod/httpbin/in-ambient-1", name: in-ambient-1, namespace: httpbin,
   serviceAccount: in-ambient, workloadIps: ["10.244.1.11"], protocol: HBONE, node: node-a,
   network: net1, clusterId: cluster1, trustDomain: cluster.local, workloadName: in-ambient,
   status: Unhealthy, capacity: 3, locality: {region: r1, zone: z1, subzone: s1},
   services: {"httpbin/in-ambient.httpbin.svc.cluster.local": {8000: 8080}}}
services:
- name: in-ambient
  namespace: httpbin
  hostname: in-ambient.httpbin.svc.cluster.local
  vips: ["net1/10.96.0.10"]
  ports: {8000: 8080}
  subjectAltNames: ["spiffe://cluster.local/ns/httpbin/sa/in-ambient"]
  loadBalancer: {routingPreferences: [Network, Region, Zone, Subzone, Node, Cluster], mode: Failover, healthPolicy: AllowAll}
"#;

/// Unset fields: protocol TCP, Healthy, capacity 1, no locality, no load balancer.
const DEFAULTS: &str = r#"
workloads:
- uid: c//v1/Pod/ns/p
  name: p
  namespace: ns
  workloadIps: ["fd00::7"]
  network: ""
  clusterId: ""
  services: {}
services:
- name: s
  namespace: ns
  hostname: s.ns.svc.cluster.local
  vips: ["/10.96.0.11"]
  ports: {80: 0}
"#;

fn bare_workload() -> xds::Workload {
    let mut ip = vec![0xfd, 0];
    ip.extend([0; 13]);
    ip.push(7);
    xds::Workload {
        uid: "c//v1/Pod/ns/p".into(),
        name: "p".into(),
        namespace: "ns".into(),
        addresses: vec![ip],
        ..xds::Workload::default()
    }
}

fn bare_service() -> xds::Service {
    xds::Service {
        name: "s".into(),
        namespace: "ns".into(),
        hostname: "s.ns.svc.cluster.local".into(),
        addresses: vec![XdsNetworkAddress {
            network: String::new(),
            address: vec![10, 96, 0, 11],
        }],
        ports: vec![port(80, 0)],
        ..xds::Service::default()
    }
}

fn workload(w: xds::Workload) -> Address {
    Address {
        r#type: Some(address::Type::Workload(w)),
    }
}

fn service(s: xds::Service) -> Address {
    Address {
        r#type: Some(address::Type::Service(s)),
    }
}

fn waypoint() -> Option<GatewayAddress> {
    Some(GatewayAddress {
        destination: None,
        hbone_mtls_port: 15008,
    })
}

#[rstest]
#[case::every_field(vec![workload(full_workload()), service(full_service())], Ok(FULL))]
#[case::defaults(vec![workload(bare_workload()), service(bare_service())], Ok(DEFAULTS))]
#[case::unspecified_mode_is_standard(
    vec![service(xds::Service { load_balancing: Some(LoadBalancing::default()), ..bare_service() })],
    Ok("services:\n- {name: s, namespace: ns, hostname: s.ns.svc.cluster.local, vips: [\"/10.96.0.11\"], ports: {80: 0}, loadBalancer: {routingPreferences: [], mode: Standard, healthPolicy: OnlyHealthy}}\n")
)]
#[case::address_of_five_bytes(
    vec![workload(xds::Workload { addresses: vec![vec![1, 2, 3, 4, 5]], ..bare_workload() })],
    Err("resource \"r0\": an address of 5 bytes (expected 4 or 16)")
)]
#[case::unknown_tunnel(
    vec![workload(xds::Workload { tunnel_protocol: 7, ..bare_workload() })],
    Err("resource \"r0\": unknown tunnel_protocol 7")
)]
#[case::workload_waypoint(
    vec![workload(xds::Workload { waypoint: waypoint(), ..bare_workload() })],
    Err("resource \"r0\": waypoint is set, which the reference ztunnel does not support")
)]
#[case::authorization_policies(
    vec![workload(xds::Workload { authorization_policies: vec!["ns/deny".into()], ..bare_workload() })],
    Err("resource \"r0\": authorization_policies is set")
)]
#[case::service_waypoint(
    vec![service(xds::Service { waypoint: waypoint(), ..bare_service() })],
    Err("resource \"r0\": waypoint is set")
)]
#[case::unspecified_scope(
    vec![service(xds::Service { load_balancing: Some(LoadBalancing { routing_preference: vec![0], ..LoadBalancing::default() }), ..bare_service() })],
    Err("resource \"r0\": invalid routing_preference 0")
)]
#[case::port_too_big(
    vec![service(xds::Service { ports: vec![port(70000, 80)], ..bare_service() })],
    Err("resource \"r0\": port 70000 is above 65535")
)]
#[case::empty_resource(vec![Address { r#type: None }], Err("resource \"r0\": holds neither"))]
#[case::workload_of_unknown_service(
    vec![workload(full_workload())],
    Err("services names \"httpbin/in-ambient.httpbin.svc.cluster.local\", which no service defines")
)]
fn addresses_become_the_file_they_stand_for(
    #[case] resources: Vec<Address>,
    #[case] expected: Result<&str, &str>,
) {
    let names: Vec<String> = (0..resources.len()).map(|i| format!("r{i}")).collect();
    let translated = local_config(names.iter().zip(&resources));
    match expected {
        Ok(text) => assert_eq!(
            translated.unwrap(),
            LocalConfig::parse(text, "expected.yaml").unwrap()
        ),
        Err(message) => {
            let err = translated.unwrap_err();
            assert!(err.contains(message), "{err}");
        }
    }
}

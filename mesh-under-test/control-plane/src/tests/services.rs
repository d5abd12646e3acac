//! Services and ServiceEntries: selectors, ports, VIPs, skipped objects, error messages.

use std::collections::BTreeMap;

use meshcert_model::Profile;
use rstest::rstest;

use super::*;
use crate::istio::{Location, Resolution};
use crate::testing::*;
use crate::*;
use TrafficDistribution as TD;

#[rstest]
#[case::matches(service("s").selector("app", "a"), pod("p").app("a"), true)]
#[case::subset(service("s").selector("app", "a"), pod("p").app("a").label("version", "v1"), true)]
#[case::all_pairs(service("s").selector("app", "a").selector("version", "v2"), pod("p").app("a").label("version", "v1"), false)]
#[case::other_value(service("s").selector("app", "a"), pod("p").app("b"), false)]
#[case::empty_selector(service("s"), pod("p").app("a"), false)]
#[case::other_namespace(service("s").selector("app", "a").namespace("other"), pod("p").app("a"), false)]
fn selector_matching(#[case] s: ServiceBuilder, #[case] p: PodBuilder, #[case] selected: bool) {
    let mut snap = snapshot();
    snap.namespaces.push(namespace("other").ambient().build());
    snap.services.push(s.port(80, 8080).build());
    snap.pods.push(p.build());
    let t = to_local_config(&snap, Profile::Istio).unwrap();
    assert_eq!(!t.config.workloads[0].services.is_empty(), selected);
    t.config.validate().unwrap();
}

#[test]
fn named_target_port_is_resolved_per_pod() {
    let mut snap = snapshot();
    snap.services.push(
        service("s")
            .selector("app", "a")
            .named_port(80, "http")
            .port(81, 9000)
            .build(),
    );
    snap.pods.push(
        pod("p1")
            .app("a")
            .container_port("http", 8080)
            .ip("10.0.0.1")
            .build(),
    );
    snap.pods.push(
        pod("p2")
            .app("a")
            .container_port("http", 9090)
            .ip("10.0.0.2")
            .build(),
    );
    snap.pods.push(pod("p3").app("a").ip("10.0.0.3").build());
    let t = to_local_config(&snap, Profile::Istio).unwrap();
    let key = "httpbin/s.httpbin.svc.cluster.local";
    assert_eq!(
        t.config.services[0].ports,
        BTreeMap::from([(80, 0), (81, 9000)])
    );
    let ports: Vec<&BTreeMap<u16, u16>> = t
        .config
        .workloads
        .iter()
        .map(|w| &w.services[key])
        .collect();
    assert_eq!(ports[0], &BTreeMap::from([(80, 8080), (81, 9000)]));
    assert_eq!(ports[1], &BTreeMap::from([(80, 9090), (81, 9000)]));
    assert_eq!(ports[2], &BTreeMap::from([(81, 9000)]));
    assert_eq!(t.warnings.len(), 1, "{:?}", t.warnings);
    assert!(t.warnings[0].contains("Pod httpbin/p3") && t.warnings[0].contains("\"http\""));
}

#[test]
fn dual_stack_ips_and_vips() {
    let mut snap = snapshot();
    snap.services.push(
        service("s")
            .cluster_ips(&["10.96.0.10", "fd00::10"])
            .build(),
    );
    snap.pods
        .push(pod("p").ips(&["10.244.0.5", "fd00:244::5"]).build());
    let t = to_local_config(&snap, Profile::Istio).unwrap();
    let vips: Vec<String> = t.config.services[0]
        .vips
        .iter()
        .map(|v| v.to_string())
        .collect();
    assert_eq!(vips, ["/10.96.0.10", "/fd00::10"]);
    assert_eq!(t.config.workloads[0].workload_ips.len(), 2);
}

#[rstest]
#[case::no_cluster_ip(service("s").build_without_ip(), "Service httpbin/s: field `spec.clusterIP`")]
#[case::bad_cluster_ip(service("s").cluster_ip("10.96.0.x"), "Service httpbin/s: field `spec.clusterIPs` has \"10.96.0.x\"")]
#[case::bad_port(service("s").port(70000, 80), "Service httpbin/s: field `spec.ports[0].port` is 70000")]
#[case::bad_target(service("s").port(80, 0), "Service httpbin/s: field `spec.ports[0].targetPort` is 0")]
fn service_errors_name_object_and_field(#[case] s: ServiceBuilder, #[case] fragment: &str) {
    let mut snap = snapshot();
    snap.services.push(s.build());
    let err = to_local_config(&snap, Profile::Istio)
        .unwrap_err()
        .to_string();
    assert!(err.contains(fragment), "{err}");
}

impl ServiceBuilder {
    fn build_without_ip(self) -> ServiceBuilder {
        let mut s = self.build();
        s.spec.as_mut().unwrap().cluster_ip = None;
        ServiceBuilder::from(s)
    }
}

#[test]
fn service_entries_become_one_service_per_host() {
    let t = to_local_config(&with_entries(), Profile::Solo).unwrap();
    t.config.validate().unwrap();
    let hosts: Vec<&str> = t
        .config
        .services
        .iter()
        .map(|s| s.hostname.as_str())
        .collect();
    assert_eq!(
        hosts,
        [
            "alias.mesh.example",
            "in-ambient.httpbin.svc.cluster.local",
            "in-ambient.mesh.example"
        ]
    );
    let s = &t.config.services[2];
    assert_eq!(
        (s.name.as_str(), s.namespace.as_str()),
        ("in-ambient-se", "httpbin")
    );
    assert_eq!(s.vips[0].to_string(), "net1/10.96.1.10");
    assert_eq!(s.ports, BTreeMap::from([(80, 8080), (81, 81)]));
    assert_eq!(s.load_balancer, load_balancer(TD::PreferNetwork));
    assert!(
        t.warnings.iter().any(|w| w.contains("port 53 is UDP")),
        "{:?}",
        t.warnings
    );
    // Every in-ambient pod backs the Service and both hosts of the entry.
    let pod = t
        .config
        .workloads
        .iter()
        .find(|w| w.name == "in-ambient-1")
        .unwrap();
    assert_eq!(
        pod.services.keys().collect::<Vec<_>>(),
        [
            "httpbin/alias.mesh.example",
            "httpbin/in-ambient.httpbin.svc.cluster.local",
            "httpbin/in-ambient.mesh.example"
        ]
    );
    assert_eq!(
        pod.services["httpbin/in-ambient.mesh.example"],
        BTreeMap::from([(80, 8080), (81, 81)])
    );
}

#[rstest]
#[case::external(service_entry("se").location(Location::MeshExternal), "location is MESH_EXTERNAL")]
#[case::dns(service_entry("se").resolution(Resolution::Dns), "resolution is DNS")]
#[case::no_address(service_entry("se").addresses(&[]), "has no address")]
#[case::duplicate_host(service_entry("se").hosts(&["in-ambient.httpbin.svc.cluster.local"]), "already a service of Service httpbin/in-ambient")]
fn skipped_service_entries_are_warnings(
    #[case] entry: ServiceEntryBuilder,
    #[case] fragment: &str,
) {
    let mut snap = snapshot();
    snap.services.push(service("in-ambient").build());
    snap.service_entries
        .push(entry.port(80, "http", None).selector("app", "a").build());
    snap.pods.push(pod("p").app("a").build());
    let t = to_local_config(&snap, Profile::Istio).unwrap();
    t.config.validate().unwrap();
    assert_eq!(t.config.services.len(), 1);
    assert!(t.config.workloads[0].services.is_empty());
    assert_eq!(t.warnings.len(), 1, "{:?}", t.warnings);
    assert!(
        t.warnings[0].starts_with("ServiceEntry httpbin/se: ") && t.warnings[0].contains(fragment),
        "{}",
        t.warnings[0]
    );
}

#[test]
fn allocated_addresses_are_per_host() {
    let mut snap = snapshot();
    snap.service_entries.push(
        service_entry("se")
            .hosts(&["a.example", "b.example"])
            .addresses(&[])
            .allocated("a.example", "10.96.0.20")
            .allocated("b.example", "10.96.0.21")
            .build(),
    );
    let t = to_local_config(&snap, Profile::Istio).unwrap();
    let vips: Vec<String> = t
        .config
        .services
        .iter()
        .map(|s| format!("{} {}", s.hostname, s.vips[0]))
        .collect();
    assert_eq!(vips, ["a.example /10.96.0.20", "b.example /10.96.0.21"]);
}

#[rstest]
#[case::cidr(service_entry("se").addresses(&["10.96.1.0/24"]), "ServiceEntry httpbin/se: field `spec.addresses` has \"10.96.1.0/24\"")]
#[case::bad_allocation(service_entry("se").addresses(&[]).allocated("se.mesh.example", "x"), "ServiceEntry httpbin/se: field `status.addresses` has \"x\"")]
#[case::port(service_entry("se").port(0, "http", None), "ServiceEntry httpbin/se: field `spec.ports[0].number` is 0")]
#[case::target(service_entry("se").port(80, "http", Some(70000)), "ServiceEntry httpbin/se: field `spec.ports[0].targetPort` is 70000")]
#[case::endpoint_locality(service_entry("se").endpoint(workload_entry("x").locality("a/b/c/d").spec()), "ServiceEntry httpbin/se: field `spec.endpoints[0].locality`")]
fn service_entry_errors_name_object_and_field(
    #[case] entry: ServiceEntryBuilder,
    #[case] fragment: &str,
) {
    let mut snap = snapshot();
    snap.service_entries.push(entry.build());
    let err = to_local_config(&snap, Profile::Istio)
        .unwrap_err()
        .to_string();
    assert!(err.contains(fragment), "{err}");
}

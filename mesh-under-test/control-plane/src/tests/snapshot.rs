//! Whole snapshots: the guide's example, order independence, mesh enrolment, warnings.

use std::collections::BTreeMap;
use std::net::IpAddr;

use meshcert_model::Profile;
use meshcert_ztunnel::local_config::{HealthStatus, Locality};

use super::*;
use crate::istio::DestinationRule;
use crate::testing::*;
use crate::*;
use TrafficDistribution as TD;

#[test]
fn the_guide_translates_to_the_design_example() {
    let t = to_local_config(&guide(), Profile::Solo).unwrap();
    assert!(t.warnings.is_empty(), "{:?}", t.warnings);
    let config = t.config;
    config.validate().unwrap();
    assert_eq!(config.services.len(), 1);
    let s = &config.services[0];
    assert_eq!(s.hostname, "in-ambient.httpbin.svc.cluster.local");
    assert_eq!(s.vips[0].to_string(), "net1/10.96.0.10");
    assert_eq!(s.ports, BTreeMap::from([(8000, 8080)]));
    assert_eq!(s.load_balancer, load_balancer(TD::PreferNetwork));
    let uids: Vec<&str> = config.workloads.iter().map(|w| w.uid.as_str()).collect();
    assert_eq!(
        uids,
        [
            "cluster1//v1/Pod/httpbin/client-in-ambient-1",
            "cluster1//v1/Pod/httpbin/in-ambient-1",
            "cluster1//v1/Pod/httpbin/in-ambient-2",
            "cluster1//v1/Pod/httpbin/in-ambient-3",
        ]
    );
    let w = &config.workloads[1];
    assert_eq!(w.name, "in-ambient-1");
    assert_eq!(w.service_account, "in-ambient");
    assert_eq!(w.workload_ips, ["10.244.1.11".parse::<IpAddr>().unwrap()]);
    assert_eq!(w.network, "net1");
    assert_eq!(w.cluster_id, "cluster1");
    assert_eq!(w.trust_domain, "cluster.local");
    assert_eq!(w.workload_name, "in-ambient");
    assert_eq!(w.status, HealthStatus::Healthy);
    assert_eq!(
        w.locality,
        Locality {
            region: "r1".into(),
            zone: "z1".into(),
            subzone: String::new()
        }
    );
    assert_eq!(
        w.services,
        BTreeMap::from([(
            "httpbin/in-ambient.httpbin.svc.cluster.local".to_string(),
            BTreeMap::from([(8000, 8080)])
        )])
    );
    // The client backs no service and has the default service account.
    assert!(config.workloads[0].services.is_empty());
    assert_eq!(config.workloads[0].service_account, "default");
    // And the YAML written for ztunnel reads back as the same config.
    assert_eq!(LocalConfig::parse(&config.to_yaml(), "t").unwrap(), config);
}

#[test]
fn output_does_not_depend_on_input_order() {
    let mut reversed = guide();
    reversed.pods.reverse();
    reversed
        .services
        .push(service("b-svc").cluster_ip("10.96.0.11").build());
    let mut forward = guide();
    forward
        .services
        .insert(0, service("b-svc").cluster_ip("10.96.0.11").build());
    let a = to_local_config(&forward, Profile::Istio).unwrap();
    let b = to_local_config(&reversed, Profile::Istio).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.config.services[0].name, "b-svc");
}

#[test]
fn only_ambient_namespaces_are_in_the_mesh() {
    let mut snap = snapshot();
    snap.namespaces.push(namespace("plain").build());
    snap.services.push(
        service("s")
            .namespace("plain")
            .selector("app", "a")
            .port(80, 80)
            .build(),
    );
    snap.pods
        .push(pod("outside").namespace("plain").app("a").build());
    snap.pods
        .push(pod("nowhere").namespace("unknown-ns").build());
    snap.pods
        .push(pod("opted-out").label(DATAPLANE_MODE_LABEL, "none").build());
    snap.pods.push(pod("done").phase("Succeeded").build());
    snap.pods.push(pod("inside").build());
    let t = to_local_config(&snap, Profile::Istio).unwrap();
    let names: Vec<&str> = t.config.workloads.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["inside"]);
    assert!(t.config.services.is_empty());
}

#[test]
fn skipped_objects_are_warnings() {
    let mut snap = snapshot();
    snap.services
        .push(service("headless").cluster_ip("None").build());
    snap.services.push(
        service("dns")
            .cluster_ip("10.96.0.53")
            .udp_port(53)
            .port(5353, 5353)
            .build(),
    );
    snap.pods.push(pod("pending").no_ip().build());
    let t = to_local_config(&snap, Profile::Istio).unwrap();
    assert_eq!(t.config.services.len(), 1);
    assert_eq!(t.config.services[0].ports, BTreeMap::from([(5353, 5353)]));
    assert!(t.config.workloads.is_empty());
    let joined = t.warnings.join("\n");
    for fragment in [
        "Service httpbin/headless",
        "port 53 is UDP",
        "Pod httpbin/pending",
    ] {
        assert!(joined.contains(fragment), "{joined}");
    }
}

#[test]
fn entries_outside_ambient_namespaces_are_not_in_the_mesh() {
    let mut snap = snapshot();
    snap.namespaces.push(namespace("plain").build());
    snap.service_entries
        .push(service_entry("se").namespace("plain").build());
    snap.workload_entries
        .push(workload_entry("w").namespace("plain").build());
    snap.workload_entries.push(
        workload_entry("opted-out")
            .object_label(DATAPLANE_MODE_LABEL, "none")
            .build(),
    );
    let t = to_local_config(&snap, Profile::Istio).unwrap();
    assert!(t.config.services.is_empty() && t.config.workloads.is_empty());
    assert!(t.warnings.is_empty(), "{:?}", t.warnings);
}

#[test]
fn destination_rules_change_nothing() {
    // The fixture a user applies; the manifest loader of meshcert-mesh reads it the same way.
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/destination-rule.yaml");
    let rule: DestinationRule =
        serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    rule.validate().unwrap();
    for profile in [Profile::Istio, Profile::Solo] {
        let without = to_local_config(&with_entries(), profile).unwrap();
        let mut snap = with_entries();
        snap.destination_rules.push(rule.clone());
        assert_eq!(snap.destination_rules.len(), 1);
        let with = to_local_config(&snap, profile).unwrap();
        assert_eq!(with, without, "{profile}");
        assert_eq!(with.config.to_yaml(), without.config.to_yaml());
    }
}

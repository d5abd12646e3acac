//! Workloads: pods, WorkloadEntries and inline endpoints (locality, readiness, network,
//! names, error messages).

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Pod;
use meshcert_model::Profile;
use meshcert_ztunnel::local_config::{HealthStatus, LocalWorkload, Locality};
use rstest::rstest;

use super::*;
use crate::istio::WorkloadEntry;
use crate::testing::*;
use crate::*;

#[rstest]
#[case::all_labels(node("n1").region("r1").zone("z1").subzone("s1"), ("r1", "z1", "s1"))]
#[case::no_subzone(node("n1").region("r1").zone("z2"), ("r1", "z2", ""))]
#[case::no_labels(node("n1"), ("", "", ""))]
#[case::other_node(node("n2").region("r9"), ("", "", ""))]
fn locality_from_node_labels(#[case] n: NodeBuilder, #[case] expected: (&str, &str, &str)) {
    let mut snap = snapshot();
    snap.nodes.push(n.build());
    snap.pods.push(pod("p").node("n1").build());
    let t = to_local_config(&snap, Profile::Istio).unwrap();
    let l = &t.config.workloads[0].locality;
    assert_eq!(
        (l.region.as_str(), l.zone.as_str(), l.subzone.as_str()),
        expected
    );
}

#[test]
fn a_missing_node_is_a_warning() {
    let mut snap = snapshot();
    snap.pods.push(pod("p").node("ghost").build());
    let t = to_local_config(&snap, Profile::Istio).unwrap();
    assert_eq!(t.config.workloads[0].node, "ghost");
    assert!(
        t.warnings[0].contains("Pod httpbin/p") && t.warnings[0].contains("ghost"),
        "{:?}",
        t.warnings
    );
}

#[rstest]
#[case::ready(pod("p").ready(true), HealthStatus::Healthy)]
#[case::not_ready(pod("p").ready(false), HealthStatus::Unhealthy)]
#[case::no_conditions(PodBuilder::from(Pod { status: Some(k8s_openapi::api::core::v1::PodStatus { pod_ip: Some("10.0.0.1".into()), ..Default::default() }), ..pod("p").build() }), HealthStatus::Unhealthy)]
fn readiness_is_status(#[case] p: PodBuilder, #[case] expected: HealthStatus) {
    let mut snap = snapshot();
    snap.pods.push(p.build());
    let t = to_local_config(&snap, Profile::Istio).unwrap();
    assert_eq!(t.config.workloads[0].status, expected);
}

#[rstest]
#[case::label(pod("in-ambient-7d8f9b6c54-abc12").app("httpbin"), "httpbin")]
#[case::replica_set(pod("in-ambient-7d8f9b6c54-abc12").label("pod-template-hash", "7d8f9b6c54").owner("ReplicaSet", "in-ambient-7d8f9b6c54"), "in-ambient")]
#[case::deployment(pod("x-1").owner("Deployment", "x"), "x")]
#[case::bare(pod("lonely"), "lonely")]
fn workload_name_rules(#[case] p: PodBuilder, #[case] expected: &str) {
    let mut snap = snapshot();
    snap.pods.push(p.build());
    let t = to_local_config(&snap, Profile::Istio).unwrap();
    assert_eq!(t.config.workloads[0].workload_name, expected);
}

#[test]
fn pod_errors_name_object_and_field() {
    let mut snap = snapshot();
    snap.pods.push(pod("p").ip("300.1.1.1").build());
    let err = to_local_config(&snap, Profile::Istio)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("Pod httpbin/p: field `status.podIP` has \"300.1.1.1\""),
        "{err}"
    );
}

#[test]
fn workload_entries_become_workloads_that_services_and_entries_select() {
    let t = to_local_config(&with_entries(), Profile::Solo).unwrap();
    let vm = t
        .config
        .workloads
        .iter()
        .find(|w| w.name == "vm-1")
        .expect("the WorkloadEntry is a workload");
    assert_eq!(
        vm.uid,
        "cluster1//networking.istio.io/WorkloadEntry/httpbin/vm-1"
    );
    assert_eq!(vm.workload_name, "vm-1");
    assert_eq!(vm.service_account, "vm");
    assert_eq!(vm.workload_ips, ["10.244.9.9".parse::<IpAddr>().unwrap()]);
    assert_eq!(vm.status, HealthStatus::Healthy);
    assert_eq!(vm.node, "");
    assert_eq!(vm.network, "net2");
    assert_eq!(
        vm.locality,
        Locality {
            region: "r2".into(),
            zone: "z3".into(),
            subzone: "s4".into()
        }
    );
    // The Service's numeric targetPort stands; the entry's port named http maps to 9080.
    assert_eq!(
        vm.services["httpbin/in-ambient.httpbin.svc.cluster.local"],
        BTreeMap::from([(8000, 8080)])
    );
    assert_eq!(
        vm.services["httpbin/in-ambient.mesh.example"],
        BTreeMap::from([(80, 9080), (81, 81)])
    );
}

#[rstest]
#[case::spec_network(workload_entry("w").network("net2").object_label(NETWORK_LABEL, "net3"), "net2")]
#[case::object_label(workload_entry("w").object_label(NETWORK_LABEL, "net3"), "net3")]
#[case::spec_label(workload_entry("w").label(NETWORK_LABEL, "net4"), "net4")]
#[case::cluster_network(workload_entry("w"), "net1")]
fn workload_entry_network(#[case] entry: WorkloadEntryBuilder, #[case] expected: &str) {
    let mut snap = on_net1();
    snap.workload_entries.push(entry.build());
    assert_eq!(the_workload(&snap).network, expected);
}

/// The snapshot, in the mesh network `net1`.
fn on_net1() -> ClusterSnapshot {
    let mut snap = snapshot();
    snap.namespaces
        .push(namespace(ISTIO_SYSTEM).network("net1").build());
    snap
}

/// The one workload a snapshot translates to, under profile istio.
fn the_workload(snap: &ClusterSnapshot) -> LocalWorkload {
    let t = to_local_config(snap, Profile::Istio).unwrap();
    assert_eq!(t.config.workloads.len(), 1, "{:?}", t.config.workloads);
    t.config.workloads.into_iter().next().unwrap()
}

#[rstest]
#[case::full("r1/z1/s1", ("r1", "z1", "s1"))]
#[case::region_zone("r1/z1", ("r1", "z1", ""))]
#[case::region("r1", ("r1", "", ""))]
#[case::none("", ("", "", ""))]
fn workload_entry_locality(#[case] locality: &str, #[case] expected: (&str, &str, &str)) {
    let mut snap = snapshot();
    snap.workload_entries
        .push(workload_entry("w").locality(locality).build());
    let l = the_workload(&snap).locality;
    assert_eq!(
        (l.region.as_str(), l.zone.as_str(), l.subzone.as_str()),
        expected
    );
}

#[rstest]
#[case::pod_label(pod("p").label(NETWORK_LABEL, "net2"), "net2")]
#[case::empty_pod_label(pod("p").label(NETWORK_LABEL, ""), "net1")]
#[case::cluster_network(pod("p"), "net1")]
fn pod_network_label_beats_the_cluster_network(#[case] p: PodBuilder, #[case] expected: &str) {
    let mut snap = on_net1();
    snap.pods.push(p.build());
    assert_eq!(the_workload(&snap).network, expected);
}

#[test]
fn services_select_workload_entries_by_label_and_named_ports() {
    let mut snap = snapshot();
    snap.services.push(
        service("s")
            .selector("app", "vm")
            .named_port(80, "web")
            .port(81, 9000)
            .build(),
    );
    snap.workload_entries
        .push(workload_entry("vm-a").app("vm").port("web", 8080).build());
    snap.workload_entries.push(
        workload_entry("vm-b")
            .object_label("app", "vm")
            .address("10.244.9.10")
            .build(),
    );
    snap.workload_entries.push(
        workload_entry("other")
            .app("other")
            .address("10.244.9.11")
            .build(),
    );
    let t = to_local_config(&snap, Profile::Istio).unwrap();
    t.config.validate().unwrap();
    let key = "httpbin/s.httpbin.svc.cluster.local";
    let by_name = |n: &str| t.config.workloads.iter().find(|w| w.name == n).unwrap();
    assert_eq!(
        by_name("vm-a").services[key],
        BTreeMap::from([(80, 8080), (81, 9000)])
    );
    assert_eq!(by_name("vm-b").services[key], BTreeMap::from([(81, 9000)]));
    assert!(by_name("other").services.is_empty());
    assert_eq!(t.warnings.len(), 1, "{:?}", t.warnings);
    assert!(
        t.warnings[0].contains("WorkloadEntry httpbin/vm-b") && t.warnings[0].contains("\"web\""),
        "{}",
        t.warnings[0]
    );
}

#[test]
fn inline_endpoints_become_workloads_of_their_entry() {
    let mut snap = snapshot();
    snap.service_entries.push(
        service_entry("ext")
            .port(80, "http", None)
            .endpoint(
                workload_entry("x")
                    .address("10.244.7.1")
                    .port("http", 8080)
                    .locality("r1/z2")
                    .spec(),
            )
            .endpoint(workload_entry("x").address("10.244.7.2").spec())
            .build(),
    );
    let t = to_local_config(&snap, Profile::Istio).unwrap();
    t.config.validate().unwrap();
    let uids: Vec<&str> = t.config.workloads.iter().map(|w| w.uid.as_str()).collect();
    assert_eq!(
        uids,
        [
            "cluster1//networking.istio.io/ServiceEntry/httpbin/ext/10.244.7.1",
            "cluster1//networking.istio.io/ServiceEntry/httpbin/ext/10.244.7.2",
        ]
    );
    let key = "httpbin/ext.mesh.example";
    assert_eq!(
        t.config.workloads[0].services[key],
        BTreeMap::from([(80, 8080)])
    );
    assert_eq!(
        t.config.workloads[1].services[key],
        BTreeMap::from([(80, 80)])
    );
    assert_eq!(t.config.workloads[0].locality.zone, "z2");
    assert_eq!(t.config.workloads[0].name, "ext");
}

#[rstest]
#[case::bad_locality(workload_entry("vm").locality("r1/z1/s1/extra").build(), "WorkloadEntry httpbin/vm: field `spec.locality` is \"r1/z1/s1/extra\", which has 4 parts")]
#[case::empty_zone(workload_entry("vm").locality("r1//s1").build(), "WorkloadEntry httpbin/vm: field `spec.locality` is \"r1//s1\", whose zone is empty")]
#[case::bad_port(workload_entry("vm").app("a").port("http", 70000).build(), "WorkloadEntry httpbin/vm: field `spec.ports.http` is 70000")]
fn workload_entry_errors_name_object_and_field(
    #[case] entry: WorkloadEntry,
    #[case] fragment: &str,
) {
    let mut snap = snapshot();
    snap.service_entries.push(
        service_entry("se")
            .port(80, "http", None)
            .selector("app", "a")
            .build(),
    );
    snap.workload_entries.push(entry);
    let err = to_local_config(&snap, Profile::Istio)
        .unwrap_err()
        .to_string();
    assert!(err.contains(fragment), "{err}");
}

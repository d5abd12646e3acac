//! Unit tests of the translation, by concern; shared snapshots here.

mod distribution;
mod services;
mod snapshot;
mod workloads;

use crate::testing::*;
use crate::{ClusterSnapshot, ISTIO_SYSTEM};

/// The guide's setup: three in-ambient replicas and a client, in network `net1`.
pub(super) fn guide() -> ClusterSnapshot {
    let mut snap = snapshot();
    snap.namespaces
        .push(namespace(ISTIO_SYSTEM).network("net1").build());
    snap.nodes
        .push(node("node-a").region("r1").zone("z1").build());
    snap.services.push(
        service("in-ambient")
            .port(8000, 8080)
            .selector("app", "in-ambient")
            .build(),
    );
    for (i, name) in ["in-ambient-1", "in-ambient-2", "in-ambient-3"]
        .iter()
        .enumerate()
    {
        snap.pods.push(
            pod(name)
                .app("in-ambient")
                .service_account("in-ambient")
                .node("node-a")
                .ip(&format!("10.244.1.{}", 11 + i))
                .build(),
        );
    }
    snap.pods.push(
        pod("client-in-ambient-1")
            .app("client-in-ambient")
            .node("node-a")
            .ip("10.244.1.2")
            .build(),
    );
    snap
}

/// The guide with its pods also behind a ServiceEntry and a WorkloadEntry on a VM.
pub(super) fn with_entries() -> ClusterSnapshot {
    let mut snap = guide();
    snap.service_entries.push(
        service_entry("in-ambient-se")
            .hosts(&["in-ambient.mesh.example", "alias.mesh.example"])
            .addresses(&["10.96.1.10"])
            .port(80, "http", Some(8080))
            .port(81, "admin", None)
            .udp_port(53)
            .selector("app", "in-ambient")
            .build(),
    );
    snap.workload_entries.push(
        workload_entry("vm-1")
            .app("in-ambient")
            .address("10.244.9.9")
            .port("http", 9080)
            .locality("r2/z3/s4")
            .network("net2")
            .service_account("vm")
            .build(),
    );
    snap
}

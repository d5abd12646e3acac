//! What the benchmark's control plane pushes and its servers read: the workloads (every pod
//! enrolled, so reached through HBONE), the one service, and nginx's config.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use meshcert_ztunnel::local_config::{
    HealthPolicy, LoadBalancer, LoadBalancerMode, LocalConfig, LocalWorkload, NetworkAddress,
    Protocol, Service,
};

/// The Kubernetes namespace of every benchmark pod.
pub(crate) const NAMESPACE: &str = "bench";
pub(crate) const CLIENT_POD: &str = "bench-client";
pub(crate) const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
pub(crate) const HTTP_PORT: u16 = 8080;
pub(crate) const SERVICE_PORT: u16 = 80;
/// The cluster of the benchmark's workload uids, given to every ztunnel as `CLUSTER_ID`.
pub(crate) const CLUSTER_ID: &str = "bench";
/// The iperf3 server of the proxied runs: in the first backend pod, in no service, so no
/// health check ever connects to it (iperf3 takes any connection during a test's setup as a
/// data stream and aborts the test). The client pod's REDIRECT captures it, as ambient does.
pub(crate) const IPERF_PORT: u16 = 5201;
/// The iperf3 server of the direct runs, beside the first: a port the client pod does not
/// capture, so the direct runs reach the same pod with no proxy.
pub(crate) const IPERF_DIRECT_PORT: u16 = 5202;
const HOST: &str = "backend.bench.svc.cluster.local";

/// The name of the `n`th backend pod (from 1).
pub(crate) fn backend_pod(n: usize) -> String {
    format!("bench-backend-{n}")
}

/// One enrolled pod: reached through its own ztunnel, so `HBONE`; its service account is its
/// name, the identity its token grants.
fn workload(name: &str, ip: Ipv4Addr, node: &str) -> LocalWorkload {
    let text = format!(
        "uid: {CLUSTER_ID}//v1/Pod/{NAMESPACE}/{name}\nname: {name}\nnamespace: {NAMESPACE}\n\
         serviceAccount: {name}\nclusterId: {CLUSTER_ID}\nnode: {node}\nworkloadIps: [\"{ip}\"]\n\
         services: {{}}\n"
    );
    let mut workload: LocalWorkload =
        serde_saphyr::from_str(&text).expect("the benchmark's own workload parses");
    workload.protocol = Protocol::HBONE;
    workload
}

/// The client pod and the backend pods (in order, `bench-backend-1` first), all on `node`;
/// the backends serve the service on the HTTP port only.
pub(crate) fn config(client: Ipv4Addr, backends: &[Ipv4Addr], node: &str) -> LocalConfig {
    let ports: BTreeMap<u16, u16> = BTreeMap::from([(SERVICE_PORT, HTTP_PORT)]);
    let mut workloads = vec![workload(CLIENT_POD, client, node)];
    for (i, ip) in backends.iter().enumerate() {
        let mut backend = workload(&backend_pod(i + 1), *ip, node);
        backend
            .services
            .insert(format!("{NAMESPACE}/{HOST}"), ports.clone());
        workloads.push(backend);
    }
    LocalConfig {
        workloads,
        policies: vec![],
        services: vec![Service {
            name: "backend".into(),
            namespace: NAMESPACE.into(),
            hostname: HOST.into(),
            vips: vec![NetworkAddress {
                network: String::new(),
                address: VIP.into(),
            }],
            ports,
            subject_alt_names: vec![],
            load_balancer: Some(LoadBalancer {
                routing_preferences: vec![],
                mode: LoadBalancerMode::Standard,
                health_policy: HealthPolicy::OnlyHealthy,
            }),
        }],
    }
}

/// One nginx worker answering `ok` on the HTTP port; every path it writes under `dir` (one
/// directory per pod).
pub(crate) fn nginx_conf(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/nginx-error.log warn;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/nginx-body;\n  proxy_temp_path {d}/nginx-proxy;\n\
           fastcgi_temp_path {d}/nginx-fastcgi;\n  uwsgi_temp_path {d}/nginx-uwsgi;\n  scgi_temp_path {d}/nginx-scgi;\n\
           keepalive_requests 1000000;\n  server {{\n    listen {HTTP_PORT} backlog=4096;\n\
             location / {{ return 200 \"ok\\n\"; }}\n  }}\n}}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 10);
    const BACKENDS: [Ipv4Addr; 3] = [
        Ipv4Addr::new(10, 244, 1, 11),
        Ipv4Addr::new(10, 244, 1, 12),
        Ipv4Addr::new(10, 244, 1, 13),
    ];

    #[test]
    fn every_pod_is_enrolled_and_reached_through_hbone() {
        let yaml = config(CLIENT, &BACKENDS, "bench-node").to_yaml();
        let parsed = LocalConfig::parse(&yaml, "bench.yaml").unwrap();
        let pods: Vec<(&str, String)> = parsed
            .workloads
            .iter()
            .map(|w| (w.name.as_str(), w.workload_ips[0].to_string()))
            .collect();
        assert_eq!(
            pods,
            [
                ("bench-client", "10.244.1.10".to_string()),
                ("bench-backend-1", "10.244.1.11".to_string()),
                ("bench-backend-2", "10.244.1.12".to_string()),
                ("bench-backend-3", "10.244.1.13".to_string()),
            ]
        );
        for w in &parsed.workloads {
            assert_eq!(w.protocol, Protocol::HBONE, "{}", w.name);
            // The identity a pod's token grants: its service account is its name.
            assert_eq!(w.service_account, w.name);
            assert_eq!(w.node, "bench-node");
            // The cluster the launcher gives every ztunnel as CLUSTER_ID, and no network:
            // what the reference checks its environment against.
            assert_eq!(w.cluster_id, CLUSTER_ID);
            assert!(w.network.is_empty());
        }
    }

    #[test]
    fn only_the_backends_serve_and_only_on_the_http_port() {
        let parsed = config(CLIENT, &BACKENDS, "bench-node");
        assert_eq!(parsed.services[0].vips[0].to_string(), "/10.96.0.10");
        // Health checks follow the service's ports: never the iperf3 ports.
        assert_eq!(
            parsed.services[0].ports,
            BTreeMap::from([(SERVICE_PORT, HTTP_PORT)])
        );
        let serving: Vec<&str> = parsed
            .workloads
            .iter()
            .filter(|w| !w.services.is_empty())
            .map(|w| w.name.as_str())
            .collect();
        assert_eq!(
            serving,
            ["bench-backend-1", "bench-backend-2", "bench-backend-3"]
        );
        assert!(
            parsed
                .workloads
                .iter()
                .flat_map(|w| w.services.values())
                .all(|ports| ports.values().all(|p| *p == HTTP_PORT))
        );
    }

    #[test]
    fn each_nginx_writes_only_under_its_pods_directory() {
        let conf = nginx_conf(Path::new("/tmp/bench/bench-backend-2"));
        assert!(conf.contains("worker_processes 1;"));
        assert!(conf.contains(&format!("listen {HTTP_PORT} ")));
        for key in [
            "pid",
            "error_log",
            "client_body_temp_path",
            "scgi_temp_path",
        ] {
            let at = format!("{key} /tmp/bench/bench-backend-2/");
            assert!(conf.contains(&at), "{key} in {conf}");
        }
    }
}

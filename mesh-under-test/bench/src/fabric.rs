//! The benchmark's fabric, built from the local driver's primitives as a cluster has it: one
//! node; a client pod and three backend pods, each with its own ztunnel (the one under test,
//! in dedicated mode, every one by the same launcher); istiod's pod serving the run's CA and
//! delta ADS, which feeds every ztunnel the benchmark's config (every workload `HBONE`). Each
//! backend pod runs nginx with one worker; the first also runs the iperf3 servers. The
//! proxied path is the client pod's REDIRECT to its ztunnel (15001), HBONE (mTLS, HTTP/2
//! CONNECT) to the backend pod's ztunnel on 15008, then the pod's server. Everything created
//! is in the ledger, so success, failure and Ctrl-C all remove it.

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshcert_control_plane::CLUSTER_DOMAIN;
use meshcert_local::Topology;
use meshcert_local::admin::{Admin, READY_DEADLINE};
use meshcert_local::istiod::{ISTIOD_POD, Istiod};
use meshcert_local::netns::{self, NodeNetns, PodNetns, SocketFactory, netns_exec};
use meshcert_local::run::{Ledger, Run};
use meshcert_local::ztunnel::{
    self, ConfigFeed, LaunchSpec, OutputLog, ZtunnelCommand, ZtunnelProcess,
};
use meshcert_mesh::wait::{Probe, eventually};
use meshcert_mesh::{MeshError, PodRef};
use meshcert_model::Identity;

use crate::config::{
    CLIENT_POD, CLUSTER_ID, HTTP_PORT, IPERF_DIRECT_PORT, IPERF_PORT, NAMESPACE, SERVICE_PORT,
    backend_pod, config, nginx_conf,
};

/// The one node every pod runs on.
const NODE: &str = "bench-node";
const BACKENDS: usize = 3;
/// How long a new pod's link may take to come up.
const LINK_DEADLINE: Duration = Duration::from_secs(10);
/// The direct runs' service address: no ztunnel behind it, the client pod's own nat spreads
/// its connections over the backend pods as kube-proxy does, so direct and proxied runs load
/// the same three nginx workers.
pub(crate) const DIRECT_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 11);

/// The running fabric.
pub(crate) struct Fabric {
    /// Held for its lock file, which tells a sweeper this run is alive.
    _run: Arc<Run>,
    ledger: Arc<Ledger>,
    pub(crate) sockets: SocketFactory,
    pub(crate) client: PodNetns,
    /// `bench-backend-1` first: it also runs the iperf3 servers.
    pub(crate) backends: Vec<PodNetns>,
    /// Every pod's ztunnel, the client pod's first.
    ztunnels: Vec<(PodRef, Admin)>,
    istiod: Istiod,
    /// The clock of every process's output.
    pub(crate) created: Instant,
}

/// The namespaces, made before anything runs in them.
struct Pods {
    run: Arc<Run>,
    ledger: Arc<Ledger>,
    node: NodeNetns,
    istiod: PodNetns,
    client: PodNetns,
    backends: Vec<PodNetns>,
}

impl Pods {
    fn create() -> Result<Pods, MeshError> {
        let run = Run::start()?;
        let ledger = Ledger::new(format!("benchmark of run {}", run.id()));
        let mut topology = Topology::new(run.clone(), ledger.clone(), run.next_mesh_number())?;
        let node = topology.add_node(NODE)?.clone();
        let plan = topology.plan_system_pod(NODE, ISTIOD_POD)?;
        let istiod = netns::create_pod(&run, &ledger, &plan)?;
        let client = topology.add_pod(NODE, CLIENT_POD)?;
        let backends = (1..=BACKENDS)
            .map(|n| topology.add_pod(NODE, &backend_pod(n)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Pods {
            run,
            ledger,
            node,
            istiod,
            client,
            backends,
        })
    }

    /// Until every pod's link is up at both ends (frames to a pod are dropped before).
    async fn wait_links(&self) -> Result<(), MeshError> {
        let all = [&self.istiod, &self.client]
            .into_iter()
            .chain(&self.backends);
        for pod in all {
            let what = format!("the link of pod {} ({}) to come up", pod.name, pod.ip);
            eventually(&what, LINK_DEADLINE, Duration::from_millis(20), || {
                let (node, pod) = (self.node.netns.clone(), pod.clone());
                let name = pod.name.clone();
                async move {
                    let probe = move || netns::pod_link_pending(&node, &pod);
                    match tokio::task::spawn_blocking(probe).await {
                        Ok(Ok(None)) => Probe::Ready(()),
                        Ok(Ok(Some(state))) => Probe::NotYet(state),
                        Ok(Err(e)) => Probe::Failed(e),
                        Err(e) => Probe::Failed(MeshError::Environment(format!(
                            "the link probe of pod {name}: {e}"
                        ))),
                    }
                }
            })
            .await?;
        }
        Ok(())
    }

    /// istiod, the config it pushes, the pods' capture rules, servers and ztunnels.
    fn start(self, command: &ZtunnelCommand, dir: &Path) -> Result<Fabric, MeshError> {
        let created = Instant::now();
        let sockets = SocketFactory::new(self.run.clone());
        let istiod = {
            // Held until its server is in the ledger: a closing run stops it or it never ran.
            let _creating = self.run.creating("the control plane")?;
            Istiod::start(&sockets, &self.ledger, self.istiod.clone(), dir)?
        };
        let backend_ips: Vec<Ipv4Addr> = self.backends.iter().map(|b| b.ip).collect();
        istiod.push(config(self.client.ip, &backend_ips, NODE));
        self.capture()?;
        for backend in &self.backends {
            self.start_servers(backend, dir, created)?;
        }
        let mut ztunnels = Vec::new();
        for pod in [&self.client].into_iter().chain(&self.backends) {
            ztunnels.push(self.launch_ztunnel(&istiod, &sockets, command, pod, dir, created)?);
        }
        Ok(Fabric {
            _run: self.run,
            ledger: self.ledger,
            sockets,
            client: self.client,
            backends: self.backends,
            ztunnels,
            istiod,
            created,
        })
    }

    /// Ambient's capture in every pod (services to 15001); in the client pod also its
    /// pod-to-pod traffic to the proxied iperf3 port, and the direct runs' kube-proxy-like
    /// spread, inserted ahead of the capture.
    fn capture(&self) -> Result<(), MeshError> {
        for pod in [&self.client].into_iter().chain(&self.backends) {
            ztunnel::install_redirect(&pod.netns)?;
        }
        let netns = &self.client.netns;
        let (bulk, port) = (self.backends[0].ip.to_string(), IPERF_PORT.to_string());
        ztunnel::redirect(netns, &["-d", &bulk, "--dport", &port])?;
        let backends: Vec<Ipv4Addr> = self.backends.iter().map(|b| b.ip).collect();
        for (rule, args) in direct_spread(&backends).iter().enumerate() {
            let mut insert = vec!["-w", "5", "-t", "nat", "-I", "OUTPUT"];
            let position = (rule + 1).to_string();
            insert.push(&position);
            insert.extend(args.iter().map(String::as_str));
            netns_exec(netns, "iptables", &insert)?;
        }
        Ok(())
    }

    /// nginx in a backend pod, and in the first the iperf3 servers, each in the ledger.
    fn start_servers(&self, pod: &PodNetns, dir: &Path, created: Instant) -> Result<(), MeshError> {
        let dir = dir.join(&pod.name);
        std::fs::create_dir_all(&dir)
            .map_err(MeshError::io(format!("cannot create {}", dir.display())))?;
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, nginx_conf(&dir))
            .map_err(MeshError::io(format!("cannot write {}", conf.display())))?;
        let conf = conf.display().to_string();
        let mut servers = vec![("nginx", "nginx".to_string(), vec!["-c".to_string(), conf])];
        if pod.name == backend_pod(1) {
            for port in [IPERF_PORT, IPERF_DIRECT_PORT] {
                let args = vec!["-s".to_string(), "-p".into(), port.to_string()];
                servers.push(("iperf3", format!("iperf3-{port}"), args));
            }
        }
        for (program, name, args) in servers {
            let command = ZtunnelCommand {
                program: program.into(),
                args,
                env: vec![],
                reloads_config: true,
            };
            // The server ignores the ztunnel's environment the launcher gives every child.
            let spec = self.spec(pod, ConfigFeed::File(dir.join("unused")));
            let log = OutputLog::create(&dir.join(format!("{name}.log")), created)?;
            let _creating = self.run.creating(&format!("{program} in {}", pod.netns))?;
            let process = ZtunnelProcess::launch(&command, &spec, log)?;
            self.ledger.record(Box::new(process));
        }
        Ok(())
    }

    /// A pod's ztunnel, as in a cluster: its token, then fed by the control plane.
    fn launch_ztunnel(
        &self,
        istiod: &Istiod,
        sockets: &SocketFactory,
        command: &ZtunnelCommand,
        pod: &PodNetns,
        dir: &Path,
        created: Instant,
    ) -> Result<(PodRef, Admin), MeshError> {
        let pod_ref = PodRef {
            namespace: NAMESPACE.into(),
            name: pod.name.clone(),
        };
        let identity = Identity::new(CLUSTER_DOMAIN, NAMESPACE, &pod.name);
        istiod.issue_token(&self.ledger, &pod_ref, identity)?;
        let spec = self.spec(pod, ConfigFeed::ControlPlane(istiod.access(&pod_ref)));
        let log = OutputLog::create(&dir.join(format!("ztunnel-{}.log", pod.name)), created)?;
        let _creating = self.run.creating(&format!("a ztunnel in {}", pod.netns))?;
        let process = ZtunnelProcess::launch(command, &spec, log)?;
        self.ledger.record(Box::new(process.clone()));
        let admin = Admin {
            sockets: sockets.clone(),
            netns: pod.netns.clone(),
            process,
            pod: pod_ref.to_string(),
        };
        Ok((pod_ref, admin))
    }

    /// A process in `pod`, as the downward API would describe the pod.
    fn spec(&self, pod: &PodNetns, config: ConfigFeed) -> LaunchSpec {
        LaunchSpec {
            netns: pod.netns.clone(),
            pod_namespace: NAMESPACE.into(),
            pod_name: pod.name.clone(),
            // Each pod's service account is its name (see `config`).
            service_account: pod.name.clone(),
            config,
            node_name: self.node.name.clone(),
            instance_ip: pod.ip.to_string(),
            network: String::new(),
            cluster_id: CLUSTER_ID.into(),
        }
    }
}

/// The nat rules (after `-I OUTPUT <n>`) that spread the direct runs' new connections to
/// [`DIRECT_VIP`] evenly over the backend pods: the first takes every nth, the next every
/// (n-1)th of the rest, the last all that remain.
pub(crate) fn direct_spread(backends: &[Ipv4Addr]) -> Vec<Vec<String>> {
    let n = backends.len();
    let vip = DIRECT_VIP.to_string();
    backends
        .iter()
        .enumerate()
        .map(|(i, backend)| {
            let mut rule: Vec<String> = ["-p", "tcp", "-d", &vip, "--dport"]
                .map(String::from)
                .to_vec();
            rule.push(SERVICE_PORT.to_string());
            if i + 1 < n {
                let every = (n - i).to_string();
                rule.extend(
                    ["-m", "statistic", "--mode", "nth", "--every", &every].map(String::from),
                );
                rule.extend(["--packet", "0"].map(String::from));
            }
            let to = format!("{backend}:{HTTP_PORT}");
            rule.extend(["-j", "DNAT", "--to-destination", &to].map(String::from));
            rule
        })
        .collect()
}

impl Fabric {
    /// Builds the fabric; on failure what was made is removed as the ledger drops.
    pub(crate) async fn build(
        command: &ZtunnelCommand,
        dir: &Path,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<Fabric, MeshError> {
        let pods = tokio::task::block_in_place(Pods::create)?;
        pods.wait_links().await?;
        progress(&format!(
            "fabric: node {NODE}, istiod {}, client {}, backends {}",
            pods.istiod.ip,
            pods.client.ip,
            pods.backends
                .iter()
                .map(|b| b.ip.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        let fabric = tokio::task::block_in_place(|| pods.start(command, dir))?;
        fabric.wait_ztunnels().await?;
        Ok(fabric)
    }

    /// Every ztunnel ready; a failed start names the control plane's address first.
    async fn wait_ztunnels(&self) -> Result<(), MeshError> {
        for (pod, admin) in &self.ztunnels {
            if let Err(e) = admin.wait_ready(READY_DEADLINE).await {
                let output = admin.process.output();
                return Err(self.istiod.explain_start_failure(pod, e, output));
            }
        }
        Ok(())
    }

    /// The client pod's ztunnel, the one whose memory and CPU are reported.
    pub(crate) fn client_ztunnel(&self) -> &Arc<ZtunnelProcess> {
        &self.ztunnels[0].1.process
    }

    /// Runs a program in a pod's namespace, off the async runtime.
    pub(crate) async fn exec(
        &self,
        netns: &str,
        program: &'static str,
        args: Vec<String>,
    ) -> Result<String, MeshError> {
        let netns = netns.to_string();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            netns_exec(&netns, program, &args)
        })
        .await
        .map_err(|e| MeshError::Environment(format!("{program} task: {e}")))?
    }

    /// Removes everything, newest first.
    pub(crate) fn teardown(self) -> Result<(), MeshError> {
        self.ledger.teardown()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_connections_are_spread_evenly_over_the_backends() {
        let backends = [11, 12, 13].map(|h| Ipv4Addr::new(10, 244, 1, h));
        let rules: Vec<String> = direct_spread(&backends)
            .iter()
            .map(|r| r.join(" "))
            .collect();
        let head = "-p tcp -d 10.96.0.11 --dport 80";
        assert_eq!(
            rules,
            [
                format!(
                    "{head} -m statistic --mode nth --every 3 --packet 0 -j DNAT --to-destination 10.244.1.11:8080"
                ),
                format!(
                    "{head} -m statistic --mode nth --every 2 --packet 0 -j DNAT --to-destination 10.244.1.12:8080"
                ),
                format!("{head} -j DNAT --to-destination 10.244.1.13:8080"),
            ]
        );
    }
}

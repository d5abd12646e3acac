//! `LocalMesh`: one small cluster on this machine for one scenario, driven through
//! `MeshUnderTest`. Nodes and pods are network namespaces, backends run the in-process app,
//! and every client pod runs the ztunnel under test, fed the translated local config from a
//! file or, as in a cluster, by the mesh's control plane (then every enrolled pod runs one).
//! Several meshes run at once in one process; their names, addresses and files never collide.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use meshcert_control_plane::istio::{DestinationRule, ServiceEntry, WorkloadEntry};
use meshcert_control_plane::{self as control_plane, ClusterSnapshot, ControlPlaneDefects};
use meshcert_mesh::manifest::{Manifest, ManifestSet};
use meshcert_mesh::wait::{Probe, eventually};
use meshcert_mesh::{
    Capability, DeploymentRef, Fault, FaultHandle, FaultKind, MeshError, MeshUnderTest, PodInfo,
    PodRef, Profile, ReadinessChange, RequestOutcome, RequestPlan, RequestRecord, Restart,
    TargetInfo,
};
use meshcert_model::LogLine;
use meshcert_oracle::metrics::{self, MetricSample};
use meshcert_ztunnel::defects::{Defect, Defects};

use crate::admin::Admin;
use crate::app::BackendApp;
use crate::client::{self, DnsService};
use crate::cluster::{self, ClusterIpAllocator, Template};
use crate::faults::{self, AppFault, Faults, IptablesFault, KilledApp, ProbePathFault};
use crate::istiod::Istiod;
use crate::netns::{self, PodNetns, SocketFactory, Topology};
use crate::readiness::{Board, ProbeAction, ProbeSpec, ProbeTarget, Prober};
use crate::run::{EntryId, Ledger, Run, Undo};
use crate::ztunnel::{self, ConfigFeed, LaunchSpec, OutputLog, ZtunnelCommand, ZtunnelProcess};

mod admission;
mod config;
mod control_plane_pod;
mod pods;
mod readiness_sync;
mod requests;

/// How long a new pod may take to become reachable from its node.
const REACHABLE_DEADLINE: Duration = Duration::from_secs(10);
/// How much longer than its probes' own timing a new pod may take to turn Ready.
const READY_SLACK: Duration = Duration::from_secs(5);

/// A node of the local cluster and its labels (locality: `topology.kubernetes.io/region`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeSpec {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

impl NodeSpec {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            labels: BTreeMap::new(),
        }
    }

    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }
}

/// Where the ztunnels of a local mesh get their certificates and config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// The fallback a target can choose: a file per client ztunnel (`LOCAL_XDS_PATH`) and
    /// made-up certificates (`FAKE_CA`); a binary that does not reload the file is restarted
    /// on every change. Only client pods run a ztunnel, and it reaches pods in plain TCP.
    File,
    /// As in a cluster: the mesh's control plane pod serves the run's CA and the config
    /// (`CA_ADDRESS`, `XDS_ADDRESS`); every enrolled pod (clients, and the pods the control
    /// plane lists) runs a ztunnel in dedicated mode, its workload written `HBONE`; a change
    /// is pushed, never restarted.
    ControlPlane,
}

impl ConfigSource {
    /// What a target gets unless it names a source: as in a cluster.
    pub const DEFAULT: ConfigSource = ConfigSource::ControlPlane;
}

impl Default for ConfigSource {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl std::str::FromStr for ConfigSource {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "file" => Ok(ConfigSource::File),
            "control-plane" => Ok(ConfigSource::ControlPlane),
            other => Err(format!(
                "config source {other:?} is neither \"file\" (LOCAL_XDS_PATH) nor \
                 \"control-plane\" (CA and xDS from the mesh's control plane)"
            )),
        }
    }
}

impl std::fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ConfigSource::File => "file",
            ConfigSource::ControlPlane => "control-plane",
        })
    }
}

/// How to build a local mesh.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalOptions {
    pub ztunnel: ZtunnelCommand,
    /// Where the ztunnels get certificates and config; default [`ConfigSource::ControlPlane`].
    pub config_source: ConfigSource,
    /// `reference` (the bundled ztunnel) or `ztunnel` (an external binary).
    pub target_kind: String,
    pub target_name: String,
    pub profile: Profile,
    /// Nodes of the cluster; default one node `node-1` without locality labels.
    pub nodes: Vec<NodeSpec>,
    /// Where config files and ztunnel logs go (e.g. `target/meshcert/<run id>`); each mesh
    /// writes under `<work_dir>/mesh-<n>/`.
    pub work_dir: PathBuf,
    /// `clusterId` of every workload.
    pub cluster_id: String,
    /// The mesh's network (label `topology.istio.io/network` on `istio-system`); "" for none.
    pub network: String,
    /// Control-plane defect switches (e.g. `wrong-precedence`) for the translation; none in
    /// any real use.
    pub defects: Defects,
    /// How long a starting ztunnel gets to answer `/healthz/ready` (debug builds are slow).
    pub ready_deadline: Duration,
    /// Capabilities the target declares; default `Capability::LOCAL`.
    pub capabilities: Vec<Capability>,
    /// The target's version, for reports.
    pub version: String,
}

impl LocalOptions {
    /// Options with the defaults: one node `node-1`, cluster `cluster1`, no network.
    pub fn new(
        ztunnel: ZtunnelCommand,
        target_kind: &str,
        profile: Profile,
        work_dir: impl Into<PathBuf>,
    ) -> Self {
        let target_name = match target_kind {
            "reference" => "meshcert reference ztunnel".to_string(),
            _ => format!("ztunnel {}", ztunnel.program.display()),
        };
        Self {
            ztunnel,
            config_source: ConfigSource::default(),
            target_kind: target_kind.to_string(),
            target_name,
            profile,
            nodes: vec![NodeSpec::new("node-1")],
            work_dir: work_dir.into(),
            cluster_id: "cluster1".to_string(),
            network: String::new(),
            defects: Defects::none(),
            ready_deadline: crate::admin::READY_DEADLINE,
            capabilities: Capability::LOCAL.to_vec(),
            version: if target_kind == "reference" {
                env!("CARGO_PKG_VERSION").to_string()
            } else {
                "unknown".to_string()
            },
        }
    }
}

/// Bounds of `send_requests`.
const MAX_REQUESTS: u32 = 10_000;
const REQUESTS_SLACK: Duration = Duration::from_secs(5);

/// A pod of the local cluster.
#[derive(Debug)]
struct PodState {
    object: Pod,
    deployment: DeploymentRef,
    netns: PodNetns,
    /// The backend app and its ledger entry; clients have none.
    app: Option<(Arc<BackendApp>, EntryId)>,
    /// Its control-plane token (fed by the control plane only).
    token: Option<EntryId>,
    /// The readiness probers running (ledger entries); none while the app is killed.
    probers: Vec<EntryId>,
    /// The app was killed (a fault): the kubelet sees no running container.
    killed: bool,
}

/// A pod a scale-down removed: delisted from the control plane's view at once, serving until
/// its grace period (after the push) ends, then stopped by its timer.
#[derive(Debug)]
struct Terminating {
    pod: PodRef,
    grace: Duration,
    /// Its ztunnel, token, faults, app and namespace, released in this order.
    entries: Vec<EntryId>,
    timer: Option<tokio::task::JoinHandle<()>>,
}

#[derive(Debug)]
struct DeploymentState {
    object: Deployment,
    template: Template,
    hash: String,
    /// Pods ever made (names the next one) and ever placed (round robin).
    made: u32,
}

/// The ztunnel of one pod, across restarts.
#[derive(Debug)]
struct PodZtunnel {
    spec: LaunchSpec,
    output: Arc<OutputLog>,
    running: Option<(Arc<ZtunnelProcess>, EntryId)>,
    /// The config text last written, to tell whether a change needs a reload or restart
    /// (fed by file only).
    written: String,
    redirected: bool,
}

#[derive(Debug)]
struct FaultState {
    handle: FaultHandle,
    entry: EntryId,
}

/// Runs blocking work (commands, process waits) off the async runtime's workers, so the apps
/// of other meshes keep answering meanwhile.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, MeshError> + Send + 'static,
) -> Result<T, MeshError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(MeshError::Environment(format!(
            "blocking task cancelled: {e}"
        ))),
    }
}

/// Why a WorkloadEntry (or a ServiceEntry's inline endpoint) cannot be deployed here: a local
/// mesh runs the pods of Deployments only, so nothing would answer at its address.
fn nothing_behind(what: &str, field: &str, address: &str) -> MeshError {
    MeshError::Unsupported {
        what: format!("{what} (field `{field}` is {address:?})"),
        reason: "a local mesh runs only the pods of Deployments, so nothing would answer at \
                 that address; select pods with a ServiceEntry's `workloadSelector`, or run \
                 against a Kubernetes target"
            .into(),
    }
}

/// Writes a file so a reader never sees half of it: temp file, then rename.
fn write_atomically(path: &Path, text: &str) -> Result<(), MeshError> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, text).map_err(MeshError::io(format!("cannot write {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(MeshError::io(format!(
        "cannot rename {} into place",
        tmp.display()
    )))
}

/// One local cluster with the ztunnel under test.
pub struct LocalMesh {
    run: Arc<Run>,
    options: LocalOptions,
    number: u32,
    created: Instant,
    target: TargetInfo,
    ledger: Arc<Ledger>,
    topology: Topology,
    sockets: SocketFactory,
    dir: PathBuf,
    nodes: Vec<NodeSpec>,
    namespaces: BTreeMap<String, Namespace>,
    service_accounts: BTreeMap<(String, String), ServiceAccount>,
    services: BTreeMap<(String, String), Service>,
    service_entries: BTreeMap<(String, String), ServiceEntry>,
    workload_entries: BTreeMap<(String, String), WorkloadEntry>,
    destination_rules: BTreeMap<(String, String), DestinationRule>,
    cluster_ips: ClusterIpAllocator,
    deployments: BTreeMap<DeploymentRef, DeploymentState>,
    pods: BTreeMap<PodRef, PodState>,
    ztunnels: BTreeMap<PodRef, PodZtunnel>,
    /// The control plane's pod, serving (fed by the control plane only; made with the
    /// first pod).
    istiod: Option<Istiod>,
    faults: BTreeMap<u64, FaultState>,
    next_fault: u64,
    restarts: Vec<Restart>,
    /// The kubelet's readiness of every probed container, as the probers report it.
    board: Arc<Board>,
    /// Every Ready condition change written so far.
    readiness: Vec<ReadinessChange>,
    terminating: Vec<Terminating>,
    warnings: Vec<String>,
    seed: u64,
    torn_down: bool,
}

impl std::fmt::Debug for LocalMesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalMesh")
            .field("run", &self.run.id())
            .field("number", &self.number)
            .field("pods", &self.pods.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl LocalMesh {
    /// Creates the mesh's fabric and node namespaces and its work directory.
    pub fn new(run: Arc<Run>, options: LocalOptions) -> Result<LocalMesh, MeshError> {
        // No new mesh (scenario) once the run is closing.
        drop(run.creating("a local mesh")?);
        let created = Instant::now();
        let number = run.next_mesh_number();
        let dir = options.work_dir.join(format!("mesh-{number}"));
        std::fs::create_dir_all(&dir)
            .map_err(MeshError::io(format!("cannot create {}", dir.display())))?;
        let ledger = Ledger::new(format!("mesh {number} of run {}", run.id()));
        let mut topology = Topology::new(run.clone(), ledger.clone(), number)?;
        let nodes = if options.nodes.is_empty() {
            vec![NodeSpec::new("node-1")]
        } else {
            options.nodes.clone()
        };
        for node in &nodes {
            topology.add_node(&node.name)?;
        }
        let target = TargetInfo {
            kind: options.target_kind.clone(),
            name: options.target_name.clone(),
            version: options.version.clone(),
            profile: options.profile,
            capabilities: options.capabilities.clone(),
        };
        let seed = crate::cluster::fnv1a(run.id().as_bytes());
        Ok(LocalMesh {
            sockets: topology.sockets(),
            run,
            options,
            number,
            created,
            target,
            ledger,
            topology,
            dir,
            nodes,
            namespaces: BTreeMap::new(),
            service_accounts: BTreeMap::new(),
            services: BTreeMap::new(),
            service_entries: BTreeMap::new(),
            workload_entries: BTreeMap::new(),
            destination_rules: BTreeMap::new(),
            cluster_ips: ClusterIpAllocator::default(),
            deployments: BTreeMap::new(),
            pods: BTreeMap::new(),
            ztunnels: BTreeMap::new(),
            istiod: None,
            faults: BTreeMap::new(),
            next_fault: 1,
            restarts: Vec::new(),
            board: Arc::new(Board::default()),
            readiness: Vec::new(),
            terminating: Vec::new(),
            warnings: Vec::new(),
            seed,
            torn_down: false,
        })
    }

    pub fn run(&self) -> &Arc<Run> {
        &self.run
    }

    /// This mesh's number within its run (part of its namespace names and directory).
    pub fn number(&self) -> u32 {
        self.number
    }

    /// `<work_dir>/mesh-<n>`: config files and ztunnel logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What the control-plane translation skipped or ignored, one line each.
    pub fn translation_warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The socket factory: the only way to reach pod and service addresses.
    pub fn sockets(&self) -> &SocketFactory {
        &self.sockets
    }

    /// Network namespaces of this mesh that exist now.
    pub fn namespaces(&self) -> Vec<String> {
        let prefix = self.run.netns_name(self.number, "");
        self.run
            .live_namespaces()
            .into_iter()
            .filter(|n| n.starts_with(&prefix))
            .collect()
    }

    /// The control plane's pod, once the first pod of a mesh fed by the control plane is
    /// made.
    pub fn istiod(&self) -> Option<&Istiod> {
        self.istiod.as_ref()
    }

    /// The namespace a pod runs in.
    pub fn pod_netns(&self, pod: &PodRef) -> Option<&str> {
        self.pods.get(pod).map(|p| p.netns.netns.as_str())
    }

    /// The Pod object, as `kubectl get pod -o yaml` would show it.
    pub fn pod_object(&self, pod: &PodRef) -> Option<&Pod> {
        self.pods.get(pod).map(|p| &p.object)
    }

    /// Pods a scale-down removed that still serve through their grace period.
    pub fn terminating(&self) -> Vec<PodRef> {
        self.terminating
            .iter()
            .filter(|t| !t.timer.as_ref().is_some_and(|h| h.is_finished()))
            .map(|t| t.pod.clone())
            .collect()
    }

    fn check_live(&self) -> Result<(), MeshError> {
        if self.torn_down {
            return Err(MeshError::InvalidRequest(format!(
                "mesh {} was torn down; create a new LocalMesh",
                self.number
            )));
        }
        Ok(())
    }

    fn deployment_names(&self) -> String {
        let names: Vec<String> = self.deployments.keys().map(ToString::to_string).collect();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    }

    fn pods_of(&self, deployment: &DeploymentRef) -> Vec<&PodState> {
        // BTreeMap order is (namespace, name): sorted by name, as `kubectl get pods` lists.
        self.pods
            .values()
            .filter(|p| &p.deployment == deployment)
            .collect()
    }
}

#[async_trait]
impl MeshUnderTest for LocalMesh {
    fn target(&self) -> &TargetInfo {
        &self.target
    }

    fn elapsed(&self) -> Duration {
        self.created.elapsed()
    }

    fn restarts(&self) -> Vec<Restart> {
        self.restarts.clone()
    }

    fn readiness_changes(&self) -> Vec<ReadinessChange> {
        self.readiness.clone()
    }

    async fn deploy(&mut self, manifests: &ManifestSet) -> Result<(), MeshError> {
        self.check_live()?;
        self.admit(manifests)?;
        for object in &manifests.objects {
            self.add_object(object)?;
        }
        let mut removed = BTreeSet::new();
        for object in &manifests.objects {
            let Manifest::Deployment(deployment) = object else {
                continue;
            };
            let dref = DeploymentRef::new(
                object
                    .namespace()
                    .unwrap_or(meshcert_mesh::manifest::DEFAULT_NAMESPACE),
                object.name(),
            );
            if dref.namespace != meshcert_mesh::manifest::DEFAULT_NAMESPACE
                && !self.namespaces.contains_key(&dref.namespace)
            {
                return Err(MeshError::InvalidRequest(format!(
                    "Deployment {dref}: namespace {:?} does not exist; add its Namespace to the manifests",
                    dref.namespace
                )));
            }
            let mut deployment = deployment.clone();
            deployment.metadata.namespace = Some(dref.namespace.clone());
            let template = Template::of(&deployment)?;
            let replicas = deployment
                .spec
                .as_ref()
                .and_then(|s| s.replicas)
                .unwrap_or(1);
            let replicas = u32::try_from(replicas).map_err(|_| {
                MeshError::InvalidRequest(format!(
                    "Deployment {dref}: replicas {replicas} is negative"
                ))
            })?;
            match self.deployments.get_mut(&dref) {
                Some(state) => {
                    state.object = deployment;
                    state.template = template;
                }
                None => {
                    let hash = cluster::template_hash(self.seed, &dref.namespace, &dref.name);
                    self.deployments.insert(
                        dref.clone(),
                        DeploymentState {
                            object: deployment,
                            template,
                            hash,
                            made: 0,
                        },
                    );
                }
            }
            removed.extend(self.reconcile(&dref, replicas).await?);
        }
        self.push(&removed).await
    }

    async fn scale(&mut self, deployment: &DeploymentRef, replicas: u32) -> Result<(), MeshError> {
        self.check_live()?;
        if !self.deployments.contains_key(deployment) {
            return Err(MeshError::InvalidRequest(format!(
                "cannot scale {deployment}: no such deployment (deployed: {})",
                self.deployment_names()
            )));
        }
        let removed = self.reconcile(deployment, replicas).await?;
        self.push(&removed).await
    }

    async fn pods(&self, deployment: &DeploymentRef) -> Result<Vec<PodInfo>, MeshError> {
        if !self.deployments.contains_key(deployment) {
            return Err(MeshError::InvalidRequest(format!(
                "no deployment {deployment} (deployed: {})",
                self.deployment_names()
            )));
        }
        Ok(self
            .pods_of(deployment)
            .into_iter()
            .map(|p| {
                let pod = PodRef {
                    namespace: p.deployment.namespace.clone(),
                    name: p.netns.name.clone(),
                };
                PodInfo {
                    ready: self.kubelet_ready(&pod, p),
                    namespace: pod.namespace,
                    name: pod.name,
                    ip: IpAddr::V4(p.netns.ip),
                    node: p.netns.node.clone(),
                }
            })
            .collect())
    }

    async fn send_requests(&mut self, plan: &RequestPlan) -> Result<Vec<RequestRecord>, MeshError> {
        self.send(plan).await
    }

    async fn inject(&mut self, fault: &Fault) -> Result<FaultHandle, MeshError> {
        self.check_live()?;
        let requested_at = self.elapsed();
        let pod = self.pods.get(&fault.pod).ok_or_else(|| {
            MeshError::InvalidRequest(format!("cannot inject into {}: no such pod", fault.pod))
        })?;
        // Held until the fault is in the ledger: a closing run undoes it or it never happened.
        let creating = self
            .run
            .creating(&format!("fault {} on {}", fault.kind, fault.pod))?;
        let item: Box<dyn Undo> = match (&fault.kind, faults::iptables_rule(&fault.kind)) {
            (_, Some(rule)) => {
                let netns = pod.netns.netns.clone();
                Box::new(blocking(move || IptablesFault::inject(&netns, rule)).await?)
            }
            (FaultKind::HttpStatus { status }, None) => {
                let (app, _) = pod.app.as_ref().ok_or_else(|| {
                    MeshError::InvalidRequest(format!(
                        "cannot make {} answer HTTP {status}: it runs no app (no container ports)",
                        fault.pod
                    ))
                })?;
                Box::new(AppFault::inject(
                    &fault.pod.to_string(),
                    app.switch(),
                    *status,
                ))
            }
            (FaultKind::NotReady, None) => self.fail_readiness(&fault.pod).await?,
            (FaultKind::ProcessKill, None) => self.kill_app(&fault.pod).await?,
            (kind, None) => {
                return Err(MeshError::Unsupported {
                    what: kind.to_string(),
                    reason: "the local driver has no way to inject it".into(),
                });
            }
        };
        let entry = self.ledger.record(item);
        drop(creating);
        let handle = FaultHandle {
            id: self.next_fault,
            fault: fault.clone(),
            injected_at: self.elapsed(),
            requested_at,
        };
        self.next_fault += 1;
        tracing::info!(fault = %fault.kind, pod = %fault.pod, at = ?handle.injected_at, "fault injected");
        self.faults.insert(
            handle.id,
            FaultState {
                handle: handle.clone(),
                entry,
            },
        );
        Ok(handle)
    }

    async fn undo(&mut self, handle: &FaultHandle) -> Result<(), MeshError> {
        let state = self.faults.remove(&handle.id).ok_or_else(|| {
            MeshError::InvalidRequest(format!(
                "fault #{} ({} on {}) is not in force: already undone, or its pod was removed",
                handle.id, handle.fault.kind, handle.fault.pod
            ))
        })?;
        if state.handle.fault.kind == FaultKind::ProcessKill {
            self.restart_app(&state.handle.fault.pod)?;
        }
        let ledger = self.ledger.clone();
        blocking(move || ledger.release(state.entry)).await
    }

    async fn ztunnel_logs(&self) -> Result<Vec<LogLine>, MeshError> {
        let mut captured: Vec<ztunnel::CapturedLine> = self
            .ztunnels
            .values()
            .flat_map(|z| z.output.lines())
            .collect();
        captured.sort_by_key(|l| l.observed_at);
        Ok(captured.iter().map(ztunnel::CapturedLine::parse).collect())
    }

    async fn metrics(&self) -> Result<Vec<MetricSample>, MeshError> {
        let mut samples = Vec::new();
        for pod in self.ztunnels.keys() {
            let admin = self.admin(pod).ok_or_else(|| {
                MeshError::Ztunnel(format!("the ztunnel of {pod} is not running"))
            })?;
            samples.extend(
                metrics::parse_prometheus(&admin.metrics_text().await?)
                    .map_err(|e| MeshError::Ztunnel(e.to_string()))?,
            );
        }
        Ok(samples)
    }

    async fn teardown(&mut self) -> Result<(), MeshError> {
        self.torn_down = true;
        // Stopping a terminating pod is the ledger's job from here.
        for t in self.terminating.drain(..) {
            if let Some(timer) = t.timer {
                timer.abort();
            }
        }
        self.faults.clear();
        self.ztunnels.clear();
        self.pods.clear();
        self.istiod = None;
        let ledger = self.ledger.clone();
        blocking(move || ledger.teardown()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_default_to_one_node_and_cluster1() {
        let command = ZtunnelCommand {
            program: "/bin/zt".into(),
            args: vec![],
            env: vec![],
            reloads_config: true,
        };
        let options = LocalOptions::new(command, "reference", Profile::Solo, "/tmp/w");
        assert_eq!(options.nodes, vec![NodeSpec::new("node-1")]);
        assert_eq!(options.cluster_id, "cluster1");
        assert_eq!(options.network, "");
        assert_eq!(options.target_name, "meshcert reference ztunnel");
        assert_eq!(options.config_source, ConfigSource::default());
    }

    #[test]
    fn config_sources_read_as_they_are_written() {
        for source in [ConfigSource::File, ConfigSource::ControlPlane] {
            assert_eq!(source.to_string().parse::<ConfigSource>(), Ok(source));
        }
        assert_eq!("control-plane".parse(), Ok(ConfigSource::ControlPlane));
        let wrong = "xds".parse::<ConfigSource>().unwrap_err();
        assert!(wrong.contains("\"xds\" is neither \"file\""), "{wrong}");
    }
}

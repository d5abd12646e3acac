//! `LocalMesh`: one small cluster on this machine for one scenario, driven through
//! `MeshUnderTest`. Nodes and pods are network namespaces, backends run the in-process app,
//! and every client pod runs the ztunnel under test, fed the translated local config.
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
use meshcert_ztunnel::defects::{Defect, Defects};

use super::admin::Admin;
use super::app::BackendApp;
use super::client::{self, DnsService};
use super::cluster::{self, ClusterIpAllocator, Template};
use super::faults::{self, AppFault, Faults, IptablesFault, KilledApp, ProbePathFault};
use super::netns::{self, PodNetns, SocketFactory, Topology};
use super::readiness::{Board, ProbeAction, ProbeSpec, ProbeTarget, Prober};
use super::run::{EntryId, Ledger, Run, Undo};
use super::ztunnel::{self, LaunchSpec, OutputLog, ZtunnelCommand, ZtunnelProcess};
use crate::manifest::{Manifest, ManifestSet};
use crate::wait::{Probe, eventually};
use crate::{
    Capability, DeploymentRef, Fault, FaultHandle, FaultKind, MeshError, MeshUnderTest, PodInfo,
    PodRef, Profile, ReadinessChange, RequestOutcome, RequestPlan, RequestRecord, Restart,
    TargetInfo,
};
use meshcert_model::LogLine;
use meshcert_oracle::metrics::{self, MetricSample};

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

/// How to build a local mesh.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalOptions {
    pub ztunnel: ZtunnelCommand,
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
            target_kind: target_kind.to_string(),
            target_name,
            profile,
            nodes: vec![NodeSpec::new("node-1")],
            work_dir: work_dir.into(),
            cluster_id: "cluster1".to_string(),
            network: String::new(),
            defects: Defects::none(),
            ready_deadline: super::admin::READY_DEADLINE,
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
    /// Its ztunnel (a client's), faults, app and namespace, released in this order.
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

/// The ztunnel of one client pod, across restarts.
#[derive(Debug)]
struct ClientZtunnel {
    spec: LaunchSpec,
    output: Arc<OutputLog>,
    running: Option<(Arc<ZtunnelProcess>, EntryId)>,
    /// The config text last written, to tell whether a change needs a reload or restart.
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
    ztunnels: BTreeMap<PodRef, ClientZtunnel>,
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
        let seed = crate::local::cluster::fnv1a(run.id().as_bytes());
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

    /// Has the control plane act on what the kubelet reported since the last look: pods
    /// whose readiness changed get their Ready condition rewritten and every ztunnel the new
    /// config (their workloads Healthy or Unhealthy), pushed as any change is. Whether
    /// anything changed. `send_requests` does this as changes come; call it to act on one
    /// without traffic.
    pub async fn sync_readiness(&mut self) -> Result<bool, MeshError> {
        if !self
            .pods
            .iter()
            .any(|(pod, s)| self.readiness_differs(pod, s))
        {
            return Ok(false);
        }
        self.push(&BTreeSet::new()).await?;
        Ok(true)
    }

    /// What the kubelet reports for a pod now: its app runs and every probed container is
    /// ready. A client (no app) is Ready once created.
    fn kubelet_ready(&self, pod: &PodRef, state: &PodState) -> bool {
        if state.app.is_none() {
            return true;
        }
        !state.killed && self.board.ready(pod).unwrap_or(true)
    }

    fn readiness_differs(&self, pod: &PodRef, state: &PodState) -> bool {
        cluster::pod_ready(&state.object) != self.kubelet_ready(pod, state)
    }

    /// Writes the kubelet's readiness into the Pod objects; records each change.
    fn refresh_readiness(&mut self) {
        let now = self.elapsed();
        let mut changes = Vec::new();
        for (pod, state) in &self.pods {
            if !self.readiness_differs(pod, state) {
                continue;
            }
            let ready = !cluster::pod_ready(&state.object);
            let reason = if state.killed && !ready {
                "the app's process was killed".to_string()
            } else {
                self.board.describe(pod)
            };
            changes.push(ReadinessChange {
                pod: pod.clone(),
                ready,
                at: self.board.since(pod).unwrap_or(now),
                pushed_at: None,
                reason,
            });
        }
        for change in changes {
            let state = self.pods.get_mut(&change.pod).expect("listed above");
            cluster::set_ready(&mut state.object, change.ready, &change.reason);
            tracing::info!(mesh = self.number, pod = %change.pod, ready = change.ready, reason = %change.reason, "pod readiness changed");
            self.readiness.push(change);
        }
    }

    /// The control plane's push after a change: Ready conditions as the kubelet reports
    /// them, every ztunnel synced, then the grace periods of pods just delisted begin.
    async fn push(&mut self, removed: &BTreeSet<String>) -> Result<(), MeshError> {
        let first = self.readiness.len();
        self.refresh_readiness();
        let synced = self.sync_ztunnels(removed).await;
        self.start_grace_periods();
        synced?;
        let pushed = self.elapsed();
        for change in &mut self.readiness[first..] {
            change.pushed_at = Some(pushed);
        }
        Ok(())
    }

    /// Runs `work` (which must not need the mesh) while acting on readiness changes as the
    /// kubelet reports them, as a cluster's control plane does while traffic flows; a push
    /// under way when `work` ends is finished first.
    ///
    /// A push whose confirmation times out (the ztunnel did not show the new config in time)
    /// does not fail `work`: only a ztunnel that exits does.
    ///
    /// A ztunnel that reads its config once takes a push by restarting, the harness's stand-in
    /// for xDS, which a cluster's push never costs: such a push first takes `quiet` (which
    /// `work` holds during each request), so no request is in flight while it restarts and the
    /// next waits for it, rather than fail on it.
    async fn alongside_readiness<T>(
        &mut self,
        quiet: Arc<tokio::sync::Mutex<()>>,
        work: impl std::future::Future<Output = Result<T, MeshError>>,
    ) -> Result<T, MeshError> {
        let board = self.board.clone();
        let restarts = !self.options.ztunnel.reloads_config;
        tokio::pin!(work);
        loop {
            tokio::select! {
                done = &mut work => return done,
                () = board.changed() => {
                    let quiet = quiet.clone();
                    let push = async {
                        let _quiet = if restarts { Some(quiet.lock().await) } else { None };
                        match self.sync_readiness().await {
                            // A cluster's push is never confirmed either: the traffic shows
                            // whether it took effect, and a slow machine must not fail the step.
                            Err(MeshError::Timeout { what, waited, last }) => {
                                tracing::warn!(%what, ?waited, %last, "a readiness push was not confirmed; the traffic judges it");
                                Ok(true)
                            }
                            other => other,
                        }
                    };
                    tokio::pin!(push);
                    tokio::select! {
                        pushed = &mut push => {
                            pushed?;
                        }
                        done = &mut work => {
                            push.await?;
                            return done;
                        }
                    }
                }
            }
        }
    }

    /// Everything the control plane sees now.
    pub fn snapshot(&self) -> ClusterSnapshot {
        let mut namespaces: Vec<Namespace> = self.namespaces.values().cloned().collect();
        if !self.options.network.is_empty() {
            let system = match namespaces
                .iter_mut()
                .find(|n| n.metadata.name.as_deref() == Some(control_plane::ISTIO_SYSTEM))
            {
                Some(ns) => ns,
                None => {
                    namespaces.push(Namespace {
                        metadata: ObjectMeta {
                            name: Some(control_plane::ISTIO_SYSTEM.into()),
                            ..Default::default()
                        },
                        ..Default::default()
                    });
                    namespaces.last_mut().expect("just pushed")
                }
            };
            system
                .metadata
                .labels
                .get_or_insert_with(Default::default)
                .entry(control_plane::NETWORK_LABEL.to_string())
                .or_insert_with(|| self.options.network.clone());
        }
        ClusterSnapshot {
            cluster_id: self.options.cluster_id.clone(),
            trust_domain: control_plane::CLUSTER_DOMAIN.to_string(),
            nodes: self
                .nodes
                .iter()
                .map(|n| cluster::build_node(&n.name, &n.labels))
                .collect(),
            namespaces,
            services: self.services.values().cloned().collect(),
            pods: self.pods.values().map(|p| p.object.clone()).collect(),
            service_entries: self.service_entries.values().cloned().collect(),
            workload_entries: self.workload_entries.values().cloned().collect(),
            destination_rules: self.destination_rules.values().cloned().collect(),
        }
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

    /// What the API server (and Istio's webhook) would refuse, and what this driver cannot
    /// serve, checked for every object before any is applied, so a refused deploy changes
    /// nothing.
    fn admit(&self, manifests: &ManifestSet) -> Result<(), MeshError> {
        for object in &manifests.objects {
            match object {
                Manifest::Service(service) => cluster::validate_service(service)?,
                Manifest::ServiceEntry(entry) => {
                    if let Some(endpoint) = entry.spec.endpoints.first() {
                        return Err(nothing_behind(
                            &object.describe(),
                            "spec.endpoints[0].address",
                            &endpoint.address,
                        ));
                    }
                    cluster::check_service_entry_addresses(entry)?;
                    self.check_addresses_free(object, entry)?;
                }
                Manifest::WorkloadEntry(entry) => {
                    return Err(nothing_behind(
                        &object.describe(),
                        "spec.address",
                        &entry.spec.address,
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// A ServiceEntry's own addresses must not be another object's: ztunnel would have two
    /// services behind one VIP.
    fn check_addresses_free(
        &self,
        object: &Manifest,
        entry: &ServiceEntry,
    ) -> Result<(), MeshError> {
        let key = (
            object.namespace().unwrap_or_default().to_string(),
            object.name().to_string(),
        );
        for (i, address) in entry.spec.addresses.iter().enumerate() {
            let service = self.services.iter().find(|(_, s)| {
                s.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some(address)
            });
            let other_entry = self
                .service_entries
                .iter()
                .filter(|(k, _)| **k != key)
                .find(|(_, e)| e.all_addresses().contains(&address.as_str()));
            let owner = match (service, other_entry) {
                (Some(((ns, name), _)), _) => format!("Service {ns}/{name}"),
                (None, Some(((ns, name), _))) => format!("ServiceEntry {ns}/{name}"),
                (None, None) => continue,
            };
            return Err(MeshError::InvalidRequest(format!(
                "{}: field `spec.addresses[{i}]` is {address:?}, which {owner} already has: \
                 choose another address, or leave `spec.addresses` empty to have one allocated",
                object.describe()
            )));
        }
        Ok(())
    }

    fn add_object(&mut self, object: &Manifest) -> Result<(), MeshError> {
        let namespace = || {
            object
                .namespace()
                .unwrap_or(crate::manifest::DEFAULT_NAMESPACE)
                .to_string()
        };
        match object {
            Manifest::Namespace(ns) => {
                self.namespaces
                    .insert(object.name().to_string(), ns.clone());
            }
            Manifest::ServiceAccount(sa) => {
                self.service_accounts
                    .insert((namespace(), object.name().to_string()), sa.clone());
            }
            Manifest::Service(service) => {
                let key = (namespace(), object.name().to_string());
                let mut service = service.clone();
                service.metadata.namespace = Some(key.0.clone());
                // Re-applying a Service keeps its cluster IP, as the API server does.
                let kept = self
                    .services
                    .get(&key)
                    .and_then(|s| s.spec.as_ref())
                    .and_then(|s| s.cluster_ip.clone());
                if let Some(ip) = kept {
                    service.spec.get_or_insert_with(Default::default).cluster_ip = Some(ip);
                }
                if let Some(ip) = service
                    .spec
                    .as_ref()
                    .and_then(|s| s.cluster_ip.as_deref())
                    .and_then(|ip| ip.parse().ok())
                {
                    self.cluster_ips.reserve(ip);
                }
                cluster::assign_cluster_ip(&mut service, &mut self.cluster_ips)?;
                self.services.insert(key, service);
            }
            Manifest::ServiceEntry(entry) => {
                let key = (namespace(), object.name().to_string());
                let mut entry = entry.clone();
                entry.metadata.namespace = Some(key.0.clone());
                for ip in entry.spec.addresses.iter().filter_map(|a| a.parse().ok()) {
                    self.cluster_ips.reserve(ip);
                }
                cluster::assign_service_entry_addresses(
                    &mut entry,
                    self.service_entries.get(&key),
                    &mut self.cluster_ips,
                )?;
                self.service_entries.insert(key, entry);
            }
            Manifest::WorkloadEntry(entry) => {
                let mut entry = entry.clone();
                entry.metadata.namespace = Some(namespace());
                self.workload_entries
                    .insert((namespace(), object.name().to_string()), entry);
            }
            Manifest::DestinationRule(rule) => {
                let mut rule = rule.clone();
                rule.metadata.namespace = Some(namespace());
                self.destination_rules
                    .insert((namespace(), object.name().to_string()), rule);
            }
            Manifest::Node(node) => {
                let name = object.name().to_string();
                let labels = node.metadata.labels.clone().unwrap_or_default();
                match self.nodes.iter_mut().find(|n| n.name == name) {
                    Some(existing) => existing.labels.extend(labels),
                    None => {
                        self.topology.add_node(&name)?;
                        self.nodes.push(NodeSpec { name, labels });
                    }
                }
            }
            Manifest::Deployment(_) => {}
        }
        Ok(())
    }

    /// Makes one more pod of a deployment: namespace, address, app, Ready.
    async fn add_pod(&mut self, deployment: &DeploymentRef) -> Result<PodRef, MeshError> {
        let node_names: Vec<String> = self.nodes.iter().map(|n| n.name.clone()).collect();
        let state = self
            .deployments
            .get_mut(deployment)
            .expect("caller checked the deployment");
        let mut ordinal = state.made;
        let name = loop {
            let candidate = format!(
                "{}-{}-{}",
                deployment.name,
                state.hash,
                cluster::pod_suffix(self.seed, &deployment.namespace, &deployment.name, ordinal)
            );
            ordinal += 1;
            if !self.pods.contains_key(&PodRef {
                namespace: deployment.namespace.clone(),
                name: candidate.clone(),
            }) {
                break candidate;
            }
        };
        let node = cluster::place(
            &node_names,
            state.template.pinned_node.as_deref(),
            state.made as usize,
        )?;
        state.made = ordinal;
        let ports = state.template.ports.clone();
        let plan = self.topology.plan_pod(&node, &name)?;
        let (run, ledger) = (self.run.clone(), self.ledger.clone());
        let pod_netns = blocking(move || netns::create_pod(&run, &ledger, &plan)).await?;
        let app = if ports.is_empty() {
            None
        } else {
            let started = match self.run.creating(&format!("the app of pod {name}")) {
                Ok(creating) => {
                    BackendApp::start(&self.sockets, &pod_netns.netns, pod_netns.ip, &ports, &name)
                        .await
                        .map(|app| (app, creating))
                }
                Err(e) => Err(e),
            };
            match started {
                Ok((app, creating)) => {
                    let app = Arc::new(app);
                    let entry = self.ledger.record(Box::new(app.clone()));
                    drop(creating);
                    Some((app, entry))
                }
                Err(e) => {
                    let (ledger, entry) = (self.ledger.clone(), pod_netns.entry);
                    blocking(move || ledger.release(entry)).await?;
                    return Err(e);
                }
            }
        };
        let pod = PodRef {
            namespace: deployment.namespace.clone(),
            name: name.clone(),
        };
        // Probes run only where an app listens: a client's would have nothing to answer.
        let specs = match &app {
            Some(_) => self.deployments[deployment].template.readiness.clone(),
            None => Vec::new(),
        };
        if let Some((app, _)) = &app {
            for spec in &specs {
                if let ProbeAction::HttpGet { path, .. } = &spec.action {
                    app.switch().spare(path);
                }
            }
        }
        let mut probers = Vec::new();
        let mut came_up = self.wait_reachable(&node, &pod_netns).await;
        if came_up.is_ok() && !specs.is_empty() {
            came_up = match self.start_probers(&pod, &node, pod_netns.ip, &specs) {
                Ok(entries) => {
                    probers = entries;
                    self.wait_probed_ready(&pod, &specs).await
                }
                Err(e) => Err(e),
            };
        }
        if let Err(e) = came_up {
            self.board.forget(&pod);
            let mut entries = probers;
            entries.extend(app.map(|(_, entry)| entry));
            entries.push(pod_netns.entry);
            let ledger = self.ledger.clone();
            // Every entry is released even if one fails; the first failure is reported.
            blocking(move || {
                let results: Vec<Result<(), MeshError>> =
                    entries.into_iter().map(|e| ledger.release(e)).collect();
                results.into_iter().collect::<Result<(), MeshError>>()
            })
            .await?;
            return Err(e);
        }
        let state = &self.deployments[deployment];
        let object = cluster::build_pod(&cluster::PodFacts {
            namespace: &deployment.namespace,
            name: &name,
            deployment: &state.object,
            template_hash: &state.hash,
            node: &node,
            ip: pod_netns.ip,
            ready: true,
        });
        tracing::debug!(%pod, ip = %pod_netns.ip, %node, "pod ready");
        self.pods.insert(
            pod.clone(),
            PodState {
                object,
                deployment: deployment.clone(),
                netns: pod_netns,
                app,
                probers,
                killed: false,
            },
        );
        Ok(pod)
    }

    /// Starts the kubelet's readiness workers of a pod whose containers just started: each
    /// probes from the pod's node and reports to the board.
    fn start_probers(
        &self,
        pod: &PodRef,
        node: &str,
        ip: std::net::Ipv4Addr,
        specs: &[ProbeSpec],
    ) -> Result<Vec<EntryId>, MeshError> {
        let node_netns = self
            .topology
            .node(node)
            .map(|n| n.netns.clone())
            .ok_or_else(|| MeshError::InvalidRequest(format!("no node {node:?}")))?;
        let started = self.elapsed();
        let mut entries = Vec::new();
        for spec in specs {
            let creating = self.run.creating(&format!(
                "the readiness probe of container {} of pod {pod}",
                spec.container
            ))?;
            let target = ProbeTarget {
                sockets: self.sockets.clone(),
                pod: pod.clone(),
                node_netns: node_netns.clone(),
                pod_ip: ip,
            };
            let prober = Prober::spawn(
                self.board.clone(),
                target,
                spec.clone(),
                self.created,
                started,
            );
            entries.push(self.ledger.record(Box::new(prober)));
            drop(creating);
        }
        Ok(entries)
    }

    /// Waits until a new pod's probes pass, as a rollout waits for its pods to be Ready.
    async fn wait_probed_ready(&self, pod: &PodRef, specs: &[ProbeSpec]) -> Result<(), MeshError> {
        let deadline = specs
            .iter()
            .map(ProbeSpec::time_to_ready)
            .max()
            .unwrap_or_default()
            + READY_SLACK;
        let probes: Vec<String> = specs.iter().map(ProbeSpec::describe).collect();
        let what = format!(
            "pod {pod} to pass its readiness probe ({}) from its node",
            probes.join("; ")
        );
        let board = self.board.clone();
        eventually(&what, deadline, Duration::from_millis(20), || {
            let (board, pod) = (board.clone(), pod.clone());
            async move {
                match board.ready(&pod) {
                    Some(true) => Probe::Ready(()),
                    _ => Probe::NotYet(board.describe(&pod)),
                }
            }
        })
        .await
    }

    /// Removes a pod: its ztunnel, faults and app first, then its namespace.
    /// Waits until a new pod's link is up at both ends, as a CNI plugin does before the kubelet
    /// reports the pod: until then it is unreachable.
    async fn wait_reachable(&self, node: &str, pod: &PodNetns) -> Result<(), MeshError> {
        let node_netns = self
            .topology
            .node(node)
            .map(|n| n.netns.clone())
            .ok_or_else(|| MeshError::InvalidRequest(format!("no node {node:?}")))?;
        let what = format!("the link of pod {} ({}) to come up", pod.name, pod.ip);
        eventually(&what, REACHABLE_DEADLINE, Duration::from_millis(20), || {
            let (node_netns, pod) = (node_netns.clone(), pod.clone());
            async move {
                match blocking(move || netns::pod_link_pending(&node_netns, &pod)).await {
                    Ok(None) => Probe::Ready(()),
                    Ok(Some(state)) => Probe::NotYet(state),
                    Err(e) => Probe::Failed(e),
                }
            }
        })
        .await
    }

    /// Takes a pod out of the cluster's view, as deleting it does: its probers stop and the
    /// control plane no longer lists it, but it keeps serving until its grace period, which
    /// begins once the change is pushed (`start_grace_periods`), ends.
    fn delist_pod(&mut self, pod: &PodRef) -> Result<(), MeshError> {
        let Some(state) = self.pods.remove(pod) else {
            return Ok(());
        };
        self.board.forget(pod);
        for entry in &state.probers {
            // An abort: nothing that blocks.
            self.ledger.release(*entry)?;
        }
        let grace = self
            .deployments
            .get(&state.deployment)
            .map_or(cluster::LOCAL_GRACE_CAP, |d| d.template.local_grace());
        let mut entries = Vec::new();
        if let Some(z) = self.ztunnels.remove(pod)
            && let Some((_, entry)) = z.running
        {
            entries.push(entry);
        }
        let faults: Vec<u64> = self
            .faults
            .iter()
            .filter(|(_, f)| &f.handle.fault.pod == pod)
            .map(|(id, _)| *id)
            .collect();
        for id in faults {
            entries.push(self.faults.remove(&id).expect("listed above").entry);
        }
        if let Some((_, entry)) = state.app {
            entries.push(entry);
        }
        entries.push(state.netns.entry);
        self.terminating.push(Terminating {
            pod: pod.clone(),
            grace,
            entries,
            timer: None,
        });
        Ok(())
    }

    /// Starts the grace period of every pod delisted and not yet timed: when it ends, the
    /// pod is stopped (every entry released even if one fails, so one stuck rule cannot keep
    /// the rest). Timers still running at teardown are dropped with it.
    fn start_grace_periods(&mut self) {
        self.terminating
            .retain(|t| !t.timer.as_ref().is_some_and(|h| h.is_finished()));
        for t in self.terminating.iter_mut().filter(|t| t.timer.is_none()) {
            let (ledger, entries, grace, pod) = (
                self.ledger.clone(),
                t.entries.clone(),
                t.grace,
                t.pod.clone(),
            );
            tracing::debug!(%pod, ?grace, "delisted; serving through its grace period");
            t.timer = Some(tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                let stopped = blocking(move || {
                    let results: Vec<Result<(), MeshError>> =
                        entries.into_iter().map(|e| ledger.release(e)).collect();
                    results.into_iter().collect::<Result<(), MeshError>>()
                })
                .await;
                match stopped {
                    Ok(()) => tracing::debug!(%pod, "stopped after its grace period"),
                    Err(e) => {
                        tracing::warn!(%pod, error = %e, "stopping a terminated pod failed; teardown retries")
                    }
                }
            }));
        }
    }

    /// Brings the pods of a deployment to `replicas`: new ones last in name order are not
    /// guaranteed, so removal takes the highest names, as the brief of `scale` says. Removed
    /// pods are only delisted here; the caller's push starts their grace periods.
    async fn reconcile(
        &mut self,
        deployment: &DeploymentRef,
        replicas: u32,
    ) -> Result<BTreeSet<String>, MeshError> {
        let mut removed = BTreeSet::new();
        let current = self.pods_of(deployment).len() as u32;
        for _ in current..replicas {
            self.add_pod(deployment).await?;
        }
        if replicas < current {
            let doomed: Vec<PodRef> = self
                .pods_of(deployment)
                .iter()
                .rev()
                .take((current - replicas) as usize)
                .map(|p| PodRef {
                    namespace: p.deployment.namespace.clone(),
                    name: p.netns.name.clone(),
                })
                .collect();
            for pod in doomed {
                self.delist_pod(&pod)?;
                removed.insert(pod.name);
            }
        }
        if let Some(state) = self.deployments.get_mut(deployment) {
            state
                .object
                .spec
                .get_or_insert_with(Default::default)
                .replicas = Some(replicas as i32);
        }
        Ok(removed)
    }

    /// Names of the ready backend pods the config lists: what every ztunnel must know.
    fn expected_endpoints(&self, config: &crate::local_config::LocalConfig) -> BTreeSet<String> {
        let listed: BTreeSet<&str> = config.workloads.iter().map(|w| w.name.as_str()).collect();
        self.pods
            .iter()
            .filter(|(pod, state)| state.app.is_some() && listed.contains(pod.name.as_str()))
            .map(|(pod, _)| pod.name.clone())
            .collect()
    }

    /// Writes every client's config; starts missing ztunnels, restarts (or lets reload) those
    /// whose config changed; waits until each is ready and knows every endpoint.
    async fn sync_ztunnels(&mut self, removed: &BTreeSet<String>) -> Result<(), MeshError> {
        // The reference's defect list names the control plane's switches too.
        let defects = ControlPlaneDefects {
            wrong_precedence: self.options.defects.is_on(Defect::WrongPrecedence),
        };
        let translation =
            control_plane::to_local_config_with(&self.snapshot(), self.options.profile, defects)?;
        for warning in &translation.warnings {
            if !self.warnings.contains(warning) {
                tracing::warn!(mesh = self.number, "{warning}");
                self.warnings.push(warning.clone());
            }
        }
        let yaml = translation.config.to_yaml();
        let present = self.expected_endpoints(&translation.config);
        let clients: Vec<PodRef> = self
            .pods
            .iter()
            .filter(|(_, p)| {
                self.deployments
                    .get(&p.deployment)
                    .is_some_and(|d| d.template.is_client())
            })
            .map(|(pod, _)| pod.clone())
            .collect();
        // A reloading ztunnel's reload is looked for from here, before any file is written.
        let written_at = self.elapsed();
        let mut restarting = BTreeMap::new();
        for pod in &clients {
            if !self.ztunnels.contains_key(pod) {
                let z = self.new_client_ztunnel(pod, &translation.config)?;
                self.ztunnels.insert(pod.clone(), z);
            }
            let z = self.ztunnels.get_mut(pod).expect("inserted above");
            let changed = z.written != yaml;
            if changed {
                write_atomically(&z.spec.config_path, &yaml)?;
                z.written = yaml.clone();
            }
            match &z.running {
                None => self.start_ztunnel(pod).await?,
                Some((process, _)) => {
                    if let Some(status) = process.exit_status() {
                        return Err(MeshError::Ztunnel(process.describe_exit(status)));
                    }
                    if changed && !self.options.ztunnel.reloads_config {
                        restarting.insert(pod.clone(), (self.elapsed(), Instant::now()));
                        self.stop_ztunnel(pod).await?;
                        self.start_ztunnel(pod).await?;
                    }
                }
            }
        }
        for pod in &clients {
            if let Some(admin) = self.admin(pod) {
                // A reloading ztunnel must serve exactly the written config, which implies
                // knowing every endpoint; a restarted one read it at start.
                if self.options.ztunnel.reloads_config {
                    admin.wait_config(&translation.config, written_at).await?;
                } else {
                    admin.wait_knows(&present, removed).await?;
                }
            }
            if let Some((at, began)) = restarting.remove(pod) {
                // Stop, start, ready and knowing the config: what a change costs this target.
                self.restarts.push(Restart {
                    pod: pod.to_string(),
                    at,
                    took: began.elapsed(),
                });
            }
        }
        Ok(())
    }

    /// The launch of a client pod's ztunnel: where the pod runs, and its network and cluster
    /// as the control plane wrote them for its workload in `config`.
    fn new_client_ztunnel(
        &self,
        pod: &PodRef,
        config: &crate::local_config::LocalConfig,
    ) -> Result<ClientZtunnel, MeshError> {
        let state = &self.pods[pod];
        let template = &self.deployments[&state.deployment].template;
        let output = OutputLog::create(
            &self.dir.join(format!("ztunnel-{}.log", pod.name)),
            self.created,
        )?;
        let workload = config
            .workloads
            .iter()
            .find(|w| w.namespace == pod.namespace && w.name == pod.name);
        let spec = state.object.spec.as_ref();
        let status = state.object.status.as_ref();
        Ok(ClientZtunnel {
            spec: LaunchSpec {
                netns: state.netns.netns.clone(),
                pod_namespace: pod.namespace.clone(),
                pod_name: pod.name.clone(),
                service_account: template.service_account.clone(),
                config_path: self.dir.join(format!("ztunnel-{}.yaml", pod.name)),
                node_name: spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
                instance_ip: status.and_then(|s| s.pod_ip.clone()).unwrap_or_default(),
                network: workload
                    .map(|w| w.network.clone())
                    .unwrap_or_else(|| self.options.network.clone()),
                cluster_id: workload
                    .map(|w| w.cluster_id.clone())
                    .unwrap_or_else(|| self.options.cluster_id.clone()),
            },
            output,
            running: None,
            written: String::new(),
            redirected: false,
        })
    }

    async fn start_ztunnel(&mut self, pod: &PodRef) -> Result<(), MeshError> {
        let z = self
            .ztunnels
            .get_mut(pod)
            .expect("caller made the client ztunnel");
        if !z.redirected {
            let netns = z.spec.netns.clone();
            let run = self.run.clone();
            blocking(move || {
                let _creating = run.creating(&format!("the redirect in {netns}"))?;
                ztunnel::install_redirect(&netns)
            })
            .await?;
            z.redirected = true;
        }
        let (command, spec, output) = (
            self.options.ztunnel.clone(),
            z.spec.clone(),
            z.output.clone(),
        );
        let (run, ledger) = (self.run.clone(), self.ledger.clone());
        // Launched and recorded under one permission, so a closing run either sees it in the
        // ledger or it never started.
        let (process, entry) = blocking(move || {
            let _creating = run.creating(&format!("a ztunnel in {}", spec.netns))?;
            let process = ZtunnelProcess::launch(&command, &spec, output)?;
            let entry = ledger.record(Box::new(process.clone()));
            Ok((process, entry))
        })
        .await?;
        z.running = Some((process.clone(), entry));
        let admin = Admin {
            sockets: self.sockets.clone(),
            netns: z.spec.netns.clone(),
            process,
            pod: pod.to_string(),
        };
        admin.wait_ready(self.options.ready_deadline).await
    }

    async fn stop_ztunnel(&mut self, pod: &PodRef) -> Result<(), MeshError> {
        let Some(z) = self.ztunnels.get_mut(pod) else {
            return Ok(());
        };
        let Some((_, entry)) = z.running.take() else {
            return Ok(());
        };
        let ledger = self.ledger.clone();
        blocking(move || ledger.release(entry)).await
    }

    /// The not-ready fault: every readiness probe of the pod fails while its app serves
    /// everything else. An httpGet probe's path answers 503; a tcpSocket probe is refused
    /// from the node only (`iptables -s <node> ... -j REJECT`).
    async fn fail_readiness(&self, pod: &PodRef) -> Result<Box<dyn Undo>, MeshError> {
        let state = &self.pods[pod];
        let specs = &self.deployments[&state.deployment].template.readiness;
        let app = match &state.app {
            Some((app, _)) if !specs.is_empty() => app.clone(),
            _ => {
                return Err(MeshError::InvalidRequest(format!(
                    "cannot make {pod} not ready: its containers declare no readinessProbe, and \
                     a pod without one is Ready while its process runs; give the fixture's \
                     container a readinessProbe, or kill the process instead"
                )));
            }
        };
        let node_ip = self
            .topology
            .node(&state.netns.node)
            .map(|n| n.ip)
            .ok_or_else(|| MeshError::InvalidRequest(format!("no node {:?}", state.netns.node)))?;
        let mut parts: Vec<Box<dyn Undo>> = Vec::new();
        for spec in specs {
            match &spec.action {
                ProbeAction::HttpGet { path, .. } => parts.push(Box::new(ProbePathFault::inject(
                    &pod.to_string(),
                    app.switch(),
                    path,
                ))),
                ProbeAction::TcpSocket { port } => {
                    let (netns, rule) = (
                        state.netns.netns.clone(),
                        faults::refuse_probes_rule(node_ip, *port),
                    );
                    match blocking(move || IptablesFault::inject(&netns, rule)).await {
                        Ok(f) => parts.push(Box::new(f)),
                        Err(e) => {
                            // What is in force already must not outlive the failed inject.
                            let _ = Faults(parts).undo();
                            return Err(e);
                        }
                    }
                }
            }
        }
        Ok(Box::new(Faults(parts)))
    }

    /// The process-kill fault: the app's ports close and its connections drop; the kubelet
    /// sees the container exit at once (not Ready) and its probers stop with it.
    async fn kill_app(&mut self, pod: &PodRef) -> Result<Box<dyn Undo>, MeshError> {
        let state = &self.pods[pod];
        let app = match &state.app {
            Some((app, _)) if !state.killed => app.clone(),
            Some(_) => {
                return Err(MeshError::InvalidRequest(format!(
                    "the app of {pod} is killed already"
                )));
            }
            None => {
                return Err(MeshError::InvalidRequest(format!(
                    "cannot kill the app of {pod}: it runs none (no container ports)"
                )));
            }
        };
        app.kill().await;
        let at = self.elapsed();
        let state = self.pods.get_mut(pod).expect("looked up above");
        state.killed = true;
        let probers = std::mem::take(&mut state.probers);
        for entry in probers {
            self.ledger.release(entry)?;
        }
        self.board.containers_exited(pod, at);
        Ok(Box::new(KilledApp {
            pod: pod.to_string(),
        }))
    }

    /// Undoes a kill: the app listens again and new readiness workers start, so the pod is
    /// Ready once its probes pass (at once when it has none).
    fn restart_app(&mut self, pod: &PodRef) -> Result<(), MeshError> {
        let Some(state) = self.pods.get(pod) else {
            return Ok(());
        };
        let Some((app, _)) = &state.app else {
            return Ok(());
        };
        let creating = self
            .run
            .creating(&format!("the restarted app of pod {pod}"))?;
        app.restart(&self.sockets)?;
        let specs = self.deployments[&state.deployment]
            .template
            .readiness
            .clone();
        let (node, ip) = (state.netns.node.clone(), state.netns.ip);
        drop(creating);
        let probers = self.start_probers(pod, &node, ip, &specs)?;
        let state = self.pods.get_mut(pod).expect("looked up above");
        state.killed = false;
        state.probers = probers;
        Ok(())
    }

    /// The admin endpoints of a client pod's running ztunnel.
    fn admin(&self, pod: &PodRef) -> Option<Admin> {
        let z = self.ztunnels.get(pod)?;
        let (process, _) = z.running.as_ref()?;
        Some(Admin {
            sockets: self.sockets.clone(),
            netns: z.spec.netns.clone(),
            process: process.clone(),
            pod: pod.to_string(),
        })
    }

    /// Resolves a host as the client pod would: kube-dns names of Services, then the hosts
    /// of ServiceEntries, which Istio's DNS proxy answers with the entry's address.
    fn resolve(&self, host: &str, client_namespace: &str) -> Option<IpAddr> {
        client::resolve(host, client_namespace, &self.dns_services()).or_else(|| {
            let host = host.strip_suffix('.').unwrap_or(host);
            self.service_entries
                .values()
                .find_map(|e| e.addresses_of(host).first().and_then(|a| a.parse().ok()))
        })
    }

    fn dns_services(&self) -> Vec<DnsService> {
        self.services
            .iter()
            .filter_map(|((ns, name), s)| {
                let ip: IpAddr = s.spec.as_ref()?.cluster_ip.as_deref()?.parse().ok()?;
                Some(DnsService {
                    name: name.clone(),
                    namespace: ns.clone(),
                    cluster_ip: ip,
                })
            })
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
                    .unwrap_or(crate::manifest::DEFAULT_NAMESPACE),
                object.name(),
            );
            if dref.namespace != crate::manifest::DEFAULT_NAMESPACE
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
        self.check_live()?;
        if plan.count > MAX_REQUESTS {
            return Err(MeshError::InvalidRequest(format!(
                "{} requests asked; at most {MAX_REQUESTS} per plan",
                plan.count
            )));
        }
        if plan.timeout.is_zero() {
            return Err(MeshError::InvalidRequest(
                "the request timeout must be more than zero".into(),
            ));
        }
        let client = self
            .pods_of(&plan.client)
            .into_iter()
            .next()
            .ok_or_else(|| {
                MeshError::InvalidRequest(format!(
                    "client {} has no pods (deployed: {})",
                    plan.client,
                    self.deployment_names()
                ))
            })?;
        let client_ref = PodRef {
            namespace: client.deployment.namespace.clone(),
            name: client.netns.name.clone(),
        };
        if !self.ztunnels.contains_key(&client_ref) {
            return Err(MeshError::InvalidRequest(format!(
                "{} has container ports, so it is a backend without a ztunnel; send from a client deployment",
                plan.client
            )));
        }
        let url = client::parse_url(&plan.url).map_err(MeshError::InvalidRequest)?;
        let ip = self
            .resolve(&url.host, &plan.client.namespace)
            .ok_or_else(|| {
                MeshError::InvalidRequest(format!(
                    "could not resolve host {:?} from namespace {} (no such Service or \
                     ServiceEntry host)",
                    url.host, plan.client.namespace
                ))
            })?;
        let dst = SocketAddr::new(ip, url.port);
        let host = if url.port == 80 {
            url.host.clone()
        } else {
            format!("{}:{}", url.host, url.port)
        };
        let netns = client.netns.netns.clone();
        let client_ip = IpAddr::V4(client.netns.ip);
        let per_request = plan.timeout + plan.interval;
        let bound = per_request
            .saturating_mul(plan.count)
            .saturating_add(REQUESTS_SLACK);
        // The loop owns what it needs, so the control plane can push readiness changes
        // while the requests run.
        let (sockets, created, plan) = (self.sockets.clone(), self.created, plan.clone());
        let quiet = Arc::new(tokio::sync::Mutex::new(()));
        let turns = quiet.clone();
        let requests = async move {
            let mut records = Vec::with_capacity(plan.count as usize);
            let first = tokio::time::Instant::now();
            let loop_result = tokio::time::timeout(bound, async {
                for index in 0..plan.count {
                    if !plan.interval.is_zero() {
                        tokio::time::sleep_until(first + plan.interval * index).await;
                    }
                    // Not while a restarting ztunnel takes a push (see `alongside_readiness`).
                    let _turn = turns.lock().await;
                    let started_at = created.elapsed();
                    let began = Instant::now();
                    let (source_port, outcome) = client::get_with_source(
                        &sockets,
                        Some(&netns),
                        dst,
                        &host,
                        &url.path,
                        plan.timeout,
                    )
                    .await?;
                    let latency = began.elapsed();
                    let outcome = match outcome {
                        Ok(response) => RequestOutcome::Answered {
                            replica: response.replica(),
                            status: response.status,
                        },
                        Err(failure) => RequestOutcome::Failed { failure },
                    };
                    records.push(RequestRecord {
                        index,
                        started_at,
                        latency,
                        source: source_port
                            .map(|port| SocketAddr::new(client_ip, port).to_string()),
                        outcome,
                    });
                }
                Ok::<(), MeshError>(())
            })
            .await;
            match loop_result {
                Ok(Ok(())) => Ok(records),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(MeshError::Timeout {
                    what: format!("{} requests to {}", plan.count, plan.url),
                    waited: bound,
                    last: format!("{} of {} done", records.len(), plan.count),
                }),
            }
        };
        self.alongside_readiness(quiet, requests).await
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
    }
}

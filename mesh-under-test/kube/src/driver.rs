//! `KubeMesh`: one scenario's objects in a real cluster, driven through `MeshUnderTest`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, LogParams, Patch, PatchParams};
use meshcert_mesh::manifest::ManifestSet;
use meshcert_mesh::wait::{Probe, eventually, time_scale};
use meshcert_mesh::{
    Capability, DeploymentRef, Fault, FaultHandle, FaultKind, MeshError, MeshUnderTest, PodInfo,
    RequestPlan, RequestRecord, TargetInfo,
};
use meshcert_oracle::logs::{self, LogLine};
use meshcert_oracle::metrics::{self, MetricSample};
use serde_json::json;

use crate::exec::PodExec;
use crate::names::{self, RunNamespaces};
use crate::{api_error, curl, faults, status_code};

/// How a kube mesh behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct KubeOptions {
    /// The run id in namespace names and the run label.
    pub run: String,
    /// This mesh's number within the run.
    pub mesh: u32,
    /// Inject iptables faults into pods (`--allow-faults`); otherwise fault scenarios are
    /// skipped.
    pub allow_faults: bool,
    /// Label nodes as topologies ask (`--allow-node-labels`).
    pub allow_node_labels: bool,
    /// Image of the NET_ADMIN debug container.
    pub fault_image: String,
    /// Deadline of a rollout, a scale and a namespace deletion.
    pub rollout_deadline: Duration,
    /// How long a namespace is kept if the run dies (the sweeper's expiry).
    pub lifetime: Duration,
    pub target_name: String,
    pub version: String,
    pub profile: meshcert_mesh::Profile,
    /// After a deploy or scale, send requests until every ready backend has answered each
    /// client (ztunnel learns endpoints over xDS, after the rollout); off in mock tests.
    pub settle: bool,
}

impl KubeOptions {
    pub fn capabilities(&self) -> Vec<Capability> {
        cluster_capabilities(self.allow_faults)
    }
}

/// What a cluster offers: scale, logs and metrics always; faults only when allowed. Not
/// topologies (its nodes are its own) nor app faults (the app image cannot be told to fail).
pub fn cluster_capabilities(allow_faults: bool) -> Vec<Capability> {
    let mut caps = vec![
        Capability::Scale,
        Capability::ZtunnelLogs,
        Capability::ZtunnelMetrics,
    ];
    if allow_faults {
        caps.push(Capability::NetworkFaults);
    }
    caps.sort();
    caps
}

const POLL: Duration = Duration::from_millis(500);
const EXEC_DEADLINE: Duration = Duration::from_secs(30);
const REQUESTS_SLACK: Duration = Duration::from_secs(10);
const MAX_REQUESTS: u32 = 10_000;

#[derive(Debug, Clone)]
struct KubeFault {
    handle: FaultHandle,
    /// The pod's run namespace and name.
    namespace: String,
    pod: String,
    container: String,
    rule: Vec<String>,
}

/// One scenario's objects in a real cluster.
pub struct KubeMesh {
    client: Client,
    exec: Arc<dyn PodExec>,
    options: KubeOptions,
    target: TargetInfo,
    names: RunNamespaces,
    created: Instant,
    created_wall: SystemTime,
    /// Run namespaces this mesh applied, in order.
    namespaces: Vec<String>,
    /// Fixture namespaces seen (for URL rewriting).
    fixtures: Vec<String>,
    deployments: BTreeSet<DeploymentRef>,
    /// Deployments with no container port: the clients.
    clients: BTreeSet<DeploymentRef>,
    /// Services of the fixtures: (fixture namespace, name, first port, selector).
    services: Vec<(String, String, i32, String)>,
    faults: BTreeMap<u64, KubeFault>,
    next_fault: u64,
    torn_down: bool,
}

impl std::fmt::Debug for KubeMesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeMesh")
            .field("namespaces", &self.namespaces)
            .finish_non_exhaustive()
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl KubeMesh {
    pub fn new(client: Client, exec: Arc<dyn PodExec>, options: KubeOptions) -> KubeMesh {
        let names = RunNamespaces {
            run: options.run.clone(),
            mesh: options.mesh,
            expires_at: unix_now() + options.lifetime.as_secs(),
        };
        let target = TargetInfo {
            kind: "kube".into(),
            name: options.target_name.clone(),
            version: options.version.clone(),
            profile: options.profile,
            capabilities: options.capabilities(),
        };
        KubeMesh {
            client,
            exec,
            options,
            target,
            names,
            created: Instant::now(),
            created_wall: SystemTime::now(),
            namespaces: Vec::new(),
            fixtures: Vec::new(),
            deployments: BTreeSet::new(),
            clients: BTreeSet::new(),
            services: Vec::new(),
            faults: BTreeMap::new(),
            next_fault: 1,
            torn_down: false,
        }
    }

    /// The run namespaces this mesh created.
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }

    fn check_live(&self) -> Result<(), MeshError> {
        if self.torn_down {
            return Err(MeshError::InvalidRequest(
                "this kube mesh was torn down; create a new one".into(),
            ));
        }
        Ok(())
    }

    fn deployment_api(&self, deployment: &DeploymentRef) -> (Api<Deployment>, String) {
        let ns = self.names.map(&deployment.namespace);
        (Api::namespaced(self.client.clone(), &ns), ns)
    }

    /// Pods of a deployment that are not being deleted, sorted by name.
    async fn live_pods(&self, deployment: &DeploymentRef) -> Result<Vec<Pod>, MeshError> {
        let (api, ns) = self.deployment_api(deployment);
        let what = format!("get Deployment {ns}/{}", deployment.name);
        let object = api
            .get(&deployment.name)
            .await
            .map_err(|e| api_error(&what, e))?;
        let selector = object
            .spec
            .as_ref()
            .and_then(|s| s.selector.match_labels.as_ref())
            .map(|labels| {
                labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let mut list = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| api_error(&format!("list pods of {ns}/{}", deployment.name), e))?
            .items;
        list.retain(|p| p.metadata.deletion_timestamp.is_none());
        list.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        Ok(list)
    }

    /// Waits until the deployment has exactly its replicas, all updated and ready, and no
    /// other pod of it is left.
    async fn wait_rollout(&self, deployment: &DeploymentRef) -> Result<(), MeshError> {
        let what = format!("rollout of Deployment {}", deployment);
        eventually(&what, self.options.rollout_deadline, POLL, || async move {
            let (api, _) = self.deployment_api(deployment);
            let object = match api.get(&deployment.name).await {
                Ok(o) => o,
                Err(e) => return Probe::Failed(api_error(&format!("get {deployment}"), e)),
            };
            let want = object.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let generation = object.metadata.generation.unwrap_or(0);
            let status = object.status.unwrap_or_default();
            let observed = status.observed_generation.unwrap_or(0);
            let ready = status.ready_replicas.unwrap_or(0);
            let updated = status.updated_replicas.unwrap_or(0);
            let total = status.replicas.unwrap_or(0);
            if observed < generation || ready != want || updated != want || total != want {
                return Probe::NotYet(format!(
                    "generation {observed}/{generation}, {ready} ready, {updated} updated, \
                     {total} in all, {want} wanted"
                ));
            }
            match self.live_pods(deployment).await {
                Ok(pods) if pods.len() as i32 == want => Probe::Ready(()),
                Ok(pods) => Probe::NotYet(format!("{} pods, {want} wanted", pods.len())),
                Err(e) => Probe::Failed(e),
            }
        })
        .await
    }

    fn pod_info(&self, deployment: &DeploymentRef, pod: &Pod) -> PodInfo {
        let status = pod.status.clone().unwrap_or_default();
        PodInfo {
            namespace: deployment.namespace.clone(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            ip: status
                .pod_ip
                .as_deref()
                .and_then(|ip| ip.parse().ok())
                .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0])),
            node: pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default(),
            ready: status
                .conditions
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True"),
        }
    }

    /// The client deployment's first pod: (run namespace, pod name, node).
    async fn client_pod(
        &self,
        client: &DeploymentRef,
    ) -> Result<(String, String, String), MeshError> {
        let pods = self.live_pods(client).await?;
        let pod = pods.first().ok_or_else(|| {
            MeshError::InvalidRequest(format!("client {client} has no running pod"))
        })?;
        let info = self.pod_info(client, pod);
        Ok((self.names.map(&client.namespace), info.name, info.node))
    }

    /// The ztunnel pod on the client's node: the one that proxies the client's connections.
    async fn ztunnel_pod(&self) -> Result<String, MeshError> {
        let client = self
            .clients
            .iter()
            .next()
            .cloned()
            .ok_or_else(|| MeshError::InvalidRequest("no client is deployed yet".into()))?;
        let (_, _, node) = self.client_pod(&client).await?;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), crate::preflight::ISTIO_SYSTEM);
        let list = pods
            .list(&ListParams::default().labels("app=ztunnel"))
            .await
            .map_err(|e| api_error("list ztunnel pods in istio-system", e))?;
        list.items
            .iter()
            .find(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node.as_str()))
            .and_then(|p| p.metadata.name.clone())
            .ok_or_else(|| {
                MeshError::Environment(format!(
                    "no ztunnel pod (app=ztunnel in istio-system) on node {node:?}"
                ))
            })
    }

    async fn run_in_pod(
        &self,
        namespace: &str,
        pod: &str,
        container: Option<&str>,
        command: Vec<String>,
    ) -> Result<String, MeshError> {
        let out = self
            .exec
            .exec(namespace, pod, container, &command, EXEC_DEADLINE)
            .await?;
        if !out.success {
            return Err(MeshError::Kube(format!(
                "`{}` in pod {namespace}/{pod} failed ({}): {}",
                command.join(" "),
                out.status,
                out.stderr.trim()
            )));
        }
        Ok(out.stdout)
    }

    /// Adds a NET_ADMIN debug container sharing the pod's network namespace, and waits until
    /// it runs.
    async fn debug_container(
        &self,
        namespace: &str,
        pod: &str,
        target: &str,
        name: &str,
    ) -> Result<(), MeshError> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let patch = faults::debug_container_patch(name, &self.options.fault_image, target);
        pods.patch_subresource(
            "ephemeralcontainers",
            pod,
            &PatchParams::default(),
            &Patch::Strategic(patch),
        )
        .await
        .map_err(|e| api_error(&format!("add debug container to pod {namespace}/{pod}"), e))?;
        let what = format!("debug container {name} in pod {namespace}/{pod} to run");
        eventually(&what, self.options.rollout_deadline, POLL, || {
            let pods = pods.clone();
            async move {
                let pod = match pods.get(pod).await {
                    Ok(p) => p,
                    Err(e) => return Probe::Failed(api_error("get pod", e)),
                };
                let state = pod
                    .status
                    .and_then(|s| s.ephemeral_container_statuses)
                    .unwrap_or_default()
                    .into_iter()
                    .find(|c| c.name == name)
                    .and_then(|c| c.state);
                match state {
                    Some(s) if s.running.is_some() => Probe::Ready(()),
                    Some(s) if s.terminated.is_some() => Probe::Failed(MeshError::Kube(format!(
                        "debug container {name} exited: {:?} (does image {} have sleep?)",
                        s.terminated.and_then(|t| t.reason),
                        self.options.fault_image
                    ))),
                    other => Probe::NotYet(format!("{other:?}")),
                }
            }
        })
        .await
    }

    /// Sends requests from every client to every Service until each ready pod behind it has
    /// answered and no other pod has, within the rollout deadline: a scenario's first batch
    /// must not race ztunnel learning the new endpoints.
    async fn settle(&self) -> Result<(), MeshError> {
        if !self.options.settle {
            return Ok(());
        }
        // One deadline for every Service, stretched as `eventually` stretches its own.
        let limit = time_scale().apply(self.options.rollout_deadline);
        let deadline = Instant::now() + limit;
        for client in &self.clients {
            for (fixture_ns, name, port, selector) in &self.services {
                let ns = self.names.map(fixture_ns);
                let pods: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
                let url = format!("http://{name}.{ns}:{port}/hostname");
                loop {
                    let list = pods
                        .list(&ListParams::default().labels(selector))
                        .await
                        .map_err(|e| api_error(&format!("list pods of Service {ns}/{name}"), e))?;
                    let ready: BTreeSet<String> = list
                        .items
                        .iter()
                        .filter(|p| p.metadata.deletion_timestamp.is_none())
                        .map(|p| self.pod_info(client, p))
                        .filter(|p| p.ready)
                        .map(|p| p.name)
                        .collect();
                    if ready.is_empty() {
                        break;
                    }
                    let (cns, cpod, _) = self.client_pod(client).await?;
                    let count = 2 * ready.len() as u32;
                    let script = curl::script(&url, count, Duration::ZERO, Duration::from_secs(2));
                    let bound = Duration::from_secs(2) * count + REQUESTS_SLACK;
                    let out = self
                        .exec
                        .exec(
                            &cns,
                            &cpod,
                            None,
                            &["sh".into(), "-c".into(), script],
                            bound,
                        )
                        .await?;
                    let answered: BTreeSet<String> =
                        curl::parse(&out.stdout, Duration::ZERO, Duration::ZERO)
                            .map_err(MeshError::Kube)?
                            .iter()
                            .filter_map(|r| r.replica().map(str::to_string))
                            .collect();
                    if answered == ready {
                        break;
                    }
                    let last = format!("answered by {answered:?}, ready: {ready:?}");
                    if Instant::now() >= deadline {
                        return Err(MeshError::Timeout {
                            what: format!(
                                "every ready pod of Service {ns}/{name} to answer client {client}"
                            ),
                            waited: limit,
                            last,
                        });
                    }
                    tokio::time::sleep(POLL).await;
                }
            }
        }
        Ok(())
    }

    async fn apply(&mut self, applied: &names::Applied) -> Result<(), MeshError> {
        let api: Api<DynamicObject> = match &applied.namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &applied.resource),
            None => Api::all_with(self.client.clone(), &applied.resource),
        };
        let params = PatchParams::apply(names::FIELD_MANAGER).force();
        api.patch(&applied.name, &params, &Patch::Apply(&applied.body))
            .await
            .map_err(|e| api_error(&format!("apply {}", applied.describe()), e))?;
        if applied.resource.kind == "Namespace" && !self.namespaces.contains(&applied.name) {
            crate::register(&self.client, &applied.name);
            self.namespaces.push(applied.name.clone());
        }
        Ok(())
    }
}

#[async_trait]
impl MeshUnderTest for KubeMesh {
    fn target(&self) -> &TargetInfo {
        &self.target
    }

    fn elapsed(&self) -> Duration {
        self.created.elapsed()
    }

    async fn deploy(&mut self, manifests: &ManifestSet) -> Result<(), MeshError> {
        self.check_live()?;
        let applied = names::localize(manifests, &self.names, self.options.allow_node_labels)?;
        for namespace in manifests.namespaces() {
            if let Some(name) = &namespace.metadata.name
                && !self.fixtures.contains(name)
            {
                self.fixtures.push(name.clone());
            }
        }
        // Objects outside the run's namespaces would not be cleaned up: refuse them.
        for a in &applied {
            if let Some(ns) = &a.namespace
                && self
                    .names
                    .unmap(ns)
                    .is_some_and(|f| !self.fixtures.contains(&f.to_string()))
            {
                return Err(MeshError::InvalidRequest(format!(
                    "{}: its namespace {:?} is not created by these manifests; add its Namespace",
                    a.describe(),
                    self.names.unmap(ns).unwrap_or(ns)
                )));
            }
        }
        for a in &applied {
            self.apply(a).await?;
        }
        for d in manifests.deployments() {
            let dref = meshcert_mesh::manifest::deployment_ref(d);
            self.wait_rollout(&dref).await?;
            if meshcert_mesh::manifest::is_client(d) {
                self.clients.insert(dref.clone());
            }
            self.deployments.insert(dref);
        }
        for svc in manifests.services() {
            let spec = svc.spec.clone().unwrap_or_default();
            let (Some(port), Some(selector)) = (
                spec.ports.and_then(|p| p.first().map(|p| p.port)),
                spec.selector,
            ) else {
                continue;
            };
            let selector = selector
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            let key = (
                svc.metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| meshcert_mesh::manifest::DEFAULT_NAMESPACE.into()),
                svc.metadata.name.clone().unwrap_or_default(),
            );
            self.services
                .retain(|(ns, name, _, _)| (ns, name) != (&key.0, &key.1));
            self.services.push((key.0, key.1, port, selector));
        }
        self.settle().await
    }

    async fn scale(&mut self, deployment: &DeploymentRef, replicas: u32) -> Result<(), MeshError> {
        self.check_live()?;
        if !self.deployments.contains(deployment) {
            return Err(MeshError::InvalidRequest(format!(
                "cannot scale {deployment}: it was not deployed by this scenario"
            )));
        }
        let (api, ns) = self.deployment_api(deployment);
        api.patch_scale(
            &deployment.name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": replicas}})),
        )
        .await
        .map_err(|e| api_error(&format!("scale Deployment {ns}/{}", deployment.name), e))?;
        self.wait_rollout(deployment).await?;
        self.settle().await
    }

    async fn pods(&self, deployment: &DeploymentRef) -> Result<Vec<PodInfo>, MeshError> {
        Ok(self
            .live_pods(deployment)
            .await?
            .iter()
            .map(|p| self.pod_info(deployment, p))
            .collect())
    }

    async fn send_requests(&mut self, plan: &RequestPlan) -> Result<Vec<RequestRecord>, MeshError> {
        self.check_live()?;
        if plan.count == 0 || plan.count > MAX_REQUESTS {
            return Err(MeshError::InvalidRequest(format!(
                "request count {} is outside 1..={MAX_REQUESTS}",
                plan.count
            )));
        }
        let (namespace, pod, _) = self.client_pod(&plan.client).await?;
        let url = self.names.rewrite_url(&plan.url, &self.fixtures);
        let script = curl::script(&url, plan.count, plan.interval, plan.timeout);
        let bound = (plan.timeout + plan.interval) * plan.count + REQUESTS_SLACK;
        let started = self.elapsed();
        let out = self
            .exec
            .exec(
                &namespace,
                &pod,
                None,
                &["sh".to_string(), "-c".to_string(), script],
                bound,
            )
            .await?;
        curl::parse(&out.stdout, started, plan.interval).map_err(|e| {
            MeshError::Kube(format!(
                "requests from pod {namespace}/{pod}: {e} (stderr: {})",
                out.stderr.trim()
            ))
        })
    }

    async fn inject(&mut self, fault: &Fault) -> Result<FaultHandle, MeshError> {
        self.check_live()?;
        if !self.options.allow_faults {
            return Err(MeshError::Unsupported {
                what: format!("fault {} on pod {}", fault.kind, fault.pod),
                reason: "faults in a real cluster need --allow-faults".into(),
            });
        }
        let rule = faults::rule(&fault.kind).ok_or_else(|| MeshError::Unsupported {
            what: fault.kind.to_string(),
            reason: match fault.kind {
                FaultKind::NotReady => {
                    "the cluster's app image cannot be told to fail its readiness probe alone"
                }
                FaultKind::ProcessKill => {
                    "the kube driver does not kill a cluster's processes (the kubelet would \
                     restart the container on its own schedule)"
                }
                _ => "the cluster's app image cannot be told to answer a chosen status",
            }
            .into(),
        })?;
        let namespace = self.names.map(&fault.pod.namespace);
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let pod = pods
            .get(&fault.pod.name)
            .await
            .map_err(|e| api_error(&format!("get pod {namespace}/{}", fault.pod.name), e))?;
        let target = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .map(|c| c.name.clone())
            .unwrap_or_default();
        let id = self.next_fault;
        self.next_fault += 1;
        let container = format!("meshcert-fault-{id}");
        self.debug_container(&namespace, &fault.pod.name, &target, &container)
            .await?;
        let mut fault_state = KubeFault {
            handle: FaultHandle {
                id,
                fault: fault.clone(),
                injected_at: Duration::ZERO,
                requested_at: self.elapsed(),
            },
            namespace: namespace.clone(),
            pod: fault.pod.name.clone(),
            container: container.clone(),
            rule: rule.clone(),
        };
        // Recorded before the rule goes in, so teardown removes a half-applied fault too.
        self.faults.insert(id, fault_state.clone());
        self.run_in_pod(
            &namespace,
            &fault.pod.name,
            Some(&container),
            faults::command("-A", &rule),
        )
        .await?;
        let listing = self
            .run_in_pod(
                &namespace,
                &fault.pod.name,
                Some(&container),
                faults::list_command(),
            )
            .await?;
        faults::check_readback(&listing, &rule, true, &fault.pod.to_string())?;
        fault_state.handle.injected_at = self.elapsed();
        self.faults.insert(id, fault_state.clone());
        Ok(fault_state.handle)
    }

    async fn undo(&mut self, handle: &FaultHandle) -> Result<(), MeshError> {
        let Some(f) = self.faults.get(&handle.id).cloned() else {
            return Ok(());
        };
        let iptables = |command| self.run_in_pod(&f.namespace, &f.pod, Some(&f.container), command);
        if faults::listed(&iptables(faults::list_command()).await?, &f.rule) {
            iptables(faults::command("-D", &f.rule)).await?;
            let listing = iptables(faults::list_command()).await?;
            faults::check_readback(
                &listing,
                &f.rule,
                false,
                &format!("{}/{}", f.namespace, f.pod),
            )?;
        }
        self.faults.remove(&handle.id);
        Ok(())
    }

    async fn ztunnel_logs(&self) -> Result<Vec<LogLine>, MeshError> {
        let name = self.ztunnel_pod().await?;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), crate::preflight::ISTIO_SYSTEM);
        let since = self.created.elapsed().as_secs() as i64 + 1;
        let text = pods
            .logs(
                &name,
                &LogParams {
                    since_seconds: Some(since),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| api_error(&format!("logs of istio-system/{name}"), e))?;
        let created = self
            .created_wall
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut lines = Vec::new();
        for raw in text.lines().filter(|l| !l.trim().is_empty()) {
            let Ok(mut line) = logs::parse_line(raw) else {
                continue;
            };
            // The line's own timestamp on the mesh clock; lines from before the mesh are
            // another scenario's.
            let written = line
                .timestamp
                .as_deref()
                .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
                .map(|t| Duration::from_nanos(t.as_nanosecond().max(0) as u64));
            match written {
                Some(at) if at < created => continue,
                Some(at) => line.observed_at = at - created,
                None => line.observed_at = self.elapsed(),
            }
            lines.push(line);
        }
        Ok(lines)
    }

    async fn metrics(&self) -> Result<Vec<MetricSample>, MeshError> {
        let name = self.ztunnel_pod().await?;
        let path = format!(
            "/api/v1/namespaces/{}/pods/{name}:15020/proxy/metrics",
            crate::preflight::ISTIO_SYSTEM
        );
        let request = http::Request::get(&path)
            .body(Vec::new())
            .map_err(|e| MeshError::Kube(format!("GET {path}: {e}")))?;
        let text = self
            .client
            .request_text(request)
            .await
            .map_err(|e| api_error(&format!("GET {path}"), e))?;
        metrics::parse_prometheus(&text).map_err(|e| MeshError::Ztunnel(e.to_string()))
    }

    async fn teardown(&mut self) -> Result<(), MeshError> {
        if self.torn_down {
            return Ok(());
        }
        self.torn_down = true;
        let mut problems = Vec::new();
        let handles: Vec<FaultHandle> = self.faults.values().map(|f| f.handle.clone()).collect();
        for handle in handles {
            if let Err(e) = self.undo(&handle).await {
                problems.push(e.to_string());
            }
        }
        let api: Api<Namespace> = Api::all(self.client.clone());
        for ns in self.namespaces.clone() {
            match api.delete(&ns, &DeleteParams::foreground()).await {
                Ok(_) => {}
                Err(e) if status_code(&e) == Some(404) => {}
                Err(e) => {
                    problems.push(api_error(&format!("delete namespace {ns}"), e).to_string());
                    continue;
                }
            }
            let what = format!("namespace {ns} to be deleted");
            let gone = eventually(&what, self.options.rollout_deadline, POLL, || {
                let api = api.clone();
                let ns = ns.clone();
                async move {
                    match api.get_opt(&ns).await {
                        Ok(None) => Probe::Ready(()),
                        Ok(Some(_)) => Probe::NotYet("still terminating".into()),
                        Err(e) => Probe::Failed(api_error(&format!("get namespace {ns}"), e)),
                    }
                }
            })
            .await;
            match gone {
                Ok(()) => crate::deregister(&ns),
                Err(e) => problems.push(e.to_string()),
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(MeshError::Kube(format!(
                "teardown left work undone: {}",
                problems.join("; ")
            )))
        }
    }
}

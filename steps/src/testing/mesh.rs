//! `InMemoryMesh`: the weakest `MeshUnderTest` that lets a step run. Deployments become pods
//! with names, IPs and nodes; requests are answered by a picker the test chooses, on a fake
//! clock that advances by the plan's interval (nothing sleeps); faults are kept and honoured in
//! the simplest way; logs and metrics are what the test scripted. It judges nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use meshcert_mesh::manifest::{DEFAULT_NAMESPACE, ManifestSet, deployment_ref};
use meshcert_mesh::topology::HOSTNAME_LABEL;
use meshcert_mesh::{
    Capability, DeploymentRef, Fault, FaultHandle, FaultKind, MeshError, MeshUnderTest, PodInfo,
    Profile, RequestFailure, RequestOutcome, RequestPlan, RequestRecord, TargetInfo,
};
use meshcert_model::{LogLine, MetricSample};

/// Which backend pod answers each request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Picker {
    /// In turn over the backend pods that no iptables fault or killed app silences.
    RoundRobin,
    /// These pods, by name, in turn and cycling, faults or not: a silenced one fails.
    Sequence(Vec<String>),
}

/// A Deployment as the fake cluster holds it.
#[derive(Debug, Clone)]
struct Workload {
    /// The pod template's labels, which Service selectors match.
    labels: BTreeMap<String, String>,
    node: String,
    service_account: String,
    pods: Vec<PodInfo>,
    /// The next pod's number within the deployment: pods are `<deployment>-<n>`.
    next_pod: u32,
}

/// A Service: its selector and the port its pods listen on.
#[derive(Debug, Clone)]
struct Backend {
    selector: BTreeMap<String, String>,
    target_port: u16,
}

/// The node a pod runs on when its Deployment pins it nowhere.
const DEFAULT_NODE: &str = "node-1";
/// The first client port of a connection; each connection takes the next.
const FIRST_CLIENT_PORT: u32 = 40000;

/// A deterministic fake cluster. Build it over defaults and hand copies out through
/// [`crate::testing::InMemorySource`].
#[derive(Debug, Clone)]
pub struct InMemoryMesh {
    target: TargetInfo,
    clock: Duration,
    latency: Duration,
    picker: Picker,
    /// Indexes of each plan's requests that time out whatever the picker says.
    failing: BTreeSet<u32>,
    access_log: bool,
    log_lines: Vec<LogLine>,
    metrics: Vec<MetricSample>,
    workloads: BTreeMap<DeploymentRef, Workload>,
    services: BTreeMap<(String, String), Backend>,
    faults: Vec<FaultHandle>,
    next_fault: u64,
    /// Pods made so far, which numbers their IPs.
    pods_made: u32,
    picks: usize,
    connections: u32,
}

impl Default for InMemoryMesh {
    fn default() -> Self {
        Self {
            target: TargetInfo {
                kind: "in-memory".into(),
                name: "meshcert in-memory mesh".into(),
                version: "0".into(),
                profile: Profile::Solo,
                capabilities: Capability::LOCAL.to_vec(),
            },
            clock: Duration::ZERO,
            latency: Duration::from_millis(1),
            picker: Picker::RoundRobin,
            failing: BTreeSet::new(),
            access_log: false,
            log_lines: Vec::new(),
            metrics: Vec::new(),
            workloads: BTreeMap::new(),
            services: BTreeMap::new(),
            faults: Vec::new(),
            next_fault: 1,
            pods_made: 0,
            picks: 0,
            connections: 0,
        }
    }
}

impl InMemoryMesh {
    /// Profile solo, every local capability, round robin, 1 ms per request, no logs.
    pub fn new() -> Self {
        Self::default()
    }

    pub fn profile(mut self, profile: Profile) -> Self {
        self.target.profile = profile;
        self
    }

    pub fn capabilities(mut self, capabilities: Vec<Capability>) -> Self {
        self.target.capabilities = capabilities;
        self
    }

    pub fn picking(mut self, picker: Picker) -> Self {
        self.picker = picker;
        self
    }

    /// These request indexes (of every plan) time out.
    pub fn failing(mut self, indexes: impl IntoIterator<Item = u32>) -> Self {
        self.failing = indexes.into_iter().collect();
        self
    }

    /// Writes a ztunnel-like `connection complete` access line for every answered request.
    pub fn with_access_log(mut self) -> Self {
        self.access_log = true;
        self
    }

    /// Log lines `ztunnel_logs` returns (after any access lines).
    pub fn log_lines(mut self, lines: Vec<LogLine>) -> Self {
        self.log_lines = lines;
        self
    }

    pub fn metrics(mut self, samples: Vec<MetricSample>) -> Self {
        self.metrics = samples;
        self
    }

    /// Faults in force now.
    pub fn faults(&self) -> &[FaultHandle] {
        &self.faults
    }

    fn apply_service(&mut self, service: &Service) {
        let namespace = namespace_of(service.metadata.namespace.as_deref());
        let spec = service.spec.clone().unwrap_or_default();
        let port = spec.ports.unwrap_or_default().into_iter().next();
        let target_port = port
            .map(|p| match p.target_port {
                Some(IntOrString::Int(n)) => n as u16,
                _ => p.port as u16,
            })
            .unwrap_or(80);
        let name = service.metadata.name.clone().unwrap_or_default();
        let backend = Backend {
            selector: spec.selector.unwrap_or_default(),
            target_port,
        };
        self.services.insert((namespace, name), backend);
    }

    fn apply_deployment(&mut self, deployment: &Deployment) {
        let dref = deployment_ref(deployment);
        let spec = deployment.spec.clone().unwrap_or_default();
        let pod_spec = spec.template.spec.clone().unwrap_or_default();
        let node = pod_spec
            .node_selector
            .and_then(|s| s.get(HOSTNAME_LABEL).cloned())
            .or(pod_spec.node_name)
            .unwrap_or_else(|| DEFAULT_NODE.into());
        let workload = self
            .workloads
            .entry(dref.clone())
            .or_insert_with(|| Workload {
                labels: BTreeMap::new(),
                node: node.clone(),
                service_account: String::new(),
                pods: Vec::new(),
                next_pod: 0,
            });
        workload.labels = spec
            .template
            .metadata
            .and_then(|m| m.labels)
            .unwrap_or_default();
        workload.service_account = pod_spec
            .service_account_name
            .unwrap_or_else(|| "default".into());
        workload.node = node.clone();
        for pod in &mut workload.pods {
            pod.node = node.clone();
        }
        self.resize(&dref, spec.replicas.unwrap_or(1).max(0) as u32);
    }

    /// Adds pods (new names, new IPs) or removes the newest until there are `replicas`.
    fn resize(&mut self, dref: &DeploymentRef, replicas: u32) {
        let Some(workload) = self.workloads.get_mut(dref) else {
            return;
        };
        workload.pods.truncate(replicas as usize);
        while workload.pods.len() < replicas as usize {
            self.pods_made += 1;
            let n = self.pods_made + 9;
            workload.pods.push(PodInfo {
                namespace: dref.namespace.clone(),
                name: format!("{}-{}", dref.name, workload.next_pod),
                ip: IpAddr::V4(Ipv4Addr::new(10, 244, (n / 256) as u8, (n % 256) as u8)),
                node: workload.node.clone(),
                ready: true,
            });
            workload.next_pod += 1;
        }
        workload.pods.sort_by(|a, b| a.name.cmp(&b.name));
    }

    /// The Service a URL names (`http://<service>[.<namespace>...]:<port>/...`), and the pods
    /// its selector picks.
    fn backends(&self, namespace: &str, url: &str) -> Option<(&Backend, Vec<&PodInfo>)> {
        let host = url.split("://").nth(1)?.split(['/', ':']).next()?;
        let mut parts = host.split('.');
        let name = parts.next()?.to_string();
        let namespace = parts.next().unwrap_or(namespace).to_string();
        let backend = self.services.get(&(namespace.clone(), name))?;
        let pods = self
            .workloads
            .iter()
            .filter(|(d, w)| {
                d.namespace == namespace
                    && !backend.selector.is_empty()
                    && backend
                        .selector
                        .iter()
                        .all(|(k, v)| w.labels.get(k) == Some(v))
            })
            .flat_map(|(_, w)| &w.pods)
            .collect();
        Some((backend, pods))
    }

    /// The fault that keeps a pod from answering (iptables, a killed app), if any.
    fn silencing(&self, pod: &PodInfo) -> Option<&FaultKind> {
        self.faults
            .iter()
            .filter(|f| f.fault.pod == pod.pod_ref())
            .map(|f| &f.fault.kind)
            .find(|k| {
                matches!(
                    k,
                    FaultKind::IptablesDrop { .. }
                        | FaultKind::IptablesReject { .. }
                        | FaultKind::ProcessKill
                )
            })
    }

    fn http_status(&self, pod: &PodInfo) -> u16 {
        self.faults
            .iter()
            .filter(|f| f.fault.pod == pod.pod_ref())
            .find_map(|f| match f.fault.kind {
                FaultKind::HttpStatus { status } => Some(status),
                _ => None,
            })
            .unwrap_or(200)
    }

    /// The pod the picker chooses among `backends`, or why none answers.
    fn pick<'a>(&mut self, backends: &[&'a PodInfo]) -> Result<&'a PodInfo, RequestFailure> {
        let turn = self.picks;
        self.picks += 1;
        match &self.picker {
            Picker::RoundRobin => {
                let live: Vec<&PodInfo> = backends
                    .iter()
                    .copied()
                    .filter(|p| self.silencing(p).is_none())
                    .collect();
                if live.is_empty() {
                    return Err(RequestFailure::ConnectionRefused);
                }
                Ok(live[turn % live.len()])
            }
            Picker::Sequence(names) if names.is_empty() => Err(RequestFailure::EmptyReply),
            Picker::Sequence(names) => {
                let name = &names[turn % names.len()];
                backends
                    .iter()
                    .copied()
                    .find(|p| p.name == *name)
                    .ok_or_else(|| RequestFailure::Other(format!("no backend pod {name}")))
            }
        }
    }

    /// How one request to `pod` ends, and how long it takes.
    fn answer(&self, pod: &PodInfo, plan: &RequestPlan) -> (RequestOutcome, Duration) {
        let failed = |failure| RequestOutcome::Failed { failure };
        match self.silencing(pod) {
            Some(FaultKind::IptablesDrop { .. }) => (failed(RequestFailure::Timeout), plan.timeout),
            Some(_) => (failed(RequestFailure::ConnectionRefused), self.latency),
            None => (
                RequestOutcome::Answered {
                    replica: pod.name.clone(),
                    status: self.http_status(pod),
                },
                self.latency,
            ),
        }
    }

    fn access_line(
        &self,
        client: &Workload,
        source: &str,
        backend: &PodInfo,
        port: u16,
        service: &str,
    ) -> LogLine {
        let client_pod = &client.pods[0];
        let fields: BTreeMap<String, String> = [
            ("src.addr", source.to_string()),
            ("src.workload", client_pod.name.clone()),
            ("src.namespace", client_pod.namespace.clone()),
            (
                "src.identity",
                format!(
                    "spiffe://cluster.local/ns/{}/sa/{}",
                    client_pod.namespace, client.service_account
                ),
            ),
            ("dst.addr", format!("{}:{port}", backend.ip)),
            (
                "dst.service",
                format!("{service}.{}.svc.cluster.local", backend.namespace),
            ),
            ("dst.workload", backend.name.clone()),
            ("dst.namespace", backend.namespace.clone()),
            ("direction", "outbound".into()),
            ("bytes_sent", "84".into()),
            ("bytes_recv", "120".into()),
            ("duration", format!("{}ms", self.latency.as_millis())),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let raw = fields
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        LogLine {
            observed_at: self.clock + self.latency,
            timestamp: None,
            level: "info".into(),
            target: "access".into(),
            message: "connection complete".into(),
            fields,
            raw: format!("info access connection complete {raw}"),
        }
    }

    fn pod_exists(&self, fault: &Fault) -> bool {
        self.workloads
            .values()
            .flat_map(|w| &w.pods)
            .any(|p| p.pod_ref() == fault.pod)
    }
}

fn namespace_of(namespace: Option<&str>) -> String {
    namespace.unwrap_or(DEFAULT_NAMESPACE).to_string()
}

#[async_trait::async_trait]
impl MeshUnderTest for InMemoryMesh {
    fn target(&self) -> &TargetInfo {
        &self.target
    }

    fn elapsed(&self) -> Duration {
        self.clock
    }

    async fn deploy(&mut self, manifests: &ManifestSet) -> Result<(), MeshError> {
        for service in manifests.services() {
            self.apply_service(service);
        }
        for deployment in manifests.deployments() {
            self.apply_deployment(deployment);
        }
        Ok(())
    }

    async fn scale(&mut self, deployment: &DeploymentRef, replicas: u32) -> Result<(), MeshError> {
        if !self.workloads.contains_key(deployment) {
            return Err(MeshError::InvalidRequest(format!(
                "no deployment {deployment} to scale: deploy it first"
            )));
        }
        self.resize(deployment, replicas);
        Ok(())
    }

    async fn pods(&self, deployment: &DeploymentRef) -> Result<Vec<PodInfo>, MeshError> {
        Ok(self
            .workloads
            .get(deployment)
            .map(|w| w.pods.clone())
            .unwrap_or_default())
    }

    async fn send_requests(&mut self, plan: &RequestPlan) -> Result<Vec<RequestRecord>, MeshError> {
        let client = self
            .workloads
            .get(&plan.client)
            .filter(|w| !w.pods.is_empty())
            .cloned()
            .ok_or_else(|| {
                MeshError::InvalidRequest(format!("client {} has no pod", plan.client))
            })?;
        let resolved = self
            .backends(&plan.client.namespace, &plan.url)
            .map(|(b, pods)| (b.target_port, pods.into_iter().cloned().collect::<Vec<_>>()));
        let service = plan.url.split("://").nth(1).unwrap_or_default();
        let service = service
            .split(['.', ':', '/'])
            .next()
            .unwrap_or_default()
            .to_string();
        let mut records = Vec::new();
        for index in 0..plan.count {
            self.connections += 1;
            let source = format!(
                "{}:{}",
                client.pods[0].ip,
                FIRST_CLIENT_PORT + self.connections
            );
            let (outcome, latency) = match &resolved {
                _ if self.failing.contains(&index) => (
                    RequestOutcome::Failed {
                        failure: RequestFailure::Timeout,
                    },
                    plan.timeout,
                ),
                None => (
                    RequestOutcome::Failed {
                        failure: RequestFailure::Other(format!("could not resolve {}", plan.url)),
                    },
                    self.latency,
                ),
                Some((port, pods)) => {
                    let pods: Vec<&PodInfo> = pods.iter().collect();
                    match self.pick(&pods) {
                        Ok(pod) => {
                            let (outcome, latency) = self.answer(pod, plan);
                            if self.access_log && matches!(outcome, RequestOutcome::Answered { .. })
                            {
                                let line = self.access_line(&client, &source, pod, *port, &service);
                                self.log_lines.push(line);
                            }
                            (outcome, latency)
                        }
                        Err(failure) => (RequestOutcome::Failed { failure }, self.latency),
                    }
                }
            };
            records.push(RequestRecord {
                index,
                started_at: self.clock,
                latency,
                source: Some(source),
                outcome,
            });
            self.clock += plan.interval.max(latency);
        }
        Ok(records)
    }

    async fn inject(&mut self, fault: &Fault) -> Result<FaultHandle, MeshError> {
        if !self.pod_exists(fault) {
            return Err(MeshError::InvalidRequest(format!(
                "no pod {} to inject a fault into",
                fault.pod
            )));
        }
        let network = matches!(
            fault.kind,
            FaultKind::IptablesDrop { .. } | FaultKind::IptablesReject { .. }
        );
        if network && !self.target.supports(Capability::NetworkFaults) {
            return Err(MeshError::Unsupported {
                what: format!("fault {}", fault.kind),
                reason: "the in-memory mesh was built without network faults".into(),
            });
        }
        let handle = FaultHandle {
            id: self.next_fault,
            fault: fault.clone(),
            injected_at: self.clock,
            requested_at: self.clock,
        };
        self.next_fault += 1;
        self.faults.push(handle.clone());
        Ok(handle)
    }

    async fn undo(&mut self, handle: &FaultHandle) -> Result<(), MeshError> {
        let index = self
            .faults
            .iter()
            .position(|f| f.id == handle.id)
            .ok_or_else(|| {
                MeshError::InvalidRequest(format!("fault {} is not in force", handle.id))
            })?;
        self.faults.remove(index);
        Ok(())
    }

    async fn ztunnel_logs(&self) -> Result<Vec<LogLine>, MeshError> {
        Ok(self.log_lines.clone())
    }

    async fn metrics(&self) -> Result<Vec<MetricSample>, MeshError> {
        Ok(self.metrics.clone())
    }

    async fn teardown(&mut self) -> Result<(), MeshError> {
        self.workloads.clear();
        self.services.clear();
        self.faults.clear();
        Ok(())
    }
}

//! The cucumber World: a handle on the mesh under test, the scene (which apps, which client),
//! and what the scenario observed. Steps call its methods; it knows no driver.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use meshcert_mesh::manifest::{Manifest, ManifestSet};
use meshcert_mesh::topology::Topology;
use meshcert_mesh::{
    DeploymentRef, Fault, FaultKind, MeshError, MeshUnderTest, PodInfo, RequestPlan, RequestRecord,
};
use meshcert_model::{
    Expectation, FailureEvidence, FaultRecord, LogLine, Observations, RequestBatch,
};

use crate::thresholds::Thresholds;

/// Why a step failed: a sentence for the report.
#[derive(Debug)]
pub struct StepFailure(pub String);

impl fmt::Display for StepFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StepFailure {}

/// How a step failure that only says the target cannot do something starts: the results
/// read it as a skip (with the rest as the reason), never as the mesh's failure.
pub const UNSUPPORTED: &str = "the target cannot do this, so the scenario is skipped: ";

impl From<MeshError> for StepFailure {
    fn from(e: MeshError) -> Self {
        match e {
            MeshError::Unsupported { .. } => StepFailure(format!("{UNSUPPORTED}{e}")),
            e => StepFailure(e.to_string()),
        }
    }
}

/// The reason of a step failure that is a skip (`MeshError::Unsupported`), if it is one.
pub fn unsupported_reason(message: &str) -> Option<&str> {
    message.strip_prefix(UNSUPPORTED)
}

pub type StepResult = Result<(), StepFailure>;

fn namespace_of(deployment: &k8s_openapi::api::apps::v1::Deployment) -> String {
    deployment
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| meshcert_mesh::manifest::DEFAULT_NAMESPACE.into())
}

/// The guide's backend fixture, which also defines the namespace every fixture uses.
const GUIDE_BACKEND: &str = "in-ambient";

/// Fails the step with a formatted message unless the condition holds.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err($crate::world::StepFailure(format!($($msg)+)));
        }
    };
}
pub(crate) use ensure;

/// The apps of the scene: where they live, which deployment is the client, and where nodes,
/// clients and replicas were placed.
#[derive(Debug, Clone, Default)]
pub struct Scene {
    pub namespace: String,
    pub client: Option<DeploymentRef>,
    pub topology: Topology,
    /// Fixture objects loaded so far, as last applied: steps that change a Service change it
    /// here, then re-apply it.
    pub fixtures: ManifestSet,
    loaded: BTreeSet<String>,
}

/// A fault that took a pod down (iptables, a killed app, a failing readiness probe) and is not
/// undone yet.
fn is_block_in_force(fault: &FaultRecord) -> bool {
    fault.undone_at.is_none() && !matches!(fault.handle.fault.kind, FaultKind::HttpStatus { .. })
}

/// Requests per chunk of [`MeshWorld::send_until`]: half a second at the usual 50 ms pace.
pub const UNTIL_CHUNK: u32 = 10;

/// Log lines a failed scenario keeps from the start and from the end of a long log (a runaway
/// ztunnel writes millions).
pub const LOG_HEAD: usize = 200;
pub const LOG_TAIL: usize = 800;

/// The first `head` and last `tail` items, and how many were left out between them.
fn head_and_tail<T>(mut items: Vec<T>, head: usize, tail: usize) -> (Vec<T>, usize) {
    if items.len() <= head + tail {
        return (items, 0);
    }
    let omitted = items.len() - head - tail;
    items.drain(head..head + omitted);
    (items, omitted)
}

/// Where a scenario's meshes come from: the runner's target (a local run or a cluster).
#[async_trait::async_trait]
pub trait MeshSource: Send + Sync {
    /// A new mesh of the target, for one scenario.
    async fn make_mesh(&self) -> Result<Box<dyn MeshUnderTest>, MeshError>;
}

/// What the runner gives each scenario's World before its first step.
#[derive(Clone)]
pub struct WorldConfig {
    /// Where `<name>.yaml` and `topologies/<name>.yaml` are.
    pub fixtures: PathBuf,
    /// The declared thresholds the steps judge with.
    pub thresholds: Arc<Thresholds>,
    pub meshes: Arc<dyn MeshSource>,
}

#[derive(cucumber::World)]
#[world(init = Self::new)]
pub struct MeshWorld {
    /// Set by the runner's `before` hook: cucumber builds a World from no arguments.
    config: Option<WorldConfig>,
    mesh: Option<Box<dyn MeshUnderTest>>,
    pub scene: Scene,
    pub observations: Observations,
}

impl fmt::Debug for MeshWorld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeshWorld")
            .field(
                "target",
                &self.mesh.as_ref().map(|m| m.target().name.clone()),
            )
            .field("scene", &self.scene)
            .field("batches", &self.observations.batches.len())
            .field("faults", &self.observations.faults)
            .finish()
    }
}

impl MeshWorld {
    fn new() -> Self {
        Self {
            config: None,
            mesh: None,
            scene: Scene::default(),
            observations: Observations::default(),
        }
    }

    /// Gives the World what the run decided; the runner calls it before the first step.
    pub fn configure(&mut self, config: WorldConfig) {
        self.config = Some(config);
    }

    fn config(&self) -> Result<&WorldConfig, StepFailure> {
        self.config.as_ref().ok_or_else(|| {
            StepFailure("the World has no configuration: scenarios run only in a suite".into())
        })
    }

    /// The fixtures directory of this run.
    pub fn fixtures_dir(&self) -> Result<&Path, StepFailure> {
        Ok(&self.config()?.fixtures)
    }

    /// The mesh, created on first use by the suite's target.
    pub async fn mesh(&mut self) -> Result<&mut (dyn MeshUnderTest + 'static), StepFailure> {
        if self.mesh.is_none() {
            let meshes = self.config()?.meshes.clone();
            self.mesh = Some(meshes.make_mesh().await?);
        }
        Ok(self.mesh.as_deref_mut().expect("just created"))
    }

    /// Reads what a scenario's end leaves to read, before teardown: the restarts always, the
    /// whole ztunnel log and metrics when it failed.
    pub async fn keep_evidence(&mut self, failed: bool) {
        if !self.scene.topology.nodes.is_empty() {
            self.observations.topology = Some(self.scene.topology.clone());
        }
        let Some(mesh) = self.mesh.as_ref() else {
            return;
        };
        self.observations.restarts = mesh.restarts();
        if !failed {
            return;
        }
        let mut evidence = FailureEvidence::default();
        match mesh.ztunnel_logs().await {
            Ok(lines) => {
                (evidence.ztunnel_log, evidence.omitted_log_lines) =
                    head_and_tail(lines, LOG_HEAD, LOG_TAIL)
            }
            Err(e) => evidence.unavailable.push(format!("ztunnel log: {e}")),
        }
        match mesh.metrics().await {
            Ok(samples) => evidence.metrics = samples,
            Err(e) => evidence.unavailable.push(format!("metrics: {e}")),
        }
        self.observations.failure_evidence = Some(evidence);
    }

    pub async fn teardown(&mut self) -> Result<(), MeshError> {
        match self.mesh.as_mut() {
            Some(mesh) => mesh.teardown().await,
            None => Ok(()),
        }
    }

    /// Applies the fixture files named (`fixtures/<name>.yaml`); a deployment with no container
    /// ports becomes the scene's client.
    pub async fn deploy_fixtures(&mut self, names: &[&str]) -> StepResult {
        let manifests = self.load_fixtures(names)?;
        for deployment in manifests.deployments() {
            let dref = meshcert_mesh::manifest::deployment_ref(deployment);
            self.scene.namespace = dref.namespace.clone();
            if meshcert_mesh::manifest::is_client(deployment) {
                self.scene.client = Some(dref);
            }
        }
        self.mesh().await?.deploy(&manifests).await?;
        Ok(())
    }

    /// Reads `fixtures/<name>.yaml` for each name not read yet; returns the objects of `names`.
    pub fn load_fixtures(&mut self, names: &[&str]) -> Result<ManifestSet, StepFailure> {
        let dir = self.fixtures_dir()?.to_path_buf();
        let paths: Vec<PathBuf> = names
            .iter()
            .map(|n| dir.join(format!("{n}.yaml")))
            .collect();
        let manifests = ManifestSet::load_all(&paths)?;
        for name in names {
            if self.scene.loaded.insert(name.to_string()) {
                let own = ManifestSet::load(&dir.join(format!("{name}.yaml")))?;
                self.scene.fixtures.extend(own);
            }
        }
        Ok(manifests)
    }

    /// Applies the scene's whole topology (idempotent): nodes, the mesh's network, the apps'
    /// namespaces and services, and one pinned Deployment per client and replica.
    pub async fn apply_topology(&mut self) -> StepResult {
        self.scene
            .topology
            .validate()
            .map_err(|e| StepFailure(format!("the scene's topology is not valid: {e}")))?;
        let apps: BTreeSet<String> = self
            .scene
            .topology
            .clients
            .iter()
            .map(|c| c.app.clone())
            .chain(self.scene.topology.replicas.iter().map(|r| r.app.clone()))
            .collect();
        // The guide's namespace is defined in `in-ambient.yaml`; the client fixture relies on it.
        let names: Vec<&str> = std::iter::once(GUIDE_BACKEND)
            .chain(
                apps.iter()
                    .map(String::as_str)
                    .filter(|a| *a != GUIDE_BACKEND),
            )
            .collect();
        self.load_fixtures(&names)?;
        let manifests =
            meshcert_mesh::topology::manifests(&self.scene.topology, &self.scene.fixtures)?;
        let first_client = self
            .scene
            .topology
            .clients
            .first()
            .map(|c| c.deployment_name().to_string());
        for deployment in manifests.deployments() {
            let namespace = namespace_of(deployment);
            if first_client.as_deref() == deployment.metadata.name.as_deref() {
                self.scene.client = Some(DeploymentRef::new(
                    namespace.clone(),
                    first_client.clone().unwrap_or_default(),
                ));
            }
            self.scene.namespace = namespace;
        }
        self.mesh().await?.deploy(&manifests).await?;
        Ok(())
    }

    /// Changes a fixture object (by kind and name) and re-applies it.
    pub async fn change_object(
        &mut self,
        kind: &str,
        name: &str,
        change: impl FnOnce(&mut Manifest) -> Result<(), StepFailure>,
    ) -> StepResult {
        Ok(self.try_change_object(kind, name, change).await??)
    }

    /// Like `change_object`, with the mesh's answer apart from the harness's own errors: the
    /// outer error is the harness's (no such fixture, no mesh), the inner the mesh's refusal.
    pub async fn try_change_object(
        &mut self,
        kind: &str,
        name: &str,
        change: impl FnOnce(&mut Manifest) -> Result<(), StepFailure>,
    ) -> Result<Result<(), MeshError>, StepFailure> {
        let index = self
            .scene
            .fixtures
            .objects
            .iter()
            .position(|o| o.kind() == kind && o.name() == name)
            .ok_or_else(|| {
                StepFailure(format!(
                    "no {kind} {name:?} among the fixtures applied in this scenario"
                ))
            })?;
        let mut changed = self.scene.fixtures.objects[index].clone();
        change(&mut changed)?;
        let set = ManifestSet {
            objects: vec![changed.clone()],
        };
        if let Err(e) = self.mesh().await?.deploy(&set).await {
            return Ok(Err(e));
        }
        self.scene.fixtures.objects[index] = changed;
        Ok(Ok(()))
    }

    pub fn deployment(&self, name: &str) -> DeploymentRef {
        DeploymentRef::new(self.scene.namespace.clone(), name)
    }

    pub fn client(&self) -> Result<DeploymentRef, StepFailure> {
        self.scene.client.clone().ok_or_else(|| {
            StepFailure("no client app is deployed: deploy the guide's apps first".into())
        })
    }

    pub async fn pods(&mut self, deployment: &str) -> Result<Vec<PodInfo>, StepFailure> {
        let deployment = self.deployment(deployment);
        Ok(self.mesh().await?.pods(&deployment).await?)
    }

    /// The pod at `index` of the deployment, as `kubectl get pods` lists them.
    pub async fn pod(&mut self, deployment: &str, index: usize) -> Result<PodInfo, StepFailure> {
        let pods = self.pods(deployment).await?;
        let count = pods.len();
        pods.into_iter().nth(index).ok_or_else(|| {
            StepFailure(format!(
                "{deployment} has {count} pods; there is no pod number {}",
                index + 1
            ))
        })
    }

    pub async fn send(
        &mut self,
        url: &str,
        count: u32,
        interval: Duration,
        timeout: Duration,
    ) -> StepResult {
        let client = self.client()?;
        self.send_from(client, url, count, interval, timeout).await
    }

    pub async fn send_from(
        &mut self,
        client: DeploymentRef,
        url: &str,
        count: u32,
        interval: Duration,
        timeout: Duration,
    ) -> StepResult {
        // A request timeout bounds what counts as an answer, so it stretches with the windows.
        let timeout = self.thresholds()?.time_scale.apply(timeout);
        let plan = RequestPlan {
            client,
            url: url.to_string(),
            count,
            interval,
            timeout,
        };
        let records = self.mesh().await?.send_requests(&plan).await?;
        self.observations
            .batches
            .push(RequestBatch { plan, records });
        Ok(())
    }

    /// Sends up to `count` requests as one batch, in chunks of [`UNTIL_CHUNK`], and stops after
    /// the chunk in which `done` holds for the records so far: a probe whose verdict is decided
    /// by its first hit need not wait out the rest of its window.
    pub async fn send_until(
        &mut self,
        url: &str,
        count: u32,
        interval: Duration,
        timeout: Duration,
        done: impl Fn(&[RequestRecord]) -> bool,
    ) -> StepResult {
        let mut plan = RequestPlan {
            client: self.client()?,
            url: url.to_string(),
            count: 0,
            interval,
            timeout: self.thresholds()?.time_scale.apply(timeout),
        };
        let mut records: Vec<RequestRecord> = Vec::new();
        while plan.count < count && !done(&records) {
            let chunk = RequestPlan {
                count: UNTIL_CHUNK.min(count - plan.count),
                ..plan.clone()
            };
            let answers = self.mesh().await?.send_requests(&chunk).await?;
            // Each chunk numbers its requests from 0; the batch numbers them in order.
            records.extend(answers.into_iter().map(|mut r| {
                r.index += plan.count;
                r
            }));
            plan.count += chunk.count;
        }
        self.observations
            .batches
            .push(RequestBatch { plan, records });
        Ok(())
    }

    /// The requests of the latest batch.
    /// Records that the last batch was expected to be shared evenly by `replicas` (pods);
    /// called by the assertions, before they judge, so a failed one is drawn too.
    pub fn expect_even(&mut self, replicas: Vec<String>, statement: impl Into<String>) {
        let Some(batch) = self.observations.batches.len().checked_sub(1) else {
            return;
        };
        let share = 1.0 / replicas.len().max(1) as f64;
        self.observations.expectations.push(Expectation {
            batch,
            replicas,
            share,
            statement: statement.into(),
        });
    }

    /// The declared thresholds of this run.
    pub fn thresholds(&self) -> Result<Arc<Thresholds>, StepFailure> {
        Ok(self.config()?.thresholds.clone())
    }

    pub fn last_batch(&self) -> Result<&[RequestRecord], StepFailure> {
        self.observations
            .batches
            .last()
            .map(|b| b.records.as_slice())
            .ok_or_else(|| StepFailure("no requests were sent yet".into()))
    }

    pub async fn inject(&mut self, pod: PodInfo, kind: FaultKind) -> StepResult {
        let fault = Fault {
            pod: pod.pod_ref(),
            kind,
        };
        let handle = self.mesh().await?.inject(&fault).await?;
        self.observations.faults.push(FaultRecord {
            handle,
            pod,
            undone_at: None,
        });
        Ok(())
    }

    /// The latest fault that took a pod down (iptables, a killed app, a failing readiness
    /// probe; not an HTTP status), undone or not.
    pub fn network_fault(&self) -> Result<&FaultRecord, StepFailure> {
        self.observations
            .faults
            .iter()
            .rev()
            .find(|f| !matches!(f.handle.fault.kind, FaultKind::HttpStatus { .. }))
            .ok_or_else(|| StepFailure("no pod was blocked or taken down in this scenario".into()))
    }

    pub async fn undo_network_fault(&mut self) -> StepResult {
        let index = self
            .observations
            .faults
            .iter()
            .rposition(is_block_in_force)
            .ok_or_else(|| StepFailure("no block is in force".into()))?;
        self.undo_fault(index).await
    }

    async fn undo_fault(&mut self, index: usize) -> StepResult {
        let handle = self.observations.faults[index].handle.clone();
        let mesh = self.mesh().await?;
        mesh.undo(&handle).await?;
        let at = mesh.elapsed();
        self.observations.faults[index].undone_at = Some(at);
        Ok(())
    }

    /// Undoes every network fault still in force on `pods` (by name).
    pub async fn undo_network_faults_on(&mut self, pods: &[String]) -> StepResult {
        let indexes: Vec<usize> = self
            .observations
            .faults
            .iter()
            .enumerate()
            .filter(|(_, f)| is_block_in_force(f) && pods.contains(&f.pod.name))
            .map(|(i, _)| i)
            .collect();
        ensure!(!indexes.is_empty(), "no block is in force on {pods:?}");
        for index in indexes {
            self.undo_fault(index).await?;
        }
        Ok(())
    }

    pub async fn logs(&mut self) -> Result<Vec<LogLine>, StepFailure> {
        Ok(self.mesh().await?.ztunnel_logs().await?)
    }

    pub fn elapsed(&self) -> Duration {
        self.mesh.as_ref().map(|m| m.elapsed()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_log_keeps_its_head_and_tail() {
        let (kept, omitted) = head_and_tail((0..10).collect(), 2, 3);
        assert_eq!(kept, [0, 1, 7, 8, 9]);
        assert_eq!(omitted, 5);
        let (kept, omitted) = head_and_tail((0..5).collect::<Vec<_>>(), 2, 3);
        assert_eq!((kept.len(), omitted), (5, 0));
    }

    #[test]
    fn only_an_unsupported_request_reads_as_a_skip() {
        let skip = StepFailure::from(MeshError::Unsupported {
            what: "fault readiness probe fails".into(),
            reason: "the kube driver cannot".into(),
        });
        assert_eq!(
            unsupported_reason(&skip.to_string()),
            Some(
                "fault readiness probe fails is not supported by this mesh under test: the kube driver cannot"
            )
        );
        let failure = StepFailure::from(MeshError::Ztunnel("exited".into()));
        assert_eq!(unsupported_reason(&failure.to_string()), None);
    }
}

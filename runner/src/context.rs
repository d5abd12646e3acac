//! The target as one suite run found it (a local run, or a cluster and this run's id there),
//! and the meshes it makes: each World is given this context as its [`MeshSource`].

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use meshcert_kube::{self as mkube, ClusterReport, KubeMesh, KubeOptions};
use meshcert_local::{self as local, ConfigSource, LocalMesh, LocalOptions, Run};
use meshcert_mesh::{MeshError, MeshUnderTest, TargetInfo};
use meshcert_steps::thresholds::Thresholds;
use meshcert_steps::{MeshSource, WorldConfig};
use meshcert_ztunnel::defects::Defects;

use crate::interrupt::{self, Listener};
use crate::suite::SuiteConfig;
use crate::target::{TargetKind, TargetSpec};

/// What the run knows of its target once connected or started.
pub struct Target {
    pub info: TargetInfo,
    /// The report's settings of the target.
    pub settings: BTreeMap<String, String>,
    pub run: Option<Arc<Run>>,
    /// The cluster of a kube target, and this run's id there.
    pub cluster: Option<(kube::Client, String)>,
    /// Why every scenario is skipped, when the target is not there.
    pub unavailable: Option<String>,
}

impl Target {
    /// Connects to a cluster target or starts a local run; an unavailable target starts nothing,
    /// nor does one whose meshes a test gives (`given`: what they declare).
    pub async fn set_up(
        config: &SuiteConfig,
        signals: &Listener,
        given: Option<TargetInfo>,
    ) -> Result<Target, String> {
        let mut target = Target {
            info: config.target.info(),
            settings: config.target.settings(),
            run: None,
            cluster: None,
            unavailable: config.skip_all.clone(),
        };
        if let Some(info) = given {
            target.info = info;
            return Ok(target);
        }
        if target.unavailable.is_none() && config.target.kind == TargetKind::Kube {
            let (client, report) = connect(&config.target).await?;
            println!("meshcert: {report}");
            target.info.version = report.ztunnel_version.clone();
            if !config.target.profile_declared {
                target.info.profile = report.profile;
            }
            target.info.capabilities = kube_capabilities(&config.target);
            target.settings.insert("cluster".into(), report.to_string());
            target.cluster = Some((client, kube_run_id()));
        } else if target.unavailable.is_none() {
            // A local target this machine cannot run is no verdict at all, never a run of
            // skipped scenarios: callers check first (`target::local_machine_check`, exit 4).
            let cannot =
                |reason: String| format!("{} cannot run on this machine: {reason}", config.target);
            local::preflight().map_err(cannot)?;
            target.run = Some(Run::start().map_err(|e| cannot(e.to_string()))?);
        }
        if let Some(reason) = target
            .unavailable
            .as_ref()
            .filter(|_| signals.received().is_none())
        {
            println!(
                "meshcert: {} unavailable, its scenarios are skipped: {reason}",
                config.target
            );
        }
        Ok(target)
    }

    /// Local meshes name pods from the run id; a kube run labels its namespaces with its own.
    pub fn run_id(&self) -> String {
        match (&self.run, &self.cluster) {
            (Some(run), _) => run.id().to_string(),
            (None, Some((_, id))) => id.clone(),
            (None, None) => String::new(),
        }
    }
}

/// What the runner and each scenario's World read while a suite runs.
pub struct SuiteContext {
    config: SuiteConfig,
    target: TargetInfo,
    run: Option<Arc<Run>>,
    cluster: Option<(kube::Client, String)>,
    next_mesh: AtomicU32,
    thresholds: Arc<Thresholds>,
    /// Meshes a test gives instead of the target's.
    given: Option<Arc<dyn MeshSource>>,
}

impl SuiteContext {
    /// Takes the cluster client out of `target`: meshes are made here from now on.
    pub fn new(
        config: SuiteConfig,
        target: &mut Target,
        thresholds: Thresholds,
        given: Option<Arc<dyn MeshSource>>,
    ) -> Self {
        Self {
            given,
            config,
            target: target.info.clone(),
            run: target.run.clone(),
            cluster: target.cluster.take(),
            next_mesh: AtomicU32::new(0),
            thresholds: Arc::new(thresholds),
        }
    }

    /// What each scenario's World is given before its first step.
    pub fn world_config(self: &Arc<Self>) -> WorldConfig {
        WorldConfig {
            fixtures: self.config.fixtures.clone(),
            thresholds: self.thresholds.clone(),
            meshes: self.clone(),
        }
    }

    /// The local run, if the target is local.
    pub fn run(&self) -> Option<&Arc<Run>> {
        self.run.as_ref()
    }

    pub fn fixtures_dir(&self) -> &Path {
        &self.config.fixtures
    }

    /// Whether the target restarts to take a config change (it reads its config file once;
    /// one fed by the control plane never restarts).
    pub fn target_restarts(&self) -> bool {
        let target = &self.config.target;
        target.config_source == ConfigSource::File && !target.reloads_config
    }

    /// A mesh of this run's local target, as a `LocalMesh` (the start probe reads the client
    /// pod's namespace through it).
    pub fn make_local_mesh(&self) -> Result<LocalMesh, MeshError> {
        let run = self
            .run
            .clone()
            .ok_or_else(|| MeshError::Environment("network namespaces are unavailable".into()))?;
        let spec = &self.config.target;
        let work_dir = self.config.out_dir.join("runs").join(run.id());
        let mut options = LocalOptions::new(
            spec.command(),
            &self.target.kind,
            self.target.profile,
            work_dir,
        );
        options.target_name = self.target.name.clone();
        options.version = self.target.version.clone();
        options.capabilities = self.target.capabilities.clone();
        options.ready_deadline = spec.ready_timeout;
        options.config_source = spec.config_source;
        // The control plane is part of the reference mesh: its defect switches act there too.
        options.defects =
            Defects::parse(&spec.defects.join(",")).map_err(MeshError::InvalidRequest)?;
        LocalMesh::new(run, options)
    }

    /// A mesh in this run's cluster, with the next mesh number.
    fn make_kube_mesh(&self, client: &kube::Client, run: &str) -> KubeMesh {
        let spec = &self.config.target;
        let options = KubeOptions {
            run: run.to_string(),
            mesh: self.next_mesh.fetch_add(1, Ordering::Relaxed) + 1,
            allow_faults: spec.cluster.allow_faults,
            allow_node_labels: spec.cluster.allow_node_labels,
            fault_image: spec
                .cluster
                .fault_image
                .clone()
                .unwrap_or_else(|| mkube::faults::DEFAULT_FAULT_IMAGE.into()),
            rollout_deadline: Duration::from_secs(180),
            lifetime: Duration::from_secs(3600),
            target_name: self.target.name.clone(),
            version: self.target.version.clone(),
            profile: self.target.profile,
            settle: true,
        };
        let exec = Arc::new(mkube::KubeExec {
            client: client.clone(),
        });
        KubeMesh::new(client.clone(), exec, options)
    }
}

#[async_trait::async_trait]
impl MeshSource for SuiteContext {
    async fn make_mesh(&self) -> Result<Box<dyn MeshUnderTest>, MeshError> {
        if let Some(signal) = interrupt::received() {
            return Err(MeshError::Environment(format!(
                "no new mesh: meshcert is closing ({})",
                signal.name()
            )));
        }
        if let Some(given) = &self.given {
            return given.make_mesh().await;
        }
        if let Some((client, run)) = &self.cluster {
            return Ok(Box::new(self.make_kube_mesh(client, run)));
        }
        Ok(Box::new(self.make_local_mesh()?))
    }
}

/// A client for the target's cluster and what the cluster has; one-line errors for no
/// kubeconfig, an unreachable API server, missing RBAC and no ztunnel.
async fn connect(spec: &TargetSpec) -> Result<(kube::Client, ClusterReport), String> {
    let path = mkube::kubeconfig_path(spec.cluster.kubeconfig.as_deref()).ok_or(
        "no kubeconfig: KUBECONFIG is not set and ~/.kube/config does not exist (or pass --kubeconfig)",
    )?;
    let (client, url) = mkube::client(&path, spec.cluster.context.as_deref())
        .await
        .map_err(|e| e.to_string())?;
    let report = mkube::preflight(&client)
        .await
        .map_err(|e| format!("API server {url} (kubeconfig {}): {e}", path.display()))?;
    Ok((client, report))
}

/// What a cluster target offers: declared capabilities win, else what the driver can do with
/// the permissions given.
fn kube_capabilities(spec: &TargetSpec) -> Vec<meshcert_mesh::Capability> {
    if spec.capabilities.is_empty() {
        mkube::cluster_capabilities(spec.cluster.allow_faults)
    } else {
        spec.capabilities.clone()
    }
}

/// Six base-36 characters from the clock and the process: the run label's value.
fn kube_run_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut n = (nanos ^ ((std::process::id() as u128) << 40)) as u64;
    let mut id = String::new();
    for _ in 0..6 {
        id.push(char::from_digit((n % 36) as u32, 36).expect("below 36"));
        n /= 36;
    }
    id
}

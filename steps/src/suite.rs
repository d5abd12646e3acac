//! Runs the Gherkin suite against one mesh under test: configuration in one place, the context
//! the World reads, cucumber's writers (console, JUnit, Cucumber JSON) teed with meshcert's own
//! results collector, cleanup on Ctrl-C, and the closing summary.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use cucumber::event;
use cucumber::{World, WriterExt, writer};
use futures::FutureExt;
use meshcert_mesh::kube::{self as mkube, ClusterReport, KubeMesh, KubeOptions};
use meshcert_mesh::local::{self, LocalMesh, LocalOptions, Run};
use meshcert_mesh::{MeshError, MeshUnderTest, Profile, TargetInfo};
use meshcert_reports::{RunResults, SCHEMA_VERSION, TargetSummary};
use meshcert_ztunnel::defects::Defects;

use crate::applicability::{Gate, GatedParser, marker};
use crate::inputs;
use crate::interrupt::{self, Listener};
use crate::outputs::{self, Pending};
use crate::probe;
use crate::results::{Collected, ResultsCollector, ScenarioKey, feature_path};
use crate::target::{TargetKind, TargetSpec};
use crate::thresholds::Thresholds;
use crate::world::MeshWorld;

#[derive(Debug, Clone)]
pub struct SuiteConfig {
    /// The mesh under test and what it declares (profile, capabilities).
    pub target: TargetSpec,
    pub features: PathBuf,
    pub fixtures: PathBuf,
    /// Where `results.json`, `junit.xml`, `cucumber.json` and the run's files go.
    pub out_dir: PathBuf,
    /// A cucumber tag expression, e.g. `@L4-RR-1 or @L4-FO-2`.
    pub tags: Option<String>,
    /// Scenarios run at once (default [`DEFAULT_CONCURRENCY`]).
    pub concurrency: Option<usize>,
    /// Every scenario is skipped with this reason: the target is not there (a kube pass
    /// without a cluster).
    pub skip_all: Option<String>,
    /// A thresholds file that replaces the feature set's declared one for the profile.
    pub thresholds: Option<PathBuf>,
}

impl SuiteConfig {
    /// Rules across fields, checked before anything runs.
    pub fn validate(&self) -> Result<(), String> {
        if !self.features.is_dir() {
            return Err(format!(
                "features directory {} does not exist",
                self.features.display()
            ));
        }
        if !self.fixtures.is_dir() {
            return Err(format!(
                "fixtures directory {} does not exist",
                self.fixtures.display()
            ));
        }
        self.target.check()?;
        if self.concurrency == Some(0) {
            return Err("concurrency must be at least 1".into());
        }
        Ok(())
    }
}

/// Scenarios run at once unless `--concurrency` says otherwise. Each local scenario is a small
/// cluster of namespaces, processes and paced requests; on 2 cores, cucumber's 64 at once made
/// the reference's own timers (a 150 ms health check, a 240 ms connect) miss under the load the
/// harness itself made, for no gain in total time.
pub const DEFAULT_CONCURRENCY: usize = 16;

/// What steps and hooks read while a suite runs.
pub struct SuiteContext {
    config: SuiteConfig,
    target: TargetInfo,
    run: Option<Arc<Run>>,
    /// The cluster of a kube target, and this run's id there.
    cluster: Option<(kube::Client, String)>,
    next_mesh: AtomicU32,
    observations: Arc<Mutex<HashMap<ScenarioKey, serde_json::Value>>>,
    thresholds: Arc<Thresholds>,
}

static CONTEXT: RwLock<Option<Arc<SuiteContext>>> = RwLock::new(None);

/// The running suite's context. Steps only run inside `run_suite`, which sets it.
pub fn context() -> Arc<SuiteContext> {
    CONTEXT
        .read()
        .unwrap()
        .clone()
        .expect("steps run only inside run_suite")
}

impl SuiteContext {
    /// The declared thresholds the steps judge with.
    pub fn thresholds(&self) -> Arc<Thresholds> {
        self.thresholds.clone()
    }

    pub fn fixtures_dir(&self) -> &Path {
        &self.config.fixtures
    }

    /// Whether the target restarts to take a config change (it reads its config once).
    pub fn target_restarts(&self) -> bool {
        !self.config.target.reloads_config
    }

    pub async fn make_mesh(&self) -> Result<Box<dyn MeshUnderTest>, MeshError> {
        if let Some(signal) = interrupt::received() {
            return Err(MeshError::Environment(format!(
                "no new mesh: meshcert is closing ({})",
                signal.name()
            )));
        }
        if let Some((client, run)) = &self.cluster {
            let spec = &self.config.target;
            let options = KubeOptions {
                run: run.clone(),
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
            return Ok(Box::new(KubeMesh::new(client.clone(), exec, options)));
        }
        Ok(Box::new(self.make_local_mesh()?))
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
        // The control plane is part of the reference mesh: its defect switches act there too.
        options.defects =
            Defects::parse(&spec.defects.join(",")).map_err(MeshError::InvalidRequest)?;
        LocalMesh::new(run, options)
    }
}

/// The end of a run.
pub struct SuiteOutcome {
    pub results: RunResults,
    pub results_path: PathBuf,
    /// Feature files that did not parse, with cucumber's message.
    pub parse_errors: usize,
}

impl SuiteOutcome {
    /// A scenario failed or the feature set had errors: not a green run in any reading.
    pub fn failed(&self) -> bool {
        self.parse_errors > 0
            || !self.results.feature_errors.is_empty()
            || self.results.counts().failed > 0
    }

    /// Success, failure, partial (an applicable scenario skipped), interrupted or invalid.
    pub fn outcome(&self) -> meshcert_reports::RunOutcome {
        self.results.outcome()
    }
}

pub async fn run_suite(config: SuiteConfig) -> Result<SuiteOutcome, String> {
    config.validate()?;
    // Every input before anything starts (output files, namespaces, lock file, probe): a
    // user's mistake is one line and no verdict on the mesh.
    let checked = inputs::check(&config.features, &config.fixtures, config.tags.as_deref())?;
    if let Some(tags) = &config.tags {
        println!(
            "meshcert: --tags {tags:?} selects {} of {} scenarios",
            checked.selected, checked.scenarios
        );
    }
    let thresholds_path = |profile: Profile| match &config.thresholds {
        Some(file) => file.clone(),
        None => Thresholds::path_for(&config.features, &profile.to_string()),
    };
    let thresholds_of = |profile: Profile| Thresholds::load(&thresholds_path(profile));
    let mut thresholds = thresholds_of(config.target.info().profile)?;
    let started = Instant::now();
    let started_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    std::fs::create_dir_all(&config.out_dir).map_err(|e| {
        format!(
            "cannot create output directory {}: {e}",
            config.out_dir.display()
        )
    })?;
    // Nothing of an earlier run may look like this run's outputs, even if this one is killed.
    outputs::remove_previous(&config.out_dir)?;
    // From here on a signal stops the run cleanly instead of killing it halfway.
    let mut signals = Listener::install()?;

    let mut target = config.target.info();
    let mut settings = config.target.settings();
    let (mut run, mut cluster, unavailable) = (None, None, config.skip_all.clone());
    if unavailable.is_none() && config.target.kind == TargetKind::Kube {
        let (client, report) = connect(&config.target).await?;
        println!("meshcert: {report}");
        target.version = report.ztunnel_version.clone();
        if !config.target.profile_declared {
            target.profile = report.profile;
        }
        target.capabilities = kube_capabilities(&config.target);
        settings.insert("cluster".into(), report.to_string());
        cluster = Some((client, kube_run_id()));
    } else if unavailable.is_none() {
        // A local target this machine cannot run is no verdict at all, never a run of
        // skipped scenarios: callers check first (`target::local_machine_check`, exit 4).
        let cannot =
            |reason: String| format!("{} cannot run on this machine: {reason}", config.target);
        local::preflight().map_err(cannot)?;
        run = Some(Run::start().map_err(|e| cannot(e.to_string()))?);
    }
    if let Some(reason) = unavailable
        .as_ref()
        .filter(|_| signals.received().is_none())
    {
        println!(
            "meshcert: {} unavailable, its scenarios are skipped: {reason}",
            config.target
        );
    }
    // Local meshes name pods from the run id; a kube run labels its namespaces with its own.
    let run_id = match (&run, &cluster) {
        (Some(run), _) => run.id().to_string(),
        (None, Some((_, id))) => id.clone(),
        (None, None) => String::new(),
    };
    if thresholds.source != thresholds_path(target.profile) {
        // A cluster's profile is known once connected.
        thresholds = thresholds_of(target.profile)?;
    }
    settings.extend(thresholds.settings());
    let context = Arc::new(SuiteContext {
        config: config.clone(),
        target: target.clone(),
        run: run.clone(),
        cluster,
        next_mesh: AtomicU32::new(0),
        observations: Arc::default(),
        thresholds: Arc::new(thresholds),
    });
    *CONTEXT.write().unwrap() = Some(context.clone());
    if context.run.is_some() {
        println!(
            "meshcert: starting {} once to check it can run",
            config.target
        );
        // Interrupted: the probe (and its mesh) is dropped, and nothing more starts below.
        match interrupt::unless_signalled(&mut signals, probe::probe(&context)).await {
            Ok(Ok(report)) => {
                println!("meshcert: {report}");
                settings.extend(report.settings());
            }
            // Not the target's fault when the closing gate refused what the probe needed.
            Ok(Err(e)) if interrupt::received().is_none() => {
                *CONTEXT.write().unwrap() = None;
                if let Some(run) = &run {
                    run.close();
                }
                return Err(format!("{} cannot be tested: {e}", config.target));
            }
            Ok(Err(_)) | Err(_) => {}
        }
    }

    let collected = Collected::default();
    // Written under temporary names, renamed only when cucumber has finished them.
    let (junit_pending, junit) = Pending::create(config.out_dir.join("junit.xml"))?;
    let (json_pending, json) = Pending::create(config.out_dir.join("cucumber.json"))?;
    let gate = Arc::new(Gate {
        target: target.clone(),
        unavailable,
    });
    let opts = cucumber::cli::Opts::<_, _, _, cucumber::cli::Empty> {
        tags_filter: checked.tags,
        ..Default::default()
    };
    let features_dir = config.features.clone();
    let observations = context.observations.clone();
    let cucumber = MeshWorld::cucumber::<PathBuf>()
        .with_parser(GatedParser {
            inner: cucumber::parser::Basic::new(),
            gate,
        })
        .with_writer(
            writer::Basic::raw(std::io::stdout(), writer::Coloring::Never, 0)
                .summarized()
                .tee::<MeshWorld, _>(writer::JUnit::for_tee(junit, 0))
                .tee::<MeshWorld, _>(writer::Json::for_tee(json))
                .tee::<MeshWorld, _>(ResultsCollector::new(
                    features_dir.clone(),
                    collected.clone(),
                    observations.clone(),
                ))
                .normalized(),
        )
        .fail_on_skipped_with(|_, _, scenario| marker(scenario).is_none())
        .after(move |feature, _rule, scenario, finished, world| {
            let observations = observations.clone();
            let key = (feature_path(&features_dir, feature), scenario.position.line);
            let failed = !matches!(
                finished,
                event::ScenarioFinished::StepPassed | event::ScenarioFinished::StepSkipped
            );
            async move {
                if let Some(world) = world {
                    world.keep_evidence(failed).await;
                    if let Err(e) = world.teardown().await {
                        eprintln!("meshcert: teardown of {}:{}: {e}", key.0, key.1);
                    }
                    let value = serde_json::to_value(&world.observations).unwrap_or_default();
                    observations.lock().unwrap().insert(key, value);
                }
            }
            .boxed_local()
        })
        .max_concurrent_scenarios(config.concurrency.or(Some(DEFAULT_CONCURRENCY)))
        .with_cli(opts)
        .run(config.features.clone());
    // A signal drops the scenarios under way (their meshes with them); none starts after it.
    let finished = interrupt::unless_signalled(&mut signals, cucumber).await;
    let mut closed = match signals.received() {
        Some(signal) => Some(interrupt::close_everything(signal).await),
        None => None,
    };
    if closed.is_none()
        && let Some(run) = &run
    {
        // Explicit, not left to a Drop that a lingering reference may delay: whatever the
        // scenarios' teardowns left, and the lock file.
        let report = run.close();
        if !report.removed.is_empty() || !report.problems.is_empty() {
            eprintln!("meshcert: after the scenarios' teardowns, {report}");
        }
    }
    let parse_errors = match &finished {
        Ok(writer) => cucumber::writer::Stats::<MeshWorld>::parsing_errors(writer),
        Err(_) => 0,
    };

    let mut scenarios = std::mem::take(&mut *collected.scenarios.lock().unwrap());
    let mut feature_errors = std::mem::take(&mut *collected.feature_errors.lock().unwrap());
    feature_errors.dedup();
    if parse_errors > feature_errors.len() {
        feature_errors.push(format!("{parse_errors} feature file(s) did not parse"));
    }
    scenarios.sort_by(|a, b| (&a.feature, a.line).cmp(&(&b.feature, b.line)));
    if let Some(line) = restart_summary(&scenarios) {
        println!("meshcert: {line}");
        settings.insert("restarts in scenarios".to_string(), line);
    }
    // The results become final here: a signal before this marks them interrupted (and closes
    // everything, if that has not happened yet); one after it finds the run over.
    if let (None, Some(signal)) = (&closed, signals.seal()) {
        closed = Some(interrupt::close_everything(signal).await);
    }
    // Still listening until the end, so a late signal is told the run is ending.
    let interrupted = closed.is_some();
    // cucumber's files are complete only when it finished; an interrupted run writes neither.
    if finished.is_ok() && !interrupted {
        junit_pending.commit()?;
        json_pending.commit()?;
    } else {
        drop((junit_pending, json_pending));
    }
    let results = RunResults {
        schema_version: SCHEMA_VERSION,
        meshcert_version: env!("CARGO_PKG_VERSION").into(),
        target: TargetSummary {
            kind: target.kind.clone(),
            name: target.name.clone(),
            version: target.version.clone(),
            profile: target.profile.to_string(),
            capabilities: target
                .capabilities
                .iter()
                .map(|c| {
                    serde_json::to_value(c)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                })
                .collect(),
            settings,
        },
        run_id: run_id.clone(),
        seed: local::cluster::fnv1a(run_id.as_bytes()),
        started_at,
        duration_ms: started.elapsed().as_millis() as u64,
        scenarios,
        interrupted,
        feature_errors,
    };
    let results_path = config.out_dir.join("results.json");
    results
        .write_json(&results_path)
        .map_err(|e| e.to_string())?;
    results
        .write_reports(&config.out_dir)
        .map_err(|e| e.to_string())?;
    *CONTEXT.write().unwrap() = None;
    drop(context);
    drop(run);
    // A failed or interrupted run keeps its configs and ztunnel logs: its evidence.
    let failed = results.counts().failed > 0;
    let work = (!run_id.is_empty()).then(|| {
        let keep = interrupted || failed;
        outputs::settle_work_dirs(&config.out_dir.join("runs"), &run_id, keep)
    });
    print!("{}", results.summary_text());
    if parse_errors > 0 {
        println!("meshcert: {parse_errors} feature file(s) did not parse: see the errors above");
    }
    let also = if interrupted {
        "marked interrupted, also report.html and conformance.yaml; no junit.xml or cucumber.json"
    } else {
        "also report.html, conformance.yaml, junit.xml and cucumber.json"
    };
    let work = work
        .map(|w| {
            let why = if interrupted {
                "the run was interrupted"
            } else {
                "a scenario failed"
            };
            format!("; {}", w.describe(why))
        })
        .unwrap_or_default();
    println!(
        "meshcert: results in {} ({also}); took {:.1}s{work}",
        results_path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(SuiteOutcome {
        results,
        results_path,
        parse_errors,
    })
}

/// How many restarts the scenarios cost and their median, when the target restarts on change.
fn restart_summary(scenarios: &[meshcert_reports::ScenarioResult]) -> Option<String> {
    let mut took: Vec<f64> = scenarios
        .iter()
        .flat_map(|s| meshcert_reports::view::Observations::of(&s.observations).restarts)
        .map(|r| r.took.ms())
        .collect();
    if took.is_empty() {
        return None;
    }
    took.sort_by(f64::total_cmp);
    let median = took[took.len() / 2];
    let total: f64 = took.iter().sum();
    Some(format!(
        "{} ztunnel restarts to take config changes, median {median:.0} ms, max {:.0} ms, {:.1} s in all",
        took.len(),
        took[took.len() - 1],
        total / 1e3
    ))
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

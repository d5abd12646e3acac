//! Runs the Gherkin suite against one mesh under test: configuration in one place, inputs
//! checked before anything starts, the target set up and probed, the scenarios run
//! (`scenarios`), cleanup on Ctrl-C, the results written and the closing summary.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use meshcert_local as local;
use meshcert_local::run::{CloseReport, Run};
use meshcert_mesh::{Profile, TargetInfo};
use meshcert_reports::{RunResults, SCHEMA_VERSION, ScenarioResult, TargetSummary, millis};
use meshcert_steps::MeshSource;
use meshcert_steps::thresholds::Thresholds;

use crate::context::{SuiteContext, Target};
use crate::inputs::{self, Checked};
use crate::interrupt::{self, Listener};
use crate::outputs;
use crate::probe;
use crate::scenarios;
use crate::target::TargetSpec;

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
/// The same, for a local mesh fed by its control plane: every enrolled pod runs a ztunnel (about
/// four times as many processes). Measured on 2 cores (reference, solo): 45.8 s at 8, 42.1 s
/// at 12, 43.0 s at 16; before the data path's crates were optimised, 16 ladder topologies at
/// once starved the kubelet's 1 s readiness probes.
pub const CONTROL_PLANE_CONCURRENCY: usize = 12;

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

/// When the run started, by the clock for its duration and by the calendar for the report.
struct Started {
    at: Instant,
    unix_secs: u64,
}

pub async fn run_suite(config: SuiteConfig) -> Result<SuiteOutcome, String> {
    run_suite_over(config, None).await
}

/// Meshes a test gives the suite instead of its target's (the in-memory mesh), and what they
/// declare; `None` in every real run.
pub(crate) type GivenMeshes = Option<(TargetInfo, Arc<dyn MeshSource>)>;

pub(crate) async fn run_suite_over(
    config: SuiteConfig,
    given: GivenMeshes,
) -> Result<SuiteOutcome, String> {
    // The time scale is read once, here, and handed to the steps in their thresholds.
    let time_scale = meshcert_mesh::wait::time_scale();
    let (checked, thresholds) = check_inputs(&config)?;
    let started = Started {
        at: Instant::now(),
        unix_secs: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    };
    prepare_out_dir(&config.out_dir)?;
    // From here on a signal stops the run cleanly instead of killing it halfway.
    let mut signals = Listener::install()?;
    let (given_info, given_source) = given.unzip();
    let mut target = Target::set_up(&config, &signals, given_info).await?;
    let run_id = target.run_id();
    // A cluster's profile is known once connected.
    let mut thresholds = config.thresholds_of(target.info.profile, thresholds)?;
    target.settings.extend(thresholds.settings());
    thresholds.time_scale = time_scale;
    let context = Arc::new(SuiteContext::new(
        config.clone(),
        &mut target,
        thresholds,
        given_source,
    ));
    probe_target(&config, &context, &mut signals, &mut target.settings).await?;

    let ran = scenarios::run(&config, &context, &target, checked.tags, &mut signals).await?;
    let mut closed = close_after_scenarios(&signals, target.run.as_deref()).await;
    let parse_errors = ran.parse_errors;
    let (scenarios, feature_errors) = ran.results();
    if let Some(line) = restart_summary(&scenarios) {
        println!("meshcert: {line}");
        target
            .settings
            .insert("restarts in scenarios".to_string(), line);
    }
    // The results become final here: a signal before this marks them interrupted (and closes
    // everything, if that has not happened yet); one after it finds the run over.
    if let (None, Some(signal)) = (&closed, signals.seal()) {
        closed = Some(interrupt::close_everything(signal).await);
    }
    // Still listening until the end, so a late signal is told the run is ending.
    let interrupted = closed.is_some();
    ran.settle_outputs(interrupted)?;
    let results = RunResults {
        schema_version: SCHEMA_VERSION,
        meshcert_version: env!("CARGO_PKG_VERSION").into(),
        target: target_summary(&target),
        seed: local::cluster::fnv1a(run_id.as_bytes()),
        run_id,
        started_at: started.unix_secs,
        duration_ms: started.at.elapsed().as_millis() as u64,
        scenarios,
        interrupted,
        feature_errors,
    };
    let results_path = write_results(&config.out_dir, &results)?;
    drop(context);
    drop(target);
    let outcome = SuiteOutcome {
        results,
        results_path,
        parse_errors,
    };
    close_report(&config, &outcome, &started);
    Ok(outcome)
}

impl SuiteConfig {
    /// The thresholds file of a profile: `--thresholds`, else the feature set's declared one.
    fn thresholds_path(&self, profile: Profile) -> PathBuf {
        match &self.thresholds {
            Some(file) => file.clone(),
            None => Thresholds::path_for(&self.features, &profile.to_string()),
        }
    }

    /// The thresholds of `profile`: `loaded` if they come from the same file.
    fn thresholds_of(&self, profile: Profile, loaded: Thresholds) -> Result<Thresholds, String> {
        let path = self.thresholds_path(profile);
        if loaded.source == path {
            Ok(loaded)
        } else {
            Thresholds::load(&path)
        }
    }
}

/// Every input before anything starts (output files, namespaces, lock file, probe): a user's
/// mistake is one line and no verdict on the mesh. The thresholds are the declared profile's.
fn check_inputs(config: &SuiteConfig) -> Result<(Checked, Thresholds), String> {
    config.validate()?;
    let checked = inputs::check(&config.features, &config.fixtures, config.tags.as_deref())?;
    if let Some(tags) = &config.tags {
        println!(
            "meshcert: --tags {tags:?} selects {} of {} scenarios",
            checked.selected, checked.scenarios
        );
    }
    let thresholds = Thresholds::load(&config.thresholds_path(config.target.info().profile))?;
    Ok((checked, thresholds))
}

fn prepare_out_dir(out_dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(out_dir)
        .map_err(|e| format!("cannot create output directory {}: {e}", out_dir.display()))?;
    // Nothing of an earlier run may look like this run's outputs, even if this one is killed.
    outputs::remove_previous(out_dir)?;
    Ok(())
}

/// Starts a local target once before the scenarios: one that cannot run is refused in one line.
async fn probe_target(
    config: &SuiteConfig,
    context: &SuiteContext,
    signals: &mut Listener,
    settings: &mut BTreeMap<String, String>,
) -> Result<(), String> {
    let Some(run) = context.run() else {
        return Ok(());
    };
    println!(
        "meshcert: starting {} once to check it can run",
        config.target
    );
    // Interrupted: the probe (and its mesh) is dropped, and nothing more starts below.
    match interrupt::unless_signalled(signals, probe::probe(context)).await {
        Ok(Ok(report)) => {
            println!("meshcert: {report}");
            settings.extend(report.settings());
        }
        // Not the target's fault when the closing gate refused what the probe needed.
        Ok(Err(e)) if interrupt::received().is_none() => {
            run.close();
            return Err(format!("{} cannot be tested: {e}", config.target));
        }
        Ok(Err(_)) | Err(_) => {}
    }
    Ok(())
}

/// After the scenarios: everything this process made when a signal came, else the local run.
async fn close_after_scenarios(signals: &Listener, run: Option<&Run>) -> Option<CloseReport> {
    if let Some(signal) = signals.received() {
        return Some(interrupt::close_everything(signal).await);
    }
    if let Some(run) = run {
        // Explicit, not left to a Drop that a lingering reference may delay: whatever the
        // scenarios' teardowns left, and the lock file.
        let report = run.close();
        if !report.removed.is_empty() || !report.problems.is_empty() {
            eprintln!("meshcert: after the scenarios' teardowns, {report}");
        }
    }
    None
}

fn target_summary(target: &Target) -> TargetSummary {
    let info = &target.info;
    TargetSummary {
        kind: info.kind.clone(),
        name: info.name.clone(),
        version: info.version.clone(),
        profile: info.profile.to_string(),
        capabilities: info
            .capabilities
            .iter()
            .map(|c| {
                serde_json::to_value(c)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            })
            .collect(),
        settings: target.settings.clone(),
    }
}

/// `results.json` and the reports made from it; returns the path of `results.json`.
fn write_results(out_dir: &Path, results: &RunResults) -> Result<PathBuf, String> {
    let results_path = out_dir.join("results.json");
    results
        .write_json(&results_path)
        .map_err(|e| e.to_string())?;
    results.write_reports(out_dir).map_err(|e| e.to_string())?;
    Ok(results_path)
}

/// Settles the run's work directories and prints the summary and where everything is.
fn close_report(config: &SuiteConfig, outcome: &SuiteOutcome, started: &Started) {
    let results = &outcome.results;
    let interrupted = results.interrupted;
    // A failed or interrupted run keeps its configs and ztunnel logs: its evidence.
    let failed = results.counts().failed > 0;
    let work = (!results.run_id.is_empty()).then(|| {
        let keep = interrupted || failed;
        outputs::settle_work_dirs(&config.out_dir.join("runs"), &results.run_id, keep)
    });
    print!("{}", results.summary_text());
    if outcome.parse_errors > 0 {
        println!(
            "meshcert: {} feature file(s) did not parse: see the errors above",
            outcome.parse_errors
        );
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
        outcome.results_path.display(),
        started.at.elapsed().as_secs_f64()
    );
}

/// How many restarts the scenarios cost and their median, when the target restarts on change.
fn restart_summary(scenarios: &[ScenarioResult]) -> Option<String> {
    let mut took: Vec<f64> = scenarios
        .iter()
        .filter_map(|s| s.observations.as_ref())
        .flat_map(|o| &o.restarts)
        .map(|r| millis(r.took))
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

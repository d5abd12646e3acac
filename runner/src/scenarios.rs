//! cucumber's run over the feature set: the gated parser, cucumber's writers (console, JUnit,
//! Cucumber JSON) teed with meshcert's results collector, each World given the run's
//! configuration before its first step, and each scenario's evidence and teardown after it.

use std::path::PathBuf;
use std::sync::Arc;

use cucumber::gherkin::tagexpr::TagOperation;
use cucumber::{World, WriterExt, event, writer};
use futures::FutureExt;
use meshcert_reports::ScenarioResult;
use meshcert_steps::MeshWorld;

use crate::applicability::{Gate, GatedParser};
use crate::context::{SuiteContext, Target};
use crate::interrupt::{self, Listener};
use crate::outputs::Pending;
use crate::results::{
    Collected, ObservationsByScenario, ResultsCollector, ScenarioKey, feature_path,
};
use crate::suite::{CONTROL_PLANE_CONCURRENCY, DEFAULT_CONCURRENCY, SuiteConfig};
use crate::target::{TargetKind, TargetSpec};
use meshcert_local::ConfigSource;

/// What cucumber's run left.
pub struct Ran {
    /// cucumber finished: no signal stopped it.
    pub finished: bool,
    /// Feature files that did not parse.
    pub parse_errors: usize,
    collected: Collected,
    /// `junit.xml` and `cucumber.json`, under temporary names.
    junit: Pending,
    json: Pending,
}

/// Runs the scenarios the tags select, until they end or a signal comes.
pub async fn run(
    config: &SuiteConfig,
    context: &Arc<SuiteContext>,
    target: &Target,
    tags: Option<TagOperation>,
    signals: &mut Listener,
) -> Result<Ran, String> {
    let collected = Collected::default();
    // Written under temporary names, renamed only when cucumber has finished them.
    let (junit_pending, junit) = Pending::create(config.out_dir.join("junit.xml"))?;
    let (json_pending, json) = Pending::create(config.out_dir.join("cucumber.json"))?;
    let gate = Arc::new(Gate::new(target.info.clone(), target.unavailable.clone()));
    let opts = cucumber::cli::Opts::<_, _, _, cucumber::cli::Empty> {
        tags_filter: tags,
        ..Default::default()
    };
    let features_dir = config.features.clone();
    let observations = ObservationsByScenario::default();
    let world_config = context.world_config();
    let cucumber = MeshWorld::cucumber::<PathBuf>()
        .with_parser(GatedParser {
            inner: cucumber::parser::Basic::new(),
            gate: gate.clone(),
        })
        .with_writer(
            writer::Basic::raw(std::io::stdout(), writer::Coloring::Never, 0)
                .summarized()
                .tee::<MeshWorld, _>(writer::JUnit::for_tee(junit, 0))
                .tee::<MeshWorld, _>(writer::Json::for_tee(json))
                .tee::<MeshWorld, _>(ResultsCollector::new(
                    features_dir.clone(),
                    gate.clone(),
                    collected.clone(),
                    observations.clone(),
                ))
                .normalized(),
        )
        .fail_on_skipped_with(move |feature, _, scenario| {
            gate.decision(feature, scenario).is_none()
        })
        .before(move |_feature, _rule, _scenario, world| {
            world.configure(world_config.clone());
            async {}.boxed_local()
        })
        .after(move |feature, _rule, scenario, finished, world| {
            let key = (feature_path(&features_dir, feature), scenario.position.line);
            let failed = !matches!(
                finished,
                event::ScenarioFinished::StepPassed | event::ScenarioFinished::StepSkipped
            );
            after_scenario(world, key, failed, observations.clone()).boxed_local()
        })
        .max_concurrent_scenarios(Some(
            config
                .concurrency
                .unwrap_or_else(|| default_concurrency(&config.target)),
        ))
        .with_cli(opts)
        .run(config.features.clone());
    // A signal drops the scenarios under way (their meshes with them); none starts after it.
    let finished = interrupt::unless_signalled(signals, cucumber).await;
    let parse_errors = match &finished {
        Ok(writer) => cucumber::writer::Stats::<MeshWorld>::parsing_errors(writer),
        Err(_) => 0,
    };
    Ok(Ran {
        finished: finished.is_ok(),
        parse_errors,
        collected,
        junit: junit_pending,
        json: json_pending,
    })
}

/// Keeps a scenario's evidence and observations, and tears its mesh down.
async fn after_scenario(
    world: Option<&mut MeshWorld>,
    key: ScenarioKey,
    failed: bool,
    observations: ObservationsByScenario,
) {
    if let Some(world) = world {
        world.keep_evidence(failed).await;
        if let Err(e) = world.teardown().await {
            eprintln!("meshcert: teardown of {}:{}: {e}", key.0, key.1);
        }
        observations
            .lock()
            .unwrap()
            .insert(key, world.observations.clone());
    }
}

impl Ran {
    /// The scenarios in file order, and the feature set's errors, one line each.
    pub fn results(&self) -> (Vec<ScenarioResult>, Vec<String>) {
        let mut scenarios = std::mem::take(&mut *self.collected.scenarios.lock().unwrap());
        let mut feature_errors =
            std::mem::take(&mut *self.collected.feature_errors.lock().unwrap());
        feature_errors.dedup();
        if self.parse_errors > feature_errors.len() {
            feature_errors.push(format!(
                "{} feature file(s) did not parse",
                self.parse_errors
            ));
        }
        scenarios.sort_by(|a, b| (&a.feature, a.line).cmp(&(&b.feature, b.line)));
        (scenarios, feature_errors)
    }

    /// cucumber's files are complete only when it finished; an interrupted run writes neither.
    pub fn settle_outputs(self, interrupted: bool) -> Result<(), String> {
        if self.finished && !interrupted {
            self.junit.commit()?;
            self.json.commit()?;
        }
        Ok(())
    }
}

/// Scenarios at once when `--concurrency` is not given: fewer for a mesh fed by its control
/// plane, which runs a ztunnel in every enrolled pod.
fn default_concurrency(target: &TargetSpec) -> usize {
    match (target.kind, target.config_source) {
        (TargetKind::Kube, _) | (_, ConfigSource::File) => DEFAULT_CONCURRENCY,
        (_, ConfigSource::ControlPlane) => CONTROL_PLANE_CONCURRENCY,
    }
}

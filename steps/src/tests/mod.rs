//! Unit tests of the World and of the step definitions over the in-memory mesh: no root, no
//! network, no wall clock. Steps run through cucumber in-process, from Gherkin text, on paused
//! tokio time (a wait that times out does so at once).

mod distribution;
mod faults;
mod logs;
mod traffic;
mod world;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use cucumber::{World as _, event};
use meshcert_model::Observations;

use crate::testing::{InMemoryMesh, InMemorySource};
use crate::thresholds::Thresholds;
use crate::world::{MeshWorld, WorldConfig};

/// The guide's apps, with 3 backend replicas: most scenarios start here.
pub const GUIDE: &str = r#"Feature: steps over the in-memory mesh
  Background:
    Given the guide's apps "in-ambient" and "client-in-ambient" are deployed
    And "in-ambient" is scaled to 3 replicas
"#;

/// A path in the repository.
pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// The bundled fixtures and the solo profile's declared thresholds, with meshes from `source`.
pub fn config(source: Arc<InMemorySource>) -> WorldConfig {
    let thresholds = Thresholds::load(&repo("features/thresholds/solo.yaml")).expect("thresholds");
    WorldConfig {
        fixtures: repo("fixtures"),
        thresholds: Arc::new(thresholds),
        meshes: source,
    }
}

/// How a scenario ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Passed,
    Skipped,
    /// The failing step's message.
    Failed(String),
}

/// One scenario of a feature run over the in-memory mesh.
#[derive(Debug)]
pub struct Ran {
    pub scenario: String,
    pub line: usize,
    pub outcome: Outcome,
    pub observations: Observations,
}

impl Ran {
    /// The failure message, or a panic saying the scenario did not fail.
    pub fn failure(&self) -> &str {
        match &self.outcome {
            Outcome::Failed(message) => message,
            other => panic!("{} did not fail: {other:?}", self.scenario),
        }
    }
}

/// Runs a feature given as text against copies of `mesh`; its scenarios in file order.
pub async fn run_feature(gherkin: &str, mesh: InMemoryMesh) -> Vec<Ran> {
    static FILES: AtomicU32 = AtomicU32::new(0);
    let path = std::env::temp_dir().join(format!(
        "meshcert-steps-{}-{}.feature",
        std::process::id(),
        FILES.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::write(&path, gherkin).expect("write the feature");
    let world_config = config(Arc::new(InMemorySource::new(mesh)));
    let ran = Arc::new(Mutex::new(Vec::new()));
    let collected = ran.clone();
    MeshWorld::cucumber()
        .with_cli(cucumber::cli::Opts::<_, _, _, cucumber::cli::Empty>::default())
        .before(move |_, _, _, world| {
            world.configure(world_config.clone());
            Box::pin(async {})
        })
        .after(move |_, _, scenario, finished, world| {
            let outcome = outcome(finished);
            let name = scenario.name.clone();
            let line = scenario.position.line;
            let collected = collected.clone();
            Box::pin(async move {
                let world = world.expect("a World");
                world.teardown().await.expect("teardown");
                collected.lock().unwrap().push(Ran {
                    scenario: name,
                    line,
                    outcome,
                    observations: world.observations.clone(),
                });
            })
        })
        .run(&path)
        .await;
    let _ = std::fs::remove_file(&path);
    let mut ran = std::mem::take(&mut *ran.lock().unwrap());
    ran.sort_by_key(|r| r.line);
    ran
}

fn outcome(finished: &event::ScenarioFinished) -> Outcome {
    match finished {
        event::ScenarioFinished::StepPassed => Outcome::Passed,
        event::ScenarioFinished::StepSkipped => Outcome::Skipped,
        event::ScenarioFinished::StepFailed(_, _, event::StepError::Panic(info))
        | event::ScenarioFinished::BeforeHookFailed(info) => Outcome::Failed(
            info.downcast_ref::<String>()
                .cloned()
                .or_else(|| info.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default(),
        ),
        event::ScenarioFinished::StepFailed(_, _, other) => Outcome::Failed(other.to_string()),
    }
}

/// Each scenario's outcome by name, for one-line assertions.
pub fn outcomes(ran: &[Ran]) -> Vec<(&str, &Outcome)> {
    ran.iter()
        .map(|r| (r.scenario.as_str(), &r.outcome))
        .collect()
}

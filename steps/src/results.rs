//! A cucumber writer that turns the event stream into meshcert's results model: one verdict per
//! scenario (passed, failed with its step and message, skipped or not applicable with the reason).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use cucumber::event::{self, Cucumber, Feature, Rule, Scenario, Step};
use cucumber::gherkin;
use cucumber::{Event, World, Writer, cli, parser};
use meshcert_reports::{ScenarioResult, StepTiming, Verdict, is_behaviour_id};

use crate::applicability::{Applicability, marker};

/// Identifies a scenario across events: feature path and scenario line.
pub type ScenarioKey = (String, usize);

#[derive(Default)]
struct Pending {
    started: Option<SystemTime>,
    failure: Option<(String, String)>,
    /// The step running now and when it began.
    step_started: Option<SystemTime>,
    steps: Vec<StepTiming>,
}

impl Pending {
    fn step_ended(&mut self, at: SystemTime, step: &gherkin::Step, outcome: &str) {
        let duration_ms = self
            .step_started
            .take()
            .and_then(|s| at.duration_since(s).ok())
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        self.steps.push(StepTiming {
            step: format!("{}{}", step.keyword, step.value),
            outcome: outcome.to_string(),
            duration_ms,
        });
    }
}

/// Shared with the suite, which reads the scenarios when the run ends.
#[derive(Clone, Default)]
pub struct Collected(pub Arc<Mutex<Vec<ScenarioResult>>>);

pub struct ResultsCollector {
    features_dir: PathBuf,
    pending: HashMap<ScenarioKey, Pending>,
    out: Collected,
    observations: Arc<Mutex<HashMap<ScenarioKey, serde_json::Value>>>,
}

impl ResultsCollector {
    pub fn new(
        features_dir: PathBuf,
        out: Collected,
        observations: Arc<Mutex<HashMap<ScenarioKey, serde_json::Value>>>,
    ) -> Self {
        Self {
            features_dir,
            pending: HashMap::new(),
            out,
            observations,
        }
    }

    fn key(&self, feature: &gherkin::Feature, scenario: &gherkin::Scenario) -> ScenarioKey {
        (
            feature_path(&self.features_dir, feature),
            scenario.position.line,
        )
    }

    fn on_scenario(
        &mut self,
        at: SystemTime,
        feature: &gherkin::Feature,
        rule: Option<&gherkin::Rule>,
        scenario: &gherkin::Scenario,
        ev: &Scenario<impl World>,
    ) {
        let key = self.key(feature, scenario);
        let pending = self.pending.entry(key.clone()).or_default();
        match ev {
            Scenario::Step(_, Step::Started) | Scenario::Background(_, Step::Started) => {
                pending.step_started = Some(at);
            }
            Scenario::Step(step, Step::Passed(..))
            | Scenario::Background(step, Step::Passed(..)) => {
                pending.step_ended(at, step, "passed");
            }
            _ => {}
        }
        match ev {
            Scenario::Started => pending.started = Some(at),
            // The first failure of a scenario is the one reported.
            Scenario::Step(step, Step::Failed(_, _, _, err))
            | Scenario::Background(step, Step::Failed(_, _, _, err)) => {
                pending.step_ended(at, step, "failed");
                pending.failure.get_or_insert_with(|| {
                    (format!("{}{}", step.keyword, step.value), error_text(err))
                });
            }
            Scenario::Hook(kind, event::Hook::Failed(_, info)) => {
                pending
                    .failure
                    .get_or_insert_with(|| (format!("{kind} hook"), panic_text(info)));
            }
            Scenario::Step(step, Step::Skipped) | Scenario::Background(step, Step::Skipped)
                if marker(scenario).is_none() =>
            {
                pending.step_ended(at, step, "skipped");
                pending.failure.get_or_insert_with(|| {
                    (
                        format!("{}{}", step.keyword, step.value),
                        "no step definition matches this step".into(),
                    )
                });
            }
            Scenario::Finished => {
                let pending = self.pending.remove(&key).unwrap_or_default();
                let verdict = match (marker(scenario), pending.failure) {
                    (Some(Applicability::NotApplicable(reason)), _) => {
                        Verdict::NotApplicable { reason }
                    }
                    (Some(Applicability::Skipped(reason)), _) => Verdict::Skipped { reason },
                    (_, Some((step, message))) => Verdict::Failed { step, message },
                    _ => Verdict::Passed,
                };
                let duration_ms = pending
                    .started
                    .and_then(|s| at.duration_since(s).ok())
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0);
                let mut tags: Vec<String> = feature.tags.clone();
                if let Some(rule) = rule {
                    tags.extend(rule.tags.iter().cloned());
                }
                tags.extend(scenario.tags.iter().cloned());
                tags.extend(
                    scenario
                        .examples
                        .iter()
                        .flat_map(|e| e.tags.iter().cloned()),
                );
                let observations = self
                    .observations
                    .lock()
                    .unwrap()
                    .remove(&key)
                    .unwrap_or(serde_json::Value::Null);
                let behaviour_ids = tags
                    .iter()
                    .map(|t| t.trim_start_matches('@'))
                    .filter(|t| is_behaviour_id(t))
                    .map(str::to_string)
                    .collect();
                self.out.0.lock().unwrap().push(ScenarioResult {
                    feature: key.0,
                    name: scenario.name.clone(),
                    line: key.1,
                    tags,
                    behaviour_ids,
                    verdict,
                    duration_ms,
                    steps: pending.steps,
                    observations,
                });
            }
            _ => {}
        }
    }
}

impl<W: World + std::fmt::Debug> Writer<W> for ResultsCollector {
    type Cli = cli::Empty;

    async fn handle_event(&mut self, event: parser::Result<Event<Cucumber<W>>>, _: &Self::Cli) {
        let Ok(event) = event else { return };
        let at = event.at;
        match &event.value {
            Cucumber::Feature(feature, Feature::Scenario(scenario, ev)) => {
                self.on_scenario(at, feature, None, scenario, &ev.event)
            }
            Cucumber::Feature(feature, Feature::Rule(rule, Rule::Scenario(scenario, ev))) => {
                self.on_scenario(at, feature, Some(rule), scenario, &ev.event)
            }
            _ => {}
        }
    }
}

impl<W: World + std::fmt::Debug> cucumber::writer::Arbitrary<W, String> for ResultsCollector {
    async fn write(&mut self, _: String) {}
}

impl<W: World + std::fmt::Debug> cucumber::writer::Stats<W> for ResultsCollector {
    fn passed_steps(&self) -> usize {
        0
    }
    fn skipped_steps(&self) -> usize {
        0
    }
    fn failed_steps(&self) -> usize {
        0
    }
    fn retried_steps(&self) -> usize {
        0
    }
    fn parsing_errors(&self) -> usize {
        0
    }
    fn hook_errors(&self) -> usize {
        0
    }
}

impl cucumber::writer::NonTransforming for ResultsCollector {}

/// The feature's path relative to the features directory.
pub fn feature_path(features_dir: &std::path::Path, feature: &gherkin::Feature) -> String {
    feature
        .path
        .as_ref()
        .map(|p| {
            p.strip_prefix(features_dir)
                .unwrap_or(p)
                .display()
                .to_string()
        })
        .unwrap_or_else(|| feature.name.clone())
}

fn error_text(err: &event::StepError) -> String {
    match err {
        event::StepError::Panic(info) => panic_text(info),
        other => other.to_string(),
    }
}

fn panic_text(info: &event::Info) -> String {
    if let Some(s) = info.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = info.downcast_ref::<&str>() {
        s.to_string()
    } else {
        "step panicked with a non-text payload".into()
    }
}

//! A cucumber writer that turns the event stream into meshcert's results model: one verdict per
//! scenario (passed, failed with its step and message, skipped or not applicable with the reason).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use cucumber::event::{self, Cucumber, Feature, Rule, Scenario, Step};
use cucumber::gherkin;
use cucumber::{Event, World, Writer, cli, parser};
use meshcert_model::Observations;
use meshcert_reports::{ScenarioResult, StepTiming, Verdict, is_behaviour_id};
use meshcert_steps::unsupported_reason;

use crate::applicability::{Applicability, Gate, scenario_tags};

/// Identifies a scenario across events: feature path and scenario line.
pub type ScenarioKey = (String, usize);

/// What each scenario that had a World observed, left by its `after` hook for the collector.
pub type ObservationsByScenario = Arc<Mutex<HashMap<ScenarioKey, Observations>>>;

#[derive(Default)]
struct Pending {
    started: Option<SystemTime>,
    failure: Option<(String, String)>,
    /// A step no definition matched: the feature set's error, not a verdict.
    unmatched: Option<String>,
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
pub struct Collected {
    pub scenarios: Arc<Mutex<Vec<ScenarioResult>>>,
    /// Errors of the feature set met while running, one line each: they give no verdict
    /// (the suite refuses them before it starts; these are the ones it could not foresee).
    pub feature_errors: Arc<Mutex<Vec<String>>>,
}

pub struct ResultsCollector {
    features_dir: PathBuf,
    /// Which scenarios the gate kept from running, and why.
    gate: Arc<Gate>,
    pending: HashMap<ScenarioKey, Pending>,
    out: Collected,
    observations: ObservationsByScenario,
}

impl ResultsCollector {
    pub fn new(
        features_dir: PathBuf,
        gate: Arc<Gate>,
        out: Collected,
        observations: ObservationsByScenario,
    ) -> Self {
        Self {
            features_dir,
            gate,
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
            // Not the mesh's failure but the feature set's: the scenario is skipped with the
            // reason and the run gives no verdict.
            Scenario::Step(step, Step::Skipped) | Scenario::Background(step, Step::Skipped)
                if self.gate.decision(feature, scenario).is_none() =>
            {
                pending.step_ended(at, step, "skipped");
                let error = format!(
                    "{}:{}: no step definition matches \"{}{}\"",
                    key.0, step.position.line, step.keyword, step.value
                );
                pending.unmatched.get_or_insert(error.clone());
                self.out.feature_errors.lock().unwrap().push(error);
            }
            Scenario::Finished => {
                let rule_tags = rule.map(|r| r.tags.as_slice()).unwrap_or_default();
                let tags = scenario_tags(&feature.tags, rule_tags, scenario);
                let gated = self.gate.decision(feature, scenario);
                self.finish(at, scenario, gated, key, tags);
            }
            _ => {}
        }
    }

    /// The scenario's result, from what its events left and its tags.
    fn finish(
        &mut self,
        at: SystemTime,
        scenario: &gherkin::Scenario,
        gated: Option<Applicability>,
        key: ScenarioKey,
        tags: Vec<String>,
    ) {
        let pending = self.pending.remove(&key).unwrap_or_default();
        let duration_ms = pending
            .started
            .and_then(|s| at.duration_since(s).ok())
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let verdict = verdict(gated, pending.unmatched, pending.failure);
        let observations = self.observations.lock().unwrap().remove(&key);
        let behaviour_ids = tags
            .iter()
            .map(|t| t.trim_start_matches('@'))
            .filter(|t| is_behaviour_id(t))
            .map(str::to_string)
            .collect();
        self.out.scenarios.lock().unwrap().push(ScenarioResult {
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
}

/// A finished scenario's verdict: the gate's decision first, then a step no definition
/// matched, then its first failure.
fn verdict(
    gated: Option<Applicability>,
    unmatched: Option<String>,
    failure: Option<(String, String)>,
) -> Verdict {
    match (gated, unmatched, failure) {
        (Some(Applicability::NotApplicable(reason)), _, _) => Verdict::NotApplicable { reason },
        (Some(Applicability::Skipped(reason)), _, _) => Verdict::Skipped { reason },
        (_, Some(error), _) => Verdict::Skipped { reason: error },
        // The target cannot do what a step asked: nothing was judged.
        (_, _, Some((step, message))) => match unsupported_reason(&message) {
            Some(reason) => Verdict::Skipped {
                reason: reason.to_string(),
            },
            None => Verdict::Failed { step, message },
        },
        _ => Verdict::Passed,
    }
}

impl<W: World + std::fmt::Debug> Writer<W> for ResultsCollector {
    type Cli = cli::Empty;

    async fn handle_event(&mut self, event: parser::Result<Event<Cucumber<W>>>, _: &Self::Cli) {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                self.out
                    .feature_errors
                    .lock()
                    .unwrap()
                    .push(parse_error(&e));
                return;
            }
        };
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

/// A feature file cucumber could not read or expand, as one line with file and line.
fn parse_error(error: &parser::Error) -> String {
    match error {
        parser::Error::Parsing(e) => crate::inputs::parse_error(e),
        parser::Error::ExampleExpansion(e) => crate::inputs::expansion_error(e),
    }
}

/// The feature's path relative to the features directory.
pub fn feature_path(features_dir: &std::path::Path, feature: &gherkin::Feature) -> String {
    let Some(path) = feature.path.as_ref() else {
        return feature.name.clone();
    };
    if let Ok(relative) = path.strip_prefix(features_dir) {
        return relative.display().to_string();
    }
    // cucumber walks the canonical directory: `./features` must strip all the same.
    features_dir
        .canonicalize()
        .ok()
        .and_then(|dir| path.strip_prefix(dir).ok().map(|p| p.display().to_string()))
        .unwrap_or_else(|| path.display().to_string())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_paths_are_relative_to_the_features_directory_however_it_is_named() {
        let dir = std::env::temp_dir().join(format!("meshcert-paths-{}", std::process::id()));
        let link = dir.with_extension("link");
        std::fs::create_dir_all(dir.join("l4")).unwrap();
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        let file = dir.join("l4/x.feature");
        std::fs::write(&file, "Feature: f\n  Scenario: s\n    Given x\n").unwrap();
        // cucumber reports the canonical path; the user named the directory another way.
        let feature =
            gherkin::Feature::parse_path(file.canonicalize().unwrap(), Default::default()).unwrap();
        assert_eq!(feature_path(&link, &feature), "l4/x.feature");
        assert_eq!(feature_path(&dir, &feature), "l4/x.feature");
        std::fs::remove_file(&link).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

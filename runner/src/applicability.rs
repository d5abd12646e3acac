//! Decides, before a scenario runs, whether the mesh under test can run it, and marks it when it
//! cannot: a first step that no definition matches, whose text carries the reason. cucumber then
//! reports the scenario skipped in every writer, and the results collector reads the reason back.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use cucumber::gherkin::{self, LineCol, Span, StepType};
use cucumber::parser::{self, Parser};
use futures::StreamExt;
use futures::stream::BoxStream;
use meshcert_mesh::{Capability, Profile, TargetInfo};

pub const NOT_APPLICABLE: &str = "this scenario is not applicable: ";
pub const SKIPPED: &str = "this scenario is skipped: ";

/// Checks a scenario's applicability tags before anything runs: `@profile-<p>` must name a
/// profile and `@needs-<c>` a capability. A typo there would otherwise skip the scenario on
/// every target, silently.
pub fn check_tags(tags: &[String]) -> Result<(), String> {
    for tag in tags {
        let tag = tag.trim_start_matches('@');
        if let Some(profile) = tag.strip_prefix("profile-") {
            profile
                .parse::<Profile>()
                .map_err(|e| format!("tag @{tag}: {e}"))?;
        }
        if let Some(name) = tag.strip_prefix("needs-")
            && name.parse::<Capability>().is_err()
        {
            let known: Vec<String> = Capability::LOCAL
                .iter()
                .chain(&[Capability::Waypoint])
                .filter_map(|c| serde_json::to_value(c).ok())
                .filter_map(|v| v.as_str().map(|s| format!("@needs-{s}")))
                .collect();
            return Err(format!(
                "tag @{tag} names no capability (known: {})",
                known.join(", ")
            ));
        }
    }
    Ok(())
}

/// Why a scenario will not run, or `None` when it will.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applicability {
    Runs,
    NotApplicable(String),
    Skipped(String),
}

/// What the suite knows before running anything.
#[derive(Debug)]
pub struct Gate {
    pub target: TargetInfo,
    /// Why the target cannot run at all on this machine (no root, no network namespaces, ...).
    pub unavailable: Option<String>,
    /// What the gate decided for every scenario that will not run, by scenario: the results
    /// read this, not the marker step's text.
    decisions: Mutex<HashMap<ScenarioId, Applicability>>,
}

/// A scenario of a feature file: the file, its line, and its Examples block's line.
type ScenarioId = (Option<PathBuf>, usize, Option<usize>);

fn scenario_id(feature: &gherkin::Feature, scenario: &gherkin::Scenario) -> ScenarioId {
    (
        feature.path.clone(),
        scenario.position.line,
        scenario.examples.first().map(|e| e.position.line),
    )
}

impl Gate {
    pub fn new(target: TargetInfo, unavailable: Option<String>) -> Gate {
        Gate {
            target,
            unavailable,
            decisions: Mutex::default(),
        }
    }

    /// Why a scenario does not run (not applicable, or skipped), if the gate said so.
    pub fn decision(
        &self,
        feature: &gherkin::Feature,
        scenario: &gherkin::Scenario,
    ) -> Option<Applicability> {
        let decisions = self.decisions.lock().unwrap_or_else(|e| e.into_inner());
        decisions.get(&scenario_id(feature, scenario)).cloned()
    }

    /// Tags: `@profile-solo` / `@profile-istio` restrict a scenario to one profile;
    /// `@needs-<capability>` (e.g. `@needs-network-faults`) to targets that have it.
    pub fn judge(&self, tags: &[String]) -> Applicability {
        for tag in tags {
            let tag = tag.trim_start_matches('@');
            if let Some(profile) = tag.strip_prefix("profile-") {
                match profile.parse::<Profile>() {
                    Ok(p) if p != self.target.profile => {
                        return Applicability::NotApplicable(format!(
                            "it states profile {p}; the target declares profile {}",
                            self.target.profile
                        ));
                    }
                    Ok(_) => {}
                    Err(e) => return Applicability::Skipped(format!("bad tag @{tag}: {e}")),
                }
            }
        }
        if let Some(reason) = &self.unavailable {
            return Applicability::Skipped(reason.clone());
        }
        for tag in tags {
            let tag = tag.trim_start_matches('@');
            if let Some(name) = tag.strip_prefix("needs-") {
                match name.parse::<Capability>() {
                    Ok(c) if !self.target.supports(c) => {
                        return Applicability::Skipped(format!("the target cannot do {name}"));
                    }
                    Ok(_) => {}
                    Err(e) => return Applicability::Skipped(format!("bad tag @{tag}: {e}")),
                }
            }
        }
        Applicability::Runs
    }

    fn judge_scenario(
        &self,
        feature_tags: &[String],
        rule_tags: &[String],
        scenario: &gherkin::Scenario,
    ) -> Applicability {
        self.judge(&scenario_tags(feature_tags, rule_tags, scenario))
    }

    /// Marks every scenario that will not run. Background steps run before a scenario's own
    /// steps, so where any scenario is marked the backgrounds are inlined after the marker:
    /// a skipped scenario must not deploy anything first.
    fn apply(&self, feature: &mut gherkin::Feature) {
        split_examples(&mut feature.scenarios);
        for rule in &mut feature.rules {
            split_examples(&mut rule.scenarios);
        }
        let feature_tags = feature.tags.clone();
        let any_marked = feature
            .scenarios
            .iter()
            .map(|s| self.judge_scenario(&feature_tags, &[], s))
            .chain(feature.rules.iter().flat_map(|r| {
                r.scenarios
                    .iter()
                    .map(|s| self.judge_scenario(&feature_tags, &r.tags, s))
                    .collect::<Vec<_>>()
            }))
            .any(|a| a != Applicability::Runs);
        if !any_marked {
            return;
        }
        let background = feature
            .background
            .take()
            .map(|b| b.steps)
            .unwrap_or_default();
        let path = feature.path.clone();
        let decide = |scenario: &gherkin::Scenario, rule_tags: &[String]| {
            let verdict = self.judge_scenario(&feature_tags, rule_tags, scenario);
            let id = (
                path.clone(),
                scenario.position.line,
                scenario.examples.first().map(|e| e.position.line),
            );
            if verdict != Applicability::Runs {
                let mut decisions = self.decisions.lock().unwrap_or_else(|e| e.into_inner());
                decisions.insert(id, verdict.clone());
            }
            verdict
        };
        for scenario in &mut feature.scenarios {
            let verdict = decide(scenario, &[]);
            prepend(scenario, &background, verdict);
        }
        for rule in &mut feature.rules {
            let mut steps = background.clone();
            steps.extend(rule.background.take().map(|b| b.steps).unwrap_or_default());
            for scenario in &mut rule.scenarios {
                let verdict = decide(scenario, &rule.tags);
                prepend(scenario, &steps, verdict);
            }
        }
    }
}

/// One scenario per Examples block, so that a block tagged `@profile-solo` is judged alone
/// and the other blocks of the same outline still run.
fn split_examples(scenarios: &mut Vec<gherkin::Scenario>) {
    let mut out = Vec::with_capacity(scenarios.len());
    for scenario in scenarios.drain(..) {
        if scenario.examples.len() <= 1 {
            out.push(scenario);
            continue;
        }
        for examples in &scenario.examples {
            let mut one = scenario.clone();
            one.examples = vec![examples.clone()];
            out.push(one);
        }
    }
    *scenarios = out;
}

fn prepend(scenario: &mut gherkin::Scenario, background: &[gherkin::Step], verdict: Applicability) {
    let mut steps: Vec<gherkin::Step> = Vec::new();
    let text = match verdict {
        Applicability::Runs => None,
        Applicability::NotApplicable(reason) => Some(format!("{NOT_APPLICABLE}{reason}")),
        Applicability::Skipped(reason) => Some(format!("{SKIPPED}{reason}")),
    };
    if let Some(text) = text {
        steps.push(gherkin::Step {
            keyword: "Given ".into(),
            ty: StepType::Given,
            value: text,
            docstring: None,
            table: None,
            span: Span { start: 0, end: 0 },
            position: LineCol {
                line: scenario.position.line,
                col: scenario.position.col,
            },
        });
    }
    steps.extend_from_slice(background);
    steps.append(&mut scenario.steps);
    scenario.steps = steps;
}

/// A scenario's tags with those it inherits: its feature's, its rule's, its examples'.
pub fn scenario_tags(
    feature_tags: &[String],
    rule_tags: &[String],
    scenario: &gherkin::Scenario,
) -> Vec<String> {
    let mut tags: Vec<String> = feature_tags.to_vec();
    tags.extend_from_slice(rule_tags);
    tags.extend(scenario.tags.iter().cloned());
    tags.extend(
        scenario
            .examples
            .iter()
            .flat_map(|e| e.tags.iter().cloned()),
    );
    tags
}

/// cucumber's own parser, then the gate applied to every scenario.
pub struct GatedParser {
    pub inner: parser::Basic,
    pub gate: Arc<Gate>,
}

impl<I: AsRef<std::path::Path>> Parser<I> for GatedParser {
    type Cli = <parser::Basic as Parser<I>>::Cli;
    type Output = BoxStream<'static, parser::Result<gherkin::Feature>>;

    fn parse(self, input: I, cli: Self::Cli) -> Self::Output {
        let gate = self.gate;
        self.inner
            .parse(input, cli)
            .map(move |feature| {
                feature.map(|mut f| {
                    gate.apply(&mut f);
                    f
                })
            })
            .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(profile: Profile, unavailable: Option<&str>) -> Gate {
        Gate::new(
            TargetInfo {
                kind: "reference".into(),
                name: "reference".into(),
                version: "0".into(),
                profile,
                capabilities: vec![Capability::NetworkFaults],
            },
            unavailable.map(str::to_string),
        )
    }

    fn tags(t: &[&str]) -> Vec<String> {
        t.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn profile_mismatch_is_not_applicable_even_without_netns() {
        let g = gate(Profile::Istio, Some("no root"));
        assert!(matches!(
            g.judge(&tags(&["@profile-solo"])),
            Applicability::NotApplicable(_)
        ));
        assert_eq!(
            g.judge(&tags(&["@L4-RR-1"])),
            Applicability::Skipped("no root".into())
        );
    }

    #[test]
    fn skipped_scenarios_get_the_background_after_their_marker() {
        let text = "Feature: f\n  Background:\n    Given a\n\n  @profile-solo\n  Scenario: s\n    When b\n\n  Scenario: t\n    When c\n";
        let mut feature = gherkin::Feature::parse(text, gherkin::GherkinEnv::default()).unwrap();
        gate(Profile::Istio, None).apply(&mut feature);
        assert!(feature.background.is_none());
        let steps: Vec<&str> = feature.scenarios[0]
            .steps
            .iter()
            .map(|s| s.value.as_str())
            .collect();
        assert!(steps[0].starts_with(NOT_APPLICABLE), "{steps:?}");
        assert_eq!(&steps[1..], ["a", "b"]);
        let steps: Vec<&str> = feature.scenarios[1]
            .steps
            .iter()
            .map(|s| s.value.as_str())
            .collect();
        assert_eq!(steps, ["a", "c"]);
    }

    #[test]
    fn applicability_tags_must_name_a_profile_or_capability() {
        assert_eq!(
            check_tags(&tags(&[
                "@L4-RR-1",
                "@profile-solo",
                "@needs-scale",
                "@serial"
            ])),
            Ok(())
        );
        let err = check_tags(&tags(&["@needs-teleport"])).unwrap_err();
        assert!(
            err.starts_with(
                "tag @needs-teleport names no capability (known: @needs-network-faults,"
            ),
            "{err}"
        );
        assert!(err.contains("@needs-waypoint)"), "{err}");
        let err = check_tags(&tags(&["@profile-soloo"])).unwrap_err();
        assert!(
            err.contains("tag @profile-soloo: unknown profile \"soloo\""),
            "{err}"
        );
    }

    #[test]
    fn missing_capability_is_skipped() {
        let g = gate(Profile::Solo, None);
        assert_eq!(
            g.judge(&tags(&["@profile-solo", "@needs-network-faults"])),
            Applicability::Runs
        );
        assert!(matches!(
            g.judge(&tags(&["@needs-app-faults"])),
            Applicability::Skipped(_)
        ));
        assert!(matches!(
            g.judge(&tags(&["@needs-teleport"])),
            Applicability::Skipped(_)
        ));
    }

    #[test]
    fn each_examples_block_is_judged_alone() {
        let text = "Feature: f\n  Scenario Outline: o <v>\n    When <v>\n\n    Examples:\n      | v |\n      | a |\n\n    @profile-solo\n    Examples:\n      | v |\n      | b |\n";
        let mut feature = gherkin::Feature::parse(text, gherkin::GherkinEnv::default()).unwrap();
        let g = gate(Profile::Istio, None);
        g.apply(&mut feature);
        assert_eq!(feature.scenarios.len(), 2);
        assert_eq!(g.decision(&feature, &feature.scenarios[0]), None);
        assert!(matches!(
            g.decision(&feature, &feature.scenarios[1]),
            Some(Applicability::NotApplicable(_))
        ));
        assert_eq!(feature.scenarios[1].examples[0].tags, ["profile-solo"]);
    }
}

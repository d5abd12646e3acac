//! The conformance report (YAML), in the spirit of the Kubernetes Gateway API conformance
//! reports: who was tested (implementation, version, profile), when, by which meshcert, and per
//! area and behaviour ID the result with its counts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Conformance, Counts, RunOutcome, RunResults, SkipReason, format_timestamp};

pub const API_VERSION: &str = "meshcert.dev/v1alpha1";
pub const KIND: &str = "ConformanceReport";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConformanceReport {
    pub api_version: String,
    pub kind: String,
    /// RFC 3339, when the run started.
    pub date: String,
    pub meshcert_version: String,
    pub implementation: Implementation,
    /// `success` only when every applicable scenario ran and passed; `failure` when one
    /// failed; `partial` when nothing failed but some applicable scenario was skipped (or none
    /// ran); `interrupted`; `invalid` when the feature set had errors.
    pub result: RunOutcome,
    /// Why, in one sentence.
    pub result_reason: String,
    pub statistics: Statistics,
    /// Each reason scenarios were skipped, once, with how many and which behaviours.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkipReason>,
    /// The declared thresholds the verdicts were given with (`features/thresholds/`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub thresholds: BTreeMap<String, String>,
    pub areas: Vec<Area>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Implementation {
    pub name: String,
    pub kind: String,
    pub version: String,
    pub profile: String,
    pub capabilities: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Statistics {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub not_applicable: usize,
}

impl From<Counts> for Statistics {
    fn from(c: Counts) -> Self {
        Self {
            passed: c.passed,
            failed: c.failed,
            skipped: c.skipped,
            not_applicable: c.not_applicable,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Area {
    pub name: String,
    pub result: Conformance,
    pub statistics: Statistics,
    pub behaviours: Vec<Behaviour>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Behaviour {
    pub id: String,
    pub result: Conformance,
    pub statistics: Statistics,
    /// Why it was skipped or not applicable (the first scenario's reason), or the failed step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The assertions (the `Then` steps of its scenarios) that decided it, each with its worst
    /// outcome.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assertions: Vec<Assertion>,
}

/// One assertion step and how it came out across the behaviour's scenarios.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Assertion {
    pub step: String,
    /// `failed` if it failed in any scenario, else `skipped` if it never ran, else `passed`.
    pub outcome: String,
}

/// The assertion steps of a scenario: from each `Then` up to the next `When` or `Given`.
fn assertions(scenario: &crate::ScenarioResult) -> impl Iterator<Item = (&str, &str)> {
    let mut asserting = false;
    scenario.steps.iter().filter_map(move |s| {
        let (keyword, text) = s.step.split_once(' ').unwrap_or((s.step.as_str(), ""));
        match keyword {
            "Then" => asserting = true,
            "When" | "Given" => asserting = false,
            _ => {}
        }
        asserting.then_some((text, s.outcome.as_str()))
    })
}

/// Adds a scenario's assertions to a behaviour's, keeping each step once with its worst outcome.
pub(crate) fn merge_assertions(into: &mut Vec<Assertion>, scenario: &crate::ScenarioResult) {
    let rank = |o: &str| match o {
        "failed" => 2,
        "passed" => 0,
        _ => 1,
    };
    for (step, outcome) in assertions(scenario) {
        match into.iter_mut().find(|a| a.step == step) {
            Some(a) if rank(outcome) > rank(&a.outcome) => a.outcome = outcome.to_string(),
            Some(_) => {}
            None => into.push(Assertion {
                step: step.to_string(),
                outcome: outcome.to_string(),
            }),
        }
    }
}

/// What a behaviour's scenarios add up to while the report is made.
#[derive(Default)]
struct BehaviourTally {
    counts: Counts,
    /// Why it is not conformant: the first failure's step, else the first skip's reason.
    note: Option<String>,
    assertions: Vec<Assertion>,
}

/// Every behaviour's tally, by area then behaviour ID.
fn tally(results: &RunResults) -> BTreeMap<&str, BTreeMap<String, BehaviourTally>> {
    let mut areas: BTreeMap<&str, BTreeMap<String, BehaviourTally>> = BTreeMap::new();
    for s in &results.scenarios {
        for id in s.behaviours() {
            let entry = areas
                .entry(s.area())
                .or_default()
                .entry(id.to_string())
                .or_default();
            entry.counts.add(&s.verdict);
            merge_assertions(&mut entry.assertions, s);
            let note = match &s.verdict {
                crate::Verdict::Failed { step, .. } => Some(format!("failed at {step}")),
                crate::Verdict::Skipped { reason } | crate::Verdict::NotApplicable { reason } => {
                    Some(reason.clone())
                }
                crate::Verdict::Passed => None,
            };
            // A failure explains more than a skip.
            if entry.note.is_none()
                || matches!(s.verdict, crate::Verdict::Failed { .. })
                    && !entry
                        .note
                        .as_deref()
                        .is_some_and(|n| n.starts_with("failed at"))
            {
                entry.note = note.or(entry.note.take());
            }
        }
    }
    areas
}

/// An area's result and behaviours from their tallies; a note only where not conformant.
fn area(name: &str, ids: BTreeMap<String, BehaviourTally>) -> Area {
    let mut total = Counts::default();
    let behaviours = ids
        .into_iter()
        .map(|(id, tally)| {
            total.merge(&tally.counts);
            let result = tally.counts.conformance();
            Behaviour {
                id,
                result,
                statistics: tally.counts.into(),
                note: (result != Conformance::Conformant)
                    .then_some(tally.note)
                    .flatten(),
                assertions: tally.assertions,
            }
        })
        .collect();
    Area {
        name: name.to_string(),
        result: total.conformance(),
        statistics: total.into(),
        behaviours,
    }
}

impl ConformanceReport {
    pub fn of(results: &RunResults) -> Self {
        let areas: Vec<Area> = tally(results)
            .into_iter()
            .map(|(name, ids)| area(name, ids))
            .collect();
        let counts = results.counts();
        let t = &results.target;
        ConformanceReport {
            api_version: API_VERSION.into(),
            kind: KIND.into(),
            date: format_timestamp(results.started_at),
            meshcert_version: results.meshcert_version.clone(),
            implementation: Implementation {
                name: t.name.clone(),
                kind: t.kind.clone(),
                version: t.version.clone(),
                profile: t.profile.clone(),
                capabilities: t.capabilities.clone(),
            },
            result: results.outcome(),
            result_reason: results.outcome_text(),
            statistics: counts.into(),
            skipped: results.skip_reasons(),
            thresholds: t
                .settings
                .iter()
                .filter_map(|(k, v)| Some((k.strip_prefix("threshold ")?.to_string(), v.clone())))
                .collect(),
            areas,
        }
    }

    pub fn to_yaml(&self) -> String {
        serde_saphyr::to_string(self).expect("a conformance report always serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ScenarioResult, StepTiming, Verdict};

    fn step(text: &str, outcome: &str) -> StepTiming {
        StepTiming {
            step: text.into(),
            outcome: outcome.into(),
            duration_ms: 1,
        }
    }

    #[test]
    fn assertions_are_the_then_steps_with_their_worst_outcome() {
        let scenario = |outcome: &str| ScenarioResult {
            feature: "l4/x.feature".into(),
            name: "x".into(),
            line: 3,
            tags: vec!["@L4-FO-4".into()],
            behaviour_ids: vec!["L4-FO-4".into()],
            verdict: Verdict::Passed,
            duration_ms: 5,
            steps: vec![
                step("Given apps", "passed"),
                step("When I block", "passed"),
                step("Then the pod answers again", "passed"),
                step("When the client sends", "passed"),
                step("Then every replica answered", outcome),
                step("And nothing failed", "skipped"),
            ],
            observations: None,
        };
        let mut merged = Vec::new();
        merge_assertions(&mut merged, &scenario("passed"));
        merge_assertions(&mut merged, &scenario("failed"));
        let got: Vec<(&str, &str)> = merged
            .iter()
            .map(|a| (a.step.as_str(), a.outcome.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("the pod answers again", "passed"),
                ("every replica answered", "failed"),
                ("nothing failed", "skipped"),
            ]
        );
    }
}

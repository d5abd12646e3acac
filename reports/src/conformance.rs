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
}

impl ConformanceReport {
    pub fn of(results: &RunResults) -> Self {
        let mut areas: BTreeMap<&str, BTreeMap<String, (Counts, Option<String>)>> = BTreeMap::new();
        for s in &results.scenarios {
            for id in s.behaviours() {
                let entry = areas
                    .entry(s.area())
                    .or_default()
                    .entry(id.to_string())
                    .or_default();
                entry.0.add(&s.verdict);
                let note = match &s.verdict {
                    crate::Verdict::Failed { step, .. } => Some(format!("failed at {step}")),
                    crate::Verdict::Skipped { reason }
                    | crate::Verdict::NotApplicable { reason } => Some(reason.clone()),
                    crate::Verdict::Passed => None,
                };
                // A failure explains more than a skip.
                if entry.1.is_none()
                    || matches!(s.verdict, crate::Verdict::Failed { .. })
                        && !entry
                            .1
                            .as_deref()
                            .is_some_and(|n| n.starts_with("failed at"))
                {
                    entry.1 = note.or(entry.1.take());
                }
            }
        }
        let areas: Vec<Area> = areas
            .into_iter()
            .map(|(name, ids)| {
                let mut total = Counts::default();
                let behaviours = ids
                    .into_iter()
                    .map(|(id, (counts, note))| {
                        total.merge(&counts);
                        let result = counts.conformance();
                        Behaviour {
                            id,
                            result,
                            statistics: counts.into(),
                            note: (result != Conformance::Conformant)
                                .then_some(note)
                                .flatten(),
                        }
                    })
                    .collect();
                Area {
                    name: name.to_string(),
                    result: total.conformance(),
                    statistics: total.into(),
                    behaviours,
                }
            })
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
            areas,
        }
    }

    pub fn to_yaml(&self) -> String {
        serde_saphyr::to_string(self).expect("a conformance report always serialises")
    }
}

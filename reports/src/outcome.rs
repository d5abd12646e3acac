//! The outcome of a whole run, from its scenario verdicts alone: a run is a success only when
//! every applicable scenario ran and passed. A skipped applicable scenario makes the run
//! *partial* (it certifies nothing about that behaviour), a broken feature set gives no verdict
//! at all, and an interrupted run says so. The exit codes of `meshcert run` and `meshcert diff`
//! follow from it.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Counts, ScenarioResult, Verdict};

/// What a run as a whole shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// Every applicable scenario ran and passed.
    Success,
    /// Some scenario failed: the mesh is not conformant.
    #[serde(rename = "failure")]
    Failed,
    /// Nothing failed, but some applicable scenario was skipped (or none ran at all).
    Partial,
    /// The run was stopped (SIGINT, SIGTERM) before every scenario ended.
    Interrupted,
    /// The feature set has errors (a file that does not parse, a step nothing matches): the
    /// user's mistake, so no verdict on the mesh.
    Invalid,
}

impl RunOutcome {
    /// The outcome of scenario verdicts, feature-set errors and an interruption. Precedence:
    /// an interruption or a broken feature set says nothing about the mesh, so they win over
    /// any verdict; a failure wins over skips; no applicable scenario that passed is never a
    /// success (a green run must have tested something).
    pub fn of(counts: &Counts, feature_errors: usize, interrupted: bool) -> Self {
        if interrupted {
            RunOutcome::Interrupted
        } else if feature_errors > 0 {
            RunOutcome::Invalid
        } else if counts.failed > 0 {
            RunOutcome::Failed
        } else if counts.skipped > 0 || counts.passed == 0 {
            RunOutcome::Partial
        } else {
            RunOutcome::Success
        }
    }

    /// The agreed exit code: 0 success, 1 failed, 2 invalid input, 3 partial (0 when the user
    /// accepts skips with `--allow-skipped`), 130 interrupted.
    pub fn exit_code(self, allow_skipped: bool) -> u8 {
        match self {
            RunOutcome::Success => 0,
            RunOutcome::Failed => 1,
            RunOutcome::Invalid => 2,
            RunOutcome::Partial if allow_skipped => 0,
            RunOutcome::Partial => 3,
            RunOutcome::Interrupted => 130,
        }
    }

    /// The word of `conformance.yaml`'s `result` and the summary.
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Success => "success",
            RunOutcome::Failed => "failure",
            RunOutcome::Partial => "partial",
            RunOutcome::Interrupted => "interrupted",
            RunOutcome::Invalid => "invalid",
        }
    }
}

impl fmt::Display for RunOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One reason scenarios were skipped, said once with how many it covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SkipReason {
    pub reason: String,
    pub scenarios: usize,
    /// The behaviour IDs of those scenarios, sorted.
    pub behaviours: Vec<String>,
}

/// The skipped scenarios grouped by reason, most common first (then by reason).
pub fn skip_reasons(scenarios: &[ScenarioResult]) -> Vec<SkipReason> {
    let mut by: BTreeMap<&str, (usize, std::collections::BTreeSet<&str>)> = BTreeMap::new();
    for s in scenarios {
        if let Verdict::Skipped { reason } = &s.verdict {
            let entry = by.entry(reason.as_str()).or_default();
            entry.0 += 1;
            entry.1.extend(s.behaviours());
        }
    }
    let mut reasons: Vec<SkipReason> = by
        .into_iter()
        .map(|(reason, (scenarios, ids))| SkipReason {
            reason: reason.to_string(),
            scenarios,
            behaviours: ids.into_iter().map(str::to_string).collect(),
        })
        .collect();
    reasons.sort_by(|a, b| b.scenarios.cmp(&a.scenarios).then(a.reason.cmp(&b.reason)));
    reasons
}

/// `1 scenario`, `2 scenarios`.
pub(crate) fn scenarios(n: usize) -> String {
    format!("{n} scenario{}", if n == 1 { "" } else { "s" })
}

/// One sentence saying why the run has its outcome, for the summary, the report's banner and
/// `conformance.yaml`.
pub fn explain(outcome: RunOutcome, counts: &Counts, feature_errors: &[String]) -> String {
    let applicable = counts.passed + counts.failed + counts.skipped;
    let skipped = match counts.skipped {
        0 => String::new(),
        n => format!("; {} of {applicable} applicable skipped", scenarios(n)),
    };
    match outcome {
        RunOutcome::Success => format!(
            "every applicable scenario ran and passed ({} passed, {} not applicable)",
            counts.passed, counts.not_applicable
        ),
        RunOutcome::Failed => format!(
            "{} of {applicable} applicable failed: the mesh is not conformant{skipped}",
            scenarios(counts.failed)
        ),
        RunOutcome::Partial if counts.skipped == 0 => format!(
            "no applicable scenario ran ({} not applicable): nothing was judged",
            scenarios(counts.not_applicable)
        ),
        RunOutcome::Partial => format!(
            "nothing failed, but {} of {applicable} applicable {} skipped: their behaviours \
             were not judged",
            scenarios(counts.skipped),
            if counts.skipped == 1 { "was" } else { "were" }
        ),
        RunOutcome::Interrupted => format!(
            "the run was interrupted after {} ({} passed, {} failed, {} skipped): no verdict",
            scenarios(applicable + counts.not_applicable),
            counts.passed,
            counts.failed,
            counts.skipped
        ),
        RunOutcome::Invalid => format!(
            "the feature set has errors, so the mesh was not judged: {}",
            feature_errors.join("; ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn counts(passed: usize, failed: usize, skipped: usize, not_applicable: usize) -> Counts {
        Counts {
            passed,
            failed,
            skipped,
            not_applicable,
        }
    }

    #[rstest]
    #[case::all_passed(counts(58, 0, 0, 3), 0, false, RunOutcome::Success)]
    #[case::one_skipped(counts(57, 0, 1, 3), 0, false, RunOutcome::Partial)]
    #[case::all_skipped(counts(0, 0, 58, 3), 0, false, RunOutcome::Partial)]
    #[case::nothing_applicable(counts(0, 0, 0, 3), 0, false, RunOutcome::Partial)]
    #[case::no_scenario(counts(0, 0, 0, 0), 0, false, RunOutcome::Partial)]
    #[case::failed_wins_over_skipped(counts(50, 1, 7, 3), 0, false, RunOutcome::Failed)]
    #[case::feature_errors_win(counts(50, 1, 7, 3), 1, false, RunOutcome::Invalid)]
    #[case::interrupted_wins(counts(50, 1, 7, 3), 1, true, RunOutcome::Interrupted)]
    #[case::interrupted_green(counts(10, 0, 0, 0), 0, true, RunOutcome::Interrupted)]
    fn outcome_of_verdicts(
        #[case] c: Counts,
        #[case] feature_errors: usize,
        #[case] interrupted: bool,
        #[case] expected: RunOutcome,
    ) {
        assert_eq!(RunOutcome::of(&c, feature_errors, interrupted), expected);
    }

    #[rstest]
    #[case(RunOutcome::Success, false, 0)]
    #[case(RunOutcome::Failed, false, 1)]
    #[case(RunOutcome::Failed, true, 1)]
    #[case(RunOutcome::Invalid, true, 2)]
    #[case(RunOutcome::Partial, false, 3)]
    #[case(RunOutcome::Partial, true, 0)]
    #[case(RunOutcome::Interrupted, true, 130)]
    fn exit_codes(#[case] outcome: RunOutcome, #[case] allow_skipped: bool, #[case] code: u8) {
        assert_eq!(outcome.exit_code(allow_skipped), code);
    }

    #[test]
    fn words_match_serde() {
        for outcome in [
            RunOutcome::Success,
            RunOutcome::Failed,
            RunOutcome::Partial,
            RunOutcome::Interrupted,
            RunOutcome::Invalid,
        ] {
            assert_eq!(
                serde_json::to_value(outcome).unwrap(),
                serde_json::Value::String(outcome.to_string())
            );
        }
    }

    fn skipped(tags: &[&str], reason: &str) -> ScenarioResult {
        ScenarioResult {
            feature: "l4/x.feature".into(),
            name: "x".into(),
            line: 3,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            behaviour_ids: vec![],
            verdict: Verdict::Skipped {
                reason: reason.into(),
            },
            duration_ms: 0,
            steps: vec![],
            observations: None,
        }
    }

    #[test]
    fn a_shared_reason_is_said_once_with_its_count() {
        let mut all: Vec<ScenarioResult> = (0..58)
            .map(|i| {
                skipped(
                    &[if i % 2 == 0 { "@L4-RR-1" } else { "@LOG-1" }],
                    "iptables is missing",
                )
            })
            .collect();
        all.push(skipped(
            &["@TD-DEF-2"],
            "the target cannot do cross-network",
        ));
        let reasons = skip_reasons(&all);
        assert_eq!(
            reasons,
            [
                SkipReason {
                    reason: "iptables is missing".into(),
                    scenarios: 58,
                    behaviours: vec!["L4-RR-1".into(), "LOG-1".into()],
                },
                SkipReason {
                    reason: "the target cannot do cross-network".into(),
                    scenarios: 1,
                    behaviours: vec!["TD-DEF-2".into()],
                },
            ]
        );
    }

    #[test]
    fn explanations_say_how_many_and_why() {
        let text = explain(RunOutcome::Partial, &counts(0, 0, 58, 3), &[]);
        assert_eq!(
            text,
            "nothing failed, but 58 scenarios of 58 applicable were skipped: their behaviours \
             were not judged"
        );
        let text = explain(RunOutcome::Failed, &counts(50, 1, 7, 3), &[]);
        assert!(
            text.starts_with("1 scenario of 58 applicable failed"),
            "{text}"
        );
        assert!(
            text.ends_with("; 7 scenarios of 58 applicable skipped"),
            "{text}"
        );
        let text = explain(RunOutcome::Partial, &counts(0, 0, 0, 3), &[]);
        assert!(text.contains("nothing was judged"), "{text}");
        let text = explain(
            RunOutcome::Invalid,
            &counts(0, 0, 0, 0),
            &["x.feature:3: no step definition matches \"When y\"".into()],
        );
        assert!(text.ends_with("x.feature:3: no step definition matches \"When y\""));
    }
}

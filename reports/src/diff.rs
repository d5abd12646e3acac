//! Differential runs: two results files of the same suite, compared per behaviour ID, with
//! the observations of the scenarios whose verdicts differ drawn side by side.

use std::collections::BTreeMap;

use meshcert_model::{LogLine, Observations, RequestBatch};
use serde::Serialize;

use crate::{Counts, RunResults, ScenarioResult, Verdict, millis};

/// One behaviour whose verdict differs between the two runs.
#[derive(Debug, Clone, Serialize)]
pub struct BehaviourDiff {
    pub id: String,
    pub a: Counts,
    pub b: Counts,
    /// Scenarios tagged with the ID whose verdicts differ (by feature file and line).
    pub scenarios: Vec<ScenarioPair>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScenarioPair {
    pub feature: String,
    pub line: usize,
    pub name: String,
    pub a: Option<ScenarioResult>,
    pub b: Option<ScenarioResult>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Diff {
    pub a: String,
    pub b: String,
    pub differing: Vec<BehaviourDiff>,
    /// Behaviour IDs with the same verdict in both runs.
    pub agreeing: Vec<String>,
}

impl Diff {
    /// Compares two runs; `a` and `b` name them in the output.
    pub fn between(a_name: &str, a: &RunResults, b_name: &str, b: &RunResults) -> Diff {
        let (by_a, by_b) = (a.by_behaviour(), b.by_behaviour());
        let ids: std::collections::BTreeSet<&String> = by_a.keys().chain(by_b.keys()).collect();
        let index = |run: &RunResults| -> BTreeMap<(String, usize), ScenarioResult> {
            run.scenarios
                .iter()
                .map(|s| ((s.feature.clone(), s.line), s.clone()))
                .collect()
        };
        let (scen_a, scen_b) = (index(a), index(b));
        let mut differing = Vec::new();
        let mut agreeing = Vec::new();
        for id in ids {
            let ca = by_a.get(id).copied().unwrap_or_default();
            let cb = by_b.get(id).copied().unwrap_or_default();
            if ca.conformance() == cb.conformance() {
                agreeing.push(id.clone());
                continue;
            }
            let keys: std::collections::BTreeSet<&(String, usize)> = scen_a
                .iter()
                .chain(scen_b.iter())
                .filter(|(_, s)| s.behaviours().any(|b| b == id))
                .map(|(k, _)| k)
                .collect();
            let scenarios = keys
                .into_iter()
                .filter_map(|key| {
                    let (sa, sb) = (scen_a.get(key), scen_b.get(key));
                    let label = |s: Option<&ScenarioResult>| s.map(|s| s.verdict.label());
                    if label(sa) == label(sb) {
                        return None;
                    }
                    let name = sa.or(sb).map(|s| s.name.clone()).unwrap_or_default();
                    Some(ScenarioPair {
                        feature: key.0.clone(),
                        line: key.1,
                        name,
                        a: sa.cloned(),
                        b: sb.cloned(),
                    })
                })
                .collect();
            differing.push(BehaviourDiff {
                id: id.clone(),
                a: ca,
                b: cb,
                scenarios,
            });
        }
        Diff {
            a: a_name.to_string(),
            b: b_name.to_string(),
            differing,
            agreeing,
        }
    }

    pub fn differing_ids(&self) -> Vec<&str> {
        self.differing.iter().map(|d| d.id.as_str()).collect()
    }

    /// The table of differing behaviours, then each differing scenario with both runs'
    /// observations in two columns `width` characters wide in all.
    pub fn render(&self, width: usize) -> String {
        let mut out = format!("a: {}\nb: {}\n", self.a, self.b);
        if self.differing.is_empty() {
            out.push_str(&format!(
                "every behaviour has the same verdict ({} behaviour IDs)\n",
                self.agreeing.len()
            ));
            return out;
        }
        out.push_str(&format!(
            "{} behaviour(s) differ, {} agree\n\n",
            self.differing.len(),
            self.agreeing.len()
        ));
        out.push_str(&format!("  {:<14} {:<38} {}\n", "behaviour", "a", "b"));
        for d in &self.differing {
            out.push_str(&format!(
                "  {:<14} {:<38} {}\n",
                d.id,
                verdict_cell(&d.a),
                verdict_cell(&d.b)
            ));
        }
        let column = width.saturating_sub(3) / 2;
        for d in &self.differing {
            for s in &d.scenarios {
                out.push_str(&format!("\n{} {}:{} {}\n", d.id, s.feature, s.line, s.name));
                let left = describe(s.a.as_ref());
                let right = describe(s.b.as_ref());
                out.push_str(&side_by_side(&left, &right, column));
            }
        }
        out
    }
}

fn verdict_cell(c: &Counts) -> String {
    format!(
        "{} ({}/{}/{}/{})",
        c.conformance(),
        c.passed,
        c.failed,
        c.skipped,
        c.not_applicable
    )
}

/// Lines that explain one scenario's verdict: the verdict, who answered each batch, faults,
/// restarts and the ztunnel's warnings and errors.
pub fn describe(scenario: Option<&ScenarioResult>) -> Vec<String> {
    let Some(s) = scenario else {
        return vec!["(not run)".into()];
    };
    let mut lines = vec![match &s.verdict {
        Verdict::Passed => "passed".to_string(),
        Verdict::Failed { step, message } => format!("FAILED at {step}: {message}"),
        Verdict::Skipped { reason } => format!("skipped: {reason}"),
        Verdict::NotApplicable { reason } => format!("not applicable: {reason}"),
    }];
    if let Some(o) = &s.observations {
        lines.extend(describe_observations(o));
    }
    lines
}

/// Who answered each batch, faults, restarts and the ztunnel's warnings and errors.
fn describe_observations(o: &Observations) -> Vec<String> {
    let mut lines = Vec::new();
    for batch in &o.batches {
        lines.extend(describe_batch(batch));
    }
    for f in &o.faults {
        lines.push(format!(
            "fault {} on {} at {:.0} ms{}",
            f.handle.fault.kind.brief(),
            f.handle.fault.pod.name,
            millis(f.handle.injected_at),
            f.undone_at.map_or(", never undone".into(), |u| format!(
                ", undone at {:.0} ms",
                millis(u)
            ))
        ));
    }
    if !o.restarts.is_empty() {
        lines.push(format!(
            "{} ztunnel restart(s), {:.0} ms in all",
            o.restarts.len(),
            o.restarts.iter().map(|r| millis(r.took)).sum::<f64>()
        ));
    }
    // The whole log when the scenario failed, else the lines its assertions read.
    let what = if o.failure_evidence.is_some() {
        "ztunnel log"
    } else {
        "ztunnel lines read"
    };
    let log = o.log();
    if !log.is_empty() {
        let notable: Vec<&LogLine> = log
            .iter()
            .filter(|l| matches!(l.level.as_str(), "warn" | "error"))
            .collect();
        let shown: Vec<&LogLine> = if notable.is_empty() {
            log.iter().rev().take(2).rev().collect()
        } else {
            notable.iter().rev().take(3).rev().copied().collect()
        };
        lines.push(format!(
            "{what}: {} lines, {} warn/error; {}:",
            log.len(),
            notable.len(),
            if notable.is_empty() {
                "last"
            } else {
                "last warn/error"
            }
        ));
        lines.extend(shown.into_iter().map(|l| format!("  {}", log_summary(l))));
    }
    lines
}

fn describe_batch(batch: &RequestBatch) -> Vec<String> {
    let worst = batch
        .records
        .iter()
        .map(|r| millis(r.latency))
        .fold(0.0, f64::max);
    let mut failed: BTreeMap<String, usize> = BTreeMap::new();
    for failure in batch.records.iter().filter_map(|r| r.failure()) {
        *failed.entry(failure.to_string()).or_default() += 1;
    }
    let mut lines = vec![format!(
        "{} requests to {}, slowest {worst:.0} ms",
        batch.records.len(),
        batch.plan.url
    )];
    for (replica, n) in batch.counts() {
        lines.push(format!("  {replica} x{n}"));
    }
    for (why, n) in &failed {
        lines.push(format!("  failed ({why}) x{n}"));
    }
    lines
}

/// `level target message` and the fields that tell most (who, and what went wrong).
fn log_summary(line: &LogLine) -> String {
    let mut out = format!("{} {} {}", line.level, line.target, line.message);
    for key in [
        "dst.workload",
        "dst.addr",
        "error",
        "endpoint",
        "consecutive_failures",
    ] {
        if let Some(v) = line.fields.get(key) {
            out.push_str(&format!(" {key}={v}"));
        }
    }
    out
}

/// Greedy word wrap; words longer than a line are cut. Continuation lines keep the
/// first line's indent.
fn wrap(line: &str, width: usize) -> Vec<String> {
    if width == 0 || line.trim().is_empty() {
        return vec![String::new()];
    }
    let leading = line.len() - line.trim_start_matches(' ').len();
    let indent = " ".repeat(if leading < width / 2 { leading } else { 0 });
    let avail = width - indent.len();
    let mut out = Vec::new();
    let mut current = String::new();
    for word in line.split_whitespace() {
        let mut word: Vec<char> = word.chars().collect();
        while !word.is_empty() {
            let used = current.chars().count();
            let need = if used == 0 {
                word.len()
            } else {
                used + 1 + word.len()
            };
            if need <= avail {
                if used > 0 {
                    current.push(' ');
                }
                current.extend(word.drain(..));
            } else if used > 0 {
                out.push(format!("{indent}{}", std::mem::take(&mut current)));
            } else {
                let cut = avail.max(1).min(word.len());
                out.push(format!("{indent}{}", word.drain(..cut).collect::<String>()));
            }
        }
    }
    if !current.is_empty() {
        out.push(format!("{indent}{current}"));
    }
    out
}

/// Two columns of `column` characters, separated by ` | `.
pub fn side_by_side(left: &[String], right: &[String], column: usize) -> String {
    let l: Vec<String> = left.iter().flat_map(|s| wrap(s, column)).collect();
    let r: Vec<String> = right.iter().flat_map(|s| wrap(s, column)).collect();
    let mut out = String::new();
    for i in 0..l.len().max(r.len()) {
        let a = l.get(i).map(String::as_str).unwrap_or("");
        let b = r.get(i).map(String::as_str).unwrap_or("");
        let pad = column.saturating_sub(a.chars().count());
        out.push_str(format!("{a}{} | {b}", " ".repeat(pad)).trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use meshcert_model::{
        DeploymentRef, FailureEvidence, RequestFailure, RequestOutcome, RequestPlan, RequestRecord,
    };

    use super::*;
    use crate::{SCHEMA_VERSION, TargetSummary};

    fn scenario(
        feature: &str,
        line: usize,
        tags: &[&str],
        verdict: Verdict,
        obs: Option<Observations>,
    ) -> ScenarioResult {
        ScenarioResult {
            feature: feature.into(),
            name: format!("scenario at {line}"),
            line,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            behaviour_ids: tags
                .iter()
                .map(|t| t.trim_start_matches('@').to_string())
                .collect(),
            verdict,
            steps: vec![],
            duration_ms: 10,
            observations: obs,
        }
    }

    fn run(scenarios: Vec<ScenarioResult>) -> RunResults {
        RunResults {
            schema_version: SCHEMA_VERSION,
            meshcert_version: "0.1.0".into(),
            target: TargetSummary::default(),
            run_id: "abc123".into(),
            seed: 7,
            started_at: 0,
            duration_ms: 0,
            scenarios,
            interrupted: false,
            feature_errors: vec![],
        }
    }

    fn failed() -> Verdict {
        Verdict::Failed {
            step: "Then every replica answered".into(),
            message: "in-ambient-a answered 20 of 20".into(),
        }
    }

    fn record(latency: Duration, outcome: RequestOutcome) -> RequestRecord {
        RequestRecord {
            index: 0,
            started_at: Duration::ZERO,
            latency,
            source: None,
            outcome,
        }
    }

    /// Answers from `replicas` in turn, then `failures` timeouts.
    fn batch(replicas: &[&str], failures: usize) -> RequestBatch {
        let answered = replicas.iter().map(|r| {
            let outcome = RequestOutcome::Answered {
                replica: r.to_string(),
                status: 200,
            };
            record(Duration::from_millis(3), outcome)
        });
        let timeout = RequestOutcome::Failed {
            failure: RequestFailure::Timeout,
        };
        let failed = (0..failures).map(|_| record(Duration::from_secs(2), timeout.clone()));
        let records: Vec<RequestRecord> = answered.chain(failed).collect();
        RequestBatch {
            plan: RequestPlan {
                client: DeploymentRef::new("httpbin", "client-in-ambient"),
                url: "http://in-ambient:8000/hostname".into(),
                count: records.len() as u32,
                interval: Duration::ZERO,
                timeout: Duration::from_secs(2),
            },
            records,
        }
    }

    fn batches(batches: Vec<RequestBatch>) -> Option<Observations> {
        Some(Observations {
            batches,
            ..Observations::default()
        })
    }

    /// Scenarios both runs agree on.
    fn agreed() -> [ScenarioResult; 2] {
        [
            scenario("l4/rr.feature", 9, &["@L4-RR-1"], Verdict::Passed, None),
            scenario("log.feature", 3, &["@LOG-1"], Verdict::Passed, None),
        ]
    }

    /// A run where L4-RR-1 passes and L4-OD-1 does not apply.
    fn run_before_the_defect() -> RunResults {
        run(vec![
            scenario(
                "l4/rr.feature",
                5,
                &["@L4-RR-1"],
                Verdict::Passed,
                batches(vec![batch(&["x", "y"], 0)]),
            ),
            scenario(
                "od.feature",
                3,
                &["@L4-OD-1"],
                Verdict::NotApplicable {
                    reason: "solo".into(),
                },
                None,
            ),
        ]
        .into_iter()
        .chain(agreed())
        .collect())
    }

    /// A run where L4-RR-1 fails, with its evidence, and L4-OD-1 passes.
    fn run_with_the_defect() -> RunResults {
        let warning = LogLine {
            observed_at: Duration::from_millis(1),
            timestamp: None,
            level: "warn".into(),
            target: "proxy".into(),
            message: "connect failed".into(),
            fields: BTreeMap::new(),
            raw: "connect failed".into(),
        };
        let mut observed = batches(vec![batch(&["x", "x"], 1)]).unwrap();
        observed.failure_evidence = Some(FailureEvidence {
            ztunnel_log: vec![warning],
            ..FailureEvidence::default()
        });
        run(vec![
            scenario("l4/rr.feature", 5, &["@L4-RR-1"], failed(), Some(observed)),
            scenario("od.feature", 3, &["@L4-OD-1"], Verdict::Passed, None),
        ]
        .into_iter()
        .chain(agreed())
        .collect())
    }

    #[test]
    fn only_behaviours_whose_verdict_changes_are_listed_with_their_scenarios() {
        let (a, b) = (run_before_the_defect(), run_with_the_defect());
        let diff = Diff::between("reference", &a, "reference defect=x", &b);
        assert_eq!(diff.differing_ids(), ["L4-OD-1", "L4-RR-1"]);
        assert_eq!(diff.agreeing, ["LOG-1"]);
        let rr = &diff.differing[1];
        assert_eq!(rr.scenarios.len(), 1, "the scenario at line 9 agrees");
        assert_eq!(rr.scenarios[0].line, 5);
        let text = diff.render(100);
        assert!(text.contains("2 behaviour(s) differ, 1 agree"), "{text}");
        assert!(
            text.contains("L4-RR-1        conformant (2/0/0/0)"),
            "{text}"
        );
        assert!(text.contains("NOT conformant (1/1/0/0)"), "{text}");
        // Side by side: a's observations left, b's right.
        assert!(text.contains("passed"), "{text}");
        assert!(
            text.contains("| FAILED at Then every replica answered"),
            "{text}"
        );
        assert!(
            text.contains("  x x1") && text.contains("|   failed (timeout) x1"),
            "{text}"
        );
        assert!(
            text.contains("| ztunnel log: 1 lines, 1 warn/error; last"),
            "{text}"
        );
        assert!(text.contains("warn proxy connect failed"), "{text}");
        for line in text.lines() {
            assert!(line.chars().count() <= 100, "too wide: {line:?}");
        }
    }

    #[test]
    fn identical_runs_have_no_difference() {
        let a = run(vec![scenario(
            "a.feature",
            1,
            &["@LOG-1"],
            Verdict::Passed,
            None,
        )]);
        let diff = Diff::between("a", &a, "b", &a.clone());
        assert!(diff.differing.is_empty());
        assert!(
            diff.render(80)
                .contains("every behaviour has the same verdict (1 behaviour IDs)")
        );
    }

    #[test]
    fn columns_wrap_and_pad() {
        let text = side_by_side(&["abcdefgh".into()], &["x".into(), "y".into()], 5);
        assert_eq!(text, "abcde | x\nfgh   | y\n");
    }

    #[test]
    fn words_wrap_at_spaces_and_keep_the_indent() {
        assert_eq!(wrap("one two three four", 9), ["one two", "three", "four"]);
        assert_eq!(
            wrap("  in-ambient-a x20 and more", 14),
            ["  in-ambient-a", "  x20 and more"]
        );
        assert_eq!(wrap("", 5), [""]);
        for line in wrap("a very-long-word-that-does-not-fit here", 10) {
            assert!(line.chars().count() <= 10, "{line:?}");
        }
    }
}

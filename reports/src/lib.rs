//! The results of a meshcert run: a typed, versioned model (`results.json`), the verdict per
//! behaviour ID derived from it, and the plain-text summary printed at the end of a run.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

pub mod conformance;
pub mod diff;
pub mod html;
pub mod outcome;

pub use meshcert_model::Observations;
pub use outcome::{RunOutcome, SkipReason};

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Bumped on every incompatible change of the JSON shape. 2: behaviour IDs, step timings,
/// run id and seed.
pub const SCHEMA_VERSION: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot read results file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write results file {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("results file {path} is not valid meshcert results: {message}")]
    Malformed { path: String, message: String },
    #[error(
        "results file {path} has schema version {found}; this meshcert reads version {expected}: \
         re-run the suite with this version"
    )]
    Schema {
        path: String,
        found: u32,
        expected: u32,
    },
}

/// The temporary name `write_atomically` uses for `path`: hidden, beside it (so the rename
/// stays on one file system), and naming this process.
pub fn temporary_path(path: &Path) -> std::path::PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Writes a whole file or nothing: a temporary file in the same directory, then a rename, so
/// a reader (or a run killed halfway) never sees half of it.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    let tmp = temporary_path(path);
    let error = |source| ReportError::Write {
        path: path.display().to_string(),
        source,
    };
    if let Err(e) = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(error(e));
    }
    Ok(())
}

/// A duration in milliseconds, as the writers print it.
pub fn millis(d: Duration) -> f64 {
    d.as_secs() as f64 * 1e3 + d.subsec_nanos() as f64 / 1e6
}

/// RFC 3339 UTC time of Unix seconds.
pub fn format_timestamp(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .map(|t| t.to_string())
        .unwrap_or_else(|| format!("{secs} seconds after the Unix epoch"))
}

/// The outcome of one scenario.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "verdict")]
pub enum Verdict {
    Passed,
    Failed {
        step: String,
        message: String,
    },
    /// The mesh under test cannot run it (missing capability, no network namespaces, ...).
    Skipped {
        reason: String,
    },
    /// It belongs to the other profile.
    NotApplicable {
        reason: String,
    },
}

impl Verdict {
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Passed => "passed",
            Verdict::Failed { .. } => "failed",
            Verdict::Skipped { .. } => "skipped",
            Verdict::NotApplicable { .. } => "not applicable",
        }
    }
}

/// What was run against.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TargetSummary {
    pub kind: String,
    pub name: String,
    pub version: String,
    pub profile: String,
    pub capabilities: Vec<String>,
    /// Settings that change the target's behaviour (e.g. a reference defect switch).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioResult {
    /// Feature file path, relative to the features directory.
    pub feature: String,
    pub name: String,
    pub line: usize,
    pub tags: Vec<String>,
    /// The behaviour IDs among the tags (feature, rule, scenario and examples tags).
    pub behaviour_ids: Vec<String>,
    #[serde(flatten)]
    pub verdict: Verdict,
    pub duration_ms: u64,
    /// Every step with its outcome and time.
    #[serde(default)]
    pub steps: Vec<StepTiming>,
    /// What the scenario observed (requests, faults, log lines), for reports; none when it
    /// had no World (it never started).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observations: Option<Observations>,
}

/// One step of a scenario.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepTiming {
    /// Keyword and text, e.g. `When the client sends 12 requests to "..."`.
    pub step: String,
    /// `passed`, `failed` or `skipped`.
    pub outcome: String,
    pub duration_ms: u64,
}

impl ScenarioResult {
    /// Behaviour IDs (`@L4-RR-1` style tags, stripped of `@`).
    pub fn behaviours(&self) -> impl Iterator<Item = &str> {
        self.tags
            .iter()
            .map(|t| t.trim_start_matches('@'))
            .filter(|t| is_behaviour_id(t))
    }

    /// The feature's folder (`l4`, `traffic-distribution`), `general` for top-level files.
    pub fn area(&self) -> &str {
        match self.feature.split_once('/') {
            Some((area, _)) if !area.is_empty() => area,
            _ => "general",
        }
    }
}

/// `L4-RR-1`, `TD-MODE-PC`, `LOG-2`: upper-case words joined by `-`, with a letter first.
pub fn is_behaviour_id(tag: &str) -> bool {
    let tag = tag.trim_start_matches('@');
    tag.contains('-')
        && tag.starts_with(|c: char| c.is_ascii_uppercase())
        && tag
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-')
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResults {
    pub schema_version: u32,
    pub meshcert_version: String,
    pub target: TargetSummary,
    /// The run's id (namespace names, the kube run label).
    pub run_id: String,
    /// The seed every generated name of the run derives from.
    pub seed: u64,
    /// Seconds since the Unix epoch.
    pub started_at: u64,
    pub duration_ms: u64,
    pub scenarios: Vec<ScenarioResult>,
    /// The run was stopped (SIGINT, SIGTERM) before every scenario ended.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
    /// Errors of the feature set met during the run, one line each with file and line: the
    /// run gives no verdict (`meshcert run` refuses most of them before starting).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub feature_errors: Vec<String>,
}

/// The verdict of one behaviour ID over every scenario tagged with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Conformance {
    /// At least one scenario passed and none failed.
    Conformant,
    NotConformant,
    /// Every scenario was skipped.
    Skipped,
    NotApplicable,
}

impl fmt::Display for Conformance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Conformance::Conformant => "conformant",
            Conformance::NotConformant => "NOT conformant",
            Conformance::Skipped => "skipped",
            Conformance::NotApplicable => "not applicable",
        })
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub not_applicable: usize,
}

impl Counts {
    pub fn merge(&mut self, other: &Counts) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.skipped += other.skipped;
        self.not_applicable += other.not_applicable;
    }

    pub fn add(&mut self, verdict: &Verdict) {
        match verdict {
            Verdict::Passed => self.passed += 1,
            Verdict::Failed { .. } => self.failed += 1,
            Verdict::Skipped { .. } => self.skipped += 1,
            Verdict::NotApplicable { .. } => self.not_applicable += 1,
        }
    }

    pub fn conformance(&self) -> Conformance {
        if self.failed > 0 {
            Conformance::NotConformant
        } else if self.passed > 0 {
            Conformance::Conformant
        } else if self.skipped > 0 {
            Conformance::Skipped
        } else {
            Conformance::NotApplicable
        }
    }
}

impl RunResults {
    pub fn counts(&self) -> Counts {
        let mut counts = Counts::default();
        self.scenarios.iter().for_each(|s| counts.add(&s.verdict));
        counts
    }

    /// What the run as a whole shows: success only when every applicable scenario passed.
    pub fn outcome(&self) -> RunOutcome {
        RunOutcome::of(&self.counts(), self.feature_errors.len(), self.interrupted)
    }

    /// Why the run has its outcome, in one sentence.
    pub fn outcome_text(&self) -> String {
        outcome::explain(self.outcome(), &self.counts(), &self.feature_errors)
    }

    /// The skipped scenarios grouped by reason, most common first.
    pub fn skip_reasons(&self) -> Vec<SkipReason> {
        outcome::skip_reasons(&self.scenarios)
    }

    /// Counts per behaviour ID, sorted by ID.
    pub fn by_behaviour(&self) -> BTreeMap<String, Counts> {
        let mut by: BTreeMap<String, Counts> = BTreeMap::new();
        for scenario in &self.scenarios {
            for id in scenario.behaviours() {
                by.entry(id.to_string()).or_default().add(&scenario.verdict);
            }
        }
        by
    }

    /// Writes `report.html` and `conformance.yaml` beside each other in `dir`.
    pub fn write_reports(&self, dir: &Path) -> Result<(), ReportError> {
        for (name, text) in [
            ("report.html", html::render(self)),
            (
                "conformance.yaml",
                conformance::ConformanceReport::of(self).to_yaml(),
            ),
        ] {
            write_atomically(&dir.join(name), text.as_bytes())?;
        }
        Ok(())
    }

    pub fn write_json(&self, path: &Path) -> Result<(), ReportError> {
        let text = serde_json::to_string_pretty(self).expect("results always serialise");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| ReportError::Write {
                path: path.display().to_string(),
                source,
            })?;
        }
        write_atomically(path, text.as_bytes())
    }

    pub fn read_json(path: &Path) -> Result<Self, ReportError> {
        let text = std::fs::read_to_string(path).map_err(|source| ReportError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse_json(&text, &path.display().to_string())
    }

    /// Parses results text, checking the schema version before the shape; a mismatch names the
    /// JSON path, line and column.
    pub fn parse_json(text: &str, origin: &str) -> Result<Self, ReportError> {
        let malformed = |message: String| ReportError::Malformed {
            path: origin.to_string(),
            message,
        };
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| malformed(e.to_string()))?;
        let found = value
            .get("schema_version")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| malformed("missing field `schema_version`".to_string()))?
            as u32;
        if found != SCHEMA_VERSION {
            return Err(ReportError::Schema {
                path: origin.to_string(),
                found,
                expected: SCHEMA_VERSION,
            });
        }
        // From the text, not the value: serde_json then says the line and column too.
        let mut reader = serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(&mut reader)
            .map_err(|e| malformed(format!("at `{}`: {}", e.path(), e.inner())))
    }

    /// The closing summary: a line per behaviour ID, each failed scenario, each reason for
    /// skips once with its count, one count line whose shape CI reads (`N passed, N failed,
    /// N skipped`), and last the run's outcome with why.
    pub fn summary_text(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "meshcert {} against {} ({}, profile {})\n",
            self.meshcert_version, self.target.name, self.target.kind, self.target.profile
        ));
        for (id, counts) in self.by_behaviour() {
            out.push_str(&format!(
                "  {id:<14} {:<15} ({} passed, {} failed, {} skipped, {} not applicable)\n",
                counts.conformance().to_string(),
                counts.passed,
                counts.failed,
                counts.skipped,
                counts.not_applicable
            ));
        }
        for s in &self.scenarios {
            if let Verdict::Failed { step, message } = &s.verdict {
                out.push_str(&format!(
                    "  FAILED {}:{} {}\n    step: {step}\n    {}\n",
                    s.feature,
                    s.line,
                    s.name,
                    message.lines().collect::<Vec<_>>().join("\n    ")
                ));
            }
        }
        for skip in self.skip_reasons() {
            out.push_str(&format!(
                "  skipped {} ({}): {}\n",
                outcome::scenarios(skip.scenarios),
                behaviour_list(&skip.behaviours),
                skip.reason
            ));
        }
        for error in &self.feature_errors {
            out.push_str(&format!("  feature error: {error}\n"));
        }
        let c = self.counts();
        out.push_str(&format!(
            "scenarios: {} passed, {} failed, {} skipped, {} not applicable\n",
            c.passed, c.failed, c.skipped, c.not_applicable
        ));
        out.push_str(&format!(
            "result: {}: {}\n",
            self.outcome(),
            self.outcome_text()
        ));
        out
    }
}

/// A few IDs by name, many by count: a reason shared by the whole suite stays one line.
pub(crate) fn behaviour_list(ids: &[String]) -> String {
    const NAMED: usize = 6;
    match ids.len() {
        0 => "no behaviour ID".into(),
        n if n <= NAMED => ids.join(", "),
        n => format!("{n} behaviours: {}, ...", ids[..NAMED - 1].join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[test]
    fn atomic_writes_replace_the_whole_file_and_leave_no_temporary() {
        let dir = std::env::temp_dir().join(format!("meshcert-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("results.json");
        std::fs::write(&path, "stale").unwrap();
        write_atomically(&path, b"fresh").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "fresh");
        assert_eq!(
            temporary_path(&path),
            dir.join(format!(".results.json.tmp-{}", std::process::id()))
        );
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["results.json"]);
        // A directory that does not exist: an error naming the file, and nothing written.
        let err = write_atomically(&dir.join("no/such/x.json"), b"x").unwrap_err();
        assert!(err.to_string().contains("no/such/x.json"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn scenario(tags: &[&str], verdict: Verdict) -> ScenarioResult {
        ScenarioResult {
            feature: "l4/x.feature".into(),
            name: "x".into(),
            line: 3,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            behaviour_ids: tags
                .iter()
                .map(|t| t.trim_start_matches('@').to_string())
                .collect(),
            verdict,
            steps: vec![],
            duration_ms: 5,
            observations: None,
        }
    }

    fn results(scenarios: Vec<ScenarioResult>) -> RunResults {
        RunResults {
            schema_version: SCHEMA_VERSION,
            meshcert_version: "0.1.0".into(),
            target: TargetSummary::default(),
            run_id: "abc123".into(),
            seed: 7,
            started_at: 0,
            duration_ms: 10,
            scenarios,
            interrupted: false,
            feature_errors: vec![],
        }
    }

    #[rstest]
    #[case("@L4-RR-1", true)]
    #[case("TD-MODE-PC", true)]
    #[case("LOG-2", true)]
    #[case("@profile-solo", false)]
    #[case("@serial", false)]
    #[case("L4", false)]
    fn behaviour_ids(#[case] tag: &str, #[case] is_id: bool) {
        assert_eq!(is_behaviour_id(tag), is_id);
    }

    #[test]
    fn conformance_per_behaviour() {
        let failed = Verdict::Failed {
            step: "Then x".into(),
            message: "y".into(),
        };
        let r = results(vec![
            scenario(&["@L4-RR-1", "@L4-RR-2"], Verdict::Passed),
            scenario(&["@L4-RR-2"], failed),
            scenario(
                &["@L4-OD-3"],
                Verdict::NotApplicable {
                    reason: "solo".into(),
                },
            ),
            scenario(
                &["@L4-FO-1"],
                Verdict::Skipped {
                    reason: "no netns".into(),
                },
            ),
        ]);
        let by = r.by_behaviour();
        assert_eq!(by["L4-RR-1"].conformance(), Conformance::Conformant);
        assert_eq!(by["L4-RR-2"].conformance(), Conformance::NotConformant);
        assert_eq!(by["L4-OD-3"].conformance(), Conformance::NotApplicable);
        assert_eq!(by["L4-FO-1"].conformance(), Conformance::Skipped);
        let text = r.summary_text();
        assert!(
            text.contains(
                "\nscenarios: 1 passed, 1 failed, 1 skipped, 1 not applicable\nresult: failure: "
            ),
            "{text}"
        );
        assert!(
            text.contains("  skipped 1 scenario (L4-FO-1): no netns\n"),
            "{text}"
        );
    }

    #[test]
    fn a_reason_shared_by_every_scenario_is_said_once_and_the_run_is_partial() {
        let why = "iptables is missing: apt-get install iptables";
        let r = results(
            (0..58)
                .map(|i| {
                    let mut s = scenario(
                        &[&format!("@ID-{}", i % 29)],
                        Verdict::Skipped { reason: why.into() },
                    );
                    s.line = i;
                    s
                })
                .collect(),
        );
        assert_eq!(r.outcome(), RunOutcome::Partial);
        let text = r.summary_text();
        assert_eq!(text.matches(why).count(), 1, "{text}");
        assert!(
            text.contains(&format!("  skipped 58 scenarios (29 behaviours: ID-0, ID-1, ID-10, ID-11, ID-12, ...): {why}\n")),
            "{text}"
        );
        assert!(text.ends_with(
            "result: partial: nothing failed, but 58 scenarios of 58 applicable were skipped: \
             their behaviours were not judged\n"
        ));
    }

    #[test]
    fn interrupted_and_feature_errors_survive_the_round_trip() {
        let mut r = results(vec![scenario(&["@LOG-1"], Verdict::Passed)]);
        assert_eq!(r.outcome(), RunOutcome::Success);
        let text = serde_json::to_string(&r).unwrap();
        assert!(!text.contains("interrupted") && !text.contains("feature_errors"));
        r.interrupted = true;
        r.feature_errors = vec!["x.feature:3: oops".into()];
        let back = RunResults::parse_json(&serde_json::to_string(&r).unwrap(), "r.json").unwrap();
        assert_eq!(back.outcome(), RunOutcome::Interrupted);
        assert_eq!(back, r);
    }

    #[test]
    fn round_trip_and_schema_check() {
        let r = results(vec![scenario(&["@LOG-1"], Verdict::Passed)]);
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(RunResults::parse_json(&text, "r.json").unwrap(), r);
        let err = RunResults::parse_json("{\"scenarios\": []}", "bad.json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("schema_version"), "{err}");
    }
}

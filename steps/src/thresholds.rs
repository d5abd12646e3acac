//! The numbers that decide verdicts and that the documentation does not give (detection window,
//! failure budget, recovery window, log and drop deadlines, false-alarm rate): declared once per
//! profile in `features/thresholds/<profile>.yaml`, versioned, written into every report, and
//! replaced as a whole by a user certifying their own mesh (`--thresholds FILE`). Features name
//! them ("the detection window"); none is derived from the reference's own timers.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use meshcert_mesh::wait::TimeScale;
use serde::{Deserialize, Deserializer};

/// The version of the thresholds file format this meshcert reads.
pub const THRESHOLDS_VERSION: u32 = 2;

/// Declared thresholds, as read from a thresholds file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Thresholds {
    pub version: u32,
    /// False-alarm rate of each statistical step that names "the declared false-alarm rate".
    pub false_alarm_rate: f64,
    /// How long after a fault the mesh may take to detect it (L4-FO-2, TD-FO-1).
    #[serde(deserialize_with = "duration")]
    pub detection_window: Duration,
    /// Requests that may fail while a fault is being detected (L4-FO-2).
    pub failure_budget: u32,
    /// How long after a fault is removed traffic may take to return (L4-FO-4, TD-FO-1).
    #[serde(deserialize_with = "duration")]
    pub recovery_window: Duration,
    /// How long after a pod's readiness probe starts failing its endpoint may still be picked:
    /// the kubelet's probes plus the control plane's push (L4-FO-2, TD-FO-1).
    #[serde(deserialize_with = "duration")]
    pub readiness_window: Duration,
    /// How long after a fault the outlier-detection log lines may take (L4-OD-3..6).
    #[serde(deserialize_with = "duration")]
    pub log_deadline: Duration,
    /// How fast a connection that must be dropped fails (TD-ITP-1: "dropped, not left hanging").
    #[serde(deserialize_with = "duration")]
    pub drop_deadline: Duration,
    /// Where they were read from, for the report.
    #[serde(skip)]
    pub source: PathBuf,
    /// How much every window and request timeout of a step is stretched (`MESHCERT_TIME_SCALE`,
    /// set by the runner): steps resolve their bounds through it, so the fields above and the
    /// report keep the declared numbers.
    #[serde(skip)]
    pub time_scale: TimeScale,
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    meshcert_model::duration::parse(&text).map_err(serde::de::Error::custom)
}

impl Thresholds {
    /// The declared thresholds of a profile in a feature set: `<features>/thresholds/<profile>.yaml`.
    pub fn path_for(features: &Path, profile: &str) -> PathBuf {
        features.join("thresholds").join(format!("{profile}.yaml"))
    }

    /// Reads and checks a thresholds file; errors name the file, the line and the field.
    pub fn load(path: &Path) -> Result<Thresholds, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read thresholds file {}: {e}", path.display()))?;
        let mut thresholds: Thresholds = serde_saphyr::from_str(&text).map_err(|e| {
            // The parser's first line names line, column and field; the rest is a snippet.
            let e = e.to_string();
            let first = e.lines().next().unwrap_or_default();
            format!(
                "thresholds file {}: {}",
                path.display(),
                first.trim_start_matches("error: ")
            )
        })?;
        thresholds
            .validate()
            .map_err(|e| format!("thresholds file {}: {e}", path.display()))?;
        thresholds.source = path.to_path_buf();
        Ok(thresholds)
    }

    fn validate(&self) -> Result<(), String> {
        if self.version != THRESHOLDS_VERSION {
            return Err(format!(
                "field `version` is {}; this meshcert reads version {THRESHOLDS_VERSION} \
                 (version 2 added `readinessWindow`)",
                self.version
            ));
        }
        if !(self.false_alarm_rate > 0.0 && self.false_alarm_rate < 0.5) {
            return Err(format!(
                "field `falseAlarmRate` must be in (0, 0.5), not {}",
                self.false_alarm_rate
            ));
        }
        for (field, value) in [
            ("detectionWindow", self.detection_window),
            ("recoveryWindow", self.recovery_window),
            ("readinessWindow", self.readiness_window),
            ("logDeadline", self.log_deadline),
            ("dropDeadline", self.drop_deadline),
        ] {
            if value.is_zero() {
                return Err(format!("field `{field}` must be longer than 0s"));
            }
        }
        Ok(())
    }

    /// Every threshold by its file name, for the report's settings.
    pub fn settings(&self) -> BTreeMap<String, String> {
        let mut settings = BTreeMap::new();
        let mut put = |name: &str, value: String| {
            settings.insert(format!("threshold {name}"), value);
        };
        put("file", self.source.display().to_string());
        put("version", self.version.to_string());
        put("falseAlarmRate", self.false_alarm_rate.to_string());
        put("detectionWindow", format!("{:?}", self.detection_window));
        put("failureBudget", self.failure_budget.to_string());
        put("recoveryWindow", format!("{:?}", self.recovery_window));
        put("readinessWindow", format!("{:?}", self.readiness_window));
        put("logDeadline", format!("{:?}", self.log_deadline));
        put("dropDeadline", format!("{:?}", self.drop_deadline));
        settings
    }

    /// The declared window, unscaled; steps judge with [`crate::params::Window::resolve`].
    pub fn window(&self, name: WindowName) -> Duration {
        match name {
            WindowName::Detection => self.detection_window,
            WindowName::Recovery => self.recovery_window,
            WindowName::Readiness => self.readiness_window,
            WindowName::Log => self.log_deadline,
            WindowName::Drop => self.drop_deadline,
        }
    }
}

/// A declared time bound, as a feature names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowName {
    Detection,
    Recovery,
    Readiness,
    Log,
    Drop,
}

impl FromStr for WindowName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "the detection window" => Ok(WindowName::Detection),
            "the recovery window" => Ok(WindowName::Recovery),
            "the readiness window" => Ok(WindowName::Readiness),
            "the log deadline" => Ok(WindowName::Log),
            "the drop deadline" => Ok(WindowName::Drop),
            other => Err(format!(
                "{other:?} names no declared threshold (the detection window, the recovery \
                 window, the readiness window, the log deadline, the drop deadline)"
            )),
        }
    }
}

impl fmt::Display for WindowName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WindowName::Detection => "the detection window",
            WindowName::Recovery => "the recovery window",
            WindowName::Readiness => "the readiness window",
            WindowName::Log => "the log deadline",
            WindowName::Drop => "the drop deadline",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("meshcert-thresholds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    const GOOD: &str = "version: 2\nfalseAlarmRate: 0.00001\ndetectionWindow: 1s\n\
        failureBudget: 2\nrecoveryWindow: 3s\nreadinessWindow: 10s\nlogDeadline: 2s\n\
        dropDeadline: 1s\n";

    #[test]
    fn the_bundled_files_load() {
        let features = Path::new(env!("CARGO_MANIFEST_DIR")).join("../features");
        for profile in ["solo", "istio"] {
            let t = Thresholds::load(&Thresholds::path_for(&features, profile)).unwrap();
            assert_eq!(t.version, THRESHOLDS_VERSION);
            assert!(t.settings().contains_key("threshold detectionWindow"));
        }
    }

    #[test]
    fn a_good_file_reads_every_field() {
        let t = Thresholds::load(&write("good.yaml", GOOD)).unwrap();
        assert_eq!(t.detection_window, Duration::from_secs(1));
        assert_eq!(t.failure_budget, 2);
        assert_eq!(t.window(WindowName::Recovery), Duration::from_secs(3));
    }

    #[test]
    fn mistakes_name_the_file_line_and_field() {
        let typo = GOOD.replace("failureBudget", "failureBugdet");
        let err = Thresholds::load(&write("typo.yaml", &typo)).unwrap_err();
        assert!(
            err.contains("typo.yaml") && err.contains("failureBugdet"),
            "{err}"
        );
        assert!(err.contains("line 4"), "names the line: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        let old = GOOD.replace("version: 2", "version: 7");
        let err = Thresholds::load(&write("old.yaml", &old)).unwrap_err();
        assert!(err.contains("version") && err.contains('7'), "{err}");
        let bad = GOOD.replace("1s\nfailure", "soon\nfailure");
        let err = Thresholds::load(&write("bad.yaml", &bad)).unwrap_err();
        assert!(err.contains("bad.yaml") && err.contains("line 3"), "{err}");
        assert!(err.contains("\"soon\" is not a duration"), "{err}");
    }

    #[test]
    fn windows_parse_by_name() {
        assert_eq!("the detection window".parse(), Ok(WindowName::Detection));
        assert!("the coffee break".parse::<WindowName>().is_err());
    }
}

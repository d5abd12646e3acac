//! Typed step parameters: each parses with a regex and a `FromStr` that can fail.

use std::str::FromStr;
use std::time::Duration;

use cucumber::Parameter;

use crate::thresholds::{Thresholds, WindowName};
use meshcert_model::{PriorityLevel, TrafficDistribution};

/// `first`, `second`, `third`, ... or `1st`, `2nd`, `4th`: a 0-based index into a pod list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Parameter)]
#[param(
    name = "ordinal",
    regex = r"first|second|third|fourth|fifth|\d+(?:st|nd|rd|th)"
)]
pub struct Ordinal(pub usize);

impl FromStr for Ordinal {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let n = match s {
            "first" => 1,
            "second" => 2,
            "third" => 3,
            "fourth" => 4,
            "fifth" => 5,
            other => other
                .trim_end_matches(|c: char| c.is_ascii_alphabetic())
                .parse::<usize>()
                .map_err(|e| format!("bad ordinal {other:?}: {e}"))?,
        };
        if n == 0 {
            return Err("ordinals start at 1st".into());
        }
        Ok(Ordinal(n - 1))
    }
}

/// `150ms`, `2s`, `1.5s`: the regex keeps step text to milliseconds and seconds; the value is
/// read by the one duration parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Parameter)]
#[param(name = "duration", regex = r"\d+(?:\.\d+)?(?:ms|s)")]
pub struct Span(pub Duration);

impl FromStr for Span {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        meshcert_model::duration::parse(s).map(Span)
    }
}

/// A false-alarm rate: `a false-alarm rate of 0.001` (a probability strictly between 0 and 0.5)
/// or `the declared false-alarm rate` (the thresholds file's).
#[derive(Debug, Clone, Copy, PartialEq, Parameter)]
#[param(
    name = "rate",
    regex = r"a false-alarm rate of 0\.\d+|the declared false-alarm rate"
)]
pub enum Rate {
    Stated(f64),
    Declared,
}

impl Rate {
    pub fn resolve(self, thresholds: &Thresholds) -> f64 {
        match self {
            Rate::Stated(p) => p,
            Rate::Declared => thresholds.false_alarm_rate,
        }
    }
}

impl FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "the declared false-alarm rate" {
            return Ok(Rate::Declared);
        }
        let number = s.strip_prefix("a false-alarm rate of ").unwrap_or(s);
        let p: f64 = number
            .parse()
            .map_err(|e| format!("bad rate {number:?}: {e}"))?;
        if !(p > 0.0 && p < 0.5) {
            return Err(format!("a false-alarm rate must be in (0, 0.5), got {p}"));
        }
        Ok(Rate::Stated(p))
    }
}

/// A time bound: `2s`, `150ms`, or a declared one by name (`the detection window`, `the
/// recovery window`, `the log deadline`, `the drop deadline`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Parameter)]
#[param(
    name = "window",
    regex = r"\d+(?:\.\d+)?(?:ms|s)|the detection window|the recovery window|the readiness window|the log deadline|the drop deadline"
)]
pub enum Window {
    Stated(Duration),
    Declared(WindowName),
}

impl Window {
    /// The bound a step judges or waits with: stated or declared, stretched by the run's time
    /// scale. Every window of a step is scaled here and nowhere else.
    pub fn resolve(self, thresholds: &Thresholds) -> Duration {
        let declared = match self {
            Window::Stated(d) => d,
            Window::Declared(name) => thresholds.window(name),
        };
        thresholds.time_scale.apply(declared)
    }
}

impl FromStr for Window {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.starts_with("the ") {
            s.parse().map(Window::Declared)
        } else {
            s.parse::<Span>().map(|d| Window::Stated(d.0))
        }
    }
}

/// When a request started, relative to the latest fault: `1s or more after the block`, or
/// after a declared window (`after the detection window`, `after the readiness window`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Parameter)]
#[param(
    name = "after",
    regex = r"\d+(?:\.\d+)?(?:ms|s) or more after the block|after the detection window|after the readiness window"
)]
pub struct After(pub Window);

impl FromStr for After {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_suffix(" or more after the block") {
            Some(span) => span.parse().map(After),
            None => s
                .strip_prefix("after ")
                .ok_or_else(|| format!("{s:?} is not `after <a declared window>`"))?
                .parse()
                .map(After),
        }
    }
}

/// How a pod is taken down: each fault kind the design lists, as the guide or a cluster
/// makes it (`iptables DROP on port 8080`, `iptables REJECT on port 8080`, `killing its app
/// process`, `failing its readiness probe`).
#[derive(Debug, Clone, PartialEq, Eq, Parameter)]
#[param(
    name = "fault",
    regex = r"iptables (?:DROP|REJECT) on port \d+|killing its app process|failing its readiness probe"
)]
pub struct TakeDown(pub meshcert_mesh::FaultKind);

impl FromStr for TakeDown {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        use meshcert_mesh::FaultKind;
        let port = |rest: &str| {
            rest.parse::<u16>()
                .map_err(|e| format!("port {rest:?} in {s:?}: {e}"))
        };
        let kind = match s {
            "killing its app process" => FaultKind::ProcessKill,
            "failing its readiness probe" => FaultKind::NotReady,
            _ => match (
                s.strip_prefix("iptables DROP on port "),
                s.strip_prefix("iptables REJECT on port "),
            ) {
                (Some(p), _) => FaultKind::IptablesDrop { port: port(p)? },
                (_, Some(p)) => FaultKind::IptablesReject { port: port(p)? },
                _ => return Err(format!("{s:?} names no fault")),
            },
        };
        Ok(TakeDown(kind))
    }
}

/// What a set of replicas must show: each of them answering (a level, a rotation), or also an
/// even spread (L4-RR-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Parameter)]
#[param(name = "spread", regex = r"each at least once|spread evenly")]
pub enum Spread {
    EachOnce,
    Evenly,
}

impl FromStr for Spread {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "each at least once" => Ok(Spread::EachOnce),
            "spread evenly" => Ok(Spread::Evenly),
            other => Err(format!(
                "{other:?} is neither \"each at least once\" nor \"spread evenly\""
            )),
        }
    }
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Spread::EachOnce => "each at least once",
            Spread::Evenly => "spread evenly",
        })
    }
}

/// How many requests may fail: a number, or `the failure budget` (declared).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Parameter)]
#[param(name = "budget", regex = r"\d+|the failure budget")]
pub enum Budget {
    Stated(usize),
    Declared,
}

impl Budget {
    pub fn resolve(self, thresholds: &Thresholds) -> usize {
        match self {
            Budget::Stated(n) => n,
            Budget::Declared => thresholds.failure_budget as usize,
        }
    }
}

impl FromStr for Budget {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "the failure budget" {
            return Ok(Budget::Declared);
        }
        s.parse()
            .map(Budget::Stated)
            .map_err(|e| format!("bad request count {s:?}: {e}"))
    }
}

/// A log level as ztunnel writes it.
#[derive(Debug, Clone, PartialEq, Eq, Parameter)]
#[param(name = "level", regex = "error|warn|info|debug|trace")]
pub struct Level(pub String);

impl FromStr for Level {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Level(s.to_string()))
    }
}

/// A traffic distribution mode as the catalogue names it: `PreferClose`, `PreferSameZone`,
/// `PreferSameNode`, `PreferNetwork`, `PreferRegion`, `Any`, or `Local` (internalTrafficPolicy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Parameter)]
#[param(
    name = "mode",
    regex = "PreferClose|PreferSameZone|PreferSameNode|PreferNetwork|PreferRegion|Any|Local"
)]
pub struct Mode(pub TrafficDistribution);

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Mode)
    }
}

/// `P0` to `P5`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Parameter)]
#[param(name = "priority", regex = r"P\d")]
pub struct Priority(pub PriorityLevel);

impl FromStr for Priority {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Priority)
    }
}

/// Where a Service (or ServiceEntry) says how to distribute traffic, by its YAML path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingField {
    /// `spec.internalTrafficPolicy`.
    InternalTrafficPolicy,
    /// `spec.trafficDistribution`.
    Spec,
    /// `metadata.annotations["networking.istio.io/traffic-distribution"]`.
    Annotation,
}

/// One setting as a feature writes it: `spec.trafficDistribution: PreferClose`,
/// `annotation networking.istio.io/traffic-distribution: PreferSameNode`,
/// `internalTrafficPolicy: Local`. The value is kept verbatim: refusing or ignoring an unknown
/// value is the mesh's job, and some scenarios check exactly that.
#[derive(Debug, Clone, PartialEq, Eq, Parameter)]
#[param(
    name = "setting",
    regex = r"(?:spec\.trafficDistribution|annotation networking\.istio\.io/traffic-distribution|internalTrafficPolicy): [A-Za-z]+"
)]
pub struct Setting {
    pub field: SettingField,
    pub value: String,
}

impl FromStr for Setting {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (field, value) = s
            .split_once(": ")
            .ok_or_else(|| format!("bad setting {s:?}: expected `<field>: <value>`"))?;
        let field = match field {
            "spec.trafficDistribution" => SettingField::Spec,
            "annotation networking.istio.io/traffic-distribution" => SettingField::Annotation,
            "internalTrafficPolicy" => SettingField::InternalTrafficPolicy,
            other => return Err(format!("unknown setting field {other:?}")),
        };
        Ok(Setting {
            field,
            value: value.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("first", 0)]
    #[case("third", 2)]
    #[case("4th", 3)]
    #[case("21st", 20)]
    fn ordinals(#[case] text: &str, #[case] index: usize) {
        assert_eq!(text.parse::<Ordinal>().unwrap(), Ordinal(index));
    }

    #[rstest]
    #[case("150ms", 150)]
    #[case("2s", 2000)]
    #[case("1.5s", 1500)]
    fn spans(#[case] text: &str, #[case] ms: u64) {
        assert_eq!(text.parse::<Span>().unwrap().0, Duration::from_millis(ms));
    }

    #[rstest]
    #[case(
        "spec.trafficDistribution: PreferClose",
        SettingField::Spec,
        "PreferClose"
    )]
    #[case(
        "annotation networking.istio.io/traffic-distribution: PreferNetwork",
        SettingField::Annotation,
        "PreferNetwork"
    )]
    #[case(
        "internalTrafficPolicy: Local",
        SettingField::InternalTrafficPolicy,
        "Local"
    )]
    fn settings(#[case] text: &str, #[case] field: SettingField, #[case] value: &str) {
        let setting: Setting = text.parse().unwrap();
        assert_eq!((setting.field, setting.value.as_str()), (field, value));
    }

    #[test]
    fn modes_and_levels() {
        assert_eq!(
            "Local".parse::<Mode>().unwrap().0,
            TrafficDistribution::NodeLocal
        );
        assert_eq!("P3".parse::<Priority>().unwrap().0, PriorityLevel(3));
        assert!("P7".parse::<Priority>().is_err());
    }

    #[test]
    fn rates_are_bounded() {
        assert!("0.001".parse::<Rate>().is_ok());
        assert!("0.7".parse::<Rate>().is_err());
        assert!("0th".parse::<Ordinal>().is_err());
    }

    #[rstest]
    #[case("iptables DROP on port 8080", meshcert_mesh::FaultKind::IptablesDrop { port: 8080 })]
    #[case("iptables REJECT on port 81", meshcert_mesh::FaultKind::IptablesReject { port: 81 })]
    #[case("killing its app process", meshcert_mesh::FaultKind::ProcessKill)]
    #[case("failing its readiness probe", meshcert_mesh::FaultKind::NotReady)]
    fn faults(#[case] text: &str, #[case] kind: meshcert_mesh::FaultKind) {
        assert_eq!(text.parse::<TakeDown>().unwrap().0, kind);
        assert!("iptables DROP on port 99999".parse::<TakeDown>().is_err());
    }

    #[test]
    fn windows_resolve_stretched_by_the_time_scale() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../features/thresholds/solo.yaml");
        let mut thresholds = Thresholds::load(&path).unwrap();
        let drop = Window::Declared(WindowName::Drop);
        assert_eq!(drop.resolve(&thresholds), Duration::from_millis(1500));
        thresholds.time_scale = meshcert_mesh::wait::TimeScale::parse(Some("2")).unwrap();
        assert_eq!(drop.resolve(&thresholds), Duration::from_secs(3));
        let stated = Window::Stated(Duration::from_secs(1));
        assert_eq!(stated.resolve(&thresholds), Duration::from_secs(2));
        assert_eq!(
            thresholds.settings()["threshold dropDeadline"],
            "1.5s",
            "the report keeps the declared number"
        );
    }

    #[test]
    fn after_names_a_declared_window() {
        assert_eq!(
            "after the readiness window".parse::<After>().unwrap(),
            After(Window::Declared(WindowName::Readiness))
        );
        assert_eq!(
            "1s or more after the block".parse::<After>().unwrap(),
            After(Window::Stated(Duration::from_secs(1)))
        );
        assert!("after lunch".parse::<After>().is_err());
    }
}

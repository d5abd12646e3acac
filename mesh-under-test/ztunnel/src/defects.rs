//! Test-only defect switches (`MESHCERT_REFERENCE_DEFECT`): each breaks exactly one documented
//! behaviour, so the harness can prove that a scenario fails when that behaviour is wrong.
//! The switches live here; the code checks them in one line at each decision point.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// One deliberate defect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Defect {
    /// Always pick the first available endpoint (breaks round robin).
    FirstEndpoint,
    /// Pick uniformly at random among the available endpoints (breaks the exact round-robin order).
    RandomPick,
    /// Pick at random, weighted by workload capacity (upstream's pick; breaks only the exact
    /// round-robin order).
    WeightedRandom,
    /// No health checks, no EWMA, no circuit breaker (upstream's data plane); retries stay.
    NoDetection,
    /// On a failed connect, close the client connection instead of trying another endpoint.
    NoRetry,
    /// The circuit breaker never opens; failures are still counted and the EWMA still logged.
    NeverEject,
    /// An open circuit breaker never half-opens, so an ejected endpoint never returns.
    NeverRestore,
    /// The access log names another endpoint of the service than the one connected.
    LogWrongWorkload,
    /// The access log omits `src.identity`.
    LogMissingIdentity,
    /// After as many upstream answers starting `HTTP/1.x 5` in a row as the breaker's
    /// consecutive failures, the endpoint leaves the rotation for good (L7 detection, as a
    /// DestinationRule's long ejection); TCP detection and recovery are untouched.
    EjectOnHttp5xx,
    /// The local config file is never re-read after start.
    IgnoreConfigReload,
    /// On reload, workloads that left the config stay in the model (scale-down is ignored).
    KeepRemovedEndpoints,
    /// The EWMA uses weight 0.5 instead of the configured one.
    EwmaWrongWeight,
    /// The `health_check` log line omits `error`.
    HealthLogMissingError,
    /// Routing preferences are ignored: every endpoint shares one level (breaks every mode).
    IgnoreLocality,
    /// Control plane: the Service annotation beats `spec.trafficDistribution` (breaks TD-PREC-1).
    /// Named here with the others; the local driver hands it to the control plane's own switch.
    WrongPrecedence,
    /// When the best level has no available endpoint, skip the next level too (breaks TD-FO-1).
    FailOverTwoLevels,
    /// Cross-network endpoints rank by region, zone and subzone below the client's network
    /// (upstream since 2d8e90e), instead of all sharing the lowest level (breaks TD-MODE-XNET).
    CrossNetworkByLocality,
    /// `Strict` ranks like `Failover`, so `internalTrafficPolicy: Local` fails over (breaks TD-ITP-1).
    StrictAsFailover,
}

impl Defect {
    pub const ALL: [Defect; 19] = [
        Defect::FirstEndpoint,
        Defect::RandomPick,
        Defect::WeightedRandom,
        Defect::NoDetection,
        Defect::NoRetry,
        Defect::NeverEject,
        Defect::NeverRestore,
        Defect::LogWrongWorkload,
        Defect::LogMissingIdentity,
        Defect::EjectOnHttp5xx,
        Defect::IgnoreConfigReload,
        Defect::KeepRemovedEndpoints,
        Defect::EwmaWrongWeight,
        Defect::HealthLogMissingError,
        Defect::IgnoreLocality,
        Defect::WrongPrecedence,
        Defect::FailOverTwoLevels,
        Defect::StrictAsFailover,
        Defect::CrossNetworkByLocality,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Defect::FirstEndpoint => "first-endpoint",
            Defect::RandomPick => "random-pick",
            Defect::WeightedRandom => "weighted-random",
            Defect::NoDetection => "no-detection",
            Defect::NoRetry => "no-retry",
            Defect::NeverEject => "never-eject",
            Defect::NeverRestore => "never-restore",
            Defect::LogWrongWorkload => "log-wrong-workload",
            Defect::LogMissingIdentity => "log-missing-identity",
            Defect::EjectOnHttp5xx => "eject-on-http-5xx",
            Defect::IgnoreConfigReload => "ignore-config-reload",
            Defect::KeepRemovedEndpoints => "keep-removed-endpoints",
            Defect::EwmaWrongWeight => "ewma-wrong-weight",
            Defect::HealthLogMissingError => "health-log-missing-error",
            Defect::IgnoreLocality => "ignore-locality",
            Defect::WrongPrecedence => "wrong-precedence",
            Defect::FailOverTwoLevels => "fail-over-two-levels",
            Defect::StrictAsFailover => "strict-as-failover",
            Defect::CrossNetworkByLocality => "cross-network-by-locality",
        }
    }
}

impl fmt::Display for Defect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Defect {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Defect::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| {
                let valid: Vec<&str> = Defect::ALL.iter().map(|d| d.name()).collect();
                format!(
                    "unknown defect switch {s:?}; valid names: {}",
                    valid.join(", ")
                )
            })
    }
}

/// The set of defects switched on; empty in any real use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Defects(BTreeSet<Defect>);

impl Defects {
    pub fn none() -> Self {
        Self::default()
    }

    /// Parses a comma-separated list; blanks around names and empty items are ignored.
    pub fn parse(list: &str) -> Result<Self, String> {
        list.split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(Defect::from_str)
            .collect::<Result<BTreeSet<_>, _>>()
            .map(Defects)
    }

    pub fn is_on(&self, defect: Defect) -> bool {
        self.0.contains(&defect)
    }

    pub fn iter(&self) -> impl Iterator<Item = Defect> + '_ {
        self.0.iter().copied()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<Defect> for Defects {
    fn from_iter<I: IntoIterator<Item = Defect>>(iter: I) -> Self {
        Defects(iter.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("", &[])]
    #[case("no-retry", &[Defect::NoRetry])]
    #[case(" never-eject , first-endpoint,", &[Defect::FirstEndpoint, Defect::NeverEject])]
    #[case("random-pick,random-pick", &[Defect::RandomPick])]
    fn parses_lists(#[case] list: &str, #[case] expected: &[Defect]) {
        let defects = Defects::parse(list).unwrap();
        assert_eq!(defects.iter().collect::<Vec<_>>(), expected);
    }

    #[test]
    fn unknown_name_lists_every_valid_name() {
        let err = Defects::parse("no-retry,slow-pick").unwrap_err();
        assert!(err.contains("\"slow-pick\""), "{err}");
        for defect in Defect::ALL {
            assert!(err.contains(defect.name()), "{err} lacks {defect}");
        }
    }

    #[test]
    fn every_name_round_trips() {
        for defect in Defect::ALL {
            assert_eq!(defect.name().parse::<Defect>(), Ok(defect));
        }
    }
}

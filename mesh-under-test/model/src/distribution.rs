//! Traffic distribution: how a service spreads connections over its endpoints.

use std::fmt;
use std::str::FromStr;

/// How a service spreads connections over its endpoints, as a service (or its
/// `internalTrafficPolicy`) asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrafficDistribution {
    /// `internalTrafficPolicy: Local`: only endpoints on the client's node, none means failure.
    NodeLocal,
    /// `PreferClose` (or its newer spelling `PreferSameZone`): same network, region, zone first.
    PreferClose,
    /// Same node first, then subzone, zone, region, network.
    PreferSameNode,
    /// Solo only: same network first (the Solo default).
    PreferNetwork,
    /// Solo only: same network and region first.
    PreferRegion,
    /// No preference: every healthy endpoint, equal weight (the Istio default).
    Any,
}

impl fmt::Display for TrafficDistribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TrafficDistribution::NodeLocal => "internalTrafficPolicy Local",
            TrafficDistribution::PreferClose => "PreferClose",
            TrafficDistribution::PreferSameNode => "PreferSameNode",
            TrafficDistribution::PreferNetwork => "PreferNetwork",
            TrafficDistribution::PreferRegion => "PreferRegion",
            TrafficDistribution::Any => "Any",
        })
    }
}

/// The catalogue's name of a mode, as features and the annotation spell it.
impl FromStr for TrafficDistribution {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "PreferClose" | "PreferSameZone" => TrafficDistribution::PreferClose,
            "PreferSameNode" => TrafficDistribution::PreferSameNode,
            "PreferNetwork" => TrafficDistribution::PreferNetwork,
            "PreferRegion" => TrafficDistribution::PreferRegion,
            "Any" => TrafficDistribution::Any,
            "Local" | "internalTrafficPolicy Local" => TrafficDistribution::NodeLocal,
            other => {
                return Err(format!(
                    "unknown traffic distribution {other:?}: expected PreferClose, PreferSameZone, \
                     PreferSameNode, PreferNetwork, PreferRegion, Any or Local"
                ));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_with_the_alias() {
        assert_eq!(
            "PreferSameZone".parse(),
            Ok(TrafficDistribution::PreferClose)
        );
        assert!(
            "PreferCloser"
                .parse::<TrafficDistribution>()
                .unwrap_err()
                .contains("PreferCloser")
        );
    }

    #[test]
    fn display_and_parse_agree() {
        for mode in [
            TrafficDistribution::PreferClose,
            TrafficDistribution::PreferSameNode,
            TrafficDistribution::PreferNetwork,
            TrafficDistribution::PreferRegion,
            TrafficDistribution::Any,
            TrafficDistribution::NodeLocal,
        ] {
            assert_eq!(mode.to_string().parse(), Ok(mode));
        }
    }
}

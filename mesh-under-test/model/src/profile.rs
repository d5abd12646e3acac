//! Profiles: which distribution's documented behaviour a target promises. The control plane's
//! rules and the drivers' capabilities both depend on it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Which distribution's documented behaviour a target promises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Upstream Istio ambient.
    Istio,
    /// The Solo distribution of Istio (outlier detection, PreferNetwork default, ...).
    Solo,
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Profile::Istio => "istio",
            Profile::Solo => "solo",
        })
    }
}

impl FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "istio" => Ok(Profile::Istio),
            "solo" => Ok(Profile::Solo),
            other => Err(format!(
                "unknown profile {other:?}: expected \"istio\" or \"solo\""
            )),
        }
    }
}

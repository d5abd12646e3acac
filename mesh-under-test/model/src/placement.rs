//! Where a workload runs and the priority levels traffic distribution ranks it by.

use std::fmt;
use std::str::FromStr;

/// Where a workload runs, as ranking sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Placement {
    pub network: String,
    pub region: String,
    pub zone: String,
    pub subzone: String,
    pub node: String,
}

/// `P0` is used first; `P(n+1)` only when no healthy endpoint is left at `Pn` or above.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PriorityLevel(pub u8);

impl PriorityLevel {
    pub const TOP: PriorityLevel = PriorityLevel(0);

    pub fn next(self) -> PriorityLevel {
        PriorityLevel(self.0 + 1)
    }
}

impl fmt::Display for PriorityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "P{}", self.0)
    }
}

impl FromStr for PriorityLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.strip_prefix('P')
            .and_then(|n| n.parse::<u8>().ok())
            .filter(|n| *n <= 5)
            .map(PriorityLevel)
            .ok_or_else(|| format!("bad priority level {s:?}: expected P0 to P5"))
    }
}

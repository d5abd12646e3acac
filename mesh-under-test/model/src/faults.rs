//! Faults a scenario injects into pods, and the record of each: when it took effect, which
//! pod it hit, and when it was undone.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::pods::{PodInfo, PodRef};

/// A fault to inject into one pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    pub pod: PodRef,
    pub kind: FaultKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum FaultKind {
    /// `iptables -A INPUT -p tcp --dport <port> -j DROP` inside the pod: connects hang.
    IptablesDrop { port: u16 },
    /// `iptables -A INPUT -p tcp --dport <port> -j REJECT --reject-with tcp-reset`: connects fail fast.
    IptablesReject { port: u16 },
    /// The app answers every request with this HTTP status (still naming itself in the body),
    /// except its readiness probe's path: the pod stays Ready, so only the data plane can
    /// shun it (`NotReady` is the fault for the probe).
    HttpStatus { status: u16 },
    /// The pod's readiness probe fails (its app answers the probe's path with 503; a
    /// tcpSocket probe is refused) while the app serves every other request: the kubelet
    /// turns the pod NotReady after `failureThreshold` probes and the control plane marks
    /// its endpoint unhealthy, so only that marking moves traffic.
    NotReady,
    /// The app's process is killed: its ports refuse connections, open ones are dropped and
    /// the kubelet reports the pod NotReady at once; undoing it restarts the app, which is
    /// Ready again once its readiness probe passes.
    ProcessKill,
}

impl FaultKind {
    /// A few words for charts and diffs: `iptables DROP :8080`, `HTTP 503`, `app killed`.
    pub fn brief(&self) -> String {
        match self {
            FaultKind::IptablesDrop { port } => format!("iptables DROP :{port}"),
            FaultKind::IptablesReject { port } => format!("iptables REJECT :{port}"),
            FaultKind::HttpStatus { status } => format!("HTTP {status}"),
            FaultKind::NotReady => "readiness probe failing".into(),
            FaultKind::ProcessKill => "app killed".into(),
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultKind::IptablesDrop { port } => {
                write!(f, "iptables -A INPUT -p tcp --dport {port} -j DROP")
            }
            FaultKind::IptablesReject { port } => {
                write!(
                    f,
                    "iptables -A INPUT -p tcp --dport {port} -j REJECT --reject-with tcp-reset"
                )
            }
            FaultKind::HttpStatus { status } => write!(f, "app answers HTTP {status}"),
            FaultKind::NotReady => f.write_str("readiness probe fails (the app keeps serving)"),
            FaultKind::ProcessKill => {
                f.write_str("app process killed (its ports refuse connections)")
            }
        }
    }
}

/// A fault in force, returned by `inject` and given back to `undo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultHandle {
    pub id: u64,
    pub fault: Fault,
    /// When the driver had made it take effect, on the mesh's clock: windows that a mesh gets
    /// to react start here.
    pub injected_at: Duration,
    /// When the driver began to inject it: it took effect between this and `injected_at`, so
    /// what the mesh logs about it is looked for from here.
    pub requested_at: Duration,
}

/// A fault and the pod it hit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultRecord {
    pub handle: FaultHandle,
    pub pod: PodInfo,
    pub undone_at: Option<Duration>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fault_kind_has_a_brief_name() {
        for (kind, name) in [
            (
                FaultKind::IptablesDrop { port: 8080 },
                "iptables DROP :8080",
            ),
            (
                FaultKind::IptablesReject { port: 8080 },
                "iptables REJECT :8080",
            ),
            (FaultKind::HttpStatus { status: 503 }, "HTTP 503"),
            (FaultKind::NotReady, "readiness probe failing"),
            (FaultKind::ProcessKill, "app killed"),
        ] {
            assert_eq!(kind.brief(), name);
        }
    }
}

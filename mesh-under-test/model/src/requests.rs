//! Requests a client sends and how each one ended, as the client saw them.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::pods::DeploymentRef;

/// Requests a client sends, one new TCP connection each (as `curl` in the guide's loop).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestPlan {
    /// The client deployment; its first pod sends.
    pub client: DeploymentRef,
    /// e.g. `http://in-ambient:8000/hostname`, resolved as the client pod's DNS would.
    pub url: String,
    pub count: u32,
    /// Time between the starts of consecutive requests; zero sends each as soon as the previous ends.
    pub interval: Duration,
    /// Per-request client timeout (`curl --max-time`).
    pub timeout: Duration,
}

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum RequestOutcome {
    /// A response came back; `replica` is the pod that answered (the body of `/hostname`).
    Answered {
        replica: String,
        status: u16,
    },
    Failed {
        failure: RequestFailure,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestFailure {
    /// No complete response within the client timeout.
    Timeout,
    ConnectionRefused,
    ConnectionReset,
    /// The connection closed before any response byte (`curl: (52) Empty reply`).
    EmptyReply,
    /// Anything else, with the error text.
    Other(String),
}

impl fmt::Display for RequestFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestFailure::Timeout => f.write_str("timeout"),
            RequestFailure::ConnectionRefused => f.write_str("connection refused"),
            RequestFailure::ConnectionReset => f.write_str("connection reset"),
            RequestFailure::EmptyReply => f.write_str("empty reply"),
            RequestFailure::Other(e) => f.write_str(e),
        }
    }
}

/// One request as observed by the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// 0-based position in its plan.
    pub index: u32,
    /// When it started, on the mesh's clock (`MeshUnderTest::elapsed`).
    pub started_at: Duration,
    pub latency: Duration,
    /// The client's end of the connection (`ip:port`), as ztunnel logs it in `src.addr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(flatten)]
    pub outcome: RequestOutcome,
}

impl RequestRecord {
    pub fn replica(&self) -> Option<&str> {
        match &self.outcome {
            RequestOutcome::Answered { replica, .. } => Some(replica),
            RequestOutcome::Failed { .. } => None,
        }
    }

    pub fn failed(&self) -> bool {
        matches!(self.outcome, RequestOutcome::Failed { .. })
    }

    /// Why it failed; `None` when it was answered.
    pub fn failure(&self) -> Option<&RequestFailure> {
        match &self.outcome {
            RequestOutcome::Answered { .. } => None,
            RequestOutcome::Failed { failure } => Some(failure),
        }
    }
}

/// One batch of requests, as sent by one step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestBatch {
    pub plan: RequestPlan,
    pub records: Vec<RequestRecord>,
}

impl RequestBatch {
    /// Answers per replica, sorted by replica.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for replica in self.records.iter().filter_map(RequestRecord::replica) {
            *counts.entry(replica.to_string()).or_default() += 1;
        }
        counts
    }

    pub fn failures(&self) -> usize {
        self.records.iter().filter(|r| r.failed()).count()
    }
}

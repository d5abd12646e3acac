//! A typed, lenient view of a scenario's observations (stored as JSON in the results), for the
//! writers: batches of requests, faults, restarts, log lines and what the assertions expected.
//! Missing parts read as empty, so an observation the writer does not know is never an error.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// A `Duration` as serde writes it.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
pub struct Dur {
    #[serde(default)]
    pub secs: u64,
    #[serde(default)]
    pub nanos: u32,
}

impl Dur {
    pub fn ms(&self) -> f64 {
        self.secs as f64 * 1e3 + self.nanos as f64 / 1e6
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Observations {
    #[serde(default)]
    pub batches: Vec<Batch>,
    #[serde(default)]
    pub faults: Vec<FaultRecord>,
    #[serde(default)]
    pub log_lines: Vec<LogLine>,
    #[serde(default)]
    pub restarts: Vec<Restart>,
    #[serde(default)]
    pub failure_evidence: Option<Evidence>,
    #[serde(default)]
    pub expectations: Vec<Expectation>,
}

impl Observations {
    pub fn of(value: &Value) -> Observations {
        serde_json::from_value(value.clone()).unwrap_or_default()
    }

    /// The whole log when kept (failed scenarios), else the lines assertions read.
    pub fn log(&self) -> &[LogLine] {
        match &self.failure_evidence {
            Some(e) if !e.ztunnel_log.is_empty() => &e.ztunnel_log,
            _ => &self.log_lines,
        }
    }

    /// Whether a timeline tells something: a fault, or a failed request.
    pub fn has_timeline(&self) -> bool {
        !self.faults.is_empty()
            || self
                .batches
                .iter()
                .any(|b| b.records.iter().any(|r| r.failed()))
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Batch {
    #[serde(default)]
    pub plan: Plan,
    #[serde(default)]
    pub records: Vec<Record>,
}

impl Batch {
    /// Answers per replica, sorted by replica.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for r in &self.records {
            if let Some(replica) = &r.replica {
                *counts.entry(replica.clone()).or_default() += 1;
            }
        }
        counts
    }

    pub fn failures(&self) -> usize {
        self.records.iter().filter(|r| r.failed()).count()
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Plan {
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub count: u32,
    #[serde(default)]
    pub interval: Dur,
    #[serde(default)]
    pub timeout: Dur,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Record {
    #[serde(default)]
    pub index: u32,
    #[serde(default)]
    pub started_at: Dur,
    #[serde(default)]
    pub latency: Dur,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub outcome: String,
    #[serde(default)]
    pub replica: Option<String>,
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub failure: Option<Value>,
}

impl Record {
    pub fn failed(&self) -> bool {
        self.outcome != "answered"
    }

    /// `timeout`, `connection refused`, or the error text.
    pub fn failure_text(&self) -> String {
        match &self.failure {
            Some(Value::String(s)) => s.replace('_', " "),
            Some(Value::Object(m)) => m
                .values()
                .next()
                .and_then(Value::as_str)
                .unwrap_or("failed")
                .to_string(),
            _ => "failed".into(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct FaultRecord {
    #[serde(default)]
    pub handle: FaultHandle,
    #[serde(default)]
    pub undone_at: Option<Dur>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct FaultHandle {
    #[serde(default)]
    pub fault: Fault,
    #[serde(default)]
    pub injected_at: Dur,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Fault {
    #[serde(default)]
    pub pod: PodRef,
    #[serde(default)]
    pub kind: Value,
}

impl Fault {
    /// `iptables DROP :8080`, `HTTP 503`, `readiness probe failing`, `app killed`.
    pub fn describe(&self) -> String {
        let field = |k: &str| self.kind.get(k).cloned().unwrap_or(Value::Null);
        match self.kind.get("kind").and_then(Value::as_str) {
            Some("iptables-drop") => format!("iptables DROP :{}", field("port")),
            Some("iptables-reject") => format!("iptables REJECT :{}", field("port")),
            Some("http-status") => format!("HTTP {}", field("status")),
            Some("not-ready") => "readiness probe failing".into(),
            Some("process-kill") => "app killed".into(),
            Some(other) => other.into(),
            None => "fault".into(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct PodRef {
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct LogLine {
    #[serde(default)]
    pub observed_at: Dur,
    #[serde(default)]
    pub level: String,
    #[serde(default)]
    pub target: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    #[serde(default)]
    pub raw: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Restart {
    #[serde(default)]
    pub pod: String,
    #[serde(default)]
    pub at: Dur,
    #[serde(default)]
    pub took: Dur,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Evidence {
    #[serde(default)]
    pub ztunnel_log: Vec<LogLine>,
    #[serde(default)]
    pub metrics: Vec<Value>,
    #[serde(default)]
    pub unavailable: Vec<String>,
}

/// What an assertion expected of a batch: these replicas share it at `share` each.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Expectation {
    /// Index into `batches`.
    #[serde(default)]
    pub batch: usize,
    #[serde(default)]
    pub replicas: Vec<String>,
    #[serde(default)]
    pub share: f64,
    /// The step's words.
    #[serde(default)]
    pub statement: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fault_kind_has_a_name() {
        for (kind, name) in [
            (
                r#"{"kind":"iptables-drop","port":8080}"#,
                "iptables DROP :8080",
            ),
            (
                r#"{"kind":"iptables-reject","port":8080}"#,
                "iptables REJECT :8080",
            ),
            (r#"{"kind":"http-status","status":503}"#, "HTTP 503"),
            (r#"{"kind":"not-ready"}"#, "readiness probe failing"),
            (r#"{"kind":"process-kill"}"#, "app killed"),
        ] {
            let fault = Fault {
                pod: PodRef::default(),
                kind: serde_json::from_str(kind).unwrap(),
            };
            assert_eq!(fault.describe(), name);
        }
    }
}

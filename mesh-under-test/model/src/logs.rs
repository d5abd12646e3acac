//! A ztunnel log line, as the oracle reads it: level, target, message and `key=value` fields.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One ztunnel log line, fields parsed, values unquoted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// When the harness read the line, on the mesh's clock.
    pub observed_at: Duration,
    /// The timestamp ztunnel wrote, as written.
    pub timestamp: Option<String>,
    /// `info`, `warn`, `error`, `debug`, `trace`.
    pub level: String,
    /// `access`, `health_check`, `ewma`, `circuit_breaker`, ...
    pub target: String,
    /// e.g. `connection complete`.
    pub message: String,
    /// `key=value` pairs; quoted values are unescaped.
    pub fields: BTreeMap<String, String>,
    pub raw: String,
}

impl LogLine {
    /// The value of field `key`, unquoted.
    pub fn field(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }

    /// A numeric field (`bytes_sent`, `new_score`), `None` when absent or not a number.
    pub fn field_f64(&self, key: &str) -> Option<f64> {
        self.field(key)?.parse().ok()
    }

    /// Whether this is the event `message` of `target`, e.g. `("ewma", "updating endpoint health score")`.
    pub fn is(&self, target: &str, message: &str) -> bool {
        self.target == target && self.message == message
    }
}

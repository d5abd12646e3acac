//! Parser of ztunnel log lines (upstream's text format and `LOG_FORMAT=json`).
//! INTERFACE PINNED; body being written by the pure-modules helper.

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

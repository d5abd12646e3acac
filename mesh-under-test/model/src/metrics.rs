//! One sample of a Prometheus exposition (ztunnel's `/metrics`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A metric's name, its labels and its value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

//! Parser of Prometheus text exposition (ztunnel's `/metrics` on 15020).
//! INTERFACE PINNED; body being written by the pure-modules helper.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

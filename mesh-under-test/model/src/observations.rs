//! Everything a scenario observed, as the results keep it and the report writers read it:
//! batches of requests, faults, log lines, ztunnel restarts, what the assertions expected,
//! the topology, and the evidence a failed scenario keeps.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::faults::FaultRecord;
use crate::logs::LogLine;
use crate::metrics::MetricSample;
use crate::pods::PodRef;
use crate::requests::RequestBatch;
use crate::topology::Topology;

/// Everything a scenario observed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Observations {
    pub batches: Vec<RequestBatch>,
    pub faults: Vec<FaultRecord>,
    /// ztunnel log lines read by log assertions (kept for failed scenarios' reports).
    pub log_lines: Vec<LogLine>,
    /// Restarts the ztunnel took to learn config changes (targets that read config once).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restarts: Vec<Restart>,
    /// What assertions expected of batches (the reports mark it on the charts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expectations: Vec<Expectation>,
    /// The scenario's nodes, clients and replicas, when it placed any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology: Option<Topology>,
    /// Evidence kept only when the scenario failed, so it can be understood without re-running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_evidence: Option<FailureEvidence>,
}

impl Observations {
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

/// An assertion's expectation of one batch: these replicas share it, `share` each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Expectation {
    /// Index of the batch in `batches`.
    pub batch: usize,
    /// Pod names.
    pub replicas: Vec<String>,
    pub share: f64,
    /// The step's words.
    pub statement: String,
}

/// Everything the ztunnel said during a failed scenario.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FailureEvidence {
    /// The log lines since the mesh was deployed: the first lines and the last of a longer
    /// log (a runaway ztunnel writes millions).
    pub ztunnel_log: Vec<LogLine>,
    /// Lines left out between the head and the tail.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub omitted_log_lines: usize,
    /// The client ztunnel's metrics at the end of the scenario.
    pub metrics: Vec<MetricSample>,
    /// Evidence that could not be read, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unavailable: Vec<String>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A ztunnel restarted to take a config change (a binary that reads its config once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restart {
    /// The client pod whose ztunnel restarted.
    pub pod: String,
    /// When the change began, on the mesh's clock.
    pub at: Duration,
    /// Stop, start, ready and serving the new config.
    pub took: Duration,
}

/// The kubelet changed a pod's Ready condition, and when the control plane had the change in
/// force in every ztunnel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadinessChange {
    pub pod: PodRef,
    pub ready: bool,
    /// When the kubelet reported it, on the mesh's clock.
    pub at: Duration,
    /// When every ztunnel served the config with the change; `None` until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pushed_at: Option<Duration>,
    /// The probe result (or event) that changed it.
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use serde_json::json;

    use super::*;
    use crate::{
        DeploymentRef, Fault, FaultHandle, FaultKind, PodInfo, RequestFailure, RequestOutcome,
        RequestPlan, RequestRecord,
    };

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A batch of one answered and one failed request, a fault undone, and evidence.
    fn observed() -> Observations {
        let record = |index, outcome| RequestRecord {
            index,
            started_at: ms(index as u64 * 10),
            latency: ms(4),
            source: None,
            outcome,
        };
        let pod = PodInfo {
            namespace: "httpbin".into(),
            name: "in-ambient-0".into(),
            ip: IpAddr::V4(Ipv4Addr::new(10, 244, 0, 12)),
            node: "node-a".into(),
            ready: true,
        };
        Observations {
            batches: vec![RequestBatch {
                plan: RequestPlan {
                    client: DeploymentRef::new("httpbin", "client-in-ambient"),
                    url: "http://in-ambient:8000/hostname".into(),
                    count: 2,
                    interval: ms(0),
                    timeout: ms(5000),
                },
                records: vec![
                    record(
                        0,
                        RequestOutcome::Answered {
                            replica: "in-ambient-1".into(),
                            status: 200,
                        },
                    ),
                    record(
                        1,
                        RequestOutcome::Failed {
                            failure: RequestFailure::Other("reset by peer".into()),
                        },
                    ),
                ],
            }],
            faults: vec![FaultRecord {
                handle: FaultHandle {
                    id: 1,
                    fault: Fault {
                        pod: pod.pod_ref(),
                        kind: FaultKind::IptablesDrop { port: 8080 },
                    },
                    injected_at: ms(5),
                    requested_at: ms(3),
                },
                pod,
                undone_at: Some(ms(15)),
            }],
            failure_evidence: Some(FailureEvidence::default()),
            ..Observations::default()
        }
    }

    #[test]
    fn observations_keep_their_json_shape_and_read_back() {
        let o = observed();
        let dur = |secs: u64, nanos: u32| json!({"secs": secs, "nanos": nanos});
        let expected = json!({
            "batches": [{
                "plan": {"client": {"namespace": "httpbin", "name": "client-in-ambient"},
                         "url": "http://in-ambient:8000/hostname", "count": 2,
                         "interval": dur(0, 0), "timeout": dur(5, 0)},
                "records": [
                    {"index": 0, "started_at": dur(0, 0), "latency": dur(0, 4_000_000),
                     "outcome": "answered", "replica": "in-ambient-1", "status": 200},
                    {"index": 1, "started_at": dur(0, 10_000_000), "latency": dur(0, 4_000_000),
                     "outcome": "failed", "failure": {"other": "reset by peer"}}
                ]
            }],
            "faults": [{
                "handle": {"id": 1,
                           "fault": {"pod": {"namespace": "httpbin", "name": "in-ambient-0"},
                                     "kind": {"kind": "iptables-drop", "port": 8080}},
                           "injected_at": dur(0, 5_000_000), "requested_at": dur(0, 3_000_000)},
                "pod": {"namespace": "httpbin", "name": "in-ambient-0", "ip": "10.244.0.12",
                        "node": "node-a", "ready": true},
                "undone_at": dur(0, 15_000_000)
            }],
            "log_lines": [],
            "failure_evidence": {"ztunnel_log": [], "metrics": []}
        });
        let written = serde_json::to_value(&o).unwrap();
        assert_eq!(written, expected);
        let back: Observations = serde_json::from_value(written).unwrap();
        assert_eq!(back, o);
    }

    #[test]
    fn a_missing_field_is_an_error_not_an_empty_value() {
        let mut written = serde_json::to_value(observed()).unwrap();
        written["batches"][0]["plan"]
            .as_object_mut()
            .unwrap()
            .remove("url");
        let err = serde_json::from_value::<Observations>(written).unwrap_err();
        assert!(err.to_string().contains("missing field `url`"), "{err}");
    }

    #[test]
    fn the_log_is_the_evidence_when_kept_and_a_failed_request_makes_a_timeline() {
        let mut o = observed();
        assert!(o.has_timeline());
        assert_eq!(o.batches[0].counts().get("in-ambient-1"), Some(&1));
        assert_eq!(o.batches[0].failures(), 1);
        let line = |message: &str| LogLine {
            observed_at: ms(1),
            timestamp: None,
            level: "info".into(),
            target: "access".into(),
            message: message.into(),
            fields: Default::default(),
            raw: message.into(),
        };
        o.log_lines = vec![line("read by an assertion")];
        assert_eq!(o.log()[0].message, "read by an assertion");
        o.failure_evidence = Some(FailureEvidence {
            ztunnel_log: vec![line("a"), line("b")],
            ..FailureEvidence::default()
        });
        assert_eq!(o.log().len(), 2);
        o.faults.clear();
        o.batches[0].records.truncate(1);
        assert!(!o.has_timeline());
    }
}

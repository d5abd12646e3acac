//! Istio's TCP connection metrics (`istio_tcp_*`), as upstream ztunnel exports them on
//! `/metrics` in the Prometheus text format, reported from the source side.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use crate::log::lock;

/// Labels of one connection's metrics; `unknown` where a value is not known.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnectionLabels {
    pub source_workload: String,
    pub source_workload_namespace: String,
    pub source_principal: String,
    pub destination_workload: String,
    pub destination_workload_namespace: String,
    pub destination_service: String,
    /// `-`, or `UF` when no upstream connection could be made.
    pub response_flags: &'static str,
    /// `mutual_tls` for a connection carried over HBONE, else `unknown`, as upstream labels it.
    pub connection_security_policy: &'static str,
}

impl ConnectionLabels {
    fn render(&self) -> String {
        let pairs = [
            ("reporter", "source"),
            ("source_workload", &self.source_workload),
            ("source_workload_namespace", &self.source_workload_namespace),
            ("source_principal", &self.source_principal),
            ("destination_workload", &self.destination_workload),
            (
                "destination_workload_namespace",
                &self.destination_workload_namespace,
            ),
            ("destination_service", &self.destination_service),
            ("request_protocol", "tcp"),
            ("response_flags", self.response_flags),
            (
                "connection_security_policy",
                self.connection_security_policy,
            ),
        ];
        let body: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
            .collect();
        body.join(",")
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counters {
    opened: u64,
    closed: u64,
    failed: u64,
    sent: u64,
    received: u64,
}

/// The counters, by label set.
#[derive(Debug, Default)]
pub struct Metrics {
    series: Mutex<BTreeMap<ConnectionLabels, Counters>>,
}

/// Name, help text and value of each metric family.
type Family = (&'static str, &'static str, fn(&Counters) -> u64);

const FAMILIES: [Family; 5] = [
    (
        "istio_tcp_connections_opened_total",
        "Connections opened.",
        |c| c.opened,
    ),
    (
        "istio_tcp_connections_closed_total",
        "Connections closed.",
        |c| c.closed,
    ),
    (
        "istio_tcp_connections_failed_total",
        "Connections that could not reach any upstream.",
        |c| c.failed,
    ),
    (
        "istio_tcp_sent_bytes_total",
        "Bytes sent from the client to the upstream.",
        |c| c.sent,
    ),
    (
        "istio_tcp_received_bytes_total",
        "Bytes received from the upstream for the client.",
        |c| c.received,
    ),
];

impl Metrics {
    fn update(&self, labels: ConnectionLabels, f: impl FnOnce(&mut Counters)) {
        f(lock(&self.series).entry(labels).or_default());
    }

    pub fn opened(&self, labels: ConnectionLabels) {
        self.update(labels, |c| c.opened += 1);
    }

    pub fn closed(&self, labels: ConnectionLabels, sent: u64, received: u64) {
        self.update(labels, |c| {
            c.closed += 1;
            c.sent += sent;
            c.received += received;
        });
    }

    pub fn failed(&self, labels: ConnectionLabels) {
        self.update(labels, |c| c.failed += 1);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let series = lock(&self.series).clone();
        let mut out = String::new();
        for (name, help, value) in FAMILIES {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            for (labels, counters) in &series {
                let _ = writeln!(out, "{name}{{{}}} {}", labels.render(), value(counters));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(flags: &'static str) -> ConnectionLabels {
        ConnectionLabels {
            source_workload: "client-in-ambient".into(),
            source_workload_namespace: "httpbin".into(),
            source_principal: "spiffe://cluster.local/ns/httpbin/sa/client-in-ambient".into(),
            destination_workload: "in-ambient".into(),
            destination_workload_namespace: "httpbin".into(),
            destination_service: "in-ambient.httpbin.svc.cluster.local".into(),
            response_flags: flags,
            connection_security_policy: "unknown",
        }
    }

    #[test]
    fn renders_counters_with_istio_labels() {
        let metrics = Metrics::default();
        metrics.opened(labels("-"));
        metrics.closed(labels("-"), 78, 45);
        metrics.opened(labels("-"));
        metrics.closed(labels("-"), 78, 45);
        metrics.failed(labels("UF"));
        let text = metrics.render();
        let series = "reporter=\"source\",source_workload=\"client-in-ambient\",\
            source_workload_namespace=\"httpbin\",\
            source_principal=\"spiffe://cluster.local/ns/httpbin/sa/client-in-ambient\",\
            destination_workload=\"in-ambient\",destination_workload_namespace=\"httpbin\",\
            destination_service=\"in-ambient.httpbin.svc.cluster.local\",request_protocol=\"tcp\"";
        for expected in [
            format!(
                "istio_tcp_connections_opened_total{{{series},response_flags=\"-\",connection_security_policy=\"unknown\"}} 2"
            ),
            format!(
                "istio_tcp_connections_closed_total{{{series},response_flags=\"-\",connection_security_policy=\"unknown\"}} 2"
            ),
            format!(
                "istio_tcp_sent_bytes_total{{{series},response_flags=\"-\",connection_security_policy=\"unknown\"}} 156"
            ),
            format!(
                "istio_tcp_received_bytes_total{{{series},response_flags=\"-\",connection_security_policy=\"unknown\"}} 90"
            ),
            format!(
                "istio_tcp_connections_failed_total{{{series},response_flags=\"UF\",connection_security_policy=\"unknown\"}} 1"
            ),
        ] {
            assert!(
                text.lines().any(|l| l == expected),
                "missing {expected}\n{text}"
            );
        }
        assert!(text.contains("# TYPE istio_tcp_connections_failed_total counter"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}

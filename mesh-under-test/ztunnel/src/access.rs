//! The access log line and metric labels of one proxied connection (LOG-1, LOG-2), in
//! upstream's field order: `src.*`, `dst.*`, direction, byte counts, duration, error.

use std::net::SocketAddr;
use std::time::Duration;

use crate::defects::{Defect, Defects};
use crate::local_config::LocalWorkload;
use crate::log::{Level, Record};
use crate::metrics::ConnectionLabels;
use crate::model::{ProxyWorkload, canonical_name};

const UNKNOWN: &str = "unknown";

/// Everything known about a connection when it ends.
#[derive(Debug, Clone)]
pub struct ConnectionSummary<'a> {
    pub src_addr: SocketAddr,
    pub proxy: &'a ProxyWorkload,
    /// The endpoint connected to (or last tried), else the original destination.
    pub dst_addr: SocketAddr,
    pub dst_service: Option<&'a str>,
    pub dst_workload: Option<&'a LocalWorkload>,
    /// Set only by the `log-wrong-workload` defect: the name the log shows instead.
    pub logged_workload: Option<&'a str>,
    pub bytes_sent: u64,
    pub bytes_recv: u64,
    pub duration: Duration,
    /// Why no upstream connection could be made.
    pub error: Option<String>,
}

impl ConnectionSummary<'_> {
    pub fn record(&self, defects: &Defects) -> Record {
        let (level, message) = match self.error {
            None => (Level::Info, "connection complete"),
            Some(_) => (Level::Warn, "connection failed"),
        };
        let info = &self.proxy.info;
        let mut record = Record::new(level, "access", message)
            .bare("src.addr", self.src_addr)
            .str("src.workload", info.name.as_str())
            .str("src.namespace", info.namespace.as_str());
        if !defects.is_on(Defect::LogMissingIdentity) {
            record = record.str("src.identity", self.proxy.identity.as_str());
        }
        let workload_name = self
            .logged_workload
            .or(self.dst_workload.map(|w| w.name.as_str()));
        let record = record
            .bare("dst.addr", self.dst_addr)
            .opt_str("dst.service", self.dst_service)
            .opt_str("dst.workload", workload_name)
            .opt_str(
                "dst.namespace",
                self.dst_workload.map(|w| w.namespace.as_str()),
            )
            .str("direction", "outbound")
            .uint("bytes_sent", self.bytes_sent)
            .uint("bytes_recv", self.bytes_recv)
            .str("duration", format!("{}ms", self.duration.as_millis()));
        record.opt_str("error", self.error.as_deref())
    }

    pub fn labels(&self) -> ConnectionLabels {
        let info = &self.proxy.info;
        ConnectionLabels {
            source_workload: self
                .proxy
                .workload
                .as_ref()
                .map_or(info.name.as_str(), canonical_name)
                .to_string(),
            source_workload_namespace: info.namespace.clone(),
            source_principal: self.proxy.identity.clone(),
            destination_workload: self
                .dst_workload
                .map_or(UNKNOWN, canonical_name)
                .to_string(),
            destination_workload_namespace: self
                .dst_workload
                .map_or(UNKNOWN, |w| w.namespace.as_str())
                .to_string(),
            destination_service: self.dst_service.unwrap_or(UNKNOWN).to_string(),
            response_flags: if self.error.is_some() { "UF" } else { "-" },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::WorkloadInfo;
    use crate::log::{format_text, strip_timestamp};
    use crate::ranking::tests::workload;
    use std::time::SystemTime;

    fn proxy() -> ProxyWorkload {
        let mut w = workload("client-in-ambient-6b5c96c4f8-x2j9k");
        w.namespace = "httpbin".into();
        w.workload_name = "client-in-ambient".into();
        ProxyWorkload {
            info: WorkloadInfo {
                namespace: "httpbin".into(),
                name: "client-in-ambient-6b5c96c4f8-x2j9k".into(),
                service_account: "client-in-ambient".into(),
            },
            workload: Some(w),
            identity: "spiffe://cluster.local/ns/httpbin/sa/client-in-ambient".into(),
        }
    }

    fn backend() -> LocalWorkload {
        let mut w = workload("in-ambient-7d8f9b6c54-abc12");
        w.namespace = "httpbin".into();
        w.workload_name = "in-ambient".into();
        w
    }

    fn text(summary: &ConnectionSummary, defects: &Defects) -> String {
        strip_timestamp(&format_text(&summary.record(defects), SystemTime::now())).to_string()
    }

    #[test]
    fn golden_line_of_the_guide() {
        let (proxy, backend) = (proxy(), backend());
        let summary = ConnectionSummary {
            src_addr: "10.10.0.14:40292".parse().unwrap(),
            proxy: &proxy,
            dst_addr: "10.10.0.15:8080".parse().unwrap(),
            dst_service: Some("in-ambient.httpbin.svc.cluster.local"),
            dst_workload: Some(&backend),
            logged_workload: None,
            bytes_sent: 78,
            bytes_recv: 45,
            duration: Duration::from_micros(12_400),
            error: None,
        };
        assert_eq!(
            text(&summary, &Defects::none()),
            "info access connection complete src.addr=10.10.0.14:40292 \
             src.workload=\"client-in-ambient-6b5c96c4f8-x2j9k\" src.namespace=\"httpbin\" \
             src.identity=\"spiffe://cluster.local/ns/httpbin/sa/client-in-ambient\" \
             dst.addr=10.10.0.15:8080 dst.service=\"in-ambient.httpbin.svc.cluster.local\" \
             dst.workload=\"in-ambient-7d8f9b6c54-abc12\" dst.namespace=\"httpbin\" \
             direction=\"outbound\" bytes_sent=78 bytes_recv=45 duration=\"12ms\""
        );
        let labels = summary.labels();
        assert_eq!(labels.source_workload, "client-in-ambient");
        assert_eq!(labels.destination_workload, "in-ambient");
        assert_eq!(labels.response_flags, "-");

        let defects: Defects = [Defect::LogMissingIdentity].into_iter().collect();
        assert!(!text(&summary, &defects).contains("src.identity"));
        let wrong = ConnectionSummary {
            logged_workload: Some("in-ambient-other"),
            ..summary
        };
        assert!(text(&wrong, &Defects::none()).contains("dst.workload=\"in-ambient-other\""));
    }

    #[test]
    fn golden_failure_line() {
        let (proxy, backend) = (proxy(), backend());
        let summary = ConnectionSummary {
            src_addr: "10.10.0.14:40300".parse().unwrap(),
            proxy: &proxy,
            dst_addr: "10.10.0.15:8080".parse().unwrap(),
            dst_service: Some("in-ambient.httpbin.svc.cluster.local"),
            dst_workload: Some(&backend),
            logged_workload: None,
            bytes_sent: 0,
            bytes_recv: 0,
            duration: Duration::from_millis(750),
            error: Some("connection timeout".into()),
        };
        let line = text(&summary, &Defects::none());
        assert!(
            line.starts_with("warn access connection failed src.addr=10.10.0.14:40300 "),
            "{line}"
        );
        assert!(
            line.ends_with(
                " bytes_sent=0 bytes_recv=0 duration=\"750ms\" error=\"connection timeout\""
            ),
            "{line}"
        );
        assert_eq!(summary.labels().response_flags, "UF");
    }
}

//! The access log lines of proxied connections (LOG-1, LOG-2), in upstream's field order:
//! `src.*`, `dst.*`, direction, byte counts, duration, error; and the metric labels of an
//! outbound one. An HBONE connection's line names the destination ztunnel in `dst.addr`, the
//! workload in `dst.hbone_addr` and the peer identities, as upstream's does.

use std::net::SocketAddr;
use std::time::Duration;

use crate::defects::{Defect, Defects};
use crate::local_config::LocalWorkload;
use crate::log::{Level, Record};
use crate::metrics::ConnectionLabels;
use crate::model::{ProxyWorkload, canonical_name};

const UNKNOWN: &str = "unknown";

/// The fields of one access line; `None` fields are left out, as upstream leaves out unknowns.
#[derive(Debug, Clone, Default)]
pub struct AccessLine<'a> {
    pub src_addr: Option<SocketAddr>,
    pub src_workload: Option<&'a str>,
    pub src_namespace: Option<&'a str>,
    pub src_identity: Option<&'a str>,
    pub dst_addr: Option<SocketAddr>,
    /// HBONE: the workload address the CONNECT asked for (`dst.addr` is then its ztunnel's).
    pub dst_hbone_addr: Option<SocketAddr>,
    pub dst_service: Option<&'a str>,
    pub dst_workload: Option<&'a str>,
    pub dst_namespace: Option<&'a str>,
    pub dst_identity: Option<&'a str>,
    pub direction: &'static str,
    pub bytes_sent: u64,
    pub bytes_recv: u64,
    pub duration: Duration,
    pub error: Option<&'a str>,
}

impl AccessLine<'_> {
    pub fn record(&self) -> Record {
        let (level, message) = match self.error {
            None => (Level::Info, "connection complete"),
            Some(_) => (Level::Warn, "connection failed"),
        };
        let bare = |record: Record, key, addr: Option<SocketAddr>| match addr {
            Some(addr) => record.bare(key, addr),
            None => record,
        };
        let record = bare(
            Record::new(level, "access", message),
            "src.addr",
            self.src_addr,
        )
        .opt_str("src.workload", self.src_workload)
        .opt_str("src.namespace", self.src_namespace)
        .opt_str("src.identity", self.src_identity);
        let record = bare(record, "dst.addr", self.dst_addr);
        bare(record, "dst.hbone_addr", self.dst_hbone_addr)
            .opt_str("dst.service", self.dst_service)
            .opt_str("dst.workload", self.dst_workload)
            .opt_str("dst.namespace", self.dst_namespace)
            .opt_str("dst.identity", self.dst_identity)
            .str("direction", self.direction)
            .uint("bytes_sent", self.bytes_sent)
            .uint("bytes_recv", self.bytes_recv)
            .str("duration", format!("{}ms", self.duration.as_millis()))
            .opt_str("error", self.error)
    }
}

/// A connection refused before anything about it was known (upstream's `log_early_deny`).
pub fn early_deny(src: SocketAddr, dst: SocketAddr, direction: &str, error: &str) -> Record {
    Record::new(Level::Warn, "access", "connection failed")
        .bare("src.addr", src)
        .bare("dst.addr", dst)
        .str("direction", direction)
        .str("error", error)
}

/// How an outbound connection reached its workload through HBONE.
#[derive(Debug, Clone, PartialEq)]
pub struct HboneHop {
    /// The destination ztunnel (`<workload ip>:15008`).
    pub ztunnel: SocketAddr,
    /// The identity the destination proved (the workload's).
    pub identity: String,
}

/// Everything known about an outbound connection when it ends.
#[derive(Debug, Clone)]
pub struct ConnectionSummary<'a> {
    pub src_addr: SocketAddr,
    pub proxy: &'a ProxyWorkload,
    /// The endpoint connected to (or last tried), else the original destination.
    pub dst_addr: SocketAddr,
    pub dst_service: Option<&'a str>,
    pub dst_workload: Option<&'a LocalWorkload>,
    /// Set when the endpoint is reached through HBONE.
    pub hbone: Option<HboneHop>,
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
        let info = &self.proxy.info;
        let (dst_addr, dst_hbone_addr) = match &self.hbone {
            Some(hop) => (hop.ztunnel, Some(self.dst_addr)),
            None => (self.dst_addr, None),
        };
        AccessLine {
            src_addr: Some(self.src_addr),
            src_workload: Some(info.name.as_str()),
            src_namespace: Some(info.namespace.as_str()),
            src_identity: Some(self.proxy.identity.as_str())
                .filter(|_| !defects.is_on(Defect::LogMissingIdentity)),
            dst_addr: Some(dst_addr),
            dst_hbone_addr,
            dst_service: self.dst_service,
            dst_workload: self
                .logged_workload
                .or(self.dst_workload.map(|w| w.name.as_str())),
            dst_namespace: self.dst_workload.map(|w| w.namespace.as_str()),
            dst_identity: self.hbone.as_ref().map(|hop| hop.identity.as_str()),
            direction: "outbound",
            bytes_sent: self.bytes_sent,
            bytes_recv: self.bytes_recv,
            duration: self.duration,
            error: self.error.as_deref(),
        }
        .record()
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
            connection_security_policy: match self.hbone {
                Some(_) => "mutual_tls",
                None => "unknown",
            },
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

    /// The connection of the guide's line.
    fn guide<'a>(proxy: &'a ProxyWorkload, backend: &'a LocalWorkload) -> ConnectionSummary<'a> {
        ConnectionSummary {
            src_addr: "10.10.0.14:40292".parse().unwrap(),
            proxy,
            dst_addr: "10.10.0.15:8080".parse().unwrap(),
            dst_service: Some("in-ambient.httpbin.svc.cluster.local"),
            dst_workload: Some(backend),
            hbone: None,
            logged_workload: None,
            bytes_sent: 78,
            bytes_recv: 45,
            duration: Duration::from_micros(12_400),
            error: None,
        }
    }

    #[test]
    fn golden_line_of_the_guide() {
        let (proxy, backend) = (proxy(), backend());
        let summary = guide(&proxy, &backend);
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
            bytes_sent: 0,
            bytes_recv: 0,
            duration: Duration::from_millis(750),
            error: Some("connection timeout".into()),
            ..guide(&proxy, &backend)
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
        assert_eq!(summary.labels().connection_security_policy, "unknown");
    }

    #[test]
    fn golden_hbone_failure_line_and_early_deny() {
        let (proxy, backend) = (proxy(), backend());
        let summary = ConnectionSummary {
            hbone: Some(HboneHop {
                ztunnel: "10.10.0.15:15008".parse().unwrap(),
                identity: "spiffe://cluster.local/ns/httpbin/sa/in-ambient".into(),
            }),
            error: Some("connection timeout".into()),
            ..guide(&proxy, &backend)
        };
        let line = text(&summary, &Defects::none());
        assert!(
            line.contains(
                " dst.addr=10.10.0.15:15008 dst.hbone_addr=10.10.0.15:8080 \
                 dst.service=\"in-ambient.httpbin.svc.cluster.local\" \
                 dst.workload=\"in-ambient-7d8f9b6c54-abc12\" dst.namespace=\"httpbin\" \
                 dst.identity=\"spiffe://cluster.local/ns/httpbin/sa/in-ambient\" \
                 direction=\"outbound\" "
            ),
            "{line}"
        );
        assert_eq!(summary.labels().connection_security_policy, "mutual_tls");
        let deny = early_deny(
            "10.10.0.14:40312".parse().unwrap(),
            "10.10.0.15:15008".parse().unwrap(),
            "inbound",
            "TLS handshake: peer sent no certificates",
        );
        assert_eq!(
            strip_timestamp(&format_text(&deny, SystemTime::now())),
            "warn access connection failed src.addr=10.10.0.14:40312 dst.addr=10.10.0.15:15008 \
             direction=\"inbound\" error=\"TLS handshake: peer sent no certificates\""
        );
    }
}

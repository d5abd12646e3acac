//! Active TCP health checks: every `HEALTH_CHECK_INTERVAL`, a connect to every endpoint of every
//! service this proxy has routed a connection to, within `HEALTH_CHECK_TIMEOUT`, then close.
//! Outcomes feed outlier detection; failures log `health_check connection failed to endpoint`
//! as the guide shows.

use std::sync::Arc;

use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use crate::defects::Defect;
use crate::log::{Level, Record};
use crate::model::Endpoint;
use crate::outlier::Outcome;
use crate::shutdown::Shutdown;
use crate::socket::{ConnectError, SocketFactory, connect};
use crate::state::ProxyState;

/// Checks every interval until shutdown. Does nothing when outlier detection is off.
pub async fn run(state: Arc<ProxyState>, sockets: Arc<dyn SocketFactory>, mut shutdown: Shutdown) {
    if !state.config.outlier_detection || state.config.defects.is_on(Defect::NoDetection) {
        return;
    }
    let mut ticker = tokio::time::interval(state.config.health_check_interval);
    // A slow round delays the next instead of bursting to catch up.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => check_round(&state, &sockets).await,
            _ = shutdown.wait() => return,
        }
    }
}

/// One round: expired ejections turn half-open, then every watched endpoint is probed
/// concurrently.
pub async fn check_round(state: &Arc<ProxyState>, sockets: &Arc<dyn SocketFactory>) {
    state.poll_breakers();
    let mut checks = JoinSet::new();
    for endpoint in state.watched_endpoints() {
        let (state, sockets) = (Arc::clone(state), Arc::clone(sockets));
        checks.spawn(async move {
            match connect(&*sockets, endpoint.addr, state.config.health_check_timeout).await {
                Ok(stream) => {
                    drop(stream);
                    state.observe(&endpoint, Outcome::Success);
                }
                Err(e) => {
                    state.log(failure_record(
                        &endpoint,
                        &e,
                        state.config.defects.is_on(Defect::HealthLogMissingError),
                    ));
                    state.observe(&endpoint, Outcome::Failure);
                }
            }
        });
    }
    while checks.join_next().await.is_some() {}
}

fn failure_record(endpoint: &Endpoint, error: &ConnectError, omit_error: bool) -> Record {
    let record = Record::new(Level::Warn, "health_check", "connection failed to endpoint")
        .bare("dst.addr", endpoint.addr)
        .str("dst.workload", endpoint.workload.name.as_str())
        .str("dst.service", endpoint.service.as_str());
    if omit_error {
        record
    } else {
        record.str("error", error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{format_text, strip_timestamp};
    use crate::model::EndpointKey;
    use crate::ranking::tests::workload;
    use std::time::SystemTime;

    #[test]
    fn golden_failure_line() {
        let endpoint = Endpoint {
            key: EndpointKey {
                uid: "u".into(),
                port: 8080,
            },
            addr: "10.10.0.15:8080".parse().unwrap(),
            workload: Arc::new(workload("in-ambient-7d8f9b6c54-ghi56")),
            service: "in-ambient.httpbin.svc.cluster.local".into(),
        };
        let line = format_text(
            &failure_record(&endpoint, &ConnectError::Timeout, false),
            SystemTime::now(),
        );
        assert_eq!(
            strip_timestamp(&line),
            "warn health_check connection failed to endpoint dst.addr=10.10.0.15:8080 \
             dst.workload=\"in-ambient-7d8f9b6c54-ghi56\" \
             dst.service=\"in-ambient.httpbin.svc.cluster.local\" error=\"connection timeout\""
        );
        let line = format_text(
            &failure_record(&endpoint, &ConnectError::Timeout, true),
            SystemTime::now(),
        );
        assert!(!line.contains("error="), "{line}");
    }
}

//! The outbound proxy (port 15001): takes connections redirected by iptables, finds where the
//! client meant to go, picks an endpoint (retrying on a different one when a connect fails, so
//! the client sees latency rather than an error), relays the bytes, then writes the access log
//! line and metrics. A `Strict` service's route holds only the endpoints in scope, so retries
//! stay among them and, when none is left, the connection is dropped with a warning (TD-ITP-1).
//! A workload with `protocol: HBONE` is reached through its ztunnel (see `hbone`); a failed
//! HBONE connect counts as a failed connect, so retries and outlier detection see no difference.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};

use crate::access::{ConnectionSummary, HboneHop};
use crate::copy::{self, Transfer};
use crate::defects::Defect;
use crate::hbone::{self, ConnectRequest, HboneClient, HboneStream};
use crate::local_config::{LocalWorkload, Protocol};
use crate::log::{Level, Record};
use crate::model::{Destination, Endpoint, Model, Route, workload_identity};
use crate::outlier::Outcome;
use crate::ranking::StrictScope;
use crate::shutdown::Shutdown;
use crate::socket::{ConnectError, OriginalDst, SocketFactory, connect};
use crate::state::ProxyState;
use crate::tls::no_certificate;

/// The outbound proxy core, with its I/O boundaries injected.
#[derive(Clone)]
pub struct Outbound {
    state: Arc<ProxyState>,
    original_dst: Arc<dyn OriginalDst>,
    sockets: Arc<dyn SocketFactory>,
    hbone: Arc<HboneClient>,
}

/// A connection to the endpoint: plain TCP, or a CONNECT stream through its ztunnel.
pub enum Upstream {
    Tcp(TcpStream),
    Hbone(HboneStream),
}

impl Upstream {
    async fn relay(self, client: TcpStream) -> Transfer {
        match self {
            Upstream::Tcp(upstream) => copy::relay(client, upstream).await,
            Upstream::Hbone(upstream) => copy::relay_streams(client, upstream).await,
        }
    }
}

/// Where a connection went and how it was found, for the access log.
struct Target<'a> {
    addr: SocketAddr,
    service: Option<&'a str>,
    workload: Option<&'a LocalWorkload>,
    /// The service endpoint, when there is one: outlier detection observes it.
    endpoint: Option<&'a Endpoint>,
    route: Option<&'a Route>,
}

impl Outbound {
    /// An outbound proxy with no workload certificate: HBONE workloads cannot be reached
    /// until [`Outbound::with_hbone`] gives it a client that has one.
    pub fn new(
        state: Arc<ProxyState>,
        original_dst: Arc<dyn OriginalDst>,
        sockets: Arc<dyn SocketFactory>,
    ) -> Self {
        let hbone = HboneClient::new(
            no_certificate(),
            Arc::clone(&sockets),
            state.config.connect_timeout,
        );
        Self {
            state,
            original_dst,
            sockets,
            hbone: Arc::new(hbone),
        }
    }

    pub fn with_hbone(mut self, hbone: Arc<HboneClient>) -> Self {
        self.hbone = hbone;
        self
    }

    /// Accepts until shutdown; each connection runs in its own task.
    pub async fn serve(self, listener: TcpListener, mut shutdown: Shutdown) {
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((client, src)) => {
                        let this = self.clone();
                        tokio::spawn(async move { this.handle(client, src).await });
                    }
                    Err(e) => {
                        self.accept_failed(&e);
                        // Out of file descriptors and the like: give the system a moment.
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    }
                },
                _ = shutdown.wait() => return,
            }
        }
    }

    pub fn accept_failed(&self, e: &std::io::Error) {
        self.state
            .log(Record::new(Level::Warn, "proxy", "accept failed").str("error", e.to_string()));
    }

    /// Proxies one client connection, from `src`, to its end.
    pub async fn handle(&self, client: TcpStream, src: SocketAddr) {
        let started = tokio::time::Instant::now();
        let Ok(local) = client.local_addr() else {
            return;
        };
        let original = match self.original_dst.original_dst(&client, local) {
            Ok(dst) if dst != local => dst,
            // A connection made straight to 15001 has no other destination: refuse it, as
            // upstream does, rather than loop back into ourselves.
            Ok(_) | Err(_) => {
                self.state.log(
                    Record::new(
                        Level::Debug,
                        "proxy",
                        "direct connection to the outbound port refused",
                    )
                    .bare("src.addr", src),
                );
                return;
            }
        };
        let model = self.state.model();
        match model.destination(original) {
            Destination::Service(route) => {
                self.to_service(client, src, original, &model, &route, started)
                    .await
            }
            Destination::Workload { workload, addr } => {
                let target = Target {
                    addr,
                    service: None,
                    workload: Some(&workload),
                    endpoint: None,
                    route: None,
                };
                self.to_address(client, src, &model, target, started).await
            }
            Destination::Passthrough(addr) => {
                let target = Target {
                    addr,
                    service: None,
                    workload: None,
                    endpoint: None,
                    route: None,
                };
                self.to_address(client, src, &model, target, started).await
            }
            Destination::Unroutable { hostname, reason } => {
                let target = Target {
                    addr: original,
                    service: Some(&hostname),
                    workload: None,
                    endpoint: None,
                    route: None,
                };
                self.finish_failed(src, &model, &target, reason, started)
            }
        }
    }

    async fn to_service(
        &self,
        client: TcpStream,
        src: SocketAddr,
        original: SocketAddr,
        model: &Model,
        route: &Route,
        started: tokio::time::Instant,
    ) {
        let config = &self.state.config;
        let counter = self.state.start_connection(route);
        let mut tried = Vec::new();
        let mut last_failure: Option<(Arc<Endpoint>, ConnectError)> = None;
        while tried.len() < config.effective_connect_attempts() as usize {
            let Some(endpoint) = self.state.pick(route, counter, &tried) else {
                break;
            };
            let target = Target {
                addr: endpoint.addr,
                service: Some(&route.hostname),
                workload: Some(&endpoint.workload),
                endpoint: Some(&endpoint),
                route: Some(route),
            };
            match self.connect(&target, src, model).await {
                Ok(upstream) => {
                    self.state.observe(&endpoint, Outcome::Success);
                    return self
                        .relay(client, upstream, src, model, &target, started)
                        .await;
                }
                Err(e) => {
                    self.state.observe(&endpoint, Outcome::Failure);
                    tried.push(endpoint.key.clone());
                    last_failure = Some((endpoint, e));
                }
            }
        }
        drop(client);
        if let Some(scope) = &route.strict {
            let locality_known = model.proxy.workload.is_some();
            self.state.log(strict_drop_record(
                src,
                route,
                scope,
                tried.len(),
                locality_known,
            ));
        }
        let (target, error) = match &last_failure {
            Some((endpoint, e)) => (
                Target {
                    addr: endpoint.addr,
                    service: Some(&route.hostname),
                    workload: Some(&endpoint.workload),
                    endpoint: None,
                    route: None,
                },
                e.to_string(),
            ),
            None => (
                Target {
                    addr: original,
                    service: Some(&route.hostname),
                    workload: None,
                    endpoint: None,
                    route: None,
                },
                "no healthy upstream".to_string(),
            ),
        };
        self.finish_failed(src, model, &target, error, started);
    }

    async fn to_address(
        &self,
        client: TcpStream,
        src: SocketAddr,
        model: &Model,
        target: Target<'_>,
        started: tokio::time::Instant,
    ) {
        match self.connect(&target, src, model).await {
            Ok(upstream) => {
                self.relay(client, upstream, src, model, &target, started)
                    .await
            }
            Err(e) => {
                drop(client);
                self.finish_failed(src, model, &target, e.to_string(), started);
            }
        }
    }

    /// Connects to the target as its workload is reached: through HBONE, or over TCP.
    async fn connect(
        &self,
        target: &Target<'_>,
        src: SocketAddr,
        model: &Model,
    ) -> Result<Upstream, ConnectError> {
        match target.workload.filter(|w| w.protocol == Protocol::HBONE) {
            None => connect(
                &*self.sockets,
                target.addr,
                self.state.config.connect_timeout,
            )
            .await
            .map(Upstream::Tcp),
            Some(workload) => {
                let request = ConnectRequest {
                    target: target.addr,
                    identity: workload_identity(workload),
                    src,
                    service: target.service,
                    baggage: hbone::baggage(model.proxy.workload.as_ref()),
                };
                self.hbone.connect(&request).await.map(Upstream::Hbone)
            }
        }
    }

    async fn relay(
        &self,
        client: TcpStream,
        upstream: Upstream,
        src: SocketAddr,
        model: &Model,
        target: &Target<'_>,
        started: tokio::time::Instant,
    ) {
        let defects = &self.state.config.defects;
        let mut summary = self.summary(src, model, target, started);
        self.state.metrics.opened(summary.labels());
        let transfer = upstream.relay(client).await;
        if let Some(endpoint) = target.endpoint
            && defects.is_on(Defect::EjectOnHttp5xx)
        {
            self.state
                .observe_answer(endpoint, transfer.upstream_answered_5xx());
        }
        summary.bytes_sent = transfer.sent;
        summary.bytes_recv = transfer.received;
        summary.duration = started.elapsed();
        self.state.log(summary.record(defects));
        self.state
            .metrics
            .closed(summary.labels(), transfer.sent, transfer.received);
    }

    fn finish_failed(
        &self,
        src: SocketAddr,
        model: &Model,
        target: &Target<'_>,
        error: String,
        started: tokio::time::Instant,
    ) {
        let mut summary = self.summary(src, model, target, started);
        summary.error = Some(error);
        self.state.log(summary.record(&self.state.config.defects));
        self.state.metrics.failed(summary.labels());
    }

    fn summary<'a>(
        &self,
        src: SocketAddr,
        model: &'a Model,
        target: &Target<'a>,
        started: tokio::time::Instant,
    ) -> ConnectionSummary<'a> {
        let logged_workload = match (target.route, target.endpoint) {
            (Some(route), Some(endpoint))
                if self.state.config.defects.is_on(Defect::LogWrongWorkload) =>
            {
                route
                    .other_endpoint(&endpoint.key)
                    .map(|e| e.workload.name.as_str())
            }
            _ => None,
        };
        let hbone = target
            .workload
            .filter(|w| w.protocol == Protocol::HBONE)
            .map(|w| HboneHop {
                ztunnel: self.hbone.ztunnel_addr(target.addr),
                identity: workload_identity(w).to_string(),
            });
        ConnectionSummary {
            src_addr: src,
            proxy: &model.proxy,
            dst_addr: target.addr,
            dst_service: target.service,
            dst_workload: target.workload,
            hbone,
            logged_workload,
            bytes_sent: 0,
            bytes_recv: 0,
            duration: started.elapsed(),
            error: None,
        }
    }
}

/// The warning for a connection to a `Strict` service that no endpoint in scope could take.
fn strict_drop_record(
    src: SocketAddr,
    route: &Route,
    scope: &StrictScope,
    tried: usize,
    locality_known: bool,
) -> Record {
    let endpoints = route.endpoints().count();
    let place = &scope.place;
    let reason = if !locality_known {
        format!(
            "this proxy's own workload is not in the config, so no endpoint is known to be {place}"
        )
    } else if endpoints == 0 {
        format!("no endpoint of the service is {place}")
    } else {
        format!("no endpoint of the service {place} accepted the connection")
    };
    Record::new(
        Level::Warn,
        "proxy",
        "no usable endpoint in the strict scope, connection dropped",
    )
    .bare("src.addr", src)
    .str("dst.service", route.hostname.as_str())
    .str("scope", scope.scope.as_str())
    .uint("endpoints", endpoints as u64)
    .uint("tried", tried as u64)
    .str("reason", reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local_config::RoutingPreference;
    use crate::log::{format_text, strip_timestamp};
    use rstest::rstest;
    use std::time::SystemTime;

    fn strict_route(endpoints: usize) -> Route {
        let model = crate::state::tests::test_state().model();
        let one = Arc::clone(&model.endpoints()[0]);
        Route {
            service_key: "httpbin/local.httpbin.svc.cluster.local".into(),
            hostname: "local.httpbin.svc.cluster.local".into(),
            port: 8000,
            levels: if endpoints == 0 {
                Vec::new()
            } else {
                vec![vec![one; endpoints]]
            },
            strict: Some(StrictScope::new(&[RoutingPreference::Node])),
        }
    }

    #[rstest]
    #[case(
        0,
        0,
        true,
        "endpoints=0 tried=0 reason=\"no endpoint of the service is on this node\""
    )]
    #[case(
        2,
        2,
        true,
        "endpoints=2 tried=2 reason=\"no endpoint of the service on this node accepted the connection\""
    )]
    #[case(
        0,
        0,
        false,
        "endpoints=0 tried=0 reason=\"this proxy's own workload is not in the config, so no endpoint is known to be on this node\""
    )]
    fn golden_strict_drop_line(
        #[case] endpoints: usize,
        #[case] tried: usize,
        #[case] locality_known: bool,
        #[case] tail: &str,
    ) {
        let route = strict_route(endpoints);
        let record = strict_drop_record(
            "10.244.0.5:40000".parse().unwrap(),
            &route,
            route.strict.as_ref().unwrap(),
            tried,
            locality_known,
        );
        assert_eq!(
            strip_timestamp(&format_text(&record, SystemTime::now())),
            format!(
                "warn proxy no usable endpoint in the strict scope, connection dropped \
                 src.addr=10.244.0.5:40000 dst.service=\"local.httpbin.svc.cluster.local\" \
                 scope=\"node\" {tail}"
            )
        );
    }
}

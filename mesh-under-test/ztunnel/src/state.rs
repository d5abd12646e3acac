//! What the proxy's tasks share: the current routing model (swapped on reload), the
//! load-balancing state, settings, logs and metrics. Turns balancer events into log lines.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use serde_json::json;

use crate::balancer::Balancer;
use crate::config::Config;
use crate::defects::Defect;
use crate::log::{Level, Logger, Record, lock};
use crate::metrics::Metrics;
use crate::model::{Endpoint, EndpointKey, Model, Route};
use crate::outlier::{HealthEvent, Outcome};

pub struct ProxyState {
    pub config: Config,
    pub logger: Logger,
    pub metrics: Metrics,
    model: RwLock<Arc<Model>>,
    balancer: Mutex<Balancer>,
    /// Endpoints of the services this proxy has routed to: the only ones health-checked, as
    /// a ztunnel in a large mesh probes what it sends to, not every endpoint it knows.
    watched: Mutex<HashSet<EndpointKey>>,
    ready: AtomicBool,
}

/// The time the state machines see; tokio's clock, so tests can pause it.
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl ProxyState {
    pub fn new(config: Config, model: Model, logger: Logger) -> Arc<Self> {
        // Over xDS the model starts empty: only a pushed config can miss the proxy's workload.
        if config.local_xds_path().is_some()
            && let Some(record) = model.proxy.missing_record(&config.config_origin())
        {
            logger.log(record);
        }
        let balancer = Balancer::new(
            config.outlier_settings(),
            config.outlier_detection && !config.defects.is_on(Defect::NoDetection),
            &config.defects,
        );
        Arc::new(Self {
            config,
            logger,
            metrics: Metrics::default(),
            model: RwLock::new(Arc::new(model)),
            balancer: Mutex::new(balancer),
            watched: Mutex::new(HashSet::new()),
            ready: AtomicBool::new(false),
        })
    }

    pub fn model(&self) -> Arc<Model> {
        Arc::clone(&self.model.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Swaps in a reloaded model; endpoints that remain keep their outlier state.
    pub fn install(&self, model: Model) {
        if let Some(record) = model.proxy.missing_record(&self.config.config_origin()) {
            self.log(record);
        }
        let keep: HashSet<EndpointKey> = model.endpoints().iter().map(|e| e.key.clone()).collect();
        *self.model.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(model);
        lock(&self.balancer).retain(|k| keep.contains(k));
        lock(&self.watched).retain(|k| keep.contains(k));
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// A connection routed to `route`: its endpoints are health-checked from now on.
    pub fn start_connection(&self, route: &Route) -> u64 {
        let mut watched = lock(&self.watched);
        for endpoint in route.endpoints() {
            if !watched.contains(&endpoint.key) {
                watched.insert(endpoint.key.clone());
            }
        }
        drop(watched);
        lock(&self.balancer).start_connection(&route.service_key)
    }

    /// The endpoints the next health-check round probes: those of routes connected to.
    pub fn watched_endpoints(&self) -> Vec<Arc<Endpoint>> {
        let watched = lock(&self.watched);
        self.model()
            .endpoints()
            .iter()
            .filter(|e| watched.contains(&e.key))
            .cloned()
            .collect()
    }

    pub fn pick(
        &self,
        route: &Route,
        counter: u64,
        tried: &[EndpointKey],
    ) -> Option<Arc<Endpoint>> {
        lock(&self.balancer).pick(route, counter, tried)
    }

    /// Feeds one health check or connect outcome to outlier detection and logs what changed.
    pub fn observe(&self, endpoint: &Endpoint, outcome: Outcome) {
        let events = lock(&self.balancer).observe(&endpoint.key, outcome, now());
        self.log_events(&endpoint.workload.name, &events);
    }

    /// An endpoint's answer, for the `eject-on-http-5xx` defect.
    pub fn observe_answer(&self, endpoint: &Endpoint, answered_5xx: bool) {
        lock(&self.balancer).observe_answer(&endpoint.key, answered_5xx);
    }

    /// Lets time pass for every breaker (before each health-check round).
    pub fn poll_breakers(&self) {
        let events = lock(&self.balancer).poll(now());
        if events.is_empty() {
            return;
        }
        let model = self.model();
        for (key, event) in events {
            let name = model
                .endpoints()
                .iter()
                .find(|e| e.key == key)
                .map_or(key.uid.as_str(), |e| e.workload.name.as_str());
            self.log_events(name, &[event]);
        }
    }

    fn log_events(&self, workload: &str, events: &[HealthEvent]) {
        for event in events {
            self.logger.log(event.record(workload));
        }
    }

    pub fn log(&self, record: Record) {
        self.logger.log(record);
    }

    /// `/config_dump`: the model, the settings and every endpoint's health.
    pub fn config_dump(&self) -> serde_json::Value {
        let model = self.model();
        let balancer = lock(&self.balancer);
        let endpoints: Vec<serde_json::Value> = model
            .endpoints()
            .iter()
            .map(|e| {
                let h = balancer.health(&e.key);
                json!({
                    "workload": e.workload.name,
                    "namespace": e.workload.namespace,
                    "uid": e.key.uid,
                    "service": e.service,
                    "addr": e.addr.to_string(),
                    "score": h.ewma.score(),
                    "breaker": h.breaker.state().name(),
                    "consecutiveFailures": h.breaker.consecutive_failures(),
                    "available": balancer.is_available(&e.key),
                })
            })
            .collect();
        let c = &self.config;
        json!({
            "proxy": {
                "workload": format!("{}/{}", model.proxy.info.namespace, model.proxy.info.name),
                "identity": model.proxy.identity,
                // Null when the file does not define this proxy's workload.
                "locality": model.proxy.workload.as_ref().map(|w| json!({
                    "network": w.network,
                    "region": w.locality.region,
                    "zone": w.locality.zone,
                    "subzone": w.locality.subzone,
                    "node": w.node,
                })),
            },
            "workloads": model.config().workloads,
            "services": model.config().services,
            "endpoints": endpoints,
            "settings": {
                "healthCheckInterval": format!("{:?}", c.health_check_interval),
                "healthCheckTimeout": format!("{:?}", c.health_check_timeout),
                "connectTimeout": format!("{:?}", c.connect_timeout),
                "connectAttempts": c.connect_attempts,
                "consecutiveFailures": c.consecutive_failures,
                "baseEjection": format!("{:?}", c.base_ejection),
                "maxEjection": format!("{:?}", c.max_ejection),
                "ewmaAlpha": balancer.settings().alpha,
                "outlierDetection": c.outlier_detection,
                "configReloadInterval": format!("{:?}", c.config_reload_interval),
                "defects": c.defects.iter().map(|d| d.name()).collect::<Vec<_>>(),
            },
        })
    }
}

/// The warning each active defect switch logs at start.
pub fn defect_records(config: &Config) -> Vec<Record> {
    config
        .defects
        .iter()
        .map(|d| {
            Record::new(
                Level::Warn,
                "ztunnel",
                format!("defect switch {d} is on: this ztunnel is deliberately broken"),
            )
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::local_config::LocalConfig;
    use crate::log::{LogFilter, LogFormat};
    use crate::model::tests::{CONFIG, client_info};

    /// A state over the model tests' config, logging into memory.
    pub(crate) fn test_state() -> Arc<ProxyState> {
        let env = [
            (crate::config::LOCAL_XDS_PATH, "test.yaml"),
            (crate::config::PROXY_MODE, "dedicated"),
            (
                crate::config::PROXY_WORKLOAD_INFO,
                "httpbin/client-1/client",
            ),
        ];
        let config = Config::from_lookup(|k| {
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
        .unwrap();
        let model = Model::build(
            LocalConfig::parse(CONFIG, "test.yaml").unwrap(),
            &client_info(),
            &config.defects,
            "test.yaml",
        )
        .unwrap();
        ProxyState::new(
            config,
            model,
            Logger::capture(LogFormat::Text, LogFilter::default()),
        )
    }

    #[test]
    fn observations_log_with_the_workload_name_and_show_in_the_dump() {
        let state = test_state();
        let endpoint = Arc::clone(&state.model().endpoints()[0]);
        for _ in 0..3 {
            state.observe(&endpoint, Outcome::Failure);
        }
        let lines = state.logger.captured();
        assert_eq!(lines.len(), 4, "{lines:#?}");
        assert!(
            lines[3].contains(
                "circuit_breaker endpoint marked unhealthy dst.workload=\"in-ambient-a\""
            )
        );
        let dump = state.config_dump();
        assert_eq!(dump["endpoints"][0]["workload"], "in-ambient-a");
        assert_eq!(dump["endpoints"][0]["breaker"], "open");
        assert_eq!(dump["endpoints"][0]["consecutiveFailures"], 3);
        assert_eq!(
            dump["proxy"]["identity"],
            "spiffe://cluster.local/ns/httpbin/sa/client"
        );
        assert_eq!(dump["workloads"].as_array().unwrap().len(), 4);
    }

    #[test]
    fn a_missing_proxy_workload_is_announced_at_start_and_on_install() {
        let config = test_state().config.clone();
        let ghost = crate::config::WorkloadInfo {
            name: "ghost".into(),
            ..client_info()
        };
        let build = || {
            let parsed = LocalConfig::parse(CONFIG, "test.yaml").unwrap();
            Model::build(parsed, &ghost, &config.defects, "test.yaml").unwrap()
        };
        let state = ProxyState::new(
            config.clone(),
            build(),
            Logger::capture(LogFormat::Text, LogFilter::default()),
        );
        state.install(build());
        let lines = state.logger.captured();
        assert_eq!(lines.len(), 2, "{lines:#?}");
        for line in &lines {
            assert!(
                crate::log::strip_timestamp(line).starts_with(
                    "warn config proxy workload not in the config, its locality is unknown \
                     workload=\"httpbin/ghost\" path=\"test.yaml\""
                ),
                "{line}"
            );
        }
        assert!(state.config_dump()["proxy"]["locality"].is_null());
        assert_eq!(
            test_state().config_dump()["proxy"]["locality"]["node"],
            "node-a"
        );
    }

    #[test]
    fn only_endpoints_of_routes_connected_to_are_health_checked() {
        let state = test_state();
        assert!(state.watched_endpoints().is_empty());
        let route = match state
            .model()
            .destination("10.96.0.10:8000".parse().unwrap())
        {
            crate::model::Destination::Service(route) => route,
            other => panic!("not a service route: {other:?}"),
        };
        state.start_connection(&route);
        let names = |state: &ProxyState| {
            let mut names: Vec<String> = state
                .watched_endpoints()
                .iter()
                .map(|e| e.workload.name.clone())
                .collect();
            names.sort();
            names
        };
        let expected: Vec<String> = {
            let mut v: Vec<String> = route.endpoints().map(|e| e.workload.name.clone()).collect();
            v.sort();
            v
        };
        assert!(!expected.is_empty());
        assert_eq!(names(&state), expected);
        // A reload that drops every endpoint forgets them; they are not watched on return.
        let empty = Model::build(
            LocalConfig::parse("workloads: []\nservices: []\n", "test.yaml").unwrap(),
            &client_info(),
            &state.config.defects,
            "test.yaml",
        )
        .unwrap();
        state.install(empty);
        state.install(test_state_model(&state));
        assert!(state.watched_endpoints().is_empty());
    }

    fn test_state_model(state: &ProxyState) -> Model {
        Model::build(
            LocalConfig::parse(CONFIG, "test.yaml").unwrap(),
            &client_info(),
            &state.config.defects,
            "test.yaml",
        )
        .unwrap()
    }

    #[test]
    fn defects_are_announced() {
        let mut config = test_state().config.clone();
        config.defects = crate::defects::Defects::parse("no-retry").unwrap();
        let records = defect_records(&config);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].level, Level::Warn);
        assert_eq!(
            records[0].message,
            "defect switch no-retry is on: this ztunnel is deliberately broken"
        );
    }
}

//! Settings of the reference ztunnel, all from the environment: named constants for every
//! variable, small parse helpers, then one `validate()` for rules across fields.
//!
//! The upstream part (`LOCAL_XDS_PATH`, `PROXY_MODE`, `PROXY_WORKLOAD_INFO`, and the control
//! plane's variables in [`control_plane`]: `XDS_ADDRESS`, `CA_ADDRESS`, `FAKE_CA`, ...) is read
//! as upstream istio/ztunnel reads it, and the
//! variables a cluster gives a ztunnel about where it runs (`NETWORK`, `CLUSTER_ID`,
//! `PACKET_MARK`, `NODE_NAME`, ...; see [`Placement`]) are read as upstream reads them; the
//! rest are reference-only knobs with defaults matching the Solo guide.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use crate::ZtunnelError;
use crate::defects::{Defect, Defects};
use crate::log::{LogFilter, LogFormat};
use crate::outlier::OutlierSettings;

pub mod control_plane;

pub use control_plane::{
    AuthToken, ConfigSource, ControlPlane, ControlPlaneSettings, RootCert, XdsNode,
};

pub const LOCAL_XDS_PATH: &str = "LOCAL_XDS_PATH";
pub const PROXY_MODE: &str = "PROXY_MODE";
pub const PROXY_WORKLOAD_INFO: &str = "PROXY_WORKLOAD_INFO";
pub const FAKE_CA: &str = "FAKE_CA";
pub const XDS_ADDRESS: &str = "XDS_ADDRESS";
pub const HEALTH_CHECK_INTERVAL: &str = "HEALTH_CHECK_INTERVAL";
pub const HEALTH_CHECK_TIMEOUT: &str = "HEALTH_CHECK_TIMEOUT";
pub const CONNECT_TIMEOUT: &str = "CONNECT_TIMEOUT";
pub const CONNECT_ATTEMPTS: &str = "CONNECT_ATTEMPTS";
pub const CIRCUIT_BREAKER_CONSECUTIVE_FAILURES: &str = "CIRCUIT_BREAKER_CONSECUTIVE_FAILURES";
pub const CIRCUIT_BREAKER_BASE_EJECTION: &str = "CIRCUIT_BREAKER_BASE_EJECTION";
pub const CIRCUIT_BREAKER_MAX_EJECTION: &str = "CIRCUIT_BREAKER_MAX_EJECTION";
pub const EWMA_ALPHA: &str = "EWMA_ALPHA";
pub const OUTLIER_DETECTION: &str = "OUTLIER_DETECTION";
pub const CONFIG_RELOAD_INTERVAL: &str = "CONFIG_RELOAD_INTERVAL";
pub const LOG_FORMAT: &str = "LOG_FORMAT";
/// Log filter, as upstream: a level (`info`) or `target=level` directives, comma-separated.
pub const RUST_LOG: &str = "RUST_LOG";
pub const MESHCERT_REFERENCE_DEFECT: &str = "MESHCERT_REFERENCE_DEFECT";
/// Data-plane threads, upstream's name and default.
pub const ZTUNNEL_WORKER_THREADS: &str = "ZTUNNEL_WORKER_THREADS";
/// Where the proxy runs, upstream's names (what the meshcert launcher gives every binary).
pub const NETWORK: &str = "NETWORK";
pub const CLUSTER_ID: &str = "CLUSTER_ID";
/// Wins over `CLUSTER_ID`, as upstream.
pub const ISTIO_META_CLUSTER_ID: &str = "ISTIO_META_CLUSTER_ID";
pub const CLUSTER_DOMAIN: &str = "CLUSTER_DOMAIN";
pub const NODE_NAME: &str = "NODE_NAME";
pub const INSTANCE_IP: &str = "INSTANCE_IP";
pub const POD_NAME: &str = "POD_NAME";
pub const POD_NAMESPACE: &str = "POD_NAMESPACE";
pub const SERVICE_ACCOUNT: &str = "SERVICE_ACCOUNT";
/// The mark on the proxy's own upstream sockets (a decimal u32, as upstream parses it).
pub const PACKET_MARK: &str = "PACKET_MARK";
pub const ENABLE_ORIG_SRC: &str = "ENABLE_ORIG_SRC";
pub const TERMINATION_GRACE_PERIOD_SECONDS: &str = "TERMINATION_GRACE_PERIOD_SECONDS";

const PROXY_MODE_DEDICATED: &str = "dedicated";
const DEFAULT_HEALTH_CHECK_INTERVAL: Duration = Duration::from_millis(200);
const DEFAULT_HEALTH_CHECK_TIMEOUT: Duration = Duration::from_millis(150);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(240);
const DEFAULT_CONNECT_ATTEMPTS: u32 = 3;
const DEFAULT_CONSECUTIVE_FAILURES: u32 = 3;
const DEFAULT_BASE_EJECTION: Duration = Duration::from_millis(250);
const DEFAULT_MAX_EJECTION: Duration = Duration::from_secs(1);
/// One failure takes a score of 1.0 to 0.65, as in the guide.
const DEFAULT_EWMA_ALPHA: f64 = 0.35;
/// The weight the `ewma-wrong-weight` defect uses instead of the configured one.
const DEFECT_EWMA_ALPHA: f64 = 0.5;
const DEFAULT_CONFIG_RELOAD_INTERVAL: Duration = Duration::from_millis(100);
const DEFAULT_WORKER_THREADS: usize = 2;
/// Upstream marks nothing in dedicated mode unless told; the reference always runs behind a
/// `REDIRECT` that exempts 0x539, so that is its default.
const DEFAULT_PACKET_MARK: u32 = crate::socket::PROXY_MARK;
/// How long in-flight connections get after SIGTERM when no grace period is given.
const DEFAULT_DRAIN: Duration = Duration::from_secs(2);

/// Upstream's fixed ports.
pub const OUTBOUND_PORT: u16 = 15001;
pub const ADMIN_PORT: u16 = 15000;
pub const STATS_PORT: u16 = 15020;
pub const READINESS_PORT: u16 = 15021;
/// HBONE: mTLS + HTTP/2 CONNECT from other ztunnels.
pub const INBOUND_PORT: u16 = 15008;

/// `PROXY_WORKLOAD_INFO=<namespace>/<name>/<service account>`: the pod this proxy serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadInfo {
    pub namespace: String,
    pub name: String,
    pub service_account: String,
}

impl std::str::FromStr for WorkloadInfo {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split('/').collect::<Vec<_>>()[..] {
            [namespace, name, service_account]
                if !namespace.is_empty() && !name.is_empty() && !service_account.is_empty() =>
            {
                Ok(Self {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                    service_account: service_account.to_string(),
                })
            }
            _ => Err("expected <namespace>/<pod name>/<service account>, e.g. \
                      httpbin/client-in-ambient-6b5c96c4f8-x2j9k/client-in-ambient"
                .to_string()),
        }
    }
}

/// Where the proxy runs, as a cluster tells upstream ztunnel (`NETWORK`, `CLUSTER_ID` or
/// `ISTIO_META_CLUSTER_ID`, `NODE_NAME`, `INSTANCE_IP`). The reference routes by its own
/// workload entry in the config (the control plane's word); these are checked against it,
/// so a launcher that gives a binary the wrong network is caught in the log.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Placement {
    pub network: Option<String>,
    pub cluster_id: Option<String>,
    pub node: Option<String>,
    pub instance_ip: Option<IpAddr>,
}

impl Placement {
    /// One line per variable that disagrees with the proxy's workload entry.
    pub fn disagreements(&self, workload: &crate::local_config::LocalWorkload) -> Vec<String> {
        let who = format!("{}/{}", workload.namespace, workload.name);
        let mut problems = Vec::new();
        let mut check = |var: &str, given: &Option<String>, field: &str, config: &str| {
            if let Some(given) = given.as_deref().filter(|g| *g != config) {
                problems.push(format!(
                    "{var}={given:?} but the config puts {who} on {field} {config:?}; \
                     the reference follows the config"
                ));
            }
        };
        check(NETWORK, &self.network, "network", &workload.network);
        check(
            CLUSTER_ID,
            &self.cluster_id,
            "cluster",
            &workload.cluster_id,
        );
        check(NODE_NAME, &self.node, "node", &workload.node);
        if let Some(ip) = self
            .instance_ip
            .filter(|ip| !workload.workload_ips.contains(ip))
        {
            problems.push(format!(
                "{INSTANCE_IP}={ip} is not an address of {who} in the config ({:?})",
                workload.workload_ips
            ));
        }
        problems
    }
}

/// Where each server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listeners {
    pub outbound: SocketAddr,
    pub inbound: SocketAddr,
    pub admin: SocketAddr,
    pub stats: SocketAddr,
    pub readiness: SocketAddr,
}

impl Default for Listeners {
    fn default() -> Self {
        let any = |port| SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
        Self {
            outbound: any(OUTBOUND_PORT),
            inbound: any(INBOUND_PORT),
            // The admin API exposes the whole model: localhost only, as upstream.
            admin: SocketAddr::from((Ipv4Addr::LOCALHOST, ADMIN_PORT)),
            stats: any(STATS_PORT),
            readiness: any(READINESS_PORT),
        }
    }
}

/// The resolved settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where the model and the certificate come from.
    pub control_plane: ControlPlaneSettings,
    pub workload_info: WorkloadInfo,
    pub health_check_interval: Duration,
    pub health_check_timeout: Duration,
    pub connect_timeout: Duration,
    /// Endpoints tried per client connection.
    pub connect_attempts: u32,
    pub consecutive_failures: u32,
    pub base_ejection: Duration,
    pub max_ejection: Duration,
    pub ewma_alpha: f64,
    pub outlier_detection: bool,
    /// Zero: read the file once, as upstream.
    pub config_reload_interval: Duration,
    pub log_format: LogFormat,
    pub log_filter: LogFilter,
    pub defects: Defects,
    pub listeners: Listeners,
    pub worker_threads: usize,
    pub placement: Placement,
    /// `SO_MARK` of every upstream socket and health check (`PACKET_MARK`; 0: unmarked).
    pub packet_mark: u32,
    /// Time in-flight connections get after SIGTERM: from
    /// `TERMINATION_GRACE_PERIOD_SECONDS` as upstream derives it, else 2 s.
    pub drain: Duration,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ZtunnelError> {
        Self::from_lookup(|var| std::env::var(var).ok())
    }

    /// Reads settings through `lookup` (the environment, or a map in tests), then validates them.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ZtunnelError> {
        let env = Env(&lookup);
        check_mode(&env)?;
        let config = Config {
            control_plane: control_plane::settings(&env)?,
            workload_info: workload_info(&env)?,
            health_check_interval: env
                .duration(HEALTH_CHECK_INTERVAL, DEFAULT_HEALTH_CHECK_INTERVAL)?,
            health_check_timeout: env
                .duration(HEALTH_CHECK_TIMEOUT, DEFAULT_HEALTH_CHECK_TIMEOUT)?,
            connect_timeout: env.duration(CONNECT_TIMEOUT, DEFAULT_CONNECT_TIMEOUT)?,
            connect_attempts: env.number(CONNECT_ATTEMPTS, DEFAULT_CONNECT_ATTEMPTS)?,
            consecutive_failures: env.number(
                CIRCUIT_BREAKER_CONSECUTIVE_FAILURES,
                DEFAULT_CONSECUTIVE_FAILURES,
            )?,
            base_ejection: env.duration(CIRCUIT_BREAKER_BASE_EJECTION, DEFAULT_BASE_EJECTION)?,
            max_ejection: env.duration(CIRCUIT_BREAKER_MAX_EJECTION, DEFAULT_MAX_EJECTION)?,
            ewma_alpha: env.number(EWMA_ALPHA, DEFAULT_EWMA_ALPHA)?,
            outlier_detection: env
                .parse_with(OUTLIER_DETECTION, parse_bool)?
                .unwrap_or(true),
            config_reload_interval: env
                .duration(CONFIG_RELOAD_INTERVAL, DEFAULT_CONFIG_RELOAD_INTERVAL)?,
            log_format: env
                .parse_with(LOG_FORMAT, |s| s.parse())?
                .unwrap_or_default(),
            log_filter: env.parse_with(RUST_LOG, |s| s.parse())?.unwrap_or_default(),
            defects: env
                .parse_with(MESHCERT_REFERENCE_DEFECT, Defects::parse)?
                .unwrap_or_default(),
            listeners: Listeners::default(),
            worker_threads: env.number(ZTUNNEL_WORKER_THREADS, DEFAULT_WORKER_THREADS)?,
            placement: placement(&env)?,
            packet_mark: env
                .parsed(PACKET_MARK, "expected a decimal number, e.g. 1337 (0x539)")?
                .unwrap_or(DEFAULT_PACKET_MARK),
            drain: env
                .parsed(
                    TERMINATION_GRACE_PERIOD_SECONDS,
                    "expected whole seconds, e.g. 30",
                )?
                .map_or(DEFAULT_DRAIN, upstream_drain),
        };
        // CLUSTER_DOMAIN and SERVICE_ACCOUNT are accepted and unused: the reference runs no
        // DNS proxy and no identity of its own (upstream uses them for those, its own identity
        // in shared mode only). POD_NAME and POD_NAMESPACE name the xDS node.
        refuse_orig_src(&env)?;
        config.validate()?;
        Ok(config)
    }

    /// Rules across fields.
    pub fn validate(&self) -> Result<(), ZtunnelError> {
        let fail = |m: String| Err(ZtunnelError::Settings(m));
        if self.health_check_interval.is_zero() {
            return fail(format!(
                "{HEALTH_CHECK_INTERVAL} must be above zero, e.g. 200ms"
            ));
        }
        for (var, value) in [
            (HEALTH_CHECK_TIMEOUT, self.health_check_timeout),
            (CONNECT_TIMEOUT, self.connect_timeout),
            (CIRCUIT_BREAKER_BASE_EJECTION, self.base_ejection),
        ] {
            if value.is_zero() {
                return fail(format!("{var} must be above zero"));
            }
        }
        if self.worker_threads == 0 {
            return fail(format!("{ZTUNNEL_WORKER_THREADS} must be at least 1"));
        }
        if self.connect_attempts == 0 {
            return fail(format!("{CONNECT_ATTEMPTS} must be at least 1"));
        }
        if self.consecutive_failures == 0 {
            return fail(format!(
                "{CIRCUIT_BREAKER_CONSECUTIVE_FAILURES} must be at least 1"
            ));
        }
        if self.max_ejection < self.base_ejection {
            return fail(format!(
                "{CIRCUIT_BREAKER_MAX_EJECTION} ({:?}) is below {CIRCUIT_BREAKER_BASE_EJECTION} ({:?}); \
                 raise the maximum or lower the base",
                self.max_ejection, self.base_ejection
            ));
        }
        if !(self.ewma_alpha > 0.0 && self.ewma_alpha <= 1.0) {
            return fail(format!(
                "{EWMA_ALPHA} must be in (0, 1], e.g. 0.35; got {}",
                self.ewma_alpha
            ));
        }
        Ok(())
    }

    /// Outlier-detection settings, with the defect switches that bend them applied.
    pub fn outlier_settings(&self) -> OutlierSettings {
        OutlierSettings {
            alpha: if self.defects.is_on(Defect::EwmaWrongWeight) {
                DEFECT_EWMA_ALPHA
            } else {
                self.ewma_alpha
            },
            consecutive_failures: self.consecutive_failures,
            base_ejection: self.base_ejection,
            max_ejection: self.max_ejection,
            eject: !self.defects.is_on(Defect::NeverEject),
            restore: !self.defects.is_on(Defect::NeverRestore),
        }
    }

    /// The config file, when the model comes from one (`LOCAL_XDS_PATH`).
    pub fn local_xds_path(&self) -> Option<&Path> {
        match &self.control_plane.source {
            ConfigSource::File(path) => Some(path),
            ConfigSource::Xds(_) => None,
        }
    }

    /// How logs name where the model comes from: the file's path or the xDS address.
    pub fn config_origin(&self) -> String {
        self.control_plane.source.origin()
    }

    /// Endpoints tried per client connection, with the `no-retry` defect applied.
    pub fn effective_connect_attempts(&self) -> u32 {
        if self.defects.is_on(Defect::NoRetry) {
            1
        } else {
            self.connect_attempts
        }
    }
}

/// Only dedicated mode.
fn check_mode(env: &Env) -> Result<(), ZtunnelError> {
    let mode = env.required(PROXY_MODE, "set PROXY_MODE=dedicated")?;
    if mode != PROXY_MODE_DEDICATED {
        return Err(ZtunnelError::InvalidEnv {
            var: PROXY_MODE,
            value: mode,
            hint: "only PROXY_MODE=dedicated is supported by the reference ztunnel".into(),
        });
    }
    Ok(())
}

/// The workload this dedicated proxy serves (`PROXY_WORKLOAD_INFO`, required).
fn workload_info(env: &Env) -> Result<WorkloadInfo, ZtunnelError> {
    env.parse_with(PROXY_WORKLOAD_INFO, |s| s.parse())?
        .ok_or_else(|| ZtunnelError::MissingEnv {
            var: PROXY_WORKLOAD_INFO,
            hint: "dedicated mode needs <namespace>/<pod name>/<service account>".into(),
        })
}

/// Where the proxy runs, as upstream reads it.
fn placement(env: &Env) -> Result<Placement, ZtunnelError> {
    Ok(Placement {
        network: env.get(NETWORK),
        cluster_id: env
            .get(ISTIO_META_CLUSTER_ID)
            .or_else(|| env.get(CLUSTER_ID)),
        node: env.get(NODE_NAME),
        instance_ip: env.parsed(INSTANCE_IP, "expected the pod's IP address")?,
    })
}

/// `ENABLE_ORIG_SRC=true` is refused: the reference cannot do what it asks.
fn refuse_orig_src(env: &Env) -> Result<(), ZtunnelError> {
    if env.parse_with(ENABLE_ORIG_SRC, parse_bool)? == Some(true) {
        return Err(ZtunnelError::InvalidEnv {
            var: ENABLE_ORIG_SRC,
            value: "true".into(),
            hint: "the reference does not keep the client's source address; \
                   set ENABLE_ORIG_SRC=false or leave it unset"
                .into(),
        });
    }
    Ok(())
}

/// Upstream's drain deadline for a pod grace period: 5 s less above 10 s, else 1 s less,
/// never under 1 s (what is left before the kubelet's SIGKILL).
fn upstream_drain(grace_secs: u64) -> Duration {
    let secs = if grace_secs > 10 {
        grace_secs - 5
    } else {
        grace_secs.saturating_sub(1)
    };
    Duration::from_secs(secs.max(1))
}

/// The environment seen through a lookup function; empty values count as unset.
struct Env<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    fn get(&self, var: &str) -> Option<String> {
        (self.0)(var).filter(|v| !v.trim().is_empty())
    }

    fn required(&self, var: &'static str, hint: &str) -> Result<String, ZtunnelError> {
        self.get(var).ok_or_else(|| ZtunnelError::MissingEnv {
            var,
            hint: hint.to_string(),
        })
    }

    fn parse_with<T>(
        &self,
        var: &'static str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ZtunnelError> {
        self.get(var)
            .map(|value| {
                parse(value.trim()).map_err(|hint| ZtunnelError::InvalidEnv { var, value, hint })
            })
            .transpose()
    }

    /// Parses an optional value; `hint` says what was expected when it does not parse.
    fn parsed<T: std::str::FromStr>(
        &self,
        var: &'static str,
        hint: &str,
    ) -> Result<Option<T>, ZtunnelError> {
        self.parse_with(var, |s| s.parse::<T>().map_err(|_| hint.to_string()))
    }

    fn duration(&self, var: &'static str, default: Duration) -> Result<Duration, ZtunnelError> {
        Ok(self
            .parse_with(var, meshcert_model::duration::parse)?
            .unwrap_or(default))
    }

    fn number<T: std::str::FromStr>(&self, var: &'static str, default: T) -> Result<T, ZtunnelError>
    where
        T::Err: std::fmt::Display,
    {
        Ok(self
            .parse_with(var, |s| s.parse::<T>().map_err(|e| e.to_string()))?
            .unwrap_or(default))
    }
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use std::collections::HashMap;

    fn base_env() -> HashMap<&'static str, &'static str> {
        HashMap::from([
            (LOCAL_XDS_PATH, "/tmp/zt.yaml"),
            (PROXY_MODE, "dedicated"),
            (PROXY_WORKLOAD_INFO, "httpbin/client-1/client"),
            (FAKE_CA, "true"),
            (XDS_ADDRESS, ""),
        ])
    }

    fn config_with(overrides: &[(&'static str, &'static str)]) -> Result<Config, ZtunnelError> {
        let mut env = base_env();
        env.extend(overrides.iter().copied());
        Config::from_lookup(|k| env.get(k).map(|v| v.to_string()))
    }

    fn config_without(var: &str) -> Result<Config, ZtunnelError> {
        let mut env = base_env();
        env.remove(var);
        Config::from_lookup(|k| env.get(k).map(|v| v.to_string()))
    }

    #[test]
    fn defaults_follow_the_guide() {
        let config = config_with(&[]).unwrap();
        assert_eq!(config.health_check_interval, Duration::from_millis(200));
        assert_eq!(config.health_check_timeout, Duration::from_millis(150));
        assert_eq!(config.connect_timeout, Duration::from_millis(240));
        assert_eq!(config.connect_attempts, 3);
        assert_eq!(config.consecutive_failures, 3);
        assert_eq!(config.base_ejection, Duration::from_millis(250));
        assert_eq!(config.max_ejection, Duration::from_secs(1));
        assert_eq!(config.ewma_alpha, 0.35);
        assert!(config.outlier_detection);
        assert_eq!(config.config_reload_interval, Duration::from_millis(100));
        assert_eq!(config.log_format, LogFormat::Text);
        assert!(config.defects.is_empty());
        assert_eq!(
            config.workload_info,
            WorkloadInfo {
                namespace: "httpbin".into(),
                name: "client-1".into(),
                service_account: "client".into()
            }
        );
        assert_eq!(config.listeners.outbound.port(), 15001);
        assert!(config.listeners.admin.ip().is_loopback());
    }

    #[rstest]
    #[case(&[(PROXY_MODE, "shared")], "only PROXY_MODE=dedicated")]
    #[case(&[(PROXY_WORKLOAD_INFO, "httpbin/client-1")], "<namespace>/<pod name>/<service account>")]
    #[case(&[(PROXY_WORKLOAD_INFO, "httpbin//sa")], "<namespace>/<pod name>/<service account>")]
    #[case(&[(FAKE_CA, "yes")], "FAKE_CA=\"yes\" is invalid")]
    #[case(&[(CONNECT_TIMEOUT, "250")], "CONNECT_TIMEOUT=\"250\" is invalid: \"250\" is not a duration: no unit")]
    #[case(&[(HEALTH_CHECK_TIMEOUT, "2 days")], "HEALTH_CHECK_TIMEOUT=\"2 days\" is invalid: \"2 days\" is not a duration: unknown unit")]
    #[case(&[(CONNECT_ATTEMPTS, "0")], "CONNECT_ATTEMPTS must be at least 1")]
    #[case(&[(CONNECT_ATTEMPTS, "three")], "CONNECT_ATTEMPTS=\"three\"")]
    #[case(&[(EWMA_ALPHA, "1.5")], "EWMA_ALPHA must be in (0, 1]")]
    #[case(&[(CIRCUIT_BREAKER_MAX_EJECTION, "100ms")], "is below CIRCUIT_BREAKER_BASE_EJECTION")]
    #[case(&[(HEALTH_CHECK_INTERVAL, "0")], "HEALTH_CHECK_INTERVAL must be above zero")]
    #[case(&[(LOG_FORMAT, "yaml")], "LOG_FORMAT=\"yaml\"")]
    #[case(&[(RUST_LOG, "loud")], "RUST_LOG=\"loud\"")]
    #[case(&[(MESHCERT_REFERENCE_DEFECT, "no-retry,bogus")], "valid names: first-endpoint")]
    fn rejects_bad_settings(
        #[case] overrides: &[(&'static str, &'static str)],
        #[case] expected: &str,
    ) {
        let err = config_with(overrides).unwrap_err().to_string();
        assert!(err.contains(expected), "{err}");
    }

    #[rstest]
    #[case(PROXY_MODE, "PROXY_MODE is required")]
    #[case(LOCAL_XDS_PATH, "LOCAL_XDS_PATH is required")]
    #[case(PROXY_WORKLOAD_INFO, "PROXY_WORKLOAD_INFO is required")]
    fn names_missing_variables(#[case] var: &str, #[case] expected: &str) {
        let err = config_without(var).unwrap_err().to_string();
        assert!(err.contains(expected), "{err}");
    }

    #[test]
    fn the_variables_a_cluster_gives_are_read_as_upstream_reads_them() {
        let plain = config_with(&[]).unwrap();
        assert_eq!(plain.placement, Placement::default());
        assert_eq!(plain.packet_mark, 1337);
        assert_eq!(plain.drain, Duration::from_secs(2));
        let config = config_with(&[
            (NETWORK, "net1"),
            (CLUSTER_ID, "cluster1"),
            (CLUSTER_DOMAIN, "cluster.local"),
            (NODE_NAME, "node-1"),
            (INSTANCE_IP, "10.244.1.2"),
            (POD_NAME, "client-1"),
            (POD_NAMESPACE, "httpbin"),
            (SERVICE_ACCOUNT, "client"),
            (PACKET_MARK, "0"),
            (ENABLE_ORIG_SRC, "false"),
            (TERMINATION_GRACE_PERIOD_SECONDS, "30"),
        ])
        .unwrap();
        assert_eq!(
            config.placement,
            Placement {
                network: Some("net1".into()),
                cluster_id: Some("cluster1".into()),
                node: Some("node-1".into()),
                instance_ip: Some("10.244.1.2".parse().unwrap()),
            }
        );
        assert_eq!(config.packet_mark, 0, "0 leaves sockets unmarked");
        assert_eq!(config.drain, Duration::from_secs(25));
        let meta = config_with(&[(CLUSTER_ID, "a"), (ISTIO_META_CLUSTER_ID, "b")]).unwrap();
        assert_eq!(meta.placement.cluster_id.as_deref(), Some("b"));
    }

    #[rstest]
    #[case(30, 25)]
    #[case(10, 9)]
    #[case(1, 1)]
    #[case(0, 1)]
    fn drain_leaves_what_upstream_leaves_before_sigkill(#[case] grace: u64, #[case] secs: u64) {
        assert_eq!(upstream_drain(grace), Duration::from_secs(secs));
    }

    #[rstest]
    #[case(&[(PACKET_MARK, "0x539")], "PACKET_MARK=\"0x539\" is invalid")]
    #[case(&[(INSTANCE_IP, "pod")], "INSTANCE_IP=\"pod\"")]
    #[case(&[(ENABLE_ORIG_SRC, "true")], "does not keep the client's source address")]
    #[case(&[(TERMINATION_GRACE_PERIOD_SECONDS, "1m")], "whole seconds")]
    fn rejects_bad_cluster_variables(
        #[case] overrides: &[(&'static str, &'static str)],
        #[case] expected: &str,
    ) {
        let err = config_with(overrides).unwrap_err().to_string();
        assert!(err.contains(expected), "{err}");
    }

    #[test]
    fn placement_that_disagrees_with_the_workload_entry_is_named() {
        let workload: crate::local_config::LocalWorkload = serde_saphyr::from_str(
            "uid: cluster1//v1/Pod/httpbin/client-1\nname: client-1\nnamespace: httpbin\n\
             workloadIps: [\"10.244.1.2\"]\nnode: node-1\nnetwork: net1\nclusterId: cluster1\n\
             services: {}\n",
        )
        .unwrap();
        let agreeing = Placement {
            network: Some("net1".into()),
            cluster_id: Some("cluster1".into()),
            node: Some("node-1".into()),
            instance_ip: Some("10.244.1.2".parse().unwrap()),
        };
        assert!(agreeing.disagreements(&workload).is_empty());
        assert!(Placement::default().disagreements(&workload).is_empty());
        let wrong = Placement {
            network: Some("net2".into()),
            cluster_id: Some("Kubernetes".into()),
            node: None,
            instance_ip: Some("10.244.9.9".parse().unwrap()),
        };
        let problems = wrong.disagreements(&workload);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(
            problems[0].starts_with(
                "NETWORK=\"net2\" but the config puts httpbin/client-1 on network \"net1\""
            ),
            "{problems:?}"
        );
        assert!(problems[1].contains("on cluster \"cluster1\""));
        assert!(problems[2].contains("INSTANCE_IP=10.244.9.9 is not an address"));
    }

    #[test]
    fn fake_ca_and_reload_zero_are_accepted() {
        let config = config_with(&[(FAKE_CA, "false"), (CONFIG_RELOAD_INTERVAL, "0")]).unwrap();
        assert!(!config.control_plane.fake_ca);
        assert!(config.config_reload_interval.is_zero());
    }

    #[test]
    fn defects_bend_outlier_settings() {
        let plain = config_with(&[]).unwrap().outlier_settings();
        assert_eq!(
            (plain.alpha, plain.eject, plain.restore),
            (0.35, true, true)
        );
        let bent = config_with(&[(
            MESHCERT_REFERENCE_DEFECT,
            "ewma-wrong-weight,never-eject,never-restore,no-retry",
        )])
        .unwrap();
        let settings = bent.outlier_settings();
        assert_eq!(
            (settings.alpha, settings.eject, settings.restore),
            (0.5, false, false)
        );
        assert_eq!(bent.effective_connect_attempts(), 1);
    }
}

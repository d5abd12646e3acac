//! The bundled reference ztunnel: a real L4 proxy (tokio) that accepts exactly upstream
//! istio/ztunnel's no-Kubernetes contract (`LOCAL_XDS_PATH`, `PROXY_MODE=dedicated`,
//! `PROXY_WORKLOAD_INFO`, ports 15000/15001/15020/15021) and behaves as the Solo docs describe:
//! round robin per connection within the best priority level, failover to a different endpoint
//! on a failed connect, active TCP health checks, EWMA scores and a circuit breaker, access logs
//! and Istio TCP metrics. Workloads with `protocol: HBONE` are reached, and this ztunnel's own
//! workload is served, over HBONE (mTLS + HTTP/2 CONNECT on 15008).
//!
//! Layout: `config` (environment) -> `local_config` + `model` (what to route to) ->
//! `ranking` + `picker` + `outlier` + `balancer` (pure decisions) -> `proxy` + `health_check` +
//! `reload` + `http` + `tls` + `hbone` (I/O) -> `app` (wiring). The control plane, when
//! configured: `sources` starts `ca_client` (certificates) and `xds_client` (config over delta
//! xDS, translated by `xds_translate`), both over `grpc`. `defects` holds the test-only defect
//! switches.

pub mod access;
pub mod app;
pub mod balancer;
pub mod ca_client;
pub mod config;
pub mod copy;
pub mod defects;
pub mod error;
pub mod grpc;
pub mod hbone;
pub mod health_check;
pub mod http;
pub mod local_config;
pub mod log;
pub mod metrics;
pub mod model;
pub mod outlier;
pub mod picker;
pub mod proxy;
pub mod ranking;
pub mod reload;
pub mod shutdown;
pub mod socket;
pub mod sources;
pub mod state;
pub mod tls;
pub mod xds_client;
pub mod xds_translate;

pub use app::{run, run_from_env};
pub use config::Config;
pub use error::ZtunnelError;

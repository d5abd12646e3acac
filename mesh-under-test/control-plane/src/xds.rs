//! Workload discovery as istiod serves it to ztunnel: the local config as
//! `istio.workload.Address` resources ([`translate`]), served over delta ADS ([`server`]).

pub mod server;
pub mod translate;

pub use server::{ConfigVersion, StreamState, Streams, XdsServer};
pub use translate::addresses;

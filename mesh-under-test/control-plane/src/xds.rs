//! Workload discovery as istiod serves it to ztunnel: the local config as
//! `istio.workload.Address` resources ([`translate`]).

pub mod translate;

pub use translate::addresses;

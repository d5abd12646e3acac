//! The seam between meshcert's steps and the mesh under test, and what both sides share:
//! the `MeshUnderTest` trait, the observations it returns, faults, manifests, parsers of
//! ztunnel logs and metrics, the statistics of distribution assertions and the one waiting helper.

pub mod error;
pub mod istio;
pub mod kube;
pub mod levels;
pub mod local;
pub mod logs;
pub mod manifest;
pub mod mesh;
pub mod metrics;
pub mod topology;
pub mod translate;
pub mod wait;

pub use error::MeshError;
pub use mesh::*;
pub use meshcert_oracle::stats;
pub use meshcert_ztunnel::local_config;

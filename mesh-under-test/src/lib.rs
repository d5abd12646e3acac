//! The seam between meshcert's steps and the mesh under test, and what both sides share:
//! the `MeshUnderTest` trait, faults, manifests and the one waiting helper. The observations it
//! returns (requests, faults, restarts, log lines) are the model's types, re-exported here; log
//! and metric parsers are the oracle's.

pub mod error;
pub mod manifest;
pub mod mesh;
pub mod topology;
pub mod wait;

pub use error::MeshError;
pub use mesh::*;
pub use meshcert_oracle::stats;

//! The seam between meshcert's steps and the mesh under test, and what both sides share:
//! the `MeshUnderTest` trait, the observations it returns, faults, manifests and the one
//! waiting helper. Log and metric parsers are the oracle's; the types they fill, the model's.

pub mod error;
pub mod manifest;
pub mod mesh;
pub mod topology;
pub mod wait;

pub use error::MeshError;
pub use mesh::*;
pub use meshcert_oracle::stats;

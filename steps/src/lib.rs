//! meshcert's Gherkin layer: the cucumber World, typed step parameters, step definitions (one
//! file per concept) and the declared thresholds they judge with. The runner
//! (`meshcert-runner`) runs them and gives each World its configuration ([`WorldConfig`]).

mod params;
mod steps;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;
pub mod thresholds;
mod world;

pub use world::{MeshSource, MeshWorld, WorldConfig, unsupported_reason};

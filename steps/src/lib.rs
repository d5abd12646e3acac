//! meshcert's Gherkin layer: the cucumber World, typed step parameters, step definitions (one
//! file per concept), the parser wrapper that marks scenarios skipped or not applicable, the
//! results collector, and `run_suite`, which the test harness and the `meshcert` CLI both call.

mod applicability;
mod inputs;
pub mod interrupt;
mod outputs;
mod params;
mod probe;
mod results;
mod steps;
pub mod suite;
pub mod target;
pub mod thresholds;
mod world;

pub use outputs::remove_previous as remove_previous_outputs;
pub use suite::{SuiteConfig, SuiteOutcome, run_suite};
pub use target::{TargetKind, TargetSpec};
pub use world::MeshWorld;

//! meshcert's Gherkin layer: the cucumber World, typed step parameters, step definitions (one
//! file per concept), the parser wrapper that marks scenarios skipped or not applicable, the
//! results collector, and `run_suite`, which the test harness and the `meshcert` CLI both call.

mod applicability;
mod params;
mod results;
mod steps;
pub mod suite;
mod world;

pub use suite::{SuiteConfig, SuiteOutcome, TargetChoice, run_suite};
pub use world::MeshWorld;

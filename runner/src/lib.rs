//! meshcert's suite runner: the mesh under test as a user names it (`target`), the feature set
//! and fixtures checked before anything runs (`inputs`), the parser wrapper that marks scenarios
//! skipped or not applicable, cucumber's run over the step definitions of `meshcert-steps`, the
//! Ctrl-C gate (`interrupt`), the results collector and the output files. `run_suite` is what
//! the test harness and the `meshcert` CLI both call.

mod applicability;
mod context;
#[cfg(test)]
mod golden;
mod inputs;
pub mod interrupt;
mod outputs;
mod probe;
mod results;
mod scenarios;
pub mod suite;
pub mod target;

pub use meshcert_steps::thresholds;
pub use outputs::remove_previous as remove_previous_outputs;
pub use suite::{SuiteConfig, SuiteOutcome, run_suite};
pub use target::{TargetKind, TargetSpec};

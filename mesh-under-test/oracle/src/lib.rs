//! meshcert's oracle: every verdict a step gives on who answered a batch of requests, as pure
//! functions over the answers, with the statistics behind them; the priority levels the
//! catalogue's mode tables give; the parsers of ztunnel's log lines and metrics.
//!
//! The judge never imports the judged: this crate depends on no mesh implementation (control
//! plane, driver or reference ztunnel), so an assertion cannot reuse the code it judges. Every
//! statistical verdict states its false-alarm rate against the weakest picker the documentation
//! allows (uniform at random among the endpoints a claim names): round robin, capacity-weighted
//! random with equal capacities, or any other even pick passes it.

pub mod failover;
pub mod levels;
pub mod logs;
pub mod metrics;
pub mod order;
pub mod spread;
pub mod stats;
pub mod summary;

pub use order::repeating_period;
pub use spread::{Finding, LevelCounts};

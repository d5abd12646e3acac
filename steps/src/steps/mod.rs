//! Step definitions, one file per concept. Each step parses and delegates to the World.

mod distribution;
mod faults;
mod logs;
mod topology;
mod traffic;

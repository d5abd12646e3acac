//! meshcert's model: the words a behaviour is stated in (profiles, traffic distribution modes,
//! where a workload runs, priority levels) and the observations a mesh gives (log lines, metric
//! samples), as plain types with no I/O. The oracle judges them; drivers produce them.

pub mod distribution;
pub mod duration;
pub mod logs;
pub mod metrics;
pub mod placement;
pub mod profile;

pub use distribution::TrafficDistribution;
pub use logs::LogLine;
pub use metrics::MetricSample;
pub use placement::{Placement, PriorityLevel};
pub use profile::Profile;

//! meshcert's model: the words a behaviour is stated in (profiles, traffic distribution modes,
//! where a workload runs, priority levels) and the observations a mesh gives (requests and how
//! they ended, faults, log lines, metric samples, restarts), as plain types with no I/O. The
//! oracle judges them; drivers produce them; the results keep them and the reports read them.

pub mod distribution;
pub mod duration;
pub mod faults;
pub mod identity;
pub mod logs;
pub mod metrics;
pub mod observations;
pub mod placement;
pub mod pods;
pub mod profile;
pub mod requests;
pub mod topology;

pub use distribution::TrafficDistribution;
pub use faults::{Fault, FaultHandle, FaultKind, FaultRecord};
pub use identity::Identity;
pub use logs::LogLine;
pub use metrics::MetricSample;
pub use observations::{Expectation, FailureEvidence, Observations, ReadinessChange, Restart};
pub use placement::{Placement, PriorityLevel};
pub use pods::{DeploymentRef, PodInfo, PodRef};
pub use profile::Profile;
pub use requests::{RequestBatch, RequestFailure, RequestOutcome, RequestPlan, RequestRecord};
pub use topology::{ClientPlacement, ReplicaPlacement, Topology, TopologyNode};

//! meshcert-local, the local driver: a mesh made of network namespaces on this machine, with
//! the ztunnel under test (the bundled reference or any upstream-compatible binary) running in
//! the client pods (in every enrolled pod when the control plane feeds it).
//!
//! `run` claims the machine and records what is created; `netns` builds namespaces, links and
//! the socket factory; `cluster` decides what an API server would (names, addresses, objects);
//! `app` is the backend app and `faults` what breaks a pod; `readiness` the kubelet's
//! readiness probes; `client` the HTTP client;
//! `ztunnel` launches the proxy and `admin` probes its endpoints; `istiod` is the control
//! plane's pod (its CA and config over the network, and the pods' tokens); `driver` puts them
//! together as a `MeshUnderTest`.

pub mod admin;
pub mod app;
pub mod client;
mod closing;
pub mod cluster;
pub mod driver;
pub mod faults;
pub mod istiod;
mod ledger;
mod netlink;
pub mod netns;
pub mod readiness;
pub mod run;
mod sweep;
mod worker;
pub mod ztunnel;

pub use driver::{ConfigSource, LocalMesh, LocalOptions, NodeSpec};
pub use netns::{SocketFactory, Topology, preflight};
pub use run::{Ledger, Run, SweepReport, cleanup_all, sweep};
pub use ztunnel::ZtunnelCommand;

//! HBONE, as upstream ztunnel speaks it between ztunnels: mutual TLS (see `tls`) carrying
//! HTTP/2, one CONNECT stream per proxied connection, `:authority` = the destination workload's
//! `ip:port`, sent to port 15008 of the ztunnel serving that workload. `client` pools the
//! connections of the outbound side; `server` terminates 15008 and forwards to the workload
//! this ztunnel serves.

pub mod client;
pub mod server;
#[cfg(test)]
mod tests;

pub use client::{ConnectRequest, HboneClient, HboneStream};
pub use server::Inbound;

use crate::local_config::LocalWorkload;

/// Upstream's HTTP/2 settings: a 4 MiB stream window, 16 MiB per connection and 1 MiB
/// frames, so flow control does not throttle a bulk transfer.
const STREAM_WINDOW: u32 = 4 << 20;
const CONNECTION_WINDOW: u32 = 16 << 20;
const FRAME_SIZE: u32 = 1 << 20;

/// The `baggage` header upstream sends with a CONNECT: who is calling, as W3C baggage.
pub fn baggage(source: Option<&LocalWorkload>) -> String {
    let Some(w) = source else {
        return String::new();
    };
    [
        ("k8s.cluster.name", w.cluster_id.as_str()),
        ("k8s.namespace.name", w.namespace.as_str()),
        // Upstream names the kind of workload; a workload from the config is a deployment.
        ("k8s.deployment.name", w.workload_name.as_str()),
        ("cloud.region", w.locality.region.as_str()),
        ("cloud.availability_zone", w.locality.zone.as_str()),
    ]
    .iter()
    .filter(|(_, value)| !value.is_empty())
    .map(|(key, value)| format!("{key}={value}"))
    .collect::<Vec<_>>()
    .join(",")
}

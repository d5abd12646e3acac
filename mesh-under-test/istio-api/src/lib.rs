//! Istio's wire messages, generated from the .proto files under `proto/` (each names where its
//! definition is published): the certificate service a ztunnel asks for its workloads'
//! certificates, delta ADS, and the workload API served over it.
//!
//! Modules follow the protobuf packages, since generated code refers across packages by
//! relative path; [`auth`], [`workload`] and [`discovery`] are the short names to use.

#[allow(clippy::all)]
pub mod istio {
    pub mod v1 {
        /// `istio.v1.auth`: the certificate service.
        pub mod auth {
            tonic::include_proto!("istio.v1.auth");
        }
    }

    /// `istio.workload`: workloads and services as ztunnel receives them.
    pub mod workload {
        tonic::include_proto!("istio.workload");
    }
}

#[allow(clippy::all)]
pub mod envoy {
    pub mod config {
        pub mod core {
            /// `envoy.config.core.v3`: the node an xDS client announces.
            pub mod v3 {
                tonic::include_proto!("envoy.config.core.v3");
            }
        }
    }

    pub mod service {
        pub mod discovery {
            /// `envoy.service.discovery.v3`: delta discovery and ADS.
            pub mod v3 {
                tonic::include_proto!("envoy.service.discovery.v3");
            }
        }
    }
}

#[allow(clippy::all)]
pub mod google {
    /// `google.rpc`: the status of an xDS NACK.
    pub mod rpc {
        tonic::include_proto!("google.rpc");
    }
}

pub use envoy::service::discovery::v3 as discovery;
pub use istio::v1::auth;
pub use istio::workload;

/// Type URL of [`workload::Address`] in a delta discovery request or an `Any`.
pub const ADDRESS_TYPE_URL: &str = "type.googleapis.com/istio.workload.Address";

/// Type URL of Istio's authorization policies, which ztunnel subscribes to beside addresses.
pub const AUTHORIZATION_TYPE_URL: &str = "type.googleapis.com/istio.security.Authorization";

#[cfg(test)]
mod tests;

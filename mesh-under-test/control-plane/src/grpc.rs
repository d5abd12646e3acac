//! The control plane's one gRPC + TLS listener, as istiod's 15012: the certificate service and
//! delta ADS side by side, under a certificate naming istiod and the listener's address.

use std::future::Future;
use std::sync::Arc;

use meshcert_istio_api::auth::istio_certificate_service_server::IstioCertificateServiceServer;
use meshcert_istio_api::discovery::aggregated_discovery_service_server::AggregatedDiscoveryServiceServer;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Server, ServerTlsConfig};

use crate::ca::server::{AllowedIdentities, CertificateService, ISTIOD_NAME};
use crate::xds::XdsServer;
use crate::{CertificateAuthority, ControlPlaneError};

/// Serves certificates and xDS on `listener` until `shutdown`, then ends every xDS stream so
/// the shutdown does not wait on connected ztunnels. `xds` is the config receiver, or an
/// [`XdsServer`] made from it when the caller watches ACKs ([`XdsServer::streams`]).
pub async fn serve_control_plane(
    listener: TcpListener,
    ca: Arc<CertificateAuthority>,
    allowed: impl AllowedIdentities,
    xds: impl Into<XdsServer>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ControlPlaneError> {
    let xds = xds.into();
    let tls = server_tls(&ca, &listener).map_err(failed)?;
    // Also on an early return: streams must not outlive the server.
    let _stop_on_exit = StopStreams(xds.clone());
    let streams = xds.clone();
    let shutdown = async move {
        shutdown.await;
        streams.stop_streams();
    };
    Server::builder()
        .tls_config(tls)
        .map_err(failed)?
        .add_service(IstioCertificateServiceServer::new(CertificateService::new(
            ca, allowed,
        )))
        .add_service(AggregatedDiscoveryServiceServer::new(xds))
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
        .await
        .map_err(failed)
}

/// TLS as [`ISTIOD_NAME`] and as the listener's IP (unless it listens on every address).
pub(crate) fn server_tls(
    ca: &CertificateAuthority,
    listener: &TcpListener,
) -> Result<ServerTlsConfig, ControlPlaneError> {
    let ip = listener
        .local_addr()
        .map_err(|e| ControlPlaneError::CertificateService(e.to_string()))?
        .ip();
    let ips: Vec<_> = Some(ip)
        .filter(|ip| !ip.is_unspecified())
        .into_iter()
        .collect();
    let serving = ca.serving_certificate(ISTIOD_NAME, &ips)?;
    let identity = tonic::transport::Identity::from_pem(serving.cert_pem, serving.key_pem);
    Ok(ServerTlsConfig::new().identity(identity))
}

struct StopStreams(XdsServer);

impl Drop for StopStreams {
    fn drop(&mut self) {
        self.0.stop_streams();
    }
}

fn failed(error: impl std::fmt::Display) -> ControlPlaneError {
    ControlPlaneError::ControlPlaneService(error.to_string())
}

#[cfg(test)]
mod tests;

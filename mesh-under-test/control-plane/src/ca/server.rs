//! Istio's certificate service (`istio.v1.auth.IstioCertificateService/CreateCertificate`)
//! over gRPC and TLS, as istiod serves it to ztunnel: the run's CA signs a CSR if its identity
//! is one the caller may request, and who may request what is the driver's decision.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use meshcert_istio_api::auth::istio_certificate_service_server::{
    IstioCertificateService, IstioCertificateServiceServer,
};
use meshcert_istio_api::auth::{IstioCertificateRequest, IstioCertificateResponse};
use meshcert_model::Identity;
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use super::CertificateAuthority;
use crate::ControlPlaneError;

/// The name the service's certificate carries: istiod's, which ztunnel expects by default.
pub const ISTIOD_NAME: &str = "istiod.istio-system.svc";

/// Who asks for a certificate, as the service sees them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    /// The bearer token of the `authorization` header (ztunnel sends its service account's).
    pub token: Option<String>,
    /// Where the call comes from.
    pub peer: Option<SocketAddr>,
}

/// The identities a caller may request certificates for, e.g. those of the workloads on the
/// calling ztunnel's node.
pub trait AllowedIdentities: Send + Sync + 'static {
    fn allowed(&self, caller: &Caller) -> Vec<Identity>;
}

impl<F> AllowedIdentities for F
where
    F: Fn(&Caller) -> Vec<Identity> + Send + Sync + 'static,
{
    fn allowed(&self, caller: &Caller) -> Vec<Identity> {
        self(caller)
    }
}

/// The gRPC service: the run's CA and the rule of who may request what.
pub struct CertificateService<A> {
    ca: Arc<CertificateAuthority>,
    allowed: A,
}

impl<A: AllowedIdentities> CertificateService<A> {
    pub fn new(ca: Arc<CertificateAuthority>, allowed: A) -> Self {
        Self { ca, allowed }
    }
}

#[tonic::async_trait]
impl<A: AllowedIdentities> IstioCertificateService for CertificateService<A> {
    async fn create_certificate(
        &self,
        request: Request<IstioCertificateRequest>,
    ) -> Result<Response<IstioCertificateResponse>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        let lifetime = u64::try_from(request.validity_duration)
            .map(Duration::from_secs)
            .map_err(|_| {
                Status::invalid_argument(format!(
                    "validity_duration {} is negative: ask for a lifetime in seconds",
                    request.validity_duration
                ))
            })?;
        let allowed = self.allowed.allowed(&caller);
        let chain = self
            .ca
            .sign(&request.csr, &allowed, lifetime)
            .map_err(status_of)?;
        Ok(Response::new(IstioCertificateResponse {
            cert_chain: chain.into_pems(),
        }))
    }
}

fn caller_of<T>(request: &Request<T>) -> Caller {
    let token = request
        .metadata()
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::to_owned);
    Caller {
        token,
        peer: request.remote_addr(),
    }
}

/// The gRPC status of a refusal: the caller's fault or ours.
fn status_of(error: ControlPlaneError) -> Status {
    match error {
        ControlPlaneError::IdentityNotAllowed { .. } => {
            Status::permission_denied(error.to_string())
        }
        ControlPlaneError::BadCertificateRequest(_) => Status::invalid_argument(error.to_string()),
        _ => Status::internal(error.to_string()),
    }
}

/// Serves the certificate service alone over TLS as [`ISTIOD_NAME`] (and the listener's IP) on
/// `listener` until `shutdown`; [`crate::serve_control_plane`] serves it beside xDS.
pub async fn serve(
    listener: TcpListener,
    ca: Arc<CertificateAuthority>,
    allowed: impl AllowedIdentities,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ControlPlaneError> {
    let tls = crate::grpc::server_tls(&ca, &listener)?;
    let service = IstioCertificateServiceServer::new(CertificateService::new(ca, allowed));
    Server::builder()
        .tls_config(tls)
        .map_err(service_failed)?
        .serve_with_incoming_shutdown(service, TcpIncoming::from(listener), shutdown)
        .await
        .map_err(service_failed)
}

fn service_failed(error: impl std::fmt::Display) -> ControlPlaneError {
    ControlPlaneError::CertificateService(error.to_string())
}

#[cfg(test)]
pub(crate) mod tests;

//! The certificate service over TLS on loopback, called as ztunnel calls it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use meshcert_istio_api::auth::IstioCertificateRequest;
use meshcert_istio_api::auth::istio_certificate_service_client::IstioCertificateServiceClient;
use meshcert_model::Identity;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request};

use super::{Caller, ISTIOD_NAME, serve};
use crate::ca::CertificateAuthority;
use crate::ca::tests::csr_for;

fn identity(service_account: &str) -> Identity {
    Identity::new("cluster.local", "default", service_account)
}

/// The ztunnel of node-a may ask for `reviews` only; anyone else for nothing.
pub(crate) fn node_a_may_request_reviews(caller: &Caller) -> Vec<Identity> {
    match caller.token.as_deref() {
        Some("node-a") => vec![identity("reviews")],
        _ => vec![],
    }
}

async fn client(
    address: std::net::SocketAddr,
    root_pem: &str,
) -> IstioCertificateServiceClient<Channel> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(root_pem))
        .domain_name(ISTIOD_NAME);
    let channel = Endpoint::from_shared(format!("https://{address}"))
        .expect("an endpoint")
        .tls_config(tls)
        .expect("TLS")
        .connect()
        .await
        .expect("connects over TLS, trusting the run's root");
    IstioCertificateServiceClient::new(channel)
}

pub(crate) fn request_for(service_account: &str, token: &str) -> Request<IstioCertificateRequest> {
    let mut request = Request::new(IstioCertificateRequest {
        csr: csr_for(&[identity(service_account).to_string()]),
        validity_duration: 3600,
        metadata: None,
    });
    let bearer = format!("Bearer {token}").parse().expect("ASCII");
    request.metadata_mut().insert("authorization", bearer);
    request
}

/// A server on 127.0.0.1:0 under a fresh CA, running until `stop` is sent.
pub(crate) struct Loopback<T> {
    pub(crate) address: std::net::SocketAddr,
    pub(crate) ca: Arc<CertificateAuthority>,
    pub(crate) stop: oneshot::Sender<()>,
    pub(crate) server: JoinHandle<T>,
}

pub(crate) type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Spawns `serve(listener, ca, shutdown)` on a loopback port.
pub(crate) async fn on_loopback<F, S>(serve: S) -> Loopback<F::Output>
where
    S: FnOnce(TcpListener, Arc<CertificateAuthority>, Shutdown) -> F,
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let ca = Arc::new(CertificateAuthority::generate().expect("a CA"));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let address = listener.local_addr().expect("bound");
    let (stop, stopped) = oneshot::channel::<()>();
    let shutdown = Box::pin(async {
        let _ = stopped.await;
    });
    let server = tokio::spawn(serve(listener, ca.clone(), shutdown));
    Loopback {
        address,
        ca,
        stop,
        server,
    }
}

#[tokio::test]
async fn signs_what_the_caller_may_request_and_denies_the_rest() {
    let served = on_loopback(|listener, ca, shutdown| {
        serve(listener, ca, node_a_may_request_reviews, shutdown)
    })
    .await;
    let mut client = client(served.address, served.ca.root_pem()).await;

    let chain = client
        .create_certificate(request_for("reviews", "node-a"))
        .await
        .expect("signed")
        .into_inner()
        .cert_chain;
    assert_eq!(chain.len(), 2);
    assert_eq!(chain[1], served.ca.root_pem());

    for (service_account, token) in [("ratings", "node-a"), ("reviews", "node-b")] {
        let denied = client
            .create_certificate(request_for(service_account, token))
            .await
            .expect_err("denied");
        assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
        assert!(
            denied
                .message()
                .contains(&identity(service_account).to_string())
        );
    }

    let mut negative = request_for("reviews", "node-a");
    negative.get_mut().validity_duration = -1;
    let refused = client
        .create_certificate(negative)
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");

    served.stop.send(()).expect("the server is running");
    served
        .server
        .await
        .expect("joined")
        .expect("served until shutdown");
}

//! gRPC channels to the control plane (istiod's 15012), as upstream opens them: TLS 1.3 with
//! ALPN h2, the server verified against the configured roots under the URL's host (or, when
//! `ALT_*_HOSTNAME` is set, that name instead), and every call carrying
//! `authorization: Bearer <token>` and `clusterid` when a token is configured.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

use crate::ZtunnelError;
use crate::config::{AuthToken, ControlPlane, RootCert};
use crate::tls;

/// Upstream's connect timeout for control-plane connections.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Upstream's cluster id when `CLUSTER_ID` is unset (sent as `clusterid` with the token).
pub const DEFAULT_CLUSTER_ID: &str = "Kubernetes";

/// A connected channel to `server`; `name` ("the CA", "xDS") names it in errors.
pub async fn connect(server: &ControlPlane, name: &'static str) -> Result<Channel, ZtunnelError> {
    let unreachable = |message: String| ZtunnelError::Unreachable {
        server: name,
        address: server.address.clone(),
        message,
    };
    let config = Arc::new(client_config(server).await.map_err(unreachable)?);
    let server_name = ServerName::try_from(server.host.clone())
        .map_err(|e| unreachable(format!("{:?} is not a TLS server name: {e}", server.host)))?;
    let (host, port) = (server.host.clone(), server.port);
    let connector = tower::service_fn(move |_: tonic::codegen::http::Uri| {
        let (config, server_name, host) = (Arc::clone(&config), server_name.clone(), host.clone());
        async move {
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(server_name, tcp)
                .await?;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    });
    // The connector does TLS; tonic is given plain http so it never wants its own.
    let authority = match server.host.contains(':') {
        true => format!("[{}]:{port}", server.host),
        false => format!("{}:{port}", server.host),
    };
    Endpoint::from_shared(format!("http://{authority}"))
        .map_err(|e| unreachable(ZtunnelError::chain(&e)))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .connect_with_connector(connector)
        .await
        .map_err(|e| unreachable(ZtunnelError::chain(&e)))
}

/// TLS 1.3, ALPN h2, the server checked against `server.root` (and its alternative name).
async fn client_config(server: &ControlPlane) -> Result<ClientConfig, String> {
    let roots = Arc::new(root_store(&server.root).await?);
    let builder = ClientConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?;
    let mut config = match &server.alt_hostname {
        None => builder
            .with_root_certificates(Arc::clone(&roots))
            .with_no_client_auth(),
        Some(alt) => {
            let verifier = AltNameVerifier::new(roots, alt)?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth()
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Every certificate of the PEM file or text; none is an error naming where they were looked for.
pub async fn root_store(root: &RootCert) -> Result<RootCertStore, String> {
    let (pem, origin) = match root {
        RootCert::File(path) => (
            tokio::fs::read(path)
                .await
                .map_err(|e| format!("cannot read the root certificate {}: {e}", path.display()))?,
            path.display().to_string(),
        ),
        RootCert::Pem(text) => (text.clone().into_bytes(), "the PEM text given".to_string()),
    };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{origin}: not PEM certificates: {e}"))?;
    let mut store = RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!("{origin}: no usable root certificate"));
    }
    Ok(store)
}

/// Adds `authorization: Bearer <token>` and `clusterid` to a call, reading a token file now.
pub async fn authorize<T>(
    request: &mut tonic::Request<T>,
    auth: &AuthToken,
    cluster_id: &str,
) -> Result<(), String> {
    let token = match auth {
        AuthToken::None => return Ok(()),
        AuthToken::Static(token) => token.clone(),
        AuthToken::File(path) => {
            let text = tokio::fs::read_to_string(path)
                .await
                .map_err(|e| format!("cannot read the token {}: {e}", path.display()))?;
            let token = text.trim_end().to_string();
            if token.is_empty() {
                return Err(format!("the token file {} is empty", path.display()));
            }
            token
        }
    };
    let bearer = MetadataValue::try_from(format!("Bearer {token}"))
        .map_err(|_| "the token is not a valid header value".to_string())?;
    let cluster = MetadataValue::try_from(cluster_id)
        .map_err(|_| format!("cluster id {cluster_id:?} is not a valid header value"))?;
    let metadata = request.metadata_mut();
    metadata.insert("authorization", bearer);
    metadata.insert("clusterid", cluster);
    Ok(())
}

/// Accepts a server certificate naming either the URL's host or the alternative name, as
/// upstream's verifier does; the chain is always checked against the roots.
#[derive(Debug)]
struct AltNameVerifier {
    inner: Arc<WebPkiServerVerifier>,
    alt_name: ServerName<'static>,
}

impl AltNameVerifier {
    fn new(roots: Arc<RootCertStore>, alt: &str) -> Result<Self, String> {
        let inner = WebPkiServerVerifier::builder_with_provider(roots, tls::provider())
            .build()
            .map_err(|e| e.to_string())?;
        let alt_name = ServerName::try_from(alt.to_string())
            .map_err(|e| format!("{alt:?} is not a TLS server name: {e}"))?;
        Ok(Self { inner, alt_name })
    }
}

impl ServerCertVerifier for AltNameVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
            .or_else(|_| {
                self.inner
                    .verify_server_cert(end_entity, intermediates, &self.alt_name, ocsp, now)
            })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Doubling retry delays between `first` and `most`, reset after a success (upstream: CA
/// retries 0.5 s doubling to 150 s; xDS 10 ms doubling to 15 s).
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    most: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(first: Duration, most: Duration) -> Self {
        Self {
            first,
            most,
            next: first,
        }
    }

    /// The delay before the next attempt; each call doubles the one after, up to `most`.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.most);
        delay
    }

    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

/// Logs an error once until it changes or `clear` is called, so a control plane that stays
/// down is one line, not one per retry.
#[derive(Debug, Default)]
pub struct OnceReporter(Option<String>);

impl OnceReporter {
    /// Whether `message` is new (and so should be logged).
    pub fn is_new(&mut self, message: &str) -> bool {
        if self.0.as_deref() == Some(message) {
            return false;
        }
        self.0 = Some(message.to_string());
        true
    }

    pub fn clear(&mut self) {
        self.0 = None;
    }
}

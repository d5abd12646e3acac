//! The workload certificate this ztunnel holds for the workload it serves: issued by the mesh's
//! CA (`CA_ADDRESS`) for the SPIFFE identity of `PROXY_WORKLOAD_INFO`, and used on both ends of
//! HBONE (client certificate outbound, server certificate on 15008 inbound).
//!
//! The TLS configs HBONE builds from it follow upstream's: TLS 1.3 only, ALPN `h2`; inbound
//! requires a client certificate that chains to the mesh roots and names our trust domain;
//! outbound sends no SNI, does not resume sessions, and accepts a server only when its chain
//! ends in our roots and its URI SAN is the destination workload's identity (no DNS name).

use std::fmt;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use meshcert_model::Identity;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, OtherError,
    RootCertStore, ServerConfig, SignatureScheme,
};
use tokio::sync::watch;
use x509_parser::extensions::GeneralName;

use crate::ZtunnelError;
use crate::log::lock;

/// HBONE's ALPN protocol.
const ALPN_H2: &[u8] = b"h2";
pub(crate) static TLS13_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// A leaf for `identity`, the chain up to (not including) the root, its key, and the roots a
/// peer's chain must end in.
#[derive(Debug)]
pub struct WorkloadCertificate {
    pub identity: Identity,
    /// Leaf first, as TLS sends it.
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub roots: Arc<RootCertStore>,
}

/// The ring provider: one crypto provider for every TLS config of the reference.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Where the current certificate comes from (the CA client): `None` until the first one.
pub type CertificateSource = watch::Receiver<Option<Arc<WorkloadCertificate>>>;

/// A source that never has a certificate: every HBONE connection fails, saying why.
pub fn no_certificate() -> CertificateSource {
    watch::channel(None).1
}

/// The certificate to use now.
pub fn current(source: &CertificateSource) -> Result<Arc<WorkloadCertificate>, ZtunnelError> {
    source.borrow().clone().ok_or(ZtunnelError::NoCertificate)
}

fn unusable(cert: &WorkloadCertificate, reason: impl fmt::Display) -> ZtunnelError {
    ZtunnelError::Certificate {
        identity: cert.identity.to_string(),
        reason: reason.to_string(),
    }
}

/// The config of the HBONE server (15008): our certificate, a client certificate required.
pub fn server_config(cert: &WorkloadCertificate) -> Result<ServerConfig, ZtunnelError> {
    let ring = provider();
    let chain =
        WebPkiClientVerifier::builder_with_provider(Arc::clone(&cert.roots), Arc::clone(&ring))
            .build()
            .map_err(|e| unusable(cert, e))?;
    let verifier = Arc::new(TrustDomainVerifier {
        chain,
        trust_domain: cert.identity.trust_domain.clone(),
        provider: ring,
    });
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(TLS13_ONLY)
        .map_err(|e| unusable(cert, e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(cert.chain.clone(), cert.key.clone_key())
        .map_err(|e| unusable(cert, e))?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(config)
}

/// The config of an HBONE client connecting to a ztunnel that must prove `server`.
pub fn client_config(
    cert: &WorkloadCertificate,
    server: Identity,
) -> Result<ClientConfig, ZtunnelError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(TLS13_ONLY)
        .map_err(|e| unusable(cert, e))?
        .dangerous()
        .with_custom_certificate_verifier(server_verifier(&cert.roots, server))
        .with_client_auth_cert(cert.chain.clone(), cert.key.clone_key())
        .map_err(|e| unusable(cert, e))?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    config.enable_sni = false;
    Ok(config)
}

/// Accepts a server whose chain ends in `roots` and whose URI SAN is `expected`.
pub(crate) fn server_verifier(
    roots: &Arc<RootCertStore>,
    expected: Identity,
) -> Arc<dyn ServerCertVerifier> {
    Arc::new(ServerIdentityVerifier {
        roots: Arc::clone(roots),
        expected,
        provider: provider(),
    })
}

/// The server name an HBONE client gives TLS. It is never sent (no SNI) nor checked (the
/// verifier checks the SPIFFE identity), as upstream.
pub fn hbone_server_name() -> ServerName<'static> {
    ServerName::IpAddress(Ipv4Addr::UNSPECIFIED.into())
}

/// The SPIFFE identities a certificate names in its URI SANs.
pub fn identities(der: &CertificateDer<'_>) -> Result<Vec<Identity>, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let Some(san) = cert.subject_alternative_name().map_err(|e| e.to_string())? else {
        return Ok(Vec::new());
    };
    Ok(san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) => uri.parse().ok(),
            _ => None,
        })
        .collect())
}

/// The identity a verified TLS peer proved: the first SPIFFE URI SAN of its leaf.
pub fn peer_identity(certs: Option<&[CertificateDer<'_>]>) -> Option<Identity> {
    let leaf = certs?.first()?;
    identities(leaf).ok()?.into_iter().next()
}

/// A verifier's refusal as rustls reports it; its Debug is the readable message, which is
/// what rustls prints.
struct Refusal(ZtunnelError);

impl fmt::Debug for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for Refusal {}

fn refuse(expected: String, der: &CertificateDer<'_>) -> rustls::Error {
    let found = match identities(der) {
        Ok(ids) => ids.iter().map(ToString::to_string).collect(),
        Err(_) => return rustls::Error::InvalidCertificate(CertificateError::BadEncoding),
    };
    let refusal = Refusal(ZtunnelError::PeerIdentity { expected, found });
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(refusal))))
}

/// The handshake-signature methods of a verifier with a `provider` field: the provider's
/// algorithms check them (rustls asks both kinds of verifier the same three things).
macro_rules! signatures_by_provider {
    () => {
        signature_by_provider!(
            verify_tls12_signature,
            rustls::crypto::verify_tls12_signature
        );
        signature_by_provider!(
            verify_tls13_signature,
            rustls::crypto::verify_tls13_signature
        );

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.provider
                .signature_verification_algorithms
                .supported_schemes()
        }
    };
}

macro_rules! signature_by_provider {
    ($method:ident, $check:path) => {
        fn $method(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            $check(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }
    };
}

/// Accepts a server whose chain ends in our roots and whose URI SAN is the expected identity.
#[derive(Debug)]
struct ServerIdentityVerifier {
    roots: Arc<RootCertStore>,
    expected: Identity,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for ServerIdentityVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let parsed = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        match identities(end_entity) {
            Ok(ids) if ids.contains(&self.expected) => Ok(ServerCertVerified::assertion()),
            _ => Err(refuse(self.expected.to_string(), end_entity)),
        }
    }

    signatures_by_provider!();
}

/// Requires a client certificate chaining to our roots whose identity is in our trust domain,
/// as upstream's inbound does.
#[derive(Debug)]
struct TrustDomainVerifier {
    chain: Arc<dyn ClientCertVerifier>,
    trust_domain: String,
    /// The provider the chain verifier was built with.
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for TrustDomainVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.chain.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .chain
            .verify_client_cert(end_entity, intermediates, now)?;
        match identities(end_entity) {
            Ok(ids) if ids.iter().any(|id| id.trust_domain == self.trust_domain) => Ok(verified),
            _ => Err(refuse(
                format!("an identity in trust domain {}", self.trust_domain),
                end_entity,
            )),
        }
    }

    signatures_by_provider!();
}

/// The HBONE server's config for the current certificate, rebuilt when the certificate changes.
pub struct ServerTls {
    source: CertificateSource,
    built: Mutex<Option<(Arc<WorkloadCertificate>, Arc<ServerConfig>)>>,
}

impl ServerTls {
    pub fn new(source: CertificateSource) -> Self {
        Self {
            source,
            built: Mutex::new(None),
        }
    }

    pub fn current(&self) -> Result<Arc<ServerConfig>, ZtunnelError> {
        let cert = current(&self.source)?;
        let mut built = lock(&self.built);
        if let Some((for_cert, config)) = built.as_ref()
            && Arc::ptr_eq(for_cert, &cert)
        {
            return Ok(Arc::clone(config));
        }
        let config = Arc::new(server_config(&cert)?);
        *built = Some((cert, Arc::clone(&config)));
        Ok(config)
    }
}

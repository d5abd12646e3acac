//! The certificate of the workload this proxy serves, from the mesh's CA (`CA_ADDRESS`), as
//! upstream asks for it: a fresh P-256 key and a CSR naming exactly the SPIFFE identity of
//! `PROXY_WORKLOAD_INFO`, sent to `istio.v1.auth.IstioCertificateService/CreateCertificate`
//! with `validity_duration` = `SECRET_TTL`; renewed at half its lifetime, retried with a
//! doubling backoff, each new failure logged as one line naming the CA.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use meshcert_istio_api::auth::IstioCertificateRequest;
use meshcert_istio_api::auth::istio_certificate_service_client::IstioCertificateServiceClient;
use meshcert_model::Identity;
use rcgen::{CertificateParams, DistinguishedName, KeyPair, SanType};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::sync::watch;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::ZtunnelError;
use crate::config::{Config, ControlPlane};
use crate::grpc::{self, Backoff, OnceReporter};
use crate::log::{Level, Record};
use crate::shutdown::Shutdown;
use crate::state::ProxyState;
use crate::tls::WorkloadCertificate;

/// How the CA is named in logs and errors.
pub const CA: &str = "the CA";
/// Upstream's first retry delay and its cap.
const FIRST_RETRY: Duration = Duration::from_millis(500);
const MOST_RETRY: Duration = Duration::from_secs(150);
/// The SPIFFE identity certificates are asked for: `PROXY_WORKLOAD_INFO`'s namespace and
/// service account in the configured trust domain.
pub fn identity(config: &Config) -> Identity {
    Identity::new(
        config.control_plane.trust_domain.clone(),
        config.workload_info.namespace.clone(),
        config.workload_info.service_account.clone(),
    )
}

/// A new P-256 key and a PEM CSR whose only subject alternative name is `identity`'s URI, with
/// an empty subject (as upstream: no common name).
pub fn csr(identity: &Identity) -> Result<(String, PrivateKeyDer<'static>), String> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
    let mut params = CertificateParams::default();
    let uri = identity
        .to_string()
        .try_into()
        .map_err(|e| format!("identity {identity} is not a URI: {e}"))?;
    params.subject_alt_names = vec![SanType::URI(uri)];
    params.distinguished_name = DistinguishedName::new();
    let pem = params
        .serialize_request(&key)
        .and_then(|csr| csr.pem())
        .map_err(|e| format!("cannot write the CSR: {e}"))?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Ok((pem, der))
}

/// The issued chain (PEM strings, leaf first, root last) as this proxy's certificate, and when
/// to renew it (half its lifetime, as upstream). The leaf must name `identity`. With no root in
/// the answer, `fallback_roots` (`CA_ROOT_CA`) are the peers' roots.
pub fn certificate(
    identity: &Identity,
    chain: &[String],
    key: PrivateKeyDer<'static>,
    fallback_roots: RootCertStore,
) -> Result<(WorkloadCertificate, SystemTime), String> {
    let mut certs = Vec::new();
    for pem in chain {
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            certs.push(cert.map_err(|e| format!("the chain is not PEM: {e}"))?);
        }
    }
    let leaf = certs.first().ok_or("the answer holds no certificate")?;
    let renew_at = check_leaf(leaf, identity)?;
    let roots = match certs.len() {
        1 => fallback_roots,
        _ => {
            let mut store = RootCertStore::empty();
            store
                .add(certs.pop().expect("more than one certificate"))
                .map_err(|e| format!("the chain's last certificate is not a usable root: {e}"))?;
            store
        }
    };
    Ok((
        WorkloadCertificate {
            identity: identity.clone(),
            chain: certs,
            key,
            roots: Arc::new(roots),
        },
        renew_at,
    ))
}

/// Checks the leaf names `identity` among its URI SANs; returns its half-life instant.
fn check_leaf(leaf: &CertificateDer<'_>, identity: &Identity) -> Result<SystemTime, String> {
    let (_, cert) = X509Certificate::from_der(leaf.as_ref())
        .map_err(|e| format!("the leaf is not an X.509 certificate: {e}"))?;
    let wanted = identity.to_string();
    let names = cert
        .subject_alternative_name()
        .map_err(|e| format!("the leaf's subject alternative names do not parse: {e}"))?
        .map(|san| san.value.general_names.clone())
        .unwrap_or_default();
    if !names
        .iter()
        .any(|n| matches!(n, GeneralName::URI(uri) if *uri == wanted))
    {
        return Err(format!("the issued leaf does not name {wanted}"));
    }
    let validity = cert.validity();
    let at = |secs: i64| UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64);
    let (from, to) = (
        at(validity.not_before.timestamp()),
        at(validity.not_after.timestamp()),
    );
    Ok(from + to.duration_since(from).unwrap_or_default() / 2)
}

/// One CreateCertificate call: the certificate and when to renew it.
pub async fn fetch(
    config: &Config,
    ca: &ControlPlane,
) -> Result<(WorkloadCertificate, SystemTime), ZtunnelError> {
    let refused = |message: String| ZtunnelError::ControlPlane {
        server: CA,
        address: ca.address.clone(),
        message,
    };
    let identity = identity(config);
    let (csr, key) = csr(&identity).map_err(refused)?;
    let channel = grpc::connect(ca, CA).await?;
    let mut request = tonic::Request::new(IstioCertificateRequest {
        csr,
        validity_duration: config.control_plane.secret_ttl.as_secs() as i64,
        metadata: None,
    });
    grpc::authorize(
        &mut request,
        &config.control_plane.auth,
        &cluster_id(config),
    )
    .await
    .map_err(refused)?;
    let answer = IstioCertificateServiceClient::new(channel)
        .create_certificate(request)
        .await
        .map_err(|status| refused(format!("CreateCertificate refused: {status}")))?
        .into_inner();
    let roots = grpc::root_store(&ca.root).await.map_err(refused)?;
    certificate(&identity, &answer.cert_chain, key, roots)
        .map_err(|e| refused(format!("CreateCertificate answered, but {e}")))
}

/// What upstream sends as `clusterid` with the token.
pub fn cluster_id(config: &Config) -> String {
    config
        .placement
        .cluster_id
        .clone()
        .unwrap_or_else(|| grpc::DEFAULT_CLUSTER_ID.to_string())
}

/// Keeps `certificates` holding a valid certificate until shutdown: fetches one, renews it at
/// half-life, and retries failures with backoff (one log line per new error).
pub async fn run(
    state: Arc<ProxyState>,
    ca: ControlPlane,
    certificates: watch::Sender<Option<Arc<WorkloadCertificate>>>,
    mut shutdown: Shutdown,
) {
    let mut backoff = Backoff::new(FIRST_RETRY, MOST_RETRY);
    let mut reporter = OnceReporter::default();
    loop {
        let wait = match fetch(&state.config, &ca).await {
            Ok((cert, renew_at)) => {
                state.log(
                    Record::new(Level::Info, "ca", "certificate issued")
                        .str("identity", cert.identity.to_string())
                        .str("ca", ca.address.clone()),
                );
                certificates.send_replace(Some(Arc::new(cert)));
                backoff.reset();
                reporter.clear();
                renew_at
                    .duration_since(SystemTime::now())
                    .unwrap_or_default()
            }
            Err(e) => {
                let line = ZtunnelError::chain(&e);
                if reporter.is_new(&line) {
                    state.log(Record::new(Level::Error, "ca", line));
                }
                backoff.next_delay()
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.wait() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::X509CertificationRequest;

    #[test]
    fn the_csr_names_exactly_the_identity() {
        let identity = Identity::new("cluster.local", "httpbin", "client");
        let (pem, key) = csr(&identity).unwrap();
        assert!(matches!(key, PrivateKeyDer::Pkcs8(_)));
        let der = rustls::pki_types::CertificateSigningRequestDer::from_pem_slice(pem.as_bytes())
            .unwrap();
        let (_, request) = X509CertificationRequest::from_der(der.as_ref()).unwrap();
        request.verify_signature().unwrap();
        assert_eq!(request.certification_request_info.subject.iter().count(), 0);
        let mut names = Vec::new();
        for extension in request.requested_extensions().into_iter().flatten() {
            if let x509_parser::extensions::ParsedExtension::SubjectAlternativeName(san) = extension
            {
                names.extend(san.general_names.iter().map(|n| format!("{n:?}")));
            }
        }
        assert_eq!(
            names,
            vec!["URI(\"spiffe://cluster.local/ns/httpbin/sa/client\")".to_string()]
        );
    }
}

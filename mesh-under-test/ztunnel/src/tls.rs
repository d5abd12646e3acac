//! The workload certificate this ztunnel holds for the workload it serves: issued by the mesh's
//! CA (`CA_ADDRESS`) for the SPIFFE identity of `PROXY_WORKLOAD_INFO`, and used on both ends of
//! HBONE (client certificate outbound, server certificate on 15008 inbound).

use std::sync::Arc;

use meshcert_model::Identity;
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

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

//! The certificate authority of one run, playing istiod's CA: a fresh root per run that signs
//! the CSRs a ztunnel sends for its workloads, but only for identities that ztunnel may ask for.
//!
//! The leaf is built from the CSR's public key and the one identity it names; nothing else of
//! the CSR (subject, other SANs, requested extensions) reaches the certificate.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use meshcert_model::Identity;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;

use crate::ControlPlaneError;

/// How long the root is valid: far longer than any run.
const ROOT_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
/// The longest leaf lifetime granted; Istio's default maximum workload certificate TTL.
pub const MAX_LEAF_LIFETIME: Duration = Duration::from_secs(90 * 24 * 3600);
/// Certificates start this long before they are issued, for clocks slightly behind ours.
const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// A root key and certificate, made at run start and never written to disk.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    root_pem: String,
}

/// What a signed CSR yields: the leaf, then the root it chains to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateChain {
    pub leaf_pem: String,
    pub root_pem: String,
}

/// The control plane's own TLS certificate and key, issued by the run's root.
pub struct ServingCertificate {
    pub cert_pem: String,
    pub key_pem: String,
}

impl CertificateChain {
    /// Leaf first, root last, as `IstioCertificateResponse.cert_chain` carries them.
    pub fn into_pems(self) -> Vec<String> {
        vec![self.leaf_pem, self.root_pem]
    }
}

impl CertificateAuthority {
    /// A fresh root (ECDSA P-256), valid from now.
    pub fn generate() -> Result<Self, ControlPlaneError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(failed)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "meshcert");
        params
            .distinguished_name
            .push(DnType::CommonName, "meshcert run root");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        (params.not_before, params.not_after) = validity(SystemTime::now(), ROOT_LIFETIME);
        let root_pem = params.self_signed(&key).map_err(failed)?.pem();
        Ok(Self {
            issuer: Issuer::new(params, key),
            root_pem,
        })
    }

    /// The root certificate, for clients and ztunnels to trust.
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// A key and a certificate for the control plane to serve TLS as `dns_name` (istiod's
    /// service name, which ztunnel checks) and as each of `ips` (for clients given an address
    /// such as `https://10.0.0.9:15012`), valid as long as the root.
    pub fn serving_certificate(
        &self,
        dns_name: &str,
        ips: &[IpAddr],
    ) -> Result<ServingCertificate, ControlPlaneError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(failed)?;
        let mut params = leaf_params(
            SanType::DnsName(dns_name.try_into().map_err(failed)?),
            SystemTime::now(),
            ROOT_LIFETIME,
        );
        params
            .subject_alt_names
            .extend(ips.iter().copied().map(SanType::IpAddress));
        let cert = params.signed_by(&key, &self.issuer).map_err(failed)?;
        Ok(ServingCertificate {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Signs `csr_pem` for `lifetime` if the one identity it names is in `allowed`.
    pub fn sign(
        &self,
        csr_pem: &str,
        allowed: &[Identity],
        lifetime: Duration,
    ) -> Result<CertificateChain, ControlPlaneError> {
        if lifetime.is_zero() || lifetime > MAX_LEAF_LIFETIME {
            return Err(ControlPlaneError::BadCertificateRequest(format!(
                "the requested lifetime {lifetime:?} is not more than zero and at most \
                 {MAX_LEAF_LIFETIME:?}"
            )));
        }
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(|error| {
            ControlPlaneError::BadCertificateRequest(format!(
                "the CSR is not a signed PKCS#10 request in PEM ({error})"
            ))
        })?;
        let identity = requested_identity(&csr.params.subject_alt_names)?;
        if !allowed.contains(&identity) {
            return Err(ControlPlaneError::IdentityNotAllowed {
                requested: identity.to_string(),
                allowed: allowed.iter().map(Identity::to_string).collect(),
            });
        }
        let uri = identity.to_string().try_into().map_err(failed)?;
        let leaf = leaf_params(SanType::URI(uri), SystemTime::now(), lifetime)
            .signed_by(&csr.public_key, &self.issuer)
            .map_err(failed)?;
        Ok(CertificateChain {
            leaf_pem: leaf.pem(),
            root_pem: self.root_pem.clone(),
        })
    }
}

/// The one SPIFFE identity a CSR names among its SANs.
fn requested_identity(sans: &[SanType]) -> Result<Identity, ControlPlaneError> {
    let uris: Vec<&str> = sans
        .iter()
        .filter_map(|san| match san {
            SanType::URI(uri) => Some(uri.as_str()),
            _ => None,
        })
        .collect();
    let [uri] = uris[..] else {
        return Err(ControlPlaneError::BadCertificateRequest(format!(
            "the CSR must name exactly one SPIFFE identity as a URI SAN, it names {uris:?}"
        )));
    };
    uri.parse()
        .map_err(|problem| ControlPlaneError::BadCertificateRequest(format!("the CSR's {problem}")))
}

/// A certificate for `name`: client and server authentication, not a CA.
fn leaf_params(name: SanType, now: SystemTime, lifetime: Duration) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![name];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    (params.not_before, params.not_after) = validity(now, lifetime);
    params
}

/// From a little before `now` to `now + lifetime`.
fn validity(now: SystemTime, lifetime: Duration) -> (OffsetDateTime, OffsetDateTime) {
    let now = OffsetDateTime::from(now);
    (now - CLOCK_SKEW, now + lifetime)
}

fn failed(error: impl std::fmt::Display) -> ControlPlaneError {
    ControlPlaneError::CertificateAuthority(error.to_string())
}

pub mod server;
#[cfg(test)]
pub(crate) mod tests;

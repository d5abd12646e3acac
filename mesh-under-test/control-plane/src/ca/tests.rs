//! The run's CA signs what a caller may ask for, and the leaf chains to the root.

use std::time::{Duration, SystemTime};

use meshcert_model::Identity;
use rcgen::{CertificateParams, KeyPair, SanType};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};

use super::{CertificateAuthority, CertificateChain, MAX_LEAF_LIFETIME};
use crate::ControlPlaneError;

const DAY: Duration = Duration::from_secs(24 * 3600);

fn reviews() -> Identity {
    Identity::new("cluster.local", "default", "reviews")
}

/// A CSR as ztunnel sends one: a fresh key and the identity as the one URI SAN.
pub(crate) fn csr_for(uris: &[String]) -> String {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("a key");
    let mut params = CertificateParams::default();
    params.subject_alt_names = uris
        .iter()
        .map(|uri| SanType::URI(uri.clone().try_into().expect("ia5")))
        .collect();
    params
        .serialize_request(&key)
        .expect("a CSR")
        .pem()
        .expect("PEM")
}

fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).expect("one certificate in PEM")
}

/// Whether `leaf_pem` chains to `root_pem` for a client at `now`, as a TLS peer checks.
fn verifies(leaf_pem: &str, root_pem: &str, now: SystemTime) -> Result<(), webpki::Error> {
    let root = der(root_pem);
    let anchor = webpki::anchor_from_trusted_cert(&root)?;
    let leaf = der(leaf_pem);
    let leaf = webpki::EndEntityCert::try_from(&leaf)?;
    let now = UnixTime::since_unix_epoch(now.duration_since(SystemTime::UNIX_EPOCH).unwrap());
    leaf.verify_for_usage(
        &[webpki::ring::ECDSA_P256_SHA256],
        &[anchor],
        &[],
        now,
        webpki::KeyUsage::client_auth(),
        None,
        None,
    )
    .map(|_| ())
}

/// A fresh CA and the chain it signs for `reviews`, allowed to ask for itself.
fn reviews_signed_for_a_day() -> (CertificateAuthority, CertificateChain) {
    let ca = CertificateAuthority::generate().expect("a CA");
    let csr = csr_for(&[reviews().to_string()]);
    let chain = ca.sign(&csr, &[reviews()], DAY).expect("signed");
    (ca, chain)
}

#[test]
fn an_allowed_identity_gets_a_leaf_that_names_it_and_chains_to_the_root() {
    let (ca, chain) = reviews_signed_for_a_day();
    assert_eq!(chain.root_pem, ca.root_pem());
    assert_eq!(leaf_uris(&chain.leaf_pem), [reviews().to_string()]);
    verifies(&chain.leaf_pem, &chain.root_pem, SystemTime::now()).expect("chains to the root");
    let pems = chain.clone().into_pems();
    assert_eq!(pems, [chain.leaf_pem, chain.root_pem]);
}

#[test]
fn a_leaf_expires_after_its_lifetime_and_does_not_chain_to_another_run() {
    let (_, chain) = reviews_signed_for_a_day();
    let later = SystemTime::now() + DAY + Duration::from_secs(120);
    assert_eq!(
        verifies(&chain.leaf_pem, &chain.root_pem, later),
        Err(webpki::Error::CertExpired {
            time: UnixTime::since_unix_epoch(later.duration_since(SystemTime::UNIX_EPOCH).unwrap()),
            not_after: verifies_not_after(&chain.leaf_pem),
        })
    );
    // Every run's root has the same name, so another run's root is tried and its key refused.
    let other = CertificateAuthority::generate().expect("another CA");
    assert_eq!(
        verifies(&chain.leaf_pem, other.root_pem(), SystemTime::now()),
        Err(webpki::Error::InvalidSignatureForPublicKey)
    );
}

fn verifies_not_after(leaf_pem: &str) -> UnixTime {
    let leaf = der(leaf_pem);
    let (_, leaf) = x509_parser::parse_x509_certificate(&leaf).expect("the leaf parses");
    let not_after = leaf.validity().not_after.timestamp();
    UnixTime::since_unix_epoch(Duration::from_secs(not_after.try_into().unwrap()))
}

/// The URI SANs of a leaf, read back as a peer would.
fn leaf_uris(leaf_pem: &str) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let leaf = der(leaf_pem);
    let (_, leaf) = x509_parser::parse_x509_certificate(&leaf).expect("the leaf parses");
    let sans = leaf.subject_alternative_name().expect("one SAN extension");
    let names = sans
        .map(|san| san.value.general_names.clone())
        .unwrap_or_default();
    names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some(uri.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn an_identity_the_caller_may_not_request_is_refused_by_name() {
    let ca = CertificateAuthority::generate().expect("a CA");
    let ratings = Identity::new("cluster.local", "default", "ratings");
    let refused = ca
        .sign(&csr_for(&[ratings.to_string()]), &[reviews()], DAY)
        .expect_err("refused");
    let ControlPlaneError::IdentityNotAllowed { requested, allowed } = &refused else {
        panic!("refused for another reason: {refused}");
    };
    assert_eq!(requested, "spiffe://cluster.local/ns/default/sa/ratings");
    assert_eq!(allowed, &["spiffe://cluster.local/ns/default/sa/reviews"]);
    assert!(refused.to_string().contains(requested), "{refused}");
}

#[test]
fn a_lifetime_of_zero_or_over_the_maximum_is_refused() {
    let ca = CertificateAuthority::generate().expect("a CA");
    let csr = csr_for(&[reviews().to_string()]);
    for lifetime in [Duration::ZERO, MAX_LEAF_LIFETIME + Duration::from_secs(1)] {
        let refused = ca.sign(&csr, &[reviews()], lifetime).expect_err("refused");
        assert!(
            matches!(&refused, ControlPlaneError::BadCertificateRequest(problem)
                if problem.contains("lifetime")),
            "{refused}"
        );
    }
}

#[test]
fn a_csr_that_is_not_one_spiffe_identity_is_refused() {
    let ca = CertificateAuthority::generate().expect("a CA");
    let ratings = Identity::new("cluster.local", "default", "ratings");
    let allowed = [reviews(), ratings.clone()];
    for (csr, says) in [
        ("not a CSR".to_string(), "PKCS#10"),
        (csr_for(&[]), "exactly one"),
        (
            csr_for(&[reviews().to_string(), ratings.to_string()]),
            "exactly one",
        ),
        (
            csr_for(&["spiffe://cluster.local/reviews".into()]),
            "not a SPIFFE identity",
        ),
    ] {
        let refused = ca.sign(&csr, &allowed, DAY).expect_err("refused");
        assert!(
            matches!(&refused, ControlPlaneError::BadCertificateRequest(problem)
                if problem.contains(says)),
            "{refused}"
        );
    }
}

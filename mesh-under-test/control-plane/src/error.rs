//! The one error enum of the control plane. Messages name the object and field at fault.

#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    /// An object of the snapshot cannot be translated (a field missing or out of range, a
    /// value the profile refuses): the object, the field and what is wrong with it (what to
    /// use instead).
    #[error("{object}: field `{field}` {problem}")]
    Refused {
        object: String,
        field: String,
        problem: String,
    },
    /// The certificate authority refuses a CSR naming an identity this caller may not
    /// request: the identity asked for and those it may.
    #[error(
        "certificate refused: the CSR asks for {requested}, which this caller may not request \
         (it may request: {})",
        allowed.join(", ")
    )]
    IdentityNotAllowed {
        requested: String,
        allowed: Vec<String>,
    },
    /// The certificate authority refuses a request it cannot read or will not honour as asked
    /// (a CSR that does not parse or is not signed by its key, not exactly one SPIFFE identity,
    /// a lifetime out of range): what is wrong with it.
    #[error("certificate refused: {0}")]
    BadCertificateRequest(String),
    /// The certificate authority could not make or sign a certificate (a key or encoding
    /// failure, not the caller's fault).
    #[error("certificate authority failed: {0}")]
    CertificateAuthority(String),
    /// The certificate service could not be served (TLS set-up, the listener): what failed.
    #[error("certificate service failed: {0}")]
    CertificateService(String),
    /// The control plane's gRPC listener (certificates and xDS) could not be served: what
    /// failed.
    #[error("control plane gRPC server failed: {0}")]
    ControlPlaneService(String),
    /// Not every xDS client ACKed a config in time: the version, how many clients were
    /// expected, and each stream's state (a NACK says why the client refused it).
    #[error(
        "xDS: not every one of at least {clients} clients ACKed config {version} within          {within:?}; streams: {streams}"
    )]
    NotAcked {
        version: String,
        clients: usize,
        within: std::time::Duration,
        streams: String,
    },
}

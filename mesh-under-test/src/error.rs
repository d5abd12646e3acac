//! The one error enum of this crate. Messages say what went wrong and what to do next.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// The target cannot do this at all; the scenario is skipped with this reason.
    #[error("{what} is not supported by this mesh under test: {reason}")]
    Unsupported { what: String, reason: String },
    /// The machine lacks something the driver needs (root, network namespaces, iptables).
    #[error("{0}")]
    Environment(String),
    /// A manifest, topology or fixture file is malformed.
    #[error("{file}: {message}")]
    Manifest { file: PathBuf, message: String },
    /// A request from a step cannot be honoured (unknown deployment, pod index out of range, ...).
    #[error("{0}")]
    InvalidRequest(String),
    /// The mesh refused an object, as an API server or the control plane does: which object,
    /// which field, and what is wrong with it.
    #[error("{object}: field `{field}` {problem}")]
    Refused {
        object: String,
        field: String,
        problem: String,
    },
    /// An external command (ip, iptables) failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    /// The ztunnel under test misbehaved: exited, never became ready, wrote unparseable output.
    #[error("ztunnel: {0}")]
    Ztunnel(String),
    /// A wait ran out; `last` is the last state observed.
    #[error("timed out after {waited:?} waiting for {what}; last observed: {last}")]
    Timeout {
        what: String,
        waited: std::time::Duration,
        last: String,
    },
    /// The Kubernetes API server refused or failed a request; the text says which and what to do.
    #[error("{0}")]
    Kube(String),
    /// Traffic would have left harness-owned network namespaces: refused.
    #[error("network safety: {0}")]
    NetworkSafety(String),
}

impl MeshError {
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }
}

/// The control plane's errors name the object and field at fault: a request that cannot be
/// honoured, as before translation had a crate of its own. A refused certificate request is a
/// request that cannot be honoured; a CA or gRPC server that fails is the machine's; ztunnels
/// that do not ACK a config in time are a wait that ran out.
impl From<meshcert_control_plane::ControlPlaneError> for MeshError {
    fn from(e: meshcert_control_plane::ControlPlaneError) -> Self {
        use meshcert_control_plane::ControlPlaneError as E;
        match e {
            E::Refused {
                object,
                field,
                problem,
            } => MeshError::Refused {
                object,
                field,
                problem,
            },
            E::IdentityNotAllowed { .. } | E::BadCertificateRequest(_) => {
                MeshError::InvalidRequest(e.to_string())
            }
            E::CertificateAuthority(_) | E::CertificateService(_) | E::ControlPlaneService(_) => {
                MeshError::Environment(e.to_string())
            }
            E::NotAcked {
                version,
                clients,
                within,
                streams,
            } => MeshError::Timeout {
                what: format!("at least {clients} ztunnels to ACK config {version} over xDS"),
                waited: within,
                last: streams,
            },
        }
    }
}

impl From<meshcert_oracle::logs::LogParseError> for MeshError {
    fn from(e: meshcert_oracle::logs::LogParseError) -> Self {
        MeshError::Ztunnel(format!(
            "unparseable log line ({e}); set LOG_FORMAT to text or json, as upstream writes them"
        ))
    }
}

//! The one error enum of the reference ztunnel. Every message says what was wrong and how to fix it.

use std::io;
use std::net::SocketAddr;

use crate::local_config::LocalConfigError;

#[derive(Debug, thiserror::Error)]
pub enum ZtunnelError {
    /// A required environment variable is unset or empty.
    #[error("environment variable {var} is required: {hint}")]
    MissingEnv { var: &'static str, hint: String },
    /// An environment variable has a value this ztunnel cannot use.
    #[error("environment variable {var}={value:?} is invalid: {hint}")]
    InvalidEnv {
        var: &'static str,
        value: String,
        hint: String,
    },
    /// Settings that are each valid but do not fit together.
    #[error("invalid settings: {0}")]
    Settings(String),
    /// The local config file cannot be read or parsed.
    #[error(transparent)]
    LocalConfig(#[from] LocalConfigError),
    /// The local config file parses but cannot drive this proxy.
    #[error("ztunnel config {path}: {message}")]
    Model { path: String, message: String },
    #[error(
        "cannot listen on {addr} for {purpose}: {source}; \
         stop whatever else holds this port in this network namespace"
    )]
    Bind {
        addr: SocketAddr,
        purpose: &'static str,
        source: io::Error,
    },
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
    /// A control-plane server (the CA, xDS) cannot be connected to.
    #[error("cannot reach {server} at {address}: {message}")]
    Unreachable {
        server: &'static str,
        address: String,
        message: String,
    },
    /// A control-plane server refused a call or answered something unusable.
    #[error("{server} at {address}: {message}")]
    ControlPlane {
        server: &'static str,
        address: String,
        message: String,
    },
    /// HBONE needs the workload certificate, which has not arrived.
    #[error(
        "no workload certificate yet: HBONE needs the one the CA (CA_ADDRESS) issues for \
         this workload; check that the CA is reachable"
    )]
    NoCertificate,
    /// The workload certificate (or its key) cannot make a TLS config.
    #[error("the workload certificate for {identity} cannot be used for TLS: {reason}")]
    Certificate { identity: String, reason: String },
    /// A TLS peer's certificate does not name the identity it must have.
    #[error("the peer certificate names {found:?}, not {expected}")]
    PeerIdentity {
        expected: String,
        found: Vec<String>,
    },
    /// An HBONE connection or CONNECT through the ztunnel at `peer` failed.
    #[error("HBONE to {peer}: {reason}")]
    Hbone { peer: SocketAddr, reason: String },
}

impl ZtunnelError {
    /// An error and its sources, joined by `: `: what a one-line log needs.
    pub fn chain(error: &dyn std::error::Error) -> String {
        let mut text = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            let more = cause.to_string();
            if !text.contains(&more) {
                text = format!("{text}: {more}");
            }
            source = cause.source();
        }
        text
    }

    pub fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }
}

//! Where the model and the certificate come from, chosen once at start from the settings: the
//! model from the file (`reload`) or over xDS (`xds_client`), the certificate from the CA
//! (`ca_client`) or none. Readiness waits for what the chosen sources must deliver first.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::ca_client;
use crate::config::ConfigSource;
use crate::shutdown::Shutdown;
use crate::state::ProxyState;
use crate::tls::{CertificateSource, WorkloadCertificate};
use crate::xds_client;

/// The running sources' outputs.
pub struct Sources {
    /// The workload certificate; stays `None` without a CA (`FAKE_CA`, or no `CA_ADDRESS`).
    pub certificates: CertificateSource,
    needs_certificate: bool,
    configured: watch::Receiver<bool>,
    /// Kept so the channel stays open when no CA task holds it.
    _certificate_sender: Option<watch::Sender<Option<Arc<WorkloadCertificate>>>>,
}

/// Starts the CA and xDS clients the settings ask for, as tasks of `tasks`.
pub fn spawn(state: &Arc<ProxyState>, shutdown: &Shutdown, tasks: &mut JoinSet<()>) -> Sources {
    let settings = &state.config.control_plane;
    let (certificate_sender, certificates) = watch::channel(None);
    let needs_certificate = settings.ca.is_some();
    let kept = match &settings.ca {
        Some(ca) => {
            tasks.spawn(ca_client::run(
                Arc::clone(state),
                ca.clone(),
                certificate_sender,
                shutdown.clone(),
            ));
            None
        }
        None => Some(certificate_sender),
    };
    let (configured_sender, configured) = watch::channel(false);
    match &settings.source {
        ConfigSource::File(_) => {
            configured_sender.send_replace(true);
        }
        ConfigSource::Xds(server) => {
            tasks.spawn(xds_client::run(
                Arc::clone(state),
                server.clone(),
                configured_sender,
                shutdown.clone(),
            ));
        }
    }
    Sources {
        certificates,
        needs_certificate,
        configured,
        _certificate_sender: kept,
    }
}

impl Sources {
    /// Resolves once the certificate (with a CA) and the first config (over xDS) are in; never,
    /// if a source task ended first (it ends only at shutdown).
    pub async fn ready(&mut self) {
        if self.needs_certificate && self.certificates.wait_for(|c| c.is_some()).await.is_err() {
            return std::future::pending().await;
        }
        if self.configured.wait_for(|c| *c).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

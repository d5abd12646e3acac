//! The mesh's control plane as a cluster runs it: istiod in a pod of its own (`istio-system/
//! istiod` on the first node, reachable from every pod), serving the run's certificate
//! authority and the workload config over TLS on 15012. Every pod gets a token file, as a
//! kubelet projects a service-account token; the certificate service grants a token's holder
//! its own pod's identity and nothing else.
//!
//! The pod is none of the scenario's: the control plane's translation never sees it, steps
//! never list it, and it goes with the mesh (its server and namespace are in the ledger).

use std::collections::BTreeMap;
use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use meshcert_control_plane::CertificateAuthority;
use meshcert_control_plane::ca::server::{AllowedIdentities, Caller};
use meshcert_mesh::{MeshError, PodRef};
use meshcert_model::Identity;
use meshcert_ztunnel::local_config::LocalConfig;
use tokio::sync::{oneshot, watch};

use crate::netns::{PodNetns, SocketFactory};
use crate::run::{EntryId, Ledger, Undo, lock};
use crate::ztunnel::{ControlPlaneAccess, OutputLog};

/// istiod's pod name and namespace.
pub const ISTIOD_POD: &str = "istiod";
pub const ISTIOD_NAMESPACE: &str = meshcert_control_plane::ISTIO_SYSTEM;
/// istiod's port for ztunnel: the certificate service and delta ADS over TLS.
pub const CONTROL_PLANE_PORT: u16 = 15012;
/// What the reference logs when its certificate request cannot connect.
const CA_UNREACHABLE: &str = "cannot reach the CA at";

/// Who holds which token: a caller's bearer token names the one identity it may request.
#[derive(Debug, Clone, Default)]
pub struct TokenBook(Arc<Mutex<BTreeMap<String, Identity>>>);

impl TokenBook {
    fn grant(&self, token: String, identity: Identity) {
        lock(&self.0).insert(token, identity);
    }

    fn revoke(&self, token: &str) {
        lock(&self.0).remove(token);
    }
}

impl AllowedIdentities for TokenBook {
    /// The token's pod's identity; nothing for an unknown (or revoked) token, or none.
    fn allowed(&self, caller: &Caller) -> Vec<Identity> {
        let book = lock(&self.0);
        caller
            .token
            .as_deref()
            .and_then(|token| book.get(token))
            .cloned()
            .into_iter()
            .collect()
    }
}

/// The control plane's pod of one mesh, serving.
#[derive(Debug)]
pub struct Istiod {
    pod: PodNetns,
    root_cert: PathBuf,
    tokens_dir: PathBuf,
    tokens: TokenBook,
    /// Every config the driver pushes, served over delta ADS.
    configs: watch::Sender<LocalConfig>,
    /// Why the server stopped, if it failed.
    failure: Arc<Mutex<Option<String>>>,
}

impl Istiod {
    /// Starts serving in `pod` (a namespace just made for it): a fresh CA whose root goes to
    /// `<dir>/root-cert.pem`, a listener on `<pod ip>:15012`, a server task recorded in
    /// `ledger`. Needs the async runtime (the listener and the task live on it).
    pub fn start(
        sockets: &SocketFactory,
        ledger: &Ledger,
        pod: PodNetns,
        dir: &Path,
    ) -> Result<Istiod, MeshError> {
        let ca = Arc::new(CertificateAuthority::generate()?);
        let root_cert = dir.join("root-cert.pem");
        std::fs::write(&root_cert, ca.root_pem()).map_err(MeshError::io(format!(
            "cannot write {}",
            root_cert.display()
        )))?;
        let tokens_dir = dir.join("tokens");
        std::fs::create_dir_all(&tokens_dir).map_err(MeshError::io(format!(
            "cannot create {}",
            tokens_dir.display()
        )))?;
        let address = SocketAddr::from((pod.ip, CONTROL_PLANE_PORT));
        let listener = sockets.listener(&pod.netns, address)?;
        let (configs, receiver) = watch::channel(LocalConfig::default());
        let (tokens, failure) = (TokenBook::default(), Arc::new(Mutex::new(None)));
        let (stop, stopped) = oneshot::channel::<()>();
        let (allowed, failed) = (tokens.clone(), failure.clone());
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            let served = meshcert_control_plane::serve_control_plane(
                listener, ca, allowed, receiver, shutdown,
            );
            if let Err(e) = served.await {
                tracing::error!(%address, error = %e, "the control plane stopped serving");
                *lock(&failed) = Some(e.to_string());
            }
        });
        ledger.record(Box::new(Serving {
            address,
            stop: Mutex::new(Some(stop)),
            task,
        }));
        tracing::debug!(%address, "control plane serving");
        Ok(Istiod {
            pod,
            root_cert,
            tokens_dir,
            tokens,
            configs,
            failure,
        })
    }

    /// Where ztunnels reach it: `<pod ip>:15012`.
    pub fn address(&self) -> SocketAddr {
        SocketAddr::from((self.pod.ip, CONTROL_PLANE_PORT))
    }

    /// `https://<pod ip>:15012`, as `CA_ADDRESS` and `XDS_ADDRESS` say it.
    pub fn url(&self) -> String {
        format!("https://{}", self.address())
    }

    pub fn ip(&self) -> IpAddr {
        IpAddr::V4(self.pod.ip)
    }

    /// Its pod's network namespace.
    pub fn netns(&self) -> &str {
        &self.pod.netns
    }

    /// The run's root certificate (PEM).
    pub fn root_cert(&self) -> &Path {
        &self.root_cert
    }

    /// A pod's token file: `<mesh dir>/tokens/<pod>`.
    pub fn token_file(&self, pod: &PodRef) -> PathBuf {
        self.tokens_dir.join(&pod.name)
    }

    /// What a pod's ztunnel is given to reach the control plane as that pod.
    pub fn access(&self, pod: &PodRef) -> ControlPlaneAccess {
        ControlPlaneAccess {
            address: self.url(),
            root_cert: self.root_cert.clone(),
            token: self.token_file(pod),
        }
    }

    /// Writes a fresh token for `pod` and grants it `identity`, until the ledger entry
    /// returned is released (with the pod).
    pub fn issue_token(
        &self,
        ledger: &Ledger,
        pod: &PodRef,
        identity: Identity,
    ) -> Result<EntryId, MeshError> {
        let token = random_hex(16)?;
        let path = self.token_file(pod);
        std::fs::write(&path, &token)
            .map_err(MeshError::io(format!("cannot write {}", path.display())))?;
        self.tokens.grant(token.clone(), identity);
        Ok(ledger.record(Box::new(Token {
            pod: pod.to_string(),
            token,
            book: self.tokens.clone(),
        })))
    }

    /// Pushes a config to every connected ztunnel.
    pub fn push(&self, config: LocalConfig) {
        // Kept even with no receiver: a ztunnel that connects later gets the latest.
        self.configs.send_replace(config);
    }

    /// The config last pushed (empty before the first push).
    pub fn pushed(&self) -> LocalConfig {
        self.configs.borrow().clone()
    }

    /// A ztunnel start that failed, said so that its first line names the control plane's
    /// address: the ztunnel's own line about an unreachable CA if it wrote one, else ours
    /// (an exit status and last words follow on the next lines).
    pub fn explain_start_failure(
        &self,
        pod: &PodRef,
        error: MeshError,
        output: &OutputLog,
    ) -> MeshError {
        let MeshError::Ztunnel(details) = error else {
            return error;
        };
        let first = start_failure_line(pod, &self.url(), &output.last(50));
        let server = match lock(&self.failure).as_deref() {
            Some(why) => format!(" (the control plane at {} had failed: {why})", self.url()),
            None => String::new(),
        };
        MeshError::Ztunnel(format!("{first}{server}\n{details}"))
    }
}

/// The first line of a failed start's error: the ztunnel's last line about an unreachable
/// CA (it names the address), else one naming `url`.
fn start_failure_line(pod: &PodRef, url: &str, output: &[String]) -> String {
    match output.iter().rev().find(|l| l.contains(CA_UNREACHABLE)) {
        Some(line) => format!("ztunnel for {pod}: {}", line.trim()),
        None => format!(
            "ztunnel for {pod} did not start with the control plane at {url} (its CA and \
             xDS), which it may not have reached"
        ),
    }
}

/// The control plane's server task: undone by asking it to stop, then aborting it.
struct Serving {
    address: SocketAddr,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Undo for Serving {
    fn describe(&self) -> String {
        format!("the control plane serving on {}", self.address)
    }
    fn undo(&self) -> Result<(), MeshError> {
        if let Some(stop) = lock(&self.stop).take() {
            let _ = stop.send(());
        }
        self.task.abort();
        Ok(())
    }
}

/// A pod's token: valid until its pod is stopped.
struct Token {
    pod: String,
    token: String,
    book: TokenBook,
}

impl Undo for Token {
    fn describe(&self) -> String {
        format!("the control-plane token of pod {}", self.pod)
    }
    fn undo(&self) -> Result<(), MeshError> {
        self.book.revoke(&self.token);
        Ok(())
    }
}

/// `bytes` random bytes from the kernel, as lowercase hex.
fn random_hex(bytes: usize) -> Result<String, MeshError> {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(MeshError::io("cannot read /dev/urandom for a token"))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(sa: &str) -> Identity {
        Identity::new("cluster.local", "httpbin", sa)
    }

    fn caller(token: Option<&str>) -> Caller {
        Caller {
            token: token.map(str::to_string),
            peer: None,
        }
    }

    #[test]
    fn a_token_names_its_pods_identity_only_until_revoked() {
        let book = TokenBook::default();
        book.grant("aa".into(), identity("reviews"));
        book.grant("bb".into(), identity("ratings"));
        assert_eq!(book.allowed(&caller(Some("aa"))), [identity("reviews")]);
        assert_eq!(book.allowed(&caller(Some("bb"))), [identity("ratings")]);
        assert!(book.allowed(&caller(Some("cc"))).is_empty());
        assert!(book.allowed(&caller(None)).is_empty());
        book.revoke("aa");
        assert!(book.allowed(&caller(Some("aa"))).is_empty());
    }

    #[test]
    fn a_failed_start_names_the_ca_address_first() {
        let pod = PodRef {
            namespace: "httpbin".into(),
            name: "client-1".into(),
        };
        let url = "https://10.244.1.2:15012";
        let said = [
            "starting".to_string(),
            "2025-01-01T00:00:00Z error cannot reach the CA at https://10.244.1.2:15012: refused"
                .to_string(),
            "exiting".to_string(),
        ];
        assert_eq!(
            start_failure_line(&pod, url, &said),
            "ztunnel for httpbin/client-1: 2025-01-01T00:00:00Z error cannot reach the CA at \
             https://10.244.1.2:15012: refused"
        );
        let silent = start_failure_line(&pod, url, &["exiting".to_string()]);
        assert!(
            silent.starts_with("ztunnel for httpbin/client-1 did not start with the control plane at https://10.244.1.2:15012 "),
            "{silent}"
        );
    }

    #[test]
    fn tokens_are_random_hex() {
        let (a, b) = (random_hex(16).unwrap(), random_hex(16).unwrap());
        assert_eq!(a.len(), 32);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a, b);
    }
}

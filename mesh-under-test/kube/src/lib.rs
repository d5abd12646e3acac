//! meshcert-kube, the kube driver: the same `MeshUnderTest` against a real cluster with Istio
//! ambient, through kube-rs. Objects are server-side applied (field manager `meshcert`) into
//! namespaces the run creates and labels; requests are curl in the client pod by exec; faults are
//! iptables rules from an ephemeral NET_ADMIN container; ztunnel's logs come from the `app=ztunnel`
//! pod on the client's node. The driver writes nothing outside its run's namespaces (nodes only
//! when the user allows it) and deletes them at the end, on Ctrl-C, and through the sweeper.

pub mod curl;
pub mod driver;
pub mod exec;
pub mod faults;
pub mod names;
pub mod preflight;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use meshcert_mesh::MeshError;

pub use driver::{KubeMesh, KubeOptions, cluster_capabilities};
pub use exec::{ExecOutput, KubeExec, PodExec};
pub use preflight::{ClusterReport, preflight};

/// An API error in one line, with what to do for the usual ones.
pub fn api_error(what: &str, e: kube::Error) -> MeshError {
    match e {
        // An invalid object names its field the API server's way: `<Kind> "<name>" is
        // invalid: <field>: <problem>`.
        kube::Error::Api(status) if status.code == 422 => match refused_field(&status.message) {
            Some((field, problem)) => MeshError::Refused {
                object: what.to_string(),
                field,
                problem,
            },
            None => api_status_error(what, status.code, &status.reason, &status.message),
        },
        kube::Error::Api(status) => {
            api_status_error(what, status.code, &status.reason, &status.message)
        }
        other => MeshError::Kube(format!(
            "{what}: cannot reach the API server: {}",
            one_line(&other.to_string())
        )),
    }
}

/// The field and problem of an API server's "is invalid" message, for the first cause.
fn refused_field(message: &str) -> Option<(String, String)> {
    let (_, causes) = message.split_once(" is invalid: ")?;
    let (field, problem) = causes.split_once(": ")?;
    let field = field.trim_start_matches('[').trim();
    (!field.is_empty() && !field.contains(' ')).then(|| {
        (
            field.to_string(),
            problem.trim_end_matches(']').trim().to_string(),
        )
    })
}

fn api_status_error(what: &str, code: u16, reason: &str, message: &str) -> MeshError {
    let hint = match code {
        401 => "; the kubeconfig's credentials were refused (expired token?)",
        403 => "; the kube user lacks RBAC for this: apply ci/rbac.yaml (see ci/README.md)",
        404 => "; it does not exist",
        409 => "; another writer changed it or owns the field (conflict)",
        422 => "; the object is invalid",
        _ => "",
    };
    MeshError::Kube(format!(
        "{what}: the API server answered {code} {reason}: {}{hint}",
        message.trim()
    ))
}

/// The HTTP status of an API error, if the server answered.
pub fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Which kubeconfig a run uses: the flag, else `KUBECONFIG` (first file), else
/// `~/.kube/config`. `None` when there is none: kube scenarios are then skipped.
pub fn kubeconfig_path(flag: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = flag {
        return Some(path.to_path_buf());
    }
    if let Some(first) = std::env::var_os("KUBECONFIG")
        .as_ref()
        .and_then(|v| std::env::split_paths(v).next())
        .filter(|p| !p.as_os_str().is_empty())
    {
        return Some(first);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from)?;
    let default = home.join(".kube/config");
    default.is_file().then_some(default)
}

/// A client from a kubeconfig file, and the API server's URL; errors name the file (and
/// context) and say what is wrong.
pub async fn client(
    kubeconfig: &Path,
    context: Option<&str>,
) -> Result<(Client, String), MeshError> {
    let file = kubeconfig.display();
    if !kubeconfig.is_file() {
        return Err(MeshError::Environment(format!(
            "kubeconfig {file} does not exist (set KUBECONFIG or --kubeconfig)"
        )));
    }
    let parsed = Kubeconfig::read_from(kubeconfig).map_err(|e| {
        MeshError::Environment(format!("kubeconfig {file}: {}", one_line(&e.to_string())))
    })?;
    let options = KubeConfigOptions {
        context: context.map(str::to_string),
        ..Default::default()
    };
    let config = Config::from_custom_kubeconfig(parsed, &options)
        .await
        .map_err(|e| {
            MeshError::Environment(format!(
                "kubeconfig {file}{}: {}",
                context
                    .map(|c| format!(", context {c:?}"))
                    .unwrap_or_default(),
                one_line(&e.to_string())
            ))
        })?;
    let url = config.cluster_url.to_string();
    let client = Client::try_from(config).map_err(|e| {
        MeshError::Environment(format!(
            "kubeconfig {file}: cannot make a client: {}",
            one_line(&e.to_string())
        ))
    })?;
    Ok((client, url))
}

/// Namespaces of live meshes, for Ctrl-C: deleted by `cleanup_all`.
static LIVE: Mutex<Vec<(Client, String)>> = Mutex::new(Vec::new());

pub(crate) fn register(client: &Client, namespace: &str) {
    let mut live = LIVE.lock().unwrap_or_else(|p| p.into_inner());
    if !live.iter().any(|(_, n)| n == namespace) {
        live.push((client.clone(), namespace.to_string()));
    }
}

pub(crate) fn deregister(namespace: &str) {
    LIVE.lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|(_, n)| n != namespace);
}

/// Asks the API server to delete every namespace of every live kube mesh (Ctrl-C). Returns the
/// namespaces it could not delete, with why.
pub async fn cleanup_all() -> Vec<String> {
    let live = std::mem::take(&mut *LIVE.lock().unwrap_or_else(|p| p.into_inner()));
    let mut failed = Vec::new();
    for (client, namespace) in live {
        let api: Api<Namespace> = Api::all(client);
        let params = DeleteParams::foreground();
        let request = api.delete(&namespace, &params);
        match tokio::time::timeout(Duration::from_secs(10), request).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if status_code(&e) == Some(404) => {}
            Ok(Err(e)) => {
                failed.push(api_error(&format!("delete namespace {namespace}"), e).to_string())
            }
            Err(_) => failed.push(format!(
                "delete namespace {namespace}: no answer within 10s"
            )),
        }
    }
    failed
}

/// What `sweep` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KubeSweep {
    pub deleted: Vec<String>,
    /// Namespaces of runs that may still be alive (not expired), left alone.
    pub kept: Vec<String>,
}

/// Deletes the namespaces of runs that were killed: every namespace labelled with the run
/// label whose expiry passed (`all`: every one, whoever's). Touches nothing else.
pub async fn sweep(client: &Client, all: bool) -> Result<KubeSweep, MeshError> {
    let api: Api<Namespace> = Api::all(client.clone());
    let list = api
        .list(&ListParams::default().labels(names::RUN_LABEL))
        .await
        .map_err(|e| api_error("list meshcert namespaces", e))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut report = KubeSweep::default();
    for ns in list.items {
        let Some(name) = ns.metadata.name.clone() else {
            continue;
        };
        if ns.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let expires = ns
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(names::EXPIRES_ANNOTATION))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        if !all && expires > now {
            report.kept.push(name);
            continue;
        }
        match api.delete(&name, &DeleteParams::foreground()).await {
            Ok(_) => report.deleted.push(name),
            Err(e) if status_code(&e) == Some(404) => {}
            Err(e) => return Err(api_error(&format!("delete namespace {name}"), e)),
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_object_names_its_field() {
        let message = "Service \"in-ambient\" is invalid: spec.trafficDistribution: Unsupported \
                       value: \"PreferNetwork\": supported values: \"PreferClose\"";
        assert_eq!(
            refused_field(message),
            Some((
                "spec.trafficDistribution".to_string(),
                "Unsupported value: \"PreferNetwork\": supported values: \"PreferClose\""
                    .to_string()
            ))
        );
        let several = "Service \"x\" is invalid: [spec.ports[0].port: Invalid value: 0: must be \
                       between 1 and 65535, spec.type: Unsupported value]";
        assert_eq!(
            refused_field(several).map(|(f, _)| f),
            Some("spec.ports[0].port".to_string())
        );
        assert_eq!(refused_field("the server rejected our request"), None);
    }
}

//! Running a command in a pod: the I/O boundary of the kube driver. The real one goes through
//! the API server (`pods/exec` over a WebSocket); tests inject a recording fake, since a mock
//! API server cannot hand back an upgraded connection.

use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, AttachParams};
use meshcert_mesh::MeshError;
use tokio::io::AsyncReadExt;

use crate::api_error;

/// What a command printed and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecOutput {
    pub stdout: String,
    pub stderr: String,
    /// The status the API server reported: `Success`, or why not (`command terminated with
    /// non-zero exit code: ...`).
    pub status: String,
    pub success: bool,
}

/// One command in one container of one pod; bounded by `deadline`.
#[async_trait]
pub trait PodExec: Send + Sync {
    async fn exec(
        &self,
        namespace: &str,
        pod: &str,
        container: Option<&str>,
        command: &[String],
        deadline: Duration,
    ) -> Result<ExecOutput, MeshError>;
}

/// `pods/exec` through the API server.
#[derive(Clone)]
pub struct KubeExec {
    pub client: Client,
}

#[async_trait]
impl PodExec for KubeExec {
    async fn exec(
        &self,
        namespace: &str,
        pod: &str,
        container: Option<&str>,
        command: &[String],
        deadline: Duration,
    ) -> Result<ExecOutput, MeshError> {
        let what = format!(
            "exec `{}` in pod {namespace}/{pod}",
            command.first().map(String::as_str).unwrap_or("")
        );
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let mut params = AttachParams::default()
            .stdin(false)
            .stdout(true)
            .stderr(true);
        if let Some(c) = container {
            params = params.container(c);
        }
        let run = async {
            let attached = api
                .exec(pod, command.to_vec(), &params)
                .await
                .map_err(|e| api_error(&what, e))?;
            collect(attached, &what).await
        };
        tokio::time::timeout(deadline, run)
            .await
            .map_err(|_| MeshError::Timeout {
                what,
                waited: deadline,
                last: "no exit status".into(),
            })?
    }
}

/// An attached exec's output and exit status, read to the end.
async fn collect(
    mut attached: kube::api::AttachedProcess,
    what: &str,
) -> Result<ExecOutput, MeshError> {
    let mut stdout = attached
        .stdout()
        .ok_or_else(|| MeshError::Kube(format!("{what}: the API server gave no stdout")))?;
    let mut stderr = attached
        .stderr()
        .ok_or_else(|| MeshError::Kube(format!("{what}: the API server gave no stderr")))?;
    let status = attached.take_status();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let (a, b) = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
    a.and(b)
        .map_err(MeshError::io(format!("{what}: reading its output")))?;
    let status = match status {
        Some(status) => status.await,
        None => None,
    };
    let _ = attached.join().await;
    let (success, status) = match status {
        // The exec Status is the meta/v1 one: `status` is "Success" or "Failure".
        Some(s) => (
            s.status.as_deref() == Some("Success"),
            s.message
                .filter(|m| !m.is_empty())
                .or(s.status)
                .unwrap_or_default(),
        ),
        None => (false, "no status from the API server".to_string()),
    };
    Ok(ExecOutput {
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
        status,
        success,
    })
}

//! The backend app of a local pod: a tiny in-process HTTP/1 server (httpbin's `/hostname` and
//! `/status/<code>`) listening inside the pod's namespace on each container port, with a fault
//! switch that makes it answer a chosen status or fail its readiness path, and a kill that
//! closes its ports as a dead process's are (restarted when the fault is undone).

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use meshcert_mesh::MeshError;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use crate::netns::SocketFactory;
use crate::run::{Undo, lock};

/// Makes every response of one app carry a chosen status (an app fault), or its readiness
/// paths fail, or lets it answer normally. Shared between the app's connections and the driver.
#[derive(Debug, Default)]
pub struct AppSwitch {
    /// 0 means "answer normally".
    forced: AtomicU16,
    /// Paths answered with [`NOT_READY_STATUS`] (the readiness probe's), whatever else holds.
    failing: Mutex<BTreeSet<String>>,
    /// Paths a forced status spares (the readiness probe's): an app whose answers fail while
    /// its readiness endpoint passes stays Ready, so only the data plane can shun it.
    spared: Mutex<BTreeSet<String>>,
}

/// What a path made to fail answers: the status of an app reporting itself unavailable.
pub const NOT_READY_STATUS: u16 = 503;

impl AppSwitch {
    pub fn force(&self, status: Option<u16>) {
        self.forced.store(status.unwrap_or(0), Ordering::SeqCst);
    }

    pub fn forced(&self) -> Option<u16> {
        match self.forced.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s),
        }
    }

    /// Makes `path` (query ignored) answer 503, or answer normally again.
    pub fn fail_path(&self, path: &str, failing: bool) {
        let path = path.split('?').next().unwrap_or(path).to_string();
        let mut paths = lock(&self.failing);
        if failing {
            paths.insert(path);
        } else {
            paths.remove(&path);
        }
    }

    pub fn fails(&self, path: &str) -> bool {
        let path = path.split('?').next().unwrap_or(path);
        lock(&self.failing).contains(path)
    }

    /// Makes a forced status leave `path` (query ignored) alone.
    pub fn spare(&self, path: &str) {
        let path = path.split('?').next().unwrap_or(path).to_string();
        lock(&self.spared).insert(path);
    }

    /// The status forced on `path`, unless the path is spared.
    pub fn forced_for(&self, path: &str) -> Option<u16> {
        let bare = path.split('?').next().unwrap_or(path);
        if lock(&self.spared).contains(bare) {
            return None;
        }
        self.forced()
    }
}

/// What the app answers for a path: status and body. The body always names the pod, so a
/// client can tell which replica answered even a failing request.
pub fn respond(pod: &str, path: &str, forced: Option<u16>) -> (u16, String) {
    if let Some(status) = forced {
        return (status, pod.to_string());
    }
    let path = path.split('?').next().unwrap_or(path);
    if path == "/" || path == "/hostname" {
        return (200, pod.to_string());
    }
    if let Some(code) = path.strip_prefix("/status/") {
        return match code.parse::<u16>() {
            Ok(code @ 200..=599) => (code, pod.to_string()),
            _ => (400, format!("{pod}: invalid status code {code:?}")),
        };
    }
    (404, format!("{pod}: no route for {path}"))
}

fn response(pod: &str, path: &str, switch: &AppSwitch) -> Response<Full<Bytes>> {
    let (status, body) = if switch.fails(path) {
        (NOT_READY_STATUS, pod.to_string())
    } else {
        respond(pod, path, switch.forced_for(path))
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Full::new(Bytes::from(body)))
        .expect("status and a constant header always make a valid response")
}

/// One running app: an accept loop per port, each owning its listener and connections.
#[derive(Debug)]
pub struct BackendApp {
    pod: String,
    netns: String,
    ip: Ipv4Addr,
    ports: Vec<u16>,
    switch: Arc<AppSwitch>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl BackendApp {
    /// Listens on every port inside the pod's namespace and serves until stopped. Returns once
    /// every listener is bound, so the pod can be marked Ready.
    pub async fn start(
        sockets: &SocketFactory,
        netns: &str,
        ip: Ipv4Addr,
        ports: &[u16],
        pod: &str,
    ) -> Result<BackendApp, MeshError> {
        let app = BackendApp {
            pod: pod.to_string(),
            netns: netns.to_string(),
            ip,
            ports: ports.to_vec(),
            switch: Arc::new(AppSwitch::default()),
            tasks: Mutex::new(Vec::new()),
        };
        app.listen(sockets)?;
        Ok(app)
    }

    fn listen(&self, sockets: &SocketFactory) -> Result<(), MeshError> {
        for &port in &self.ports {
            // Bound to every address of the pod, as a container's server usually is, so that
            // probes from the pod's own loopback work too.
            let bind = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
            let listener = match sockets.listener(&self.netns, bind) {
                Ok(l) => l,
                Err(e) => {
                    // Listeners already started must not outlive the failed start.
                    self.stop();
                    return Err(e);
                }
            };
            let task = tokio::spawn(serve(listener, self.pod.clone(), self.switch.clone()));
            lock(&self.tasks).push(task);
        }
        Ok(())
    }

    /// Kills the app as its process dying would: returns once every port is closed (a
    /// connect is refused) and every open connection dropped.
    pub async fn kill(&self) {
        let tasks = std::mem::take(&mut *lock(&self.tasks));
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            // Cancelled, or ended: either way its listener is closed now.
            let _ = task.await;
        }
    }

    /// Starts a killed app again, listening on the same ports, with the same switch.
    pub fn restart(&self, sockets: &SocketFactory) -> Result<(), MeshError> {
        if !lock(&self.tasks).is_empty() {
            return Err(MeshError::InvalidRequest(format!(
                "the app of pod {} is running: kill it before restarting it",
                self.pod
            )));
        }
        self.listen(sockets)
    }

    /// Whether the app listens (it was not killed, or was restarted).
    pub fn running(&self) -> bool {
        !lock(&self.tasks).is_empty()
    }

    pub fn pod(&self) -> &str {
        &self.pod
    }

    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    pub fn switch(&self) -> Arc<AppSwitch> {
        self.switch.clone()
    }

    /// Stops accepting and drops every open connection (without waiting: an undo is sync).
    pub fn stop(&self) {
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }
}

impl Undo for BackendApp {
    fn describe(&self) -> String {
        format!(
            "backend app of {} on {}:{:?}",
            self.pod, self.ip, self.ports
        )
    }
    fn undo(&self) -> Result<(), MeshError> {
        self.stop();
        Ok(())
    }
}

async fn serve(listener: TcpListener, pod: String, switch: Arc<AppSwitch>) {
    // Dropping this set (when the task is aborted) aborts every connection with it.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let pod = pod.clone();
                let switch = switch.clone();
                connections.spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let r = response(&pod, req.uri().path(), &switch);
                        async move { Ok::<_, Infallible>(r) }
                    });
                    // A client that goes away mid-request is the client's business.
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("/hostname", None, 200, "in-ambient-b-c")]
    #[case("/", None, 200, "in-ambient-b-c")]
    #[case("/hostname?x=1", None, 200, "in-ambient-b-c")]
    #[case("/status/503", None, 503, "in-ambient-b-c")]
    #[case("/status/200", None, 200, "in-ambient-b-c")]
    #[case(
        "/status/abc",
        None,
        400,
        "in-ambient-b-c: invalid status code \"abc\""
    )]
    #[case("/status/99", None, 400, "in-ambient-b-c: invalid status code \"99\"")]
    #[case("/nope", None, 404, "in-ambient-b-c: no route for /nope")]
    #[case("/hostname", Some(500), 500, "in-ambient-b-c")]
    #[case("/nope", Some(503), 503, "in-ambient-b-c")]
    fn answers(
        #[case] path: &str,
        #[case] forced: Option<u16>,
        #[case] status: u16,
        #[case] body: &str,
    ) {
        assert_eq!(
            respond("in-ambient-b-c", path, forced),
            (status, body.to_string())
        );
    }

    #[test]
    fn switch_forces_and_releases() {
        let switch = AppSwitch::default();
        assert_eq!(switch.forced(), None);
        switch.force(Some(503));
        assert_eq!(switch.forced(), Some(503));
        switch.force(None);
        assert_eq!(switch.forced(), None);
    }

    #[test]
    fn a_failing_path_answers_503_and_others_answer_normally() {
        let switch = AppSwitch::default();
        switch.fail_path("/status/200", true);
        assert!(switch.fails("/status/200"));
        assert!(switch.fails("/status/200?probe=1"));
        assert!(!switch.fails("/hostname"));
        let status = |path: &str| response("p", path, &switch).status().as_u16();
        assert_eq!((status("/status/200"), status("/hostname")), (503, 200));
        switch.fail_path("/status/200", false);
        assert_eq!(status("/status/200"), 200);
    }

    #[test]
    fn a_forced_status_spares_the_readiness_path() {
        let switch = AppSwitch::default();
        switch.spare("/status/200");
        switch.force(Some(500));
        let status = |path: &str| response("p", path, &switch).status().as_u16();
        assert_eq!((status("/status/200"), status("/hostname")), (200, 500));
        // Failing the readiness path wins over sparing it.
        switch.fail_path("/status/200", true);
        assert_eq!(status("/status/200"), 503);
    }
}

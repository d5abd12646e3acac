//! Readiness as the kubelet runs it: each container's `readinessProbe` (httpGet or tcpSocket)
//! is run from the pod's node namespace (the node's own address, never the machine's
//! namespace) with the manifest's timing, Kubernetes' defaults where it says nothing.
//!
//! Three parts: [`ProbeSpec`] reads a probe from the manifest; [`ProbeWorker`] is the
//! kubelet's prober worker as a pure state machine (when the next probe is due, and what a
//! result does to the container's readiness); [`Prober`] runs one worker as a task and
//! reports into the mesh's [`Board`], which the driver reads to write Pod conditions and have
//! the control plane push the change.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use meshcert_mesh::{MeshError, PodRef};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::client;
use crate::netns::SocketFactory;
use crate::run::{Undo, lock};

/// Kubernetes' defaults for a probe that does not say (`periodSeconds`, `timeoutSeconds`,
/// `failureThreshold`, `successThreshold`, `initialDelaySeconds`).
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(10);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
pub const DEFAULT_FAILURE_THRESHOLD: u32 = 3;
pub const DEFAULT_SUCCESS_THRESHOLD: u32 = 1;

/// A prober stops by itself after this long even if nothing stopped it: a safety bound on a
/// loop that the mesh's ledger normally ends within minutes.
const MAX_PROBER_LIFETIME: Duration = Duration::from_secs(4 * 3600);

/// What the kubelet does to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeAction {
    /// `GET http://<pod IP>:<port><path>`; 200 to 399 is a success.
    HttpGet { port: u16, path: String },
    /// A TCP connect to `<pod IP>:<port>`.
    TcpSocket { port: u16 },
}

/// One container's readiness probe, with every default filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    pub container: String,
    pub action: ProbeAction,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl ProbeSpec {
    /// The readiness probe of `container` (the `index`-th of `owner`, e.g. "Deployment
    /// httpbin/in-ambient"), if it has one. Values the API server would refuse are errors
    /// naming the field; probe kinds the local fabric cannot run are `Unsupported`.
    pub fn of_container(
        owner: &str,
        index: usize,
        container: &Container,
    ) -> Result<Option<ProbeSpec>, MeshError> {
        let Some(probe) = container.readiness_probe.as_ref() else {
            return Ok(None);
        };
        let field =
            |name: &str| format!("spec.template.spec.containers[{index}].readinessProbe.{name}");
        let action = action(owner, index, container, probe, &field)?;
        let seconds = |name: &str, value: Option<i32>, default: u32, min: i32| match value {
            None => Ok(default),
            Some(v) if v >= min => Ok(v as u32),
            Some(v) => Err(MeshError::InvalidRequest(format!(
                "{owner}: field `{}` is {v}: the API server requires at least {min}",
                field(name)
            ))),
        };
        Ok(Some(ProbeSpec {
            container: container.name.clone(),
            action,
            initial_delay: Duration::from_secs(
                seconds("initialDelaySeconds", probe.initial_delay_seconds, 0, 0)?.into(),
            ),
            period: Duration::from_secs(
                seconds(
                    "periodSeconds",
                    probe.period_seconds,
                    DEFAULT_PERIOD.as_secs() as u32,
                    1,
                )?
                .into(),
            ),
            timeout: Duration::from_secs(
                seconds(
                    "timeoutSeconds",
                    probe.timeout_seconds,
                    DEFAULT_TIMEOUT.as_secs() as u32,
                    1,
                )?
                .into(),
            ),
            success_threshold: seconds(
                "successThreshold",
                probe.success_threshold,
                DEFAULT_SUCCESS_THRESHOLD,
                1,
            )?,
            failure_threshold: seconds(
                "failureThreshold",
                probe.failure_threshold,
                DEFAULT_FAILURE_THRESHOLD,
                1,
            )?,
        }))
    }

    /// Every readiness probe of a pod template's containers.
    pub fn of_containers(owner: &str, containers: &[Container]) -> Result<Vec<Self>, MeshError> {
        let mut specs = Vec::new();
        for (index, container) in containers.iter().enumerate() {
            specs.extend(Self::of_container(owner, index, container)?);
        }
        Ok(specs)
    }

    /// The longest a new container can take to turn Ready when every probe passes.
    pub fn time_to_ready(&self) -> Duration {
        let ticks = div_ceil(self.initial_delay, self.period);
        self.period * ticks
            + self.period.max(self.timeout) * self.success_threshold.saturating_sub(1)
            + self.timeout
    }

    /// e.g. `GET :8080/status/200 every 1s (timeout 1s, ready after 1, not ready after 3)`.
    pub fn describe(&self) -> String {
        let what = match &self.action {
            ProbeAction::HttpGet { port, path } => format!("GET :{port}{path}"),
            ProbeAction::TcpSocket { port } => format!("TCP :{port}"),
        };
        format!(
            "{what} every {:?} (timeout {:?}, ready after {} success(es), not ready after {} \
             failure(s))",
            self.period, self.timeout, self.success_threshold, self.failure_threshold
        )
    }
}

fn action(
    owner: &str,
    index: usize,
    container: &Container,
    probe: &Probe,
    field: &dyn Fn(&str) -> String,
) -> Result<ProbeAction, MeshError> {
    let unsupported = |kind: &str, why: &str| MeshError::Unsupported {
        what: format!("{owner}: `{}`", field(kind)),
        reason: format!("the local fabric runs httpGet and tcpSocket readiness probes only: {why}"),
    };
    if probe.exec.is_some() {
        return Err(unsupported(
            "exec",
            "a local pod has no container to run a command in",
        ));
    }
    if probe.grpc.is_some() {
        return Err(unsupported("grpc", "the local app speaks HTTP/1 only"));
    }
    let port =
        |name: &str, port: &IntOrString| probe_port(owner, index, container, field(name), port);
    if let Some(get) = &probe.http_get {
        if get.host.as_deref().is_some_and(|h| !h.is_empty()) {
            return Err(unsupported(
                "httpGet.host",
                "the kubelet would probe that host, and the local fabric probes pods only",
            ));
        }
        if get
            .scheme
            .as_deref()
            .is_some_and(|s| !s.eq_ignore_ascii_case("HTTP"))
        {
            return Err(unsupported(
                "httpGet.scheme",
                "the local app serves plain HTTP only",
            ));
        }
        let path = get.path.clone().filter(|p| !p.is_empty());
        let path = match path {
            Some(p) if p.starts_with('/') => p,
            Some(p) => format!("/{p}"),
            None => "/".into(),
        };
        return Ok(ProbeAction::HttpGet {
            port: port("httpGet.port", &get.port)?,
            path,
        });
    }
    if let Some(tcp) = &probe.tcp_socket {
        if tcp.host.as_deref().is_some_and(|h| !h.is_empty()) {
            return Err(unsupported(
                "tcpSocket.host",
                "the kubelet would probe that host, and the local fabric probes pods only",
            ));
        }
        return Ok(ProbeAction::TcpSocket {
            port: port("tcpSocket.port", &tcp.port)?,
        });
    }
    Err(MeshError::InvalidRequest(format!(
        "{owner}: field `{}` has no handler: give it httpGet or tcpSocket",
        field("")
    )))
}

/// The port a probe's `port` field names: a number, or a port the container declares by name.
fn probe_port(
    owner: &str,
    index: usize,
    container: &Container,
    field: String,
    port: &IntOrString,
) -> Result<u16, MeshError> {
    let number = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(named) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(named.as_str()))
            .map(|p| p.container_port)
            .ok_or_else(|| {
                MeshError::InvalidRequest(format!(
                    "{owner}: field `{field}` names port {named:?}, which container {:?} \
                     (containers[{index}]) does not declare in `ports`",
                    container.name
                ))
            })?,
    };
    u16::try_from(number)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| {
            MeshError::InvalidRequest(format!(
                "{owner}: field `{field}` is {number}: not a TCP port number"
            ))
        })
}

fn div_ceil(a: Duration, b: Duration) -> u32 {
    let (a, b) = (a.as_nanos(), b.as_nanos().max(1));
    u32::try_from(a.div_ceil(b)).unwrap_or(u32::MAX)
}

/// The kubelet's prober worker for one container, without I/O or a clock of its own: times are
/// offsets on the mesh's clock, results are given.
///
/// Timing: the worker's ticker starts with the container (`started`) and ticks every
/// `period`; the first probe is at the first tick at least `initialDelaySeconds` in. A probe
/// that outlasts a tick finds that tick buffered and the next probe starts as it ends (Go's
/// ticker keeps one tick and drops the rest); otherwise the next probe waits for the next
/// tick. Results: a new container is not ready; a result changes readiness only once it has
/// come `successThreshold` (or `failureThreshold`) times in a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeWorker {
    origin: Duration,
    period: Duration,
    success_threshold: u32,
    failure_threshold: u32,
    due: Duration,
    ready: bool,
    last: Option<bool>,
    run: u32,
}

impl ProbeWorker {
    pub fn new(spec: &ProbeSpec, started: Duration) -> Self {
        let period = spec.period.max(Duration::from_millis(1));
        ProbeWorker {
            origin: started,
            period,
            success_threshold: spec.success_threshold.max(1),
            failure_threshold: spec.failure_threshold.max(1),
            due: started + period * div_ceil(spec.initial_delay, period),
            ready: false,
            last: None,
            run: 0,
        }
    }

    /// When the next probe starts.
    pub fn due(&self) -> Duration {
        self.due
    }

    pub fn ready(&self) -> bool {
        self.ready
    }

    /// Takes the result of a probe that ran from `began` to `ended`; the container's new
    /// readiness when it changed.
    pub fn observe(&mut self, success: bool, began: Duration, ended: Duration) -> Option<bool> {
        self.due = self.next_after(began, ended.max(began));
        if self.last == Some(success) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = Some(success);
            self.run = 1;
        }
        let threshold = if success {
            self.success_threshold
        } else {
            self.failure_threshold
        };
        if self.run < threshold || self.ready == success {
            return None;
        }
        self.ready = success;
        Some(success)
    }

    fn next_after(&self, began: Duration, ended: Duration) -> Duration {
        let since = began.saturating_sub(self.origin);
        let ticks = (since.as_nanos() / self.period.as_nanos()) + 1;
        let tick = self.origin + self.period * u32::try_from(ticks).unwrap_or(u32::MAX);
        if tick <= ended { ended } else { tick }
    }
}

/// How one probe went: whether it passed, and what the kubelet would say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    pub success: bool,
    pub detail: String,
}

/// Runs one probe from `node_netns` (the pod's node) to the pod, within the probe's timeout.
pub async fn probe_once(
    sockets: &SocketFactory,
    node_netns: &str,
    pod_ip: Ipv4Addr,
    spec: &ProbeSpec,
) -> ProbeResult {
    let failed = |detail: String| ProbeResult {
        success: false,
        detail,
    };
    let port = match &spec.action {
        ProbeAction::HttpGet { port, .. } | ProbeAction::TcpSocket { port } => *port,
    };
    let dst = SocketAddr::from((pod_ip, port));
    // Made off the runtime's threads: entering the node's namespace takes a thread of its
    // own, and every pod is probed every period while the apps answer on the same runtime.
    let (factory, netns) = (sockets.clone(), node_netns.to_string());
    let socket =
        match tokio::task::spawn_blocking(move || factory.connector(Some(&netns), dst)).await {
            Ok(Ok(socket)) => socket,
            Ok(Err(e)) => return failed(format!("{dst}: {e}")),
            Err(e) => return failed(format!("{dst}: cannot make the probe's socket: {e}")),
        };
    match &spec.action {
        ProbeAction::HttpGet { path, .. } => {
            let host = dst.to_string();
            match client::get_on(socket, dst, &host, path, spec.timeout)
                .await
                .1
            {
                Ok(r) if (200..400).contains(&r.status) => ProbeResult {
                    success: true,
                    detail: format!("GET http://{dst}{path}: HTTP {}", r.status),
                },
                Ok(r) => failed(format!(
                    "GET http://{dst}{path}: HTTP probe failed with statuscode: {}",
                    r.status
                )),
                Err(failure) => failed(format!("GET http://{dst}{path}: {failure}")),
            }
        }
        ProbeAction::TcpSocket { .. } => {
            match tokio::time::timeout(spec.timeout, socket.connect(dst)).await {
                Ok(Ok(_)) => ProbeResult {
                    success: true,
                    detail: format!("dial tcp {dst}: connected"),
                },
                Ok(Err(e)) => failed(format!("dial tcp {dst}: {}", client::classify(&e))),
                Err(_) => failed(format!("dial tcp {dst}: i/o timeout")),
            }
        }
    }
}

/// What the kubelet last reported for one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerReadiness {
    /// The worker reporting; reports of an older worker (stopped, or its container killed)
    /// are ignored.
    pub worker: u64,
    pub ready: bool,
    /// When `ready` last changed (or the worker started), on the mesh's clock.
    pub since: Duration,
    /// The last probe's result, for messages.
    pub last: String,
}

/// The kubelet's view of every probed container of one mesh: probers write it, the driver
/// reads it. `changed` wakes the driver when a container's readiness changed.
#[derive(Debug, Default)]
pub struct Board {
    containers: Mutex<BTreeMap<(PodRef, String), ContainerReadiness>>,
    next_worker: Mutex<u64>,
    changed: Notify,
}

impl Board {
    /// A new worker for a container that just started: not ready until its probe passes.
    pub fn start_worker(&self, pod: &PodRef, container: &str, at: Duration) -> u64 {
        let worker = {
            let mut next = lock(&self.next_worker);
            *next += 1;
            *next
        };
        let previous = lock(&self.containers).insert(
            (pod.clone(), container.to_string()),
            ContainerReadiness {
                worker,
                ready: false,
                since: at,
                last: "not probed yet".into(),
            },
        );
        if previous.is_some_and(|p| p.ready) {
            self.changed.notify_one();
        }
        worker
    }

    /// A worker's result; ignored when the worker was replaced or stopped.
    pub fn report(
        &self,
        pod: &PodRef,
        container: &str,
        worker: u64,
        ready: bool,
        at: Duration,
        last: String,
    ) {
        let mut containers = lock(&self.containers);
        let Some(entry) = containers.get_mut(&(pod.clone(), container.to_string())) else {
            return;
        };
        if entry.worker != worker {
            return;
        }
        entry.last = last;
        if entry.ready != ready {
            entry.ready = ready;
            entry.since = at;
            drop(containers);
            self.changed.notify_one();
        }
    }

    /// Every container of `pod` is not ready (its process exited); workers' later reports
    /// are ignored until new workers start.
    pub fn containers_exited(&self, pod: &PodRef, at: Duration) {
        let mut containers = lock(&self.containers);
        for ((p, _), entry) in containers.iter_mut() {
            if p == pod {
                entry.worker = 0;
                entry.ready = false;
                entry.since = at;
                entry.last = "the container's process exited".into();
            }
        }
    }

    /// Forgets a pod (deleted, or delisted before its end).
    pub fn forget(&self, pod: &PodRef) {
        lock(&self.containers).retain(|(p, _), _| p != pod);
    }

    /// Whether every probed container of `pod` is ready; `None` when none is probed.
    pub fn ready(&self, pod: &PodRef) -> Option<bool> {
        let containers = lock(&self.containers);
        let mut of_pod = containers.iter().filter(|((p, _), _)| p == pod).peekable();
        of_pod.peek()?;
        Some(of_pod.all(|(_, c)| c.ready))
    }

    /// When the readiness of a container of `pod` last changed.
    pub fn since(&self, pod: &PodRef) -> Option<Duration> {
        lock(&self.containers)
            .iter()
            .filter(|((p, _), _)| p == pod)
            .map(|(_, c)| c.since)
            .max()
    }

    /// The last result of each probed container of `pod`, for messages.
    pub fn describe(&self, pod: &PodRef) -> String {
        let containers = lock(&self.containers);
        let parts: Vec<String> = containers
            .iter()
            .filter(|((p, _), _)| p == pod)
            .map(|((_, c), r)| {
                format!(
                    "container {c}: {} ({})",
                    if r.ready { "ready" } else { "not ready" },
                    r.last
                )
            })
            .collect();
        if parts.is_empty() {
            "no probed container".into()
        } else {
            parts.join("; ")
        }
    }

    /// Resolves when some container's readiness changed since the last call (at once when
    /// one changed meanwhile).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }
}

/// Where a prober probes: the node's namespace and the pod's address.
#[derive(Debug, Clone)]
pub struct ProbeTarget {
    pub sockets: SocketFactory,
    pub pod: PodRef,
    pub node_netns: String,
    pub pod_ip: Ipv4Addr,
}

/// One container's prober, running until it is undone (ledger entry) or its bound passes.
#[derive(Debug)]
pub struct Prober {
    what: String,
    task: JoinHandle<()>,
}

impl Prober {
    /// Starts the worker of a container that started at `started` on the mesh's `clock`.
    pub fn spawn(
        board: Arc<Board>,
        target: ProbeTarget,
        spec: ProbeSpec,
        clock: Instant,
        started: Duration,
    ) -> Prober {
        let what = format!(
            "readiness probe of container {} of pod {} ({})",
            spec.container,
            target.pod,
            spec.describe()
        );
        let worker_id = board.start_worker(&target.pod, &spec.container, started);
        let task = tokio::spawn(async move {
            let mut worker = ProbeWorker::new(&spec, started);
            let base = tokio::time::Instant::from_std(clock);
            let end = started + MAX_PROBER_LIFETIME;
            while worker.due() < end {
                tokio::time::sleep_until(base + worker.due()).await;
                let began = clock.elapsed();
                let result =
                    probe_once(&target.sockets, &target.node_netns, target.pod_ip, &spec).await;
                let ended = clock.elapsed();
                if let Some(ready) = worker.observe(result.success, began, ended) {
                    tracing::info!(pod = %target.pod, container = %spec.container, ready, probe = %result.detail, "readiness changed");
                }
                board.report(
                    &target.pod,
                    &spec.container,
                    worker_id,
                    worker.ready(),
                    ended,
                    result.detail,
                );
            }
        });
        Prober { what, task }
    }
}

impl Undo for Prober {
    fn describe(&self) -> String {
        self.what.clone()
    }
    fn undo(&self) -> Result<(), MeshError> {
        self.task.abort();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerPort, ExecAction, HTTPGetAction, TCPSocketAction};
    use rstest::rstest;

    const S: Duration = Duration::from_secs(1);
    const MS: Duration = Duration::from_millis(1);

    fn spec(period: u64, failure: u32, success: u32, initial_delay: u64) -> ProbeSpec {
        ProbeSpec {
            container: "app".into(),
            action: ProbeAction::HttpGet {
                port: 8080,
                path: "/status/200".into(),
            },
            initial_delay: S * initial_delay as u32,
            period: S * period as u32,
            timeout: S,
            success_threshold: success,
            failure_threshold: failure,
        }
    }

    /// Drives a worker through results, each probe taking `took`; the readiness after each.
    fn drive(worker: &mut ProbeWorker, results: &[bool], took: Duration) -> Vec<bool> {
        results
            .iter()
            .map(|&ok| {
                let began = worker.due();
                worker.observe(ok, began, began + took);
                worker.ready()
            })
            .collect()
    }

    #[test]
    fn a_new_container_is_not_ready_and_is_first_probed_at_start() {
        let worker = ProbeWorker::new(&spec(10, 3, 1, 0), 5 * S);
        assert!(!worker.ready());
        assert_eq!(worker.due(), 5 * S);
    }

    #[rstest]
    #[case::under_a_period(10, 4, 10)]
    #[case::on_a_tick(10, 20, 20)]
    #[case::just_over(10, 21, 30)]
    #[case::short_period(1, 3, 3)]
    fn the_first_probe_is_the_first_tick_after_the_initial_delay(
        #[case] period: u64,
        #[case] delay: u64,
        #[case] first: u64,
    ) {
        let worker = ProbeWorker::new(&spec(period, 3, 1, delay), 2 * S);
        assert_eq!(worker.due(), 2 * S + S * first as u32);
    }

    #[test]
    fn ready_after_success_threshold_successes_in_a_row() {
        let mut worker = ProbeWorker::new(&spec(1, 3, 2, 0), Duration::ZERO);
        // A failure between successes starts the count again.
        assert_eq!(
            drive(&mut worker, &[true, false, true, true, true], 10 * MS),
            [false, false, false, true, true]
        );
    }

    #[test]
    fn not_ready_after_failure_threshold_failures_in_a_row() {
        let mut worker = ProbeWorker::new(&spec(1, 3, 1, 0), Duration::ZERO);
        assert_eq!(
            drive(
                &mut worker,
                &[true, false, false, true, false, false, false],
                10 * MS
            ),
            [true, true, true, true, true, true, false]
        );
        // One success makes it ready again (successThreshold 1).
        assert_eq!(drive(&mut worker, &[true], 10 * MS), [true]);
    }

    #[test]
    fn observe_reports_only_changes() {
        let mut worker = ProbeWorker::new(&spec(1, 2, 1, 0), Duration::ZERO);
        assert_eq!(worker.observe(true, Duration::ZERO, MS), Some(true));
        assert_eq!(worker.observe(true, S, S + MS), None);
        assert_eq!(worker.observe(false, 2 * S, 2 * S + MS), None);
        assert_eq!(worker.observe(false, 3 * S, 3 * S + MS), Some(false));
        assert_eq!(worker.observe(false, 4 * S, 4 * S + MS), None);
    }

    #[test]
    fn a_fast_probe_waits_for_the_next_tick() {
        let mut worker = ProbeWorker::new(&spec(10, 3, 1, 0), 3 * S);
        worker.observe(true, 3 * S, 3 * S + 5 * MS);
        assert_eq!(worker.due(), 13 * S);
        // A probe started late (the runtime was busy) still keeps the ticker's grid.
        worker.observe(true, 13 * S + 200 * MS, 13 * S + 300 * MS);
        assert_eq!(worker.due(), 23 * S);
    }

    #[test]
    fn a_probe_outlasting_a_tick_is_followed_at_once_then_on_the_grid() {
        // Period 1s, every probe times out after its 1s timeout plus a little.
        let mut worker = ProbeWorker::new(&spec(1, 3, 1, 0), Duration::ZERO);
        worker.observe(true, Duration::ZERO, MS);
        assert_eq!(worker.due(), S);
        worker.observe(false, S, 2 * S + 10 * MS);
        assert_eq!(
            worker.due(),
            2 * S + 10 * MS,
            "the buffered tick starts it at once"
        );
        worker.observe(false, 2 * S + 10 * MS, 2 * S + 20 * MS);
        assert_eq!(worker.due(), 3 * S, "back on the grid");
    }

    /// A DROP right after a passing probe, period 1s, timeout 1s, failureThreshold 3: each
    /// probe hangs for its timeout, so the third failure ends 4s later (period + 3 timeouts).
    #[test]
    fn a_dropped_pod_turns_not_ready_within_period_plus_threshold_timeouts() {
        let spec = spec(1, 3, 1, 0);
        let mut worker = ProbeWorker::new(&spec, Duration::ZERO);
        worker.observe(true, Duration::ZERO, MS);
        let mut not_ready_at = None;
        for _ in 0..5 {
            let began = worker.due();
            let ended = began + spec.timeout;
            if worker.observe(false, began, ended) == Some(false) {
                not_ready_at = Some(ended);
                break;
            }
        }
        assert_eq!(not_ready_at, Some(4 * S));
    }

    fn container(probe: Probe) -> Container {
        Container {
            name: "in-ambient".into(),
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: 8080,
                ..Default::default()
            }]),
            readiness_probe: Some(probe),
            ..Default::default()
        }
    }

    fn http_get(port: IntOrString, path: Option<&str>) -> Probe {
        Probe {
            http_get: Some(HTTPGetAction {
                port,
                path: path.map(str::to_string),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn kubernetes_defaults_fill_what_the_probe_does_not_say() {
        let spec = ProbeSpec::of_container(
            "Deployment httpbin/in-ambient",
            0,
            &container(http_get(IntOrString::Int(8080), Some("/status/200"))),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            spec,
            ProbeSpec {
                container: "in-ambient".into(),
                action: ProbeAction::HttpGet {
                    port: 8080,
                    path: "/status/200".into()
                },
                initial_delay: Duration::ZERO,
                period: 10 * S,
                timeout: S,
                success_threshold: 1,
                failure_threshold: 3,
            }
        );
        assert_eq!(spec.time_to_ready(), S);
    }

    #[test]
    fn the_manifests_timing_named_ports_and_tcp_probes_are_read() {
        let mut probe = http_get(IntOrString::String("http".into()), None);
        probe.period_seconds = Some(1);
        probe.timeout_seconds = Some(2);
        probe.failure_threshold = Some(2);
        probe.success_threshold = Some(3);
        probe.initial_delay_seconds = Some(5);
        let spec = ProbeSpec::of_container("D", 0, &container(probe))
            .unwrap()
            .unwrap();
        assert_eq!(
            spec.action,
            ProbeAction::HttpGet {
                port: 8080,
                path: "/".into()
            }
        );
        assert_eq!(
            (
                spec.period,
                spec.timeout,
                spec.failure_threshold,
                spec.success_threshold
            ),
            (S, 2 * S, 2, 3)
        );
        assert_eq!(spec.initial_delay, 5 * S);
        // First tick at 5s, two more successes each at least a 2s timeout apart, then the timeout.
        assert_eq!(spec.time_to_ready(), 5 * S + 4 * S + 2 * S);
        let tcp = Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(9090),
                host: None,
            }),
            ..Default::default()
        };
        let spec = ProbeSpec::of_container("D", 0, &container(tcp))
            .unwrap()
            .unwrap();
        assert_eq!(spec.action, ProbeAction::TcpSocket { port: 9090 });
    }

    #[rstest]
    #[case::zero_period(Probe { period_seconds: Some(0), ..http_get(IntOrString::Int(8080), None) }, "readinessProbe.periodSeconds` is 0")]
    #[case::unknown_port_name(http_get(IntOrString::String("metrics".into()), None), "names port \"metrics\"")]
    #[case::port_out_of_range(
        http_get(IntOrString::Int(70000), None),
        "readinessProbe.httpGet.port` is 70000"
    )]
    #[case::no_handler(Probe::default(), "has no handler")]
    fn invalid_probes_name_the_field(#[case] probe: Probe, #[case] message: &str) {
        let err =
            ProbeSpec::of_container("Deployment httpbin/x", 0, &container(probe)).unwrap_err();
        assert!(matches!(err, MeshError::InvalidRequest(_)), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("Deployment httpbin/x: field `spec.template.spec.containers[0]"),
            "{text}"
        );
        assert!(text.contains(message), "{text}");
    }

    #[test]
    fn probes_the_fabric_cannot_run_are_unsupported() {
        let exec = Probe {
            exec: Some(ExecAction {
                command: Some(vec!["true".into()]),
            }),
            ..Default::default()
        };
        let err = ProbeSpec::of_container("D", 0, &container(exec)).unwrap_err();
        assert!(matches!(err, MeshError::Unsupported { .. }), "{err}");
        let mut https = http_get(IntOrString::Int(8443), None);
        https.http_get.as_mut().unwrap().scheme = Some("HTTPS".into());
        let err = ProbeSpec::of_container("D", 0, &container(https)).unwrap_err();
        assert!(matches!(err, MeshError::Unsupported { .. }), "{err}");
    }

    fn pod(name: &str) -> PodRef {
        PodRef {
            namespace: "httpbin".into(),
            name: name.into(),
        }
    }

    #[tokio::test]
    async fn the_board_keeps_the_current_workers_word_and_wakes_the_driver() {
        let board = Board::default();
        let p = pod("a");
        assert_eq!(board.ready(&p), None);
        let w1 = board.start_worker(&p, "app", Duration::ZERO);
        assert_eq!(board.ready(&p), Some(false));
        board.report(&p, "app", w1, true, S, "HTTP 200".into());
        assert_eq!(board.ready(&p), Some(true));
        // The change left a wake-up for the driver.
        tokio::time::timeout(S, board.changed()).await.unwrap();
        board.containers_exited(&p, 2 * S);
        assert_eq!(board.ready(&p), Some(false));
        // A report of the worker from before the exit is ignored.
        board.report(&p, "app", w1, true, 3 * S, "HTTP 200".into());
        assert_eq!(board.ready(&p), Some(false));
        let w2 = board.start_worker(&p, "app", 4 * S);
        board.report(&p, "app", w2, true, 5 * S, "HTTP 200".into());
        assert_eq!(board.ready(&p), Some(true));
        assert!(
            board
                .describe(&p)
                .contains("container app: ready (HTTP 200)")
        );
        board.forget(&p);
        assert_eq!(board.ready(&p), None);
    }

    #[test]
    fn a_pod_is_ready_only_when_every_probed_container_is() {
        let board = Board::default();
        let p = pod("a");
        let w1 = board.start_worker(&p, "app", Duration::ZERO);
        let w2 = board.start_worker(&p, "sidecar", Duration::ZERO);
        board.report(&p, "app", w1, true, S, String::new());
        assert_eq!(board.ready(&p), Some(false));
        board.report(&p, "sidecar", w2, true, S, String::new());
        assert_eq!(board.ready(&p), Some(true));
        assert_eq!(board.ready(&pod("b")), None);
    }
}

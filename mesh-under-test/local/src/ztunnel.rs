//! Launching the ztunnel under test inside a pod's namespace, either as upstream ztunnel runs
//! with no Kubernetes (`FAKE_CA=true XDS_ADDRESS= LOCAL_XDS_PATH=... PROXY_MODE=dedicated`) or
//! as in a cluster, fed by the mesh's control plane (`CA_ADDRESS`, `XDS_ADDRESS`, ...),
//! capturing its output line by line, and stopping it again.
//!
//! Children are forked by one long-lived spawner thread and get `PR_SET_PDEATHSIG(SIGKILL)`:
//! the kernel sends the signal when the *thread* that forked exits, so forking from a
//! short-lived thread would kill the ztunnel early, and a harness killed with SIGKILL must
//! not leave a ztunnel running.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use meshcert_mesh::MeshError;
use meshcert_oracle::logs::{self, LogLine};

use crate::netns::{self, NETNS_DIR, netns_exec};
use crate::run::{Undo, lock};
use crate::worker::Worker;

/// How to run the ztunnel under test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZtunnelCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Added after (so overriding) the contract's own variables.
    pub env: Vec<(String, String)>,
    /// True when the binary reloads `LOCAL_XDS_PATH` on change (the bundled reference does);
    /// otherwise the driver restarts it after every topology change, as upstream needs.
    pub reloads_config: bool,
}

/// Ports of the ztunnel contract.
pub const OUTBOUND_PORT: u16 = 15001;
pub const ADMIN_PORT: u16 = 15000;
pub const STATS_PORT: u16 = 15020;
pub const READINESS_PORT: u16 = 15021;
/// Mark ztunnel puts on its own upstream sockets (given to it as `PACKET_MARK`), so the
/// redirect rule skips them; the rule matches it under upstream's mask.
pub const PACKET_MARK: u32 = 0x539;
const ZTUNNEL_MARK: &str = "0x539/0xfff";

/// Sends the client pod's service traffic to ztunnel's outbound port: a route for the service
/// CIDR (without it connect() fails before netfilter sees the packet) and the nat rule of the
/// contract. Both vanish with the namespace.
pub fn install_redirect(netns: &str) -> Result<(), MeshError> {
    let (service_net, prefix) = crate::netns::SERVICE_CIDR;
    crate::netlink::add_device_route(netns, service_net, prefix, "eth0")?;
    redirect(netns, &["-d", "10.96.0.0/16"])
}

/// REDIRECTs TCP matching `matching` (iptables match arguments) to 15001, except the
/// ztunnel's own marked sockets.
pub fn redirect(netns: &str, matching: &[&str]) -> Result<(), MeshError> {
    let mut args = vec!["-w", "5", "-t", "nat", "-A", "OUTPUT", "-p", "tcp"];
    args.extend_from_slice(matching);
    args.extend([
        "-m",
        "mark",
        "!",
        "--mark",
        ZTUNNEL_MARK,
        "-j",
        "REDIRECT",
        "--to-ports",
        "15001",
    ]);
    netns_exec(netns, "iptables", &args)?;
    Ok(())
}

/// One line of ztunnel output, stamped with the mesh clock when the harness read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedLine {
    pub observed_at: Duration,
    pub raw: String,
}

impl CapturedLine {
    /// The line parsed as a ztunnel log line, stamped with when it was read. A line that does
    /// not parse (a panic message, a banner) is kept whole in `message`, level and target
    /// empty: dropping it could hide exactly what a failing scenario needs.
    pub fn parse(&self) -> LogLine {
        let mut line = logs::parse_line(&self.raw).unwrap_or_else(|_| LogLine {
            observed_at: Duration::ZERO,
            timestamp: None,
            level: String::new(),
            target: String::new(),
            message: self.raw.clone(),
            fields: BTreeMap::new(),
            raw: self.raw.clone(),
        });
        line.observed_at = self.observed_at;
        line
    }
}

/// Everything one client pod's ztunnel wrote, across restarts: in memory and in a log file.
#[derive(Debug)]
pub struct OutputLog {
    clock: Instant,
    path: PathBuf,
    lines: Mutex<Vec<CapturedLine>>,
    file: Mutex<File>,
    /// Output pipes not yet at end of file, so an exit report can include the last words.
    open_pipes: Mutex<usize>,
    drained: Condvar,
}

impl OutputLog {
    /// Appends to `path` (created if missing); `clock` is the mesh's creation instant.
    pub fn create(path: &Path, clock: Instant) -> Result<Arc<OutputLog>, MeshError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(MeshError::io(format!(
                "cannot open ztunnel log {}",
                path.display()
            )))?;
        Ok(Arc::new(OutputLog {
            clock,
            path: path.to_path_buf(),
            lines: Mutex::new(Vec::new()),
            file: Mutex::new(file),
            open_pipes: Mutex::new(0),
            drained: Condvar::new(),
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn push(&self, raw: String) {
        let observed_at = self.clock.elapsed();
        {
            // The file is for humans after the run; a failed write must not lose the line.
            let mut file = lock(&self.file);
            let _ = writeln!(file, "{raw}");
        }
        lock(&self.lines).push(CapturedLine { observed_at, raw });
    }

    /// Notes from the harness itself (start, stop), so the file tells the whole story.
    pub fn note(&self, what: &str) {
        let mut file = lock(&self.file);
        let _ = writeln!(file, "# meshcert {:?}: {what}", self.clock.elapsed());
    }

    fn pipe_opened(&self) {
        *lock(&self.open_pipes) += 1;
    }

    fn pipe_closed(&self) {
        let mut open = lock(&self.open_pipes);
        *open = open.saturating_sub(1);
        self.drained.notify_all();
    }

    /// Waits (at most `timeout`) until every pipe has been read to its end: after an exit,
    /// the last lines may still be in flight.
    pub fn wait_drained(&self, timeout: Duration) {
        let open = lock(&self.open_pipes);
        let _ = self
            .drained
            .wait_timeout_while(open, timeout, |open| *open > 0);
    }

    pub fn lines(&self) -> Vec<CapturedLine> {
        lock(&self.lines).clone()
    }

    /// The last output lines and the log file, on one line (for error messages).
    pub fn last_words(&self) -> String {
        let last = self.last(3);
        let said = if last.is_empty() {
            "it wrote nothing".to_string()
        } else {
            let quoted: Vec<String> = last
                .iter()
                .map(|l| format!("{:?}", truncate(l, 200)))
                .collect();
            format!("its last output: {}", quoted.join(" / "))
        };
        format!("{said} (whole output in {})", self.path.display())
    }

    /// The last `n` lines, oldest first (for error messages).
    pub fn last(&self, n: usize) -> Vec<String> {
        let lines = lock(&self.lines);
        lines[lines.len().saturating_sub(n)..]
            .iter()
            .map(|l| l.raw.clone())
            .collect()
    }
}

fn truncate(line: &str, max: usize) -> &str {
    match line.char_indices().nth(max) {
        Some((at, _)) => &line[..at],
        None => line,
    }
}

/// Removes terminal colour codes, which some builds write even to a pipe.
pub fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

fn read_lines(pipe: impl Read, log: Arc<OutputLog>) {
    let mut reader = BufReader::new(pipe);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => {
                log.pipe_closed();
                return;
            }
            Ok(_) => {
                let text = String::from_utf8_lossy(&buf);
                log.push(strip_ansi(text.trim_end_matches(['\n', '\r'])));
            }
        }
    }
}

type SpawnJob = Box<dyn FnOnce() + Send>;

/// The thread every long-lived child is started from; it lives as long as the process.
fn spawner() -> &'static Worker<SpawnJob> {
    static SPAWNER: OnceLock<Worker<SpawnJob>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        Worker::start("meshcert-spawner", |jobs: mpsc::Receiver<SpawnJob>| {
            for job in jobs {
                job();
            }
        })
    })
}

fn on_spawner_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::sync_channel(1);
    spawner()
        .send(Box::new(move || {
            let _ = tx.send(f());
        }))
        .expect("the spawner thread never exits");
    rx.recv().expect("the spawner thread always answers")
}

/// Where one ztunnel gets its certificates and config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigFeed {
    /// The translated config in this file (`LOCAL_XDS_PATH`), certificates made up by the
    /// ztunnel itself (`FAKE_CA`).
    File(PathBuf),
    /// The mesh's control plane, as in a cluster: certificates and config from istiod.
    ControlPlane(ControlPlaneAccess),
}

/// How a ztunnel reaches the control plane and proves which pod it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlPlaneAccess {
    /// `https://<ip>:15012`: the certificate service and delta ADS on one port, as istiod's.
    pub address: String,
    /// The run's root certificate (PEM), which the control plane's serving certificate and
    /// every workload certificate chain to.
    pub root_cert: PathBuf,
    /// The pod's token file, as a kubelet projects a service-account token.
    pub token: PathBuf,
}

/// Where and as whom one ztunnel runs.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    /// The pod's namespace; the ztunnel joins it before exec.
    pub netns: String,
    pub pod_namespace: String,
    pub pod_name: String,
    pub service_account: String,
    pub config: ConfigFeed,
    /// The node the pod runs on (`spec.nodeName`); empty: none.
    pub node_name: String,
    /// The pod's address (`status.podIP`); empty: none.
    pub instance_ip: String,
    /// The pod's network as the control plane writes it in the config ("" for none).
    pub network: String,
    /// The cluster id of the config's workload uids (`cluster1//v1/Pod/...`).
    pub cluster_id: String,
}

impl LaunchSpec {
    /// The environment every binary gets, then the caller's extra variables (which win).
    ///
    /// Derived from upstream istio/ztunnel's `src/config.rs` (`construct_config`), for the
    /// role the binary plays here: dedicated mode, one pod, behind the pod's iptables
    /// `REDIRECT` to 15001, fed by a file ([`ConfigFeed::File`]: no istiod) or by the mesh's
    /// control plane ([`ConfigFeed::ControlPlane`]). Per variable, where upstream reads it
    /// and why:
    ///
    /// - `LOCAL_XDS_PATH` (file only): read into `local_xds_config` (a
    ///   `ConfigSource::File`); the translated config of this mesh, upstream's documented
    ///   no-Kubernetes contract.
    /// - `PROXY_MODE=dedicated`: `proxy_mode`; one proxy for one workload, in its namespace.
    /// - `PROXY_WORKLOAD_INFO=<ns>/<pod>/<service account>`: `proxy_workload_information`,
    ///   required in dedicated mode: the workload whose traffic this proxy carries, and
    ///   whose identity it requests from the CA.
    /// - `FAKE_CA=true` (file only): `fake_ca`; self-signed certificates instead of a CA
    ///   (needs upstream's `testing` feature).
    /// - `XDS_ADDRESS=` (empty, file only): `xds_address` through `empty_to_none`; no istiod.
    /// - `CA_ADDRESS=https://<ip>:15012` (control plane only): `ca_address`; where the
    ///   certificate service is (istiod's port; unset, upstream would try
    ///   `https://localhost:15012`).
    /// - `XDS_ADDRESS=https://<ip>:15012` (control plane only): `xds_address`; delta ADS on
    ///   the same port.
    /// - `CA_ROOT_CA`, `XDS_ROOT_CA=<root-cert.pem>` (control plane only): read as a file
    ///   because the path exists (`RootCert::File`); the run's root, which the control
    ///   plane's serving certificate chains to (upstream's default path
    ///   `./var/run/secrets/istio/root-cert.pem` does not exist here).
    /// - `AUTH_TOKEN=<token file>` (control plane only): a path that exists is a token file
    ///   (`AuthSource::Token`), read per request and sent as `authorization: Bearer`; the
    ///   control plane grants the holder its pod's identity only.
    /// - `NETWORK`: `network` ("" when unset), "the network of the node this ztunnel is
    ///   running on". Outbound traffic looks the original destination up as
    ///   `NetworkAddress { network, address }`, so it must be the network the control plane
    ///   wrote for the pod, else a VIP written `net1/10.96.0.10` is no service and the
    ///   connection falls through to passthrough.
    /// - `CLUSTER_ID`: `cluster_id` (`ISTIO_META_CLUSTER_ID` first, default `Kubernetes`):
    ///   the cluster of the config's workload uids, as the chart passes it.
    /// - `CLUSTER_DOMAIN=cluster.local`: `cluster_domain`, the DNS suffix of the services'
    ///   hostnames (upstream's default, written out).
    /// - `PACKET_MARK=1337` (0x539): `packet_mark`. In dedicated mode upstream marks its own
    ///   upstream sockets only when this is set (shared mode defaults it); the pod's
    ///   `REDIRECT` exempts exactly this mark, so without it ztunnel's own connection to a
    ///   service address comes back to 15001, forever. Upstream's own dedicated-mode test
    ///   harness sets the same mark.
    /// - `NODE_NAME`: `local_node`, "the name of the node this ztunnel is running as"; also
    ///   the xDS node metadata. The downward API's `spec.nodeName`.
    /// - `INSTANCE_IP`, `POD_NAME`, `POD_NAMESPACE`: read by the xDS client for its node id
    ///   (unused without istiod) and, with `SERVICE_ACCOUNT`, as ztunnel's own identity,
    ///   which only shared mode serves; given as the downward API would, with the pod's own.
    /// - `SERVICE_ACCOUNT`: see above.
    /// - `ENABLE_ORIG_SRC=false`: `require_original_source`. Unset, upstream tries
    ///   IP_TRANSPARENT and uses it when allowed, so behaviour would depend on meshcert's
    ///   privileges; a dedicated proxy shares its pod's address, so there is no source to
    ///   keep. Upstream's dedicated-mode test harness sets it false too.
    /// - `TERMINATION_GRACE_PERIOD_SECONDS`: `self_termination_deadline`; the launcher's own
    ///   grace before SIGKILL ([`STOP_GRACE`]), as the chart passes the pod's.
    ///
    /// Left at upstream's defaults: the DNS proxy (`ISTIO_META_DNS_CAPTURE`; it listens on
    /// 127.0.0.1:15053 and the harness's client resolves names itself), `ISTIO_META_*`
    /// and `XDS_HEADER_*`/`CA_HEADER_*` (istiod and CA metadata), keepalives, worker threads
    /// and `IPV6_ENABLED`. `--ztunnel-env` overrides any of these.
    pub fn environment(&self, command: &ZtunnelCommand) -> Vec<(String, String)> {
        let var = |name: &str, value: String| (name.to_string(), value);
        let workload = [
            var("PROXY_MODE", "dedicated".into()),
            var(
                "PROXY_WORKLOAD_INFO",
                format!(
                    "{}/{}/{}",
                    self.pod_namespace, self.pod_name, self.service_account
                ),
            ),
        ];
        let mut env = match &self.config {
            ConfigFeed::File(path) => {
                let mut env = vec![var("LOCAL_XDS_PATH", path.display().to_string())];
                env.extend(workload);
                env.extend([
                    var("FAKE_CA", "true".into()),
                    var("XDS_ADDRESS", String::new()),
                ]);
                env
            }
            ConfigFeed::ControlPlane(access) => {
                let root = access.root_cert.display().to_string();
                let mut env = vec![
                    var("CA_ADDRESS", access.address.clone()),
                    var("XDS_ADDRESS", access.address.clone()),
                    var("CA_ROOT_CA", root.clone()),
                    var("XDS_ROOT_CA", root),
                    var("AUTH_TOKEN", access.token.display().to_string()),
                ];
                env.extend(workload);
                env
            }
        };
        env.extend([
            var("NETWORK", self.network.clone()),
            var("CLUSTER_ID", self.cluster_id.clone()),
            var("CLUSTER_DOMAIN", "cluster.local".into()),
            var("PACKET_MARK", PACKET_MARK.to_string()),
        ]);
        if !self.node_name.is_empty() {
            env.push(var("NODE_NAME", self.node_name.clone()));
        }
        if !self.instance_ip.is_empty() {
            env.push(var("INSTANCE_IP", self.instance_ip.clone()));
        }
        env.extend([
            var("POD_NAME", self.pod_name.clone()),
            var("POD_NAMESPACE", self.pod_namespace.clone()),
            var("SERVICE_ACCOUNT", self.service_account.clone()),
            var("ENABLE_ORIG_SRC", "false".into()),
            var(
                "TERMINATION_GRACE_PERIOD_SECONDS",
                STOP_GRACE.as_secs().max(1).to_string(),
            ),
        ]);
        env.extend(command.env.iter().cloned());
        env
    }
}

/// Connections the pod's `REDIRECT` rules have sent to 15001 so far: the packet counters of
/// those nat rules, which only a connection's first packet traverses. A ztunnel that sends
/// its own connections back to itself shows many more than the client opened.
pub fn redirected_connections(netns: &str) -> Result<u64, MeshError> {
    let out = netns_exec(
        netns,
        "iptables",
        &["-w", "5", "-t", "nat", "-L", "OUTPUT", "-n", "-v", "-x"],
    )?;
    Ok(count_redirected(&out))
}

/// Sums the packet column of `iptables -L -v -x` lines that redirect to 15001.
fn count_redirected(listing: &str) -> u64 {
    let to_outbound = format!("redir ports {OUTBOUND_PORT}");
    listing
        .lines()
        .filter(|l| l.contains("REDIRECT") && l.trim_end().ends_with(&to_outbound))
        .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// A running (or exited) ztunnel.
#[derive(Debug)]
pub struct ZtunnelProcess {
    pod: String,
    pid: u32,
    /// Signals and exit waits go through a pidfd, so they can never hit a recycled pid.
    pidfd: OwnedFd,
    child: Mutex<Child>,
    output: Arc<OutputLog>,
}

/// The command that runs `program` inside `netns` as a child that dies with the harness and
/// leads its own process group: `setpriv --pdeathsig KILL -- nsenter --net=<netns> -- program`,
/// each exec'ing the next in the same process (see [`netns::NSENTER`] for why not `pre_exec`).
fn in_netns_dying_with_us(netns: &str, program: &Path) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--pdeathsig", "KILL", "--", netns::NSENTER])
        .args(netns::enter_netns_args(netns))
        .arg(program)
        .process_group(0);
    cmd
}

/// A pidfd for our own child, so signals and waits can never hit a recycled pid; the child
/// is stopped if there is none.
fn open_pidfd(child: &mut Child) -> Result<OwnedFd, MeshError> {
    // SAFETY: pidfd_open on our own unreaped child.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id() as libc::pid_t, 0) };
    if raw < 0 {
        let source = std::io::Error::last_os_error();
        let _ = child.kill();
        let _ = child.wait();
        return Err(MeshError::Io {
            context: "pidfd_open on the ztunnel (Linux >= 5.3 needed)".into(),
            source,
        });
    }
    // SAFETY: a new descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(raw as i32) })
}

/// Reads the child's stdout and stderr into `output`, one thread a pipe.
fn capture_output(child: &mut Child, output: &Arc<OutputLog>) -> Result<(), MeshError> {
    let pid = child.id();
    for pipe in [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let log = output.clone();
        output.pipe_opened();
        std::thread::Builder::new()
            .name(format!("ztunnel-log-{pid}"))
            .spawn(move || read_lines(pipe, log))
            .map_err(MeshError::io("cannot start a log reader thread"))?;
    }
    Ok(())
}

impl ZtunnelProcess {
    /// Starts the ztunnel inside `spec.netns`, its output captured into `output`.
    pub fn launch(
        command: &ZtunnelCommand,
        spec: &LaunchSpec,
        output: Arc<OutputLog>,
    ) -> Result<Arc<ZtunnelProcess>, MeshError> {
        let netns_path = Path::new(NETNS_DIR).join(&spec.netns);
        if let Err(source) = std::fs::metadata(&netns_path) {
            return Err(MeshError::Io {
                context: format!("cannot open network namespace {}", netns_path.display()),
                source,
            });
        }
        // A bare name is looked up on PATH by nsenter; a path must exist here.
        if let Some(Err(source)) = command
            .program
            .to_str()
            .filter(|p| p.contains('/'))
            .map(std::fs::metadata)
        {
            return Err(MeshError::Io {
                context: format!(
                    "cannot start ztunnel {} (check the path and that it is executable)",
                    command.program.display()
                ),
                source,
            });
        }
        let mut cmd = in_netns_dying_with_us(&spec.netns, &command.program);
        cmd.args(&command.args)
            .envs(spec.environment(command))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let program = command.program.display().to_string();
        // Spawned from one long-lived thread: the death signal follows the thread that
        // started the child, not the process.
        let mut child = on_spawner_thread(move || cmd.spawn()).map_err(|source| MeshError::Io {
            context: format!(
                "cannot start ztunnel {program} (setpriv and nsenter of util-linux are needed)"
            ),
            source,
        })?;
        let pid = child.id();
        let pidfd = open_pidfd(&mut child)?;
        output.note(&format!("started {program} (pid {pid}) in {}", spec.netns));
        capture_output(&mut child, &output)?;
        Ok(Arc::new(ZtunnelProcess {
            pod: spec.pod_name.clone(),
            pid,
            pidfd,
            child: Mutex::new(child),
            output,
        }))
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn output(&self) -> &Arc<OutputLog> {
        &self.output
    }

    /// `Some` once the process has exited.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        lock(&self.child).try_wait().ok().flatten()
    }

    /// Describes an exit for an error, on one line: status, the last output lines and where
    /// the whole output is.
    pub fn describe_exit(&self, status: ExitStatus) -> String {
        self.output.wait_drained(Duration::from_millis(500));
        format!(
            "ztunnel for {} exited ({status}); {}",
            self.pod,
            self.output.last_words()
        )
    }

    fn signal(&self, signal: i32) {
        // SAFETY: pidfd_send_signal on our pidfd; a process that already exited gives ESRCH.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.pidfd.as_raw_fd(),
                signal,
                std::ptr::null::<()>(),
                0,
            );
        }
    }

    /// Waits up to `timeout` for the process to exit (the pidfd becomes readable).
    fn wait_exit(&self, timeout: Duration) -> bool {
        let mut fds = libc::pollfd {
            fd: self.pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ms = left.as_millis().min(i32::MAX as u128) as i32;
            // SAFETY: one valid pollfd.
            let rc = unsafe { libc::poll(&mut fds, 1, ms) };
            if rc > 0 {
                return true;
            }
            if rc == 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted
            {
                return false;
            }
        }
    }

    /// Signals what is left of the process group (a wrapper script's children).
    fn signal_group(&self, signal: i32) {
        // SAFETY: kill(2) on the group the child made itself leader of; ESRCH when empty.
        unsafe {
            libc::kill(-(self.pid as libc::pid_t), signal);
        }
    }

    /// SIGTERM to the process group, up to `grace` to exit, then SIGKILL; reaps the process
    /// and kills whatever of its group is left.
    pub fn stop(&self, grace: Duration) -> Result<ExitStatus, MeshError> {
        if self.exit_status().is_none() {
            self.signal_group(libc::SIGTERM);
            self.signal(libc::SIGTERM);
            if !self.wait_exit(grace) {
                self.signal(libc::SIGKILL);
            }
        }
        let status = lock(&self.child).wait().map_err(MeshError::io(format!(
            "cannot reap ztunnel pid {}",
            self.pid
        )))?;
        // The group id stays ours while any member lives: no recycled-pid risk.
        self.signal_group(libc::SIGKILL);
        self.output
            .note(&format!("stopped pid {} ({status})", self.pid));
        Ok(status)
    }
}

/// How long a stopping ztunnel gets to drain before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(1);

impl Undo for ZtunnelProcess {
    fn describe(&self) -> String {
        format!("ztunnel pid {} in pod {}", self.pid, self.pod)
    }
    fn undo(&self) -> Result<(), MeshError> {
        self.stop(STOP_GRACE).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("plain line", "plain line")]
    #[case(
        "\u{1b}[2m2025-03-06T16:52:48Z\u{1b}[0m \u{1b}[32m info\u{1b}[0m access",
        "2025-03-06T16:52:48Z  info access"
    )]
    #[case("\u{1b}x not csi", "\u{1b}x not csi")]
    fn colour_codes_are_stripped(#[case] raw: &str, #[case] clean: &str) {
        assert_eq!(strip_ansi(raw), clean);
    }

    #[test]
    fn captured_lines_parse_and_unparseable_ones_are_kept_whole() {
        let access = CapturedLine {
            observed_at: Duration::from_millis(1500),
            raw: "2025-03-06T16:52:48.095517Z info access connection complete dst.workload=\"in-ambient-1\"".into(),
        };
        let line = access.parse();
        assert_eq!(line.observed_at, Duration::from_millis(1500));
        assert!(line.is("access", "connection complete"), "{line:?}");
        assert_eq!(line.field("dst.workload"), Some("in-ambient-1"));

        let panic = CapturedLine {
            observed_at: Duration::from_secs(2),
            raw: "thread 'main' panicked at src/main.rs:1".into(),
        };
        let line = panic.parse();
        assert_eq!((line.level.as_str(), line.target.as_str()), ("", ""));
        assert_eq!(line.message, panic.raw);
        assert_eq!(line.raw, panic.raw);
        assert_eq!(line.observed_at, Duration::from_secs(2));
    }

    fn env_lines(spec: &LaunchSpec, command: &ZtunnelCommand) -> Vec<String> {
        spec.environment(command)
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect()
    }

    #[test]
    fn environment_is_the_contract_the_pod_then_the_extras() {
        let spec = LaunchSpec {
            netns: "mc-abcdef-1-client".into(),
            pod_namespace: "httpbin".into(),
            pod_name: "client-in-ambient-bcdfghjklm-bcdfg".into(),
            service_account: "client-in-ambient".into(),
            config: ConfigFeed::File("/w/mesh-1/ztunnel-client.yaml".into()),
            node_name: "node-1".into(),
            instance_ip: "10.244.1.2".into(),
            network: "net1".into(),
            cluster_id: "cluster1".into(),
        };
        let command = ZtunnelCommand {
            program: "/bin/ztunnel".into(),
            args: vec![],
            env: vec![
                ("RUST_LOG".into(), "debug".into()),
                ("FAKE_CA".into(), "false".into()),
            ],
            reloads_config: false,
        };
        assert_eq!(
            env_lines(&spec, &command),
            [
                "LOCAL_XDS_PATH=/w/mesh-1/ztunnel-client.yaml",
                "PROXY_MODE=dedicated",
                "PROXY_WORKLOAD_INFO=httpbin/client-in-ambient-bcdfghjklm-bcdfg/client-in-ambient",
                "FAKE_CA=true",
                "XDS_ADDRESS=",
                "NETWORK=net1",
                "CLUSTER_ID=cluster1",
                "CLUSTER_DOMAIN=cluster.local",
                "PACKET_MARK=1337",
                "NODE_NAME=node-1",
                "INSTANCE_IP=10.244.1.2",
                "POD_NAME=client-in-ambient-bcdfghjklm-bcdfg",
                "POD_NAMESPACE=httpbin",
                "SERVICE_ACCOUNT=client-in-ambient",
                "ENABLE_ORIG_SRC=false",
                "TERMINATION_GRACE_PERIOD_SECONDS=1",
                "RUST_LOG=debug",
                "FAKE_CA=false",
            ]
        );
    }

    #[test]
    fn fed_by_the_control_plane_a_ztunnel_gets_its_address_root_and_token_and_no_file() {
        let spec = LaunchSpec {
            netns: "mc-abcdef-1-in-ambient".into(),
            pod_namespace: "httpbin".into(),
            pod_name: "in-ambient-bcdfghjklm-bcdfg".into(),
            service_account: "in-ambient".into(),
            config: ConfigFeed::ControlPlane(ControlPlaneAccess {
                address: "https://10.244.1.2:15012".into(),
                root_cert: "/w/mesh-1/root-cert.pem".into(),
                token: "/w/mesh-1/tokens/in-ambient-bcdfghjklm-bcdfg".into(),
            }),
            node_name: String::new(),
            instance_ip: String::new(),
            network: String::new(),
            cluster_id: "cluster1".into(),
        };
        let command = ZtunnelCommand {
            program: "/bin/ztunnel".into(),
            args: vec![],
            env: vec![],
            reloads_config: false,
        };
        let env = env_lines(&spec, &command);
        assert_eq!(
            env[..7],
            [
                "CA_ADDRESS=https://10.244.1.2:15012",
                "XDS_ADDRESS=https://10.244.1.2:15012",
                "CA_ROOT_CA=/w/mesh-1/root-cert.pem",
                "XDS_ROOT_CA=/w/mesh-1/root-cert.pem",
                "AUTH_TOKEN=/w/mesh-1/tokens/in-ambient-bcdfghjklm-bcdfg",
                "PROXY_MODE=dedicated",
                "PROXY_WORKLOAD_INFO=httpbin/in-ambient-bcdfghjklm-bcdfg/in-ambient",
            ]
        );
        for absent in ["LOCAL_XDS_PATH=", "FAKE_CA="] {
            assert!(!env.iter().any(|v| v.starts_with(absent)), "{env:?}");
        }
        assert!(env.contains(&"CLUSTER_ID=cluster1".to_string()), "{env:?}");
    }

    #[test]
    fn the_mark_given_is_the_one_the_redirect_exempts() {
        let (mark, mask) = ZTUNNEL_MARK.split_once('/').unwrap();
        let mark = u32::from_str_radix(mark.trim_start_matches("0x"), 16).unwrap();
        let mask = u32::from_str_radix(mask.trim_start_matches("0x"), 16).unwrap();
        assert_eq!(PACKET_MARK & mask, mark);
        assert_eq!(PACKET_MARK, 1337);
    }

    #[test]
    fn redirected_connections_are_the_packet_counts_of_the_rules_to_15001() {
        let listing = "Chain OUTPUT (policy ACCEPT 12 packets, 720 bytes)\n\
            \x20   pkts      bytes target     prot opt in     out     source               destination\n\
            \x20     3      180 REDIRECT   6    --  *      *       0.0.0.0/0            10.96.0.0/16         mark match ! 0x539/0xfff redir ports 15001\n\
            \x20  4000   240000 REDIRECT   6    --  *      *       0.0.0.0/0            10.244.0.9           tcp dpt:5201 mark match ! 0x539/0xfff redir ports 15001\n\
            \x20     7      420 REDIRECT   6    --  *      *       0.0.0.0/0            0.0.0.0/0            redir ports 15006\n";
        assert_eq!(count_redirected(listing), 4003);
        assert_eq!(count_redirected("Chain OUTPUT (policy ACCEPT)\n"), 0);
    }
}

//! The local mesh's network: namespaces, veth pairs and bridges, and the one socket factory
//! through which the harness ever talks to a pod or service address.
//!
//! Topology of one mesh: a `fabric` namespace with a bridge; per node a namespace with a bridge
//! (holding the node's own address, `10.244.<node #>.1`, which its kubelet probes from) and an
//! uplink veth to the fabric bridge; per pod a namespace whose `eth0` is a veth to its
//! node's bridge, with an address in 10.244.0.0/16 and no default route. Veth pairs are created
//! directly between two harness namespaces, so nothing is ever created in the machine's own
//! namespace, and a packet from a pod can only reach other harness namespaces.

use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock, mpsc};

use meshcert_mesh::MeshError;
use tokio::net::{TcpListener, TcpSocket};

use crate::netlink;
use crate::run::{EntryId, Ledger, Run, Undo};
use crate::worker::Worker;

/// Where `ip netns` keeps its namespace handles.
pub const NETNS_DIR: &str = "/run/netns";

/// Pod addresses: `10.244.<node #>.<host>/16`.
pub const POD_CIDR: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 244, 0, 0), 16);
/// Service cluster IPs: from 10.96.0.10 upwards.
pub const SERVICE_CIDR: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 96, 0, 0), 16);

/// The bridge in the fabric and in every node namespace.
const BRIDGE: &str = "br0";
/// A node's veth end towards the fabric.
const UPLINK: &str = "uplink";

fn in_cidr(ip: Ipv4Addr, (net, len): (Ipv4Addr, u8)) -> bool {
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    u32::from(ip) & mask == u32::from(net) & mask
}

/// Runs a command to completion; its stdout on success. In a process group of its own, so
/// the terminal's Ctrl-C (sent to meshcert's group) cannot kill the `ip` or `iptables` that
/// a cleanup is running.
pub(crate) fn command(program: &str, args: &[&str]) -> Result<String, MeshError> {
    let mut command = Command::new(program);
    command.args(args);
    run_command(command, format!("{program} {}", args.join(" ")))
}

fn run_command(mut command: Command, shown: String) -> Result<String, MeshError> {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = command
        .stdin(Stdio::null())
        .process_group(0)
        .output()
        .map_err(|source| MeshError::Io {
            context: format!("cannot run `{shown}` (is {program} installed and on PATH?)"),
            source,
        })?;
    if !output.status.success() {
        return Err(MeshError::Command {
            command: shown,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

pub fn ip(args: &[&str]) -> Result<String, MeshError> {
    command("ip", args)
}

/// Runs a program inside a namespace through util-linux's `nsenter --net` (what `ip netns exec`
/// does, without the private mount table and /sys remount that iptables does not need).
pub fn netns_exec(netns: &str, program: &str, args: &[&str]) -> Result<String, MeshError> {
    let mut command = Command::new(NSENTER);
    command
        .args(enter_netns_args(netns))
        .arg(program)
        .args(args);
    let shown = format!("{program} {} (in {netns})", args.join(" "));
    run_command(command, shown)
}

/// util-linux's namespace tool. Children are started through it, not by joining the
/// namespace between fork and exec: a `pre_exec` hook makes the standard library fork the
/// whole harness (copying its page tables, then copy-on-write faults in every thread), where
/// without one it spawns with `CLONE_VFORK`. That fork was about a sixth of a pass's CPU.
pub(crate) const NSENTER: &str = "nsenter";

/// `nsenter`'s arguments that enter `netns` and then run what follows.
pub(crate) fn enter_netns_args(netns: &str) -> [String; 2] {
    [
        format!(
            "--net={}",
            std::path::Path::new(NETNS_DIR).join(netns).display()
        ),
        "--".to_string(),
    ]
}

/// Every named network namespace on the machine.
pub(crate) fn list_netns() -> Result<Vec<String>, MeshError> {
    let entries = match std::fs::read_dir(NETNS_DIR) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(MeshError::Io {
                context: format!("cannot list {NETNS_DIR}"),
                source: e,
            });
        }
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect();
    names.sort();
    Ok(names)
}

/// Processes whose network namespace is `netns`.
pub(crate) fn netns_pids(netns: &str) -> Result<Vec<i32>, MeshError> {
    let out = ip(&["netns", "pids", netns])?;
    Ok(out
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect())
}

pub(crate) fn delete_netns(netns: &str) -> Result<(), MeshError> {
    netlink::del_netns(netns)
}

/// Checks that this machine can run local meshes: root, network namespaces and netlink, `ip`
/// (its `netns pids` finds a killed run's processes), and `iptables` (filter and nat tables)
/// inside a namespace. The error is one line, ready to print as a skip reason.
pub fn preflight() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(
            "local meshes need root (network namespaces and iptables): run as root, \
                    e.g. `sudo -E cargo test`"
                .into(),
        );
    }
    let one_line = |e: MeshError| e.to_string().replace('\n', " ");
    let run = Run::acquire().map_err(one_line)?;
    let name = run.netns_name(0, "preflight");
    let result = (|| {
        let creating = run
            .creating(&format!("network namespace {name}"))
            .map_err(one_line)?;
        netlink::add_netns(&name)
            .map_err(|e| format!("network namespaces are not usable: {}", one_line(e)))?;
        run.netns_created(&name);
        drop(creating);
        netlink::loopback_up(&name)
            .map_err(|e| format!("netlink is not usable in a namespace: {}", one_line(e)))?;
        netns_pids(&name).map_err(|e| {
            format!(
                "`ip netns` (iproute2) is not usable: {}; install iproute2",
                one_line(e)
            )
        })?;
        for table in ["filter", "nat"] {
            netns_exec(&name, "iptables", &["-w", "5", "-t", table, "-S"]).map_err(|e| {
                format!(
                    "iptables ({table} table) is not usable in a network namespace: {}",
                    one_line(e)
                )
            })?;
        }
        Ok(())
    })();
    let cleanup = delete_netns(&name).map_err(one_line);
    run.netns_deleted(&name);
    run.close();
    result.and(cleanup)
}

/// A namespace recorded in a ledger: undo kills nothing (processes have their own entries,
/// recorded later, so they are gone first) and deletes the namespace.
struct NetnsEntry {
    run: Arc<Run>,
    name: String,
}

impl Undo for NetnsEntry {
    fn describe(&self) -> String {
        format!("network namespace {}", self.name)
    }
    fn undo(&self) -> Result<(), MeshError> {
        let result = delete_netns(&self.name);
        self.run.netns_deleted(&self.name);
        result
    }
}

/// Creates a namespace with `lo` up and records it in the ledger before anything else is done
/// to it, so a failure halfway still removes it. Refused once the run is closing.
pub fn create_netns(run: &Arc<Run>, ledger: &Ledger, name: &str) -> Result<EntryId, MeshError> {
    let creating = run.creating(&format!("network namespace {name}"))?;
    netlink::add_netns(name)?;
    run.netns_created(name);
    let entry = ledger.record(Box::new(NetnsEntry {
        run: run.clone(),
        name: name.to_string(),
    }));
    drop(creating);
    netlink::loopback_up(name)?;
    Ok(entry)
}

fn add_bridge(netns: &str) -> Result<(), MeshError> {
    netlink::add_bridge(netns, BRIDGE)
}

/// A node: its Kubernetes name, number (the third octet of its pods' addresses), namespace and
/// its own address on its bridge, from which its kubelet probes the node's pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeNetns {
    pub name: String,
    pub number: u8,
    pub netns: String,
    pub ip: Ipv4Addr,
}

/// A node's own address: `10.244.<node #>.1`, as a CNI bridge's gateway address is (pods
/// start at `.10`).
pub fn node_ip(number: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, number, 1)
}

/// The host part of a node's system pod: between the node's own `.1` and the pods' `.10`.
const SYSTEM_POD_HOST: u8 = 2;

/// A pod's namespace and address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNetns {
    pub name: String,
    pub netns: String,
    pub ip: Ipv4Addr,
    pub node: String,
    pub(crate) entry: EntryId,
}

/// The namespaces and links of one mesh.
#[derive(Debug)]
pub struct Topology {
    run: Arc<Run>,
    ledger: Arc<Ledger>,
    mesh: u32,
    fabric: String,
    nodes: Vec<(NodeNetns, u8)>,
}

impl Topology {
    /// Creates the fabric namespace and its bridge.
    pub fn new(run: Arc<Run>, ledger: Arc<Ledger>, mesh: u32) -> Result<Topology, MeshError> {
        let fabric = run.netns_name(mesh, "fabric");
        create_netns(&run, &ledger, &fabric)?;
        add_bridge(&fabric)?;
        Ok(Topology {
            run,
            ledger,
            mesh,
            fabric,
            nodes: Vec::new(),
        })
    }

    pub fn run(&self) -> &Arc<Run> {
        &self.run
    }

    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    pub fn fabric(&self) -> &str {
        &self.fabric
    }

    pub fn nodes(&self) -> impl Iterator<Item = &NodeNetns> {
        self.nodes.iter().map(|(n, _)| n)
    }

    pub fn node(&self, name: &str) -> Option<&NodeNetns> {
        self.nodes().find(|n| n.name == name)
    }

    /// Creates a node namespace with its bridge, linked to the fabric bridge.
    pub fn add_node(&mut self, name: &str) -> Result<&NodeNetns, MeshError> {
        if let Some(i) = self.nodes.iter().position(|(n, _)| n.name == name) {
            return Ok(&self.nodes[i].0);
        }
        let number = u8::try_from(self.nodes.len() + 1)
            .ok()
            .filter(|n| *n < 255)
            .ok_or_else(|| {
                MeshError::InvalidRequest("a local mesh has at most 254 nodes".into())
            })?;
        let netns = self.run.netns_name(self.mesh, &format!("node-{name}"));
        create_netns(&self.run, &self.ledger, &netns)?;
        add_bridge(&netns)?;
        let fabric_end = format!("n{number}");
        netlink::add_veth_to_bridge(&self.fabric, &fabric_end, BRIDGE, &netns, UPLINK)?;
        netlink::enslave(&netns, UPLINK, BRIDGE)?;
        // The kubelet's probes come from the node (never from the machine's own namespace),
        // so the node needs an address on its pods' network; no route beyond it.
        let address = node_ip(number);
        netlink::add_address(&netns, BRIDGE, address, POD_CIDR.1, false)?;
        self.nodes.push((
            NodeNetns {
                name: name.to_string(),
                number,
                netns,
                ip: address,
            },
            10,
        ));
        Ok(&self.nodes.last().expect("just pushed").0)
    }

    /// Reserves the next address on a node: `10.244.<node #>.<host>`, hosts from 10 up,
    /// never reused within the mesh so a removed pod's address cannot answer for a new pod.
    fn next_pod_ip(&mut self, node: &str) -> Result<Ipv4Addr, MeshError> {
        let (n, next) = self
            .nodes
            .iter_mut()
            .find(|(n, _)| n.name == node)
            .ok_or_else(|| {
                MeshError::InvalidRequest(format!("no node named {node:?} in this mesh"))
            })?;
        if *next == 255 {
            return Err(MeshError::InvalidRequest(format!(
                "node {node} has no pod addresses left (245 per node per mesh)"
            )));
        }
        let ip = Ipv4Addr::new(10, 244, n.number, *next);
        *next += 1;
        Ok(ip)
    }

    /// Reserves a pod's namespace name and address on `node`; `create_pod` makes them real.
    /// Split in two so the slow part (running `ip`) can run off the async runtime.
    pub fn plan_pod(&mut self, node: &str, pod: &str) -> Result<PodPlan, MeshError> {
        let ip = self.next_pod_ip(node)?;
        let node_netns = self
            .node(node)
            .expect("address reserved on an existing node")
            .netns
            .clone();
        Ok(PodPlan {
            name: pod.to_string(),
            netns: self.run.netns_name(self.mesh, pod),
            node_netns,
            ip,
            node: node.to_string(),
        })
    }

    /// Reserves the namespace of a system pod (the control plane's) on `node`, at
    /// `10.244.<node #>.2`: below the pods' range, so the pods' own addresses are the same
    /// with or without it. One a node.
    pub fn plan_system_pod(&mut self, node: &str, pod: &str) -> Result<PodPlan, MeshError> {
        let n = self.node(node).ok_or_else(|| {
            MeshError::InvalidRequest(format!("no node named {node:?} in this mesh"))
        })?;
        Ok(PodPlan {
            name: pod.to_string(),
            netns: self.run.netns_name(self.mesh, pod),
            node_netns: n.netns.clone(),
            ip: Ipv4Addr::new(10, 244, n.number, SYSTEM_POD_HOST),
            node: node.to_string(),
        })
    }

    /// Creates a pod namespace on `node` (see `create_pod`).
    pub fn add_pod(&mut self, node: &str, pod: &str) -> Result<PodNetns, MeshError> {
        let plan = self.plan_pod(node, pod)?;
        create_pod(&self.run, &self.ledger, &plan)
    }

    /// Deletes a pod's namespace (its veth pair goes with it).
    pub fn remove_pod(&mut self, pod: &PodNetns) -> Result<(), MeshError> {
        self.ledger.release(pod.entry)
    }

    /// The socket factory of this mesh's run.
    pub fn sockets(&self) -> SocketFactory {
        SocketFactory {
            run: self.run.clone(),
        }
    }
}

/// Where a pod's namespace goes, reserved by `Topology::plan_pod`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodPlan {
    pub name: String,
    pub netns: String,
    pub node_netns: String,
    pub ip: Ipv4Addr,
    pub node: String,
}

/// Creates a planned pod namespace: `lo` up, `eth0` (veth to the node's bridge) with its
/// address, and verifies there is no default route, so pod traffic cannot leave the fabric.
pub fn create_pod(run: &Arc<Run>, ledger: &Ledger, plan: &PodPlan) -> Result<PodNetns, MeshError> {
    let netns = &plan.netns;
    let node_netns = &plan.node_netns;
    let entry = create_netns(run, ledger, netns)?;
    let node_end = format!("veth{}", plan.ip.octets()[3]);
    netlink::add_veth_to_bridge(node_netns, &node_end, BRIDGE, netns, "eth0")?;
    netlink::add_address(netns, "eth0", plan.ip, POD_CIDR.1, true)?;
    let default = netlink::default_routes(netns)?;
    if !default.is_empty() {
        return Err(MeshError::NetworkSafety(format!(
            "pod namespace {netns} has a default route ({}); refusing to use it",
            default.join("; ")
        )));
    }
    Ok(PodNetns {
        name: plan.name.clone(),
        netns: netns.clone(),
        ip: plan.ip,
        node: plan.node.clone(),
        entry,
    })
}

/// Whether a new pod's link is up at both ends: its `eth0`, and the node end as a forwarding
/// bridge port. The kernel raises a veth's carrier asynchronously (its link watch may take a
/// second under load); until then frames to the pod are dropped. `Some(state)` while not yet.
pub fn pod_link_pending(node_netns: &str, pod: &PodNetns) -> Result<Option<String>, MeshError> {
    let node_end = format!("veth{}", pod.ip.octets()[3]);
    let port = netlink::link_pending(node_netns, &node_end)?;
    let eth0 = netlink::link_pending(&pod.netns, "eth0")?;
    Ok(match (port, eth0) {
        (None, None) => None,
        (port, eth0) => Some(format!(
            "bridge port: {}; eth0: {}",
            port.as_deref().unwrap_or("forwarding"),
            eth0.as_deref().unwrap_or("up")
        )),
    })
}

/// Why a destination may be reached from a namespace, or why not.
pub fn check_destination(
    from: Option<&str>,
    from_is_ours: bool,
    dst: IpAddr,
) -> Result<(), String> {
    if dst.is_loopback() {
        return Ok(());
    }
    let Some(netns) = from else {
        return Err(format!(
            "refusing to connect to {dst} from the machine's own network namespace: only \
             loopback is allowed there; pod and service addresses are reached from inside a pod"
        ));
    };
    if !from_is_ours {
        return Err(format!(
            "refusing to connect to {dst} from network namespace {netns:?}: it was not created \
             by this run (or was already deleted)"
        ));
    }
    match dst {
        IpAddr::V4(v4) if in_cidr(v4, POD_CIDR) || in_cidr(v4, SERVICE_CIDR) => Ok(()),
        _ => Err(format!(
            "refusing to connect to {dst} from {netns}: only the pod CIDR {}/{}, the service \
             CIDR {}/{} and loopback are harness addresses",
            POD_CIDR.0, POD_CIDR.1, SERVICE_CIDR.0, SERVICE_CIDR.1
        )),
    }
}

/// The only way the harness makes sockets for mesh traffic. A socket is created inside a
/// harness namespace (on a short-lived helper thread that joins it, so no thread of the
/// runtime ever changes namespace) and stays there; connecting is allowed only to pod,
/// service or loopback addresses. The machine's own namespace (`from: None`) is only ever
/// used for loopback.
#[derive(Debug, Clone)]
pub struct SocketFactory {
    run: Arc<Run>,
}

impl SocketFactory {
    pub fn new(run: Arc<Run>) -> Self {
        Self { run }
    }

    /// A TCP socket in `from` (a namespace of this run, or `None` for the machine's own),
    /// allowed to connect to `dst`; otherwise `MeshError::NetworkSafety`.
    pub fn connector(&self, from: Option<&str>, dst: SocketAddr) -> Result<TcpSocket, MeshError> {
        let ours = from.is_some_and(|n| self.run.owns_netns(n));
        check_destination(from, ours, dst.ip()).map_err(MeshError::NetworkSafety)?;
        self.socket(from, dst.is_ipv4())
    }

    /// A listening socket bound to `bind` inside a namespace of this run.
    pub fn listener(&self, netns: &str, bind: SocketAddr) -> Result<TcpListener, MeshError> {
        if !self.run.owns_netns(netns) {
            return Err(MeshError::NetworkSafety(format!(
                "refusing to listen in network namespace {netns:?}: not created by this run"
            )));
        }
        let socket = self.socket(Some(netns), bind.is_ipv4())?;
        let ctx = || format!("cannot listen on {bind} in {netns}");
        socket.set_reuseaddr(true).map_err(MeshError::io(ctx()))?;
        socket.bind(bind).map_err(MeshError::io(ctx()))?;
        socket.listen(1024).map_err(MeshError::io(ctx()))
    }

    fn socket(&self, netns: Option<&str>, v4: bool) -> Result<TcpSocket, MeshError> {
        let domain = if v4 { libc::AF_INET } else { libc::AF_INET6 };
        let fd = match netns {
            None => new_socket(domain),
            Some(name) => socket_in_netns(name, domain),
        }
        .map_err(|source| MeshError::Io {
            context: format!(
                "cannot create a socket in {}",
                netns.unwrap_or("the machine's own namespace")
            ),
            source,
        })?;
        // SAFETY: `fd` is a fresh, owned, non-blocking TCP socket.
        Ok(unsafe { TcpSocket::from_raw_fd(fd.into_raw_fd()) })
    }
}

fn new_socket(domain: i32) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let fd = unsafe {
        libc::socket(
            domain,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a new descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Creates a socket inside `netns`: the socket maker joins the namespace, creates the socket
/// and goes back; the socket keeps the namespace it was created in.
fn socket_in_netns(netns: &str, domain: i32) -> io::Result<OwnedFd> {
    let handle = File::open(std::path::Path::new(NETNS_DIR).join(netns))?;
    let (tx, rx) = mpsc::sync_channel(1);
    let job: SocketJob = Box::new(move |home| {
        // SAFETY: setns on namespace files we hold open; it changes only the maker's thread.
        let made = if unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            Err(io::Error::last_os_error())
        } else {
            new_socket(domain)
        };
        // Back home, so the maker never keeps a deleted namespace alive.
        // SAFETY: as above, on the harness's own namespace file.
        if unsafe { libc::setns(home.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let _ = tx.send(made);
        Ok(())
    });
    socket_maker().send(job)?;
    rx.recv()
        .unwrap_or_else(|_| Err(io::Error::other("the socket maker thread has stopped")))
}

/// One socket request: run on the maker's thread, given the harness's own namespace.
type SocketJob = Box<dyn FnOnce(&File) -> io::Result<()> + Send>;

/// The one thread that makes sockets in other namespaces (setns changes only the calling
/// thread). A thread per socket cost the map and unmap of its stack, and the unmap interrupts
/// every core to flush its TLB; requests, probes and admin polls each make a socket.
fn socket_maker() -> &'static Worker<SocketJob> {
    static MAKER: OnceLock<Worker<SocketJob>> = OnceLock::new();
    MAKER.get_or_init(|| {
        Worker::start("meshcert-sockets", |jobs: mpsc::Receiver<SocketJob>| {
            let home = match File::open("/proc/thread-self/ns/net") {
                Ok(home) => home,
                Err(e) => {
                    // Ending drops the queue: every request fails instead of hanging.
                    tracing::error!("the socket maker cannot open its own namespace: {e}");
                    return;
                }
            };
            for job in jobs {
                if let Err(e) = job(&home) {
                    tracing::error!("the socket maker cannot return to its namespace: {e}");
                    return;
                }
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(None, false, "127.0.0.1", true)]
    #[case(None, false, "::1", true)]
    #[case(None, false, "10.244.1.10", false)]
    #[case(None, false, "10.96.0.10", false)]
    #[case(Some("mc-abcdef-1-client"), true, "10.244.1.10", true)]
    #[case(Some("mc-abcdef-1-client"), true, "10.244.255.255", true)]
    #[case(Some("mc-abcdef-1-client"), true, "10.96.0.10", true)]
    #[case(Some("mc-abcdef-1-client"), true, "127.0.0.1", true)]
    #[case(Some("mc-abcdef-1-client"), true, "10.245.0.1", false)]
    #[case(Some("mc-abcdef-1-client"), true, "10.97.0.1", false)]
    #[case(Some("mc-abcdef-1-client"), true, "8.8.8.8", false)]
    #[case(Some("mc-abcdef-1-client"), true, "fd00::1", false)]
    #[case(Some("other"), false, "10.244.1.10", false)]
    #[case(Some("other"), false, "127.0.0.1", true)]
    fn guard_allows_only_harness_addresses_from_harness_namespaces(
        #[case] from: Option<&str>,
        #[case] ours: bool,
        #[case] dst: &str,
        #[case] allowed: bool,
    ) {
        let result = check_destination(from, ours, dst.parse().unwrap());
        assert_eq!(result.is_ok(), allowed, "{result:?}");
    }

    #[rstest]
    #[case("10.244.0.0", POD_CIDR, true)]
    #[case("10.244.3.7", POD_CIDR, true)]
    #[case("10.243.255.255", POD_CIDR, false)]
    #[case("10.96.0.10", SERVICE_CIDR, true)]
    #[case("10.95.0.10", SERVICE_CIDR, false)]
    fn cidr_membership(#[case] ip: Ipv4Addr, #[case] cidr: (Ipv4Addr, u8), #[case] inside: bool) {
        assert_eq!(in_cidr(ip, cidr), inside);
    }
}

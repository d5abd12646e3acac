//! Namespaces, links, addresses and routes of the local mesh, made with system calls and
//! rtnetlink (the `rtnetlink` crate) instead of `ip` processes. Each `ip -n NS …` copies the
//! machine's mount table to remount /sys before it does anything: a suite run started about
//! 10 000 of them, a third of its CPU time, which the timers of the mesh under test then lacked.
//!
//! A netlink socket belongs to the namespace it was created in, so each piece of work runs on a
//! short-lived helper thread that joins the namespace, opens its socket and drives it; no
//! thread of the async runtime ever changes namespace.

use std::ffi::CString;
use std::fs::File;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use futures::TryStreamExt;
use meshcert_mesh::MeshError;
use rtnetlink::packet_route::link::{
    BridgePortState, InfoBridgePort, InfoData, InfoPortData, InfoVeth, LinkAttribute, LinkInfo,
    LinkMessage, State,
};
use rtnetlink::packet_route::route::{RouteProtocol, RouteScope};
use rtnetlink::{
    Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder,
};

use crate::netns::NETNS_DIR;

/// What a netlink request failed with, as the errno `ip` would have printed.
fn netlink_error(context: String) -> impl FnOnce(rtnetlink::Error) -> MeshError {
    move |e| MeshError::Io {
        context,
        source: match e {
            rtnetlink::Error::NetlinkError(message) => message.to_io(),
            other => io::Error::other(other.to_string()),
        },
    }
}

fn netns_path(netns: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(netns)
}

fn last_os_error(context: String) -> MeshError {
    MeshError::Io {
        context,
        source: io::Error::last_os_error(),
    }
}

fn c_path(path: &Path) -> Result<CString, MeshError> {
    CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| MeshError::InvalidRequest(format!("{} contains a NUL", path.display())))
}

/// Makes `/run/netns` a shared mount point, as `ip netns add` does on first use, so a
/// namespace mounted there is seen by mount namespaces made later (`ip netns exec`).
fn prepare_netns_dir() -> Result<(), MeshError> {
    static PREPARED: OnceLock<Result<(), String>> = OnceLock::new();
    PREPARED
        .get_or_init(|| {
            std::fs::create_dir_all(NETNS_DIR)
                .map_err(|e| format!("cannot create {NETNS_DIR}: {e}"))?;
            let dir = CString::new(NETNS_DIR).expect("no NUL");
            let share = || mount(&dir, &dir, libc::MS_SHARED | libc::MS_REC);
            // Not yet a mount point: bind it onto itself first.
            let ok = share() == 0
                || (mount(&dir, &dir, libc::MS_BIND | libc::MS_REC) == 0 && share() == 0);
            if !ok {
                return Err(format!(
                    "cannot make {NETNS_DIR} a shared mount: {}",
                    io::Error::last_os_error()
                ));
            }
            Ok(())
        })
        .clone()
        .map_err(MeshError::Environment)
}

/// mount(2) with no file system type or data: a bind, or a propagation change.
fn mount(source: &CString, target: &CString, flags: libc::c_ulong) -> libc::c_int {
    let none = CString::new("none").expect("no NUL");
    // SAFETY: mount(2) with valid C strings and no data; the caller checks the result.
    unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            none.as_ptr(),
            flags,
            std::ptr::null(),
        )
    }
}

/// Creates a named network namespace, as `ip netns add` does: a new namespace (made by a
/// helper thread, which alone enters it) bind-mounted on `/run/netns/<name>`.
pub(crate) fn add_netns(name: &str) -> Result<(), MeshError> {
    prepare_netns_dir()?;
    let path = netns_path(name);
    let target = c_path(&path)?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(MeshError::io(format!("cannot create {}", path.display())))?;
    let made = std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: unshare(2) of the network namespace changes only this helper thread.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(last_os_error(format!(
                    "cannot create network namespace {name}"
                )));
            }
            let own = CString::new("/proc/thread-self/ns/net").expect("no NUL");
            let bound = mount(&own, &target, libc::MS_BIND);
            if bound != 0 {
                return Err(last_os_error(format!(
                    "cannot bind network namespace {name} on {}",
                    path.display()
                )));
            }
            Ok(())
        })
        .join()
        .unwrap_or_else(|_| {
            Err(MeshError::Environment(
                "netns helper thread panicked".into(),
            ))
        })
    });
    if made.is_err() {
        let _ = std::fs::remove_file(&path);
    }
    made
}

/// Deletes a named network namespace, as `ip netns del` does: the mount goes and the namespace
/// with it once no process is left inside. An already deleted namespace is no error.
pub(crate) fn del_netns(name: &str) -> Result<(), MeshError> {
    let path = netns_path(name);
    if !path.exists() {
        return Ok(());
    }
    let target = c_path(&path)?;
    // SAFETY: umount2(2) with a valid C string; EINVAL (not mounted) is handled below.
    if unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) } != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINVAL) {
            return Err(MeshError::Io {
                context: format!("cannot unmount network namespace {name}"),
                source: e,
            });
        }
    }
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(MeshError::Io {
            context: format!("cannot remove {}", path.display()),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// An open handle on a named namespace, to join it or to move a link into it.
fn open_netns(netns: &str) -> Result<File, MeshError> {
    File::open(netns_path(netns)).map_err(MeshError::io(format!(
        "cannot open network namespace {netns}"
    )))
}

/// Runs `work` with an rtnetlink handle whose socket lives in `netns`, on a helper thread.
fn in_netns<T, F, Fut>(netns: &str, work: F) -> Result<T, MeshError>
where
    T: Send,
    F: FnOnce(Handle) -> Fut + Send,
    Fut: Future<Output = Result<T, MeshError>>,
{
    let namespace = open_netns(netns)?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns(2) on a namespace file we hold open; it changes only this thread.
            if unsafe { libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(last_os_error(format!(
                    "cannot join network namespace {netns}"
                )));
            }
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .map_err(MeshError::io("cannot start a netlink runtime"))?;
            runtime.block_on(async {
                let (connection, handle, _) = rtnetlink::new_connection()
                    .map_err(MeshError::io(format!("cannot open netlink in {netns}")))?;
                tokio::spawn(connection);
                work(handle).await
            })
        })
        .join()
        .unwrap_or_else(|_| {
            Err(MeshError::Environment(
                "netlink helper thread panicked".into(),
            ))
        })
    })
}

/// The link named `name`, as the kernel reports it.
async fn link(handle: &Handle, netns: &str, name: &str) -> Result<LinkMessage, MeshError> {
    handle
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await
        .map_err(netlink_error(format!("cannot find link {name} in {netns}")))?
        .ok_or_else(|| MeshError::Environment(format!("no link {name} in {netns}")))
}

async fn set_up(handle: &Handle, netns: &str, name: &str) -> Result<(), MeshError> {
    let up = LinkUnspec::new_with_name(name).up().build();
    link_request(
        handle.link().set(up).execute(),
        format!("cannot set {name} up in {netns}"),
    )
    .await
}

/// A link request (`RTM_NEWLINK`, `RTM_SETLINK`), its error given `context`.
async fn link_request(
    request: impl Future<Output = Result<(), rtnetlink::Error>>,
    context: String,
) -> Result<(), MeshError> {
    request.await.map_err(netlink_error(context))
}

/// `ip -n NETNS link set lo up`.
pub(crate) fn loopback_up(netns: &str) -> Result<(), MeshError> {
    in_netns(netns, |h| async move { set_up(&h, netns, "lo").await })
}

/// `ip -n NETNS link add NAME type bridge; ip -n NETNS link set NAME up`.
pub(crate) fn add_bridge(netns: &str, name: &str) -> Result<(), MeshError> {
    in_netns(netns, |h| async move {
        let bridge = LinkBridge::new(name).up().build();
        link_request(
            h.link().add(bridge).execute(),
            format!("cannot add bridge {name} in {netns}"),
        )
        .await
    })
}

/// A veth pair from `netns` to `peer_netns`, with the `netns` end enslaved to `bridge` and up,
/// and the peer end named `peer` (left down, for its owner to address and raise).
pub(crate) fn add_veth_to_bridge(
    netns: &str,
    name: &str,
    bridge: &str,
    peer_netns: &str,
    peer: &str,
) -> Result<(), MeshError> {
    let peer_namespace = open_netns(peer_netns)?;
    let peer_fd: RawFd = peer_namespace.as_raw_fd();
    in_netns(netns, |h| async move {
        let peer_message = LinkMessageBuilder::<LinkUnspec>::new()
            .name(peer.to_string())
            .setns_by_fd(peer_fd)
            .build();
        let pair = LinkVeth::new(name, peer)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_message)))
            .build();
        let context = format!("cannot add veth {name} in {netns} (peer {peer} in {peer_netns})");
        link_request(h.link().add(pair).execute(), context).await?;
        enslave_up(&h, netns, name, bridge).await
    })
}

/// `ip -n NETNS link set NAME master BRIDGE up`.
pub(crate) fn enslave(netns: &str, name: &str, bridge: &str) -> Result<(), MeshError> {
    in_netns(netns, |h| async move {
        enslave_up(&h, netns, name, bridge).await
    })
}

async fn enslave_up(h: &Handle, netns: &str, name: &str, bridge: &str) -> Result<(), MeshError> {
    let bridge_index = link(h, netns, bridge).await?.header.index;
    let port = LinkUnspec::new_with_name(name)
        .controller(bridge_index)
        .up()
        .build();
    link_request(
        h.link().set(port).execute(),
        format!("cannot enslave {name} to {bridge} in {netns}"),
    )
    .await
}

/// `ip -n NETNS addr add ADDRESS/PREFIX dev DEVICE`, and the device set up when `up`.
pub(crate) fn add_address(
    netns: &str,
    device: &str,
    address: Ipv4Addr,
    prefix: u8,
    up: bool,
) -> Result<(), MeshError> {
    in_netns(netns, |h| async move {
        let index = link(&h, netns, device).await?.header.index;
        h.address()
            .add(index, IpAddr::V4(address), prefix)
            .execute()
            .await
            .map_err(netlink_error(format!(
                "cannot add {address}/{prefix} to {device} in {netns}"
            )))?;
        if up {
            set_up(&h, netns, device).await?;
        }
        Ok(())
    })
}

/// `ip -n NETNS route add DESTINATION/PREFIX dev DEVICE`: a link-scope route, as `ip` makes
/// one without a gateway.
pub(crate) fn add_device_route(
    netns: &str,
    destination: Ipv4Addr,
    prefix: u8,
    device: &str,
) -> Result<(), MeshError> {
    in_netns(netns, |h| async move {
        let index = link(&h, netns, device).await?.header.index;
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(destination, prefix)
            .output_interface(index)
            .scope(RouteScope::Link)
            .protocol(RouteProtocol::Boot)
            .build();
        h.route()
            .add(route)
            .execute()
            .await
            .map_err(netlink_error(format!(
                "cannot add route {destination}/{prefix} dev {device} in {netns}"
            )))
    })
}

/// The IPv4 default routes of the main table, each described as `ip route` would.
pub(crate) fn default_routes(netns: &str) -> Result<Vec<String>, MeshError> {
    in_netns(netns, |h| async move {
        let routes: Vec<_> = h
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute()
            .try_collect()
            .await
            .map_err(netlink_error(format!("cannot list routes in {netns}")))?;
        Ok(routes
            .into_iter()
            .filter(|r| {
                r.header.destination_prefix_length == 0
                    && r.header.table == rtnetlink::packet_route::route::RouteHeader::RT_TABLE_MAIN
            })
            .map(|r| format!("default {:?}", r.attributes))
            .collect())
    })
}

/// Whether a link is operationally up and, when it is a bridge port, forwarding: a
/// description of its state while it is not.
pub(crate) fn link_pending(netns: &str, name: &str) -> Result<Option<String>, MeshError> {
    in_netns(netns, |h| async move {
        let message = link(&h, netns, name).await?;
        Ok(link_state_pending(&message).map(|state| format!("{name} in {netns}: {state}")))
    })
}

/// `None` when the link is up and (as a bridge port) forwarding; else what it is instead.
fn link_state_pending(message: &LinkMessage) -> Option<String> {
    let mut oper = None;
    let mut port = None;
    for attribute in &message.attributes {
        match attribute {
            LinkAttribute::OperState(state) => oper = Some(*state),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    if let LinkInfo::PortData(InfoPortData::BridgePort(data)) = info {
                        port = data.iter().find_map(|d| match d {
                            InfoBridgePort::State(s) => Some(*s),
                            _ => None,
                        });
                    }
                }
            }
            _ => {}
        }
    }
    let up = oper == Some(State::Up);
    let forwarding = port.is_none_or(|s| s == BridgePortState::Forwarding);
    if up && forwarding {
        None
    } else {
        Some(match port {
            Some(s) => format!("state {oper:?}, bridge port {s}"),
            None => format!("state {oper:?}"),
        })
    }
}

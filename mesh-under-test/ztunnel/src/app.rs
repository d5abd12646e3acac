//! Wiring: load the config, bind every port, start the proxy, health checker, config reloader
//! and HTTP servers, report ready, and stop cleanly on SIGTERM or SIGINT.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinSet;

use crate::ZtunnelError;
use crate::config::Config;
use crate::hbone::{HboneClient, Inbound};
use crate::health_check;
use crate::http;
use crate::local_config::LocalConfigError;
use crate::log::{Level, Logger, Record};
use crate::model::Model;
use crate::proxy::Outbound;
use crate::reload;
use crate::shutdown;
use crate::socket::{MarkedSockets, OriginalDst, SoOriginalDst, SocketFactory};
use crate::sources;
use crate::state::{ProxyState, defect_records};
use crate::tls::CertificateSource;

/// Reads the environment and runs until SIGTERM or SIGINT. What the binary calls.
pub fn run_from_env() -> Result<(), ZtunnelError> {
    let config = Config::from_env()?;
    // The control plane (health checks, reloads, admin) is light; the data plane has its own
    // threads, one runtime each (see `data_plane`).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(ZtunnelError::io("cannot start the tokio runtime"))?;
    runtime.block_on(run(config, termination()))
}

/// Resolves on SIGTERM or SIGINT.
pub async fn termination() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Runs the reference ztunnel until `stop` resolves. Logs go to stdout.
pub async fn run(config: Config, stop: impl Future<Output = ()>) -> Result<(), ZtunnelError> {
    let logger = Logger::stdout(config.log_format, config.log_filter.clone());
    let result = run_with_logger(config, logger.clone(), stop).await;
    logger.flush();
    result
}

async fn bind(addr: SocketAddr, purpose: &'static str) -> Result<TcpListener, ZtunnelError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ZtunnelError::Bind {
            addr,
            purpose,
            source,
        })
}

/// `threads` listeners on one outbound address with SO_REUSEPORT, so the kernel spreads new
/// connections over the data-plane threads. Port 0 (tests) is resolved by the first bind.
fn bind_outbound(
    addr: SocketAddr,
    threads: usize,
) -> Result<Vec<std::net::TcpListener>, ZtunnelError> {
    // SO_REUSEPORT would let us share a port another process holds with it too: a plain bind
    // first keeps "address in use" an error.
    if addr.port() != 0 {
        drop(
            std::net::TcpListener::bind(addr).map_err(|source| ZtunnelError::Bind {
                addr,
                purpose: "outbound traffic",
                source,
            })?,
        );
    }
    let mut listeners = Vec::with_capacity(threads);
    let mut addr = addr;
    for _ in 0..threads {
        let at = addr;
        let failed = move |source| ZtunnelError::Bind {
            addr: at,
            purpose: "outbound traffic",
            source,
        };
        let socket = match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        }
        .map_err(failed)?;
        socket.set_reuseaddr(true).map_err(failed)?;
        socket.set_reuseport(true).map_err(failed)?;
        // Linux copies TCP_NODELAY to accepted sockets: no setsockopt per connection.
        socket.set_nodelay(true).map_err(failed)?;
        socket.bind(addr).map_err(failed)?;
        let listener = socket.listen(1024).map_err(failed)?;
        addr = listener.local_addr().map_err(failed)?;
        listeners.push(listener.into_std().map_err(failed)?);
    }
    Ok(listeners)
}

/// One data-plane thread: its own single-threaded runtime serving one outbound listener, so a
/// connection's tasks never wake another thread. Resolves the receiver when the thread ends.
fn data_plane(
    n: usize,
    listener: std::net::TcpListener,
    proxy: Outbound,
    shutdown: shutdown::Shutdown,
) -> Result<tokio::sync::oneshot::Receiver<()>, ZtunnelError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ZtunnelError::io("cannot start a data-plane runtime"))?;
    let (ended, on_end) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(format!("ztunnel-data-{n}"))
        .spawn(move || {
            runtime.block_on(async move {
                match TcpListener::from_std(listener) {
                    Ok(listener) => proxy.serve(listener, shutdown).await,
                    Err(e) => proxy.accept_failed(&e),
                }
            });
            let _ = ended.send(());
        })
        .map_err(ZtunnelError::io("cannot start a data-plane thread"))?;
    Ok(on_end)
}

/// The listeners, bound before anything runs so a port in use fails the start.
struct Bound {
    outbound: Vec<std::net::TcpListener>,
    inbound: TcpListener,
    admin: TcpListener,
    stats: TcpListener,
    readiness: TcpListener,
}

/// [`run`], logging to `logger`.
pub async fn run_with_logger(
    config: Config,
    logger: Logger,
    stop: impl Future<Output = ()>,
) -> Result<(), ZtunnelError> {
    let (text, model) = load_model(&config, &logger)?;
    let sockets = marked_sockets(&config)?;
    let l = config.listeners.clone();
    let bound = bind_all(&config).await?;
    let drain = config.drain;
    let state = ProxyState::new(config, model, logger.clone());
    let (trigger, shutdown) = shutdown::channel();
    let mut tasks = JoinSet::new();
    let mut sources = sources::spawn(&state, &shutdown, &mut tasks);
    let certificates = sources.certificates.clone();
    spawn_tasks(
        &mut tasks,
        &state,
        bound,
        sockets,
        text,
        certificates,
        &shutdown,
    )?;
    tokio::pin!(stop);
    tokio::select! {
        _ = sources.ready() => {}
        _ = &mut stop => {
            shut_down(&logger, trigger, tasks, drain).await;
            return Ok(());
        }
    }

    let (workloads, services) = (
        state.model().config().workloads.len(),
        state.model().config().services.len(),
    );
    state.set_ready();
    logger.log(
        Record::new(Level::Info, "ztunnel", "ready")
            .bare("outbound", l.outbound)
            .bare("inbound", l.inbound)
            .bare("admin", l.admin)
            .bare("stats", l.stats)
            .bare("readiness", l.readiness)
            .uint("workloads", workloads as u64)
            .uint("services", services as u64),
    );

    stop.await;
    shut_down(&logger, trigger, tasks, drain).await;
    Ok(())
}

/// Logs the defects switched on, reads the local config and builds the model from it, warning
/// where this node's placement disagrees with the workload's. Returns the config text too.
fn load_model(config: &Config, logger: &Logger) -> Result<(String, Model), ZtunnelError> {
    for record in defect_records(config) {
        logger.log(record);
    }
    let Some(path) = config.local_xds_path() else {
        // Over xDS the model starts empty; readiness waits for the first push.
        let origin = config.config_origin();
        let empty = Model::build(
            Default::default(),
            &config.workload_info,
            &config.defects,
            &origin,
        )?;
        return Ok((String::new(), empty));
    };
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| LocalConfigError::Read {
        path: origin.clone(),
        source,
    })?;
    let model = reload::build_model(&text, &origin, &config.workload_info, &config.defects)?;
    if let Some(workload) = &model.proxy.workload {
        for problem in config.placement.disagreements(workload) {
            logger.log(Record::new(Level::Warn, "ztunnel", problem));
        }
    }
    Ok((text, model))
}

/// Upstream sockets carrying the packet mark, once it is known they can be marked.
fn marked_sockets(config: &Config) -> Result<Arc<dyn SocketFactory>, ZtunnelError> {
    let marked = MarkedSockets {
        mark: config.packet_mark,
    };
    marked.check().map_err(ZtunnelError::io(
        "checking that upstream sockets can be marked",
    ))?;
    Ok(Arc::new(marked))
}

/// Binds every listener of the config: the outbound ones (one per data-plane thread) first.
async fn bind_all(config: &Config) -> Result<Bound, ZtunnelError> {
    let l = &config.listeners;
    let outbound = bind_outbound(l.outbound, config.worker_threads)?;
    let inbound = bind(l.inbound, "HBONE (inbound)").await?;
    let admin = bind(l.admin, "the admin API").await?;
    let stats = bind(l.stats, "metrics").await?;
    let readiness = bind(l.readiness, "readiness").await?;
    Ok(Bound {
        outbound,
        inbound,
        admin,
        stats,
        readiness,
    })
}

/// Starts the data-plane threads, the health checker, the config reloader and the HTTP
/// servers; each is a task of the set returned, which ends when it does.
fn spawn_tasks(
    tasks: &mut JoinSet<()>,
    state: &Arc<ProxyState>,
    bound: Bound,
    sockets: Arc<dyn SocketFactory>,
    text: String,
    certs: CertificateSource,
    shutdown: &shutdown::Shutdown,
) -> Result<(), ZtunnelError> {
    let original_dst: Arc<dyn OriginalDst> = Arc::new(SoOriginalDst);
    let hbone = HboneClient::new(
        certs.clone(),
        Arc::clone(&sockets),
        state.config.connect_timeout,
    );
    let proxy = Outbound::new(Arc::clone(state), original_dst, Arc::clone(&sockets))
        .with_hbone(Arc::new(hbone));
    let inbound = Inbound::new(Arc::clone(state), Arc::clone(&sockets), certs);
    tasks.spawn(inbound.serve(bound.inbound, shutdown.clone()));
    for (n, listener) in bound.outbound.into_iter().enumerate() {
        let ended = data_plane(n, listener, proxy.clone(), shutdown.clone())?;
        tasks.spawn(async move {
            let _ = ended.await;
        });
    }
    tasks.spawn(health_check::run(
        Arc::clone(state),
        sockets,
        shutdown.clone(),
    ));
    tasks.spawn(reload::run(Arc::clone(state), text, shutdown.clone()));
    tasks.spawn(http::serve(
        bound.admin,
        Arc::clone(state),
        http::admin,
        shutdown.clone(),
    ));
    tasks.spawn(http::serve(
        bound.stats,
        Arc::clone(state),
        http::stats,
        shutdown.clone(),
    ));
    tasks.spawn(http::serve(
        bound.readiness,
        Arc::clone(state),
        http::readiness,
        shutdown.clone(),
    ));
    Ok(())
}

/// Tells every task to stop and waits for them up to the drain time.
async fn shut_down(
    logger: &Logger,
    trigger: shutdown::ShutdownTrigger,
    mut tasks: JoinSet<()>,
    drain: std::time::Duration,
) {
    logger.log(Record::new(Level::Info, "ztunnel", "shutting down"));
    trigger.fire();
    let drained =
        tokio::time::timeout(drain, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        logger.log(Record::new(
            Level::Warn,
            "ztunnel",
            "tasks still running after the drain time; exiting",
        ));
    }
}

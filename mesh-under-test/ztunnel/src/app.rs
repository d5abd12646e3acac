//! Wiring: load the config, bind every port, start the proxy, health checker, config reloader
//! and HTTP servers, report ready, and stop cleanly on SIGTERM or SIGINT.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::ZtunnelError;
use crate::config::Config;
use crate::health_check;
use crate::http;
use crate::local_config::LocalConfigError;
use crate::log::{Level, Logger, Record};
use crate::proxy::Outbound;
use crate::reload;
use crate::shutdown;
use crate::socket::{MarkedSockets, OriginalDst, SoOriginalDst, SocketFactory};
use crate::state::{ProxyState, defect_records};

/// How long in-flight tasks get to finish after shutdown is signalled.
const DRAIN: Duration = Duration::from_secs(2);

/// Reads the environment and runs until SIGTERM or SIGINT. What the binary calls.
pub fn run_from_env() -> Result<(), ZtunnelError> {
    let config = Config::from_env()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
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

async fn run_with_logger(
    config: Config,
    logger: Logger,
    stop: impl Future<Output = ()>,
) -> Result<(), ZtunnelError> {
    for record in defect_records(&config) {
        logger.log(record);
    }
    let path = config.local_xds_path.clone();
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(&path).map_err(|source| LocalConfigError::Read {
        path: origin.clone(),
        source,
    })?;
    let model = reload::build_model(&text, &origin, &config.workload_info, &config.defects)?;

    let marked = MarkedSockets::default();
    marked.check().map_err(ZtunnelError::io(
        "checking that upstream sockets can be marked",
    ))?;
    let sockets: Arc<dyn SocketFactory> = Arc::new(marked);
    let original_dst: Arc<dyn OriginalDst> = Arc::new(SoOriginalDst);

    let l = config.listeners.clone();
    let outbound = bind(l.outbound, "outbound traffic").await?;
    let admin = bind(l.admin, "the admin API").await?;
    let stats = bind(l.stats, "metrics").await?;
    let readiness = bind(l.readiness, "readiness").await?;

    let (workloads, services) = (
        model.config().workloads.len(),
        model.config().services.len(),
    );
    let state = ProxyState::new(config, model, logger.clone());
    let (trigger, shutdown) = shutdown::channel();
    let mut tasks = JoinSet::new();
    let proxy = Outbound::new(Arc::clone(&state), original_dst, Arc::clone(&sockets));
    tasks.spawn(proxy.serve(outbound, shutdown.clone()));
    tasks.spawn(health_check::run(
        Arc::clone(&state),
        sockets,
        shutdown.clone(),
    ));
    tasks.spawn(reload::run(Arc::clone(&state), text, shutdown.clone()));
    tasks.spawn(http::serve(
        admin,
        Arc::clone(&state),
        http::admin,
        shutdown.clone(),
    ));
    tasks.spawn(http::serve(
        stats,
        Arc::clone(&state),
        http::stats,
        shutdown.clone(),
    ));
    tasks.spawn(http::serve(
        readiness,
        Arc::clone(&state),
        http::readiness,
        shutdown.clone(),
    ));

    state.set_ready();
    logger.log(
        Record::new(Level::Info, "ztunnel", "ready")
            .bare("outbound", l.outbound)
            .bare("admin", l.admin)
            .bare("stats", l.stats)
            .bare("readiness", l.readiness)
            .uint("workloads", workloads as u64)
            .uint("services", services as u64),
    );

    stop.await;
    logger.log(Record::new(Level::Info, "ztunnel", "shutting down"));
    trigger.fire();
    let drained =
        tokio::time::timeout(DRAIN, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        logger.log(Record::new(
            Level::Warn,
            "ztunnel",
            "tasks still running after the drain time; exiting",
        ));
    }
    Ok(())
}

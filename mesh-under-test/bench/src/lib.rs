//! meshcert-bench, the data-plane benchmark: the ztunnel under test against the direct path,
//! on a fabric built as a cluster runs ambient (see `fabric`): a client pod and three backend
//! pods on one node, each with its own ztunnel fed by istiod's pod (the run's CA, delta xDS),
//! every workload reached through HBONE. wrk and iperf3 run in the client pod, direct and
//! proxied runs interleaved, and each row is the median of the pair ratios with min and max.
//! Every ztunnel is started by the same launcher as every local mesh, so any binary can be
//! measured.

mod config;
mod fabric;
mod report;
mod runs;

use std::path::PathBuf;
use std::time::Duration;

use meshcert_local::ztunnel::ZtunnelCommand;
use meshcert_mesh::MeshError;

pub use report::{BenchReport, Blackhole, Ratios, parse_iperf, parse_wrk};

use fabric::Fabric;
use runs::{RssSampler, rss_kib};

/// What to measure and how long.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub ztunnel: ZtunnelCommand,
    /// One direct or proxied run (the bar: 10 s).
    pub duration: Duration,
    /// Direct/proxied pairs per test (the bar: 5).
    pub pairs: u32,
    /// wrk connections (the bar: 16).
    pub connections: u32,
    /// The root certificate, tokens, logs and the nginx configs go here.
    pub work_dir: PathBuf,
}

/// Runs every test; `progress` gets a line per run.
pub async fn run_bench(
    options: &BenchOptions,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<BenchReport, MeshError> {
    std::fs::create_dir_all(&options.work_dir).map_err(MeshError::io(format!(
        "cannot create {}",
        options.work_dir.display()
    )))?;
    // nginx resolves relative paths against its prefix, not our directory.
    let dir = options
        .work_dir
        .canonicalize()
        .map_err(MeshError::io(format!(
            "cannot resolve {}",
            options.work_dir.display()
        )))?;
    let fabric = Fabric::build(&options.ztunnel, &dir, progress).await?;
    let result = measure(&fabric, options, progress).await;
    let teardown = tokio::task::block_in_place(|| fabric.teardown());
    let report = result?;
    teardown?;
    Ok(report)
}

async fn measure(
    fabric: &Fabric,
    options: &BenchOptions,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<BenchReport, MeshError> {
    fabric.ready().await?;
    let mut report = BenchReport::default();
    let (mut cpu, mut connections) = (Duration::ZERO, 0.0);
    for pair in 1..=options.pairs {
        for (name, close) in [("close", true), ("keepalive", false)] {
            let (direct, direct_p50) = fabric.wrk(false, close, options).await?;
            let pid = fabric.client_ztunnel().pid();
            let cpu_before = fabric.cpu();
            let sampler = RssSampler::start(pid);
            let (proxied, proxied_p50) = fabric.wrk(true, close, options).await?;
            let rss = sampler.stop().max(rss_kib(pid));
            report.rss_max_kib = report.rss_max_kib.max(rss);
            if close {
                cpu += fabric.cpu().saturating_sub(cpu_before);
                connections += proxied * options.duration.as_secs_f64();
                let p50 = proxied_p50.as_secs_f64() / direct_p50.as_secs_f64().max(1e-9);
                report.close_p50.0.push(p50);
            }
            let ratio = proxied / direct.max(1e-9);
            report.throughput.entry(name).or_default().0.push(ratio);
            progress(&format!(
                "pair {pair}/{}: {name:<9} direct {direct:>9.0} req/s, proxied {proxied:>9.0} req/s, ratio {ratio:.2}",
                options.pairs
            ));
        }
        let direct = fabric.iperf(false, options).await?;
        let proxied = fabric.iperf(true, options).await?;
        let ratio = proxied / direct.max(1e-9);
        report.throughput.entry("bulk").or_default().0.push(ratio);
        progress(&format!(
            "pair {pair}/{}: bulk      direct {:>7.2} Gbit/s, proxied {:>7.2} Gbit/s, ratio {ratio:.2}",
            options.pairs,
            direct / 1e9,
            proxied / 1e9
        ));
    }
    report.cpu_per_connection = Duration::from_secs_f64(cpu.as_secs_f64() / connections.max(1.0));
    progress(
        "blackhole: one endpoint's port DROPped in its pod, 30 requests then 30 more, 2 s client timeout",
    );
    report.blackhole = fabric.blackhole().await?;
    Ok(report)
}

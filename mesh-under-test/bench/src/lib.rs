//! meshcert-bench, the data-plane benchmark: the ztunnel under test against the direct path, in one
//! network namespace of this run. Three endpoints (three addresses of one nginx with one worker)
//! sit behind a service VIP that iptables REDIRECTs to 15001. The iperf3 server is a workload of
//! its own, reached pod-to-pod (its address REDIRECTed too) and in no service, so no health check
//! ever connects to it: iperf3 takes any connection during a test's setup as a data stream and
//! aborts the test. wrk and iperf3 run inside the namespace, direct and proxied runs interleaved,
//! and each row is the median of the pair ratios with min and max. The ztunnel is started by the
//! same launcher as every local mesh, so any binary can be measured.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshcert_local::admin::Admin;
use meshcert_local::client;
use meshcert_local::netns::{self, SocketFactory, ip, netns_exec};
use meshcert_local::run::{EntryId, Ledger, Run};
use meshcert_local::ztunnel::{
    self, ConfigFeed, LaunchSpec, OutputLog, ZtunnelCommand, ZtunnelProcess,
};
use meshcert_mesh::MeshError;
use meshcert_ztunnel::local_config::{
    HealthPolicy, LoadBalancer, LoadBalancerMode, LocalConfig, LocalWorkload, NetworkAddress,
    Service,
};

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 10);
const ENDPOINTS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(10, 244, 0, 11),
    Ipv4Addr::new(10, 244, 0, 12),
    Ipv4Addr::new(10, 244, 0, 13),
];
/// The iperf3 workload's address (the same server also answers on the endpoints' addresses,
/// which the direct runs use).
const BULK: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 14);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const HTTP_PORT: u16 = 8080;
const SERVICE_PORT: u16 = 80;
/// The cluster of the benchmark's workload uids, given to the ztunnel as `CLUSTER_ID`.
const CLUSTER_ID: &str = "bench";
const IPERF_PORT: u16 = 5201;

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
    /// Config, logs and the nginx config go here.
    pub work_dir: PathBuf,
}

/// Ratios of the pairs of one test.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ratios(pub Vec<f64>);

impl Ratios {
    pub fn median(&self) -> f64 {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }
    pub fn min(&self) -> f64 {
        self.0.iter().copied().fold(f64::INFINITY, f64::min)
    }
    pub fn max(&self) -> f64 {
        self.0.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    }
}

/// The blackhole row: one endpoint DROPped, requests one after another.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Blackhole {
    pub requests: u32,
    pub failed: u32,
    /// Worst latency minus the median latency before the DROP.
    pub worst_added: Duration,
    /// From the first failed connect the ztunnel logged to its breaker opening; `None` when it
    /// never logged one.
    pub breaker_open_after: Option<Duration>,
    /// The same requests a minute later would need a minute: instead, a second round right
    /// after tells whether failures persist.
    pub failed_second_round: u32,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct BenchReport {
    /// `close`, `keepalive`, `bulk` -> proxied/direct throughput per pair.
    pub throughput: BTreeMap<&'static str, Ratios>,
    /// p50 latency proxied/direct of the new-connection test.
    pub close_p50: Ratios,
    pub rss_max_kib: u64,
    /// Proxy CPU time per proxied connection of the new-connection test.
    pub cpu_per_connection: Duration,
    pub blackhole: Blackhole,
}

/// Parses wrk's output: requests per second and the p50 latency.
pub fn parse_wrk(out: &str) -> Result<(f64, Duration), String> {
    let rps = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .ok_or_else(|| format!("no Requests/sec in wrk's output: {out}"))?;
    let p50 = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("50%"))
        .ok_or_else(|| format!("no 50% latency in wrk's output (--latency): {out}"))?;
    let p50 = meshcert_model::duration::parse(p50.trim())
        .map_err(|why| format!("wrk's 50% latency: {why}"))?;
    Ok((rps, p50))
}

/// Parses `iperf3 -J`: received bits per second.
pub fn parse_iperf(out: &str) -> Result<f64, String> {
    let v: serde_json::Value =
        serde_json::from_str(out).map_err(|e| format!("iperf3 -J output: {e}"))?;
    if let Some(error) = v.get("error").and_then(|e| e.as_str()) {
        return Err(format!("iperf3: {error}"));
    }
    v.pointer("/end/sum_received/bits_per_second")
        .and_then(|b| b.as_f64())
        .ok_or_else(|| "iperf3 -J output has no end.sum_received.bits_per_second".into())
}

fn config() -> LocalConfig {
    let host = "backend.bench.svc.cluster.local";
    let ports: BTreeMap<u16, u16> = BTreeMap::from([(SERVICE_PORT, HTTP_PORT)]);
    let workload = |name: &str, ip: Ipv4Addr, serves: bool| {
        let text = format!(
            "uid: {CLUSTER_ID}//v1/Pod/bench/{name}\nname: {name}\nnamespace: bench\nserviceAccount: {name}\n\
             clusterId: {CLUSTER_ID}\nworkloadIps: [\"{ip}\"]\nservices: {{}}\n"
        );
        let mut w: LocalWorkload =
            serde_saphyr::from_str(&text).expect("the benchmark's own workload parses");
        if serves {
            w.services.insert(format!("bench/{host}"), ports.clone());
        }
        w
    };
    let mut workloads = vec![
        workload("bench-client", CLIENT, false),
        workload("bench-bulk", BULK, false),
    ];
    for (i, ip) in ENDPOINTS.iter().enumerate() {
        workloads.push(workload(&format!("bench-backend-{}", i + 1), *ip, true));
    }
    LocalConfig {
        workloads,
        policies: vec![],
        services: vec![Service {
            name: "backend".into(),
            namespace: "bench".into(),
            hostname: host.into(),
            vips: vec![NetworkAddress {
                network: String::new(),
                address: VIP.into(),
            }],
            ports,
            subject_alt_names: vec![],
            load_balancer: Some(LoadBalancer {
                routing_preferences: vec![],
                mode: LoadBalancerMode::Standard,
                health_policy: HealthPolicy::OnlyHealthy,
            }),
        }],
    }
}

fn nginx_conf(dir: &std::path::Path) -> String {
    let d = dir.display();
    format!(
        "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/nginx-error.log warn;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/nginx-body;\n  proxy_temp_path {d}/nginx-proxy;\n\
           fastcgi_temp_path {d}/nginx-fastcgi;\n  uwsgi_temp_path {d}/nginx-uwsgi;\n  scgi_temp_path {d}/nginx-scgi;\n\
           keepalive_requests 1000000;\n  server {{\n    listen {HTTP_PORT} backlog=4096;\n\
             location / {{ return 200 \"ok\\n\"; }}\n  }}\n}}\n"
    )
}

/// The benchmark's namespace and its processes; released from the ledger at the end.
struct Bench {
    /// Held for its lock file, which tells a sweeper this run is alive.
    _run: Arc<Run>,
    ledger: Arc<Ledger>,
    netns: String,
    sockets: SocketFactory,
    ztunnel: Arc<ZtunnelProcess>,
    entries: Vec<EntryId>,
    created: Instant,
}

fn spawn(
    ledger: &Ledger,
    netns: &str,
    program: &str,
    args: &[&str],
    dir: &std::path::Path,
    created: Instant,
    name: &str,
) -> Result<(Arc<ZtunnelProcess>, EntryId), MeshError> {
    let command = ZtunnelCommand {
        program: program.into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        env: vec![],
        reloads_config: true,
    };
    let spec = LaunchSpec {
        netns: netns.into(),
        pod_namespace: "bench".into(),
        pod_name: name.into(),
        service_account: name.into(),
        config: ConfigFeed::File(dir.join("ztunnel.yaml")),
        node_name: String::new(),
        instance_ip: String::new(),
        network: String::new(),
        cluster_id: CLUSTER_ID.into(),
    };
    let log = OutputLog::create(&dir.join(format!("{name}.log")), created)?;
    let process = ZtunnelProcess::launch(&command, &spec, log)?;
    let entry = ledger.record(Box::new(process.clone()));
    Ok((process, entry))
}

/// One namespace for the whole benchmark: a veth pair with both ends inside (no dummy module
/// everywhere), every address on eth0, ambient's capture of the service and iperf3 traffic.
fn wire(netns: &str) -> Result<(), MeshError> {
    ip(&[
        "-n", netns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
    ])?;
    ip(&["-n", netns, "link", "set", "eth1", "up"])?;
    ip(&["-n", netns, "link", "set", "eth0", "up"])?;
    for addr in [CLIENT, BULK].into_iter().chain(ENDPOINTS) {
        ip(&[
            "-n",
            netns,
            "addr",
            "add",
            &format!("{addr}/16"),
            "dev",
            "eth0",
        ])?;
    }
    ztunnel::install_redirect(netns)?;
    // Pod-to-pod traffic to the iperf3 workload is captured too, as ambient does.
    let bulk = BULK.to_string();
    let port = IPERF_PORT.to_string();
    ztunnel::redirect(netns, &["-d", &bulk, "--dport", &port])?;
    Ok(())
}

/// nginx and the iperf3 server, in the benchmark's namespace.
fn start_servers(
    ledger: &Arc<Ledger>,
    netns: &str,
    dir: &Path,
    created: Instant,
) -> Result<Vec<EntryId>, MeshError> {
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, nginx_conf(dir))
        .map_err(MeshError::io(format!("cannot write {}", conf.display())))?;
    let conf_arg = conf.display().to_string();
    let (_, nginx) = spawn(
        ledger,
        netns,
        "nginx",
        &["-c", &conf_arg],
        dir,
        created,
        "nginx",
    )?;
    let port = IPERF_PORT.to_string();
    let (_, iperf) = spawn(
        ledger,
        netns,
        "iperf3",
        &["-s", "-p", &port],
        dir,
        created,
        "iperf3",
    )?;
    Ok(vec![nginx, iperf])
}

impl Bench {
    fn setup(options: &BenchOptions) -> Result<Bench, MeshError> {
        let run = Run::start()?;
        let ledger = Ledger::new(format!("benchmark of run {}", run.id()));
        let created = Instant::now();
        std::fs::create_dir_all(&options.work_dir).map_err(MeshError::io(format!(
            "cannot create {}",
            options.work_dir.display()
        )))?;
        let netns = run.netns_name(run.next_mesh_number(), "bench");
        let mut entries = vec![netns::create_netns(&run, &ledger, &netns)?];
        wire(&netns)?;
        // nginx resolves relative paths against its prefix, not our directory.
        let dir = options
            .work_dir
            .canonicalize()
            .map_err(MeshError::io(format!(
                "cannot resolve {}",
                options.work_dir.display()
            )))?;
        entries.extend(start_servers(&ledger, &netns, &dir, created)?);
        std::fs::write(dir.join("ztunnel.yaml"), config().to_yaml())
            .map_err(MeshError::io("cannot write the benchmark's ztunnel config"))?;
        // The benchmark's config writes no network and cluster `bench` (see `config`).
        let spec = LaunchSpec {
            netns: netns.clone(),
            pod_namespace: "bench".into(),
            pod_name: "bench-client".into(),
            service_account: "bench-client".into(),
            config: ConfigFeed::File(dir.join("ztunnel.yaml")),
            node_name: String::new(),
            instance_ip: CLIENT.to_string(),
            network: String::new(),
            cluster_id: CLUSTER_ID.into(),
        };
        let log = OutputLog::create(&dir.join("ztunnel.log"), created)?;
        let process = ZtunnelProcess::launch(&options.ztunnel, &spec, log)?;
        entries.push(ledger.record(Box::new(process.clone())));
        Ok(Bench {
            sockets: SocketFactory::new(run.clone()),
            _run: run,
            ledger,
            netns,
            ztunnel: process,
            entries,
            created,
        })
    }

    async fn ready(&self) -> Result<(), MeshError> {
        let admin = Admin {
            sockets: self.sockets.clone(),
            netns: self.netns.clone(),
            process: self.ztunnel.clone(),
            pod: "bench/bench-client".into(),
        };
        admin
            .wait_ready(meshcert_local::admin::READY_DEADLINE)
            .await?;
        // nginx and iperf3 listening, and the proxy passing a request.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let direct = self.get(ENDPOINTS[0], HTTP_PORT).await;
            let proxied = self.get(VIP, SERVICE_PORT).await;
            if direct.is_ok() && proxied.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(MeshError::Environment(format!(
                    "the benchmark's backends or proxy never answered: direct {direct:?}, proxied {proxied:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn get(&self, ip: Ipv4Addr, port: u16) -> Result<Duration, String> {
        let started = Instant::now();
        match client::get(
            &self.sockets,
            Some(&self.netns),
            SocketAddr::from((ip, port)),
            "backend",
            "/",
            Duration::from_secs(2),
        )
        .await
        {
            Ok(Ok(r)) if r.status == 200 => Ok(started.elapsed()),
            Ok(Ok(r)) => Err(format!("HTTP {}", r.status)),
            Ok(Err(failure)) => Err(failure.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn exec(&self, program: &'static str, args: Vec<String>) -> Result<String, MeshError> {
        let netns = self.netns.clone();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            netns_exec(&netns, program, &args)
        })
        .await
        .map_err(|e| MeshError::Environment(format!("{program} task: {e}")))?
    }

    async fn wrk(
        &self,
        proxied: bool,
        close: bool,
        options: &BenchOptions,
    ) -> Result<(f64, Duration), MeshError> {
        let url = if proxied {
            format!("http://{VIP}:{SERVICE_PORT}/")
        } else {
            format!("http://{}:{HTTP_PORT}/", ENDPOINTS[0])
        };
        let mut args = vec![
            "-t".to_string(),
            "2".into(),
            "-c".into(),
            options.connections.to_string(),
            "-d".into(),
            format!("{}s", options.duration.as_secs().max(1)),
            "--latency".into(),
        ];
        if close {
            args.extend(["-H".to_string(), "Connection: close".into()]);
        }
        args.push(url);
        let out = self.exec("wrk", args).await?;
        parse_wrk(&out).map_err(MeshError::Environment)
    }

    async fn iperf(&self, proxied: bool, options: &BenchOptions) -> Result<f64, MeshError> {
        let target = if proxied { BULK } else { ENDPOINTS[0] };
        let args = vec![
            "-c".to_string(),
            target.to_string(),
            "-p".into(),
            IPERF_PORT.to_string(),
            "-t".into(),
            options.duration.as_secs().max(1).to_string(),
            "-J".into(),
        ];
        let out = self.exec("iperf3", args).await?;
        parse_iperf(&out).map_err(MeshError::Environment)
    }

    /// utime + stime of the proxy.
    fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.ztunnel.pid()))
            .unwrap_or_default();
        // Fields after the command name, which may hold spaces: state is field 3.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0)
            + fields
                .get(12)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0);
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        Duration::from_secs_f64(ticks as f64 / hz)
    }

    /// 30 requests through the proxy, one after another: failures and the worst latency (a
    /// failure counts as the 2 s timeout).
    async fn round(&self) -> (u32, Duration) {
        let (mut failed, mut worst) = (0, Duration::ZERO);
        for _ in 0..30 {
            match self.get(VIP, SERVICE_PORT).await {
                Ok(latency) => worst = worst.max(latency),
                Err(_) => {
                    failed += 1;
                    worst = worst.max(Duration::from_secs(2));
                }
            }
        }
        (failed, worst)
    }

    async fn blackhole(&self) -> Result<Blackhole, MeshError> {
        let mut baseline = Vec::new();
        for _ in 0..30 {
            if let Ok(latency) = self.get(VIP, SERVICE_PORT).await {
                baseline.push(latency);
            }
        }
        baseline.sort();
        let median = baseline
            .get(baseline.len() / 2)
            .copied()
            .unwrap_or_default();
        let rule = format!(
            "INPUT -p tcp -d {} --dport {HTTP_PORT} -j DROP",
            ENDPOINTS[0]
        );
        let words: Vec<String> = rule.split(' ').map(str::to_string).collect();
        let mut add = vec!["-w".to_string(), "5".into(), "-A".into()];
        add.extend(words.iter().cloned());
        self.exec("iptables", add).await?;
        let since = self.created.elapsed();
        let (failed, worst) = self.round().await;
        let (failed_second_round, _) = self.round().await;
        let mut delete = vec!["-w".to_string(), "5".into(), "-D".into()];
        delete.extend(words);
        self.exec("iptables", delete).await?;
        let lines: Vec<_> = self
            .ztunnel
            .output()
            .lines()
            .into_iter()
            .map(|l| l.parse())
            .filter(|l| l.observed_at >= since)
            .collect();
        let blocked = format!("{}:{HTTP_PORT}", ENDPOINTS[0]);
        let first_failure = lines
            .iter()
            .find(|l| l.level == "warn" && l.field("dst.addr") == Some(blocked.as_str()))
            .map(|l| l.observed_at);
        let opened = lines
            .iter()
            .find(|l| l.target == "circuit_breaker" && l.message == "endpoint marked unhealthy")
            .map(|l| l.observed_at);
        Ok(Blackhole {
            requests: 30,
            failed,
            worst_added: worst.saturating_sub(median),
            breaker_open_after: match (first_failure, opened) {
                (Some(f), Some(o)) => Some(o.saturating_sub(f)),
                _ => None,
            },
            failed_second_round,
        })
    }

    fn teardown(self) -> Result<(), MeshError> {
        let mut result = Ok(());
        for entry in self.entries.into_iter().rev() {
            let r = self.ledger.release(entry);
            if result.is_ok() {
                result = r;
            }
        }
        result
    }
}

/// Runs every test; `progress` gets a line per run.
pub async fn run_bench(
    options: &BenchOptions,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<BenchReport, MeshError> {
    let bench = tokio::task::block_in_place(|| Bench::setup(options))?;
    let result = measure(&bench, options, progress).await;
    let teardown = tokio::task::block_in_place(|| bench.teardown());
    let report = result?;
    teardown?;
    Ok(report)
}

async fn measure(
    bench: &Bench,
    options: &BenchOptions,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<BenchReport, MeshError> {
    bench.ready().await?;
    let mut report = BenchReport::default();
    let mut cpu = Duration::ZERO;
    let mut connections = 0.0;
    for pair in 1..=options.pairs {
        for (name, close) in [("close", true), ("keepalive", false)] {
            let (direct, direct_p50) = bench.wrk(false, close, options).await?;
            let cpu_before = bench.cpu();
            let sampler = RssSampler::start(bench.ztunnel.pid());
            let (proxied, proxied_p50) = bench.wrk(true, close, options).await?;
            let rss = sampler.stop().max(rss_kib(bench.ztunnel.pid()));
            report.rss_max_kib = report.rss_max_kib.max(rss);
            if close {
                cpu += bench.cpu().saturating_sub(cpu_before);
                connections += proxied * options.duration.as_secs_f64();
                report
                    .close_p50
                    .0
                    .push(proxied_p50.as_secs_f64() / direct_p50.as_secs_f64().max(1e-9));
            }
            let ratio = proxied / direct.max(1e-9);
            report.throughput.entry(name).or_default().0.push(ratio);
            progress(&format!(
                "pair {pair}/{}: {name:<9} direct {direct:>9.0} req/s, proxied {proxied:>9.0} req/s, ratio {ratio:.2}",
                options.pairs
            ));
        }
        let direct = bench.iperf(false, options).await?;
        let proxied = bench.iperf(true, options).await?;
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
    progress("blackhole: one endpoint DROPped, 30 requests then 30 more, 2 s client timeout");
    report.blackhole = bench.blackhole().await?;
    Ok(report)
}

/// A process's resident set, from `/proc/<pid>/status`; 0 when gone.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Samples a process's RSS every 100 ms on a thread until stopped; returns the maximum.
struct RssSampler {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut max = 0;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                max = max.max(rss_kib(pid));
                std::thread::sleep(Duration::from_millis(100));
            }
            max
        });
        RssSampler { stop, thread }
    }

    fn stop(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap_or(0)
    }
}

impl BenchReport {
    /// The table of the issue, measured.
    pub fn table(&self) -> String {
        let row = |name: &str, r: Option<&Ratios>, bar: &str| match r {
            Some(r) => format!(
                "| {name} | {:.2} (min {:.2}, max {:.2}, {} pairs) | {bar} |\n",
                r.median(),
                r.min(),
                r.max(),
                r.0.len()
            ),
            None => format!("| {name} | not measured | {bar} |\n"),
        };
        let mut out = String::from("| test | proxied / direct, median | bar |\n|---|---|---|\n");
        let rows = [
            (
                "close",
                "new TCP connection per request (wrk, Connection: close)",
                ">= 0.60",
            ),
            ("keepalive", "keep-alive requests (wrk)", ">= 0.55"),
            ("bulk", "bulk transfer (iperf3)", ">= 0.90"),
        ];
        for (key, name, bar) in rows {
            out.push_str(&row(name, self.throughput.get(key), bar));
            if key == "close" {
                out.push_str(&format!(
                    "| p50 latency, new connection per request | x{:.2} (min {:.2}, max {:.2}) | (upstream x4.7) |\n",
                    self.close_p50.median(),
                    self.close_p50.min(),
                    self.close_p50.max()
                ));
            }
        }
        out.push_str(&format!(
            "| resident memory at 16 connections | {:.1} MiB | <= 15 MiB |\n",
            self.rss_max_kib as f64 / 1024.0
        ));
        out.push_str(&format!(
            "| proxy CPU per new connection | {:.1} us | - |\n",
            self.cpu_per_connection.as_secs_f64() * 1e6
        ));
        let b = &self.blackhole;
        out.push_str(&format!(
            "| one of three endpoints blackholed, {} requests, 2 s timeout | {} fail (then {} of {} more); worst added latency {} ms; breaker open {} | 0 fail; <= 250 ms; <= 500 ms |\n",
            b.requests,
            b.failed,
            b.failed_second_round,
            b.requests,
            b.worst_added.as_millis(),
            b.breaker_open_after
                .map(|d| format!("{} ms after the first failed connect", d.as_millis()))
                .unwrap_or_else(|| "never logged".into())
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_output_gives_rate_and_median() {
        let out = "Running 10s test @ http://10.96.0.10:80/\n  2 threads and 16 connections\n\
                   Latency Distribution\n     50%  412.00us\n     75%    1.02ms\n\
                   98000 requests in 10.00s, 15.00MB read\nRequests/sec:   9800.12\nTransfer/sec:      1.50MB\n";
        let (rps, p50) = parse_wrk(out).unwrap();
        assert_eq!(rps, 9800.12);
        assert_eq!(p50, Duration::from_micros(412));
        assert!(parse_wrk("nothing").is_err());
        let slow = out.replace("412.00us", "2.00s");
        assert_eq!(parse_wrk(&slow).unwrap().1, Duration::from_secs(2));
        let garbled = out.replace("412.00us", "412.00 furlongs");
        assert!(
            parse_wrk(&garbled)
                .unwrap_err()
                .contains("wrk's 50% latency")
        );
    }

    #[test]
    fn iperf_json_gives_received_rate_or_its_error() {
        assert_eq!(
            parse_iperf(r#"{"end":{"sum_received":{"bits_per_second":9.5e9}}}"#).unwrap(),
            9.5e9
        );
        assert!(
            parse_iperf(r#"{"error":"unable to connect"}"#)
                .unwrap_err()
                .contains("unable to connect")
        );
    }

    #[test]
    fn medians_of_pairs() {
        assert_eq!(Ratios(vec![0.5, 0.7, 0.6]).median(), 0.6);
        assert_eq!(Ratios(vec![0.5, 0.7]).median(), 0.6);
        assert_eq!(Ratios(vec![0.5, 0.7]).min(), 0.5);
    }

    #[test]
    fn the_benchmarks_config_parses_back() {
        let yaml = config().to_yaml();
        let parsed = LocalConfig::parse(&yaml, "bench.yaml").unwrap();
        // Client, iperf3 workload, three endpoints; only the endpoints serve the service, and
        // only on the HTTP port: health checks must never reach iperf3.
        assert_eq!(parsed.workloads.len(), 5);
        // The cluster the launcher gives the ztunnel as CLUSTER_ID, and no network: what the
        // reference checks its environment against.
        assert!(
            parsed
                .workloads
                .iter()
                .all(|w| w.cluster_id == CLUSTER_ID && w.network.is_empty())
        );
        assert_eq!(parsed.services[0].vips[0].to_string(), "/10.96.0.10");
        assert_eq!(
            parsed.services[0].ports,
            BTreeMap::from([(SERVICE_PORT, HTTP_PORT)])
        );
        let serving: Vec<&str> = parsed
            .workloads
            .iter()
            .filter(|w| !w.services.is_empty())
            .map(|w| w.name.as_str())
            .collect();
        assert_eq!(
            serving,
            ["bench-backend-1", "bench-backend-2", "bench-backend-3"]
        );
    }
}

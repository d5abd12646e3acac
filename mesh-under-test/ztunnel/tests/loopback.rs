//! The proxy core on real loopback sockets, no iptables: the original destination is injected,
//! backends listen on 127.0.0.2-6 and 127.0.2.x. Checks round robin, retry past a refused
//! endpoint, the `no-retry` defect, the direct-connection refusal, health checks, access log
//! fields, metrics, config reload, failover level by level (TD-FO-1) and `Strict` drops
//! (TD-ITP-1). Every step is awaited directly, under one overall timeout; the one wait for a
//! recovery is a loop bounded in count and time.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use meshcert_ztunnel::config::{self, Config};
use meshcert_ztunnel::health_check::{self, check_round};
use meshcert_ztunnel::log::{LogFilter, LogFormat, Logger};
use meshcert_ztunnel::proxy::Outbound;
use meshcert_ztunnel::reload::{Reloader, build_model};
use meshcert_ztunnel::shutdown;
use meshcert_ztunnel::socket::{PlainSockets, SocketFactory};
use meshcert_ztunnel::state::ProxyState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const BOUND: Duration = Duration::from_secs(20);
const ROUND_ROBIN_VIP: &str = "127.0.1.10:8000";
const FLAKY_VIP: &str = "127.0.1.11:8000";
const CLOSE_VIP: &str = "127.0.1.12:8000";
const LOCAL_VIP: &str = "127.0.1.13:8000";
const REQUEST: &[u8] = b"GET /hostname HTTP/1.0\r\n\r\n";

/// Accepts until `stop` resolves, counting connections; each one reads the request to its end,
/// answers `name`, and closes.
async fn serve(
    listener: TcpListener,
    name: &'static str,
    accepted: Arc<AtomicUsize>,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            conn = listener.accept() => {
                let Ok((mut stream, _)) = conn else { return };
                accepted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let _ = stream.read_to_end(&mut request).await;
                    let _ = stream.write_all(name.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
            _ = &mut stop => return,
        }
    }
}

/// A backend that answers its own name for the rest of the test.
async fn backend(ip: &str, name: &'static str) -> u16 {
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(serve(
        listener,
        name,
        Arc::default(),
        std::future::pending(),
    ));
    port
}

/// A backend that can be stopped (its port then refuses connects) and restarted on the same
/// address, and that counts the connections it accepted. Dropping it stops it.
struct Backend {
    name: &'static str,
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    running: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl Backend {
    async fn start(ip: &str, name: &'static str) -> Self {
        let listener = TcpListener::bind((ip, 0)).await.unwrap();
        let mut backend = Backend {
            name,
            addr: listener.local_addr().unwrap(),
            accepted: Arc::default(),
            running: None,
        };
        backend.run(listener);
        backend
    }

    fn run(&mut self, listener: TcpListener) {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(
            listener,
            self.name,
            Arc::clone(&self.accepted),
            async move {
                let _ = stopped.await;
            },
        ));
        self.running = Some((stop, task));
    }

    /// Returns once the listener is closed.
    async fn stop(&mut self) {
        if let Some((stop, task)) = self.running.take() {
            let _ = stop.send(());
            task.await.unwrap();
        }
    }

    async fn restart(&mut self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.run(listener);
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// A port on `ip` where nothing listens: connects are refused.
async fn refused_port(ip: &str) -> u16 {
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    listener.local_addr().unwrap().port()
}

/// Where a workload runs.
#[derive(Debug, Clone, Copy)]
struct Place {
    node: &'static str,
    region: &'static str,
    zone: &'static str,
}

/// The client's place.
const HOME: Place = Place {
    node: "node-a",
    region: "r1",
    zone: "z1",
};

fn workload(name: &str, ip: &str, services: &str) -> String {
    workload_at(name, ip, HOME, services)
}

fn workload_at(name: &str, ip: &str, at: Place, services: &str) -> String {
    let Place { node, region, zone } = at;
    format!(
        "- uid: c1//v1/Pod/httpbin/{name}\n  name: {name}\n  namespace: httpbin\n  \
         serviceAccount: {name}\n  workloadIps: [\"{ip}\"]\n  node: {node}\n  clusterId: c1\n  \
         locality: {{region: {region}, zone: {zone}, subzone: \"\"}}\n  services: {services}\n"
    )
}

fn service(name: &str, vip: &str) -> String {
    format!(
        "- name: {name}\n  namespace: httpbin\n  hostname: {name}.httpbin.svc.cluster.local\n  \
         vips: [\"/{vip}\"]\n  ports: {{8000: 8080}}\n"
    )
}

/// A service whose load balancer is `routingPreferences: [<prefs>], mode: <mode>`.
fn balanced_service(name: &str, vip: &str, prefs: &str, mode: &str) -> String {
    service(name, vip)
        + &format!(
            "  loadBalancer: {{routingPreferences: [{prefs}], mode: {mode}, \
             healthPolicy: OnlyHealthy}}\n"
        )
}

fn port_map(svc: &str, target: u16) -> String {
    format!("{{\"httpbin/{svc}.httpbin.svc.cluster.local\": {{8000: {target}}}}}")
}

/// Starts the backends and writes the config: `in-ambient` has three replicas; `flaky` has a
/// refused endpoint that sorts first, then a live one.
async fn topology() -> String {
    let mut yaml = String::from("workloads:\n");
    yaml += &workload("client-1", "127.0.0.1", "{}");
    for (i, name) in ["in-ambient-a", "in-ambient-b", "in-ambient-c"]
        .into_iter()
        .enumerate()
    {
        let ip = format!("127.0.0.{}", i + 2);
        let port = backend(&ip, name).await;
        yaml += &workload(name, &ip, &port_map("in-ambient", port));
    }
    let dead = refused_port("127.0.0.5").await;
    yaml += &workload("flaky-a-dead", "127.0.0.5", &port_map("flaky", dead));
    let live = backend("127.0.0.6", "flaky-b-live").await;
    yaml += &workload("flaky-b-live", "127.0.0.6", &port_map("flaky", live));
    yaml += "services:\n";
    yaml += &service("in-ambient", ROUND_ROBIN_VIP.split(':').next().unwrap());
    yaml += &service("flaky", FLAKY_VIP.split(':').next().unwrap());
    yaml
}

/// A config file that is removed when the test ends, however it ends.
struct TempConfig(PathBuf);

impl TempConfig {
    fn new(tag: &str, text: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "meshcert-ztunnel-{tag}-{}.yaml",
            std::process::id()
        ));
        std::fs::write(&path, text).unwrap();
        Self(path)
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

struct Harness {
    state: Arc<ProxyState>,
    listener: TcpListener,
    sockets: Arc<dyn SocketFactory>,
    _file: TempConfig,
}

async fn harness(tag: &str, env: &[(&'static str, &str)]) -> Harness {
    harness_for(tag, &topology().await, env).await
}

/// A harness over the config `text`, as `client-1` on 127.0.0.1 (node-a, r1/z1).
async fn harness_for(tag: &str, text: &str, env: &[(&'static str, &str)]) -> Harness {
    let file = TempConfig::new(tag, text);
    let path = file.0.display().to_string();
    let mut vars: HashMap<&str, String> = HashMap::from([
        (config::LOCAL_XDS_PATH, path.clone()),
        (config::PROXY_MODE, "dedicated".to_string()),
        (
            config::PROXY_WORKLOAD_INFO,
            "httpbin/client-1/client".to_string(),
        ),
        (config::FAKE_CA, "true".to_string()),
        (config::XDS_ADDRESS, String::new()),
    ]);
    vars.extend(env.iter().map(|(k, v)| (*k, v.to_string())));
    let config = Config::from_lookup(|k| vars.get(k).cloned()).unwrap();
    let model = build_model(text, &path, &config.workload_info, &config.defects).unwrap();
    let logger = Logger::capture(LogFormat::Text, LogFilter::default());
    Harness {
        state: ProxyState::new(config, model, logger),
        listener: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        sockets: Arc::new(PlainSockets),
        _file: file,
    }
}

impl Harness {
    fn outbound(&self, vip: &str) -> Outbound {
        let vip: SocketAddr = vip.parse().unwrap();
        let original_dst = move |_: &TcpStream| -> io::Result<SocketAddr> { Ok(vip) };
        Outbound::new(
            Arc::clone(&self.state),
            Arc::new(original_dst),
            Arc::clone(&self.sockets),
        )
    }

    /// One request through the proxy, as curl would: send, half-close, read to the end.
    /// Returns the answer once the proxy has finished with the connection (access log written).
    async fn request(&self, proxy: &Outbound) -> String {
        let addr = self.listener.local_addr().unwrap();
        let client = async {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream.write_all(REQUEST).await.unwrap();
            stream.shutdown().await.unwrap();
            let mut answer = Vec::new();
            // A refused connection may end in a reset instead of an orderly close.
            let _ = stream.read_to_end(&mut answer).await;
            String::from_utf8(answer).unwrap()
        };
        let server = async {
            let (stream, src) = self.listener.accept().await.unwrap();
            proxy.handle(stream, src).await;
        };
        tokio::join!(client, server).0
    }

    /// `n` requests, one after the other; their answers.
    async fn requests(&self, proxy: &Outbound, n: usize) -> Vec<String> {
        let mut answers = Vec::with_capacity(n);
        for _ in 0..n {
            answers.push(self.request(proxy).await);
        }
        answers
    }

    fn lines(&self, prefix: &str) -> Vec<String> {
        self.state.logger.captured_starting_with(prefix)
    }
}

/// `k=v` fields of a text log line, quotes removed (values here hold no escaped quotes).
fn fields(line: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = line;
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].rsplit(' ').next().unwrap().to_string();
        let after = &rest[eq + 1..];
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted.find('"').unwrap();
                (&quoted[..end], &quoted[end + 1..])
            }
            None => after.split_once(' ').unwrap_or((after, "")),
        };
        out.insert(key, value.to_string());
        rest = next;
    }
    out
}

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(BOUND, f)
        .await
        .expect("loopback test exceeded its bound")
}

#[tokio::test]
async fn round_robin_over_three_replicas_with_access_logs() {
    bounded(async {
        let h = harness("rr", &[]).await;
        let proxy = h.outbound(ROUND_ROBIN_VIP);
        let answers = h.requests(&proxy, 12).await;
        let expected: Vec<&str> = (0..12)
            .map(|i| ["in-ambient-a", "in-ambient-b", "in-ambient-c"][i % 3])
            .collect();
        assert_eq!(answers, expected);

        let access = h.lines("info access connection complete ");
        assert_eq!(access.len(), 12, "{access:#?}");
        for (line, answered) in access.iter().zip(&answers) {
            let f = fields(line);
            // LOG-2: the logged workload is the one that answered.
            assert_eq!(f["dst.workload"], *answered, "{line}");
            assert_eq!(f["src.workload"], "client-1");
            assert_eq!(f["src.namespace"], "httpbin");
            assert_eq!(
                f["src.identity"],
                "spiffe://cluster.local/ns/httpbin/sa/client"
            );
            assert_eq!(f["dst.service"], "in-ambient.httpbin.svc.cluster.local");
            assert_eq!(f["dst.namespace"], "httpbin");
            assert_eq!(f["direction"], "outbound");
            assert_eq!(f["bytes_sent"], REQUEST.len().to_string());
            assert_eq!(f["bytes_recv"], answered.len().to_string());
            assert!(f["src.addr"].starts_with("127.0.0.1:"));
            assert!(f["duration"].ends_with("ms"));
            let replica = answered.chars().last().unwrap() as u8 - b'a';
            assert!(
                f["dst.addr"].starts_with(&format!("127.0.0.{}:", replica + 2)),
                "{line}"
            );
            let order: Vec<&str> = line
                .split(' ')
                .filter_map(|t| t.split_once('=').map(|(k, _)| k))
                .collect();
            assert_eq!(
                order,
                [
                    "src.addr",
                    "src.workload",
                    "src.namespace",
                    "src.identity",
                    "dst.addr",
                    "dst.service",
                    "dst.workload",
                    "dst.namespace",
                    "direction",
                    "bytes_sent",
                    "bytes_recv",
                    "duration"
                ]
            );
        }
        let metrics = h.state.metrics.render();
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("istio_tcp_connections_opened_total{")
                    && l.contains("destination_workload=\"in-ambient-a\"")
                    && l.ends_with(" 4")),
            "{metrics}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_refused_endpoint_is_retried_on_another_and_then_ejected() {
    bounded(async {
        let h = harness("retry", &[]).await;
        let proxy = h.outbound(FLAKY_VIP);
        // L4-FO-3: the client sees an answer, never the failure.
        assert_eq!(h.requests(&proxy, 4).await, ["flaky-b-live"; 4]);
        // Counters 0 and 2 pick the dead endpoint first: two failures, no ejection yet.
        assert_eq!(
            h.lines("info ewma "),
            [
                "info ewma updating endpoint health score dst.workload=\"flaky-a-dead\" previous_score=1.0 new_score=0.65",
                "info ewma updating endpoint health score dst.workload=\"flaky-a-dead\" previous_score=0.65 new_score=0.42",
            ]
        );
        assert!(h.lines("warn access").is_empty());
        for line in h.lines("info access connection complete ") {
            assert_eq!(fields(&line)["dst.workload"], "flaky-b-live");
        }
        // One health-check round makes the third failure: the breaker opens.
        check_round(&h.state, &h.sockets).await;
        let checks = h.lines("warn health_check ");
        assert_eq!(checks.len(), 1, "{checks:#?}");
        let f = fields(&checks[0]);
        assert_eq!(f["dst.workload"], "flaky-a-dead");
        assert_eq!(f["dst.service"], "flaky.httpbin.svc.cluster.local");
        assert_eq!(f["error"], "connection refused");
        assert!(f["dst.addr"].starts_with("127.0.0.5:"));
        assert_eq!(
            h.lines("warn circuit_breaker "),
            ["warn circuit_breaker endpoint marked unhealthy dst.workload=\"flaky-a-dead\" consecutive_failures=3 status=\"open\""]
        );
        let dump = h.state.config_dump();
        let dead = dump["endpoints"].as_array().unwrap().iter().find(|e| e["workload"] == "flaky-a-dead").unwrap();
        assert_eq!(dead["breaker"], "open");
        assert!((dead["score"].as_f64().unwrap() - 0.274625).abs() < 1e-9);
        // Ejected: the next connections go straight to the live endpoint, no new failure.
        let before = h.lines("info ewma ").len();
        assert_eq!(h.requests(&proxy, 3).await, ["flaky-b-live"; 3]);
        assert_eq!(h.lines("info ewma ").len(), before);
    })
    .await;
}

#[tokio::test]
async fn no_retry_defect_fails_the_client_and_logs_the_failure() {
    bounded(async {
        let h = harness(
            "noretry",
            &[(config::MESHCERT_REFERENCE_DEFECT, "no-retry")],
        )
        .await;
        let proxy = h.outbound(FLAKY_VIP);
        assert_eq!(h.request(&proxy).await, "");
        let failed = h.lines("warn access connection failed ");
        assert_eq!(failed.len(), 1, "{failed:#?}");
        let f = fields(&failed[0]);
        assert_eq!(f["error"], "connection refused");
        assert_eq!(f["dst.workload"], "flaky-a-dead");
        assert_eq!(f["bytes_sent"], "0");
        assert!(h.state.metrics.render().lines().any(|l| {
            l.starts_with("istio_tcp_connections_failed_total{")
                && l.contains("response_flags=\"UF\"")
                && l.ends_with(" 1")
        }));
    })
    .await;
}

#[tokio::test]
async fn a_direct_connection_to_the_proxy_is_refused() {
    bounded(async {
        let h = harness("direct", &[]).await;
        let own = h.listener.local_addr().unwrap();
        let original_dst = move |_: &TcpStream| -> io::Result<SocketAddr> { Ok(own) };
        let proxy = Outbound::new(
            Arc::clone(&h.state),
            Arc::new(original_dst),
            Arc::clone(&h.sockets),
        );
        assert_eq!(h.request(&proxy).await, "");
        assert!(h.lines("info access").is_empty() && h.lines("warn access").is_empty());
    })
    .await;
}

#[tokio::test]
async fn reload_swaps_a_good_file_and_keeps_the_old_model_on_a_bad_one() {
    bounded(async {
        let h = harness("reload", &[]).await;
        let path = h.state.config.local_xds_path().unwrap().to_path_buf();
        let original = std::fs::read_to_string(&path).unwrap();
        let mut reloader = Reloader::new(original.clone());
        assert!(!reloader.poll(&h.state).await, "unchanged file reloaded");

        // Drop replica c: round robin continues over a and b only (L4-RR-4).
        let start = original
            .find("- uid: c1//v1/Pod/httpbin/in-ambient-c")
            .unwrap();
        let end = original[start..]
            .find("- uid: c1//v1/Pod/httpbin/flaky-a-dead")
            .unwrap()
            + start;
        let shrunk = format!("{}{}", &original[..start], &original[end..]);
        std::fs::write(&path, &shrunk).unwrap();
        assert!(reloader.poll(&h.state).await);
        assert_eq!(
            h.lines("info config "),
            ["info config config reloaded workloads=5 services=2"]
        );
        let proxy = h.outbound(ROUND_ROBIN_VIP);
        let answers = h.requests(&proxy, 4).await;
        assert_eq!(
            answers,
            [
                "in-ambient-a",
                "in-ambient-b",
                "in-ambient-a",
                "in-ambient-b"
            ]
        );

        std::fs::write(
            &path,
            shrunk.replace("clusterId: c1", "clusterId: c1\n  weight: 2"),
        )
        .unwrap();
        assert!(!reloader.poll(&h.state).await);
        let errors = h.lines("error config ");
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(
            errors[0].contains("weight") && errors[0].contains(&path.display().to_string()),
            "{}",
            errors[0]
        );
        assert_eq!(h.request(&proxy).await, "in-ambient-a");
    })
    .await;
}

/// Time on top of the health-check bound that a loaded machine may add before the first
/// connection after recovery lands (timer and scheduling delays).
const RECOVERY_ALLOWANCE: Duration = Duration::from_millis(500);
/// Pace of the connections that watch for the recovery.
const RECOVERY_PACE: Duration = Duration::from_millis(10);

const P0: &str = "p0-same-zone";
const P1: &str = "p1-same-region";
const P2: &str = "p2-other-region";

/// `close` (PreferClose) with one endpoint per level: P0 shares the client's zone, P1 its region,
/// P2 only its network. P0 can be stopped.
async fn ladder_topology() -> (String, Backend) {
    let p0 = Backend::start("127.0.2.2", P0).await;
    let p1 = backend("127.0.2.3", P1).await;
    let p2 = backend("127.0.2.4", P2).await;
    let mut yaml = String::from("workloads:\n");
    yaml += &workload("client-1", "127.0.0.1", "{}");
    let same_zone = Place {
        node: "node-b",
        ..HOME
    };
    let same_region = Place {
        node: "node-c",
        zone: "z2",
        ..HOME
    };
    let other_region = Place {
        node: "node-d",
        region: "r2",
        zone: "z3",
    };
    yaml += &workload_at(P0, "127.0.2.2", same_zone, &port_map("close", p0.port()));
    yaml += &workload_at(P1, "127.0.2.3", same_region, &port_map("close", p1));
    yaml += &workload_at(P2, "127.0.2.4", other_region, &port_map("close", p2));
    yaml += "services:\n";
    yaml += &balanced_service("close", "127.0.1.12", "Network, Region, Zone", "Failover");
    (yaml, p0)
}

#[tokio::test]
async fn prefer_close_fails_over_one_level_and_returns_when_the_best_recovers() {
    bounded(async {
        let (text, mut p0) = ladder_topology().await;
        let h = harness_for(
            "failover",
            &text,
            &[
                (config::HEALTH_CHECK_INTERVAL, "50ms"),
                (config::HEALTH_CHECK_TIMEOUT, "50ms"),
                (config::CIRCUIT_BREAKER_BASE_EJECTION, "100ms"),
                (config::CIRCUIT_BREAKER_MAX_EJECTION, "200ms"),
            ],
        )
        .await;
        let (trigger, stop) = shutdown::channel();
        let checker = tokio::spawn(health_check::run(
            Arc::clone(&h.state),
            Arc::clone(&h.sockets),
            stop,
        ));
        let proxy = h.outbound(CLOSE_VIP);
        assert_eq!(h.requests(&proxy, 6).await, [P0; 6]);

        // TD-FO-1: with P0 refusing, one level down and never two; the client never sees it.
        p0.stop().await;
        assert_eq!(h.requests(&proxy, 8).await, [P1; 8]);
        assert!(h.lines("warn access").is_empty());
        assert_eq!(
            h.lines("warn circuit_breaker "),
            [format!(
                "warn circuit_breaker endpoint marked unhealthy dst.workload=\"{P0}\" \
                 consecutive_failures=3 status=\"open\""
            )]
        );

        // Back up: the first good probe after the ejection ends brings traffic back to P0.
        p0.restart().await;
        let restarted = tokio::time::Instant::now();
        let c = &h.state.config;
        let bound = c.max_ejection + 2 * c.health_check_interval + c.health_check_timeout;
        let watch_for = bound + RECOVERY_ALLOWANCE;
        let max_connections = watch_for.as_millis() / RECOVERY_PACE.as_millis() + 1;
        let mut pace = tokio::time::interval(RECOVERY_PACE);
        let mut meanwhile = Vec::new();
        let mut returned = false;
        for _ in 0..max_connections {
            pace.tick().await;
            let answer = h.request(&proxy).await;
            if answer == P0 {
                returned = true;
                break;
            }
            meanwhile.push(answer);
            if restarted.elapsed() > watch_for {
                break;
            }
        }
        let took = restarted.elapsed();
        assert!(
            returned,
            "traffic did not return to {P0} within {watch_for:?}"
        );
        assert!(
            took <= watch_for,
            "returned after {took:?}; bound {bound:?}"
        );
        assert!(meanwhile.iter().all(|a| a == P1), "{meanwhile:?}");
        assert_eq!(h.requests(&proxy, 4).await, [P0; 4]);
        for line in h.lines("info access connection complete ") {
            assert_ne!(fields(&line)["dst.workload"], P2, "{line}");
        }
        trigger.fire();
        checker.await.unwrap();
    })
    .await;
}

/// `local` (internalTrafficPolicy: Local, so `[Node]` Strict) over `endpoints`: (name, ip, node,
/// port). The client runs on node-a.
fn strict_topology(endpoints: &[(&str, &str, &'static str, u16)]) -> String {
    let mut yaml = String::from("workloads:\n");
    yaml += &workload("client-1", "127.0.0.1", "{}");
    for (name, ip, node, port) in endpoints {
        let at = Place { node, ..HOME };
        yaml += &workload_at(name, ip, at, &port_map("local", *port));
    }
    yaml += "services:\n";
    yaml += &balanced_service("local", "127.0.1.13", "Node", "Strict");
    yaml
}

/// The fields of the one Strict drop warning logged so far.
fn strict_drop(h: &Harness) -> BTreeMap<String, String> {
    let dropped = h.lines("warn proxy no usable endpoint in the strict scope, connection dropped ");
    assert_eq!(dropped.len(), 1, "{dropped:#?}");
    let f = fields(&dropped[0]);
    assert_eq!(f["dst.service"], "local.httpbin.svc.cluster.local");
    assert_eq!(f["scope"], "node");
    f
}

#[tokio::test]
async fn strict_with_no_endpoint_on_the_node_drops_the_connection_at_once() {
    bounded(async {
        let remote = Backend::start("127.0.2.6", "remote-live").await;
        let text = strict_topology(&[("remote-live", "127.0.2.6", "node-b", remote.port())]);
        let h = harness_for("strict-none", &text, &[(config::CONNECT_TIMEOUT, "2s")]).await;
        let proxy = h.outbound(LOCAL_VIP);
        let started = tokio::time::Instant::now();
        assert_eq!(h.request(&proxy).await, "");
        let took = started.elapsed();
        // TD-ITP-1: no failover, no connect attempt, so no connect timeout either.
        assert!(took < h.state.config.connect_timeout / 10, "took {took:?}");
        assert_eq!(remote.accepted(), 0);
        let f = strict_drop(&h);
        assert_eq!((f["endpoints"].as_str(), f["tried"].as_str()), ("0", "0"));
        assert_eq!(f["reason"], "no endpoint of the service is on this node");
        let failed = h.lines("warn access connection failed ");
        assert_eq!(failed.len(), 1, "{failed:#?}");
        assert_eq!(fields(&failed[0])["error"], "no healthy upstream");
        let metrics = h.state.metrics.render();
        assert!(
            metrics.lines().any(|l| {
                l.starts_with("istio_tcp_connections_failed_total{")
                    && l.contains("destination_service=\"local.httpbin.svc.cluster.local\"")
                    && l.ends_with(" 1")
            }),
            "{metrics}"
        );
        // Nothing was opened to any endpoint.
        assert!(
            metrics
                .lines()
                .filter(|l| l.starts_with("istio_tcp_connections_opened_total{"))
                .all(|l| l.ends_with(" 0")),
            "{metrics}"
        );
    })
    .await;
}

#[tokio::test]
async fn strict_retries_only_on_the_node_then_drops() {
    bounded(async {
        let dead = refused_port("127.0.2.7").await;
        let mut live = Backend::start("127.0.2.8", "local-b-live").await;
        let remote = Backend::start("127.0.2.9", "remote-live").await;
        let text = strict_topology(&[
            ("local-a-dead", "127.0.2.7", "node-a", dead),
            ("local-b-live", "127.0.2.8", "node-a", live.port()),
            ("remote-live", "127.0.2.9", "node-b", remote.port()),
        ]);
        let h = harness_for("strict-retry", &text, &[]).await;
        let proxy = h.outbound(LOCAL_VIP);
        // Counter 0 tries the dead endpoint first, then the other one on the node.
        assert_eq!(h.request(&proxy).await, "local-b-live");
        live.stop().await;
        assert_eq!(h.request(&proxy).await, "");
        assert_eq!(remote.accepted(), 0);
        let f = strict_drop(&h);
        assert_eq!((f["endpoints"].as_str(), f["tried"].as_str()), ("2", "2"));
        assert_eq!(
            f["reason"],
            "no endpoint of the service on this node accepted the connection"
        );
        let failed = h.lines("warn access connection failed ");
        assert_eq!(failed.len(), 1, "{failed:#?}");
        assert_eq!(fields(&failed[0])["error"], "connection refused");
    })
    .await;
}

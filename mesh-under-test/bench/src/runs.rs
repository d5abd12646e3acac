//! The runs, all from the client pod: wrk and iperf3 direct (pod to pod, no proxy) or proxied
//! (captured, through both ztunnels over HBONE), single requests, the blackhole, and the
//! client pod's ztunnel's CPU and memory.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use meshcert_local::client;
use meshcert_mesh::MeshError;

use crate::BenchOptions;
use crate::config::{HTTP_PORT, IPERF_DIRECT_PORT, IPERF_PORT, SERVICE_PORT, VIP};
use crate::fabric::{DIRECT_VIP, Fabric};
use crate::report::{Blackhole, parse_iperf, parse_wrk};

/// Requests of one blackhole round, one after another.
const ROUND: u32 = 30;
/// A blackhole request's timeout; a failure counts as this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

impl Fabric {
    /// Until the servers answer directly and through the ztunnels.
    pub(crate) async fn ready(&self) -> Result<(), MeshError> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let direct = self.get(DIRECT_VIP, SERVICE_PORT).await;
            let proxied = self.get(VIP, SERVICE_PORT).await;
            if direct.is_ok() && proxied.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(MeshError::Environment(format!(
                    "the benchmark's backends or proxies never answered: direct {direct:?}, \
                     proxied {proxied:?} (logs in the --out directory)"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// One GET from the client pod; its latency.
    async fn get(&self, ip: Ipv4Addr, port: u16) -> Result<Duration, String> {
        let started = Instant::now();
        let outcome = client::get(
            &self.sockets,
            Some(&self.client.netns),
            SocketAddr::from((ip, port)),
            "backend",
            "/",
            REQUEST_TIMEOUT,
        )
        .await;
        match outcome {
            Ok(Ok(r)) if r.status == 200 => Ok(started.elapsed()),
            Ok(Ok(r)) => Err(format!("HTTP {}", r.status)),
            Ok(Err(failure)) => Err(failure.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// wrk from the client pod: to the service (proxied) or spread over the backend pods with
    /// no proxy (direct). Requests per second and the p50 latency.
    pub(crate) async fn wrk(
        &self,
        proxied: bool,
        close: bool,
        options: &BenchOptions,
    ) -> Result<(f64, Duration), MeshError> {
        let vip = if proxied { VIP } else { DIRECT_VIP };
        let mut args: Vec<String> = vec!["-t".into(), "2".into(), "-c".into()];
        args.push(options.connections.to_string());
        args.extend([
            "-d".into(),
            format!("{}s", options.duration.as_secs().max(1)),
        ]);
        args.push("--latency".into());
        if close {
            args.extend(["-H".to_string(), "Connection: close".into()]);
        }
        args.push(format!("http://{vip}:{SERVICE_PORT}/"));
        let out = self.exec(&self.client.netns, "wrk", args).await?;
        parse_wrk(&out).map_err(MeshError::Environment)
    }

    /// iperf3 from the client pod to the first backend pod: its captured port (proxied) or
    /// the one beside it (direct). Received bits per second.
    pub(crate) async fn iperf(
        &self,
        proxied: bool,
        options: &BenchOptions,
    ) -> Result<f64, MeshError> {
        let port = if proxied {
            IPERF_PORT
        } else {
            IPERF_DIRECT_PORT
        };
        let args = vec![
            "-c".to_string(),
            self.backends[0].ip.to_string(),
            "-p".into(),
            port.to_string(),
            "-t".into(),
            options.duration.as_secs().max(1).to_string(),
            "-J".into(),
        ];
        let out = self.exec(&self.client.netns, "iperf3", args).await?;
        parse_iperf(&out).map_err(MeshError::Environment)
    }

    /// utime + stime of the client pod's ztunnel.
    pub(crate) fn cpu(&self) -> Duration {
        let pid = self.client_ztunnel().pid();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        cpu_time(&stat)
    }

    /// Requests through the proxy, one after another: failures and the worst latency (a
    /// failure counts as the timeout).
    async fn round(&self) -> (u32, Duration) {
        let (mut failed, mut worst) = (0, Duration::ZERO);
        for _ in 0..ROUND {
            match self.get(VIP, SERVICE_PORT).await {
                Ok(latency) => worst = worst.max(latency),
                Err(_) => {
                    failed += 1;
                    worst = worst.max(REQUEST_TIMEOUT);
                }
            }
        }
        (failed, worst)
    }

    /// One endpoint's HTTP port DROPped in its own pod, as the docs fault a pod: behind its
    /// ztunnel, so the client pod's ztunnel connects to 15008 and the CONNECT stream fails.
    pub(crate) async fn blackhole(&self) -> Result<Blackhole, MeshError> {
        let mut baseline = Vec::new();
        for _ in 0..ROUND {
            if let Ok(latency) = self.get(VIP, SERVICE_PORT).await {
                baseline.push(latency);
            }
        }
        baseline.sort();
        let median = baseline.get(baseline.len() / 2).copied();
        let rule = format!("INPUT -p tcp --dport {HTTP_PORT} -j DROP");
        let iptables = |op: &str| {
            let mut args = vec!["-w".to_string(), "5".into(), op.into()];
            args.extend(rule.split(' ').map(str::to_string));
            args
        };
        let blocked = &self.backends[0];
        self.exec(&blocked.netns, "iptables", iptables("-A"))
            .await?;
        let since = self.created.elapsed();
        let (failed, worst) = self.round().await;
        let (failed_second_round, _) = self.round().await;
        self.exec(&blocked.netns, "iptables", iptables("-D"))
            .await?;
        let target = format!("{}:{HTTP_PORT}", blocked.ip);
        let lines: Vec<_> = self
            .client_ztunnel()
            .output()
            .lines()
            .into_iter()
            .map(|l| l.parse())
            .filter(|l| l.observed_at >= since)
            .collect();
        // Over HBONE the pod's address is `dst.hbone_addr` (`dst.addr` is its ztunnel's).
        let first_failure = lines
            .iter()
            .find(|l| {
                l.level == "warn"
                    && [l.field("dst.hbone_addr"), l.field("dst.addr")]
                        .contains(&Some(target.as_str()))
            })
            .map(|l| l.observed_at);
        let opened = lines
            .iter()
            .find(|l| l.target == "circuit_breaker" && l.message == "endpoint marked unhealthy")
            .map(|l| l.observed_at);
        Ok(Blackhole {
            requests: ROUND,
            failed,
            worst_added: worst.saturating_sub(median.unwrap_or_default()),
            breaker_open_after: match (first_failure, opened) {
                (Some(f), Some(o)) => Some(o.saturating_sub(f)),
                _ => None,
            },
            failed_second_round,
        })
    }
}

/// utime + stime from `/proc/<pid>/stat`; zero when unreadable.
fn cpu_time(stat: &str) -> Duration {
    // Fields after the command name, which may hold spaces: state is field 3.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Duration::from_secs_f64((field(11) + field(12)) as f64 / hz)
}

/// A process's resident set, from `/proc/<pid>/status`; 0 when gone.
pub(crate) fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Samples a process's RSS every 100 ms on a thread until stopped; returns the maximum.
pub(crate) struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl RssSampler {
    pub(crate) fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut max = 0;
            while !flag.load(Ordering::Relaxed) {
                max = max.max(rss_kib(pid));
                std::thread::sleep(Duration::from_millis(100));
            }
            max
        });
        RssSampler { stop, thread }
    }

    pub(crate) fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_utime_plus_stime_past_a_command_with_spaces() {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        let stat = format!(
            "42 (my (odd) proc) S 1 42 42 0 -1 4194560 100 0 0 0 {} {} 0 0 20 0 1 0 5",
            3 * hz,
            hz
        );
        assert_eq!(cpu_time(&stat), Duration::from_secs(4));
        assert_eq!(cpu_time(""), Duration::ZERO);
    }
}

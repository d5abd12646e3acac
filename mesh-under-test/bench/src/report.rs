//! What the benchmark reports: the pair ratios of each test, the client-side ztunnel's memory
//! and CPU, the blackhole row, the parsers of wrk's and iperf3's output, and the table.

use std::collections::BTreeMap;
use std::time::Duration;

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
    /// From the first failed connection the client pod's ztunnel logged to its breaker opening;
    /// `None` when it never logged one.
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
    /// Of the client pod's ztunnel, the one that takes the redirected connections.
    pub rss_max_kib: u64,
    /// The client pod's ztunnel's CPU time per proxied connection of the new-connection test
    /// (the destination pods' ztunnels are not counted).
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
            "| resident memory of the client pod's ztunnel at 16 connections | {:.1} MiB | <= 15 MiB |\n",
            self.rss_max_kib as f64 / 1024.0
        ));
        out.push_str(&format!(
            "| client pod's ztunnel CPU per new connection | {:.1} us | - |\n",
            self.cpu_per_connection.as_secs_f64() * 1e6
        ));
        let b = &self.blackhole;
        out.push_str(&format!(
            "| one of three endpoints blackholed (DROP in its pod), {} requests, 2 s timeout | {} fail (then {} of {} more); worst added latency {} ms; breaker open {} | 0 fail; <= 250 ms; <= 500 ms |\n",
            b.requests,
            b.failed,
            b.failed_second_round,
            b.requests,
            b.worst_added.as_millis(),
            b.breaker_open_after
                .map(|d| format!("{} ms after the first failed connection", d.as_millis()))
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
}

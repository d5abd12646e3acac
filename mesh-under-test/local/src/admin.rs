//! The ztunnel's own HTTP endpoints as the driver uses them, always from inside the client
//! pod's namespace on loopback: readiness (15021), the config dump (15000, to know the ztunnel
//! has every endpoint before a scenario sends traffic) and metrics (15020).

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use meshcert_mesh::MeshError;
use meshcert_mesh::wait::{Probe, eventually};
use meshcert_ztunnel::local_config::LocalConfig;

use crate::client::{self, HttpResponse};
use crate::netns::SocketFactory;
use crate::ztunnel::{ADMIN_PORT, READINESS_PORT, STATS_PORT, ZtunnelProcess};

/// How long a fresh ztunnel gets to become ready, unless the target says otherwise.
pub const READY_DEADLINE: Duration = Duration::from_secs(10);
/// How long a ztunnel gets to learn a config change.
pub const CONFIG_DEADLINE: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(50);
/// Timeout of one request to an admin endpoint.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(2);

/// One ztunnel's endpoints: where it runs and the process behind them.
#[derive(Debug, Clone)]
pub struct Admin {
    pub sockets: SocketFactory,
    /// The client pod's namespace.
    pub netns: String,
    pub process: Arc<ZtunnelProcess>,
    /// For messages, e.g. `httpbin/client-in-ambient-...`.
    pub pod: String,
}

impl Admin {
    async fn get(&self, port: u16, path: &str) -> Result<Result<HttpResponse, String>, MeshError> {
        let dst = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let outcome = client::get(
            &self.sockets,
            Some(&self.netns),
            dst,
            "127.0.0.1",
            path,
            ADMIN_TIMEOUT,
        )
        .await?;
        Ok(outcome.map_err(|failure| format!("GET {dst}{path}: {failure}")))
    }

    /// `Failed` when the process has exited: waiting longer cannot help.
    fn exited(&self) -> Option<MeshError> {
        self.process
            .exit_status()
            .map(|status| MeshError::Ztunnel(self.process.describe_exit(status)))
    }

    /// Waits until `/healthz/ready` answers 200. A ztunnel that exits first, or never gets
    /// ready, is a `MeshError::Ztunnel` with its last output lines.
    pub async fn wait_ready(&self, deadline: Duration) -> Result<(), MeshError> {
        let what = format!(
            "ztunnel of {} to be ready (GET 127.0.0.1:{READINESS_PORT}/healthz/ready)",
            self.pod
        );
        let result = eventually(&what, deadline, POLL, || async move {
            if let Some(e) = self.exited() {
                return Probe::Failed(e);
            }
            match self.get(READINESS_PORT, "/healthz/ready").await {
                Err(e) => Probe::Failed(e),
                Ok(Ok(r)) if r.status == 200 => Probe::Ready(()),
                Ok(Ok(r)) => Probe::NotYet(format!(
                    "/healthz/ready answered {}: {}",
                    r.status,
                    r.text().trim()
                )),
                Ok(Err(failure)) => Probe::NotYet(failure),
            }
        })
        .await;
        match result {
            Err(MeshError::Timeout { waited, last, .. }) => Err(MeshError::Ztunnel(format!(
                "ztunnel for {} never became ready: GET 127.0.0.1:{READINESS_PORT}/healthz/ready \
                 still failed after {:.1}s ({last}); {}",
                self.pod,
                waited.as_secs_f64(),
                self.process.output().last_words()
            ))),
            other => other,
        }
    }

    /// The config dump's text, or how the probe of a wait on it ends this time.
    async fn config_dump<T>(&self) -> Result<String, Probe<T>> {
        if let Some(e) = self.exited() {
            return Err(Probe::Failed(e));
        }
        match self.get(ADMIN_PORT, "/config_dump").await {
            Err(e) => Err(Probe::Failed(e)),
            Ok(Err(failure)) => Err(Probe::NotYet(failure)),
            Ok(Ok(r)) if r.status != 200 => {
                Err(Probe::NotYet(format!("/config_dump answered {}", r.status)))
            }
            Ok(Ok(r)) => Ok(r.text()),
        }
    }

    /// Waits until the config dump names every workload of `present` and none of `absent`, so
    /// scenarios never race the config.
    pub async fn wait_knows(
        &self,
        present: &BTreeSet<String>,
        absent: &BTreeSet<String>,
    ) -> Result<(), MeshError> {
        let what = format!(
            "ztunnel of {} to know every endpoint (GET 127.0.0.1:{ADMIN_PORT}/config_dump)",
            self.pod
        );
        eventually(&what, CONFIG_DEADLINE, POLL, || async move {
            let dump = match self.config_dump().await {
                Ok(dump) => dump,
                Err(probe) => return probe,
            };
            match config_dump_gaps(&dump, present, absent) {
                Err(e) => Probe::NotYet(e),
                Ok((missing, stale)) if missing.is_empty() && stale.is_empty() => Probe::Ready(()),
                Ok((missing, stale)) => Probe::NotYet(format!(
                    "config_dump lacks {missing:?} and still lists {stale:?}"
                )),
            }
        })
        .await
    }

    /// Waits until a ztunnel that reloads its config serves exactly `expected` (the `workloads`
    /// and `services` of its config dump), so that a change no endpoint name reveals (a
    /// Service's load balancing, a node's locality, the mesh's network) is in force before
    /// traffic is sent.
    ///
    /// A ztunnel that logged a reload after `written_at` (the mesh-clock time the config was
    /// written) and serves every expected workload and service, plus workloads the config no
    /// longer lists, has loaded it too, keeping what it should have dropped: after
    /// [`EXTRAS_AFTER`] that is accepted (with a warning naming them), so that the scenario
    /// judges the data plane by its answers instead of this wait timing out.
    pub async fn wait_config(
        &self,
        expected: &LocalConfig,
        written_at: Duration,
    ) -> Result<(), MeshError> {
        let what = format!(
            "ztunnel of {} to load the new config (GET 127.0.0.1:{ADMIN_PORT}/config_dump)",
            self.pod
        );
        let want = (
            serde_json::to_value(&expected.workloads)
                .map_err(|e| MeshError::Ztunnel(e.to_string()))?,
            serde_json::to_value(&expected.services)
                .map_err(|e| MeshError::Ztunnel(e.to_string()))?,
        );
        let want = &want;
        let started = std::time::Instant::now();
        eventually(&what, CONFIG_DEADLINE, POLL, || async move {
            let dump = match self.config_dump().await {
                Ok(dump) => dump,
                Err(probe) => return probe,
            };
            let dump = match serde_json::from_str::<serde_json::Value>(&dump) {
                Err(e) => return Probe::NotYet(format!("config_dump is not JSON: {e}")),
                Ok(v) => v,
            };
            match served(&dump, &want.0, &want.1) {
                Served::Exactly => Probe::Ready(()),
                Served::WithExtras(extras)
                    if started.elapsed() >= EXTRAS_AFTER && self.reloaded_since(written_at) =>
                {
                    tracing::warn!(ztunnel = %self.pod, ?extras, "the ztunnel reloaded its config and still serves workloads it no longer lists");
                    Probe::Ready(())
                }
                Served::WithExtras(extras) => Probe::NotYet(format!(
                    "config_dump also lists workloads the config no longer has: {extras:?}"
                )),
                Served::Other => {
                    Probe::NotYet("config_dump still shows the previous config".into())
                }
            }
        })
        .await
    }

    /// Whether the ztunnel logged a config reload (the reference's `config reloaded` line)
    /// read at or after `since`.
    fn reloaded_since(&self, since: Duration) -> bool {
        self.process
            .output()
            .lines()
            .iter()
            .filter(|l| l.observed_at >= since)
            .any(|l| l.parse().is("config", "config reloaded"))
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics_text(&self) -> Result<String, MeshError> {
        let response = self.get(STATS_PORT, "/metrics").await?.map_err(|failure| {
            MeshError::Ztunnel(format!("metrics of the ztunnel of {}: {failure}", self.pod))
        })?;
        if response.status != 200 {
            return Err(MeshError::Ztunnel(format!(
                "GET 127.0.0.1:{STATS_PORT}/metrics of the ztunnel of {} answered {}: {}",
                self.pod,
                response.status,
                response.text().trim()
            )));
        }
        Ok(response.text())
    }
}

/// Every string in a JSON document: the config dump's names, whatever its exact shape
/// (upstream and the reference nest workloads differently).
fn json_strings(value: &serde_json::Value, out: &mut BTreeSet<String>) {
    match value {
        serde_json::Value::String(s) => {
            out.insert(s.clone());
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| json_strings(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| json_strings(v, out)),
        _ => {}
    }
}

/// How long a reloaded config that keeps extra workloads is given to drop them before the
/// wait accepts it (a config that reloads as written matches at once).
pub const EXTRAS_AFTER: Duration = Duration::from_secs(1);

/// How a config dump's `workloads` and `services` compare with the config written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Served {
    Exactly,
    /// Every written workload and the written services, plus workloads (by name) it does
    /// not list.
    WithExtras(Vec<String>),
    Other,
}

pub fn served(
    dump: &serde_json::Value,
    workloads: &serde_json::Value,
    services: &serde_json::Value,
) -> Served {
    if &dump["workloads"] == workloads && &dump["services"] == services {
        return Served::Exactly;
    }
    let (Some(have), Some(want)) = (dump["workloads"].as_array(), workloads.as_array()) else {
        return Served::Other;
    };
    if &dump["services"] != services || !want.iter().all(|w| have.contains(w)) {
        return Served::Other;
    }
    Served::WithExtras(
        have.iter()
            .filter(|w| !want.contains(w))
            .map(|w| w["name"].as_str().unwrap_or_default().to_string())
            .collect(),
    )
}

/// What a config dump lacks: `(missing, still listed)`, comparing whole names.
pub fn config_dump_gaps(
    dump: &str,
    present: &BTreeSet<String>,
    absent: &BTreeSet<String>,
) -> Result<(Vec<String>, Vec<String>), String> {
    let value: serde_json::Value =
        serde_json::from_str(dump).map_err(|e| format!("config_dump is not JSON: {e}"))?;
    let mut strings = BTreeSet::new();
    json_strings(&value, &mut strings);
    let missing = present.difference(&strings).cloned().collect();
    let stale = absent.intersection(&strings).cloned().collect();
    Ok((missing, stale))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    type Gaps = (Vec<&'static str>, Vec<&'static str>);

    #[test]
    fn a_dump_serves_the_config_exactly_with_extras_or_not() {
        let a = serde_json::json!({"name": "a", "status": "Healthy"});
        let b = serde_json::json!({"name": "b", "status": "Healthy"});
        let services = serde_json::json!([{"name": "svc"}]);
        let dump =
            |w: Vec<&serde_json::Value>| serde_json::json!({"workloads": w, "services": services});
        let want = serde_json::json!([a]);
        assert_eq!(served(&dump(vec![&a]), &want, &services), Served::Exactly);
        assert_eq!(
            served(&dump(vec![&a, &b]), &want, &services),
            Served::WithExtras(vec!["b".into()])
        );
        // A workload written differently (its status) is not served.
        let a_unhealthy = serde_json::json!({"name": "a", "status": "Unhealthy"});
        assert_eq!(
            served(&dump(vec![&a_unhealthy, &b]), &want, &services),
            Served::Other
        );
        assert_eq!(
            served(&dump(vec![&a]), &want, &serde_json::json!([])),
            Served::Other
        );
    }

    #[rstest]
    #[case(r#"{"workloads":[{"name":"a"},{"name":"b"}]}"#, &["a", "b"], &[], Ok((vec![], vec![])))]
    #[case(r#"{"workloads":[{"name":"a"}]}"#, &["a", "b"], &[], Ok((vec!["b"], vec![])))]
    #[case(r#"{"workloads":{"uid1":{"name":"a"},"uid2":{"name":"c"}}}"#, &["a"], &["c"], Ok((vec![], vec!["c"])))]
    #[case(r#"{"workloads":[{"name":"ab"}]}"#, &["a"], &[], Ok((vec!["a"], vec![])))]
    #[case("not json", &["a"], &[], Err(()))]
    fn config_dump_gaps_compare_whole_names(
        #[case] dump: &str,
        #[case] present: &[&str],
        #[case] absent: &[&str],
        #[case] expected: Result<Gaps, ()>,
    ) {
        let got = config_dump_gaps(dump, &set(present), &set(absent)).map_err(|_| ());
        let expected = expected.map(|(m, s)| {
            (
                m.into_iter().map(String::from).collect::<Vec<_>>(),
                s.into_iter().map(String::from).collect::<Vec<_>>(),
            )
        });
        assert_eq!(got, expected);
    }
}

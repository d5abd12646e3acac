//! Before the suite: start the target once in a small mesh (the guide's client and three
//! replicas), so a binary that cannot run gives one clear error instead of sixty failed
//! scenarios, check that its own connections do not come back to it, and measure what a
//! config change costs it.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use meshcert_local::{LocalMesh, ztunnel};
use meshcert_mesh::manifest::{self, ManifestSet};
use meshcert_mesh::{DeploymentRef, MeshUnderTest, RequestPlan};
use meshcert_oracle::logs::{LogLine, parse_line};

use crate::context::SuiteContext;

/// The fixtures the probe deploys: the client and its backend.
const FIXTURES: [&str; 2] = ["in-ambient", "client-in-ambient"];
/// The backend's Service in those fixtures, as the client names it.
const SERVICE_URL: &str = "http://in-ambient.httpbin:8000/hostname";
/// Requests of the loop check, one at a time; it stops at the first sign of a loop.
const LOOP_REQUESTS: u32 = 3;
/// One request's bound: a healthy mesh answers in milliseconds, a loop fills the counters
/// as fast (or ends sooner, when the ztunnel runs out of file descriptors).
const LOOP_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// What the probe learned about the target.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeReport {
    /// From deploy to every ztunnel ready and knowing every endpoint.
    pub started_in: Duration,
    /// One config change for a target restarted on change: stop, start, ready, serving it.
    pub restart_cost: Option<Duration>,
    /// `text` or `json`, from the lines that parsed.
    pub log_format: Option<&'static str>,
    pub log_lines: usize,
    /// Lines that are neither format (a banner, a panic).
    pub unparsed: usize,
}

impl ProbeReport {
    pub fn settings(&self) -> BTreeMap<String, String> {
        let mut settings = BTreeMap::new();
        settings.insert(
            "start".to_string(),
            format!("{} ms", self.started_in.as_millis()),
        );
        if let Some(cost) = self.restart_cost {
            settings.insert(
                "restart per config change".to_string(),
                format!("{} ms", cost.as_millis()),
            );
        }
        if let Some(format) = self.log_format {
            settings.insert("log format".to_string(), format.to_string());
        }
        settings
    }
}

impl fmt::Display for ProbeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the target started and knew its endpoints in {} ms",
            self.started_in.as_millis()
        )?;
        match self.restart_cost {
            Some(cost) => write!(
                f,
                "; it reads its config once, so each config change restarts it: {} ms",
                cost.as_millis()
            )?,
            None => f.write_str("; it reloads its config on change")?,
        }
        match self.log_format {
            Some(format) => write!(f, "; {} log lines in {format} format", self.log_lines)?,
            None => f.write_str("; it wrote no log line yet")?,
        }
        if self.unparsed > 0 {
            write!(f, " ({} other lines kept whole, not parsed)", self.unparsed)?;
        }
        Ok(())
    }
}

/// Starts the target, restarts it once if it reads config once, checks its log lines parse,
/// and tears the mesh down whatever happened. Errors are one line.
pub async fn probe(context: &SuiteContext) -> Result<ProbeReport, String> {
    let mut mesh = context.make_local_mesh().map_err(one_line)?;
    let result = exercise(&mut mesh, context).await;
    let teardown = mesh.teardown().await;
    let report = result?;
    teardown.map_err(|e| format!("cleaning up after the start check: {}", one_line(e)))?;
    Ok(report)
}

async fn exercise(mesh: &mut LocalMesh, context: &SuiteContext) -> Result<ProbeReport, String> {
    let dir = context.fixtures_dir();
    let paths = FIXTURES.map(|f| dir.join(format!("{f}.yaml")));
    let manifests = ManifestSet::load_all(&paths).map_err(one_line)?;
    let started = Instant::now();
    mesh.deploy(&manifests).await.map_err(one_line)?;
    let started_in = started.elapsed();
    let client = manifests
        .deployments()
        .find(|d| manifest::is_client(d))
        .map(manifest::deployment_ref)
        .ok_or("the probe fixtures have no client deployment")?;
    check_no_redirect_loop(mesh, &client).await?;
    let restart_cost = if context.target_restarts() {
        let backend = manifests
            .deployments()
            .find(|d| !manifest::is_client(d))
            .map(manifest::deployment_ref)
            .ok_or("the probe fixtures have no backend deployment")?;
        let replicas = mesh.pods(&backend).await.map_err(one_line)?.len() as u32;
        mesh.scale(&backend, replicas + 1).await.map_err(one_line)?;
        mesh.restarts().last().map(|r| r.took)
    } else {
        None
    };
    let lines = mesh.ztunnel_logs().await.map_err(one_line)?;
    check_logs(&lines)?;
    let parsed: Vec<&LogLine> = lines.iter().filter(|l| !l.level.is_empty()).collect();
    Ok(ProbeReport {
        started_in,
        restart_cost,
        log_format: parsed.first().map(|l| {
            if l.raw.trim_start().starts_with('{') {
                "json"
            } else {
                "text"
            }
        }),
        log_lines: parsed.len(),
        unparsed: lines.len() - parsed.len(),
    })
}

/// Sends a few requests from the client, one at a time, and counts the connections the
/// client pod's `REDIRECT` sent to 15001 meanwhile: one per request, unless the ztunnel's own
/// upstream connection is redirected back to it (it does not mark its sockets, or it sends
/// to the service address itself), which repeats until it runs out of file descriptors.
async fn check_no_redirect_loop(
    mesh: &mut LocalMesh,
    client: &DeploymentRef,
) -> Result<(), String> {
    let pod = mesh
        .pods(client)
        .await
        .map_err(one_line)?
        .into_iter()
        .next()
        .ok_or_else(|| format!("the probe's client {client} has no pod"))?;
    let netns = mesh
        .pod_netns(&pod.pod_ref())
        .ok_or_else(|| format!("the probe's client pod {} has no namespace", pod.name))?
        .to_string();
    let count = || {
        let netns = netns.clone();
        async move {
            tokio::task::spawn_blocking(move || ztunnel::redirected_connections(&netns))
                .await
                .map_err(|e| format!("counting redirected connections: {e}"))?
                .map_err(one_line)
        }
    };
    let before = count().await?;
    let plan = RequestPlan {
        client: client.clone(),
        url: SERVICE_URL.into(),
        count: 1,
        interval: Duration::ZERO,
        timeout: LOOP_REQUEST_TIMEOUT,
    };
    for sent in 1..=LOOP_REQUESTS {
        mesh.send_requests(&plan).await.map_err(one_line)?;
        let redirected = count().await?.saturating_sub(before);
        if let Some(problem) = redirect_loop(sent, redirected) {
            return Err(format!("{problem} (its output: {})", mesh.dir().display()));
        }
    }
    Ok(())
}

/// The loop, in one line, when `redirected` connections for `sent` requests are more than
/// the requests themselves could make (one each; slack for a client retry).
pub fn redirect_loop(sent: u32, redirected: u64) -> Option<String> {
    let allowed = 2 * u64::from(sent) + 4;
    (redirected > allowed).then(|| {
        format!(
            "its own connections come back to its outbound port {}: {redirected} connections \
             were redirected there for {sent} request(s), a redirect loop; it must mark its \
             upstream sockets with the PACKET_MARK it is given ({}, 0x{:x}), which the \
             REDIRECT exempts, and find services on the NETWORK it is given",
            ztunnel::OUTBOUND_PORT,
            ztunnel::PACKET_MARK,
            ztunnel::PACKET_MARK
        )
    })
}

/// Refuses output of which no line parses: every log assertion would fail on it.
pub fn check_logs(lines: &[LogLine]) -> Result<(), String> {
    if lines.is_empty() || lines.iter().any(|l| !l.level.is_empty()) {
        return Ok(());
    }
    let first = &lines[0].raw;
    let why = parse_line(first)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    let shown: String = first.chars().take(120).collect();
    Err(format!(
        "none of its {} log lines is in ztunnel's text or JSON format (the first, {shown:?}: \
         {why}); run it with LOG_FORMAT=text or LOG_FORMAT=json",
        lines.len()
    ))
}

fn one_line(e: impl fmt::Display) -> String {
    e.to_string()
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshcert_mesh::MeshError;

    fn line(raw: &str) -> LogLine {
        let mut parsed = parse_line(raw).unwrap_or_else(|_| LogLine {
            observed_at: Duration::ZERO,
            timestamp: None,
            level: String::new(),
            target: String::new(),
            message: raw.to_string(),
            fields: BTreeMap::new(),
            raw: raw.to_string(),
        });
        parsed.raw = raw.to_string();
        parsed
    }

    #[test]
    fn logs_of_which_nothing_parses_are_refused_with_the_first_line_and_why() {
        let lines = [line("~~ garbage one"), line("~~ garbage two")];
        let err = check_logs(&lines).unwrap_err();
        assert!(err.contains("none of its 2 log lines"), "{err}");
        assert!(err.contains("\"~~ garbage one\""), "{err}");
        assert!(err.contains("LOG_FORMAT=json"), "{err}");
        assert!(!err.contains('\n'));
    }

    #[test]
    fn one_parsed_line_or_no_line_at_all_is_accepted() {
        check_logs(&[]).unwrap();
        check_logs(&[
            line("a banner"),
            line("2025-03-06T16:52:48.095517Z info ztunnel ready"),
        ])
        .unwrap();
        check_logs(&[line(
            r#"{"level":"info","time":"2025-03-06T16:52:48Z","scope":"ztunnel","message":"ready"}"#,
        )])
        .unwrap();
    }

    #[test]
    fn a_connection_per_request_is_no_loop_and_hundreds_are() {
        assert_eq!(redirect_loop(1, 1), None);
        assert_eq!(redirect_loop(3, 3), None);
        assert_eq!(redirect_loop(1, 6), None, "slack for a retry");
        let line = redirect_loop(1, 512).unwrap();
        assert!(
            line.starts_with(
                "its own connections come back to its outbound port 15001: 512 connections"
            ),
            "{line}"
        );
        assert!(
            line.contains("PACKET_MARK it is given (1337, 0x539)"),
            "{line}"
        );
        assert!(!line.contains('\n'));
    }

    #[test]
    fn errors_are_one_line() {
        assert_eq!(
            one_line(MeshError::Ztunnel("exited\n  last: a\n  b".into())),
            "ztunnel: exited last: a b"
        );
    }
}

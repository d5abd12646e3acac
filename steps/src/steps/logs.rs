//! Steps that read ztunnel's log lines and assert their fields (parsed, never substrings).

use std::time::Duration;

use cucumber::gherkin::Step;
use cucumber::then;
use meshcert_mesh::wait::{Probe, eventually, eventually_scaled};
use meshcert_model::LogLine;
use meshcert_oracle::logs::{Expected, check_fields};

use crate::params::{Level, Window};
use crate::world::{MeshWorld, StepFailure, StepResult, ensure};

/// How long an access line may trail the end of its connection.
const ACCESS_LOG_DEADLINE: Duration = Duration::from_secs(3);

/// A request's access line is the client side's (`direction="outbound"`): the destination's
/// ztunnel logs the same connection as `inbound`, and a node's ztunnel logs both when the two
/// pods share the node.
#[then(expr = "ztunnel logs a {string} access line for each request")]
async fn access_line_per_request(world: &mut MeshWorld, message: String) -> StepResult {
    let batch = world.last_batch()?.to_vec();
    let answered = batch.iter().filter(|r| !r.failed()).count();
    let since = batch.first().map(|r| r.started_at).unwrap_or_default();
    let mesh = world.mesh().await?;
    let lines = eventually(
        &format!("{answered} access lines \"{message}\""),
        ACCESS_LOG_DEADLINE,
        Duration::from_millis(20),
        || async {
            match mesh.ztunnel_logs().await {
                Ok(lines) => {
                    let found: Vec<LogLine> = lines
                        .into_iter()
                        .filter(|l| {
                            l.target == "access"
                                && l.message == message
                                && l.observed_at >= since
                                && l.fields.get("direction").map(String::as_str) == Some("outbound")
                        })
                        .collect();
                    if found.len() >= answered {
                        Probe::Ready(found)
                    } else {
                        Probe::NotYet(format!("{} of {answered} lines", found.len()))
                    }
                }
                Err(e) => Probe::Failed(e),
            }
        },
    )
    .await?;
    ensure!(
        lines.len() == answered,
        "{} access lines \"{message}\" for {answered} answered requests:\n{}",
        lines.len(),
        raw(&lines)
    );
    world.observations.log_lines = lines;
    Ok(())
}

#[then(expr = "every access line names the client pod, namespace {string} and identity {string}")]
async fn access_source(world: &mut MeshWorld, namespace: String, identity: String) -> StepResult {
    let client = world.client()?;
    let pod = world
        .pods(&client.name)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| StepFailure("no client pod".into()))?;
    for line in access_lines(world)? {
        expect_field(line, "src.workload", &pod.name)?;
        expect_field(line, "src.namespace", &namespace)?;
        expect_field(line, "src.identity", &identity)?;
        let addr = field(line, "src.addr")?;
        let ip = addr.rsplit_once(':').map(|(ip, _)| ip).unwrap_or("");
        ensure!(
            ip == pod.ip.to_string(),
            "src.addr={addr} is not the client pod's IP {}: {}",
            pod.ip,
            line.raw
        );
    }
    Ok(())
}

#[then(
    expr = "every access line names service {string}, namespace {string} and direction {string}"
)]
async fn access_destination(
    world: &mut MeshWorld,
    service: String,
    namespace: String,
    direction: String,
) -> StepResult {
    for line in access_lines(world)? {
        expect_field(line, "dst.service", &service)?;
        expect_field(line, "dst.namespace", &namespace)?;
        expect_field(line, "direction", &direction)?;
    }
    Ok(())
}

#[then(
    expr = "every access line's pod address is a {string} pod's IP on port {int} and its dst.workload is that pod"
)]
async fn access_endpoint(world: &mut MeshWorld, deployment: String, port: u16) -> StepResult {
    let pods = world.pods(&deployment).await?;
    for line in access_lines(world)? {
        // Over HBONE dst.addr is the destination ztunnel's 15008; the pod is the tunnel's target.
        let key = if line.fields.contains_key("dst.hbone_addr") {
            "dst.hbone_addr"
        } else {
            "dst.addr"
        };
        let addr = field(line, key)?;
        let pod = pods
            .iter()
            .find(|p| addr == format!("{}:{port}", p.ip))
            .ok_or_else(|| {
                StepFailure(format!(
                    "{key}={addr} is no {deployment} pod on port {port}: {}",
                    line.raw
                ))
            })?;
        expect_field(line, "dst.workload", &pod.name)?;
    }
    Ok(())
}

#[then("every access line counts bytes sent and received and a duration in milliseconds")]
async fn access_counters(world: &mut MeshWorld) -> StepResult {
    for line in access_lines(world)? {
        for key in ["bytes_sent", "bytes_recv"] {
            let n: u64 = field(line, key)?
                .parse()
                .map_err(|_| StepFailure(format!("{key} is not a count: {}", line.raw)))?;
            ensure!(
                n > 0,
                "{key}=0 on a connection that carried a request and its answer: {}",
                line.raw
            );
        }
        let duration = field(line, "duration")?;
        let ms = duration
            .strip_suffix("ms")
            .and_then(|n| n.parse::<u64>().ok());
        ensure!(
            ms.is_some(),
            "duration={duration:?} is not a whole number of milliseconds: {}",
            line.raw
        );
    }
    Ok(())
}

#[then("each request's access line names the replica that answered it")]
async fn access_names_answering_replica(world: &mut MeshWorld) -> StepResult {
    let lines = access_lines(world)?;
    let mut sources: Vec<&str> = world
        .last_batch()?
        .iter()
        .filter_map(|r| r.source.as_deref())
        .collect();
    let total = sources.len();
    sources.sort_unstable();
    sources.dedup();
    ensure!(
        sources.len() == total,
        "client source addresses repeat within the batch: lines cannot be paired with requests"
    );
    for record in world.last_batch()? {
        let Some(replica) = record.replica() else {
            continue;
        };
        let source = record.source.as_deref().ok_or_else(|| {
            StepFailure(format!(
                "request #{} has no source address to pair it with its access line",
                record.index
            ))
        })?;
        let line = lines
            .iter()
            .find(|l| l.fields.get("src.addr").map(String::as_str) == Some(source))
            .ok_or_else(|| {
                StepFailure(format!(
                    "no access line has src.addr={source} (request #{})",
                    record.index
                ))
            })?;
        expect_field(line, "dst.workload", replica)?;
    }
    Ok(())
}

#[then(
    expr = "within {window} ztunnel logs at {level} a {string} line {string} about the blocked pod, with fields:"
)]
async fn outlier_line(
    world: &mut MeshWorld,
    within: Window,
    level: Level,
    target: String,
    message: String,
    step: &Step,
) -> StepResult {
    let fault = world.network_fault()?.clone();
    let pod = fault.pod.name.clone();
    // The fault took effect somewhere after the driver began to inject it.
    let since = fault.handle.requested_at;
    let within = within.resolve(&*world.thresholds()?);
    let mesh = world.mesh().await?;
    let line = eventually_scaled(
        &format!("a {} {target} line \"{message}\" about {pod}", level.0),
        within,
        Duration::from_millis(20),
        || async {
            match mesh.ztunnel_logs().await {
                Ok(lines) => match lines.into_iter().find(|l| {
                    l.level == level.0
                        && l.target == target
                        && l.message == message
                        && l.observed_at >= since
                        && l.fields.get("dst.workload") == Some(&pod)
                }) {
                    Some(line) => Probe::Ready(line),
                    None => Probe::NotYet("no such line yet".into()),
                },
                Err(e) => Probe::Failed(e),
            }
        },
    )
    .await?;
    world.observations.log_lines.push(line.clone());
    let table = step
        .table
        .as_ref()
        .ok_or_else(|| StepFailure("the step needs a table of fields".into()))?;
    let mut expected = Vec::new();
    for row in &table.rows {
        let [key, value] = row.as_slice() else {
            return Err(StepFailure(format!(
                "table rows need two cells (field, value): {row:?}"
            )));
        };
        let value = match value.as_str() {
            "<any>" => Expected::NonEmpty,
            v => Expected::Exactly(v.replace("<blocked pod IP>", &fault.pod.ip.to_string())),
        };
        expected.push((key.clone(), value));
    }
    check_fields(&line, &expected).map_err(StepFailure)
}

fn access_lines(world: &MeshWorld) -> Result<&[LogLine], StepFailure> {
    let lines = world.observations.log_lines.as_slice();
    ensure!(
        !lines.is_empty(),
        "no access lines were read: add \"ztunnel logs a ... access line for each request\" first"
    );
    Ok(lines)
}

fn field<'a>(line: &'a LogLine, key: &str) -> Result<&'a str, StepFailure> {
    line.fields
        .get(key)
        .map(String::as_str)
        .ok_or_else(|| StepFailure(format!("field {key} is missing: {}", line.raw)))
}

fn expect_field(line: &LogLine, key: &str, expected: &str) -> StepResult {
    let value = field(line, key)?;
    ensure!(
        value == expected,
        "{key}={value:?}, expected {expected:?}: {}",
        line.raw
    );
    Ok(())
}

fn raw(lines: &[LogLine]) -> String {
    lines
        .iter()
        .map(|l| format!("  {}", l.raw))
        .collect::<Vec<_>>()
        .join("\n")
}

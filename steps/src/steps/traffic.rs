//! Steps that send requests from the client and assert who answered them.

use std::collections::BTreeMap;
use std::time::Duration;

use cucumber::{then, when};
use meshcert_mesh::{RequestOutcome, RequestRecord};
use meshcert_oracle::{spread, summary};

use crate::params::{After, Budget, Ordinal, Rate, Span, Spread, Window};
use crate::world::{MeshWorld, StepFailure, StepResult, ensure};

/// `curl` with no `--max-time` would wait forever; the harness bounds every request.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// How a failed request shows in a list of answers.
const FAILED: &str = "<failed>";

#[when(expr = "the client sends {int} request(s) to {string}")]
async fn send(world: &mut MeshWorld, count: u32, url: String) -> StepResult {
    world
        .send(&url, count, Duration::ZERO, DEFAULT_TIMEOUT)
        .await
}

#[when(expr = "the client sends {int} request(s) to {string} with a {duration} timeout")]
async fn send_with_timeout(
    world: &mut MeshWorld,
    count: u32,
    url: String,
    timeout: Span,
) -> StepResult {
    world.send(&url, count, Duration::ZERO, timeout.0).await
}

#[when(
    expr = "the client sends {int} request(s) to {string}, one every {duration}, with a {duration} timeout"
)]
async fn send_paced(
    world: &mut MeshWorld,
    count: u32,
    url: String,
    every: Span,
    timeout: Span,
) -> StepResult {
    world.send(&url, count, every.0, timeout.0).await
}

/// Most requests one stream may hold: every request loop is bounded in count.
const MOST_PACED: u32 = 600;

#[when(
    expr = "the client sends requests to {string}, one every {duration}, with a {duration} timeout, until {duration} after {window}"
)]
async fn send_past_window(
    world: &mut MeshWorld,
    url: String,
    every: Span,
    timeout: Span,
    extra: Span,
    window: Window,
) -> StepResult {
    // The stream is as long as the declared window needs, so one feature serves a profile whose
    // mesh detects in the data plane (1s) and one that waits for the kubelet (10s).
    let span = window.resolve(&*world.thresholds()?) + extra.0;
    let every = every.0.max(Duration::from_millis(1));
    let count = (span.as_millis() / every.as_millis()).clamp(1, u128::from(MOST_PACED)) as u32;
    world.send(&url, count, every, timeout.0).await
}

#[then("every request is answered")]
async fn all_answered(world: &mut MeshWorld) -> StepResult {
    let failed = failures(world.last_batch()?);
    ensure!(
        failed.is_empty(),
        "{} request(s) failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
    Ok(())
}

#[then(expr = "at most {budget} request(s) failed")]
#[then(expr = "no more requests failed than {budget}")]
async fn at_most_failed(world: &mut MeshWorld, bound: Budget) -> StepResult {
    let bound = bound.resolve(&*world.thresholds()?);
    let failed = failures(world.last_batch()?);
    ensure!(
        failed.len() <= bound,
        "{} requests failed, more than {bound}:\n{}",
        failed.len(),
        failed.join("\n")
    );
    Ok(())
}

#[then(expr = "each of the {int} {string} replicas answered {int} request(s)")]
async fn each_answered(
    world: &mut MeshWorld,
    replicas: usize,
    deployment: String,
    each: usize,
) -> StepResult {
    let pods = replica_names(world, &deployment, replicas).await?;
    world.expect_even(
        pods.clone(),
        format!("each of the {replicas} {deployment} replicas answered {each}"),
    );
    let batch = world.last_batch()?;
    let counts = answer_counts(batch);
    let failed = batch.iter().filter(|r| r.failed()).count();
    let expected: BTreeMap<String, usize> = pods.iter().map(|p| (p.clone(), each)).collect();
    ensure!(
        counts == expected && failed == 0,
        "expected each of {replicas} replicas to answer {each} requests; got {counts:?} and {failed} failures \
         (answers in order: {})",
        answer_runs(batch)
    );
    Ok(())
}

#[then("the replicas answered in a repeating order")]
async fn repeating_order(world: &mut MeshWorld) -> StepResult {
    let answers = answers(world.last_batch()?);
    meshcert_oracle::repeating_period(&answers)
        .map(|_| ())
        .map_err(StepFailure)
}

#[then("the blocked pod answered no request")]
#[then("the pod taken down answered no request")]
async fn blocked_silent(world: &mut MeshWorld) -> StepResult {
    let blocked = world.network_fault()?.pod.name.clone();
    let answered: Vec<u32> = world
        .last_batch()?
        .iter()
        .filter(|r| r.replica() == Some(&blocked))
        .map(|r| r.index)
        .collect();
    ensure!(
        answered.is_empty(),
        "the blocked pod {blocked} answered requests {answered:?}"
    );
    Ok(())
}

#[then(
    expr = "the requests started {after} were answered by the other {int} {string} replicas, each at least once, with {rate}"
)]
async fn healthy_after_block(
    world: &mut MeshWorld,
    after: After,
    others: usize,
    deployment: String,
    rate: Rate,
) -> StepResult {
    let blocked = world.network_fault()?.pod.name.clone();
    let healthy: Vec<String> = world
        .pods(&deployment)
        .await?
        .into_iter()
        .map(|p| p.name)
        .filter(|p| *p != blocked)
        .collect();
    ensure!(
        healthy.len() == others,
        "{deployment} has {} replicas besides the blocked one, not {others}",
        healthy.len()
    );
    world.expect_even(
        healthy.clone(),
        format!("answered by each of the other {others} replicas after the block"),
    );
    let thresholds = world.thresholds()?;
    let after = after.0.resolve(&thresholds);
    let records = after_block(world, after)?;
    judge_members(&records, &healthy, rate.resolve(&thresholds), false).map_err(|f| {
        StepFailure(format!(
            "requests started {after:?} or more after the block: {f}"
        ))
    })
}

#[then(expr = "the {int} {string} replicas answered every request, {spread}, with {rate}")]
async fn replicas_answered(
    world: &mut MeshWorld,
    replicas: usize,
    deployment: String,
    spread: Spread,
    rate: Rate,
) -> StepResult {
    let pods = replica_names(world, &deployment, replicas).await?;
    world.expect_even(
        pods.clone(),
        format!("the {replicas} {deployment} replicas answered every request, {spread}"),
    );
    judge_members(
        world.last_batch()?,
        &pods,
        rate.resolve(&*world.thresholds()?),
        spread == Spread::Evenly,
    )
    .map_err(|f| StepFailure(f.to_string()))
}

#[then(
    expr = "the {ordinal} {string} pod was still picked in the latest batch, as one of its {int} replicas, with {rate}"
)]
async fn still_picked(
    world: &mut MeshWorld,
    which: Ordinal,
    deployment: String,
    replicas: usize,
    rate: Rate,
) -> StepResult {
    let pod = world.pod(&deployment, which.0).await?.name;
    let batch = world.last_batch()?;
    let answered = batch.iter().filter(|r| r.replica() == Some(&pod)).count() as u32;
    spread::still_picked(
        &pod,
        answered,
        batch.len(),
        replicas,
        rate.resolve(&*world.thresholds()?),
    )
    .map_err(|f| StepFailure(format!("{f} (answers in order: {})", answer_runs(batch))))
}

#[then(expr = "the pick did not change from the batch before, with {rate}")]
async fn pick_unchanged(world: &mut MeshWorld, rate: Rate) -> StepResult {
    let batches = &world.observations.batches;
    ensure!(
        batches.len() >= 2,
        "this step compares the latest two batches; {} were sent",
        batches.len()
    );
    let [before, after] =
        [&batches[batches.len() - 2], &batches[batches.len() - 1]].map(|b| answers(&b.records));
    for (name, batch) in [("before", &before), ("after", &after)] {
        ensure!(
            !batch.iter().any(|a| a == FAILED),
            "a request of the batch {name} failed: {batch:?}"
        );
    }
    spread::same_pick(&before, &after, rate.resolve(&*world.thresholds()?))
        .map(|_| ())
        .map_err(StepFailure)
}

#[then(expr = "within {window} the formerly blocked pod answers again")]
#[then(expr = "within {window} the pod taken down answers again")]
async fn answers_again(world: &mut MeshWorld, within: Window) -> StepResult {
    let within = within.resolve(&*world.thresholds()?);
    let pod = world.network_fault()?.pod.name.clone();
    let url = world
        .observations
        .batches
        .last()
        .map(|b| b.plan.url.clone())
        .ok_or_else(|| StepFailure("no requests were sent yet".into()))?;
    // Probe with paced requests, bounded in count and time by the deadline.
    let every = Duration::from_millis(50);
    let count = (within.as_millis() / every.as_millis()).max(1) as u32;
    let started = world.elapsed();
    // The verdict is the first answer from the pod: stop sending once it came.
    world
        .send_until(
            &url,
            count.min(200),
            every,
            Duration::from_secs(2),
            |records| records.iter().any(|r| r.replica() == Some(pod.as_str())),
        )
        .await?;
    let batch = world.last_batch()?;
    let first = batch.iter().find(|r| r.replica() == Some(&pod));
    match first {
        Some(r) if r.started_at - started <= within => Ok(()),
        _ => Err(StepFailure(format!(
            "{pod} did not answer any of {} requests sent over {:?} after the block was removed (answers: {})",
            batch.len(),
            within,
            answer_runs(batch)
        ))),
    }
}

#[then(expr = "every answer of the {ordinal} {string} pod was HTTP {int}")]
async fn answered_with_status(
    world: &mut MeshWorld,
    which: Ordinal,
    deployment: String,
    status: u16,
) -> StepResult {
    let pod = world.pod(&deployment, which.0).await?.name;
    let statuses: Vec<u16> = world
        .last_batch()?
        .iter()
        .filter_map(|r| match &r.outcome {
            RequestOutcome::Answered { replica, status } if *replica == pod => Some(*status),
            _ => None,
        })
        .collect();
    ensure!(
        !statuses.is_empty() && statuses.iter().all(|s| *s == status),
        "{pod} answered with statuses {statuses:?}, expected at least one answer and every one HTTP {status}"
    );
    Ok(())
}

/// The pod names of a deployment, which must have `replicas` of them.
async fn replica_names(
    world: &mut MeshWorld,
    deployment: &str,
    replicas: usize,
) -> Result<Vec<String>, StepFailure> {
    let pods: Vec<String> = world
        .pods(deployment)
        .await?
        .into_iter()
        .map(|p| p.name)
        .collect();
    ensure!(
        pods.len() == replicas,
        "{deployment} has {} pods, not {replicas}: {pods:?}",
        pods.len()
    );
    Ok(pods)
}

/// Every request answered, only by `members`, each of them at least once, and with `evenly`
/// a spread consistent with an even one: the oracle's verdicts at false-alarm rate `alpha`.
fn judge_members(
    records: &[RequestRecord],
    members: &[String],
    alpha: f64,
    evenly: bool,
) -> Result<(), spread::Finding> {
    let answers: Vec<Option<&str>> = records.iter().map(|r| r.replica()).collect();
    let names: Vec<&str> = members.iter().map(String::as_str).collect();
    let counts = spread::answered_only_by(&answers, &names)?;
    spread::every_member_answered(&counts, alpha)?;
    if evenly {
        spread::spread_evenly(&counts, alpha)?;
    }
    Ok(())
}

/// Requests of the latest batch that started at least `after` past the latest block.
fn after_block(world: &MeshWorld, after: Duration) -> Result<Vec<RequestRecord>, StepFailure> {
    let from = world.network_fault()?.handle.injected_at + after;
    let records: Vec<RequestRecord> = world
        .last_batch()?
        .iter()
        .filter(|r| r.started_at >= from)
        .cloned()
        .collect();
    ensure!(
        !records.is_empty(),
        "no request started {after:?} or more after the block: send for longer"
    );
    Ok(records)
}

/// The failed requests, one line each.
fn failures(records: &[RequestRecord]) -> Vec<String> {
    records
        .iter()
        .filter(|r| r.failed())
        .map(describe)
        .collect()
}

fn answers(records: &[RequestRecord]) -> Vec<String> {
    records
        .iter()
        .map(|r| r.replica().unwrap_or(FAILED).to_string())
        .collect()
}

/// The answers in order, runs folded; the raw records stay in the results file.
fn answer_runs(records: &[RequestRecord]) -> String {
    summary::runs(records.iter().map(|r| r.replica().unwrap_or(FAILED)))
}

fn answer_counts(records: &[RequestRecord]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for replica in records.iter().filter_map(|r| r.replica()) {
        *counts.entry(replica.to_string()).or_insert(0) += 1;
    }
    counts
}

fn describe(r: &RequestRecord) -> String {
    match &r.outcome {
        RequestOutcome::Answered { replica, status } => format!(
            "  #{} at {:?}: {replica} answered HTTP {status} in {:?}",
            r.index, r.started_at, r.latency
        ),
        RequestOutcome::Failed { failure } => {
            format!(
                "  #{} at {:?}: failed ({failure}) after {:?}",
                r.index, r.started_at, r.latency
            )
        }
    }
}

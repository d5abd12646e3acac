//! Steps that send requests from the client and assert who answered them.

use std::collections::BTreeMap;
use std::time::Duration;

use cucumber::{then, when};
use meshcert_mesh::stats::UniformityTest;
use meshcert_mesh::wait::scaled;
use meshcert_mesh::{RequestOutcome, RequestRecord};

use crate::params::{Ordinal, Rate, Span};
use crate::world::{MeshWorld, StepFailure, StepResult, ensure};

/// `curl` with no `--max-time` would wait forever; the harness bounds every request.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

#[when(expr = "the client sends {int} request(s) to {string}")]
async fn send(world: &mut MeshWorld, count: u32, url: String) -> StepResult {
    world
        .send(&url, count, Duration::ZERO, scaled(DEFAULT_TIMEOUT))
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

#[then(expr = "at most {int} request(s) failed")]
async fn at_most_failed(world: &mut MeshWorld, bound: usize) -> StepResult {
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
    let pods: Vec<String> = world
        .pods(&deployment)
        .await?
        .into_iter()
        .map(|p| p.name)
        .collect();
    ensure!(
        pods.len() == replicas,
        "{deployment} has {} pods, not {replicas}: {pods:?}",
        pods.len()
    );
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
         (answers in order: {:?})",
        answers(batch)
    );
    Ok(())
}

#[then("the replicas answered in a repeating order")]
async fn repeating_order(world: &mut MeshWorld) -> StepResult {
    let answers = answers(world.last_batch()?);
    repeating_period(&answers).map(|_| ()).map_err(StepFailure)
}

#[then("the blocked pod answered no request")]
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
    expr = "every request started {duration} or more after the block was answered within {duration}"
)]
async fn answered_quickly_after(world: &mut MeshWorld, after: Span, within: Span) -> StepResult {
    let records = after_block(world, after.0)?;
    let slow: Vec<String> = records
        .iter()
        .filter(|r| r.failed() || r.latency > within.0)
        .map(describe)
        .collect();
    ensure!(
        slow.is_empty(),
        "{} of the {} requests started {:?} or more after the block failed or took longer than {:?}:\n{}",
        slow.len(),
        records.len(),
        after.0,
        within.0,
        slow.join("\n")
    );
    Ok(())
}

#[then(
    expr = "the requests started {duration} or more after the block are spread evenly over the other {int} {string} replicas, with a false-alarm rate of {rate}"
)]
async fn spread_after(
    world: &mut MeshWorld,
    after: Span,
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
        format!("spread evenly over the other {others} replicas after the block"),
    );
    let records = after_block(world, after.0)?;
    let counts = answer_counts(&records);
    let strangers: Vec<&String> = counts.keys().filter(|p| !healthy.contains(p)).collect();
    ensure!(
        strangers.is_empty(),
        "requests after detection were answered by {strangers:?}, not only by {healthy:?}"
    );
    let observed: Vec<u32> = healthy
        .iter()
        .map(|p| counts.get(p).copied().unwrap_or(0) as u32)
        .collect();
    let test = UniformityTest {
        n: observed.iter().sum(),
        k: others as u32,
        alpha: rate.0,
    };
    ensure!(
        test.n >= 2 * test.k,
        "only {} requests after detection: too few to judge a spread",
        test.n
    );
    let verdict = test.check(&observed);
    ensure!(
        !verdict.reject,
        "answers after detection are not spread evenly over {healthy:?}: counts {observed:?}, exact multinomial \
         p-value {:.2e} < false-alarm rate {} (this sample detects a skew of {:.2} with power 0.9)",
        verdict.p_value,
        rate.0,
        test.min_detectable_skew(0.9)
    );
    Ok(())
}

#[then(expr = "within {duration} the formerly blocked pod answers again")]
async fn answers_again(world: &mut MeshWorld, within: Span) -> StepResult {
    let pod = world.network_fault()?.pod.name.clone();
    let url = world
        .observations
        .batches
        .last()
        .map(|b| b.plan.url.clone())
        .ok_or_else(|| StepFailure("no requests were sent yet".into()))?;
    // Probe with paced requests, bounded in count and time by the deadline.
    let every = Duration::from_millis(50);
    let count = (scaled(within.0).as_millis() / every.as_millis()).max(1) as u32;
    let started = world.elapsed();
    world
        .send(&url, count.min(200), every, Duration::from_secs(2))
        .await?;
    let batch = world.last_batch()?;
    let first = batch.iter().find(|r| r.replica() == Some(&pod));
    match first {
        Some(r) if r.started_at - started <= scaled(within.0) => Ok(()),
        _ => Err(StepFailure(format!(
            "{pod} did not answer any of {} requests sent over {:?} after the block was removed (answers: {:?})",
            batch.len(),
            within.0,
            answers(batch)
        ))),
    }
}

#[then(expr = "the {ordinal} {string} pod answered its {int} requests with HTTP {int}")]
async fn answered_with_status(
    world: &mut MeshWorld,
    which: Ordinal,
    deployment: String,
    count: usize,
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
        statuses.len() == count && statuses.iter().all(|s| *s == status),
        "{pod} answered {} requests with statuses {statuses:?}, expected {count} with HTTP {status}",
        statuses.len()
    );
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
        .map(|r| {
            r.replica()
                .map(str::to_string)
                .unwrap_or_else(|| "<failed>".into())
        })
        .collect()
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

/// The period of a round-robin sequence: its first `p` answers are distinct and every later
/// answer repeats the one `p` before it, where `p` is the number of distinct answers.
fn repeating_period(answers: &[String]) -> Result<usize, String> {
    let mut distinct: Vec<&String> = answers.iter().collect();
    distinct.sort();
    distinct.dedup();
    let period = distinct.len();
    if period == 0 || answers.len() < 2 * period {
        return Err(format!(
            "{} answers over {period} replicas are too few to show a repeating order",
            answers.len()
        ));
    }
    let head = &answers[..period];
    let mut sorted_head: Vec<&String> = head.iter().collect();
    sorted_head.sort();
    sorted_head.dedup();
    if sorted_head.len() != period {
        return Err(format!(
            "the first {period} answers {head:?} are not {period} different replicas"
        ));
    }
    if let Some(i) = (period..answers.len()).find(|&i| answers[i] != answers[i - period]) {
        return Err(format!(
            "answer #{i} ({}) breaks the repeating order {head:?} (answers: {answers:?})",
            answers[i]
        ));
    }
    Ok(period)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn seq(s: &str) -> Vec<String> {
        s.chars().map(|c| c.to_string()).collect()
    }

    #[rstest]
    #[case("abcabcabcabc", Ok(3))]
    #[case("bcabcabca", Ok(3))]
    #[case("abab", Ok(2))]
    #[case("abcacbabc", Err("breaks"))]
    #[case("aabbcc", Err("are not 3 different"))]
    #[case("abc", Err("too few"))]
    #[case("aaaa", Ok(1))]
    fn periods(#[case] answers: &str, #[case] expected: Result<usize, &str>) {
        match (repeating_period(&seq(answers)), expected) {
            (Ok(p), Ok(e)) => assert_eq!(p, e),
            (Err(m), Err(e)) => assert!(m.contains(e), "{m}"),
            (got, want) => panic!("{answers}: got {got:?}, want {want:?}"),
        }
    }
}

//! Traffic steps: exact counts, each-answered spread, repeating order.

use super::{GUIDE, Outcome, outcomes, run_feature};
use crate::testing::{InMemoryMesh, Picker};

const URL: &str = "http://in-ambient:8000/hostname";

fn feature(scenarios: &str) -> String {
    format!("{GUIDE}{scenarios}").replace("URL", URL)
}

#[tokio::test(start_paused = true)]
async fn round_robin_passes_the_exact_count_and_order_steps() {
    let ran = run_feature(
        &feature(
            r#"
  Scenario: each answers 4, in order
    When the client sends 12 requests to "URL"
    Then every request is answered
    And each of the 3 "in-ambient" replicas answered 4 requests
    And the replicas answered in a repeating order
"#,
        ),
        InMemoryMesh::new(),
    )
    .await;
    assert_eq!(
        outcomes(&ran),
        [("each answers 4, in order", &Outcome::Passed)]
    );
    let batch = &ran[0].observations.batches[0];
    assert_eq!(batch.records.len(), 12);
    assert_eq!(batch.records[3].replica(), Some("in-ambient-0"));
    assert_eq!(ran[0].observations.expectations.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_uneven_pick_fails_each_answered_and_a_non_repeating_one_fails_the_order() {
    let uneven = [
        "in-ambient-0",
        "in-ambient-0",
        "in-ambient-1",
        "in-ambient-2",
    ];
    let ran = run_feature(
        &feature(
            r#"
  Scenario: each answers 4
    When the client sends 12 requests to "URL"
    Then each of the 3 "in-ambient" replicas answered 4 requests

  Scenario: repeating order
    When the client sends 5 requests to "URL"
    Then the replicas answered in a repeating order
"#,
        ),
        InMemoryMesh::new().picking(Picker::Sequence(uneven.map(String::from).to_vec())),
    )
    .await;
    assert!(
        ran[0]
            .failure()
            .starts_with("expected each of 3 replicas to answer 4 requests"),
        "{}",
        ran[0].failure()
    );
    assert!(!ran[1].failure().is_empty());
}

#[tokio::test(start_paused = true)]
async fn failed_requests_fail_every_request_is_answered_but_fit_a_budget() {
    let ran = run_feature(
        &feature(
            r#"
  Scenario: all answered
    When the client sends 6 requests to "URL"
    Then every request is answered

  Scenario: within budget
    When the client sends 6 requests to "URL"
    Then at most 2 requests failed

  Scenario: over budget
    When the client sends 6 requests to "URL"
    Then at most 1 request failed
"#,
        ),
        InMemoryMesh::new().failing([1, 4]),
    )
    .await;
    assert!(
        ran[0]
            .failure()
            .starts_with("2 request(s) failed:\n  #1 at")
    );
    assert_eq!(ran[1].outcome, Outcome::Passed);
    assert!(
        ran[2]
            .failure()
            .starts_with("2 requests failed, more than 1")
    );
}

#[tokio::test(start_paused = true)]
async fn the_fake_clock_advances_by_the_plans_interval() {
    let ran = run_feature(
        &feature(
            r#"
  Scenario: paced
    When the client sends 4 requests to "URL", one every 250ms, with a 1s timeout
"#,
        ),
        InMemoryMesh::new(),
    )
    .await;
    let starts: Vec<u128> = ran[0].observations.batches[0]
        .records
        .iter()
        .map(|r| r.started_at.as_millis())
        .collect();
    assert_eq!(starts, [0, 250, 500, 750]);
}

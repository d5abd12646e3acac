//! Fault steps: take down and undo, and "the pod taken down answered no request".

use super::{GUIDE, Outcome, run_feature};
use crate::testing::InMemoryMesh;

fn feature(take_down: &str) -> String {
    format!(
        r#"{GUIDE}
  Scenario: taken down
    When I take down the first "in-ambient" pod by {take_down}
    And the client sends 6 requests to "http://in-ambient:8000/hostname"
    Then the pod taken down answered no request
"#
    )
}

#[tokio::test(start_paused = true)]
async fn a_dropped_pod_answers_nothing_and_its_fault_is_recorded() {
    let ran = run_feature(&feature("iptables DROP on port 8080"), InMemoryMesh::new()).await;
    assert_eq!(ran[0].outcome, Outcome::Passed);
    let fault = &ran[0].observations.faults[0];
    assert_eq!(fault.pod.name, "in-ambient-0");
    assert_eq!(fault.undone_at, None);
}

#[tokio::test(start_paused = true)]
async fn a_pod_whose_readiness_fails_still_answers_when_nothing_reacts() {
    // NotReady changes nothing by itself: only a control plane that reacts would move traffic.
    let ran = run_feature(&feature("failing its readiness probe"), InMemoryMesh::new()).await;
    assert!(
        ran[0]
            .failure()
            .starts_with("the blocked pod in-ambient-0 answered requests [0, 3]"),
        "{}",
        ran[0].failure()
    );
}

#[tokio::test(start_paused = true)]
async fn a_removed_fault_is_marked_undone_and_cannot_be_removed_twice() {
    let ran = run_feature(
        &format!(
            r#"{GUIDE}
  Scenario: undone
    When I block port 8080 of the second "in-ambient" pod with iptables REJECT
    And the client sends 3 requests to "http://in-ambient:8000/hostname"
    And the fault is removed
    Then within 1s the pod taken down answers again

  Scenario: undone twice
    When I block port 8080 of the second "in-ambient" pod with iptables REJECT
    And the fault is removed
    And the fault is removed
"#
        ),
        InMemoryMesh::new(),
    )
    .await;
    assert_eq!(ran[0].outcome, Outcome::Passed);
    let fault = &ran[0].observations.faults[0];
    assert_eq!(fault.pod.name, "in-ambient-1");
    assert_eq!(fault.undone_at.map(|d| d.as_millis()), Some(3));
    assert_eq!(ran[1].failure(), "no block is in force");
}

#[tokio::test(start_paused = true)]
async fn an_iptables_fault_on_a_mesh_without_network_faults_is_a_skip() {
    let ran = run_feature(
        &feature("iptables DROP on port 8080"),
        InMemoryMesh::new().capabilities(Vec::new()),
    )
    .await;
    assert_eq!(
        crate::unsupported_reason(ran[0].failure()),
        Some(
            "fault iptables -A INPUT -p tcp --dport 8080 -j DROP is not supported by this mesh \
             under test: the in-memory mesh was built without network faults"
        )
    );
}

//! Distribution steps: a priority level took every request, on the ladder topology.

use super::{Outcome, run_feature};
use crate::testing::{InMemoryMesh, Picker};

const FEATURE: &str = r#"Feature: levels
  Scenario: P0 of PreferClose
    Given the topology "ladder"
    And the Service "in-ambient" has annotation networking.istio.io/traffic-distribution: PreferClose
    When the client sends 32 requests to "http://in-ambient:8000/hostname"
    Then the replicas at P0 of PreferClose answered every request, each at least once, with the declared false-alarm rate
"#;

#[tokio::test(start_paused = true)]
async fn a_pick_within_the_level_passes() {
    let p0 = ["same-node", "same-subzone", "same-zone"].map(|r| format!("in-ambient-{r}-0"));
    let ran = run_feature(
        FEATURE,
        InMemoryMesh::new().picking(Picker::Sequence(p0.to_vec())),
    )
    .await;
    assert_eq!(ran[0].outcome, Outcome::Passed);
    let observations = &ran[0].observations;
    assert_eq!(observations.expectations[0].replicas.len(), 3);
    assert!(
        observations.topology.is_none(),
        "kept only by keep_evidence"
    );
}

#[tokio::test(start_paused = true)]
async fn a_pick_over_every_level_fails_naming_the_levels() {
    let ran = run_feature(FEATURE, InMemoryMesh::new()).await;
    let failure = ran[0].failure();
    assert!(
        failure.starts_with("the replicas at P0 of PreferClose for httpbin/client-in-ambient:"),
        "{failure}"
    );
    assert!(failure.contains("Levels: same-node=P0"), "{failure}");
}

//! Log steps: the access line's fields, parsed.

use super::{GUIDE, Outcome, run_feature};
use crate::testing::InMemoryMesh;

fn feature(then: &str) -> String {
    format!(
        r#"{GUIDE}
  Scenario: access lines
    When the client sends 6 requests to "http://in-ambient:8000/hostname"
    Then ztunnel logs a "connection complete" access line for each request
{then}
"#
    )
}

const FIELDS: &str = r#"    And every access line names the client pod, namespace "httpbin" and identity "spiffe://cluster.local/ns/httpbin/sa/client-in-ambient"
    And every access line names service "in-ambient.httpbin.svc.cluster.local", namespace "httpbin" and direction "outbound"
    And every access line's pod address is a "in-ambient" pod's IP on port 8080 and its dst.workload is that pod
    And every access line counts bytes sent and received and a duration in milliseconds
    And each request's access line names the replica that answered it"#;

#[tokio::test(start_paused = true)]
async fn access_lines_with_every_field_pass() {
    let ran = run_feature(&feature(FIELDS), InMemoryMesh::new().with_access_log()).await;
    assert_eq!(ran[0].outcome, Outcome::Passed);
    assert_eq!(ran[0].observations.log_lines.len(), 6);
}

#[tokio::test(start_paused = true)]
async fn a_wrong_service_fails_naming_the_field() {
    let ran = run_feature(
        &feature(
            r#"    And every access line names service "other.httpbin.svc.cluster.local", namespace "httpbin" and direction "outbound""#,
        ),
        InMemoryMesh::new().with_access_log(),
    )
    .await;
    assert!(
        ran[0]
            .failure()
            .starts_with(r#"dst.service="in-ambient.httpbin.svc.cluster.local", expected "other"#),
        "{}",
        ran[0].failure()
    );
}

//! The report writers on a results file with a passed, a failed (failover, with its
//! evidence), a skipped and a not-applicable scenario: the HTML's structure, charts and
//! self-containment, the conformance YAML read back, and the errors for bad results files
//! (observations included: a mismatch is an error that says where, never empty data).

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use meshcert_model::{
    DeploymentRef, Expectation, FailureEvidence, Fault, FaultHandle, FaultKind, FaultRecord,
    LogLine, Observations, PodInfo, RequestBatch, RequestFailure, RequestOutcome, RequestPlan,
    RequestRecord,
};
use meshcert_reports::conformance::ConformanceReport;
use meshcert_reports::{Conformance, RunOutcome, RunResults, Verdict, format_timestamp, html};
use serde_json::json;

const PODS: [&str; 3] = [
    "in-ambient-7d8f-aaaaa",
    "in-ambient-7d8f-bbbbb",
    "in-ambient-7d8f-ccccc",
];

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn answered(i: u32, at: u64, replica: &str) -> RequestRecord {
    let outcome = RequestOutcome::Answered {
        replica: replica.into(),
        status: 200,
    };
    RequestRecord {
        index: i,
        started_at: ms(at),
        latency: ms(4),
        source: None,
        outcome,
    }
}

fn batch(records: Vec<RequestRecord>) -> RequestBatch {
    RequestBatch {
        plan: RequestPlan {
            client: DeploymentRef::new("httpbin", "client-in-ambient"),
            url: "http://in-ambient:8000/hostname".into(),
            count: records.len() as u32,
            interval: ms(0),
            timeout: ms(2000),
        },
        records,
    }
}

/// 12 requests shared evenly by the three pods, as expected.
fn even() -> Observations {
    let records = (0..12)
        .map(|i| answered(i, 1000 + 10 * i as u64, PODS[i as usize % 3]))
        .collect();
    Observations {
        batches: vec![batch(records)],
        expectations: vec![Expectation {
            batch: 0,
            replicas: PODS.map(String::from).to_vec(),
            share: 1.0 / 3.0,
            statement: "each of the 3 replicas answered 4".into(),
        }],
        ..Observations::default()
    }
}

/// The first pod blocked from 2.9 s to 4.1 s: one request times out, the others answer.
fn failover() -> Observations {
    let mut records: Vec<_> = (0..20)
        .map(|i| answered(i, 3000 + 50 * i as u64, PODS[1 + i as usize % 2]))
        .collect();
    records[0].latency = ms(2000);
    records[0].outcome = RequestOutcome::Failed {
        failure: RequestFailure::Timeout,
    };
    let pod = PodInfo {
        namespace: "httpbin".into(),
        name: PODS[0].into(),
        ip: IpAddr::V4(Ipv4Addr::new(10, 244, 0, 12)),
        node: "node-a".into(),
        ready: true,
    };
    let fault = Fault {
        pod: pod.pod_ref(),
        kind: FaultKind::IptablesDrop { port: 8080 },
    };
    let warning = LogLine {
        observed_at: ms(3100),
        timestamp: None,
        level: "warn".into(),
        target: "circuit_breaker".into(),
        message: "endpoint marked unhealthy".into(),
        fields: [("consecutive_failures".to_string(), "3".to_string())].into(),
        raw: "x".into(),
    };
    Observations {
        batches: vec![batch(records)],
        faults: vec![FaultRecord {
            handle: FaultHandle {
                id: 1,
                fault,
                injected_at: ms(2900),
                requested_at: ms(2900),
            },
            pod,
            undone_at: Some(ms(4100)),
        }],
        failure_evidence: Some(FailureEvidence {
            ztunnel_log: vec![warning],
            ..FailureEvidence::default()
        }),
        ..Observations::default()
    }
}

fn results_json() -> String {
    json!({
        "schema_version": 2,
        "meshcert_version": "0.1.0",
        "target": {"kind": "reference", "name": "meshcert reference ztunnel", "version": "0.1.0",
                   "profile": "solo", "capabilities": ["network-faults", "scale"], "settings": {"binary": "/x"}},
        "run_id": "ab12cd",
        "seed": 42,
        "started_at": 1_700_000_000u64,
        "duration_ms": 21_000,
        "scenarios": [
            {"feature": "l4/round-robin.feature", "name": "12 requests over 3 replicas", "line": 7,
             "tags": ["@L4-RR-1"], "behaviour_ids": ["L4-RR-1"], "verdict": "passed", "duration_ms": 900,
             "steps": [{"step": "When the client sends 12 requests", "outcome": "passed", "duration_ms": 120}],
             "observations": even()},
            {"feature": "l4/failover-recovery.feature", "name": "the <unblocked> pod answers again", "line": 9,
             "tags": ["@L4-FO-4"], "behaviour_ids": ["L4-FO-4"], "verdict": "failed",
             "step": "Then within 3s the formerly blocked pod answers again",
             "message": "in-ambient-7d8f-aaaaa answered none of 30 requests within 3s", "duration_ms": 6100,
             "observations": failover()},
            {"feature": "traffic-distribution/cross-network.feature", "name": "cross-network twins", "line": 20,
             "tags": ["@TD-MODE-XNET"], "behaviour_ids": ["TD-MODE-XNET"], "verdict": "skipped",
             "reason": "needs capability cross-network", "duration_ms": 0},
            {"feature": "traffic-distribution/defaults.feature", "name": "Istio default", "line": 4,
             "tags": ["@TD-DEF-2"], "behaviour_ids": ["TD-DEF-2"], "verdict": "not_applicable",
             "reason": "it states profile istio", "duration_ms": 0}
        ]
    })
    .to_string()
}

fn results() -> RunResults {
    RunResults::parse_json(&results_json(), "results.json").unwrap()
}

#[test]
fn the_html_opens_on_the_summary_and_shows_failed_scenarios_first_and_open() {
    let html = html::render(&results());
    let summary = html.find("id=\"summary\"").unwrap();
    let scenarios = html.find("<h2>Scenarios</h2>").unwrap();
    assert!(summary < scenarios);
    // Areas from the feature folders, each with its verdict.
    for area in [
        "<h3>l4 <span class=\"badge not-conformant\">NOT conformant",
        "<h3>traffic-distribution <span class=\"badge skipped\">skipped",
    ] {
        assert!(html.contains(area), "{area}");
    }
    let failed = html
        .find("data-verdict=\"failed\" open>")
        .expect("the failed scenario is open");
    let passed = html
        .find("data-verdict=\"passed\">")
        .expect("the passed one is closed");
    assert!(failed < passed, "failed scenarios come first");
    assert!(html.contains("in-ambient-7d8f-aaaaa answered none of 30 requests within 3s"));
    assert!(html.contains("needs capability cross-network"));
    assert!(html.contains("it states profile istio"));
    assert!(html.contains("run ab12cd (seed 42)"));
    assert!(html.contains("2023-11-14T22:13:20Z"));
    // Escaped, never markup.
    assert!(html.contains("the &lt;unblocked&gt; pod"));
    assert!(!html.contains("<unblocked>"));
}

#[test]
fn the_html_fetches_nothing() {
    let html = html::render(&results());
    for outside in [" src=", "<link", "href=\"http", "@import", "url("] {
        assert!(
            !html.contains(outside),
            "{outside:?} would fetch from outside"
        );
    }
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<style>") && html.contains("<script>"));
}

#[test]
fn charts_show_requests_per_replica_with_the_expected_share_and_the_failover_timeline() {
    let html = html::render(&results());
    // Bars: three replicas of 4 and the expected 4.0 each, dashed, with axis units.
    assert!(html.contains("<title>in-ambient-7d8f-aaaaa: 4 of 12 requests</title>"));
    assert_eq!(html.matches("<title>expected 4.0</title>").count(), 3);
    assert!(html.contains(">requests</text>"));
    assert!(html.contains("expected share 33% (4.0 requests) each"));
    // Timeline of the failed scenario: fault start and end, the failed request in red.
    let timeline = html.find("id=\"timeline-").expect("a failover timeline");
    let chart = &html[timeline..];
    assert!(chart.contains("fault: iptables DROP :8080 on in-ambient-7d8f-aaaaa"));
    assert!(chart.contains(">fault removed</text>"));
    assert!(chart.contains("#0 at 3.000 s: timeout in 2000 ms"));
    assert!(chart.contains("time since the mesh was created (s)"));
    // The log kept as evidence.
    assert!(html.contains("ztunnel log (1 lines)"));
    assert!(html.contains("endpoint marked unhealthy"));
    // The passed scenario without faults or failures has no timeline.
    assert_eq!(html.matches("id=\"timeline-").count(), 1);
}

#[test]
fn the_conformance_yaml_reads_back_with_results_per_area_and_behaviour() {
    let report = ConformanceReport::of(&results());
    let yaml = report.to_yaml();
    assert!(
        yaml.starts_with("apiVersion: meshcert.dev/v1alpha1\nkind: ConformanceReport\n"),
        "{yaml}"
    );
    let back: ConformanceReport = serde_saphyr::from_str(&yaml).unwrap();
    assert_eq!(back, report);
    assert_eq!(report.result, RunOutcome::Failed);
    assert!(yaml.contains("\nresult: failure\n"), "{yaml}");
    assert_eq!(
        report.result_reason,
        "1 scenario of 3 applicable failed: the mesh is not conformant; 1 scenario of 3 \
         applicable skipped"
    );
    assert_eq!(report.skipped.len(), 1);
    assert_eq!(report.skipped[0].behaviours, ["TD-MODE-XNET"]);
    assert_eq!(report.date, "2023-11-14T22:13:20Z");
    assert_eq!(report.implementation.profile, "solo");
    let l4 = &report.areas[0];
    assert_eq!(
        (l4.name.as_str(), l4.result),
        ("l4", Conformance::NotConformant)
    );
    let fo4 = l4.behaviours.iter().find(|b| b.id == "L4-FO-4").unwrap();
    assert_eq!(fo4.result, Conformance::NotConformant);
    assert_eq!(
        fo4.note.as_deref(),
        Some("failed at Then within 3s the formerly blocked pod answers again")
    );
    assert_eq!(
        l4.behaviours
            .iter()
            .find(|b| b.id == "L4-RR-1")
            .unwrap()
            .note,
        None
    );
    let td = &report.areas[1];
    assert_eq!(td.statistics.skipped + td.statistics.not_applicable, 2);
    let xnet = td
        .behaviours
        .iter()
        .find(|b| b.id == "TD-MODE-XNET")
        .unwrap();
    assert_eq!(xnet.note.as_deref(), Some("needs capability cross-network"));
}

/// The fixture without its failed scenario: one passed, one skipped, one not applicable.
fn partial() -> RunResults {
    let mut r = results();
    r.scenarios
        .retain(|s| !matches!(s.verdict, Verdict::Failed { .. }));
    r
}

#[test]
fn a_run_with_a_skip_is_partial_at_the_top_of_the_html_and_in_the_yaml() {
    let r = partial();
    assert_eq!(r.outcome(), RunOutcome::Partial);
    let html = html::render(&r);
    let banner = html
        .find("<div class=\"banner partial\" id=\"outcome\" role=\"alert\"><b>Partial run")
        .expect("a partial banner");
    assert!(
        banner < html.find("id=\"summary\"").unwrap(),
        "the banner comes first"
    );
    assert!(html.contains("<b class=\"badge skipped\">PARTIAL</b>"));
    assert!(!html.contains(">CONFORMANT<"));
    let end = banner + html[banner..].find("</div>").unwrap();
    let text = &html[banner..end];
    assert!(
        text.contains(
            "<li><b>1 scenario skipped</b> (TD-MODE-XNET): needs capability cross-network</li>"
        ),
        "{text}"
    );
    assert!(
        text.contains("1 scenario of 2 applicable was skipped"),
        "{text}"
    );
    let yaml = ConformanceReport::of(&r).to_yaml();
    assert!(yaml.contains("\nresult: partial\n"), "{yaml}");
    assert!(
        yaml.contains("reason: needs capability cross-network"),
        "{yaml}"
    );
    // Marked interrupted, the run says so instead.
    let mut stopped = r.clone();
    stopped.interrupted = true;
    assert!(html::render(&stopped).contains("class=\"banner interrupted\""));
    assert!(
        ConformanceReport::of(&stopped)
            .to_yaml()
            .contains("\nresult: interrupted\n")
    );
}

#[test]
fn a_green_run_has_no_banner() {
    let mut r = partial();
    r.scenarios
        .retain(|s| !matches!(s.verdict, Verdict::Skipped { .. }));
    assert_eq!(r.outcome(), RunOutcome::Success);
    let html = html::render(&r);
    assert!(!html.contains("class=\"banner"));
    assert!(html.contains("<b class=\"badge conformant\">CONFORMANT</b>"));
    assert!(
        ConformanceReport::of(&r)
            .to_yaml()
            .contains("\nresult: success\n")
    );
}

/// The error reading `text` as the results file `origin`.
fn parse_error(text: &str, origin: &str) -> String {
    RunResults::parse_json(text, origin)
        .unwrap_err()
        .to_string()
}

#[test]
fn bad_results_files_say_what_is_wrong() {
    let err = parse_error("{", "r.json");
    assert!(
        err.starts_with("results file r.json is not valid meshcert results"),
        "{err}"
    );
    let old = results_json().replace("\"schema_version\":2", "\"schema_version\":1");
    let err = parse_error(&old, "old.json");
    assert!(
        err.contains("schema version 1; this meshcert reads version 2"),
        "{err}"
    );
    let missing = results_json().replace("\"behaviour_ids\":[\"L4-RR-1\"],", "");
    let err = parse_error(&missing, "m.json");
    assert!(err.contains("behaviour_ids"), "{err}");
}

#[test]
fn observations_that_do_not_match_the_model_name_the_file_the_path_and_the_line() {
    let mut value: serde_json::Value = serde_json::from_str(&results_json()).unwrap();
    let plan = &mut value["scenarios"][1]["observations"]["batches"][0]["plan"];
    plan.as_object_mut().unwrap().remove("url");
    let text = serde_json::to_string_pretty(&value).unwrap();
    let err = parse_error(&text, "runs/b/results.json");
    assert!(
        err.starts_with("results file runs/b/results.json is not valid meshcert results: at `scenarios[1].observations.batches[0].plan`: missing field `url` at line "),
        "{err}"
    );
    // A wrong type deep in a record says which record.
    let mut value: serde_json::Value = serde_json::from_str(&results_json()).unwrap();
    value["scenarios"][0]["observations"]["batches"][0]["records"][3]["index"] = json!("three");
    let err = parse_error(&value.to_string(), "a.json");
    assert!(
        err.contains("at `scenarios[0].observations.batches[0].records[3].index`: invalid type"),
        "{err}"
    );
}

#[test]
fn timestamps_are_rfc3339_utc() {
    assert_eq!(format_timestamp(0), "1970-01-01T00:00:00Z");
    assert_eq!(format_timestamp(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(format_timestamp(1_700_000_000), "2023-11-14T22:13:20Z");
}

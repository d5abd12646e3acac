//! Proof that the suite checks something: the reference ztunnel is run with each test-only defect
//! switch. As BEHAVIORS.md defines coverage, each behaviour the defect breaks (`must_fail`) needs
//! at least one of its scenarios to fail, while every scenario tagged with no broken behaviour
//! passes. A scenario no defect can fail would be a scenario that checks nothing.
//!
//! Scenarios tagged with a broken behaviour may pass: a defect can be invisible in some rows
//! (failing over two levels at once cannot show where only one level is left below).
//! `may_fail` lists behaviours a defect breaks only by chance or by timing (a random picker can
//! produce an even count; without retries the number of failures during detection varies), so
//! their verdict is not asserted for that defect.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use meshcert_reports::{RunResults, Verdict};

struct Defect {
    name: &'static str,
    must_fail: &'static [&'static str],
    /// Groups of behaviour IDs, so shared lists (`SPREAD`, `LEVEL_FAILOVER`) compose.
    may_fail: &'static [&'static [&'static str]],
}

/// Behaviours whose scenarios assert a spread (round robin, within a priority level or over
/// the replicas): a broken picker fails them too, legitimately, or by chance does not.
const SPREAD: &[&str] = &[
    "L4-RR-1",
    "L4-RR-3",
    "L4-RR-4",
    "L4-FO-2",
    "L4-FO-4",
    "L4-OD-1",
    "TD-PREC-1",
    "TD-PREC-2",
    "TD-PREC-3",
    "TD-DEF-1",
    "TD-DEF-2",
    "TD-MODE-PC",
    "TD-MODE-PSN",
    "TD-MODE-PR",
    "TD-MODE-PN",
    "TD-MODE-ANY",
    "TD-MODE-XNET",
    "TD-FO-1",
    "TD-ITP-1",
    "LOC-1",
    "LOC-4",
    "L4-OD-2",
];

/// Behaviours whose scenarios fail a level over and back: they need ejection, restoration and
/// retries to work, so the defects of those fail them too.
const LEVEL_FAILOVER: &[&str] = &[
    "TD-MODE-PC",
    "TD-MODE-PSN",
    "TD-MODE-PR",
    "TD-MODE-PN",
    "TD-FO-1",
];

const DEFECTS: &[Defect] = &[
    Defect {
        name: "first-endpoint",
        must_fail: &[
            "L4-RR-1", "L4-RR-2", "L4-RR-4", "L4-FO-2", "L4-FO-4", "L4-OD-1",
        ],
        may_fail: &[SPREAD],
    },
    Defect {
        name: "random-pick",
        must_fail: &["L4-RR-2"],
        // A random pick can still give even counts (see the module doc).
        may_fail: &[SPREAD],
    },
    Defect {
        name: "no-retry",
        must_fail: &["L4-FO-3"],
        may_fail: &[&["L4-FO-2"], LEVEL_FAILOVER],
    },
    Defect {
        name: "never-eject",
        must_fail: &["L4-FO-2", "L4-OD-5", "TD-FO-1"],
        may_fail: &[LEVEL_FAILOVER],
    },
    Defect {
        name: "never-restore",
        must_fail: &["L4-FO-4", "TD-FO-1"],
        may_fail: &[LEVEL_FAILOVER],
    },
    // LOG-1 also checks that dst.addr and dst.workload name the same pod, which this breaks.
    Defect {
        name: "log-wrong-workload",
        must_fail: &["LOG-1", "LOG-2"],
        may_fail: &[],
    },
    Defect {
        name: "log-missing-identity",
        must_fail: &["LOG-1"],
        may_fail: &[],
    },
    // L7 detection counts answers, not TCP handshakes, so a recovered pod's half-open probe
    // (a TCP health check) does not close its breaker either.
    Defect {
        name: "eject-on-http-5xx",
        must_fail: &["L4-OD-1", "L4-OD-2"],
        may_fail: &[&["L4-FO-4"], LEVEL_FAILOVER],
    },
    Defect {
        name: "keep-removed-endpoints",
        must_fail: &["L4-RR-4"],
        may_fail: &[],
    },
    Defect {
        name: "ewma-wrong-weight",
        must_fail: &["L4-OD-4"],
        may_fail: &[],
    },
    Defect {
        name: "health-log-missing-error",
        must_fail: &["L4-OD-3"],
        may_fail: &[],
    },
    Defect {
        name: "ignore-locality",
        must_fail: &[
            "TD-PREC-1",
            "TD-PREC-2",
            "TD-PREC-3",
            "TD-DEF-1",
            "TD-MODE-PC",
            "TD-MODE-PSN",
            "TD-MODE-PR",
            "TD-MODE-PN",
            "TD-FO-1",
            "TD-ITP-1",
            "LOC-1",
            "LOC-4",
            "L4-OD-2",
        ],
        may_fail: &[],
    },
    Defect {
        name: "wrong-precedence",
        must_fail: &["TD-PREC-1"],
        may_fail: &[],
    },
    Defect {
        name: "fail-over-two-levels",
        must_fail: &["TD-MODE-PC", "TD-MODE-PSN", "TD-MODE-PR", "TD-FO-1"],
        may_fail: &[],
    },
    Defect {
        name: "strict-as-failover",
        must_fail: &["TD-ITP-1"],
        may_fail: &[],
    },
];

fn main() -> ExitCode {
    if let Err(reason) = meshcert_mesh::local::preflight() {
        println!("defects: skipped, local meshes unavailable: {reason}");
        println!("defects: 0 passed, 0 failed, {} skipped", DEFECTS.len());
        return ExitCode::SUCCESS;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let only: Vec<String> = std::env::var("MESHCERT_DEFECTS")
        .map(|s| s.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    let (mut passed, mut failed) = (0, 0);
    for defect in DEFECTS
        .iter()
        .filter(|d| only.is_empty() || only.iter().any(|o| o == d.name))
    {
        let started = Instant::now();
        match check(&root, defect) {
            Ok(summary) => {
                passed += 1;
                println!(
                    "defect {:<24} caught ({:.1}s): {summary}",
                    defect.name,
                    started.elapsed().as_secs_f64()
                );
            }
            Err(problems) => {
                failed += 1;
                println!(
                    "defect {:<24} NOT caught as expected ({:.1}s):",
                    defect.name,
                    started.elapsed().as_secs_f64()
                );
                for p in problems {
                    println!("    {p}");
                }
            }
        }
    }
    println!("defects: {passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs the suite with one defect on and compares verdicts with the expectation.
fn check(root: &Path, defect: &Defect) -> Result<String, Vec<String>> {
    let out = root.join("target/meshcert/defects").join(defect.name);
    let output = Command::new(env!("CARGO_BIN_EXE_meshcert"))
        .args([
            "run",
            "--target",
            "reference",
            "--reference-bin",
            env!("CARGO_BIN_EXE_meshcert-ztunnel"),
        ])
        .args(["--reference-defect", defect.name])
        .arg("--out")
        .arg(&out)
        .output()
        .map_err(|e| vec![format!("cannot run meshcert: {e}")])?;
    let results = RunResults::read_json(&out.join("results.json")).map_err(|e| {
        vec![format!(
            "no results ({e}); meshcert exited {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )]
    })?;
    let mut problems = Vec::new();
    let (mut caught, mut clean) = (0, 0);
    for scenario in &results.scenarios {
        let ids: Vec<&str> = scenario.behaviours().collect();
        let broken = ids.iter().any(|id| {
            defect.must_fail.contains(id) || defect.may_fail.iter().any(|g| g.contains(id))
        });
        let failed = matches!(scenario.verdict, Verdict::Failed { .. });
        if failed && ids.iter().any(|id| defect.must_fail.contains(id)) {
            caught += 1;
        }
        if broken {
            continue;
        }
        if matches!(
            scenario.verdict,
            Verdict::Passed | Verdict::NotApplicable { .. }
        ) {
            clean += 1;
            continue;
        }
        let why = match &scenario.verdict {
            Verdict::Failed { step, message } => format!("{step}: {message}"),
            Verdict::Skipped { reason } => reason.clone(),
            _ => String::new(),
        };
        problems.push(format!(
            "should pass but was {}: {}:{} {:?} {ids:?}\n      {why}",
            scenario.verdict.label(),
            scenario.feature,
            scenario.line,
            scenario.name
        ));
    }
    for id in defect.must_fail {
        let tagged: Vec<_> = results
            .scenarios
            .iter()
            .filter(|s| s.behaviours().any(|b| b == *id))
            .collect();
        if tagged.is_empty() {
            problems.push(format!("no scenario is tagged {id}"));
        } else if !tagged
            .iter()
            .any(|s| matches!(s.verdict, Verdict::Failed { .. }))
        {
            problems.push(format!(
                "{id} is broken, yet none of its {} scenario(s) failed: {}",
                tagged.len(),
                tagged
                    .iter()
                    .map(|s| format!("{}:{} ({})", s.feature, s.line, s.verdict.label()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    if problems.is_empty() {
        Ok(format!(
            "{} broken behaviour(s) each failed a scenario ({caught} scenario(s) failed), {clean} \
             unrelated scenario(s) passed",
            defect.must_fail.len()
        ))
    } else {
        Err(problems)
    }
}

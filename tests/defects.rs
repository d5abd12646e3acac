//! Proof that the suite checks something: the reference ztunnel is run with each test-only defect
//! switch, and the scenarios tagged with the behaviours that defect breaks must fail while every
//! other scenario passes. A scenario no defect can fail would be a scenario that checks nothing.
//!
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
    may_fail: &'static [&'static str],
}

const DEFECTS: &[Defect] = &[
    Defect {
        name: "first-endpoint",
        must_fail: &[
            "L4-RR-1", "L4-RR-2", "L4-RR-4", "L4-FO-2", "L4-FO-4", "L4-OD-1",
        ],
        may_fail: &[],
    },
    Defect {
        name: "random-pick",
        must_fail: &["L4-RR-2"],
        may_fail: &["L4-RR-1", "L4-RR-4", "L4-FO-2", "L4-FO-4", "L4-OD-1"],
    },
    Defect {
        name: "no-retry",
        must_fail: &["L4-FO-3"],
        may_fail: &["L4-FO-2"],
    },
    Defect {
        name: "never-eject",
        must_fail: &["L4-FO-2", "L4-OD-5"],
        may_fail: &[],
    },
    Defect {
        name: "never-restore",
        must_fail: &["L4-FO-4"],
        may_fail: &[],
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
        must_fail: &["L4-OD-1"],
        may_fail: &["L4-FO-4"],
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
        let must = ids.iter().any(|id| defect.must_fail.contains(id));
        let may = ids.iter().any(|id| defect.may_fail.contains(id));
        let failed = matches!(scenario.verdict, Verdict::Failed { .. });
        let at = format!(
            "{}:{} {:?} {ids:?}",
            scenario.feature, scenario.line, scenario.name
        );
        if must && !failed {
            problems.push(format!(
                "should fail but was {}: {at}",
                scenario.verdict.label()
            ));
        } else if must {
            caught += 1;
        } else if !may
            && !matches!(
                scenario.verdict,
                Verdict::Passed | Verdict::NotApplicable { .. }
            )
        {
            let why = match &scenario.verdict {
                Verdict::Failed { step, message } => format!("{step}: {message}"),
                Verdict::Skipped { reason } => reason.clone(),
                _ => String::new(),
            };
            problems.push(format!(
                "should pass but was {}: {at}\n      {why}",
                scenario.verdict.label()
            ));
        } else if !may {
            clean += 1;
        }
    }
    for id in defect.must_fail {
        if !results
            .scenarios
            .iter()
            .any(|s| s.behaviours().any(|b| b == *id))
        {
            problems.push(format!("no scenario is tagged {id}"));
        }
    }
    if problems.is_empty() {
        Ok(format!(
            "{caught} scenario(s) failed as they must, {clean} passed as they must"
        ))
    } else {
        Err(problems)
    }
}

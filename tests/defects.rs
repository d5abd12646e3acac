//! Proof that the suite checks something, and that each assertion counts against the behaviour
//! it checks and no other: the reference ztunnel is run with each test-only defect switch, and
//! the set of behaviours with a failed scenario must be exactly the behaviours the defect breaks
//! (`fails`), while every scenario of every other behaviour passes (or is not applicable).
//!
//! `follows` lists behaviours a defect breaks only through a causal dependency, each written
//! down with its cause (an endpoint never picked cannot show that it joined a rotation): their
//! verdict is not asserted for that defect. Nothing is excused for being random: a random picker
//! (`random-pick`, run `RANDOM_RUNS` times, and `weighted-random`) must fail L4-RR-2 and nothing
//! else every time, which the false-alarm rates stated in the statistical steps make all but
//! certain (about 90 statistical verdicts per run at 0.00001 each).
//!
//! The passes are fed by the mesh's control plane (the default): HBONE between every enrolled
//! pod's ztunnel, certificates from the run's CA, config over delta xDS.
//! `MESHCERT_ZTUNNEL_CONFIG=file`, which `meshcert run` reads, runs them with the file contract
//! instead.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use meshcert_reports::{RunResults, Verdict};

struct Defect {
    name: &'static str,
    /// Exactly the behaviours that must fail.
    fails: &'static [&'static str],
    /// Behaviours that fail only through a causal dependency: (IDs, the cause).
    follows: &'static [(&'static [&'static str], &'static str)],
    /// Independent runs (random pickers draw a new sample each run).
    runs: u32,
}

const RANDOM_RUNS: u32 = 5;

/// A picker that always takes one endpoint never shows the other members of a set: every claim
/// that each replica of a set answers (a level, the healthy replicas, new replicas) fails too.
const ONE_ENDPOINT: &str = "every member of a set must answer, and one endpoint is always picked";

/// The endpoint a connection is re-opened to is chosen by the traffic distribution.
const RETRY_BY_DISTRIBUTION: &str =
    "a retry goes to an endpoint the traffic distribution chooses, which this defect ignores";

/// Without a retry, each connection to a blocked endpoint fails until it is detected: whether
/// that exceeds the failure budget depends on how fast the mesh detects.
const FAILS_WHILE_DETECTING: &str =
    "without a retry, every connection to the blocked pod fails until it is detected";

/// Moving to the next level needs the level's endpoints to be found unhealthy first.
const NEEDS_DETECTION: &str = "failing over a level needs its endpoints to be found unhealthy";

const DEFECTS: &[Defect] = &[
    Defect {
        name: "first-endpoint",
        fails: &["L4-RR-1", "L4-RR-2"],
        follows: &[(
            &[
                "L4-RR-4",
                "L4-FO-2",
                "L4-FO-4",
                "L4-OD-1",
                "L4-OD-2",
                "TD-DEF-1",
                "TD-DEF-2",
                "TD-DEF-3",
                "TD-MODE-ANY",
                "TD-MODE-PC",
                "TD-MODE-PN",
                "TD-MODE-PR",
                "TD-MODE-PSN",
                "TD-MODE-XNET",
                "TD-PREC-1",
                "TD-PREC-2",
                "TD-PREC-3",
                "TD-FO-1",
                "LOC-1",
                "LOC-4",
            ],
            ONE_ENDPOINT,
        )],
        runs: 1,
    },
    Defect {
        name: "random-pick",
        fails: &["L4-RR-2"],
        follows: &[],
        runs: RANDOM_RUNS,
    },
    Defect {
        name: "weighted-random",
        fails: &["L4-RR-2"],
        follows: &[],
        runs: 1,
    },
    Defect {
        name: "no-retry",
        fails: &["L4-FO-3"],
        follows: &[(&["L4-FO-2"], FAILS_WHILE_DETECTING)],
        runs: 1,
    },
    Defect {
        name: "no-detection",
        fails: &["L4-OD-3", "L4-OD-4", "L4-OD-5", "L4-OD-6", "TD-FO-1"],
        follows: &[],
        runs: 1,
    },
    Defect {
        name: "never-eject",
        fails: &["L4-OD-5", "L4-OD-6"],
        follows: &[(&["TD-FO-1"], NEEDS_DETECTION)],
        runs: 1,
    },
    Defect {
        name: "never-restore",
        fails: &["L4-FO-4", "TD-FO-1"],
        follows: &[],
        runs: 1,
    },
    // LOG-1 also checks that dst.addr and dst.workload name the same pod, which this breaks.
    Defect {
        name: "log-wrong-workload",
        fails: &["LOG-1", "LOG-2"],
        follows: &[],
        runs: 1,
    },
    Defect {
        name: "log-missing-identity",
        fails: &["LOG-1"],
        follows: &[],
        runs: 1,
    },
    Defect {
        name: "eject-on-http-5xx",
        fails: &["L4-OD-1", "L4-OD-2"],
        follows: &[],
        runs: 1,
    },
    Defect {
        name: "keep-removed-endpoints",
        fails: &["L4-RR-4"],
        follows: &[],
        runs: 1,
    },
    Defect {
        name: "ewma-wrong-weight",
        fails: &["L4-OD-4"],
        follows: &[],
        runs: 1,
    },
    Defect {
        name: "health-log-missing-error",
        fails: &["L4-OD-3"],
        follows: &[],
        runs: 1,
    },
    Defect {
        name: "ignore-locality",
        fails: &[
            "TD-PREC-1",
            "TD-PREC-2",
            "TD-PREC-3",
            "TD-DEF-1",
            "TD-DEF-3",
            "TD-MODE-PC",
            "TD-MODE-PSN",
            "TD-MODE-PR",
            "TD-MODE-PN",
            "TD-FO-1",
            "TD-ITP-1",
            "LOC-1",
            "LOC-4",
        ],
        follows: &[(&["L4-FO-3"], RETRY_BY_DISTRIBUTION)],
        runs: 1,
    },
    Defect {
        name: "wrong-precedence",
        fails: &["TD-PREC-1"],
        follows: &[],
        runs: 1,
    },
    Defect {
        name: "fail-over-two-levels",
        fails: &["TD-FO-1"],
        follows: &[],
        runs: 1,
    },
    // Upstream's drift (BEHAVIORS.md): cross-network endpoints ranked by their labels.
    Defect {
        name: "cross-network-by-locality",
        // The mode tables' last level is every cross-network endpoint: the same claim, except
        // under PreferNetwork, which ranks by nothing but the network.
        fails: &["TD-MODE-XNET", "TD-MODE-PC", "TD-MODE-PSN", "TD-MODE-PR"],
        follows: &[],
        runs: 1,
    },
    Defect {
        name: "strict-as-failover",
        fails: &["TD-ITP-1"],
        follows: &[],
        runs: 1,
    },
];

/// Passes run at once (`MESHCERT_DEFECT_JOBS` overrides). One: a pass keeps 2 cores busy
/// (measured: one pass 34 s; 8 passes two at a time 274 s, no faster), and a machine loaded
/// past that would test the harness's patience, not the mesh.
const JOBS: usize = 1;

fn jobs() -> usize {
    std::env::var("MESHCERT_DEFECT_JOBS")
        .ok()
        .and_then(|j| j.parse().ok())
        .filter(|j| *j >= 1)
        .unwrap_or(JOBS)
}

fn main() -> ExitCode {
    if let Err(reason) = meshcert_local::preflight() {
        println!("defects: skipped, local meshes unavailable: {reason}");
        println!("defects: 0 passed, 0 failed, {} skipped", DEFECTS.len());
        return ExitCode::SUCCESS;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let only: Vec<String> = std::env::var("MESHCERT_DEFECTS")
        .map(|s| s.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    if let Some(unknown) = only.iter().find(|o| !DEFECTS.iter().any(|d| d.name == *o)) {
        let known: Vec<&str> = DEFECTS.iter().map(|d| d.name).collect();
        eprintln!(
            "defects: MESHCERT_DEFECTS names {unknown:?}, which is no defect; known: {}",
            known.join(", ")
        );
        return ExitCode::from(2);
    }
    let passes: Vec<(&Defect, u32)> = DEFECTS
        .iter()
        .filter(|d| only.is_empty() || only.iter().any(|o| o == d.name))
        .flat_map(|d| (1..=d.runs).map(move |run| (d, run)))
        .collect();
    let started = Instant::now();
    let next = AtomicUsize::new(0);
    let failed = AtomicUsize::new(0);
    let jobs = jobs();
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| {
                while let Some((defect, run)) = passes.get(next.fetch_add(1, Ordering::SeqCst)) {
                    if !report(&root, defect, *run) {
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
        }
    });
    let failed = failed.into_inner();
    println!(
        "defects: {} passed, {failed} failed ({} passes, {jobs} at once, in {:.0}s)",
        passes.len() - failed,
        passes.len(),
        started.elapsed().as_secs_f64()
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs one pass and prints its outcome in one piece; whether it was caught as expected.
fn report(root: &Path, defect: &Defect, run: u32) -> bool {
    let started = Instant::now();
    let outcome = check(root, defect, run);
    let took = started.elapsed().as_secs_f64();
    let mut text = match &outcome {
        Ok(summary) => format!(
            "defect {:<24} caught ({took:.1}s): {summary}\n",
            defect.name
        ),
        Err(_) => format!(
            "defect {:<24} NOT caught as expected ({took:.1}s):\n",
            defect.name
        ),
    };
    for p in outcome.as_ref().err().into_iter().flatten() {
        text.push_str(&format!("    {p}\n"));
    }
    print!("{text}");
    outcome.is_ok()
}

/// Runs the suite with one defect on and compares the failed behaviours with the expectation.
fn check(root: &Path, defect: &Defect, run: u32) -> Result<String, Vec<String>> {
    let results = run_pass(root, defect, run)?;
    let excused: BTreeSet<&str> = defect
        .follows
        .iter()
        .flat_map(|(ids, _)| ids.iter().copied())
        .collect();
    let (failed_ids, mut problems) = judge_scenarios(&results, defect, &excused);
    for id in defect.fails {
        if !results
            .scenarios
            .iter()
            .any(|s| s.behaviours().any(|b| b == *id))
        {
            problems.push(format!("no scenario is tagged {id}"));
        } else if !failed_ids.contains(*id) {
            problems.push(format!("{id} is broken, yet none of its scenarios failed"));
        }
    }
    let followed: Vec<&String> = failed_ids
        .iter()
        .filter(|id| excused.contains(id.as_str()))
        .collect();
    if problems.is_empty() {
        Ok(format!(
            "run {run}: failed exactly {:?}{}",
            defect.fails,
            if followed.is_empty() {
                String::new()
            } else {
                format!(", and through a written-down cause {followed:?}")
            }
        ))
    } else {
        Err(problems)
    }
}

/// One `meshcert run` of the reference with the defect switched on, and its results.
fn run_pass(root: &Path, defect: &Defect, run: u32) -> Result<RunResults, Vec<String>> {
    let out = root
        .join("target/meshcert/defects")
        .join(format!("{}-{run}", defect.name));
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
    RunResults::read_json(&out.join("results.json")).map_err(|e| {
        vec![format!(
            "no results ({e}); meshcert exited {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )]
    })
}

/// The behaviours with a failed scenario, and the scenarios that failed or were skipped
/// although the defect does not break their behaviours.
fn judge_scenarios(
    results: &RunResults,
    defect: &Defect,
    excused: &BTreeSet<&str>,
) -> (BTreeSet<String>, Vec<String>) {
    let mut failed_ids = BTreeSet::new();
    let mut problems = Vec::new();
    for scenario in &results.scenarios {
        let ids: Vec<&str> = scenario.behaviours().collect();
        match &scenario.verdict {
            Verdict::Failed { step, message } => {
                failed_ids.extend(ids.iter().map(|id| id.to_string()));
                if !ids
                    .iter()
                    .any(|id| defect.fails.contains(id) || excused.contains(id))
                {
                    problems.push(format!(
                        "should pass but failed: {}:{} {:?} {ids:?}\n      {step}: {message}",
                        scenario.feature, scenario.line, scenario.name
                    ));
                }
            }
            Verdict::Skipped { reason } => problems.push(format!(
                "skipped, so not judged: {}:{} {:?} {ids:?}: {reason}",
                scenario.feature, scenario.line, scenario.name
            )),
            _ => {}
        }
    }
    (failed_ids, problems)
}

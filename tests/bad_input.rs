//! `meshcert run` with the user's mistakes: a tag expression that does not parse or matches
//! nothing, a feature file with a syntax error, a step no definition matches, a keyword
//! Gherkin would swallow as text, fixtures with an unknown field (`tagetPort`, `replcas`),
//! an unknown defect switch (flag and environment). Each must be refused before anything
//! starts: exit code 2, one line on stderr naming the file, line and what is wrong, no results
//! file claiming a verdict, and no network namespace or lock file of the run left behind.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

/// An edit of one file of a copy of `features/` or `fixtures/`.
struct Edit {
    file: &'static str,
    from: &'static str,
    to: &'static str,
}

struct Case {
    name: &'static str,
    args: &'static [&'static str],
    env: &'static [(&'static str, &'static str)],
    features: Option<Edit>,
    fixtures: Option<Edit>,
    /// Words the one-line error must contain.
    expect: &'static [&'static str],
}

/// The mistakes, each refused with its own one-line error.
const CASES: &[Case] = &[
    Case {
        name: "tag-expression",
        args: &["--tags", "@L4-RR-1 and"],
        env: &[],
        features: None,
        fixtures: None,
        expect: &["--tags \"@L4-RR-1 and\" is not a tag expression"],
    },
    Case {
        name: "tags-match-nothing",
        args: &["--tags", "@L4-RR-99"],
        env: &[],
        features: None,
        fixtures: None,
        expect: &["--tags \"@L4-RR-99\" matches none of the", "scenarios in"],
    },
    Case {
        name: "feature-syntax",
        args: &[],
        env: &[],
        features: Some(Edit {
            file: "l4/round-robin.feature",
            from: "  @L4-RR-2\n  Scenario:",
            to: "  @L4-RR-2\n  Scenario",
        }),
        fixtures: None,
        expect: &[
            "l4/round-robin.feature:",
            "not valid Gherkin",
            "Unknown keyword",
        ],
    },
    Case {
        name: "unknown-step",
        args: &["--tags", "@L4-RR-1"],
        env: &[],
        features: Some(Edit {
            file: "l4/round-robin.feature",
            from: "When the client sends 60 requests",
            to: "When the client sendz 60 requests",
        }),
        fixtures: None,
        expect: &[
            "l4/round-robin.feature:",
            "no step definition matches \"When the client sendz 60 requests to",
        ],
    },
    Case {
        name: "swallowed-keyword",
        args: &[],
        env: &[],
        features: Some(Edit {
            file: "l4/round-robin.feature",
            from: "    When the client sends 60 requests",
            to: "    Whne the client sends 60 requests",
        }),
        fixtures: None,
        expect: &[
            "l4/round-robin.feature:",
            "\"Whne the client sends 60 requests",
            "is `When` misspelt?",
        ],
    },
    Case {
        name: "service-target-port",
        args: &[],
        env: &[],
        features: None,
        fixtures: Some(Edit {
            file: "in-ambient.yaml",
            from: "targetPort:",
            to: "tagetPort:",
        }),
        expect: &[
            "in-ambient.yaml: document at line",
            "Service httpbin/in-ambient",
            "field `spec.ports[0].tagetPort` is not a field of Service",
        ],
    },
    Case {
        name: "deployment-replicas",
        args: &[],
        env: &[],
        features: None,
        fixtures: Some(Edit {
            file: "in-ambient.yaml",
            from: "replicas:",
            to: "replcas:",
        }),
        expect: &[
            "in-ambient.yaml: document at line",
            "Deployment httpbin/in-ambient",
            "field `spec.replcas` is not a field of Deployment",
        ],
    },
    Case {
        name: "thresholds-typo",
        args: &[],
        env: &[],
        features: Some(Edit {
            file: "thresholds/solo.yaml",
            from: "failureBudget:",
            to: "failureBugdet:",
        }),
        fixtures: None,
        expect: &[
            "thresholds/solo.yaml: line",
            "unknown field `failureBugdet`",
        ],
    },
    Case {
        name: "defect-flag",
        args: &["--reference-defect", "typo"],
        env: &[],
        features: None,
        fixtures: None,
        expect: &[
            "--reference-defect (or MESHCERT_REFERENCE_DEFECT): unknown defect switch \"typo\"; \
             valid names: ",
            "random-pick",
        ],
    },
    Case {
        name: "defect-environment",
        args: &[],
        env: &[("MESHCERT_REFERENCE_DEFECT", "no-retry,typo")],
        features: None,
        fixtures: None,
        expect: &[
            "MESHCERT_REFERENCE_DEFECT): unknown defect switch \"typo\"; valid names: ",
            "no-retry",
        ],
    },
];

fn main() -> ExitCode {
    if let Err(reason) = meshcert_local::preflight() {
        // `meshcert run` says first that the machine cannot run a local target (exit 4).
        println!("bad_input: skipped, local meshes unavailable: {reason}");
        println!("bad_input: 0 passed, 0 failed, {} skipped", CASES.len());
        return ExitCode::SUCCESS;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let work = root.join("target/meshcert/bad-input");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("create the work directory");
    let (mut passed, mut failed) = (0, 0);
    for case in CASES {
        let started = Instant::now();
        match check(case, &root, &work) {
            Ok(error) => {
                passed += 1;
                println!(
                    "bad_input: {} ok in {:.1}s: {error}",
                    case.name,
                    started.elapsed().as_secs_f64()
                );
            }
            Err(problem) => {
                failed += 1;
                println!("bad_input: {} FAILED: {problem}", case.name);
            }
        }
    }
    println!("bad_input: {passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// A copy of `dir` at `to`, with the edit applied (which must change something).
fn copy_with(dir: &Path, to: &Path, edit: Option<&Edit>) -> Result<(), String> {
    let status = Command::new("cp")
        .arg("-r")
        .arg(dir)
        .arg(to)
        .status()
        .map_err(|e| format!("cp: {e}"))?;
    if !status.success() {
        return Err(format!("cannot copy {}", dir.display()));
    }
    if let Some(edit) = edit {
        let path = to.join(edit.file);
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        if !text.contains(edit.from) {
            return Err(format!(
                "the edit {:?} does not apply to {}",
                edit.from, edit.file
            ));
        }
        std::fs::write(&path, text.replacen(edit.from, edit.to, 1)).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn check(case: &Case, root: &Path, work: &Path) -> Result<String, String> {
    let dir = work.join(case.name);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let features = dir.join("features");
    let fixtures = dir.join("fixtures");
    copy_with(&root.join("features"), &features, case.features.as_ref())?;
    copy_with(&root.join("fixtures"), &fixtures, case.fixtures.as_ref())?;
    let out = dir.join("out");
    let namespaces = support::harness_namespaces();
    let locks = lock_files();
    let child = Command::new(env!("CARGO_BIN_EXE_meshcert"))
        .arg("run")
        .args(case.args)
        .arg("--features")
        .arg(&features)
        .arg("--fixtures")
        .arg(&fixtures)
        .arg("--out")
        .arg(&out)
        .env_remove("MESHCERT_REFERENCE_DEFECT")
        .env_remove("MESHCERT_TARGET")
        .env_remove("MESHCERT_ZTUNNEL_BIN")
        .envs(case.env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run meshcert: {e}"))?;
    let pid = child.id();
    let output = child
        .wait_with_output()
        .map_err(|e| format!("meshcert: {e}"))?;
    let error = support::one_line_error(&output, case.expect)?;
    // No verdict: nothing in the output directory claims one.
    for name in [
        "results.json",
        "conformance.yaml",
        "report.html",
        "junit.xml",
        "cucumber.json",
    ] {
        if out.join(name).exists() {
            return Err(format!("{name} was written for a refused run"));
        }
    }
    // Nothing of this run left: a lock file holding its pid, or a namespace of a run id
    // that no live run (another test's) holds.
    for lock in lock_files().difference(&locks) {
        let holder = std::fs::read_to_string(lock).unwrap_or_default();
        if holder.trim() == pid.to_string() || holder.trim().is_empty() {
            return Err(format!("lock file {} left behind", lock.display()));
        }
    }
    let live: Vec<String> = lock_files()
        .iter()
        .filter_map(|l| l.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    let left: Vec<String> = support::harness_namespaces()
        .into_iter()
        .filter(|n| !namespaces.contains(n))
        .filter(|n| !live.iter().any(|id| n.starts_with(&format!("mc-{id}-"))))
        .collect();
    if !left.is_empty() {
        return Err(format!("namespaces left behind: {left:?}"));
    }
    Ok(error)
}

fn lock_files() -> std::collections::BTreeSet<PathBuf> {
    std::fs::read_dir(meshcert_local::run::LOCK_DIR)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect()
}

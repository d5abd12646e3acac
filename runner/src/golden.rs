//! Golden tests: a tiny feature set (`tests/golden/features`) run through the whole suite over
//! the in-memory mesh, its `results.json` and summary text compared with the files under
//! `tests/golden/` once timestamps, durations, run ids, seeds, the version and paths are
//! stripped. `MESHCERT_BLESS=1` rewrites the golden files instead of comparing.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use meshcert_mesh::MeshUnderTest;
use meshcert_steps::testing::{InMemoryMesh, InMemorySource};
use serde_json::Value;

use crate::suite::{SuiteConfig, run_suite_over};
use crate::target::TargetSpec;

/// Set to rewrite the golden files from this run.
const BLESS: &str = "MESHCERT_BLESS";

/// Keys whose numbers change from run to run.
const VOLATILE_NUMBERS: [&str; 3] = ["started_at", "duration_ms", "seed"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repository root")
}

fn golden(name: &str) -> PathBuf {
    repo().join("runner/tests/golden").join(name)
}

/// The text with the run's volatile parts replaced by placeholders.
fn strip_text(text: &str, out: &Path) -> String {
    text.replace(&out.display().to_string(), "<out>")
        .replace(&repo().display().to_string(), "<repo>")
        .replace(env!("CARGO_PKG_VERSION"), "<version>")
}

fn strip_json(value: &mut Value, out: &Path) {
    match value {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                if VOLATILE_NUMBERS.contains(&key.as_str()) && value.is_number() {
                    *value = Value::from(0);
                } else if key == "run_id" {
                    *value = Value::from("<run id>");
                } else {
                    strip_json(value, out);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| strip_json(v, out)),
        Value::String(text) => *text = strip_text(text, out),
        _ => {}
    }
}

/// Compares `actual` with the golden file `name`, or rewrites it when blessing.
fn check_golden(name: &str, actual: &str) {
    let path = golden(name);
    if std::env::var_os(BLESS).is_some() {
        std::fs::write(&path, actual).expect("write the golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run with {BLESS}=1 to write it", path.display()));
    assert_eq!(
        actual,
        expected,
        "{} differs from this run; if the change is meant, run with {BLESS}=1",
        path.display()
    );
}

#[tokio::test]
async fn a_run_over_the_in_memory_mesh_matches_the_golden_results_and_summary() {
    let out = std::env::temp_dir().join(format!("meshcert-golden-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let config = SuiteConfig {
        target: TargetSpec::kube(),
        features: golden("features"),
        fixtures: repo().join("fixtures"),
        out_dir: out.clone(),
        tags: None,
        concurrency: Some(1),
        skip_all: None,
        thresholds: Some(repo().join("features/thresholds/solo.yaml")),
    };
    let mesh = InMemoryMesh::new();
    let info = mesh.target().clone();
    let source = Arc::new(InMemorySource::new(mesh));
    let outcome = run_suite_over(config, Some((info, source.clone())))
        .await
        .expect("the suite runs");
    assert_eq!(source.made(), 2, "one mesh per scenario that ran");

    let written = std::fs::read_to_string(&outcome.results_path).expect("results.json");
    let mut results: Value = serde_json::from_str(&written).expect("results.json is JSON");
    strip_json(&mut results, &out);
    let results = serde_json::to_string_pretty(&results).expect("JSON") + "\n";
    check_golden("results.json", &results);
    check_golden(
        "summary.txt",
        &strip_text(&outcome.results.summary_text(), &out),
    );
    std::fs::remove_dir_all(&out).expect("remove the output directory");
}

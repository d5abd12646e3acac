//! `cargo test` entry of the Gherkin suite: every feature against the bundled reference ztunnel
//! (the embedded default), in local network namespaces. Reports land in `target/meshcert/`.
//! `MESHCERT_PROFILE` and `MESHCERT_TAGS` narrow the run.

use std::path::PathBuf;
use std::process::ExitCode;

use meshcert_steps::{SuiteConfig, TargetChoice, run_suite};

fn main() -> ExitCode {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let profile = match std::env::var("MESHCERT_PROFILE")
        .as_deref()
        .unwrap_or("solo")
        .parse()
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!("MESHCERT_PROFILE: {e}");
            return ExitCode::from(2);
        }
    };
    let config = SuiteConfig {
        target: TargetChoice::Reference {
            bin: PathBuf::from(env!("CARGO_BIN_EXE_meshcert-ztunnel")),
            defects: vec![],
        },
        profile,
        features: root.join("features"),
        fixtures: root.join("fixtures"),
        out_dir: root.join("target/meshcert"),
        tags: std::env::var("MESHCERT_TAGS")
            .ok()
            .filter(|t| !t.is_empty()),
        concurrency: None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run_suite(config)) {
        Ok(outcome) if outcome.failed() => ExitCode::FAILURE,
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("conformance: {e}");
            ExitCode::from(2)
        }
    }
}

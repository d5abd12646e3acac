//! `cargo test` entry of the Gherkin suite: every feature against the bundled reference ztunnel
//! (the embedded default), in local network namespaces, once per profile. Reports land in
//! `target/meshcert/<profile>/`.
//! `MESHCERT_PROFILE` and `MESHCERT_TAGS` narrow the run.

use std::path::PathBuf;
use std::process::ExitCode;

use meshcert_mesh::Profile;
use meshcert_steps::{SuiteConfig, TargetChoice, run_suite};

fn main() -> ExitCode {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // The reference runs under both profiles: each run lists the other profile's scenarios as
    // not applicable, and together they cover every behaviour of the catalogue.
    let profiles: Vec<Profile> = match std::env::var("MESHCERT_PROFILE") {
        Ok(p) if !p.is_empty() => match p.parse() {
            Ok(p) => vec![p],
            Err(e) => {
                eprintln!("MESHCERT_PROFILE: {e}");
                return ExitCode::from(2);
            }
        },
        _ => vec![Profile::Solo, Profile::Istio],
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut failed = false;
    for profile in profiles {
        let config = SuiteConfig {
            target: TargetChoice::Reference {
                bin: PathBuf::from(env!("CARGO_BIN_EXE_meshcert-ztunnel")),
                defects: vec![],
            },
            profile,
            features: root.join("features"),
            fixtures: root.join("fixtures"),
            out_dir: root.join("target/meshcert").join(profile.to_string()),
            tags: std::env::var("MESHCERT_TAGS")
                .ok()
                .filter(|t| !t.is_empty()),
            concurrency: None,
        };
        println!("meshcert: the bundled reference under profile {profile}");
        match runtime.block_on(run_suite(config)) {
            Ok(outcome) => failed |= outcome.failed(),
            Err(e) => {
                eprintln!("conformance: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

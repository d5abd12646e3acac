//! `cargo test` entry of the Gherkin suite, in local network namespaces:
//! 1. the bundled reference ztunnel (the embedded default) under each profile, reloading its
//!    config (`target/meshcert/solo/`, `target/meshcert/istio/`);
//! 2. the same binary through the external-binary launcher, as a stranger: profile `istio`,
//!    restarted on every config change, JSON logs (`target/meshcert/ztunnel/`).
//!
//! 3. a real cluster, `target/meshcert/kube/`: with `MESHCERT_TARGET=kube` (and `KUBECONFIG`,
//!    `MESHCERT_KUBE_CONTEXT`, `MESHCERT_ALLOW_FAULTS=true`) it is the only pass; without, every
//!    scenario is reported skipped with that reason.
//!
//! `MESHCERT_ZTUNNEL_BIN=./ztunnel` runs only the second pass, against that binary
//! (`MESHCERT_ZTUNNEL_PROFILE`, `MESHCERT_ZTUNNEL_ENV=NAME=VALUE,...` declare more);
//! `MESHCERT_PROFILE` narrows the reference passes and `MESHCERT_TAGS` every pass.

use std::path::PathBuf;
use std::process::ExitCode;

use meshcert_mesh::Profile;
use meshcert_steps::{SuiteConfig, TargetSpec, run_suite};

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The passes to run, each with its output directory name.
fn passes() -> Result<Vec<(String, TargetSpec)>, String> {
    let reference = env!("CARGO_BIN_EXE_meshcert-ztunnel");
    if let Some(bin) = var("MESHCERT_ZTUNNEL_BIN") {
        let mut spec = TargetSpec::ztunnel(bin);
        if let Some(profile) = var("MESHCERT_ZTUNNEL_PROFILE") {
            spec.set("profile", &profile)
                .map_err(|e| format!("MESHCERT_ZTUNNEL_PROFILE: {e}"))?;
        }
        for env in var("MESHCERT_ZTUNNEL_ENV")
            .iter()
            .flat_map(|v| v.split(','))
        {
            spec.set("env", env)
                .map_err(|e| format!("MESHCERT_ZTUNNEL_ENV: {e}"))?;
        }
        return Ok(vec![("ztunnel".into(), spec)]);
    }
    // The reference runs under both profiles: each run lists the other profile's scenarios
    // as not applicable, and together they cover every behaviour of the catalogue.
    let profiles: Vec<Profile> = match var("MESHCERT_PROFILE") {
        Some(p) => vec![p.parse().map_err(|e| format!("MESHCERT_PROFILE: {e}"))?],
        None => vec![Profile::Solo, Profile::Istio],
    };
    let mut passes: Vec<(String, TargetSpec)> = profiles
        .into_iter()
        .map(|profile| {
            let mut spec = TargetSpec::reference(reference);
            spec.profile = profile;
            (profile.to_string(), spec)
        })
        .collect();
    let mut stranger = TargetSpec::ztunnel(reference);
    stranger.set("env", "LOG_FORMAT=json")?;
    passes.push(("ztunnel".into(), stranger));
    Ok(passes)
}

/// The kube pass: against the cluster when `MESHCERT_TARGET=kube`, else every scenario skipped
/// with the reason (the real-cluster tests need a cluster).
fn kube_pass() -> Result<(TargetSpec, Option<String>), String> {
    let mut spec = TargetSpec::kube();
    if var("MESHCERT_TARGET").as_deref() != Some("kube") {
        return Ok((
            spec,
            Some("no cluster: set MESHCERT_TARGET=kube and KUBECONFIG to run against one".into()),
        ));
    }
    spec.cluster.context = var("MESHCERT_KUBE_CONTEXT");
    spec.cluster.allow_faults = var("MESHCERT_ALLOW_FAULTS").as_deref() == Some("true");
    if let Some(profile) = var("MESHCERT_PROFILE") {
        spec.set("profile", &profile)
            .map_err(|e| format!("MESHCERT_PROFILE: {e}"))?;
    }
    Ok((spec, None))
}

fn main() -> ExitCode {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let passes = match passes().and_then(|mut passes| {
        let (spec, skip) = kube_pass()?;
        if skip.is_none() {
            // A cluster run certifies the cluster: the local passes are not its business.
            passes.clear();
        }
        passes.push(("kube".into(), spec));
        Ok((passes, skip))
    }) {
        Ok(passes) => passes,
        Err(e) => {
            eprintln!("conformance: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut failed = false;
    let (passes, kube_skip) = passes;
    for (dir, target) in passes {
        println!("meshcert: {target}");
        let skip_all = match target.kind {
            meshcert_steps::TargetKind::Kube => kube_skip.clone(),
            _ => None,
        };
        let config = SuiteConfig {
            target,
            features: root.join("features"),
            fixtures: root.join("fixtures"),
            out_dir: root.join("target/meshcert").join(dir),
            tags: var("MESHCERT_TAGS"),
            concurrency: None,
            skip_all,
        };
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

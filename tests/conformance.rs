//! `cargo test` entry of the Gherkin suite, in local network namespaces:
//! 1. the bundled reference ztunnel (the embedded default) under each profile, fed by the
//!    mesh's control plane as in a cluster: HBONE between every enrolled pod's ztunnel,
//!    certificates from the run's CA, config over delta xDS (`target/meshcert/solo/`,
//!    `target/meshcert/istio/`);
//! 2. the file contract, the fallback a target can choose: the same binary through the
//!    external-binary launcher, as a stranger (profile `istio`, restarted on every config
//!    change, JSON logs, `target/meshcert/ztunnel/`), and the reference reloading its file
//!    (profile `solo`, `target/meshcert/file/`).
//! 3. a real cluster, `target/meshcert/kube/`: with `MESHCERT_TARGET=kube` (and `KUBECONFIG`,
//!    `MESHCERT_KUBE_CONTEXT`, `MESHCERT_ALLOW_FAULTS=true`) it is the only pass; without, every
//!    scenario is reported skipped with that reason.
//!
//! `MESHCERT_ZTUNNEL_BIN=./ztunnel` runs only one pass, against that binary fed by the control
//! plane (`MESHCERT_ZTUNNEL_PROFILE`, `MESHCERT_ZTUNNEL_ENV=NAME=VALUE,...` declare more;
//! `MESHCERT_ZTUNNEL_CONFIG=file` gives it the file contract, for a `testing` build);
//! `MESHCERT_PROFILE` narrows the reference passes and `MESHCERT_TAGS` every pass.
//!
//! Each pass is one trial (libtest-mimic). On a machine that cannot run local meshes (no
//! iptables, not root) the reason is printed once and the local passes are reported
//! *ignored*, never passed; with `CI` set they fail instead.

use std::path::PathBuf;
use std::process::ExitCode;

use libtest_mimic::{Arguments, Failed, Trial};
use meshcert_mesh::Profile;
use meshcert_runner::target::local_machine_check;
use meshcert_runner::{SuiteConfig, TargetKind, TargetSpec, run_suite};

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The passes to run, each with its output directory name.
fn passes() -> Result<Vec<(String, TargetSpec)>, String> {
    let reference = env!("CARGO_BIN_EXE_meshcert-ztunnel");
    if let Some(bin) = var("MESHCERT_ZTUNNEL_BIN") {
        let mut spec = TargetSpec::ztunnel(bin);
        if let Some(source) = var("MESHCERT_ZTUNNEL_CONFIG") {
            spec.set("config", &source)
                .map_err(|e| format!("MESHCERT_ZTUNNEL_CONFIG: {e}"))?;
        }
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
    // The file contract: a stranger restarted on every change, and the reference reloading.
    let mut stranger = TargetSpec::ztunnel(reference);
    stranger.set("env", "LOG_FORMAT=json")?;
    stranger.set("config", "file")?;
    passes.push(("ztunnel".into(), stranger));
    let mut file_fed = TargetSpec::reference(reference);
    file_fed.profile = Profile::Solo;
    file_fed.set("config", "file")?;
    passes.push(("file".into(), file_fed));
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
    let mut args = Arguments::from_args();
    // The passes share the machine's two cores and its lock directory: one at a time.
    args.test_threads = Some(1);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let (passes, kube_skip) = match passes().and_then(|mut passes| {
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
    let local = passes.iter().any(|(_, t)| t.kind != TargetKind::Kube);
    let unavailable = if local {
        local_machine_check().err()
    } else {
        None
    };
    let ci = std::env::var_os("CI").is_some();
    if let Some(reason) = &unavailable {
        if ci {
            println!("conformance: CI is set and the local passes cannot run here: {reason}");
        } else {
            println!("conformance: the local passes are not run (ignored): {reason}");
        }
    }
    let trials = passes
        .into_iter()
        .map(|(dir, target)| {
            let name = format!("conformance::{dir}");
            let is_local = target.kind != TargetKind::Kube;
            match &unavailable {
                Some(reason) if is_local && ci => {
                    let reason = reason.clone();
                    Trial::test(name, move || {
                        Err(format!("CI is set and local meshes are unavailable: {reason}").into())
                    })
                }
                Some(_) if is_local => Trial::test(name, || Ok(())).with_ignored_flag(true),
                _ => {
                    let skip_all = match target.kind {
                        TargetKind::Kube => kube_skip.clone(),
                        _ => None,
                    };
                    let config = SuiteConfig {
                        target,
                        features: root.join("features"),
                        fixtures: root.join("fixtures"),
                        out_dir: root.join("target/meshcert").join(&dir),
                        tags: var("MESHCERT_TAGS"),
                        concurrency: None,
                        skip_all,
                        thresholds: var("MESHCERT_THRESHOLDS").map(PathBuf::from),
                    };
                    Trial::test(name, move || run_pass(config))
                }
            }
        })
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}

/// One pass of the suite: failed when a scenario failed or a feature did not parse.
fn run_pass(config: SuiteConfig) -> Result<(), Failed> {
    println!("meshcert: {}", config.target);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let outcome = runtime.block_on(run_suite(config))?;
    if outcome.failed() {
        let counts = outcome.results.counts();
        return Err(format!(
            "{} scenario(s) failed, {} feature file(s) did not parse: see {}",
            counts.failed,
            outcome.parse_errors,
            outcome.results_path.display()
        )
        .into());
    }
    Ok(())
}

//! HBONE between the reference ztunnel and another ztunnel binary (`MESHCERT_ZTUNNEL_BIN`, e.g.
//! a stock upstream istio/ztunnel release), both ways, in one local mesh fed by its control
//! plane: the client pod's ztunnel is one binary, every backend pod's the other.
//!
//! Each direction runs the access-log and round-robin scenarios and passes only if they pass
//! and every access line of the client proves the connection went through the destination's
//! ztunnel over mTLS: `dst.addr` on port 15008, the pod in `dst.hbone_addr`, and the peer
//! identities in `src.identity` and `dst.identity`. Without `MESHCERT_ZTUNNEL_BIN` both trials
//! are reported ignored with the reason, never passed.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use libtest_mimic::{Arguments, Failed, Trial};
use meshcert_model::LogLine;
use meshcert_runner::target::local_machine_check;
use meshcert_runner::{SuiteConfig, TargetSpec, run_suite};

/// The scenarios each direction runs: connections through both ztunnels, their access lines.
const TAGS: &str = "@LOG-1 or @L4-RR-1";

/// Which binary the client pod's ztunnel is.
#[derive(Clone, Copy)]
enum Client {
    Reference,
    Other,
}

fn main() -> ExitCode {
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);
    let other = std::env::var("MESHCERT_ZTUNNEL_BIN")
        .ok()
        .filter(|v| !v.is_empty());
    let unavailable = match &other {
        None => Some("MESHCERT_ZTUNNEL_BIN is not set: no other ztunnel to talk to".to_string()),
        Some(_) => local_machine_check().err(),
    };
    if let Some(reason) = &unavailable {
        println!("interop: not run (ignored): {reason}");
    }
    let trials = [
        (
            "interop::reference_client_to_other_destination",
            Client::Reference,
        ),
        (
            "interop::other_client_to_reference_destination",
            Client::Other,
        ),
    ]
    .into_iter()
    .map(|(name, client)| match (&unavailable, &other) {
        (None, Some(other)) => {
            let other = PathBuf::from(other);
            Trial::test(name, move || direction(client, &other))
        }
        _ => Trial::test(name, || Ok(())).with_ignored_flag(true),
    })
    .collect();
    libtest_mimic::run(&args, trials).exit_code()
}

/// One direction: a launcher script picks the binary by pod, then the suite runs.
fn direction(client: Client, other: &Path) -> Result<(), Failed> {
    let reference = PathBuf::from(env!("CARGO_BIN_EXE_meshcert-ztunnel"));
    let other = std::fs::canonicalize(other)
        .map_err(|e| format!("MESHCERT_ZTUNNEL_BIN={}: {e}", other.display()))?;
    let (client_bin, backend_bin) = match client {
        Client::Reference => (&reference, &other),
        Client::Other => (&other, &reference),
    };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = match client {
        Client::Reference => "interop-reference-client",
        Client::Other => "interop-other-client",
    };
    let out_dir = root.join("target/meshcert").join(dir);
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let launcher = write_launcher(&out_dir, client_bin, backend_bin)?;
    let mut target = TargetSpec::ztunnel(launcher.display().to_string());
    target.set("config", "control-plane")?;
    let config = SuiteConfig {
        target,
        features: root.join("features"),
        fixtures: root.join("fixtures"),
        out_dir,
        tags: Some(TAGS.to_string()),
        concurrency: None,
        skip_all: None,
        thresholds: None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let outcome = runtime.block_on(run_suite(config))?;
    let counts = outcome.results.counts();
    if outcome.failed() || counts.passed < 2 {
        return Err(format!(
            "{} passed, {} failed, {} skipped of the scenarios {TAGS}: see {}",
            counts.passed,
            counts.failed,
            counts.skipped,
            outcome.results_path.display()
        )
        .into());
    }
    let lines: Vec<&LogLine> = outcome
        .results
        .scenarios
        .iter()
        .filter_map(|s| s.observations.as_ref())
        .flat_map(|o| o.log_lines.iter())
        .collect();
    if lines.is_empty() {
        return Err("no access line was read: nothing shows the connections used HBONE".into());
    }
    lines.iter().try_for_each(|line| went_over_hbone(line))
}

/// The client's access line of a connection through the destination's ztunnel over mTLS.
fn went_over_hbone(line: &LogLine) -> Result<(), Failed> {
    let field = |key: &str| line.fields.get(key).map(String::as_str).unwrap_or("");
    let tunnel_port = field("dst.addr").rsplit_once(':').map(|(_, p)| p);
    let ok = tunnel_port == Some("15008")
        && field("dst.hbone_addr").ends_with(":8080")
        && field("src.identity").starts_with("spiffe://cluster.local/ns/")
        && field("dst.identity").starts_with("spiffe://cluster.local/ns/");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "not an HBONE connection (dst.addr on 15008, dst.hbone_addr the pod, both identities): {}",
            line.raw
        )
        .into())
    }
}

/// A launcher that execs the client binary in client pods (`client-*`) and the other binary in
/// every other pod, with the environment the driver gave it.
fn write_launcher(dir: &Path, client: &Path, backend: &Path) -> Result<PathBuf, Failed> {
    let path = dir.join("ztunnel-by-pod.sh");
    let script = format!(
        "#!/bin/sh\ncase \"$POD_NAME\" in\n  client-*) exec '{}' \"$@\" ;;\n  *) exec '{}' \"$@\" ;;\nesac\n",
        client.display(),
        backend.display()
    );
    std::fs::write(&path, script).map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

//! A run killed with SIGKILL in the middle of the failover scenario leaves nothing behind once the
//! next run (or `meshcert sweep`) starts: no network namespace, no iptables rule, no ztunnel.
//! Only the killed run's own things are counted (its run ids from its lock files, its processes
//! by an inherited variable): other runs may be going on on the same machine.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    if let Err(reason) = meshcert_local::preflight() {
        println!("crash_cleanup: skipped, local meshes unavailable: {reason}");
        println!("crash_cleanup: 0 passed, 0 failed, 1 skipped");
        return ExitCode::SUCCESS;
    }
    match crash_then_sweep() {
        Ok(summary) => {
            println!("crash_cleanup: {summary}");
            println!("crash_cleanup: 1 passed, 0 failed");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("crash_cleanup: FAILED: {e}");
            println!("crash_cleanup: 0 passed, 1 failed");
            ExitCode::FAILURE
        }
    }
}

/// Inherited by every process the run starts.
const MARKER: &str = "MESHCERT_CRASH_TEST";

fn crash_then_sweep() -> Result<String, String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let marker = std::process::id().to_string();
    let mut run = start_failover_run(&root, &marker)?;

    // The run's ids, from the lock files that hold its pid (they stay after SIGKILL).
    let pid = run.id();
    let mut ids: BTreeSet<String> = BTreeSet::new();
    wait_for_fault(&mut run, &mut ids)?;
    // SAFETY: plain syscall on a child we own.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    run.wait().map_err(|e| e.to_string())?;
    let killed_at = Instant::now();

    // The ztunnel dies with its parent (PR_SET_PDEATHSIG); give the kernel a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !support::processes_with_env(MARKER, &marker).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left = namespaces_of(&ids).len();

    sweep_and_check(&ids, pid, &marker)?;
    Ok(format!(
        "killed mid-failover with {left} namespaces in place; sweep removed them in {:.2}s; no ztunnel left",
        killed_at.elapsed().as_secs_f64()
    ))
}

/// `meshcert run` of the failover scenario, with `marker` in its processes' environment.
fn start_failover_run(root: &Path, marker: &str) -> Result<Child, String> {
    Command::new(env!("CARGO_BIN_EXE_meshcert"))
        .args([
            "run",
            "--target",
            "reference",
            "--reference-bin",
            env!("CARGO_BIN_EXE_meshcert-ztunnel"),
            "--tags",
            "@L4-FO-2",
        ])
        .arg("--out")
        .arg(root.join("target/meshcert/crash"))
        .env(MARKER, marker)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start meshcert: {e}"))
}

/// The namespaces of the runs `ids` that exist now.
fn namespaces_of(ids: &BTreeSet<String>) -> Vec<String> {
    support::harness_namespaces()
        .into_iter()
        .filter(|ns| support::run_id_of(ns).is_some_and(|id| ids.contains(id)))
        .collect()
}

/// Waits, bounded, until the fault is in force: a DROP rule inside one of the run's pods.
/// Gathers the run's ids into `ids` meanwhile.
fn wait_for_fault(run: &mut Child, ids: &mut BTreeSet<String>) -> Result<(), String> {
    let pid = run.id();
    let started = Instant::now();
    loop {
        ids.extend(support::lock_files_of(pid).into_iter().map(|(id, _)| id));
        let found = namespaces_of(ids)
            .into_iter()
            .find(|ns| rules(ns).contains("-j DROP"));
        if found.is_some() {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = run.kill();
            return Err("the failover scenario never injected its DROP rule within 30s".into());
        }
        if let Ok(Some(status)) = run.try_wait() {
            return Err(format!(
                "meshcert exited ({status}) before the fault was injected"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `meshcert sweep`; afterwards no namespace, process or lock file of the killed run may
/// be left.
fn sweep_and_check(ids: &BTreeSet<String>, pid: u32, marker: &str) -> Result<(), String> {
    let sweep = Command::new(env!("CARGO_BIN_EXE_meshcert"))
        .arg("sweep")
        .output()
        .map_err(|e| format!("cannot run meshcert sweep: {e}"))?;
    if !sweep.status.success() {
        return Err(format!(
            "meshcert sweep failed: {}",
            String::from_utf8_lossy(&sweep.stderr)
        ));
    }
    let after = namespaces_of(ids);
    if !after.is_empty() {
        return Err(format!("namespaces left after the sweep: {after:?}"));
    }
    let processes = support::processes_with_env(MARKER, marker);
    if !processes.is_empty() {
        return Err(format!(
            "{} process(es) of the killed run still running: {processes:?}",
            processes.len()
        ));
    }
    let locks = support::lock_files_of(pid);
    if !locks.is_empty() {
        return Err(format!("lock files left after the sweep: {locks:?}"));
    }
    Ok(())
}

fn rules(ns: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "iptables", "-S", "INPUT"])
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    String::from_utf8_lossy(&out).into_owned()
}

//! The sweeper: what runs that died (killed, crashed) left behind goes at the next run.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::path::PathBuf;

use meshcert_mesh::MeshError;
use serde::Serialize;

use crate::netns;
use crate::run::*;

/// What `sweep` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// Ids of dead runs whose leftovers were removed.
    pub runs: Vec<String>,
    pub namespaces: Vec<String>,
    /// Processes killed because they ran inside a removed namespace.
    pub killed_pids: Vec<i32>,
    pub lock_files: Vec<PathBuf>,
    /// What could not be removed, one line each.
    pub problems: Vec<String>,
}

impl SweepReport {
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
            && self.namespaces.is_empty()
            && self.killed_pids.is_empty()
            && self.lock_files.is_empty()
    }
}

impl std::fmt::Display for SweepReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} dead run(s) [{}], {} namespace(s), {} process(es), {} lock file(s)",
            self.runs.len(),
            self.runs.join(" "),
            self.namespaces.len(),
            self.killed_pids.len(),
            self.lock_files.len()
        )?;
        if !self.problems.is_empty() {
            write!(f, "; problems: {}", self.problems.join("; "))?;
        }
        Ok(())
    }
}

/// Removes what dead runs left: for every lock file that can be locked (its run is dead) and
/// every `mc-*` namespace whose run has no lock file, kills the processes in the run's
/// namespaces, deletes the namespaces and the lock file. Live runs are never touched.
pub fn sweep() -> Result<SweepReport, MeshError> {
    ensure_lock_dir()?;
    let mut report = SweepReport::default();
    let namespaces = netns::list_netns()?;
    let (dead, live) = lock_files(&mut report)?;
    let dead_ids: BTreeSet<String> = dead.iter().map(|(id, _, _)| id.clone()).collect();
    let mut doomed_runs: BTreeSet<String> = dead_ids.clone();
    let mut doomed: Vec<String> = Vec::new();
    for name in &namespaces {
        let Some(id) = run_id_of_netns(name) else {
            continue;
        };
        if live.contains(id) {
            continue;
        }
        // Either its lock is free (dead) or it has none at all (its run crashed before or
        // after removing it): both mean nobody owns the namespace.
        if dead_ids.contains(id) || !lock_path(id).exists() {
            doomed_runs.insert(id.to_string());
            doomed.push(name.clone());
        }
    }
    remove(&mut report, doomed, dead);
    report.runs = doomed_runs.into_iter().collect();
    Ok(report)
}

/// A dead run's id, its lock file and the lock on it (held until the file is gone).
type DeadRun = (String, PathBuf, File);

/// The runs with lock files: dead ones (their lock could be taken) and live ones.
fn lock_files(report: &mut SweepReport) -> Result<(Vec<DeadRun>, BTreeSet<String>), MeshError> {
    let mut dead: Vec<DeadRun> = Vec::new();
    let mut live: BTreeSet<String> = BTreeSet::new();
    let entries =
        fs::read_dir(LOCK_DIR).map_err(MeshError::io(format!("cannot list {LOCK_DIR}")))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(id) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".lock"))
            .filter(|id| is_run_id(id))
            .map(str::to_string)
        else {
            continue;
        };
        let file = match OpenOptions::new().write(true).open(&path) {
            Ok(f) => f,
            // Its run ended between our listing and our open.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                report
                    .problems
                    .push(format!("cannot open {}: {e}", path.display()));
                live.insert(id);
                continue;
            }
        };
        match try_lock(&file) {
            Ok(true) => dead.push((id, path, file)),
            Ok(false) => {
                live.insert(id);
            }
            Err(e) => {
                report
                    .problems
                    .push(format!("cannot lock {}: {e}", path.display()));
                live.insert(id);
            }
        }
    }
    Ok((dead, live))
}

/// Kills the processes of the doomed namespaces, deletes them, then the dead runs' lock files.
fn remove(report: &mut SweepReport, doomed: Vec<String>, dead: Vec<DeadRun>) {
    // Kill first, across all doomed namespaces, so no process of a dead run survives in one
    // namespace while we delete another.
    let me = std::process::id() as i32;
    for name in &doomed {
        match netns::netns_pids(name) {
            Ok(pids) => {
                for pid in pids.into_iter().filter(|&p| p != me && p > 1) {
                    // SAFETY: plain kill(2) with a pid read from `ip netns pids`.
                    if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
                        report.killed_pids.push(pid);
                    }
                }
            }
            Err(e) => report.problems.push(e.to_string()),
        }
    }
    for name in doomed {
        match netns::delete_netns(&name) {
            Ok(()) => report.namespaces.push(name),
            Err(e) => report.problems.push(e.to_string()),
        }
    }
    for (_, path, file) in dead {
        match fs::remove_file(&path) {
            Ok(()) => report.lock_files.push(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => report
                .problems
                .push(format!("cannot remove {}: {e}", path.display())),
        }
        drop(file);
    }
}

//! One harness run on this machine: its id, the lock that tells other runs it is alive, the
//! sweeper that removes what dead runs left behind, and the ledgers that record everything a
//! local mesh creates so that teardown, a panic or Ctrl-C removes it again.
//!
//! Every network namespace is named `mc-<run id>-<mesh #>-<role>`; a run holds an exclusive
//! `flock` on `/run/meshcert/runs/<run id>.lock` for its lifetime. A lock file that can be
//! locked belongs to a dead run, so its namespaces (and the processes in them) can go.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use serde::Serialize;

use super::netns;
use crate::MeshError;

/// Where runs keep their lock files (tmpfs: a reboot removes stale ones with the namespaces).
pub const LOCK_DIR: &str = "/run/meshcert/runs";

/// Prefix of every network namespace the harness creates.
pub const NETNS_PREFIX: &str = "mc-";

const RUN_ID_LEN: usize = 6;
const RUN_ID_ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// Makes a run id (6 characters of `[a-z0-9]`) from random bits.
pub fn run_id_from_entropy(mut entropy: u64) -> String {
    let mut id = String::with_capacity(RUN_ID_LEN);
    for _ in 0..RUN_ID_LEN {
        id.push(RUN_ID_ALPHABET[(entropy % 36) as usize] as char);
        entropy /= 36;
    }
    id
}

/// True for a string that `run_id_from_entropy` could have made.
pub fn is_run_id(s: &str) -> bool {
    s.len() == RUN_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// The run id inside a harness namespace name (`mc-<id>-...`), if the name is one of ours.
pub fn run_id_of_netns(name: &str) -> Option<&str> {
    let rest = name.strip_prefix(NETNS_PREFIX)?;
    let (id, _) = rest.split_once('-')?;
    is_run_id(id).then_some(id)
}

/// Random bits from the kernel; only names depend on them, so failure is not an option worth
/// handling separately from "the machine is broken".
pub(crate) fn entropy() -> Result<u64, MeshError> {
    let mut bytes = [0u8; 8];
    // SAFETY: the buffer is valid for 8 bytes.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n != bytes.len() as isize {
        return Err(MeshError::Io {
            context: "cannot read random bits (getrandom)".into(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(u64::from_le_bytes(bytes))
}

fn lock_path(id: &str) -> PathBuf {
    Path::new(LOCK_DIR).join(format!("{id}.lock"))
}

/// Tries to take the exclusive lock without waiting; `Ok(false)` means another open file holds it.
fn try_lock(file: &File) -> Result<bool, std::io::Error> {
    // SAFETY: flock on a valid, open descriptor.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(err)
    }
}

fn ensure_lock_dir() -> Result<(), MeshError> {
    fs::create_dir_all(LOCK_DIR).map_err(MeshError::io(format!(
        "cannot create {LOCK_DIR} (local meshes need root)"
    )))
}

/// One harness process's claim on this machine. Meshes hold it through `Arc`; the lock is
/// released (and the lock file removed) when the last holder drops it.
#[derive(Debug)]
pub struct Run {
    id: String,
    lock_path: PathBuf,
    /// Held open for the flock; closing it is what tells the sweeper this run is dead.
    _lock: File,
    next_mesh: AtomicU32,
    /// Namespaces this run created and has not deleted: what the socket factory may use.
    namespaces: Mutex<BTreeSet<String>>,
}

impl Run {
    /// Sweeps what dead runs left behind, then claims a fresh run id.
    pub fn start() -> Result<Arc<Run>, MeshError> {
        let report = sweep()?;
        if !report.is_empty() {
            tracing::info!(%report, "swept leftovers of dead meshcert runs");
        }
        for problem in &report.problems {
            tracing::warn!(problem, "sweeping a dead run failed");
        }
        Self::acquire()
    }

    /// Claims a fresh run id without sweeping first.
    pub fn acquire() -> Result<Arc<Run>, MeshError> {
        ensure_lock_dir()?;
        // A sweeper in another run may lock and delete a lock file between our create and our
        // flock; if the path no longer names our file afterwards, start again with a new id.
        for _ in 0..8 {
            let id = run_id_from_entropy(entropy()?);
            let path = lock_path(&id);
            let file = match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(MeshError::Io {
                        context: format!("cannot create lock file {}", path.display()),
                        source: e,
                    });
                }
            };
            // SAFETY: flock on a valid, open descriptor; blocking, because a sweeper holds a
            // lock it can take only for the moment it needs to check and delete.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
                return Err(MeshError::Io {
                    context: format!("cannot lock {}", path.display()),
                    source: std::io::Error::last_os_error(),
                });
            }
            let ours = file
                .metadata()
                .map_err(MeshError::io("cannot stat our lock file"))?;
            match fs::metadata(&path) {
                Ok(now) if now.ino() == ours.ino() && now.dev() == ours.dev() => {
                    return Ok(Arc::new(Run {
                        id,
                        lock_path: path,
                        _lock: file,
                        next_mesh: AtomicU32::new(1),
                        namespaces: Mutex::new(BTreeSet::new()),
                    }));
                }
                _ => continue,
            }
        }
        Err(MeshError::Environment(format!(
            "could not claim a run lock in {LOCK_DIR} after 8 attempts: is another process \
             deleting files there?"
        )))
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The next mesh number of this run: part of every namespace name, so concurrent meshes
    /// of one process never collide.
    pub fn next_mesh_number(&self) -> u32 {
        self.next_mesh.fetch_add(1, Ordering::Relaxed)
    }

    /// `mc-<run id>-<mesh #>-<role>`.
    pub fn netns_name(&self, mesh: u32, role: &str) -> String {
        format!("{NETNS_PREFIX}{}-{mesh}-{role}", self.id)
    }

    /// True when the namespace was created by this run and still exists.
    pub fn owns_netns(&self, name: &str) -> bool {
        run_id_of_netns(name) == Some(self.id.as_str()) && lock(&self.namespaces).contains(name)
    }

    pub(crate) fn netns_created(&self, name: &str) {
        lock(&self.namespaces).insert(name.to_string());
    }

    pub(crate) fn netns_deleted(&self, name: &str) {
        lock(&self.namespaces).remove(name);
    }

    /// Namespaces of this run that exist now.
    pub fn live_namespaces(&self) -> Vec<String> {
        lock(&self.namespaces).iter().cloned().collect()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        // Removed while still locked, so no sweeper can mistake a fresh file for ours.
        let _ = fs::remove_file(&self.lock_path);
    }
}

/// A poisoned lock only means another thread panicked while holding it; the data (names,
/// ledger entries) is still what we need to clean up.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

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

    // Dead runs found by their lock files; their locks stay held until their files are gone.
    let mut dead: Vec<(String, PathBuf, File)> = Vec::new();
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
    report.runs = doomed_runs.into_iter().collect();
    Ok(report)
}

/// Something a mesh created that must be removed again.
pub trait Undo: Send + Sync {
    /// For reports and error messages, e.g. "network namespace mc-ab12cd-1-fabric".
    fn describe(&self) -> String;
    /// Removes it. Runs synchronously: it is also called from `Drop` and from Ctrl-C.
    fn undo(&self) -> Result<(), MeshError>;
}

impl<T: Undo + ?Sized> Undo for Arc<T> {
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn undo(&self) -> Result<(), MeshError> {
        (**self).undo()
    }
}

/// Names one ledger entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryId(u64);

struct LedgerEntry {
    id: EntryId,
    item: Box<dyn Undo>,
}

/// Everything one mesh created, in creation order; undone in reverse order.
pub struct Ledger {
    label: String,
    next: AtomicU64,
    entries: Mutex<Vec<LedgerEntry>>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("label", &self.label)
            .field("entries", &self.describe())
            .finish()
    }
}

/// Every live ledger of this process, so Ctrl-C can tear them all down.
static LEDGERS: Mutex<Vec<Weak<Ledger>>> = Mutex::new(Vec::new());

impl Ledger {
    /// A new, empty ledger, registered for `cleanup_all`.
    pub fn new(label: impl Into<String>) -> Arc<Ledger> {
        let ledger = Arc::new(Ledger {
            label: label.into(),
            next: AtomicU64::new(1),
            entries: Mutex::new(Vec::new()),
        });
        let mut all = lock(&LEDGERS);
        all.retain(|w| w.strong_count() > 0);
        all.push(Arc::downgrade(&ledger));
        ledger
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// Records something just created; call it right after creation succeeds.
    pub fn record(&self, item: Box<dyn Undo>) -> EntryId {
        let id = EntryId(self.next.fetch_add(1, Ordering::Relaxed));
        lock(&self.entries).push(LedgerEntry { id, item });
        id
    }

    /// Undoes one entry now and forgets it. Unknown ids (already released) are a no-op.
    pub fn release(&self, id: EntryId) -> Result<(), MeshError> {
        let entry = {
            let mut entries = lock(&self.entries);
            let Some(pos) = entries.iter().position(|e| e.id == id) else {
                return Ok(());
            };
            entries.remove(pos)
        };
        entry.item.undo()
    }

    /// Forgets an entry without undoing it (it went away by other means).
    pub fn forget(&self, id: EntryId) {
        lock(&self.entries).retain(|e| e.id != id);
    }

    pub fn contains(&self, id: EntryId) -> bool {
        lock(&self.entries).iter().any(|e| e.id == id)
    }

    pub fn is_empty(&self) -> bool {
        lock(&self.entries).is_empty()
    }

    /// What is still recorded, oldest first.
    pub fn describe(&self) -> Vec<String> {
        lock(&self.entries)
            .iter()
            .map(|e| e.item.describe())
            .collect()
    }

    /// Undoes every entry, newest first, carrying on past failures; the error lists them all.
    pub fn teardown(&self) -> Result<(), MeshError> {
        let mut failures: Vec<MeshError> = Vec::new();
        loop {
            // Popped one at a time without holding the lock while undoing: an undo may wait
            // for a process to exit.
            let Some(entry) = lock(&self.entries).pop() else {
                break;
            };
            if let Err(e) = entry.item.undo() {
                tracing::warn!(ledger = %self.label, item = %entry.item.describe(), error = %e, "teardown step failed");
                failures.push(e);
            }
        }
        match failures.len() {
            0 => Ok(()),
            1 => Err(failures.remove(0)),
            _ => Err(MeshError::Environment(format!(
                "teardown of {} failed {} times: {}; the sweeper (`meshcert sweep`, or the next \
                 run's start) removes what is left once this run has ended",
                self.label,
                failures.len(),
                failures
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ))),
        }
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            tracing::error!(ledger = %self.label, error = %e, "teardown on drop left things behind");
        }
    }
}

/// Tears down every live mesh of this process (the runner's Ctrl-C handler calls it).
/// Returns how many ledgers had something to undo.
pub fn cleanup_all() -> Result<usize, MeshError> {
    let ledgers: Vec<Arc<Ledger>> = lock(&LEDGERS).iter().filter_map(Weak::upgrade).collect();
    let mut cleaned = 0;
    let mut failures = Vec::new();
    for ledger in ledgers {
        if ledger.is_empty() {
            continue;
        }
        cleaned += 1;
        if let Err(e) = ledger.teardown() {
            failures.push(e.to_string());
        }
    }
    if failures.is_empty() {
        Ok(cleaned)
    } else {
        Err(MeshError::Environment(format!(
            "cleanup after interrupt left things behind: {}; run `meshcert sweep` after this \
             process has exited",
            failures.join("; ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(0, "aaaaaa")]
    #[case(1, "baaaaa")]
    #[case(35, "9aaaaa")]
    #[case(36, "abaaaa")]
    #[case(36u64.pow(6) - 1, "999999")]
    fn run_ids_are_six_base36_characters(#[case] entropy: u64, #[case] id: &str) {
        assert_eq!(run_id_from_entropy(entropy), id);
        assert!(is_run_id(id));
    }

    #[rstest]
    #[case("mc-ab12cd-1-fabric", Some("ab12cd"))]
    #[case("mc-ab12cd-3-in-ambient-bcdfghjklm-bcdfg", Some("ab12cd"))]
    #[case("mc-AB12cd-1-fabric", None)]
    #[case("mc-ab12c-1-fabric", None)]
    #[case("mcx-ab12cd-1-fabric", None)]
    #[case("mc-ab12cd", None)]
    #[case("cni-1234", None)]
    fn run_id_is_read_from_namespace_names(#[case] name: &str, #[case] id: Option<&str>) {
        assert_eq!(run_id_of_netns(name), id);
    }

    struct Probe {
        name: &'static str,
        log: Arc<Mutex<Vec<&'static str>>>,
        fail: bool,
    }

    impl Undo for Probe {
        fn describe(&self) -> String {
            self.name.to_string()
        }
        fn undo(&self) -> Result<(), MeshError> {
            lock(&self.log).push(self.name);
            if self.fail {
                Err(MeshError::InvalidRequest(format!("{} failed", self.name)))
            } else {
                Ok(())
            }
        }
    }

    fn probe(name: &'static str, log: &Arc<Mutex<Vec<&'static str>>>, fail: bool) -> Box<dyn Undo> {
        Box::new(Probe {
            name,
            log: log.clone(),
            fail,
        })
    }

    #[test]
    fn ledger_undoes_in_reverse_order_and_release_removes_one() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let ledger = Ledger::new("test");
        ledger.record(probe("fabric", &log, false));
        let node = ledger.record(probe("node", &log, false));
        ledger.record(probe("pod", &log, false));
        ledger.release(node).unwrap();
        assert!(!ledger.contains(node));
        ledger.release(node).unwrap();
        assert_eq!(ledger.describe(), ["fabric", "pod"]);
        ledger.teardown().unwrap();
        assert_eq!(*lock(&log), ["node", "pod", "fabric"]);
        assert!(ledger.is_empty());
    }

    #[test]
    fn teardown_carries_on_past_failures_and_reports_them_all() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let ledger = Ledger::new("mesh 9");
        ledger.record(probe("a", &log, true));
        ledger.record(probe("b", &log, false));
        ledger.record(probe("c", &log, true));
        let err = ledger.teardown().unwrap_err().to_string();
        assert_eq!(*lock(&log), ["c", "b", "a"]);
        assert!(err.contains("failed 2 times"), "{err}");
        assert!(
            err.contains("c failed") && err.contains("a failed"),
            "{err}"
        );
    }

    #[test]
    fn dropping_a_ledger_undoes_what_it_holds() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let ledger = Ledger::new("dropped");
        ledger.record(probe("x", &log, false));
        let forgotten = ledger.record(probe("y", &log, false));
        ledger.forget(forgotten);
        drop(ledger);
        assert_eq!(*lock(&log), ["x"]);
    }
}

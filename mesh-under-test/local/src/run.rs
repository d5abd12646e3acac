//! One harness run on this machine: its id, the lock that tells other runs it is alive, the
//! sweeper that removes what dead runs left behind, and the ledgers that record everything a
//! local mesh creates so that teardown, a panic or Ctrl-C removes it again.
//!
//! Every network namespace is named `mc-<run id>-<mesh #>-<role>`; a run holds an exclusive
//! `flock` on `/run/meshcert/runs/<run id>.lock` (which holds its pid) for its lifetime. A
//! lock file that can be locked belongs to a dead run, so its namespaces (and the processes in
//! them) can go.
//!
//! Closing on a signal: `begin_closing` shuts the gate every creation passes (`Run::creating`),
//! then `close_all` waits for the creations already past it, undoes every ledger, removes
//! whatever namespace still carries a run's id and the runs' lock files, and says what it
//! removed and what is left.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::Duration;

use meshcert_mesh::MeshError;

use crate::netns;

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

pub(super) fn lock_path(id: &str) -> PathBuf {
    Path::new(LOCK_DIR).join(format!("{id}.lock"))
}

/// Tries to take the exclusive lock without waiting; `Ok(false)` means another open file holds it.
pub(super) fn try_lock(file: &File) -> Result<bool, std::io::Error> {
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

pub(super) fn ensure_lock_dir() -> Result<(), MeshError> {
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
    /// Set by `close`: the run creates nothing more and its lock file is gone.
    closed: AtomicBool,
}

/// Every run of this process that is still referenced, so a signal can close them all.
pub(super) static RUNS: Mutex<Vec<Weak<Run>>> = Mutex::new(Vec::new());

/// The gate every creation passes: shut once the process is closing (a signal came), and how
/// many creations are past it and not yet recorded.
#[derive(Debug)]
pub struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Debug)]
struct GateState {
    closing: bool,
    in_flight: usize,
}

/// The process's gate: one process, one fate.
pub(super) static GATE: Gate = Gate::new();

/// Permission to create one thing. Held from the check until what was made is recorded (in a
/// ledger or the run's namespace set), so that once `close_all` has waited for every
/// `Creating` to drop, the cleanup sees everything that exists.
#[must_use = "hold it until what was created is recorded"]
#[derive(Debug)]
pub struct Creating(&'static Gate);

impl Drop for Creating {
    fn drop(&mut self) {
        lock(&self.0.state).in_flight -= 1;
        self.0.changed.notify_all();
    }
}

impl Gate {
    const fn new() -> Gate {
        Gate {
            state: Mutex::new(GateState {
                closing: false,
                in_flight: 0,
            }),
            changed: Condvar::new(),
        }
    }

    /// Passes the gate, or says why not.
    fn pass(&'static self, what: &str) -> Result<Creating, MeshError> {
        let mut state = lock(&self.state);
        if state.closing {
            return Err(MeshError::Environment(format!(
                "not creating {what}: meshcert is closing (interrupted)"
            )));
        }
        state.in_flight += 1;
        Ok(Creating(self))
    }

    fn close(&self) {
        lock(&self.state).closing = true;
        self.changed.notify_all();
    }

    fn is_closed(&self) -> bool {
        lock(&self.state).closing
    }

    /// Waits (at most `timeout`) until no creation is under way; how many still are.
    pub(super) fn wait_creations(&self, timeout: Duration) -> usize {
        let state = lock(&self.state);
        let (state, _) = self
            .changed
            .wait_timeout_while(state, timeout, |s| s.in_flight > 0)
            .unwrap_or_else(|e| e.into_inner());
        state.in_flight
    }
}

/// Shuts the gate: from now on nothing (namespace, pod, ztunnel, fault, lock file) is created
/// by this process. Returns at once; `close_all` waits for the creations under way.
pub fn begin_closing() {
    GATE.close();
}

/// True once `begin_closing` was called.
pub fn is_closing() -> bool {
    GATE.is_closed()
}

fn pass_gate(what: &str) -> Result<Creating, MeshError> {
    GATE.pass(what)
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
        let _gate = pass_gate("a run lock file")?;
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
                    // The pid tells a human (and tests) whose lock it is; the sweeper reads
                    // only the lock itself.
                    let _ = writeln!(&file, "{}", std::process::id());
                    let run = Arc::new(Run {
                        id,
                        lock_path: path,
                        _lock: file,
                        next_mesh: AtomicU32::new(1),
                        namespaces: Mutex::new(BTreeSet::new()),
                        closed: AtomicBool::new(false),
                    });
                    let mut runs = lock(&RUNS);
                    runs.retain(|w| w.strong_count() > 0);
                    runs.push(Arc::downgrade(&run));
                    return Ok(run);
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

    /// `/run/meshcert/runs/<run id>.lock`.
    pub fn lock_path(&self) -> &Path {
        &self.lock_path
    }

    /// Permission to create `what` for this run: refused once the process is closing or the
    /// run was closed. Hold it until what was created is recorded.
    pub fn creating(&self, what: &str) -> Result<Creating, MeshError> {
        let creating = pass_gate(what)?;
        if self.closed.load(Ordering::SeqCst) {
            return Err(MeshError::Environment(format!(
                "not creating {what}: run {} has ended",
                self.id
            )));
        }
        Ok(creating)
    }

    /// Ends the run explicitly (a `Drop` may never come, e.g. when an `Arc` lingers in a task
    /// or the process exits): refuses further creations, kills the processes in and deletes
    /// every namespace that still carries the run's id, and removes the lock file.
    pub fn close(&self) -> CloseReport {
        self.closed.store(true, Ordering::SeqCst);
        let mut report = CloseReport::default();
        let mut names: BTreeSet<String> = self.live_namespaces().into_iter().collect();
        match netns::list_netns() {
            Ok(all) => names.extend(
                all.into_iter()
                    .filter(|n| run_id_of_netns(n) == Some(self.id.as_str())),
            ),
            Err(e) => report.problems.push(e.to_string()),
        }
        let me = std::process::id() as i32;
        for name in &names {
            match netns::netns_pids(name) {
                Ok(pids) => {
                    for pid in pids.into_iter().filter(|&p| p != me && p > 1) {
                        // SAFETY: plain kill(2) with a pid read from `ip netns pids`.
                        if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
                            report.add("process");
                        }
                    }
                }
                // Gone meanwhile: a teardown on another thread got there first.
                Err(_) if !Path::new(netns::NETNS_DIR).join(name).exists() => {}
                Err(e) => report.problems.push(e.to_string()),
            }
        }
        for name in names {
            let existed = Path::new(netns::NETNS_DIR).join(&name).exists();
            match netns::delete_netns(&name) {
                Ok(()) => {
                    if existed {
                        report.add("network namespace");
                    }
                }
                Err(e) => report.problems.push(e.to_string()),
            }
            self.netns_deleted(&name);
        }
        match fs::remove_file(&self.lock_path) {
            Ok(()) => report.lock_files.push(self.lock_path.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => report
                .problems
                .push(format!("cannot remove {}: {e}", self.lock_path.display())),
        }
        report
    }

    /// What of this run exists now: namespaces with its id and its lock file.
    pub(super) fn left(&self) -> Vec<String> {
        let mut left: Vec<String> = netns::list_netns()
            .unwrap_or_default()
            .into_iter()
            .filter(|n| run_id_of_netns(n) == Some(self.id.as_str()))
            .map(|n| format!("network namespace {n}"))
            .collect();
        if self.lock_path.exists() {
            left.push(format!("lock file {}", self.lock_path.display()));
        }
        left
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

/// True when a run with this id holds its lock now (in this process or another).
pub fn run_is_live(id: &str) -> bool {
    let Ok(file) = OpenOptions::new().write(true).open(lock_path(id)) else {
        return false;
    };
    // Locking it proves it dead; the lock goes when `file` is dropped.
    matches!(try_lock(&file), Ok(false) | Err(_))
}

/// A poisoned lock only means another thread panicked while holding it; the data (names,
/// ledger entries) is still what we need to clean up.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub use crate::closing::{CloseReport, close_all, leftovers};
pub use crate::ledger::{EntryId, Ledger, Undo, cleanup_all};
pub use crate::sweep::{SweepReport, sweep};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::closing::kind_of;
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
    fn a_shut_gate_refuses_creations_and_closing_waits_for_those_under_way() {
        // A gate of its own: shutting the process's would stop every other test.
        let gate: &'static Gate = Box::leak(Box::new(Gate::new()));
        let first = gate.pass("a namespace").unwrap();
        let second = gate.pass("a ztunnel").unwrap();
        gate.close();
        let refused = gate.pass("a fault").unwrap_err().to_string();
        assert_eq!(
            refused,
            "not creating a fault: meshcert is closing (interrupted)"
        );
        assert_eq!(gate.wait_creations(Duration::from_millis(10)), 2);
        drop(first);
        let waiter = std::thread::spawn(move || gate.wait_creations(Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(20));
        drop(second);
        assert_eq!(waiter.join().unwrap(), 0);
        assert!(gate.is_closed());
    }

    #[rstest]
    #[case("network namespace mc-ab12cd-1-fabric", "network namespace")]
    #[case("ztunnel pid 42 in pod client", "ztunnel process")]
    #[case("`iptables -A INPUT -j DROP` in mc-ab12cd-1-x", "fault")]
    #[case("forced HTTP status Some(500) of httpbin/x", "fault")]
    #[case("backend app of x on 10.244.1.10:[8080]", "backend app")]
    #[case("failing readiness path /status/200 of httpbin/x", "fault")]
    #[case("killed app of httpbin/x", "fault")]
    #[case(
        "readiness probe of container c of pod httpbin/x (GET :8080/ every 1s)",
        "readiness probe"
    )]
    #[case("something new", "other thing")]
    fn ledger_entries_are_counted_by_kind(#[case] description: &str, #[case] kind: &str) {
        assert_eq!(kind_of(description), kind);
    }

    #[test]
    fn the_closing_report_says_counts_and_what_is_left() {
        let mut report = CloseReport::default();
        assert_eq!(
            report.to_string(),
            "removed nothing (nothing was left to remove); nothing of this run is left"
        );
        for _ in 0..3 {
            report.add("network namespace");
        }
        report.add("ztunnel process");
        report.add("fault");
        report
            .lock_files
            .push("/run/meshcert/runs/ab12cd.lock".into());
        assert_eq!(
            report.to_string(),
            "removed 1 fault, 3 network namespaces, 1 ztunnel process and 1 lock file; \
             nothing of this run is left"
        );
        report.add("ztunnel process");
        report.problems.push("ip netns del x: busy".into());
        report
            .left
            .push("network namespace mc-ab12cd-2-fabric".into());
        let text = report.to_string();
        assert!(text.contains("2 ztunnel processes"), "{text}");
        assert!(
            text.ends_with(
                "; problems: ip netns del x: busy; LEFT: network namespace \
                 mc-ab12cd-2-fabric; run `meshcert sweep` once this process has exited"
            ),
            "{text}"
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

//! Closing on a signal: every ledger undone, every namespace of a run removed, and a report
//! of what was removed and what is left.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::ledger::*;
use crate::run::GATE;
use crate::run::*;

/// What was undone since closing began, wherever it was undone (`close_all`, or the `Drop` of
/// a mesh whose scenario was abandoned): what the closing report counts.
static UNDONE_WHILE_CLOSING: Mutex<BTreeMap<&'static str, usize>> = Mutex::new(BTreeMap::new());

pub(super) fn note_undone(description: &str) {
    if is_closing() {
        *lock(&UNDONE_WHILE_CLOSING)
            .entry(kind_of(description))
            .or_default() += 1;
    }
}

/// What a ledger entry is, from how it describes itself, for the closing counts.
pub(super) fn kind_of(description: &str) -> &'static str {
    const KINDS: [(&str, &str); 8] = [
        ("network namespace", "network namespace"),
        ("ztunnel pid", "ztunnel process"),
        ("`iptables", "fault"),
        ("forced HTTP status", "fault"),
        ("failing readiness path", "fault"),
        ("killed app", "fault"),
        ("backend app", "backend app"),
        ("readiness probe", "readiness probe"),
    ];
    KINDS
        .iter()
        .find(|(prefix, _)| description.starts_with(prefix))
        .map_or("other thing", |(_, kind)| kind)
}

/// What closing removed, and what it could not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CloseReport {
    /// Things removed, by kind (`network namespace`, `ztunnel process`, `fault`, ...).
    pub removed: BTreeMap<&'static str, usize>,
    pub lock_files: Vec<PathBuf>,
    /// Failures on the way, one line each.
    pub problems: Vec<String>,
    /// What exists after closing (namespaces, lock files, ledger entries), one line each.
    pub left: Vec<String>,
}

impl CloseReport {
    pub(super) fn add(&mut self, kind: &'static str) {
        *self.removed.entry(kind).or_default() += 1;
    }

    fn merge(&mut self, other: CloseReport) {
        for (kind, n) in other.removed {
            *self.removed.entry(kind).or_default() += n;
        }
        self.lock_files.extend(other.lock_files);
        self.problems.extend(other.problems);
        self.left.extend(other.left);
    }

    /// How many things of `kind` were removed.
    pub fn count(&self, kind: &str) -> usize {
        self.removed.get(kind).copied().unwrap_or(0)
    }
}

impl std::fmt::Display for CloseReport {
    /// `removed 14 network namespaces, 2 ztunnel processes, 1 fault and 1 lock file`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural = |n: usize, kind: &str| match (n, kind) {
            (1, _) => format!("1 {kind}"),
            (_, k) if k.ends_with("ss") => format!("{n} {k}es"),
            _ => format!("{n} {kind}s"),
        };
        let mut parts: Vec<String> = self
            .removed
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(kind, n)| plural(*n, kind))
            .collect();
        if !self.lock_files.is_empty() {
            parts.push(plural(self.lock_files.len(), "lock file"));
        }
        match parts.len() {
            0 => f.write_str("removed nothing (nothing was left to remove)")?,
            1 => write!(f, "removed {}", parts[0])?,
            n => write!(
                f,
                "removed {} and {}",
                parts[..n - 1].join(", "),
                parts[n - 1]
            )?,
        }
        if !self.problems.is_empty() {
            write!(f, "; problems: {}", self.problems.join("; "))?;
        }
        if self.left.is_empty() {
            f.write_str("; nothing of this run is left")
        } else {
            write!(
                f,
                "; LEFT: {}; run `meshcert sweep` once this process has exited",
                self.left.join(", ")
            )
        }
    }
}

/// Closes everything of this process after `begin_closing`: waits (at most `wait`) for the
/// creations under way, undoes every ledger (processes, faults, apps, namespaces), closes
/// every run (`Run::close`), and reports what was removed and what is left.
pub fn close_all(wait: Duration) -> CloseReport {
    begin_closing();
    let mut report = CloseReport::default();
    let started = Instant::now();
    let still = GATE.wait_creations(wait);
    if still > 0 {
        report.problems.push(format!(
            "{still} creation(s) still under way after {:.1}s",
            started.elapsed().as_secs_f64()
        ));
    }
    let ledgers: Vec<Arc<Ledger>> = lock(&LEDGERS).iter().filter_map(Weak::upgrade).collect();
    for ledger in &ledgers {
        if let Err(e) = ledger.teardown() {
            report.problems.push(e.to_string());
        }
    }
    let runs: Vec<Arc<Run>> = lock(&RUNS).iter().filter_map(Weak::upgrade).collect();
    for run in &runs {
        report.merge(run.close());
    }
    for (kind, n) in std::mem::take(&mut *lock(&UNDONE_WHILE_CLOSING)) {
        *report.removed.entry(kind).or_default() += n;
    }
    report.left = leftovers_of(&ledgers, &runs);
    report
}

/// What this process made and has not removed: ledger entries, namespaces and lock files of
/// its runs. Printed before a forced exit.
pub fn leftovers() -> Vec<String> {
    let ledgers: Vec<Arc<Ledger>> = lock(&LEDGERS).iter().filter_map(Weak::upgrade).collect();
    let runs: Vec<Arc<Run>> = lock(&RUNS).iter().filter_map(Weak::upgrade).collect();
    leftovers_of(&ledgers, &runs)
}

fn leftovers_of(ledgers: &[Arc<Ledger>], runs: &[Arc<Run>]) -> Vec<String> {
    let mut left: Vec<String> = Vec::new();
    for ledger in ledgers {
        // Namespaces are listed from the machine below, once.
        left.extend(
            ledger
                .describe()
                .into_iter()
                .filter(|d| kind_of(d) != "network namespace"),
        );
    }
    for run in runs {
        left.extend(run.left());
    }
    left
}

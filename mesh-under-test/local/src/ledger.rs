//! Ledgers: everything a local mesh creates is recorded with how to undo it, so teardown, a
//! panic or Ctrl-C removes it again, newest first.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use meshcert_mesh::MeshError;

use crate::closing::note_undone;
use crate::run::*;

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
pub(super) static LEDGERS: Mutex<Vec<Weak<Ledger>>> = Mutex::new(Vec::new());

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
        entry.item.undo()?;
        note_undone(&entry.item.describe());
        Ok(())
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
            match entry.item.undo() {
                Ok(()) => note_undone(&entry.item.describe()),
                Err(e) => {
                    tracing::warn!(ledger = %self.label, item = %entry.item.describe(), error = %e, "teardown step failed");
                    failures.push(e);
                }
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

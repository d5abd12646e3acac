//! A run's files in its output directory. The previous run's outputs are removed when a run
//! starts, so a run that is killed never leaves them looking current; every output is written
//! whole or not at all (a temporary file renamed into place); a run's work directory
//! (`runs/<run id>`: configs and ztunnel logs) is removed when the run passed and kept when it
//! did not, and only the newest few are kept in any case.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use meshcert_local::run::{is_run_id, run_is_live};
use meshcert_reports::temporary_path;

/// Every file a run writes in its output directory.
pub const OUTPUTS: [&str; 5] = [
    "results.json",
    "report.html",
    "conformance.yaml",
    "junit.xml",
    "cucumber.json",
];

/// Work directories kept under `<out>/runs/`, the current run's included.
pub const KEEP_RUNS: usize = 5;

/// Removes the previous run's outputs (and temporary files a killed run left) from `dir`.
/// Returns how many files went.
pub fn remove_previous(dir: &Path) -> Result<usize, String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => {
            return Err(format!(
                "cannot list output directory {}: {e}",
                dir.display()
            ));
        }
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours = OUTPUTS.iter().any(|output| {
            name == *output
                || name
                    .strip_prefix(&format!(".{output}.tmp-"))
                    .is_some_and(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
        });
        if !ours {
            continue;
        }
        match std::fs::remove_file(entry.path()) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(format!(
                    "cannot remove the previous run's {}: {e}",
                    entry.path().display()
                ));
            }
        }
    }
    Ok(removed)
}

/// An output written under a temporary name (cucumber's writers stream into it) and renamed
/// into place only once complete; removed when dropped uncommitted (an interrupted run).
#[derive(Debug)]
pub struct Pending {
    tmp: PathBuf,
    path: PathBuf,
    committed: bool,
}

impl Pending {
    /// The file to write and the pending rename.
    pub fn create(path: PathBuf) -> Result<(Pending, File), String> {
        let tmp = temporary_path(&path);
        let file =
            File::create(&tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
        let pending = Pending {
            tmp,
            path,
            committed: false,
        };
        Ok((pending, file))
    }

    /// Renames the finished file into place.
    pub fn commit(mut self) -> Result<(), String> {
        self.committed = true;
        std::fs::rename(&self.tmp, &self.path).map_err(|e| {
            let _ = std::fs::remove_file(&self.tmp);
            format!(
                "cannot rename {} to {}: {e}",
                self.tmp.display(),
                self.path.display()
            )
        })
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// What became of the run's work directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkDirs {
    /// The run's own directory, when kept.
    pub kept: Option<PathBuf>,
    /// The run's own directory was removed.
    pub removed: bool,
    /// Older runs' directories removed to keep the newest `KEEP_RUNS`.
    pub pruned: usize,
}

impl WorkDirs {
    /// For the closing line.
    pub fn describe(&self, why_kept: &str) -> String {
        match (&self.kept, self.removed) {
            (Some(dir), _) => format!("its work files ({why_kept}) are kept in {}", dir.display()),
            (None, true) => "its work files were removed (nothing failed)".to_string(),
            (None, false) => "it made no work files".to_string(),
        }
    }
}

/// Removes the run's work directory `<runs>/<id>` unless `keep`, then every run directory
/// beyond the newest `KEEP_RUNS` (never one of a run that is still going on).
pub fn settle_work_dirs(runs: &Path, id: &str, keep: bool) -> WorkDirs {
    let own = runs.join(id);
    let (kept, removed) = match (keep, own.is_dir()) {
        (true, true) => (Some(own), false),
        (false, true) => (None, std::fs::remove_dir_all(&own).is_ok()),
        (_, false) => (None, false),
    };
    let mut dirs: Vec<(SystemTime, PathBuf, String)> = std::fs::read_dir(runs)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let meta = e.metadata().ok().filter(|m| m.is_dir())?;
                    if !is_run_id(&name) {
                        return None;
                    }
                    Some((meta.modified().ok()?, e.path(), name))
                })
                .collect()
        })
        .unwrap_or_default();
    dirs.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.2.cmp(&b.2)));
    let mut pruned = 0;
    for (_, path, name) in dirs.into_iter().skip(KEEP_RUNS) {
        if name == id || run_is_live(&name) {
            continue;
        }
        if std::fs::remove_dir_all(&path).is_ok() {
            pruned += 1;
        }
    }
    WorkDirs {
        kept,
        removed,
        pruned,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("meshcert-outputs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn the_previous_runs_outputs_and_temporaries_go_and_nothing_else() {
        let dir = scratch("previous");
        for name in OUTPUTS {
            std::fs::write(dir.join(name), "stale").unwrap();
        }
        for name in [
            ".junit.xml.tmp-4242",
            "notes.txt",
            ".junit.xml.tmp-x",
            "runs",
        ] {
            std::fs::write(dir.join(name), "keep").unwrap();
        }
        assert_eq!(remove_previous(&dir).unwrap(), 6);
        assert_eq!(names(&dir), [".junit.xml.tmp-x", "notes.txt", "runs"]);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            remove_previous(&dir).unwrap(),
            0,
            "a missing directory has none"
        );
    }

    #[test]
    fn pending_files_appear_only_when_committed() {
        let dir = scratch("pending");
        let (pending, file) = Pending::create(dir.join("junit.xml")).unwrap();
        std::io::Write::write_all(&mut &file, b"<testsuites/>").unwrap();
        assert_eq!(
            names(&dir),
            [format!(".junit.xml.tmp-{}", std::process::id())]
        );
        pending.commit().unwrap();
        assert_eq!(names(&dir), ["junit.xml"]);
        let (pending, _file) = Pending::create(dir.join("cucumber.json")).unwrap();
        drop(pending);
        assert_eq!(names(&dir), ["junit.xml"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_passed_runs_directory_goes_a_failed_ones_stays_and_only_the_newest_are_kept() {
        let runs = scratch("runs");
        // Eight old runs (not live: no lock file), oldest first, and a file that is no run.
        for i in 0..8 {
            std::fs::create_dir_all(runs.join(format!("old00{i}")).join("mesh-1")).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(15));
        }
        std::fs::write(runs.join("README"), "not a run").unwrap();
        std::fs::create_dir_all(runs.join("fail01")).unwrap();
        let settled = settle_work_dirs(&runs, "fail01", true);
        assert_eq!(settled.kept, Some(runs.join("fail01")));
        assert_eq!(settled.pruned, 4);
        assert_eq!(
            names(&runs),
            ["README", "fail01", "old004", "old005", "old006", "old007"]
        );
        assert!(settled.describe("a scenario failed").ends_with("fail01"));

        std::fs::create_dir_all(runs.join("pass01")).unwrap();
        let settled = settle_work_dirs(&runs, "pass01", false);
        assert_eq!(settled.kept, None);
        assert_eq!(settled.pruned, 0);
        assert_eq!(
            names(&runs),
            ["README", "fail01", "old004", "old005", "old006", "old007"]
        );
        assert_eq!(
            settled.describe("unused"),
            "its work files were removed (nothing failed)"
        );
        // A run stopped before it made any: nothing to keep or remove.
        let settled = settle_work_dirs(&runs, "none01", true);
        assert_eq!(settled.describe("unused"), "it made no work files");
        std::fs::remove_dir_all(&runs).unwrap();
    }
}

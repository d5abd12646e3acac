//! `meshcert run --target ztunnel` with binaries that cannot be tested: a path that is not a
//! binary, one that exits at start, one that never becomes ready, one whose logs are in no
//! ztunnel format, one whose own connections loop back into it. Each must end the run with
//! exit code 2 and one line on stderr saying what is wrong, and leave no namespace and no
//! process behind (wrapper scripts' children included). On a machine that cannot run local
//! meshes the cases are reported skipped, and fail when `CI` is set.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

struct Case {
    name: &'static str,
    /// The script's body after `#!/bin/sh`; `None`: the path is used as is.
    script: Option<String>,
    path: Option<PathBuf>,
    extra: &'static [&'static str],
    /// Words the one-line error must contain.
    expect: &'static [&'static str],
}

fn main() -> ExitCode {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let work = root.join("target/meshcert/bad-binaries");
    let reference = env!("CARGO_BIN_EXE_meshcert-ztunnel");
    let cases = cases(&work, reference);
    if let Err(reason) = meshcert_runner::target::local_machine_check() {
        if std::env::var_os("CI").is_some() {
            println!("bad_binaries: CI is set and local meshes are unavailable: {reason}");
            println!("bad_binaries: 0 passed, {} failed", cases.len() + 1);
            return ExitCode::FAILURE;
        }
        println!("bad_binaries: skipped, local meshes unavailable: {reason}");
        println!(
            "bad_binaries: 0 passed, 0 failed, {} skipped",
            cases.len() + 1
        );
        return ExitCode::SUCCESS;
    }
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("create the work directory");
    let (mut passed, mut failed) = (0, 0);
    match no_iptables(&work) {
        Ok(line) => {
            passed += 1;
            println!("bad_binaries: no-iptables ok: {line}");
        }
        Err(problem) => {
            failed += 1;
            println!("bad_binaries: no-iptables FAILED: {problem}");
        }
    }
    for case in &cases {
        let started = Instant::now();
        match check(case, &work) {
            Ok(error) => {
                passed += 1;
                println!(
                    "bad_binaries: {} ok in {:.1}s: {error}",
                    case.name,
                    started.elapsed().as_secs_f64()
                );
            }
            Err(problem) => {
                failed += 1;
                println!("bad_binaries: {} FAILED: {problem}", case.name);
            }
        }
    }
    println!("bad_binaries: {passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn cases(work: &Path, reference: &str) -> Vec<Case> {
    vec![
        Case {
            name: "no-such-file",
            script: None,
            path: Some(work.join("no/such/ztunnel")),
            extra: &[],
            expect: &["ztunnel binary", "no/such/ztunnel", "cannot be used"],
        },
        Case {
            name: "a-directory",
            script: None,
            path: Some(work.to_path_buf()),
            extra: &[],
            expect: &["is not a file"],
        },
        Case {
            name: "exits-at-start",
            script: Some("echo 'fatal: cannot bind 15001' >&2\nexit 3\n".into()),
            path: None,
            extra: &[],
            expect: &[
                "cannot be tested",
                "exited (exit status: 3)",
                "cannot bind 15001",
            ],
        },
        Case {
            name: "never-ready",
            script: Some(
                "echo '2025-03-06T16:52:48.095517Z\tinfo\tztunnel\tstarting'\nsleep 397\n".into(),
            ),
            path: None,
            extra: &["--ready-timeout", "2s"],
            expect: &["never became ready", "/healthz/ready", "starting"],
        },
        Case {
            name: "unparseable-logs",
            script: Some(format!("{reference:?} 2>&1 | sed -u 's/^/~~ /'\n")),
            path: None,
            extra: &[],
            expect: &[
                "log lines is in ztunnel's text or JSON format",
                "~~ ",
                "LOG_FORMAT",
            ],
        },
        Case {
            // Upstream's failure without PACKET_MARK and NETWORK, made from the reference:
            // its config hides every service address (10.96/16 -> 10.255/16), so a request
            // to a service is passed straight through to that address, on a socket with no
            // mark (PACKET_MARK=0): the pod's REDIRECT sends it back to 15001, and again.
            // Few file descriptors keep the loop short.
            name: "redirect-loop",
            script: Some(format!(
                "sed 's#/10\\.96\\.#/10.255.#g' \"$LOCAL_XDS_PATH\" > \"$LOCAL_XDS_PATH.hidden\"\n\
                 ulimit -n 256\n\
                 LOCAL_XDS_PATH=\"$LOCAL_XDS_PATH.hidden\" PACKET_MARK=0 exec {reference:?}\n"
            )),
            path: None,
            // The script rewrites the file the file contract gives it.
            extra: &["--ztunnel-config", "file"],
            expect: &[
                "cannot be tested",
                "come back to its outbound port 15001",
                "redirect loop",
                "PACKET_MARK",
            ],
        },
    ]
}

fn check(case: &Case, work: &Path) -> Result<String, String> {
    let bin = match (&case.script, &case.path) {
        (Some(body), _) => {
            let path = work.join(format!("{}.sh", case.name));
            std::fs::write(&path, format!("#!/bin/sh\n{body}")).map_err(|e| e.to_string())?;
            Command::new("chmod")
                .arg("+x")
                .arg(&path)
                .status()
                .map_err(|e| e.to_string())?;
            path
        }
        (None, Some(path)) => path.clone(),
        (None, None) => unreachable!("every case names a script or a path"),
    };
    let before = support::harness_namespaces();
    let out_dir = work.join(case.name);
    let output = Command::new(env!("CARGO_BIN_EXE_meshcert"))
        .args(["run", "--target", "ztunnel", "--ztunnel-bin"])
        .arg(&bin)
        .args(case.extra)
        .arg("--out")
        .arg(&out_dir)
        .output()
        .map_err(|e| format!("cannot run meshcert: {e}"))?;
    let error = support::one_line_error(&output, case.expect)?;
    // Other runs on this machine (another `cargo test`) may be making namespaces meanwhile:
    // left behind are new ones whose run holds no lock any more.
    let left: Vec<String> = support::harness_namespaces()
        .into_iter()
        .filter(|n| !before.contains(n) && !run_is_live(n))
        .collect();
    if !left.is_empty() {
        return Err(format!("namespaces left behind: {left:?}"));
    }
    let running = launched_from(&out_dir);
    if !running.is_empty() {
        return Err(format!("processes left running: {running:?}"));
    }
    Ok(error)
}

/// A machine without iptables (a PATH with only `ip`): exit code 4 and one line
/// naming the package, before anything starts (no results file).
fn no_iptables(work: &Path) -> Result<String, String> {
    let bin = work.join("no-iptables-path");
    std::fs::create_dir_all(&bin).map_err(|e| e.to_string())?;
    let path = std::env::var_os("PATH").unwrap_or_default();
    // Every other tool a local mesh needs is there: the one line must name iptables alone.
    for tool in ["ip", "nsenter", "setpriv"] {
        let found = std::env::split_paths(&path)
            .map(|dir| dir.join(tool))
            .find(|p| p.is_file())
            .ok_or(format!("{tool} is not on PATH"))?;
        std::os::unix::fs::symlink(&found, bin.join(tool)).map_err(|e| e.to_string())?;
    }
    let out_dir = work.join("no-iptables");
    let output = Command::new(env!("CARGO_BIN_EXE_meshcert"))
        .args(["run", "--out"])
        .arg(&out_dir)
        .env("PATH", &bin)
        .output()
        .map_err(|e| format!("cannot run meshcert: {e}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr.trim();
    if output.status.code() != Some(4) {
        return Err(format!(
            "exit status {} (expected 4); stderr: {line}",
            output.status
        ));
    }
    if line.lines().count() != 1
        || !line.contains("iptables is not installed: apt-get install iptables")
    {
        return Err(format!(
            "expected one line naming iptables and its package: {line}"
        ));
    }
    if out_dir.join("results.json").exists() {
        return Err("a results file was written".into());
    }
    Ok(line.to_string())
}

/// Whether the run that named namespace `mc-<run id>-...` still holds its lock file.
fn run_is_live(netns: &str) -> bool {
    use std::os::fd::AsRawFd;
    let Some(id) = netns
        .strip_prefix("mc-")
        .and_then(|rest| rest.split('-').next())
    else {
        return false;
    };
    let path = Path::new(meshcert_local::run::LOCK_DIR).join(format!("{id}.lock"));
    let Ok(file) = std::fs::OpenOptions::new().write(true).open(path) else {
        return false;
    };
    // SAFETY: flock on a descriptor we own; taking the lock proves the run dead, and closing
    // the file releases it.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) != 0 }
}

/// Processes whose environment points `LOCAL_XDS_PATH` into `dir`: every ztunnel this run
/// launched and every child they made (children inherit the environment).
fn launched_from(dir: &Path) -> Vec<String> {
    let needle = format!("LOCAL_XDS_PATH={}", dir.display());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| {
            std::fs::read(e.path().join("environ"))
                .map(|env| {
                    env.split(|b| *b == 0)
                        .any(|var| String::from_utf8_lossy(var).starts_with(&needle))
                })
                .unwrap_or(false)
        })
        .map(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            format!(
                "{} {}",
                e.file_name().to_string_lossy(),
                String::from_utf8_lossy(&cmdline).replace('\0', " ")
            )
        })
        .collect()
}

//! Ctrl-C or SIGTERM at any moment of a run leaves nothing behind. `meshcert run` starts in a
//! process group of its own and the signal goes to the whole group, as a terminal sends it:
//! during the start check, in the middle of scenarios, with a fault in force, near the end.
//! Afterwards no network namespace, iptables rule, process or lock file of the run may exist,
//! the exit code must be 130 (SIGINT) or 143 (SIGTERM), meshcert must have said what it
//! removed, and no earlier run's output may look current.

mod support;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use std::collections::BTreeSet;

/// Failover under each fault kind (four rows of L4-FO-2, a DROP among them), and a scale-up.
const TAGS: &str = "@L4-FO-2 or @L4-RR-4";
/// How many scenarios `TAGS` selects.
const SCENARIOS: usize = 5;
/// Inherited by every process the run starts, so the test finds them all afterwards.
const MARKER: &str = "MESHCERT_INTERRUPT_TEST";
/// A run that does not end this long after its signal failed to stop.
const EXIT_BOUND: Duration = Duration::from_secs(60);
const OUTPUTS: [&str; 5] = [
    "results.json",
    "report.html",
    "conformance.yaml",
    "junit.xml",
    "cucumber.json",
];

#[derive(Clone, Copy)]
enum Moment {
    /// This long after the start.
    After(Duration),
    /// As soon as a namespace of mesh 1 (the start check's) exists.
    Probe,
    /// As soon as a namespace of a scenario's mesh (2 and up) exists.
    ScenarioMesh,
    /// As soon as a DROP rule is in force in one of the run's pods.
    FaultInForce,
    /// As soon as a namespace of a scenario's mesh is deleted (a scale-down or a teardown).
    Removing,
    /// As soon as cucumber printed its summary: every scenario ended, the run is closing.
    End,
}

struct Case {
    name: &'static str,
    signal: i32,
    moment: Moment,
}

fn cases() -> Vec<Case> {
    let case = |name, signal, moment| Case {
        name,
        signal,
        moment,
    };
    vec![
        case(
            "sigint-0.5s",
            libc::SIGINT,
            Moment::After(Duration::from_millis(500)),
        ),
        case("sigint-probe", libc::SIGINT, Moment::Probe),
        case("sigint-scenario", libc::SIGINT, Moment::ScenarioMesh),
        case(
            "sigint-2s",
            libc::SIGINT,
            Moment::After(Duration::from_secs(2)),
        ),
        case("sigint-fault", libc::SIGINT, Moment::FaultInForce),
        case("sigint-removing", libc::SIGINT, Moment::Removing),
        case("sigint-end", libc::SIGINT, Moment::End),
        case(
            "sigterm-3s",
            libc::SIGTERM,
            Moment::After(Duration::from_secs(3)),
        ),
    ]
}

fn main() -> ExitCode {
    if let Err(reason) = meshcert_local::preflight() {
        println!("interrupt: skipped, local meshes unavailable: {reason}");
        if std::env::var_os("CI").is_some() {
            println!("interrupt: FAILED: CI is set and this test cannot run");
            return ExitCode::FAILURE;
        }
        println!("interrupt: 0 passed, 0 failed, 1 skipped");
        return ExitCode::SUCCESS;
    }
    let only = std::env::var("MESHCERT_INTERRUPT_CASES").ok();
    let (mut passed, mut failed) = (0, 0);
    let started = Instant::now();
    for case in std::iter::once(case_whole()).chain(cases()) {
        if let Some(only) = &only
            && !only.split(',').any(|n| n == case.name)
        {
            continue;
        }
        match run_case(&case) {
            Ok(summary) => {
                println!("interrupt: {}: ok: {summary}", case.name);
                passed += 1;
            }
            Err(e) => {
                println!("interrupt: {}: FAILED: {e}", case.name);
                failed += 1;
            }
        }
    }
    println!(
        "interrupt: {passed} passed, {failed} failed in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// No signal at all (`signal` 0).
fn case_whole() -> Case {
    Case {
        name: "whole",
        signal: 0,
        moment: Moment::After(Duration::MAX),
    }
}

/// What the test saw of the run while it went on.
#[derive(Default)]
struct Seen {
    /// Run ids whose lock file held meshcert's pid.
    ids: BTreeSet<String>,
    /// Namespaces of scenario meshes seen so far.
    scenario_namespaces: BTreeSet<String>,
}

impl Seen {
    fn poll(&mut self, pid: u32) {
        self.ids
            .extend(support::lock_files_of(pid).into_iter().map(|(id, _)| id));
    }

    /// The run's namespaces that exist now (read from /run/netns: cheap enough to poll).
    fn ours(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir("/run/netns") else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| support::run_id_of(n).is_some_and(|id| self.ids.contains(id)))
            .collect()
    }

    /// Whether the moment has come, watching the run's namespaces and output.
    fn due(&mut self, moment: Moment, started: Instant, out: &Path) -> bool {
        let mesh = |ns: &str| -> u32 {
            ns.split('-')
                .nth(2)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        match moment {
            Moment::After(at) => started.elapsed() >= at,
            Moment::Probe => self.ours().iter().any(|ns| mesh(ns) == 1),
            Moment::ScenarioMesh => self.ours().iter().any(|ns| mesh(ns) >= 2),
            Moment::FaultInForce => self.ours().iter().any(|ns| {
                support::iptables_rules(Some(ns))
                    .iter()
                    .any(|r| r.contains("-j DROP"))
            }),
            Moment::Removing => {
                let now: BTreeSet<String> =
                    self.ours().into_iter().filter(|ns| mesh(ns) >= 2).collect();
                let gone = self.scenario_namespaces.iter().any(|ns| !now.contains(ns));
                self.scenario_namespaces.extend(now);
                gone
            }
            Moment::End => std::fs::read_to_string(out.join("meshcert.stdout"))
                .is_ok_and(|text| text.contains("[Summary]")),
        }
    }
}

/// Runs meshcert, signals its group at the case's moment, and checks what is left.
fn run_case(case: &Case) -> Result<String, String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = root.join("target/meshcert/interrupt").join(case.name);
    let stale = format!("stale output of an earlier run ({})", case.name);
    fill_with_stale_outputs(&out, &stale)?;
    let marker = format!("{}-{}", case.name, std::process::id());
    let host_rules_before = support::harness_rules_on_host();

    let mut child = start_meshcert(&root, &out, &marker)?;
    let pid = child.id();
    let started = Instant::now();
    let mut seen = Seen::default();
    let (status, at_signal) =
        signal_at_moment(case, &mut child, &mut seen, &out, &marker, started)?;
    let took = started.elapsed();
    seen.poll(pid);
    if case.signal != 0 && at_signal.is_none() {
        return Err(format!(
            "meshcert ended ({status}) after {:.1}s, before the moment came; {}",
            took.as_secs_f64(),
            tail(&out)
        ));
    }

    let mut problems = check_left_of_run(&seen, pid, &marker, &host_rules_before);
    let stderr = std::fs::read_to_string(out.join("meshcert.stderr")).unwrap_or_default();
    let signal = signal_name(case.signal);
    // A signal that comes after the results were final finds the run over: it says so, and
    // the run ends with its own verdict.
    // At the very end the signal may even come after meshcert stopped listening: the run
    // has finished then, and must have finished whole.
    let late = stderr.contains("the run's results are already final")
        || (matches!(case.moment, Moment::End) && status.code() == Some(0));
    let interrupted = case.signal != 0 && !late;
    let expected = if interrupted { 128 + case.signal } else { 0 };
    if status.code() != Some(expected) {
        problems.push(format!("exit status {status}, expected code {expected}"));
    }
    problems.extend(check_outputs(&out, &stale, interrupted));
    let said = removal_line(&stderr, signal);
    problems.extend(check_removal_said(said.as_deref(), signal, interrupted));
    problems.extend(check_work_directories(&out, interrupted));
    if !problems.is_empty() {
        // Whatever the run left must not spoil the next case.
        let _ = Command::new(env!("CARGO_BIN_EXE_meshcert"))
            .arg("sweep")
            .output();
        return Err(format!("{}; {}", problems.join("; "), tail(&out)));
    }
    let what = describe_ending(signal, at_signal, took, expected, late);
    let removed = said
        .map(|l| format!("; meshcert: {}", l.trim_start_matches("meshcert: ")))
        .unwrap_or_default();
    Ok(format!(
        "run {}: {what}; nothing left{removed}",
        seen.ids.iter().cloned().collect::<Vec<_>>().join("+")
    ))
}

/// Empties `out` and puts an earlier run's outputs there, each saying `stale`.
fn fill_with_stale_outputs(out: &Path, stale: &str) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(out);
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    for name in OUTPUTS {
        std::fs::write(out.join(name), stale).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Starts `meshcert run` on `TAGS` in a process group of its own, its output logged in `out`
/// and `marker` in the environment of every process it starts.
fn start_meshcert(root: &Path, out: &Path, marker: &str) -> Result<Child, String> {
    let log = |name: &str| {
        std::fs::File::create(out.join(name)).map_err(|e| format!("cannot create {name}: {e}"))
    };
    Command::new(env!("CARGO_BIN_EXE_meshcert"))
        .args([
            "run",
            "--target",
            "reference",
            "--reference-bin",
            env!("CARGO_BIN_EXE_meshcert-ztunnel"),
            "--tags",
            TAGS,
        ])
        .arg("--out")
        .arg(out)
        .env(MARKER, marker)
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(log("meshcert.stdout")?)
        .stderr(log("meshcert.stderr")?)
        // Its own group, which receives the signal whole, as a terminal's foreground job does.
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start meshcert: {e}"))
}

/// What was up when the signal went out.
struct AtSignal {
    /// Since the start.
    at: Duration,
    namespaces: usize,
    processes: usize,
    /// Fault rules (INPUT chain) in the run's namespaces.
    faults: usize,
}

/// Waits for the case's moment, watching which runs are meshcert's, and signals the group
/// then. Returns how meshcert ended and, when the moment came, what was up at the signal.
fn signal_at_moment(
    case: &Case,
    child: &mut Child,
    seen: &mut Seen,
    out: &Path,
    marker: &str,
    started: Instant,
) -> Result<(ExitStatus, Option<AtSignal>), String> {
    let pid = child.id();
    loop {
        seen.poll(pid);
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok((status, None));
        }
        if case.signal != 0 && seen.due(case.moment, started, out) {
            let namespaces = seen.ours();
            let faults: usize = namespaces
                .iter()
                .map(|ns| {
                    support::iptables_rules(Some(ns))
                        .iter()
                        .filter(|r| r.contains("INPUT"))
                        .count()
                })
                .sum();
            let processes = support::processes_with_env(MARKER, marker).len();
            // SAFETY: kill(2) on the process group we made meshcert the leader of.
            unsafe { libc::kill(-(pid as i32), case.signal) };
            let at_signal = AtSignal {
                at: started.elapsed(),
                namespaces: namespaces.len(),
                processes,
                faults,
            };
            return Ok((wait_bounded(child, pid, seen)?, Some(at_signal)));
        }
        if started.elapsed() > EXIT_BOUND {
            kill_group(pid);
            let _ = child.wait();
            return Err(format!(
                "meshcert neither ended nor reached the moment within {}s; {}",
                EXIT_BOUND.as_secs(),
                tail(out)
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Namespaces, iptables rules (in them, or new on the host), processes and lock files the
/// run left behind; and whether the run was seen at all.
fn check_left_of_run(
    seen: &Seen,
    pid: u32,
    marker: &str,
    host_rules_before: &[String],
) -> Vec<String> {
    let mut problems = Vec::new();
    let left_namespaces = seen.ours();
    let left_rules: Vec<String> = left_namespaces
        .iter()
        .flat_map(|ns| support::iptables_rules(Some(ns)))
        .chain(
            support::harness_rules_on_host()
                .into_iter()
                .filter(|r| !host_rules_before.contains(r)),
        )
        .collect();
    let left_processes = support::processes_with_env(MARKER, marker);
    let left_locks = support::lock_files_of(pid);
    if !left_namespaces.is_empty() {
        problems.push(format!("namespaces left: {left_namespaces:?}"));
    }
    if !left_rules.is_empty() {
        problems.push(format!("iptables rules left: {left_rules:?}"));
    }
    if !left_processes.is_empty() {
        problems.push(format!(
            "processes left: {}",
            left_processes
                .iter()
                .map(|p| format!("{p} ({})", command_line(*p)))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !left_locks.is_empty() {
        problems.push(format!("lock files left: {left_locks:?}"));
    }
    if seen.ids.is_empty() {
        problems.push("never saw a lock file of the run (holding its pid)".into());
    }
    problems
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        _ => "no signal",
    }
}

/// meshcert's `meshcert: <signal>: removed ...` line on stderr, if it wrote one.
fn removal_line(stderr: &str, signal: &str) -> Option<String> {
    stderr
        .lines()
        .find(|l| l.starts_with(&format!("meshcert: {signal}: removed")))
        .map(str::to_string)
}

/// An interrupted run must say what it removed, and no run may say something is left.
fn check_removal_said(said: Option<&str>, signal: &str, interrupted: bool) -> Option<String> {
    match said {
        None if interrupted => Some(format!(
            "meshcert did not say what it removed (no `meshcert: {signal}: removed ...` line)"
        )),
        Some(line) if !line.ends_with("nothing of this run is left") => {
            Some(format!("meshcert says something is left: {line}"))
        }
        _ => None,
    }
}

/// A passed run removes its work files; an interrupted one keeps them (its evidence), if it
/// got as far as making any.
fn check_work_directories(out: &Path, interrupted: bool) -> Option<String> {
    let runs: Vec<String> = std::fs::read_dir(out.join("runs"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    match (interrupted, runs.len()) {
        (false, 0) | (true, 0 | 1) => None,
        (_, n) => Some(format!(
            "{n} work directories under runs/ ({runs:?}), expected {}",
            if interrupted { "at most 1" } else { "none" }
        )),
    }
}

/// How the run went: whole, or signalled with what up and how long it took to exit.
fn describe_ending(
    signal: &str,
    at_signal: Option<AtSignal>,
    took: Duration,
    expected: i32,
    late: bool,
) -> String {
    match at_signal {
        None => format!("ran whole in {:.1}s, exited 0", took.as_secs_f64()),
        Some(AtSignal {
            at,
            namespaces,
            processes,
            faults,
        }) => format!(
            "{signal} at {:.2}s with {namespaces} namespaces, {processes} processes and {faults} \
             fault rules up; exited {expected} after {:.2}s more{}",
            at.as_secs_f64(),
            (took - at).as_secs_f64(),
            if late {
                " (the results were already final)"
            } else {
                ""
            }
        ),
    }
}

/// Waits for meshcert to end, at most `EXIT_BOUND`; kills its group when it does not.
fn wait_bounded(child: &mut Child, pid: u32, seen: &mut Seen) -> Result<ExitStatus, String> {
    let deadline = Instant::now() + EXIT_BOUND;
    loop {
        seen.poll(pid);
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            kill_group(pid);
            let _ = child.wait();
            return Err(format!(
                "meshcert did not end within {}s of the signal",
                EXIT_BOUND.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn kill_group(pid: u32) {
    // SAFETY: kill(2) on the group meshcert leads.
    unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
}

/// No output of the earlier run may remain, nor a temporary file. An interrupted run writes
/// no junit.xml or cucumber.json, and its results, when it got as far as its scenarios, say
/// it was interrupted; a whole run writes every output complete.
fn check_outputs(out: &Path, stale: &str, interrupted: bool) -> Vec<String> {
    let mut problems = Vec::new();
    for name in OUTPUTS {
        let text = match std::fs::read_to_string(out.join(name)) {
            Ok(text) => text,
            Err(_) if interrupted => continue,
            Err(e) => {
                problems.push(format!("no {name}: {e}"));
                continue;
            }
        };
        if text.contains(stale) {
            problems.push(format!("{name} is still the earlier run's"));
            continue;
        }
        match name {
            "results.json" => match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(results) => {
                    let marked = results["interrupted"] == serde_json::Value::Bool(true);
                    if marked != interrupted {
                        problems.push(format!(
                            "results.json says interrupted: {marked}, expected {interrupted}"
                        ));
                    }
                    let scenarios = results["scenarios"].as_array().map_or(0, Vec::len);
                    if !interrupted && scenarios != SCENARIOS {
                        problems.push(format!(
                            "results.json has {scenarios} scenarios, not {SCENARIOS}"
                        ));
                    }
                }
                Err(e) => problems.push(format!("results.json does not parse: {e}")),
            },
            "junit.xml" | "cucumber.json" if interrupted => {
                problems.push(format!("an interrupted run wrote {name}"))
            }
            "junit.xml" if !text.trim_end().ends_with("</testsuites>") => {
                problems.push("junit.xml is incomplete".into())
            }
            "cucumber.json" if serde_json::from_str::<serde_json::Value>(&text).is_err() => {
                problems.push("cucumber.json is incomplete".into())
            }
            _ => {}
        }
    }
    if let Ok(entries) = std::fs::read_dir(out) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.contains(".tmp-") {
                problems.push(format!("temporary file {name} left"));
            }
        }
    }
    problems
}

fn command_line(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            String::from_utf8_lossy(&c)
                .replace('\0', " ")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

/// The end of meshcert's stderr, for a failure message.
fn tail(out: &Path) -> String {
    let stderr = std::fs::read_to_string(out.join("meshcert.stderr")).unwrap_or_default();
    let lines: Vec<&str> = stderr.lines().collect();
    format!(
        "meshcert's stderr ends: {}",
        lines[lines.len().saturating_sub(4)..].join(" / ")
    )
}

//! `meshcert`: runs the conformance suite against a mesh under test, compares two targets,
//! and sweeps what killed runs left behind.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use include_dir::{Dir, include_dir};
use meshcert_mesh::Profile;
use meshcert_reports::conformance::ConformanceReport;
use meshcert_reports::diff::Diff;
use meshcert_reports::{RunOutcome, RunResults};
use meshcert_runner::target::{TargetKind, local_machine_check};
use meshcert_runner::{SuiteConfig, TargetSpec, run_suite};

/// The feature set and fixtures this meshcert was built with, for runs where `./features`
/// and `./fixtures` do not exist (an installed binary run from anywhere).
static FEATURES: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/features");
static FIXTURES: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/fixtures");

/// The subcommand that runs the bundled reference ztunnel inside this executable.
const REFERENCE_SUBCOMMAND: &str = "reference-ztunnel";

/// Exit codes of a run that gives a verdict, agreed across meshcert's commands.
const RUN_EXIT_CODES: &str = "\
Exit codes:
  0    every applicable scenario ran and passed
  1    some scenario failed: the mesh is not conformant
  2    bad input (arguments, feature files, fixtures, a binary that cannot be tested); no verdict
  3    partial: nothing failed, but some applicable scenario was skipped (0 with --allow-skipped)
  4    this machine cannot run the target (e.g. no iptables, not root); no verdict
  130  interrupted by SIGINT (Ctrl-C), after cleanup
  143  interrupted by SIGTERM, after cleanup";

const DIFF_EXIT_CODES: &str = "\
Exit codes:
  0    every behaviour ID has the same verdict on both sides
  1    some behaviour ID differs
  2    bad input (arguments, feature files, fixtures, a binary that cannot be tested)
  3    partial: no verdict differs, but a side skipped some applicable scenario (0 with
       --allow-skipped)
  4    this machine cannot run a local target (e.g. no iptables, not root)
  130  interrupted by SIGINT (Ctrl-C), after cleanup
  143  interrupted by SIGTERM, after cleanup";

/// `meshcert run`'s code when this machine cannot run the target.
const EXIT_UNAVAILABLE: u8 = 4;

#[derive(Parser)]
#[command(
    name = "meshcert",
    version,
    about = "Conformance and chaos tests for ambient-mesh load balancing, failover and outlier detection"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the Gherkin suite and write results.json, junit.xml and cucumber.json.
    #[command(after_help = RUN_EXIT_CODES)]
    Run(RunArgs),
    /// Run the suite against two targets and show, per behaviour ID, where the verdicts
    /// differ, with both runs' observations side by side.
    #[command(after_help = DIFF_EXIT_CODES)]
    Diff(DiffArgs),
    /// Measure the ztunnel's data plane against the direct path (wrk, iperf3, nginx in one
    /// network namespace; direct and proxied runs interleaved) and print the table.
    Bench(BenchArgs),
    /// Make the HTML report (and the conformance YAML) from a results.json.
    Report(ReportArgs),
    /// Remove what runs that were killed left behind: local network namespaces and processes,
    /// and with --kube the cluster namespaces of expired runs.
    Sweep(SweepArgs),
    /// The bundled reference ztunnel, configured by upstream ztunnel's environment; what the
    /// launcher starts for the `reference` target unless --reference-bin names a binary.
    #[command(name = REFERENCE_SUBCOMMAND, hide = true)]
    ReferenceZtunnel,
}

#[derive(Args)]
struct BenchArgs {
    /// A ztunnel binary to measure instead of the bundled reference (same launcher).
    #[arg(long, env = "MESHCERT_ZTUNNEL_BIN")]
    ztunnel_bin: Option<PathBuf>,
    /// Extra environment of the ztunnel under test, NAME=VALUE (repeatable), after the
    /// launcher's own (README: "Test any ztunnel binary").
    #[arg(long = "ztunnel-env", value_name = "NAME=VALUE")]
    ztunnel_env: Vec<String>,
    /// A reference ztunnel binary (default: the one built into this executable).
    #[arg(long, env = "MESHCERT_REFERENCE_BIN")]
    reference_bin: Option<PathBuf>,
    /// Length of each direct or proxied run, in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Direct/proxied pairs per test.
    #[arg(long, default_value_t = 5)]
    pairs: u32,
    /// wrk connections.
    #[arg(long, default_value_t = 16)]
    connections: u32,
    /// Where configs and logs go.
    #[arg(long, default_value = "target/meshcert/bench")]
    out: PathBuf,
}

#[derive(Args)]
struct ReportArgs {
    /// A results.json written by `meshcert run`.
    results: PathBuf,
    /// Where the HTML report goes.
    #[arg(short, long, default_value = "report.html")]
    output: PathBuf,
    /// Also write the conformance report (YAML) here.
    #[arg(long)]
    conformance: Option<PathBuf>,
}

#[derive(Args)]
struct SweepArgs {
    /// Also delete the cluster namespaces (labelled meshcert.dev/run) of runs whose expiry
    /// passed.
    #[arg(long)]
    kube: bool,
    /// With --kube: every meshcert namespace, expired or not (no run may be going on).
    #[arg(long, requires = "kube")]
    all_runs: bool,
    #[command(flatten)]
    cluster: ClusterArgs,
}

#[derive(Args)]
struct ClusterArgs {
    /// Kubeconfig of the cluster (default: KUBECONFIG, else ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (default: the current one).
    #[arg(long)]
    context: Option<String>,
}

#[derive(Args)]
struct RunArgs {
    /// The mesh under test: `reference` (the bundled reference ztunnel) or `ztunnel` (any
    /// ztunnel binary, given by --ztunnel-bin), both in local network namespaces, or `kube`
    /// (a real cluster with Istio ambient). Default: `ztunnel` when --ztunnel-bin or
    /// MESHCERT_ZTUNNEL_BIN names a binary, else `reference`.
    #[arg(long, env = "MESHCERT_TARGET", value_parser = ["reference", "ztunnel", "kube"])]
    target: Option<String>,
    #[command(flatten)]
    cluster: ClusterArgs,
    /// kube: inject iptables faults into the run's pods (an ephemeral NET_ADMIN container);
    /// without it fault scenarios are skipped.
    #[arg(long)]
    allow_faults: bool,
    /// kube: let topologies label nodes (needs the meshcert-node-labeller role).
    #[arg(long)]
    allow_node_labels: bool,
    /// kube: image of the fault container (needs iptables and sleep).
    #[arg(long)]
    fault_image: Option<String>,
    /// The ztunnel binary of `--target ztunnel` (upstream: a stock release build; with
    /// `--ztunnel-config file`, one built with `--features testing`); default:
    /// MESHCERT_ZTUNNEL_BIN. Naming one implies `--target ztunnel`.
    #[arg(long)]
    ztunnel_bin: Option<PathBuf>,
    /// Extra environment of the ztunnel under test, NAME=VALUE (e.g. LOG_FORMAT=json),
    /// after the launcher's own (NETWORK, CLUSTER_ID, PACKET_MARK, ...; see the README).
    #[arg(long = "ztunnel-env", value_name = "NAME=VALUE")]
    ztunnel_env: Vec<String>,
    /// The binary rereads LOCAL_XDS_PATH on change (default for the reference); without it
    /// an external binary is restarted after every config change.
    #[arg(long)]
    ztunnel_reloads_config: bool,
    /// Where the local mesh's ztunnels get certificates and config: `control-plane` (as in
    /// a cluster: CA_ADDRESS and XDS_ADDRESS of the mesh's control plane, every enrolled pod
    /// running a ztunnel, HBONE between them, no restarts) or `file` (LOCAL_XDS_PATH and
    /// FAKE_CA, only client pods run a ztunnel, plain TCP, restarted on change unless it
    /// reloads; upstream needs `--features testing` for it).
    #[arg(
        long,
        value_name = "SOURCE",
        env = "MESHCERT_ZTUNNEL_CONFIG",
        default_value_t
    )]
    ztunnel_config: meshcert_local::ConfigSource,
    /// How long a starting ztunnel gets to answer /healthz/ready, e.g. 10s.
    #[arg(long, value_name = "DURATION")]
    ready_timeout: Option<String>,
    #[command(flatten)]
    common: CommonArgs,
    /// Profile the target declares: `solo` or `istio` (default: solo for the reference,
    /// istio for any other binary). Scenarios of the other profile are not applicable.
    #[arg(long, env = "MESHCERT_PROFILE")]
    profile: Option<Profile>,
    /// Capabilities the target declares, comma-separated (default: all a local mesh offers;
    /// an external ztunnel lacks cross-network). Scenarios needing others are skipped.
    #[arg(long, value_delimiter = ',')]
    capabilities: Option<Vec<String>>,
    /// Test-only defect switches of the reference (comma-separated), to prove scenarios catch them.
    #[arg(long, env = "MESHCERT_REFERENCE_DEFECT", value_delimiter = ',')]
    reference_defect: Vec<String>,
    /// Where results.json, junit.xml and cucumber.json are written.
    #[arg(long, default_value = "target/meshcert")]
    out: PathBuf,
}

#[derive(Args)]
struct DiffArgs {
    /// First target: `reference`, `reference,defect=NAME`, `ztunnel:PATH[,profile=solo]
    /// [,env=NAME=VALUE][,capabilities=A+B][,reloads=true][,config=control-plane]
    /// [,ready-timeout=20s]`.
    #[arg(long)]
    a: String,
    /// Second target, same form as --a.
    #[arg(long)]
    b: String,
    #[command(flatten)]
    common: CommonArgs,
    /// Where each side's results go (`<out>/a`, `<out>/b`) and `diff.json`.
    #[arg(long, default_value = "target/meshcert/diff")]
    out: PathBuf,
    /// Width of the side-by-side output.
    #[arg(long, default_value_t = 120)]
    width: usize,
}

#[derive(Args)]
struct CommonArgs {
    /// A reference ztunnel binary (default: the one built into this executable, run as
    /// `meshcert reference-ztunnel`).
    #[arg(long, env = "MESHCERT_REFERENCE_BIN")]
    reference_bin: Option<PathBuf>,
    /// Run only scenarios matching this cucumber tag expression, e.g. `@L4-FO-2 or @LOG-1`.
    #[arg(long, short = 't')]
    tags: Option<String>,
    /// Directory of .feature files (default: ./features if it exists, else the set built
    /// into meshcert).
    #[arg(long, value_name = "DIR")]
    features: Option<PathBuf>,
    /// Directory of Kubernetes manifests the features deploy (default: ./fixtures if it
    /// exists, else the set built into meshcert).
    #[arg(long, value_name = "DIR")]
    fixtures: Option<PathBuf>,
    /// Scenarios run at once (default 12 for a local mesh fed by its control plane, 16 otherwise).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Exit 0 instead of 3 when nothing failed but some applicable scenario was skipped
    /// (the reports still say partial).
    #[arg(long)]
    allow_skipped: bool,
    /// A thresholds file replacing the feature set's declared one for the target's profile
    /// (`features/thresholds/<profile>.yaml`): detection window, failure budget, ...
    #[arg(long, value_name = "FILE", env = "MESHCERT_THRESHOLDS")]
    thresholds: Option<PathBuf>,
}

/// The reference as the user chose it: a binary, or this executable's own subcommand.
fn reference_target(bin: Option<&PathBuf>) -> Result<TargetSpec, String> {
    match bin {
        Some(bin) => Ok(TargetSpec::reference(bin)),
        None => {
            let me = std::env::current_exe().map_err(|e| {
                format!(
                    "cannot find this executable to run the built-in reference ({e}); \
                     pass --reference-bin PATH"
                )
            })?;
            Ok(TargetSpec::reference_command(me, &[REFERENCE_SUBCOMMAND]))
        }
    }
}

/// Where the feature set and the fixtures come from, and the one line that says so.
struct SuiteFiles {
    features: PathBuf,
    fixtures: PathBuf,
    said: String,
}

/// `--features`/`--fixtures` when given, else `./features` and `./fixtures` when they
/// exist, else the copies built into meshcert, extracted under `out/embedded/`.
fn suite_files(
    features: Option<&Path>,
    fixtures: Option<&Path>,
    out: &Path,
) -> Result<SuiteFiles, String> {
    // Where each set comes from: `Err(dir)` when extracted from the binary into `dir`.
    let pick = |given: Option<&Path>, name: &str, built_in: &Dir<'_>| {
        if let Some(dir) = given {
            return Ok((
                dir.to_path_buf(),
                Ok(format!("{name} from {}", dir.display())),
            ));
        }
        let here = Path::new(".").join(name);
        if here.is_dir() {
            return Ok((here, Ok(format!("{name} from ./{name}"))));
        }
        let dir = out.join("embedded").join(name);
        // A fresh copy: files of an older meshcert's set must not linger.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .and_then(|()| built_in.extract(&dir))
            .map_err(|e| {
                format!(
                    "cannot extract the built-in {name} to {}: {e}",
                    dir.display()
                )
            })?;
        Ok::<_, String>((dir.clone(), Err(dir)))
    };
    let (features, features_from) = pick(features, "features", &FEATURES)?;
    let (fixtures, fixtures_from) = pick(fixtures, "fixtures", &FIXTURES)?;
    let built_in = |what: &str, dir: &Path| {
        format!(
            "{what} built into meshcert {} (not in this directory), extracted to {}",
            env!("CARGO_PKG_VERSION"),
            dir.display()
        )
    };
    let said = match (features_from, fixtures_from) {
        (Err(_), Err(_)) => built_in("features and fixtures", &out.join("embedded")),
        (Ok(a), Ok(b)) => format!("{a}; {b}"),
        (Ok(a), Err(dir)) => format!("{a}; {}", built_in("fixtures", &dir)),
        (Err(dir), Ok(b)) => format!("{}; {b}", built_in("features", &dir)),
    };
    Ok(SuiteFiles {
        features,
        fixtures,
        said,
    })
}

impl CommonArgs {
    fn reference(&self) -> Result<TargetSpec, String> {
        reference_target(self.reference_bin.as_ref())
    }

    fn files(&self, out: &Path) -> Result<SuiteFiles, String> {
        suite_files(self.features.as_deref(), self.fixtures.as_deref(), out)
    }

    fn suite(&self, target: TargetSpec, files: &SuiteFiles, out_dir: PathBuf) -> SuiteConfig {
        SuiteConfig {
            target,
            features: files.features.clone(),
            fixtures: files.fixtures.clone(),
            out_dir,
            tags: self.tags.clone(),
            concurrency: self.concurrency,
            skip_all: None,
            thresholds: self.thresholds.clone(),
        }
    }
}

/// A ztunnel binary named by `--ztunnel-bin`, else by `MESHCERT_ZTUNNEL_BIN`, with where
/// it came from (for messages).
fn ztunnel_bin(flag: Option<&PathBuf>) -> Option<(PathBuf, &'static str)> {
    flag.map(|bin| (bin.clone(), "--ztunnel-bin")).or_else(|| {
        std::env::var_os("MESHCERT_ZTUNNEL_BIN")
            .filter(|v| !v.is_empty())
            .map(|bin| (PathBuf::from(bin), "MESHCERT_ZTUNNEL_BIN"))
    })
}

impl RunArgs {
    /// The target the flags describe, and a line to print when it was inferred; one-line
    /// errors name the flag.
    fn target(&self) -> Result<(TargetSpec, Option<String>), String> {
        let bin = ztunnel_bin(self.ztunnel_bin.as_ref());
        let mut note = None;
        let kind = match (self.target.as_deref(), &bin) {
            (Some(kind @ ("reference" | "kube")), Some((bin, from))) => {
                return Err(format!(
                    "{from} names {} but --target {kind} does not run it: use --target \
                     ztunnel (or leave --target out), or drop {from}",
                    bin.display()
                ));
            }
            (Some(kind), _) => kind,
            (None, Some((bin, from))) => {
                note = Some(format!(
                    "{from} names {}, so the target is `--target ztunnel`",
                    bin.display()
                ));
                "ztunnel"
            }
            (None, None) => "reference",
        };
        let mut spec = match kind {
            "ztunnel" => TargetSpec::ztunnel(
                bin.map(|(bin, _)| bin)
                    .ok_or("--target ztunnel needs --ztunnel-bin PATH (or MESHCERT_ZTUNNEL_BIN)")?,
            ),
            "kube" => {
                let mut spec = TargetSpec::kube();
                spec.cluster.kubeconfig = self.cluster.kubeconfig.clone();
                spec.cluster.context = self.cluster.context.clone();
                spec.cluster.allow_faults = self.allow_faults;
                spec.cluster.allow_node_labels = self.allow_node_labels;
                spec.cluster.fault_image = self.fault_image.clone();
                spec
            }
            "reference" => self.common.reference()?,
            other => return Err(format!("--target {other:?} is not a target")),
        };
        let flag = |name: &'static str| move |e: String| format!("{name}: {e}");
        if let Some(profile) = self.profile {
            spec.profile = profile;
            spec.profile_declared = true;
        }
        if let Some(capabilities) = &self.capabilities {
            spec.set("capabilities", &capabilities.join("+"))
                .map_err(flag("--capabilities"))?;
        }
        for env in &self.ztunnel_env {
            spec.set("env", env).map_err(flag("--ztunnel-env"))?;
        }
        if self.ztunnel_reloads_config {
            spec.reloads_config = true;
        }
        spec.config_source = self.ztunnel_config;
        if let Some(timeout) = &self.ready_timeout {
            spec.set("ready-timeout", timeout)
                .map_err(flag("--ready-timeout"))?;
        }
        if !self.reference_defect.is_empty() {
            meshcert_ztunnel::defects::Defects::parse(&self.reference_defect.join(","))
                .map_err(flag("--reference-defect (or MESHCERT_REFERENCE_DEFECT)"))?;
        }
        spec.defects = self.reference_defect.clone();
        Ok((spec, note))
    }
}

/// Exit 4 with one line when a local target cannot run on this machine.
fn machine_check(command: &str, specs: &[&TargetSpec]) -> Result<(), ExitCode> {
    if specs.iter().all(|s| s.kind == TargetKind::Kube) {
        return Ok(());
    }
    local_machine_check().map_err(|reason| {
        eprintln!("meshcert {command}: {reason}");
        ExitCode::from(EXIT_UNAVAILABLE)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::ReferenceZtunnel = cli.command {
        // The reference makes its own runtimes; nothing of meshcert's runs in this process.
        return match meshcert_ztunnel::run_from_env() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("meshcert {REFERENCE_SUBCOMMAND}: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match cli.command {
        Command::ReferenceZtunnel => unreachable!("handled above"),
        Command::Bench(args) => match runtime.block_on(bench(&args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(BenchError::Unavailable(e)) => {
                eprintln!("meshcert bench: {e}");
                ExitCode::from(EXIT_UNAVAILABLE)
            }
            Err(BenchError::Other(e)) => {
                eprintln!("meshcert bench: {e}");
                ExitCode::from(2)
            }
        },
        Command::Report(args) => match report(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("meshcert report: {e}");
                ExitCode::from(2)
            }
        },
        Command::Sweep(args) => match runtime.block_on(sweep(&args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("meshcert sweep: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Run(args) => run(&runtime, &args),
        Command::Diff(args) => match runtime.block_on(diff(&args)) {
            _ if meshcert_runner::interrupt::received().is_some() => interrupted_exit(),
            Ok((diff, _)) if !diff.differing.is_empty() => ExitCode::FAILURE,
            Ok((_, skipped)) if skipped > 0 && !args.common.allow_skipped => {
                println!(
                    "meshcert diff: partial: {skipped} applicable scenario(s) were skipped on a \
                     side and not compared; exit code 3 (--allow-skipped accepts skips)"
                );
                ExitCode::from(3)
            }
            Ok(_) => ExitCode::SUCCESS,
            Err(DiffError::Unavailable(code)) => code,
            Err(DiffError::Other(e)) => {
                eprintln!("meshcert diff: {e}");
                ExitCode::from(2)
            }
        },
    }
}

/// `meshcert run`: the suite against one target, its outcome as the exit code.
fn run(runtime: &tokio::runtime::Runtime, args: &RunArgs) -> ExitCode {
    let bad_input = |e: String| {
        eprintln!("meshcert run: {e}");
        ExitCode::from(2)
    };
    // Signals are taken over before anything is created (the machine check too), and
    // nothing of the previous run may look current, even if this one is stopped.
    if let Err(e) = runtime
        .block_on(async { meshcert_runner::interrupt::listen() })
        .and_then(|_| meshcert_runner::remove_previous_outputs(&args.out))
    {
        return bad_input(e);
    }
    let (target, note) = match args.target() {
        Ok(target) => target,
        Err(e) => return bad_input(e),
    };
    if let Err(code) = machine_check("run", &[&target]) {
        // A signal during the check is why it failed: nothing was made.
        if meshcert_runner::interrupt::received().is_some() {
            return interrupted_exit();
        }
        return code;
    }
    if let Some(note) = note {
        println!("meshcert: {note}");
    }
    let files = match args.common.files(&args.out) {
        Ok(files) => files,
        Err(e) => return bad_input(e),
    };
    println!("meshcert: {}", files.said);
    let config = args.common.suite(target, &files, args.out.clone());
    let result = runtime.block_on(run_suite(config));
    if let Some(signal) = meshcert_runner::interrupt::received() {
        if let Err(e) = &result {
            // The run stopped before its own cleanup: what it made goes here.
            eprintln!("meshcert run: interrupted: {e}");
            runtime.block_on(meshcert_runner::interrupt::close_everything(signal));
        }
        return interrupted_exit();
    }
    match result {
        Ok(outcome) => outcome_exit(outcome.outcome(), args.common.allow_skipped),
        Err(e) => bad_input(e),
    }
}

enum DiffError {
    /// This machine cannot run a side; the line is printed.
    Unavailable(ExitCode),
    Other(String),
}

impl From<String> for DiffError {
    fn from(e: String) -> Self {
        DiffError::Other(e)
    }
}

/// The agreed exit code of a run's outcome; a partial run says why it is not 0.
fn outcome_exit(outcome: RunOutcome, allow_skipped: bool) -> ExitCode {
    let code = outcome.exit_code(allow_skipped);
    if outcome == RunOutcome::Partial {
        if allow_skipped {
            println!("meshcert run: partial run accepted (--allow-skipped): exit code 0");
        } else {
            println!(
                "meshcert run: partial run (see the skip reasons above): exit code 3; \
                 --allow-skipped accepts skips"
            );
        }
    }
    ExitCode::from(code)
}

/// 130 or 143: the run was stopped by SIGINT or SIGTERM and has removed what it made.
fn interrupted_exit() -> ExitCode {
    ExitCode::from(meshcert_runner::interrupt::received().map_or(130, |s| s.exit_code()))
}

/// Runs both sides one after the other (they would share the machine's two cores otherwise)
/// and prints where they differ; also how many applicable scenarios a side skipped (those
/// were not compared).
async fn diff(args: &DiffArgs) -> Result<(Diff, usize), DiffError> {
    meshcert_runner::interrupt::listen()?;
    let reference = args.common.reference()?;
    let a = TargetSpec::parse(&args.a, &reference).map_err(|e| format!("--a: {e}"))?;
    let b = TargetSpec::parse(&args.b, &reference).map_err(|e| format!("--b: {e}"))?;
    for (side, spec) in [("--a", &a), ("--b", &b)] {
        spec.check().map_err(|e| format!("{side}: {e}"))?;
    }
    machine_check("diff", &[&a, &b]).map_err(DiffError::Unavailable)?;
    let files = args.common.files(&args.out)?;
    println!("meshcert diff: {}", files.said);
    let mut results = Vec::new();
    for (side, spec) in [("a", &a), ("b", &b)] {
        println!("meshcert diff: running the suite against {side} = {spec}");
        let outcome = run_suite(args.common.suite(spec.clone(), &files, args.out.join(side)))
            .await
            .map_err(|e| format!("{side}: {e}"))?;
        if outcome.results.interrupted {
            return Err(format!("{side}: interrupted").into());
        }
        if outcome.parse_errors > 0 || outcome.outcome() == RunOutcome::Invalid {
            return Err(format!("{side}: {}", outcome.results.outcome_text()).into());
        }
        results.push(outcome.results);
    }
    let diff = Diff::between(&a.to_string(), &results[0], &b.to_string(), &results[1]);
    let path = args.out.join("diff.json");
    let json = serde_json::to_string_pretty(&diff).expect("a diff always serialises");
    std::fs::write(&path, json)
        .map_err(|e| DiffError::Other(format!("cannot write {}: {e}", path.display())))?;
    println!("\n{}", diff.render(args.width));
    println!("meshcert diff: details in {}", path.display());
    let skipped = results.iter().map(|r| r.counts().skipped).sum();
    Ok((diff, skipped))
}

async fn sweep(args: &SweepArgs) -> Result<(), String> {
    let report = meshcert_local::sweep().map_err(|e| e.to_string())?;
    println!("{report}");
    if !args.kube {
        return Ok(());
    }
    use meshcert_kube as kube;
    let path = kube::kubeconfig_path(args.cluster.kubeconfig.as_deref())
        .ok_or("no kubeconfig: KUBECONFIG is not set and ~/.kube/config does not exist")?;
    let (client, _) = kube::client(&path, args.cluster.context.as_deref())
        .await
        .map_err(|e| e.to_string())?;
    let swept = kube::sweep(&client, args.all_runs)
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "cluster: deleted {} namespace(s) of dead runs{}; kept {} of runs that may be alive",
        swept.deleted.len(),
        if swept.deleted.is_empty() {
            String::new()
        } else {
            format!(" ({})", swept.deleted.join(", "))
        },
        swept.kept.len()
    );
    Ok(())
}

fn report(args: &ReportArgs) -> Result<(), String> {
    let results = RunResults::read_json(&args.results).map_err(|e| e.to_string())?;
    let write = |path: &PathBuf, text: String| {
        std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    write(&args.output, meshcert_reports::html::render(&results))?;
    println!("meshcert report: {}", args.output.display());
    if let Some(path) = &args.conformance {
        write(path, ConformanceReport::of(&results).to_yaml())?;
        println!("meshcert report: {}", path.display());
    }
    Ok(())
}

/// Installs what the benchmark runs when it is missing (Debian's packages, as root).
fn bench_tools() -> Result<(), String> {
    let missing: Vec<&str> = [
        ("wrk", "wrk"),
        ("iperf3", "iperf3"),
        ("nginx", "nginx-light"),
    ]
    .into_iter()
    .filter(|(tool, _)| {
        !std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
    .map(|(_, package)| package)
    .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("meshcert bench: installing {} (apt-get)", missing.join(" "));
    let ok = std::process::Command::new("sh")
        .args([
            "-c",
            &format!(
                "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {} >/dev/null",
                missing.join(" ")
            ),
        ])
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{} missing and could not be installed: run as root on Debian, or install them",
            missing.join(", ")
        ))
    }
}

enum BenchError {
    /// This machine cannot run it (exit 4).
    Unavailable(String),
    Other(String),
}

impl From<String> for BenchError {
    fn from(e: String) -> Self {
        BenchError::Other(e)
    }
}

async fn bench(args: &BenchArgs) -> Result<(), BenchError> {
    use meshcert_bench::{BenchOptions, run_bench};
    if args.pairs == 0 || args.seconds == 0 || args.connections == 0 {
        return Err("--pairs, --seconds and --connections must be at least 1"
            .to_string()
            .into());
    }
    let mut spec = match &args.ztunnel_bin {
        Some(bin) => TargetSpec::ztunnel(bin),
        None => reference_target(args.reference_bin.as_ref())?,
    };
    for env in &args.ztunnel_env {
        spec.set("env", env)
            .map_err(|e| format!("--ztunnel-env: {e}"))?;
    }
    spec.check()?;
    local_machine_check().map_err(BenchError::Unavailable)?;
    bench_tools().map_err(BenchError::Unavailable)?;
    let options = BenchOptions {
        ztunnel: spec.command(),
        duration: std::time::Duration::from_secs(args.seconds),
        pairs: args.pairs,
        connections: args.connections,
        work_dir: args.out.clone(),
    };
    let total = args.pairs as u64 * args.seconds * 6 + 30;
    eprintln!(
        "meshcert bench: {spec}, {} pairs of {} s per test, about {} min",
        args.pairs,
        args.seconds,
        total.div_ceil(60)
    );
    tokio::spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!(
                "meshcert bench: interrupted; removing its namespaces, processes and control plane"
            );
            let _ = meshcert_local::cleanup_all();
            std::process::exit(130);
        }
    });
    let started = std::time::Instant::now();
    let report = run_bench(&options, &|line| eprintln!("meshcert bench: {line}"))
        .await
        .map_err(|e| BenchError::Other(e.to_string()))?;
    println!("{}", report.table());
    println!(
        "measured in one run of {:.0} s against {spec}; reproduce with `meshcert bench --pairs {} --seconds {}`",
        started.elapsed().as_secs_f64(),
        args.pairs,
        args.seconds
    );
    Ok(())
}

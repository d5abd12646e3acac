//! `meshcert`: runs the conformance suite against a mesh under test, compares two targets,
//! and sweeps what killed runs left behind.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use meshcert_mesh::Profile;
use meshcert_reports::conformance::ConformanceReport;
use meshcert_reports::diff::Diff;
use meshcert_reports::{RunOutcome, RunResults};
use meshcert_steps::{SuiteConfig, TargetSpec, run_suite};

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
}

#[derive(Args)]
struct BenchArgs {
    /// A ztunnel binary to measure instead of the bundled reference (same launcher).
    #[arg(long, env = "MESHCERT_ZTUNNEL_BIN")]
    ztunnel_bin: Option<PathBuf>,
    /// The reference ztunnel binary (default: `meshcert-ztunnel` beside this executable).
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
    /// (a real cluster with Istio ambient).
    #[arg(long, env = "MESHCERT_TARGET", default_value = "reference", value_parser = ["reference", "ztunnel", "kube"])]
    target: String,
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
    /// The ztunnel binary of `--target ztunnel` (upstream: built with `--features testing`).
    #[arg(long, env = "MESHCERT_ZTUNNEL_BIN")]
    ztunnel_bin: Option<PathBuf>,
    /// Extra environment of the ztunnel under test, NAME=VALUE (e.g. LOG_FORMAT=json).
    #[arg(long = "ztunnel-env", value_name = "NAME=VALUE")]
    ztunnel_env: Vec<String>,
    /// The binary rereads LOCAL_XDS_PATH on change (default for the reference); without it
    /// an external binary is restarted after every config change.
    #[arg(long)]
    ztunnel_reloads_config: bool,
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
    /// [,env=NAME=VALUE][,capabilities=A+B][,reloads=true][,ready-timeout=20s]`.
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
    /// The reference ztunnel binary (default: `meshcert-ztunnel` beside this executable).
    #[arg(long, env = "MESHCERT_REFERENCE_BIN")]
    reference_bin: Option<PathBuf>,
    /// Run only scenarios matching this cucumber tag expression, e.g. `@L4-FO-2 or @LOG-1`.
    #[arg(long, short = 't')]
    tags: Option<String>,
    /// Directory of .feature files.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/features"))]
    features: PathBuf,
    /// Directory of Kubernetes manifests the features deploy.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures"))]
    fixtures: PathBuf,
    /// Scenarios run at once.
    #[arg(long)]
    concurrency: Option<usize>,
    /// Exit 0 instead of 3 when nothing failed but some applicable scenario was skipped
    /// (the reports still say partial).
    #[arg(long)]
    allow_skipped: bool,
}

impl CommonArgs {
    fn reference_bin(&self) -> PathBuf {
        self.reference_bin
            .clone()
            .unwrap_or_else(|| Self::beside_me("meshcert-ztunnel"))
    }

    /// A binary in the same directory as this executable.
    fn beside_me(name: &str) -> PathBuf {
        std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.join(name)))
            .unwrap_or_else(|| PathBuf::from(name))
    }

    fn suite(&self, target: TargetSpec, out_dir: PathBuf) -> SuiteConfig {
        SuiteConfig {
            target,
            features: self.features.clone(),
            fixtures: self.fixtures.clone(),
            out_dir,
            tags: self.tags.clone(),
            concurrency: self.concurrency,
            skip_all: None,
        }
    }
}

impl RunArgs {
    /// The target the flags describe; one-line errors name the flag.
    fn target(&self) -> Result<TargetSpec, String> {
        let mut spec =
            match self.target.as_str() {
                "ztunnel" => TargetSpec::ztunnel(self.ztunnel_bin.clone().ok_or(
                    "--target ztunnel needs --ztunnel-bin PATH (or MESHCERT_ZTUNNEL_BIN)",
                )?),
                "kube" => {
                    let mut spec = TargetSpec::kube();
                    spec.cluster.kubeconfig = self.cluster.kubeconfig.clone();
                    spec.cluster.context = self.cluster.context.clone();
                    spec.cluster.allow_faults = self.allow_faults;
                    spec.cluster.allow_node_labels = self.allow_node_labels;
                    spec.cluster.fault_image = self.fault_image.clone();
                    spec
                }
                "reference" => TargetSpec::reference(self.common.reference_bin()),
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
        if let Some(timeout) = &self.ready_timeout {
            spec.set("ready-timeout", timeout)
                .map_err(flag("--ready-timeout"))?;
        }
        if !self.reference_defect.is_empty() {
            meshcert_ztunnel::defects::Defects::parse(&self.reference_defect.join(","))
                .map_err(flag("--reference-defect (or MESHCERT_REFERENCE_DEFECT)"))?;
        }
        spec.defects = self.reference_defect.clone();
        Ok(spec)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match cli.command {
        Command::Bench(args) => match runtime.block_on(bench(&args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
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
        Command::Run(args) => {
            // Signals are taken over before anything is created, and nothing of the previous
            // run may look current, even if this one is stopped.
            if let Err(e) = runtime
                .block_on(async { meshcert_steps::interrupt::listen() })
                .and_then(|_| meshcert_steps::remove_previous_outputs(&args.out))
            {
                eprintln!("meshcert run: {e}");
                return ExitCode::from(2);
            }
            let target = match args.target() {
                Ok(target) => target,
                Err(e) => {
                    eprintln!("meshcert run: {e}");
                    return ExitCode::from(2);
                }
            };
            let config = args.common.suite(target, args.out.clone());
            let result = runtime.block_on(run_suite(config));
            if let Some(signal) = meshcert_steps::interrupt::received() {
                if let Err(e) = &result {
                    // The run stopped before its own cleanup: what it made goes here.
                    eprintln!("meshcert run: interrupted: {e}");
                    runtime.block_on(meshcert_steps::interrupt::close_everything(signal));
                }
                return interrupted_exit();
            }
            match result {
                Ok(outcome) => outcome_exit(outcome.outcome(), args.common.allow_skipped),
                Err(e) => {
                    eprintln!("meshcert run: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Diff(args) => match runtime.block_on(diff(&args)) {
            _ if meshcert_steps::interrupt::received().is_some() => interrupted_exit(),
            Ok((diff, _)) if !diff.differing.is_empty() => ExitCode::FAILURE,
            Ok((_, skipped)) if skipped > 0 && !args.common.allow_skipped => {
                println!(
                    "meshcert diff: partial: {skipped} applicable scenario(s) were skipped on a \
                     side and not compared; exit code 3 (--allow-skipped accepts skips)"
                );
                ExitCode::from(3)
            }
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("meshcert diff: {e}");
                ExitCode::from(2)
            }
        },
    }
}

/// 130 or 143: the run was stopped by SIGINT or SIGTERM and has removed what it made.
fn interrupted_exit() -> ExitCode {
    ExitCode::from(meshcert_steps::interrupt::received().map_or(130, |s| s.exit_code()))
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

/// Runs both sides one after the other (they would share the machine's two cores otherwise)
/// and prints where they differ; also how many applicable scenarios a side skipped (those
/// were not compared).
async fn diff(args: &DiffArgs) -> Result<(Diff, usize), String> {
    meshcert_steps::interrupt::listen()?;
    let reference = args.common.reference_bin();
    let a = TargetSpec::parse(&args.a, &reference).map_err(|e| format!("--a: {e}"))?;
    let b = TargetSpec::parse(&args.b, &reference).map_err(|e| format!("--b: {e}"))?;
    for (side, spec) in [("--a", &a), ("--b", &b)] {
        spec.check().map_err(|e| format!("{side}: {e}"))?;
    }
    let mut results = Vec::new();
    for (side, spec) in [("a", &a), ("b", &b)] {
        println!("meshcert diff: running the suite against {side} = {spec}");
        let outcome = run_suite(args.common.suite(spec.clone(), args.out.join(side)))
            .await
            .map_err(|e| format!("{side}: {e}"))?;
        if outcome.results.interrupted {
            return Err(format!("{side}: interrupted"));
        }
        if outcome.parse_errors > 0 || outcome.outcome() == RunOutcome::Invalid {
            return Err(format!("{side}: {}", outcome.results.outcome_text()));
        }
        results.push(outcome.results);
    }
    let diff = Diff::between(&a.to_string(), &results[0], &b.to_string(), &results[1]);
    let path = args.out.join("diff.json");
    let json = serde_json::to_string_pretty(&diff).expect("a diff always serialises");
    std::fs::write(&path, json).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    println!("\n{}", diff.render(args.width));
    println!("meshcert diff: details in {}", path.display());
    let skipped = results.iter().map(|r| r.counts().skipped).sum();
    Ok((diff, skipped))
}

async fn sweep(args: &SweepArgs) -> Result<(), String> {
    let report = meshcert_mesh::local::sweep().map_err(|e| e.to_string())?;
    println!("{report}");
    if !args.kube {
        return Ok(());
    }
    use meshcert_mesh::kube;
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

async fn bench(args: &BenchArgs) -> Result<(), String> {
    use meshcert_mesh::local::bench::{BenchOptions, run_bench};
    if args.pairs == 0 || args.seconds == 0 || args.connections == 0 {
        return Err("--pairs, --seconds and --connections must be at least 1".into());
    }
    meshcert_mesh::local::preflight()?;
    bench_tools()?;
    let spec = match &args.ztunnel_bin {
        Some(bin) => TargetSpec::ztunnel(bin),
        None => TargetSpec::reference(
            args.reference_bin
                .clone()
                .unwrap_or_else(|| CommonArgs::beside_me("meshcert-ztunnel")),
        ),
    };
    spec.check()?;
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
            eprintln!("meshcert bench: interrupted; removing its namespace and processes");
            let _ = meshcert_mesh::local::cleanup_all();
            std::process::exit(130);
        }
    });
    let started = std::time::Instant::now();
    let report = run_bench(&options, &|line| eprintln!("meshcert bench: {line}"))
        .await
        .map_err(|e| e.to_string())?;
    println!("{}", report.table());
    println!(
        "measured in one run of {:.0} s against {spec}; reproduce with `meshcert bench --pairs {} --seconds {}`",
        started.elapsed().as_secs_f64(),
        args.pairs,
        args.seconds
    );
    Ok(())
}

//! `meshcert`: runs the conformance suite against a mesh under test, and sweeps what killed runs
//! left behind.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use meshcert_mesh::Profile;
use meshcert_steps::{SuiteConfig, TargetChoice, run_suite};

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
    Run(RunArgs),
    /// Remove network namespaces and processes left by runs that were killed.
    Sweep,
}

#[derive(Args)]
struct RunArgs {
    /// The mesh under test. `reference`: the bundled reference ztunnel in local network namespaces.
    #[arg(long, default_value = "reference", value_parser = ["reference"])]
    target: String,
    /// The reference ztunnel binary (default: `meshcert-ztunnel` beside this executable).
    #[arg(long, env = "MESHCERT_REFERENCE_BIN")]
    reference_bin: Option<PathBuf>,
    /// Profile the target declares: `solo` or `istio`. Scenarios of the other profile are not applicable.
    #[arg(long, env = "MESHCERT_PROFILE", default_value = "solo")]
    profile: Profile,
    /// Test-only defect switches of the reference (comma-separated), to prove scenarios catch them.
    #[arg(long, env = "MESHCERT_REFERENCE_DEFECT", value_delimiter = ',')]
    reference_defect: Vec<String>,
    /// Run only scenarios matching this cucumber tag expression, e.g. `@L4-FO-2 or @LOG-1`.
    #[arg(long, short = 't')]
    tags: Option<String>,
    /// Directory of .feature files.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/features"))]
    features: PathBuf,
    /// Directory of Kubernetes manifests the features deploy.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures"))]
    fixtures: PathBuf,
    /// Where results.json, junit.xml and cucumber.json are written.
    #[arg(long, default_value = "target/meshcert")]
    out: PathBuf,
    /// Scenarios run at once.
    #[arg(long)]
    concurrency: Option<usize>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match cli.command {
        Command::Sweep => match meshcert_mesh::local::sweep() {
            Ok(report) => {
                println!("{report}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("meshcert sweep: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Run(args) => {
            let bin = args.reference_bin.unwrap_or_else(|| {
                std::env::current_exe()
                    .ok()
                    .and_then(|exe| exe.parent().map(|dir| dir.join("meshcert-ztunnel")))
                    .unwrap_or_else(|| PathBuf::from("meshcert-ztunnel"))
            });
            let config = SuiteConfig {
                target: TargetChoice::Reference {
                    bin,
                    defects: args.reference_defect,
                },
                profile: args.profile,
                features: args.features,
                fixtures: args.fixtures,
                out_dir: args.out,
                tags: args.tags,
                concurrency: args.concurrency,
            };
            match runtime.block_on(run_suite(config)) {
                Ok(outcome) if outcome.failed() => ExitCode::FAILURE,
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("meshcert run: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

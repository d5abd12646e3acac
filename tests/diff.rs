//! `meshcert diff` end to end: the reference against the reference with a defect switch lists
//! exactly the behaviours that defect breaks (as `tests/defects.rs` states them), and shows the
//! two runs' observations side by side.

use std::path::PathBuf;
use std::process::{Command, ExitCode};

const DEFECT: &str = "log-wrong-workload";
/// What `log-wrong-workload` breaks, and nothing else (tests/defects.rs, `may_fail` empty).
const BROKEN: [&str; 2] = ["LOG-1", "LOG-2"];

fn main() -> ExitCode {
    if let Err(reason) = meshcert_local::preflight() {
        println!("diff: skipped, local meshes unavailable: {reason}");
        println!("diff: 0 passed, 0 failed, 1 skipped");
        return ExitCode::SUCCESS;
    }
    match check() {
        Ok(summary) => {
            println!("diff: {summary}");
            println!("diff: 1 passed, 0 failed");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("diff: FAILED: {e}");
            println!("diff: 0 passed, 1 failed");
            ExitCode::FAILURE
        }
    }
}

fn check() -> Result<String, String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = root.join("target/meshcert/diff-test");
    let output = Command::new(env!("CARGO_BIN_EXE_meshcert"))
        .args(["diff", "--a", "reference", "--b"])
        .arg(format!("reference,defect={DEFECT}"))
        .args(["--reference-bin", env!("CARGO_BIN_EXE_meshcert-ztunnel")])
        .arg("--out")
        .arg(&out)
        .output()
        .map_err(|e| format!("cannot run meshcert: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if output.status.code() != Some(1) {
        return Err(format!(
            "exit status {} (1 means: the targets differ); stderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let text =
        std::fs::read_to_string(out.join("diff.json")).map_err(|e| format!("no diff.json: {e}"))?;
    let diff: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("diff.json: {e}"))?;
    let ids: Vec<&str> = diff["differing"]
        .as_array()
        .ok_or("diff.json has no `differing` list")?
        .iter()
        .filter_map(|d| d["id"].as_str())
        .collect();
    if ids != BROKEN {
        return Err(format!(
            "differing behaviours {ids:?}, expected exactly {BROKEN:?}\n{stdout}"
        ));
    }
    // The side-by-side block: a passed, b failed naming the wrong workload.
    for id in BROKEN {
        let block = stdout
            .split("\n\n")
            .find(|b| b.starts_with(&format!("{id} ")))
            .ok_or_else(|| format!("no side-by-side block for {id}:\n{stdout}"))?;
        let first = block.lines().nth(1).unwrap_or_default();
        if !(first.starts_with("passed ") && first.contains("| FAILED at ")) {
            return Err(format!("{id}: a passed | b failed expected:\n{block}"));
        }
        if !block.contains("dst.workload") || !block.contains("requests to http://in-ambient") {
            return Err(format!(
                "{id}: the block lacks requests or log lines:\n{block}"
            ));
        }
    }
    let agreeing = diff["agreeing"].as_array().map_or(0, Vec::len);
    Ok(format!(
        "{ids:?} differ under defect {DEFECT}, {agreeing} behaviours agree"
    ))
}

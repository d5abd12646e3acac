//! What the harness's process-level tests share.

use std::process::Command;

/// The network namespaces of meshcert runs (`mc-*`) that exist now.
pub fn harness_namespaces() -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("mc-"))
        .map(str::to_string)
        .collect()
}

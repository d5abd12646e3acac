//! What the harness's process-level tests share.
// Each test binary uses a subset of these helpers.
#![allow(dead_code)]

use std::process::{Command, Output};

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

/// A run that refused to start: exit code 2 and exactly one line on stderr containing every
/// word of `expect`. Returns the line.
pub fn one_line_error(output: &Output, expect: &[&str]) -> Result<String, String> {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let error = stderr.trim();
    if output.status.code() != Some(2) {
        return Err(format!(
            "exit status {} (expected 2); stderr: {error}",
            output.status
        ));
    }
    if error.lines().count() != 1 {
        return Err(format!("the error is not one line:\n{error}"));
    }
    for word in expect {
        if !error.contains(word) {
            return Err(format!("the error does not say {word:?}: {error}"));
        }
    }
    Ok(error.to_string())
}

/// Standard base64 (WebDriver's screenshots), padding optional.
pub fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
    {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            other => return Err(format!("{:?} is not base64", other as char)),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

/// Where meshcert runs keep their lock files (each holds its run's pid).
pub const LOCK_DIR: &str = "/run/meshcert/runs";

/// Lock files in `LOCK_DIR` written by the process `pid`: `(run id, path)`.
pub fn lock_files_of(pid: u32) -> Vec<(String, std::path::PathBuf)> {
    let Ok(entries) = std::fs::read_dir(LOCK_DIR) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let id = e.file_name().to_str()?.strip_suffix(".lock")?.to_string();
            let text = std::fs::read_to_string(e.path()).ok()?;
            (text.trim() == pid.to_string()).then(|| (id, e.path()))
        })
        .collect()
}

/// The run id of a harness namespace name (`mc-<id>-...`).
pub fn run_id_of(netns: &str) -> Option<&str> {
    netns.strip_prefix("mc-")?.split('-').next()
}

/// Processes whose environment holds `NAME=VALUE` exactly: the descendants of a process
/// started with that variable (its `ip`, `iptables` and ztunnel children inherit it).
pub fn processes_with_env(name: &str, value: &str) -> Vec<u32> {
    let wanted = format!("{name}={value}");
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(|env| env.split(|b| *b == 0).any(|var| var == wanted.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}

/// iptables rules (`-A ...` lines of every table) in a namespace, or the machine's own
/// (`None`).
pub fn iptables_rules(netns: Option<&str>) -> Vec<String> {
    let mut rules = Vec::new();
    for table in ["filter", "nat", "mangle", "raw"] {
        let mut command = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "iptables"]);
                c
            }
            None => Command::new("iptables"),
        };
        let out = command
            .args(["-w", "5", "-t", table, "-S"])
            .output()
            .map(|o| o.stdout)
            .unwrap_or_default();
        rules.extend(
            String::from_utf8_lossy(&out)
                .lines()
                .filter(|l| l.starts_with("-A "))
                .map(|l| format!("{table}: {l}")),
        );
    }
    rules
}

/// Rules of the machine's own namespace that look like meshcert's (its pod and service
/// addresses, the ztunnel mark or port): there should never be any.
pub fn harness_rules_on_host() -> Vec<String> {
    iptables_rules(None)
        .into_iter()
        .filter(|r| {
            ["10.244.", "10.96.", "0x539", "15001"]
                .iter()
                .any(|m| r.contains(m))
        })
        .collect()
}

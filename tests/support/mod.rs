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

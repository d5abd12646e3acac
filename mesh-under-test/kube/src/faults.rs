//! Faults on real pods, as the guide injects them by hand: `iptables -A INPUT -p tcp --dport
//! 8080 -j DROP` inside the target pod's network namespace, from an ephemeral debug container
//! with NET_ADMIN (or the app container itself, when its image has iptables). Every rule is
//! read back after it is added and after it is removed, so "undone" is proven, not assumed.

use meshcert_mesh::{FaultKind, MeshError};
use serde_json::{Value, json};

/// Image of the debug container; must have `iptables` and `sleep`.
pub const DEFAULT_FAULT_IMAGE: &str = "docker.io/nicolaka/netshoot:v0.13";
/// How long a debug container lives: it cannot be removed, so it ends by itself after the
/// longest a scenario may take (its pod is deleted with the run's namespace anyway).
pub const DEBUG_LIFETIME_SECS: u64 = 1800;

/// The rule of a fault, in `iptables -S` form (what the read-back shows), and whether this
/// fault is an iptables one at all.
pub fn rule(kind: &FaultKind) -> Option<Vec<String>> {
    let (port, words): (u16, &[&str]) = match kind {
        FaultKind::IptablesDrop { port } => (*port, &["-j", "DROP"]),
        FaultKind::IptablesReject { port } => {
            (*port, &["-j", "REJECT", "--reject-with", "tcp-reset"])
        }
        FaultKind::HttpStatus { .. } | FaultKind::NotReady | FaultKind::ProcessKill => {
            return None;
        }
    };
    let mut rule: Vec<String> = ["INPUT", "-p", "tcp", "-m", "tcp", "--dport"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    rule.push(port.to_string());
    rule.extend(words.iter().map(|s| s.to_string()));
    Some(rule)
}

/// `iptables -w 5 -A <rule>` / `-D <rule>`.
pub fn command(action: &str, rule: &[String]) -> Vec<String> {
    let mut cmd: Vec<String> = vec!["iptables".into(), "-w".into(), "5".into(), action.into()];
    cmd.extend(rule.iter().cloned());
    cmd
}

/// `iptables -S INPUT`: what the read-back runs.
pub fn list_command() -> Vec<String> {
    ["iptables", "-w", "5", "-S", "INPUT"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Whether `iptables -S INPUT` output holds the rule (`-A INPUT ...`), reject-with included.
pub fn listed(listing: &str, rule: &[String]) -> bool {
    let wanted = format!("-A {}", rule.join(" "));
    listing.lines().any(|l| l.trim() == wanted)
}

/// Checks a read-back: after adding, the rule is there; after removing, it is gone.
pub fn check_readback(
    listing: &str,
    rule: &[String],
    present: bool,
    pod: &str,
) -> Result<(), MeshError> {
    if listed(listing, rule) == present {
        return Ok(());
    }
    Err(MeshError::InvalidRequest(format!(
        "fault on pod {pod}: after {} `-A {}`, `iptables -S INPUT` {} it:\n{}",
        if present { "adding" } else { "removing" },
        rule.join(" "),
        if present {
            "does not list"
        } else {
            "still lists"
        },
        listing.trim()
    )))
}

/// The strategic-merge patch of `pods/ephemeralcontainers` adding a NET_ADMIN debug container.
pub fn debug_container_patch(name: &str, image: &str, target_container: &str) -> Value {
    json!({
        "spec": {
            "ephemeralContainers": [{
                "name": name,
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "command": ["sleep", DEBUG_LIFETIME_SECS.to_string()],
                "targetContainerName": target_container,
                "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}},
            }]
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_and_reject_rules_read_back_as_iptables_lists_them() {
        let drop = rule(&FaultKind::IptablesDrop { port: 8080 }).unwrap();
        assert_eq!(
            command("-A", &drop).join(" "),
            "iptables -w 5 -A INPUT -p tcp -m tcp --dport 8080 -j DROP"
        );
        let listing = "-P INPUT ACCEPT\n-A INPUT -p tcp -m tcp --dport 8080 -j DROP\n";
        assert!(listed(listing, &drop));
        check_readback(listing, &drop, true, "httpbin/a").unwrap();
        let err = check_readback(listing, &drop, false, "httpbin/a").unwrap_err();
        assert!(err.to_string().contains("still lists"), "{err}");
        let reject = rule(&FaultKind::IptablesReject { port: 8080 }).unwrap();
        assert!(!listed(listing, &reject));
        assert!(listed(
            "-A INPUT -p tcp -m tcp --dport 8080 -j REJECT --reject-with tcp-reset",
            &reject
        ));
        for kind in [
            FaultKind::HttpStatus { status: 503 },
            FaultKind::NotReady,
            FaultKind::ProcessKill,
        ] {
            assert!(rule(&kind).is_none(), "{kind}");
        }
    }

    #[test]
    fn the_debug_container_has_net_admin_and_ends_by_itself() {
        let patch = debug_container_patch("meshcert-fault-1", "img:1", "in-ambient");
        let c = &patch["spec"]["ephemeralContainers"][0];
        assert_eq!(c["securityContext"]["capabilities"]["add"][0], "NET_ADMIN");
        assert_eq!(c["command"][1], DEBUG_LIFETIME_SECS.to_string());
        assert_eq!(c["targetContainerName"], "in-ambient");
    }
}

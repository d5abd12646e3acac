//! Faults inside a local pod, as the guide makes them: iptables rules in the pod's namespace
//! (removed with `iptables -F`, then checked gone), and the backend app's status switch.
//! Each fault in force is a ledger entry, so teardown, a panic or Ctrl-C undoes it.

use std::sync::Arc;

use super::app::AppSwitch;
use super::netns::netns_exec;
use super::run::Undo;
use crate::{FaultKind, MeshError};

/// The iptables arguments of a network fault, exactly the guide's rule; `None` for app faults.
pub fn iptables_rule(kind: &FaultKind) -> Option<Vec<String>> {
    let (port, target): (u16, &[&str]) = match kind {
        FaultKind::IptablesDrop { port } => (*port, &["DROP"]),
        FaultKind::IptablesReject { port } => (*port, &["REJECT", "--reject-with", "tcp-reset"]),
        FaultKind::HttpStatus { .. } => return None,
    };
    let mut rule: Vec<String> = [
        "-A",
        "INPUT",
        "-p",
        "tcp",
        "--dport",
        &port.to_string(),
        "-j",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    rule.extend(target.iter().map(|s| s.to_string()));
    Some(rule)
}

/// Runs iptables in a pod's namespace; `-w` waits for the xtables lock that concurrent
/// meshes (and legacy iptables) share machine-wide.
fn iptables(netns: &str, args: &[&str]) -> Result<String, MeshError> {
    let mut all = vec!["-w", "5"];
    all.extend_from_slice(args);
    netns_exec(netns, "iptables", &all)
}

/// A network fault in force.
#[derive(Debug)]
pub struct IptablesFault {
    netns: String,
    rule: Vec<String>,
}

impl IptablesFault {
    /// Adds the rule in `netns`.
    pub fn inject(netns: &str, rule: Vec<String>) -> Result<IptablesFault, MeshError> {
        let args: Vec<&str> = rule.iter().map(String::as_str).collect();
        iptables(netns, &args)?;
        Ok(IptablesFault {
            netns: netns.to_string(),
            rule,
        })
    }
}

impl Undo for IptablesFault {
    fn describe(&self) -> String {
        format!("`iptables {}` in {}", self.rule.join(" "), self.netns)
    }

    /// `iptables -F`, as the guide restores the pod, then reads INPUT back: a rule left would
    /// silently keep failing the endpoint.
    fn undo(&self) -> Result<(), MeshError> {
        iptables(&self.netns, &["-F"])?;
        let left = iptables(&self.netns, &["-S", "INPUT"])?;
        let rules: Vec<&str> = left.lines().filter(|l| !l.starts_with("-P ")).collect();
        if !rules.is_empty() {
            return Err(MeshError::Command {
                command: format!("ip netns exec {} iptables -F", self.netns),
                status: "left rules behind".into(),
                stderr: rules.join("; "),
            });
        }
        Ok(())
    }
}

/// An app fault in force: undone by letting the app answer normally again.
#[derive(Debug)]
pub struct AppFault {
    pod: String,
    switch: Arc<AppSwitch>,
}

impl AppFault {
    pub fn inject(pod: &str, switch: Arc<AppSwitch>, status: u16) -> AppFault {
        switch.force(Some(status));
        AppFault {
            pod: pod.to_string(),
            switch,
        }
    }
}

impl Undo for AppFault {
    fn describe(&self) -> String {
        format!(
            "forced HTTP status {:?} of {}",
            self.switch.forced(),
            self.pod
        )
    }

    fn undo(&self) -> Result<(), MeshError> {
        self.switch.force(None);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(FaultKind::IptablesDrop { port: 8080 }, Some("-A INPUT -p tcp --dport 8080 -j DROP"))]
    #[case(FaultKind::IptablesReject { port: 9090 }, Some("-A INPUT -p tcp --dport 9090 -j REJECT --reject-with tcp-reset"))]
    #[case(FaultKind::HttpStatus { status: 503 }, None)]
    fn rules_are_the_guides(#[case] kind: FaultKind, #[case] rule: Option<&str>) {
        assert_eq!(
            iptables_rule(&kind).map(|r| r.join(" ")),
            rule.map(str::to_string)
        );
        // The rule is the one the fault displays, minus the program name.
        if let Some(rule) = rule {
            assert_eq!(kind.to_string(), format!("iptables {rule}"));
        }
    }

    #[test]
    fn app_fault_forces_and_undo_releases() {
        let switch = Arc::new(AppSwitch::default());
        let fault = AppFault::inject("in-ambient-x", switch.clone(), 500);
        assert_eq!(switch.forced(), Some(500));
        fault.undo().unwrap();
        assert_eq!(switch.forced(), None);
    }
}

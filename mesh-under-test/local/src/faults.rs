//! Faults inside a local pod, as the guide makes them: iptables rules in the pod's namespace
//! (removed with `iptables -F`, then checked gone), the backend app's status switch, a failing
//! readiness path, and a killed app.
//! Each fault in force is a ledger entry, so teardown, a panic or Ctrl-C undoes it.

use std::sync::Arc;

use meshcert_mesh::{FaultKind, MeshError};

use crate::app::AppSwitch;
use crate::netns::netns_exec;
use crate::run::Undo;

/// The iptables arguments of a network fault, exactly the guide's rule; `None` for app faults.
pub fn iptables_rule(kind: &FaultKind) -> Option<Vec<String>> {
    let (port, target): (u16, &[&str]) = match kind {
        FaultKind::IptablesDrop { port } => (*port, &["DROP"]),
        FaultKind::IptablesReject { port } => (*port, &["REJECT", "--reject-with", "tcp-reset"]),
        FaultKind::HttpStatus { .. } | FaultKind::NotReady | FaultKind::ProcessKill => {
            return None;
        }
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

/// The rule that makes a tcpSocket readiness probe fail and nothing else: connections from
/// the pod's node (where the kubelet probes from) to the probed port are refused.
pub fn refuse_probes_rule(node_ip: std::net::Ipv4Addr, port: u16) -> Vec<String> {
    [
        "-A",
        "INPUT",
        "-s",
        &format!("{node_ip}/32"),
        "-p",
        "tcp",
        "--dport",
        &port.to_string(),
        "-j",
        "REJECT",
        "--reject-with",
        "tcp-reset",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
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

/// A readiness path made to fail: undone by letting the app answer it normally again.
#[derive(Debug)]
pub struct ProbePathFault {
    pod: String,
    switch: Arc<AppSwitch>,
    path: String,
}

impl ProbePathFault {
    pub fn inject(pod: &str, switch: Arc<AppSwitch>, path: &str) -> ProbePathFault {
        switch.fail_path(path, true);
        ProbePathFault {
            pod: pod.to_string(),
            switch,
            path: path.to_string(),
        }
    }
}

impl Undo for ProbePathFault {
    fn describe(&self) -> String {
        format!("failing readiness path {} of {}", self.path, self.pod)
    }

    fn undo(&self) -> Result<(), MeshError> {
        self.switch.fail_path(&self.path, false);
        Ok(())
    }
}

/// Several faults in force as one (a pod's every readiness probe made to fail).
pub struct Faults(pub Vec<Box<dyn Undo>>);

impl Undo for Faults {
    fn describe(&self) -> String {
        let parts: Vec<String> = self.0.iter().map(|f| f.describe()).collect();
        parts.join(", ")
    }

    /// Undoes every part even when one fails; the first failure is returned.
    fn undo(&self) -> Result<(), MeshError> {
        let results: Vec<Result<(), MeshError>> = self.0.iter().map(|f| f.undo()).collect();
        results.into_iter().collect()
    }
}

/// A killed app: nothing to restore at teardown (the app's own entry ends it); the driver's
/// `undo` restarts it before releasing this.
#[derive(Debug)]
pub struct KilledApp {
    pub pod: String,
}

impl Undo for KilledApp {
    fn describe(&self) -> String {
        format!("killed app of {}", self.pod)
    }

    fn undo(&self) -> Result<(), MeshError> {
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
    #[case(FaultKind::NotReady, None)]
    #[case(FaultKind::ProcessKill, None)]
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
    fn a_tcp_probe_is_refused_from_the_node_only() {
        assert_eq!(
            refuse_probes_rule("10.244.1.1".parse().unwrap(), 8080).join(" "),
            "-A INPUT -s 10.244.1.1/32 -p tcp --dport 8080 -j REJECT --reject-with tcp-reset"
        );
    }

    #[test]
    fn probe_path_fault_fails_the_path_and_undo_releases() {
        let switch = Arc::new(AppSwitch::default());
        let fault = Faults(vec![Box::new(ProbePathFault::inject(
            "in-ambient-x",
            switch.clone(),
            "/status/200",
        ))]);
        assert!(switch.fails("/status/200") && !switch.fails("/hostname"));
        assert_eq!(
            fault.describe(),
            "failing readiness path /status/200 of in-ambient-x"
        );
        fault.undo().unwrap();
        assert!(!switch.fails("/status/200"));
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

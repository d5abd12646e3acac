//! `meshcert run --target kube` with a cluster that cannot be used: no kubeconfig, a malformed
//! one, an unknown context, an API server that does not answer, one that refuses the driver
//! (missing RBAC), one without ztunnel. Each ends the run with exit code 2 and one line on
//! stderr before anything is created. The API servers here are tiny HTTP responders on
//! loopback, so no traffic leaves the machine.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

struct Case {
    name: &'static str,
    /// `None`: no kubeconfig at all.
    kubeconfig: Option<String>,
    extra: &'static [&'static str],
    /// How the fake API server answers `GET /apis/apps/v1/namespaces/istio-system/daemonsets/ztunnel`;
    /// `None`: no server.
    daemonset_status: Option<u16>,
    expect: &'static [&'static str],
}

fn kubeconfig(server: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n\
         contexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n\
         users:\n- name: u\n  user: {{token: t}}\n"
    )
}

/// Answers `/version`, then the DaemonSet request with `status`, for as many connections as
/// come; returns the server URL.
fn fake_api_server(status: u16) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut stream = stream;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                    loop {
                        let mut header = String::new();
                        if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                            break;
                        }
                    }
                    let (code, body) = if path == "/version" {
                        (200, r#"{"major":"1","minor":"34","gitVersion":"v1.34.11","gitCommit":"","gitTreeState":"","buildDate":"","goVersion":"","compiler":"","platform":""}"#.to_string())
                    } else {
                        let reason = if status == 403 {
                            "Forbidden"
                        } else {
                            "NotFound"
                        };
                        (
                            status,
                            format!(
                                r#"{{"kind":"Status","apiVersion":"v1","status":"Failure","code":{status},"reason":"{reason}","message":"daemonsets.apps \"ztunnel\" is {reason}"}}"#
                            ),
                        )
                    };
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {code} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                }
            });
        }
    });
    url
}

fn main() -> ExitCode {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let work = root.join("target/meshcert/kube-bad-input");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("create the work directory");
    let cases = [
        Case {
            name: "no-kubeconfig",
            kubeconfig: None,
            extra: &[],
            daemonset_status: None,
            expect: &["no kubeconfig", "KUBECONFIG"],
        },
        Case {
            name: "malformed-kubeconfig",
            kubeconfig: Some("apiVersion: v1\nclusters: [\n".into()),
            extra: &[],
            daemonset_status: None,
            expect: &["kubeconfig", "malformed-kubeconfig.yaml", "line 2"],
        },
        Case {
            name: "unknown-context",
            kubeconfig: Some(kubeconfig("https://127.0.0.1:1")),
            extra: &["--context", "nope"],
            daemonset_status: None,
            expect: &["context \"nope\""],
        },
        Case {
            name: "unreachable",
            kubeconfig: Some(kubeconfig("http://127.0.0.1:1")),
            extra: &[],
            daemonset_status: None,
            expect: &[
                "API server http://127.0.0.1:1/",
                "cannot reach the API server",
            ],
        },
        Case {
            name: "missing-rbac",
            kubeconfig: None,
            extra: &[],
            daemonset_status: Some(403),
            expect: &["403 Forbidden", "apply ci/rbac.yaml"],
        },
        Case {
            name: "no-ztunnel",
            kubeconfig: None,
            extra: &[],
            daemonset_status: Some(404),
            expect: &["no ztunnel DaemonSet in istio-system"],
        },
    ];
    let (mut passed, mut failed) = (0, 0);
    for case in &cases {
        match check(case, &work) {
            Ok(error) => {
                passed += 1;
                println!("kube_bad_input: {} ok: {error}", case.name);
            }
            Err(problem) => {
                failed += 1;
                println!("kube_bad_input: {} FAILED: {problem}", case.name);
            }
        }
    }
    println!("kube_bad_input: {passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn check(case: &Case, work: &Path) -> Result<String, String> {
    let text = match (&case.kubeconfig, case.daemonset_status) {
        (_, Some(status)) => Some(kubeconfig(&fake_api_server(status))),
        (text, None) => text.clone(),
    };
    let mut command = Command::new(env!("CARGO_BIN_EXE_meshcert"));
    command
        .args(["run", "--target", "kube"])
        .args(case.extra)
        .arg("--out")
        .arg(work.join(case.name))
        .env_remove("KUBECONFIG")
        .env("HOME", work);
    if let Some(text) = text {
        let path = work.join(format!("{}.yaml", case.name));
        std::fs::write(&path, text).map_err(|e| e.to_string())?;
        command.arg("--kubeconfig").arg(&path);
    }
    let output = command
        .output()
        .map_err(|e| format!("cannot run meshcert: {e}"))?;
    let error = support::one_line_error(&output, case.expect)?;
    Ok(error)
}

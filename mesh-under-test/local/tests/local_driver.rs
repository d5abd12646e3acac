//! Network-namespace tests of the local driver (STYLE rule 11, third layer): topology, the
//! backend app, the network-safety guard, the sweeper, faults, cleanup on panic, and, when
//! the reference ztunnel is built, the guide end to end. They need root and iptables, iproute2;
//! on a machine without them they are reported *ignored* with the reason printed once
//! (`harness = false`, libtest-mimic), and fail when `CI` is set.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Failed, Trial};
use meshcert_local::app::BackendApp;
use meshcert_local::client;
use meshcert_local::readiness::ProbeSpec;
use meshcert_local::run::LOCK_DIR;
use meshcert_local::{
    ConfigSource, LocalMesh, LocalOptions, NodeSpec, Run, Topology, ZtunnelCommand, preflight,
    sweep,
};
use meshcert_mesh::manifest::{Manifest, ManifestSet};
use meshcert_mesh::{
    DeploymentRef, Fault, FaultKind, MeshError, MeshUnderTest, PodInfo, Profile, RequestFailure,
    RequestPlan, RequestRecord,
};

#[path = "local_driver/control_plane.rs"]
mod control_plane;

/// One trial: its name, whether it needs the reference binary, and the test.
struct TestSpec {
    name: &'static str,
    needs_reference: bool,
    test: fn(),
}

/// Every trial, in the order they run.
const TESTS: &[TestSpec] = &[
    TestSpec {
        name: "topology_comes_up_and_teardown_leaves_no_namespace",
        needs_reference: false,
        test: || block_on(topology_comes_up_and_teardown_leaves_no_namespace()),
    },
    TestSpec {
        name: "backend_app_answers_its_name_from_a_client_namespace",
        needs_reference: false,
        test: || block_on(backend_app_answers_its_name_from_a_client_namespace()),
    },
    TestSpec {
        name: "guard_refuses_pod_addresses_outside_harness_namespaces",
        needs_reference: false,
        test: || block_on(guard_refuses_pod_addresses_outside_harness_namespaces()),
    },
    TestSpec {
        name: "sweep_removes_what_dead_runs_left_and_spares_live_runs",
        needs_reference: false,
        test: sweep_removes_what_dead_runs_left_and_spares_live_runs,
    },
    TestSpec {
        name: "faults_block_reject_and_answer_status_until_undone",
        needs_reference: false,
        test: || block_on(faults_block_reject_and_answer_status_until_undone()),
    },
    TestSpec {
        name: "a_panicking_scenario_leaves_nothing_behind",
        needs_reference: false,
        test: a_panicking_scenario_leaves_nothing_behind,
    },
    TestSpec {
        name: "a_ztunnel_that_exits_is_reported_with_its_status_and_last_words",
        needs_reference: false,
        test: || block_on(a_ztunnel_that_exits_is_reported_with_its_status_and_last_words()),
    },
    TestSpec {
        name: "the_guide_end_to_end_with_the_reference_ztunnel::restarting",
        needs_reference: true,
        test: || {
            block_on(the_guide_end_to_end_with_the_reference_ztunnel(
                Feed::Restarting,
            ))
        },
    },
    TestSpec {
        name: "the_guide_end_to_end_with_the_reference_ztunnel::reloading",
        needs_reference: true,
        test: || {
            block_on(the_guide_end_to_end_with_the_reference_ztunnel(
                Feed::Reloading,
            ))
        },
    },
    TestSpec {
        name: "the_guide_end_to_end_with_the_reference_ztunnel::control_plane",
        needs_reference: true,
        test: || {
            block_on(the_guide_end_to_end_with_the_reference_ztunnel(
                Feed::ControlPlane,
            ))
        },
    },
    TestSpec {
        name: "a_service_entry_host_round_robins_and_a_destination_rule_changes_nothing",
        needs_reference: true,
        test: || {
            block_on(a_service_entry_host_round_robins_and_a_destination_rule_changes_nothing())
        },
    },
    TestSpec {
        name: "refused_objects_name_the_field_and_create_nothing",
        needs_reference: false,
        test: || block_on(refused_objects_name_the_field_and_create_nothing()),
    },
    TestSpec {
        name: "service_entries_get_addresses_and_destination_rules_change_nothing",
        needs_reference: false,
        test: || block_on(service_entries_get_addresses_and_destination_rules_change_nothing()),
    },
    TestSpec {
        name: "a_pod_whose_readiness_fails_becomes_unhealthy_in_the_ztunnels_config::reloading",
        needs_reference: true,
        test: || {
            block_on(
                a_pod_whose_readiness_fails_becomes_unhealthy_in_the_ztunnels_config(
                    Feed::Reloading,
                ),
            )
        },
    },
    TestSpec {
        name: "a_pod_whose_readiness_fails_becomes_unhealthy_in_the_ztunnels_config::restarting",
        needs_reference: true,
        test: || {
            block_on(
                a_pod_whose_readiness_fails_becomes_unhealthy_in_the_ztunnels_config(
                    Feed::Restarting,
                ),
            )
        },
    },
    TestSpec {
        name: "the_not_ready_fault_moves_traffic_only_through_the_control_plane",
        needs_reference: true,
        test: || block_on(the_not_ready_fault_moves_traffic_only_through_the_control_plane()),
    },
    TestSpec {
        name: "a_killed_process_refuses_connections_and_is_not_ready_at_once",
        needs_reference: false,
        test: || block_on(a_killed_process_refuses_connections_and_is_not_ready_at_once()),
    },
    TestSpec {
        name: "scale_down_delists_before_stopping",
        needs_reference: true,
        test: || block_on(scale_down_delists_before_stopping()),
    },
    TestSpec {
        name: "control_plane::the_control_plane_signs_each_pod_its_own_identity_only",
        needs_reference: false,
        test: || block_on(control_plane::the_control_plane_signs_each_pod_its_own_identity_only()),
    },
    TestSpec {
        name: "control_plane::a_ztunnel_that_cannot_reach_the_ca_names_its_address_first",
        needs_reference: false,
        test: || {
            block_on(control_plane::a_ztunnel_that_cannot_reach_the_ca_names_its_address_first())
        },
    },
];

/// The trials: each test with what it needs (root and the tools for every one; the reference
/// binary for some). What this machine lacks is printed once and those trials are reported
/// ignored, never passed; with `CI` set they fail instead.
fn main() -> ExitCode {
    let mut args = Arguments::from_args();
    // Each test runs its own mesh and runtime; two cores are shared by the whole machine.
    args.test_threads = Some(1);
    let machine = preflight().err();
    let reference = reference_binary().err();
    let ci = std::env::var_os("CI").is_some();
    for (what, reason) in [("the tests", &machine), ("the reference tests", &reference)] {
        if let Some(reason) = reason {
            let verdict = if ci {
                "fail (CI is set)"
            } else {
                "are ignored"
            };
            println!("local_driver: {what} {verdict}: {reason}");
        }
    }
    let trials = TESTS
        .iter()
        .map(|spec| trial(spec, machine.as_deref(), reference.as_deref(), ci))
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}

/// The spec's trial: run, or failed or ignored when this machine lacks what it needs
/// (`machine`: root and the tools; `reference`: the reference binary).
fn trial(spec: &TestSpec, machine: Option<&str>, reference: Option<&str>, ci: bool) -> Trial {
    let missing = machine
        .or_else(|| reference.filter(|_| spec.needs_reference))
        .map(str::to_string);
    let test = spec.test;
    match missing {
        None => Trial::test(spec.name, move || {
            test();
            Ok(())
        }),
        Some(reason) if ci => Trial::test(spec.name, move || {
            Err(Failed::from(format!(
                "CI is set and this machine cannot run it: {reason}"
            )))
        }),
        Some(_) => Trial::test(spec.name, || Ok(())).with_ignored_flag(true),
    }
}

/// Runs one async test on its own two-worker runtime, as `#[tokio::test]` did.
fn block_on(test: impl std::future::Future<Output = ()>) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(test)
}

/// The workspace root: this crate sits two levels under it.
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixtures() -> PathBuf {
    workspace().join("fixtures")
}

fn backend_manifests() -> ManifestSet {
    ManifestSet::load(&fixtures().join("in-ambient.yaml")).expect("fixture in-ambient.yaml parses")
}

fn work_dir(run: &Run) -> PathBuf {
    workspace().join("target/meshcert-tests").join(run.id())
}

/// Options for meshes that never start a ztunnel (no client deployment is deployed).
fn options_without_ztunnel(run: &Run, nodes: &[&str]) -> LocalOptions {
    let command = ZtunnelCommand {
        program: "/nonexistent/ztunnel".into(),
        args: vec![],
        env: vec![],
        reloads_config: true,
    };
    let mut options = LocalOptions::new(command, "ztunnel", Profile::Istio, work_dir(run));
    options.nodes = nodes.iter().map(|n| NodeSpec::new(*n)).collect();
    // Only client pods run a ztunnel when fed by file, and these meshes have none.
    options.config_source = ConfigSource::File;
    options
}

fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

fn in_ambient() -> DeploymentRef {
    DeploymentRef::new("httpbin", "in-ambient")
}

async fn topology_comes_up_and_teardown_leaves_no_namespace() {
    let run = Run::acquire().unwrap();
    let started = Instant::now();
    let mut mesh = LocalMesh::new(
        run.clone(),
        options_without_ztunnel(&run, &["node-a", "node-b"]),
    )
    .unwrap();
    mesh.deploy(&backend_manifests()).await.unwrap();
    mesh.scale(&in_ambient(), 3).await.unwrap();
    eprintln!("2 nodes + 3 pods up in {:?}", started.elapsed());

    let pods = mesh.pods(&in_ambient()).await.unwrap();
    let names: Vec<&str> = pods.iter().map(|p| p.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "pods are listed by name");
    assert_eq!(pods.len(), 3);
    let nodes: Vec<&str> = pods.iter().map(|p| p.node.as_str()).collect();
    assert!(
        nodes.contains(&"node-a") && nodes.contains(&"node-b"),
        "round robin over nodes: {nodes:?}"
    );
    for pod in &pods {
        let (hash, suffix) = pod
            .name
            .strip_prefix("in-ambient-")
            .unwrap()
            .split_once('-')
            .unwrap();
        assert_eq!((hash.len(), suffix.len()), (10, 5), "{}", pod.name);
        assert!(pod.ip.to_string().starts_with("10.244."), "{}", pod.ip);
        let netns = mesh.pod_netns(&pod.pod_ref()).unwrap();
        let routes = Command::new("ip")
            .args(["-n", netns, "route"])
            .output()
            .unwrap();
        let routes = String::from_utf8_lossy(&routes.stdout);
        assert!(
            !routes.contains("default"),
            "{netns} has a default route: {routes}"
        );
    }

    let namespaces = mesh.namespaces();
    assert_eq!(
        namespaces.len(),
        1 + 2 + 3,
        "fabric, two nodes, three pods: {namespaces:?}"
    );
    assert!(namespaces.iter().all(|n| netns_exists(n)));

    let started = Instant::now();
    mesh.teardown().await.unwrap();
    eprintln!("teardown in {:?}", started.elapsed());
    let left: Vec<&String> = namespaces.iter().filter(|n| netns_exists(n)).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(mesh.namespaces().is_empty());
    mesh.teardown().await.unwrap();
}

async fn backend_app_answers_its_name_from_a_client_namespace() {
    let run = Run::acquire().unwrap();
    let ledger = meshcert_local::Ledger::new("app test");
    let mut topology = Topology::new(run.clone(), ledger.clone(), run.next_mesh_number()).unwrap();
    topology.add_node("node-1").unwrap();
    topology.add_node("node-2").unwrap();
    let backend = topology.add_pod("node-1", "backend-0").unwrap();
    let client_pod = topology.add_pod("node-2", "client-0").unwrap();
    let sockets = topology.sockets();
    let app = BackendApp::start(
        &sockets,
        &backend.netns,
        backend.ip,
        &[8080, 9090],
        "backend-0",
    )
    .await
    .unwrap();

    let answer = async |port: u16| {
        let response = client::get(
            &sockets,
            Some(&client_pod.netns),
            SocketAddr::from((backend.ip, port)),
            "backend",
            "/hostname",
            Duration::from_secs(2),
        )
        .await
        .unwrap()
        .unwrap();
        (response.status, response.replica())
    };
    for port in [8080, 9090] {
        assert_eq!(answer(port).await, (200, "backend-0".to_string()));
    }
    app.switch().force(Some(503));
    assert_eq!(answer(8080).await, (503, "backend-0".to_string()));
    app.stop();
    ledger.teardown().unwrap();
    assert!(!netns_exists(&backend.netns) && !netns_exists(&client_pod.netns));
}

async fn guard_refuses_pod_addresses_outside_harness_namespaces() {
    let run = Run::acquire().unwrap();
    let ledger = meshcert_local::Ledger::new("guard test");
    let mut topology = Topology::new(run.clone(), ledger.clone(), run.next_mesh_number()).unwrap();
    topology.add_node("node-1").unwrap();
    let pod = topology.add_pod("node-1", "pod-0").unwrap();
    let sockets = topology.sockets();

    // Another run's namespace exists, but it is not ours.
    let other_run = Run::acquire().unwrap();
    let other_ledger = meshcert_local::Ledger::new("foreign");
    let foreign = Topology::new(other_run.clone(), other_ledger.clone(), 1).unwrap();

    let pod_addr = SocketAddr::from((pod.ip, 8080));
    let service_addr: SocketAddr = "10.96.0.10:8000".parse().unwrap();
    let refusals = [
        (None, pod_addr),
        (None, service_addr),
        (Some(foreign.fabric()), pod_addr),
        (Some("mc-zzzzzz-1-fabric"), pod_addr),
        (Some(pod.netns.as_str()), "10.1.2.3:80".parse().unwrap()),
        (Some(pod.netns.as_str()), "192.168.1.1:80".parse().unwrap()),
    ];
    for (from, dst) in refusals {
        let result = client::get(&sockets, from, dst, "x", "/", Duration::from_millis(200)).await;
        assert!(
            matches!(result, Err(MeshError::NetworkSafety(_))),
            "from {from:?} to {dst} must be refused, got {result:?}"
        );
    }
    // Loopback of the machine's own namespace is allowed: a listener of our own answers.
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let local = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf).await.unwrap();
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nhost")
            .await
            .unwrap();
    });
    let response = client::get(
        &sockets,
        None,
        local,
        "localhost",
        "/",
        Duration::from_secs(2),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(response.text(), "host");
    server.await.unwrap();

    drop(foreign);
    other_ledger.teardown().unwrap();
    ledger.teardown().unwrap();
}

/// A namespace of a fake run, made with `ip` as a crashed harness would have left it.
fn fake_netns(name: &str) {
    let status = Command::new("ip")
        .args(["netns", "add", name])
        .status()
        .unwrap();
    assert!(status.success(), "ip netns add {name}");
}

fn sweep_removes_what_dead_runs_left_and_spares_live_runs() {
    // A live run of ours, with a namespace that must survive.
    let live = Run::acquire().unwrap();
    let ledger = meshcert_local::Ledger::new("live run");
    let topology = Topology::new(live.clone(), ledger.clone(), 1).unwrap();

    // A dead run: a lock file nobody holds, two namespaces, a process in one of them.
    // Ids of other runs: the live id with another first letter (never the live one itself).
    let other = |first: char| {
        let first = if live.id().starts_with(first) {
            char::from(first as u8 + 1)
        } else {
            first
        };
        format!("{first}{}", &live.id()[1..])
    };
    let dead_id = other('d');
    let dead_lock = Path::new(LOCK_DIR).join(format!("{dead_id}.lock"));
    std::fs::write(&dead_lock, b"").unwrap();
    let dead_ns = [
        format!("mc-{dead_id}-1-fabric"),
        format!("mc-{dead_id}-1-pod-x"),
    ];
    dead_ns.iter().for_each(|n| fake_netns(n));
    let mut sleeper = Command::new("ip")
        .args(["netns", "exec", &dead_ns[1], "sleep", "30"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // A run that crashed before (or after) its lock file existed: namespace only.
    let orphan_id = other('o');
    let orphan_ns = format!("mc-{orphan_id}-2-node-n");
    fake_netns(&orphan_ns);

    // `ip netns exec` has exec'd sleep once the namespace lists a pid.
    let pids = meshcert_mesh::wait::time_scale().apply(Duration::from_secs(5));
    let until = Instant::now() + pids;
    while Command::new("ip")
        .args(["netns", "pids", &dead_ns[1]])
        .output()
        .unwrap()
        .stdout
        .is_empty()
    {
        assert!(
            Instant::now() < until,
            "sleep never appeared in {}",
            dead_ns[1]
        );
        std::thread::yield_now();
    }

    let report = sweep().unwrap();
    eprintln!("{report}");
    assert!(
        report.runs.contains(&dead_id) && report.runs.contains(&orphan_id),
        "{report:?}"
    );
    for ns in dead_ns.iter().chain([&orphan_ns]) {
        assert!(report.namespaces.contains(ns), "{ns} not in {report:?}");
        assert!(!netns_exists(ns), "{ns} still exists");
    }
    assert!(report.lock_files.contains(&dead_lock) && !dead_lock.exists());
    assert!(
        report.killed_pids.contains(&(sleeper.id() as i32)),
        "{report:?}"
    );
    let status = sleeper.wait().unwrap();
    assert!(!status.success(), "sleep was killed: {status}");

    assert!(
        netns_exists(topology.fabric()),
        "a live run's namespace was swept"
    );
    assert!(!report.runs.contains(&live.id().to_string()));
    ledger.teardown().unwrap();
}

async fn faults_block_reject_and_answer_status_until_undone() {
    let run = Run::acquire().unwrap();
    let mut mesh = LocalMesh::new(run.clone(), options_without_ztunnel(&run, &["node-1"])).unwrap();
    mesh.deploy(&backend_manifests()).await.unwrap();
    mesh.scale(&in_ambient(), 2).await.unwrap();
    let pods = mesh.pods(&in_ambient()).await.unwrap();
    let (target, peer) = (&pods[0], &pods[1]);
    let from = mesh.pod_netns(&peer.pod_ref()).unwrap().to_string();
    let dst = SocketAddr::new(target.ip, 8080);
    let sockets = mesh.sockets().clone();
    let get = |timeout: Duration| {
        let (sockets, from) = (sockets.clone(), from.clone());
        async move {
            client::get(
                &sockets,
                Some(&from),
                dst,
                "in-ambient",
                "/hostname",
                timeout,
            )
            .await
            .unwrap()
        }
    };
    let answered =
        |r: Result<client::HttpResponse, RequestFailure>| r.map(|r| (r.status, r.replica()));
    assert_eq!(
        answered(get(Duration::from_secs(2)).await),
        Ok((200, target.name.clone()))
    );

    let cases = [
        (
            FaultKind::IptablesDrop { port: 8080 },
            Err(RequestFailure::Timeout),
        ),
        (
            FaultKind::IptablesReject { port: 8080 },
            Err(RequestFailure::ConnectionRefused),
        ),
        (
            FaultKind::HttpStatus { status: 503 },
            Ok((503, target.name.clone())),
        ),
    ];
    for (kind, during) in cases {
        let handle = mesh
            .inject(&Fault {
                pod: target.pod_ref(),
                kind: kind.clone(),
            })
            .await
            .unwrap();
        assert!(handle.injected_at <= mesh.elapsed());
        assert_eq!(
            answered(get(Duration::from_millis(500)).await),
            during,
            "{kind}"
        );
        mesh.undo(&handle).await.unwrap();
        assert_eq!(
            answered(get(Duration::from_secs(2)).await),
            Ok((200, target.name.clone())),
            "after undoing {kind}"
        );
        assert!(mesh.undo(&handle).await.is_err(), "a fault is undone once");
    }

    // A fault still in force at teardown is removed with everything else.
    mesh.inject(&Fault {
        pod: target.pod_ref(),
        kind: FaultKind::IptablesDrop { port: 8080 },
    })
    .await
    .unwrap();
    let namespaces = mesh.namespaces();
    mesh.teardown().await.unwrap();
    assert!(namespaces.iter().all(|n| !netns_exists(n)));
}

fn a_panicking_scenario_leaves_nothing_behind() {
    let run = Run::acquire().unwrap();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let (thread_run, thread_seen) = (run.clone(), seen.clone());
    let result = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let options = options_without_ztunnel(&thread_run, &["node-1"]);
            let mut mesh = LocalMesh::new(thread_run, options).unwrap();
            mesh.deploy(&backend_manifests()).await.unwrap();
            *thread_seen.lock().unwrap() = mesh.namespaces();
            panic!("scenario failed on purpose");
        })
    })
    .join();
    assert!(result.is_err(), "the scenario thread panicked");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "fabric, node, pod: {seen:?}");
    let left: Vec<&String> = seen.iter().filter(|n| netns_exists(n)).collect();
    assert!(left.is_empty(), "left behind after a panic: {left:?}");
    assert!(run.live_namespaces().is_empty());
}

fn guide_manifests() -> ManifestSet {
    ManifestSet::load_all([
        fixtures().join("in-ambient.yaml"),
        fixtures().join("client-in-ambient.yaml"),
    ])
    .expect("the guide's fixtures parse")
}

async fn a_ztunnel_that_exits_is_reported_with_its_status_and_last_words() {
    let run = Run::acquire().unwrap();
    let command = ZtunnelCommand {
        program: "/bin/sh".into(),
        args: vec![
            "-c".into(),
            "echo \"config at $LOCAL_XDS_PATH for $PROXY_WORKLOAD_INFO\"; echo 'fatal: bad config' >&2; exit 3"
                .into(),
        ],
        env: vec![],
        reloads_config: false,
    };
    let options = LocalOptions::new(command, "ztunnel", Profile::Istio, work_dir(&run));
    let mut mesh = LocalMesh::new(run.clone(), options).unwrap();
    let error = mesh.deploy(&guide_manifests()).await.unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, MeshError::Ztunnel(_)), "{text}");
    assert!(text.contains("exit status: 3"), "{text}");
    assert!(text.contains("fatal: bad config"), "{text}");
    assert!(text.contains("for httpbin/client-in-ambient-"), "{text}");
    let log = std::fs::read_dir(mesh.dir())
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .expect("the ztunnel log file exists");
    assert!(
        std::fs::read_to_string(log.path())
            .unwrap()
            .contains("fatal: bad config")
    );
    let namespaces = mesh.namespaces();
    mesh.teardown().await.unwrap();
    assert!(namespaces.iter().all(|n| !netns_exists(n)));
}

/// The reference ztunnel binary: `MESHCERT_REFERENCE_BIN`, else the workspace's debug build;
/// `Err` with the reason when it is not there.
fn reference_binary() -> Result<PathBuf, String> {
    let path = std::env::var_os("MESHCERT_REFERENCE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/debug/meshcert-ztunnel"));
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "no reference ztunnel at {} (build it with `cargo build --bin meshcert-ztunnel`, \
             or set MESHCERT_REFERENCE_BIN)",
            path.display()
        ))
    }
}

/// How the reference ztunnels of a test's mesh get their config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Feed {
    /// Its file, reread on change.
    Reloading,
    /// Its file, restarted on change (as an external binary that reads it once).
    Restarting,
    /// The mesh's control plane, as in a cluster.
    ControlPlane,
}

/// A run and the options of a mesh running the reference ztunnel (the trial is only run when
/// the binary is there).
fn reference_setup(profile: Profile, feed: Feed) -> (Arc<Run>, LocalOptions) {
    let binary = reference_binary().expect("checked before the trial ran");
    let run = Run::acquire().unwrap();
    let command = ZtunnelCommand {
        program: binary,
        args: vec![],
        env: vec![],
        reloads_config: feed != Feed::Restarting,
    };
    let mut options = LocalOptions::new(command, "reference", profile, work_dir(&run));
    options.config_source = match feed {
        Feed::Reloading | Feed::Restarting => ConfigSource::File,
        Feed::ControlPlane => ConfigSource::ControlPlane,
    };
    (run, options)
}

/// Every request answered, spread evenly over three replicas in a repeating order (L4-RR-2);
/// the replica of each request.
fn assert_round_robin_over_three(records: &[RequestRecord]) -> Vec<Option<String>> {
    assert!(records.iter().all(|r| !r.failed()), "{records:?}");
    let replicas: Vec<Option<String>> = records
        .iter()
        .map(|r| r.replica().map(str::to_string))
        .collect();
    assert_eq!(
        counts(&replicas).values().copied().collect::<Vec<_>>(),
        [records.len() / 3; 3],
        "{replicas:?}"
    );
    for (i, r) in replicas.iter().enumerate() {
        assert_eq!(r, &replicas[i % 3], "round robin repeats: {replicas:?}");
    }
    replicas
}

fn counts(replicas: &[Option<String>]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for r in replicas.iter().flatten() {
        *counts.entry(r.clone()).or_insert(0) += 1;
    }
    counts
}

async fn the_guide_end_to_end_with_the_reference_ztunnel(feed: Feed) {
    let (run, options) = reference_setup(Profile::Solo, feed);

    let started = Instant::now();
    let mut mesh = LocalMesh::new(run.clone(), options).unwrap();
    mesh.deploy(&guide_manifests()).await.unwrap();
    let deployed = started.elapsed();
    mesh.scale(&in_ambient(), 3).await.unwrap();
    let setup = started.elapsed();
    eprintln!(
        "mesh setup ({feed:?}): deploy {deployed:?}, scale to 3 done at {setup:?}, restarts at \
         {:?}",
        mesh.restarts()
    );
    assert_eq!(mesh.restarts().is_empty(), feed != Feed::Restarting);

    let pods = guide_round_robins_over_three(&mut mesh).await;
    guide_drop_spares_the_blocked_pod(&mut mesh, &pods[0]).await;
    guide_scale_down_removes_the_highest_named_pod(&mut mesh, &pods).await;
    guide_logs_and_metrics_are_collected(&mesh).await;

    let namespaces = mesh.namespaces();
    let started = Instant::now();
    mesh.teardown().await.unwrap();
    eprintln!("teardown in {:?}", started.elapsed());
    assert!(namespaces.iter().all(|n| !netns_exists(n)));
}

/// 12 requests go round robin over the three replicas, and each pod answers; returns the pods.
async fn guide_round_robins_over_three(mesh: &mut LocalMesh) -> Vec<PodInfo> {
    let started = Instant::now();
    let records = mesh
        .send_requests(&requests(12, Duration::ZERO))
        .await
        .unwrap();
    eprintln!("12 requests in {:?}", started.elapsed());
    let replicas = assert_round_robin_over_three(&records);
    let pods = mesh.pods(&in_ambient()).await.unwrap();
    assert!(
        pods.iter()
            .all(|p| replicas.contains(&Some(p.name.clone())))
    );
    pods
}

/// While a DROP blocks `dropped`, it answers nothing and the healthy replicas still answer.
async fn guide_drop_spares_the_blocked_pod(mesh: &mut LocalMesh, dropped: &PodInfo) {
    let handle = mesh
        .inject(&Fault {
            pod: dropped.pod_ref(),
            kind: FaultKind::IptablesDrop { port: 8080 },
        })
        .await
        .unwrap();
    let started = Instant::now();
    let records = mesh
        .send_requests(&requests(12, Duration::ZERO))
        .await
        .unwrap();
    eprintln!(
        "12 requests with {} dropped in {:?}",
        dropped.name,
        started.elapsed()
    );
    let during: Vec<Option<String>> = records
        .iter()
        .map(|r| r.replica().map(str::to_string))
        .collect();
    eprintln!("during the fault: {during:?}");
    assert!(
        !during.contains(&Some(dropped.name.clone())),
        "{} answered while blocked: {during:?}",
        dropped.name
    );
    assert!(
        during.iter().any(Option::is_some),
        "the healthy replicas still answer"
    );
    mesh.undo(&handle).await.unwrap();
}

/// Scaling down removes the highest-named pod from the rotation.
async fn guide_scale_down_removes_the_highest_named_pod(mesh: &mut LocalMesh, pods: &[PodInfo]) {
    mesh.scale(&in_ambient(), 2).await.unwrap();
    let left = mesh.pods(&in_ambient()).await.unwrap();
    assert_eq!(
        left.iter().map(|p| &p.name).collect::<Vec<_>>(),
        [&pods[0].name, &pods[1].name]
    );
    let records = mesh
        .send_requests(&requests(4, Duration::ZERO))
        .await
        .unwrap();
    let after: Vec<Option<String>> = records
        .iter()
        .map(|r| r.replica().map(str::to_string))
        .collect();
    assert!(!after.contains(&Some(pods[2].name.clone())), "{after:?}");
}

/// Every answered request has an access line, the lines are in order, and there are metrics.
async fn guide_logs_and_metrics_are_collected(mesh: &LocalMesh) {
    let logs = mesh.ztunnel_logs().await.unwrap();
    let access = logs
        .iter()
        .filter(|l| l.is("access", "connection complete"))
        .count();
    eprintln!("{} ztunnel log lines, {access} access lines", logs.len());
    assert!(
        access >= 24,
        "every answered request has an access line: {access}"
    );
    assert!(
        logs.windows(2)
            .all(|w| w[0].observed_at <= w[1].observed_at)
    );
    let metrics = mesh.metrics().await.unwrap();
    eprintln!("{} metric samples", metrics.len());
    assert!(!metrics.is_empty());
}

fn istio_fixture(name: &str) -> ManifestSet {
    ManifestSet::load(&fixtures().join(name)).expect("the Istio fixture parses")
}

/// Requests to the ServiceEntry host, then the same after a DestinationRule is applied: both
/// round robin over the three pods (TD-PREC-3 with no annotation, L4-OD-2).
async fn a_service_entry_host_round_robins_and_a_destination_rule_changes_nothing() {
    let (run, options) = reference_setup(Profile::Istio, Feed::Reloading);
    let mut mesh = LocalMesh::new(run.clone(), options).unwrap();
    let mut manifests = guide_manifests();
    manifests.extend(istio_fixture("service-entry.yaml"));
    mesh.deploy(&manifests).await.unwrap();
    mesh.scale(&in_ambient(), 3).await.unwrap();

    let plan = |count| RequestPlan {
        client: DeploymentRef::new("httpbin", "client-in-ambient"),
        url: "http://in-ambient.mesh.example/hostname".into(),
        count,
        interval: Duration::ZERO,
        timeout: Duration::from_secs(2),
    };
    assert_round_robin_over_three(&mesh.send_requests(&plan(12)).await.unwrap());

    let config = |mesh: &LocalMesh| {
        let file = std::fs::read_dir(mesh.dir())
            .unwrap()
            .flatten()
            .find(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.starts_with("ztunnel-client-in-ambient-") && name.ends_with(".yaml")
            })
            .expect("the client's ztunnel config exists");
        std::fs::read_to_string(file.path()).unwrap()
    };
    let before = config(&mesh);
    assert!(
        before.contains("hostname: in-ambient.mesh.example"),
        "{before}"
    );
    mesh.deploy(&istio_fixture("destination-rule.yaml"))
        .await
        .unwrap();
    assert_eq!(
        config(&mesh),
        before,
        "a DestinationRule changed ztunnel's config"
    );
    assert!(mesh.restarts().is_empty());
    assert_round_robin_over_three(&mesh.send_requests(&plan(6)).await.unwrap());

    let namespaces = mesh.namespaces();
    mesh.teardown().await.unwrap();
    assert!(namespaces.iter().all(|n| !netns_exists(n)));
}

/// What the API server (or this driver) refuses is refused before anything is created, with
/// the object and field named (TD-PREC-2).
async fn refused_objects_name_the_field_and_create_nothing() {
    let run = Run::acquire().unwrap();
    let mut mesh = LocalMesh::new(run.clone(), options_without_ztunnel(&run, &["node-1"])).unwrap();
    let empty = mesh.namespaces();

    let mut bad = backend_manifests();
    for object in &mut bad.objects {
        if let meshcert_mesh::manifest::Manifest::Service(service) = object {
            service.spec.as_mut().unwrap().traffic_distribution = Some("PreferNetwork".into());
        }
    }
    let err = mesh.deploy(&bad).await.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(&err, MeshError::Refused { field, .. } if field == "spec.trafficDistribution"),
        "{text}"
    );
    for fragment in [
        "Service httpbin/in-ambient",
        "field `spec.trafficDistribution` is \"PreferNetwork\"",
        "PreferClose, PreferSameZone and PreferSameNode",
        "networking.istio.io/traffic-distribution",
    ] {
        assert!(text.contains(fragment), "{text} lacks {fragment}");
    }
    assert_eq!(mesh.namespaces(), empty, "a refused deploy created pods");

    let outside = ManifestSet::parse(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: se\n  \
         namespace: httpbin\nspec:\n  hosts: [se.mesh.example]\n  addresses: [192.168.7.7]\n",
        Path::new("se.yaml"),
    )
    .unwrap();
    let text = mesh.deploy(&outside).await.unwrap_err().to_string();
    assert!(
        text.contains("ServiceEntry httpbin/se: field `spec.addresses[0]` is \"192.168.7.7\"")
            && text.contains("10.96.0.0/16"),
        "{text}"
    );

    let vm = ManifestSet::parse(
        "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: vm\n  \
         namespace: httpbin\nspec:\n  address: 10.244.9.9\n",
        Path::new("we.yaml"),
    )
    .unwrap();
    let err = mesh.deploy(&vm).await.unwrap_err();
    assert!(
        matches!(&err, MeshError::Unsupported { what, .. } if what.contains("WorkloadEntry httpbin/vm") && what.contains("spec.address")),
        "{err}"
    );
    assert_eq!(mesh.namespaces(), empty);
    assert!(
        mesh.snapshot().service_entries.is_empty() && mesh.snapshot().workload_entries.is_empty()
    );

    mesh.deploy(&backend_manifests()).await.unwrap();
    assert_eq!(
        mesh.namespaces().len(),
        empty.len() + 1,
        "the valid backend deploys"
    );
    mesh.teardown().await.unwrap();
}

/// The client deployment of the guide.
fn client_in_ambient() -> DeploymentRef {
    DeploymentRef::new("httpbin", "client-in-ambient")
}

/// `status` of each workload in the client ztunnel's `/config_dump`, by name.
async fn served_statuses(mesh: &LocalMesh) -> BTreeMap<String, String> {
    let client_pod = mesh.pods(&client_in_ambient()).await.unwrap().remove(0);
    let netns = mesh.pod_netns(&client_pod.pod_ref()).unwrap();
    let dump = client::get(
        mesh.sockets(),
        Some(netns),
        SocketAddr::from((Ipv4Addr::LOCALHOST, 15000)),
        "127.0.0.1",
        "/config_dump",
        Duration::from_secs(2),
    )
    .await
    .unwrap()
    .unwrap();
    let dump: serde_json::Value = serde_json::from_str(&dump.text()).unwrap();
    dump["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["name"].as_str().unwrap().to_string(),
                w["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Has the mesh push readiness changes until the kubelet reports `pod` with `ready` and the
/// change is pushed, for at most `within`; when the kubelet reported it, on the mesh's clock.
async fn until_readiness(
    mesh: &mut LocalMesh,
    pod: &str,
    ready: bool,
    within: Duration,
) -> Duration {
    let until = Instant::now() + within;
    loop {
        mesh.sync_readiness().await.unwrap();
        let change = mesh
            .readiness_changes()
            .into_iter()
            .rev()
            .find(|c| c.pod.name == pod)
            .filter(|c| c.ready == ready && c.pushed_at.is_some());
        if let Some(change) = change {
            return change.at;
        }
        assert!(
            Instant::now() < until,
            "{pod} was not reported {} within {within:?}: {:?}",
            if ready { "Ready" } else { "NotReady" },
            mesh.readiness_changes()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The readiness probe of the fixture's backend.
fn fixture_probe() -> ProbeSpec {
    let manifests = backend_manifests();
    let deployment = manifests
        .objects
        .iter()
        .find_map(|o| match o {
            Manifest::Deployment(d) => Some(d),
            _ => None,
        })
        .expect("in-ambient.yaml has a Deployment");
    let containers = &deployment
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers;
    ProbeSpec::of_containers("in-ambient.yaml", containers)
        .unwrap()
        .remove(0)
}

/// When a pod whose probes each fail after `each` turns NotReady, counted from the fault: the
/// first failing probe starts within a period, the next ones `max(period, each)` apart, and
/// the last ends `each` after it starts.
fn not_ready_after(spec: &ProbeSpec, each: Duration) -> (Duration, Duration) {
    let earliest = spec.period.max(each) * (spec.failure_threshold - 1) + each;
    (earliest, earliest + spec.period)
}

fn requests(count: u32, interval: Duration) -> RequestPlan {
    RequestPlan {
        client: client_in_ambient(),
        url: "http://in-ambient:8000/hostname".into(),
        count,
        interval,
        timeout: Duration::from_secs(2),
    }
}

/// The fixture's probe sees the guide's DROP as a cluster's kubelet would: the pod turns
/// NotReady once `failureThreshold` probes timed out (7-8 s after the block) and its workload
/// is Unhealthy in the config the client's ztunnel serves; after `iptables -F` it is Ready and
/// Healthy again.
async fn a_pod_whose_readiness_fails_becomes_unhealthy_in_the_ztunnels_config(feed: Feed) {
    let (run, options) = reference_setup(Profile::Solo, feed);
    let mut mesh = LocalMesh::new(run.clone(), options).unwrap();
    mesh.deploy(&guide_manifests()).await.unwrap();
    mesh.scale(&in_ambient(), 2).await.unwrap();
    let pods = mesh.pods(&in_ambient()).await.unwrap();
    assert!(pods.iter().all(|p| p.ready), "{pods:?}");
    let blocked = &pods[0];
    let statuses = served_statuses(&mesh).await;
    assert_eq!(statuses[&blocked.name], "Healthy");

    let handle = mesh
        .inject(&Fault {
            pod: blocked.pod_ref(),
            kind: FaultKind::IptablesDrop { port: 8080 },
        })
        .await
        .unwrap();
    let probe = fixture_probe();
    let (earliest, latest) = not_ready_after(&probe, probe.timeout);
    let at = until_readiness(&mut mesh, &blocked.name, false, latest * 2).await;
    let took = at - handle.injected_at;
    eprintln!("NotReady {took:?} after the DROP (expected {earliest:?} to {latest:?})");
    assert!(
        took + Duration::from_millis(100) >= earliest
            && took <= latest + Duration::from_millis(500),
        "{took:?}"
    );
    let statuses = served_statuses(&mesh).await;
    assert_eq!(statuses[&blocked.name], "Unhealthy", "{statuses:?}");
    assert_eq!(statuses[&pods[1].name], "Healthy", "{statuses:?}");
    let info = mesh.pods(&in_ambient()).await.unwrap();
    assert!(!info[0].ready && info[1].ready, "{info:?}");

    mesh.undo(&handle).await.unwrap();
    until_readiness(&mut mesh, &blocked.name, true, Duration::from_secs(4)).await;
    assert_eq!(served_statuses(&mesh).await[&blocked.name], "Healthy");
    if feed == Feed::Restarting {
        assert!(
            mesh.restarts().len() >= 3,
            "each change restarts a ztunnel that reads its config once: {:?}",
            mesh.restarts()
        );
    }
    let namespaces = mesh.namespaces();
    mesh.teardown().await.unwrap();
    assert!(namespaces.iter().all(|n| !netns_exists(n)));
}

/// The not-ready fault fails only the probe: the pod answers every other request directly,
/// yet once the control plane marks it Unhealthy the client's requests go to the others only.
async fn the_not_ready_fault_moves_traffic_only_through_the_control_plane() {
    let (run, options) = reference_setup(Profile::Solo, Feed::Reloading);
    let mut mesh = LocalMesh::new(run.clone(), options).unwrap();
    mesh.deploy(&guide_manifests()).await.unwrap();
    mesh.scale(&in_ambient(), 3).await.unwrap();
    let pods = mesh.pods(&in_ambient()).await.unwrap();
    let target = &pods[0];
    let peer = mesh.pod_netns(&pods[1].pod_ref()).unwrap().to_string();

    not_ready_fails_only_the_probe(&mut mesh, target, &peer).await;
    until_readiness(&mut mesh, &target.name, true, Duration::from_secs(3)).await;
    an_app_fault_spares_the_probe(&mut mesh, target, &peer).await;

    let namespaces = mesh.namespaces();
    mesh.teardown().await.unwrap();
    assert!(namespaces.iter().all(|n| !netns_exists(n)));
}

/// `GET path` straight to `target`'s app from the namespace `peer`, past every ztunnel: the
/// status and the replica that answered.
async fn get_directly(
    mesh: &LocalMesh,
    peer: &str,
    target: &PodInfo,
    path: &str,
) -> Result<(u16, String), RequestFailure> {
    client::get(
        mesh.sockets(),
        Some(peer),
        SocketAddr::new(target.ip, 8080),
        "in-ambient",
        path,
        Duration::from_secs(2),
    )
    .await
    .unwrap()
    .map(|r| (r.status, r.replica()))
}

/// Under the not-ready fault `target` fails its probe's path only, turns NotReady within the
/// probe's bound, and the client's requests go to the others; undone, the probe passes again.
async fn not_ready_fails_only_the_probe(mesh: &mut LocalMesh, target: &PodInfo, peer: &str) {
    let handle = mesh
        .inject(&Fault {
            pod: target.pod_ref(),
            kind: FaultKind::NotReady,
        })
        .await
        .unwrap();
    assert_eq!(
        get_directly(mesh, peer, target, "/status/200").await,
        Ok((503, target.name.clone()))
    );
    assert_eq!(
        get_directly(mesh, peer, target, "/hostname").await,
        Ok((200, target.name.clone()))
    );
    // The probe's 503 fails fast: `failureThreshold` periods turn the pod NotReady.
    let (_, latest) = not_ready_after(&fixture_probe(), Duration::ZERO);
    let at = until_readiness(mesh, &target.name, false, latest * 2).await;
    let took = at - handle.injected_at;
    assert!(took <= latest + Duration::from_millis(500), "{took:?}");
    let records = mesh
        .send_requests(&requests(12, Duration::ZERO))
        .await
        .unwrap();
    let answered: Vec<&str> = records.iter().filter_map(|r| r.replica()).collect();
    assert_eq!(answered.len(), 12, "{records:?}");
    assert!(!answered.contains(&target.name.as_str()), "{answered:?}");
    // Still serving: the app was never told to stop.
    assert_eq!(
        get_directly(mesh, peer, target, "/hostname").await,
        Ok((200, target.name.clone()))
    );

    mesh.undo(&handle).await.unwrap();
    assert_eq!(
        get_directly(mesh, peer, target, "/status/200").await,
        Ok((200, target.name.clone()))
    );
}

/// An app fault spares the probe's path: the pod stays Ready, only its answers fail; undone,
/// it is in the rotation again.
async fn an_app_fault_spares_the_probe(mesh: &mut LocalMesh, target: &PodInfo, peer: &str) {
    let status = mesh
        .inject(&Fault {
            pod: target.pod_ref(),
            kind: FaultKind::HttpStatus { status: 500 },
        })
        .await
        .unwrap();
    assert_eq!(
        get_directly(mesh, peer, target, "/hostname").await,
        Ok((500, target.name.clone()))
    );
    assert_eq!(
        get_directly(mesh, peer, target, "/status/200").await,
        Ok((200, target.name.clone()))
    );
    mesh.undo(&status).await.unwrap();
    let records = mesh
        .send_requests(&requests(12, Duration::ZERO))
        .await
        .unwrap();
    assert!(
        records
            .iter()
            .any(|r| r.replica() == Some(target.name.as_str())),
        "{records:?}"
    );
}

/// The process-kill fault: connects are refused at once and the kubelet reports the pod
/// NotReady without waiting for a probe; undone, the app listens again and is Ready once its
/// probe passes.
async fn a_killed_process_refuses_connections_and_is_not_ready_at_once() {
    let run = Run::acquire().unwrap();
    let mut mesh = LocalMesh::new(run.clone(), options_without_ztunnel(&run, &["node-1"])).unwrap();
    mesh.deploy(&backend_manifests()).await.unwrap();
    mesh.scale(&in_ambient(), 2).await.unwrap();
    let pods = mesh.pods(&in_ambient()).await.unwrap();
    let (target, peer) = (&pods[0], &pods[1]);
    let from = mesh.pod_netns(&peer.pod_ref()).unwrap().to_string();
    let get = async |mesh: &LocalMesh| {
        client::get(
            mesh.sockets(),
            Some(&from),
            SocketAddr::new(target.ip, 8080),
            "in-ambient",
            "/hostname",
            Duration::from_millis(500),
        )
        .await
        .unwrap()
        .map(|r| r.status)
    };
    let handle = mesh
        .inject(&Fault {
            pod: target.pod_ref(),
            kind: FaultKind::ProcessKill,
        })
        .await
        .unwrap();
    assert_eq!(get(&mesh).await, Err(RequestFailure::ConnectionRefused));
    assert!(mesh.sync_readiness().await.unwrap(), "NotReady at once");
    let change = mesh.readiness_changes().pop().unwrap();
    assert_eq!(
        (change.pod.name.as_str(), change.ready),
        (target.name.as_str(), false)
    );
    assert!(change.reason.contains("killed"), "{change:?}");
    let translated =
        meshcert_control_plane::to_local_config(&mesh.snapshot(), Profile::Istio).unwrap();
    let workload = translated
        .config
        .workloads
        .iter()
        .find(|w| w.name == target.name)
        .unwrap();
    assert_eq!(format!("{:?}", workload.status), "Unhealthy");

    mesh.undo(&handle).await.unwrap();
    assert_eq!(get(&mesh).await, Ok(200));
    until_readiness(&mut mesh, &target.name, true, Duration::from_secs(3)).await;
    assert!(mesh.undo(&handle).await.is_err(), "a fault is undone once");
    mesh.teardown().await.unwrap();
}

/// Scale-down as Kubernetes does it: the removed pod leaves the config first and keeps
/// serving through its grace period (2s here), then is stopped.
async fn scale_down_delists_before_stopping() {
    let (run, options) = reference_setup(Profile::Solo, Feed::Reloading);
    let mut mesh = LocalMesh::new(run.clone(), options).unwrap();
    let mut manifests = guide_manifests();
    for object in &mut manifests.objects {
        if let Manifest::Deployment(d) = object
            && d.metadata.name.as_deref() == Some("in-ambient")
        {
            let spec = d.spec.as_mut().unwrap().template.spec.as_mut().unwrap();
            spec.termination_grace_period_seconds = Some(2);
        }
    }
    mesh.deploy(&manifests).await.unwrap();
    mesh.scale(&in_ambient(), 2).await.unwrap();
    let pods = mesh.pods(&in_ambient()).await.unwrap();
    let (kept, removed) = (&pods[0], &pods[1]);
    let removed_netns = mesh.pod_netns(&removed.pod_ref()).unwrap().to_string();
    let from = mesh.pod_netns(&kept.pod_ref()).unwrap().to_string();

    mesh.scale(&in_ambient(), 1).await.unwrap();
    let delisted = Instant::now();
    // Delisted: no longer a pod of the deployment, not in the config the ztunnel serves.
    let left = mesh.pods(&in_ambient()).await.unwrap();
    assert_eq!(left.len(), 1);
    assert!(!served_statuses(&mesh).await.contains_key(&removed.name));
    assert_eq!(mesh.terminating(), [removed.pod_ref()]);
    // ... and still serving.
    let answer = client::get(
        mesh.sockets(),
        Some(&from),
        SocketAddr::new(removed.ip, 8080),
        "in-ambient",
        "/hostname",
        Duration::from_secs(1),
    )
    .await
    .unwrap()
    .map(|r| r.replica());
    assert_eq!(answer, Ok(removed.name.clone()));
    assert!(netns_exists(&removed_netns));
    let records = mesh
        .send_requests(&requests(6, Duration::ZERO))
        .await
        .unwrap();
    assert!(
        records
            .iter()
            .all(|r| r.replica() == Some(kept.name.as_str())),
        "{records:?}"
    );

    // Stopped once its grace period is over.
    let until = delisted + Duration::from_secs(6);
    while netns_exists(&removed_netns) {
        assert!(Instant::now() < until, "{removed_netns} outlived its grace");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let gone_after = delisted.elapsed();
    assert!(gone_after >= Duration::from_millis(1900), "{gone_after:?}");
    assert!(mesh.terminating().is_empty());
    let namespaces = mesh.namespaces();
    mesh.teardown().await.unwrap();
    assert!(namespaces.iter().all(|n| !netns_exists(n)));
}

/// A ServiceEntry gets an address the client's redirect captures; a DestinationRule is stored
/// and changes nothing the translation writes.
async fn service_entries_get_addresses_and_destination_rules_change_nothing() {
    let run = Run::acquire().unwrap();
    let mut mesh = LocalMesh::new(run.clone(), options_without_ztunnel(&run, &["node-1"])).unwrap();
    let mut manifests = backend_manifests();
    manifests.extend(istio_fixture("service-entry.yaml"));
    mesh.deploy(&manifests).await.unwrap();
    let translate = |mesh: &LocalMesh| {
        meshcert_control_plane::to_local_config(&mesh.snapshot(), Profile::Istio).unwrap()
    };
    let before = translate(&mesh);
    let entry = &mesh.snapshot().service_entries[0];
    // The Service took 10.96.0.10; the entry's host gets the next address.
    assert_eq!(
        entry.addresses_of("in-ambient.mesh.example"),
        ["10.96.0.11"]
    );
    let se = before
        .config
        .services
        .iter()
        .find(|s| s.hostname == "in-ambient.mesh.example")
        .expect("the ServiceEntry host is a service");
    assert_eq!(se.vips[0].to_string(), "/10.96.0.11");
    assert_eq!(se.load_balancer, None, "istio's default: no preference");

    // Re-applying the entry keeps its address.
    mesh.deploy(&istio_fixture("service-entry.yaml"))
        .await
        .unwrap();
    assert_eq!(
        mesh.snapshot().service_entries[0].addresses_of("in-ambient.mesh.example"),
        ["10.96.0.11"]
    );

    mesh.deploy(&istio_fixture("destination-rule.yaml"))
        .await
        .unwrap();
    assert_eq!(mesh.snapshot().destination_rules.len(), 1);
    assert_eq!(translate(&mesh), before);
    assert!(
        mesh.translation_warnings().is_empty(),
        "{:?}",
        mesh.translation_warnings()
    );
    mesh.teardown().await.unwrap();
}

//! The kube driver against a real API server: a throwaway K3s cluster started through
//! testcontainers (`cargo test --features k3s --test k3s`; needs Docker and the images
//! `rancher/k3s`, `mccutchen/go-httpbin`, `curlimages/curl`, `nicolaka/netshoot`). K3s has no
//! Istio, so this proves the driver's Kubernetes half, not a mesh: server-side apply of the
//! fixtures, rollouts, scale, curl by exec, a DROP fault added from a debug container and read
//! back, and teardown deleting the run's namespace. Skipped, with the reason, without Docker.
//! Traffic stays inside the K3s container; the API server is reached on 127.0.0.1.

use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::Api;
use meshcert_kube::{KubeExec, KubeMesh, KubeOptions};
use meshcert_mesh::manifest::ManifestSet;
use meshcert_mesh::{DeploymentRef, Fault, FaultKind, MeshUnderTest, PodRef, Profile, RequestPlan};
use testcontainers_modules::k3s::{K3s, KUBE_SECURE_PORT};
use testcontainers_modules::testcontainers::ImageExt;
use testcontainers_modules::testcontainers::runners::AsyncRunner;

fn main() -> ExitCode {
    let docker = Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !docker.is_ok_and(|s| s.success()) {
        println!("k3s: skipped, Docker is not available (`docker info` failed)");
        println!("k3s: 0 passed, 0 failed, 1 skipped");
        return ExitCode::SUCCESS;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(tokio::time::timeout(Duration::from_secs(900), run())) {
        Ok(Ok(summary)) => {
            println!("k3s: {summary}");
            println!("k3s: 1 passed, 0 failed");
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            println!("k3s: FAILED: {e}");
            println!("k3s: 0 passed, 1 failed");
            ExitCode::FAILURE
        }
        Err(_) => {
            println!("k3s: FAILED: not done within 15 minutes");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<String, String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let work = root.join("target/meshcert/k3s");
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let container = K3s::default()
        .with_conf_mount(&work)
        .with_privileged(true)
        .with_userns_mode("host")
        .start()
        .await
        .map_err(|e| format!("cannot start K3s: {e}"))?;
    let port = container
        .get_host_port_ipv4(KUBE_SECURE_PORT)
        .await
        .map_err(|e| e.to_string())?;
    // The kubeconfig K3s wrote, pointed at the mapped port, read by meshcert's own loader.
    let text = container
        .image()
        .read_kube_config()
        .map_err(|e| format!("K3s wrote no kubeconfig: {e}"))?;
    let text = text.replace(
        "https://127.0.0.1:6443",
        &format!("https://127.0.0.1:{port}"),
    );
    let kubeconfig = work.join("kubeconfig.yaml");
    std::fs::write(&kubeconfig, text).map_err(|e| e.to_string())?;
    let (client, url) = meshcert_kube::client(&kubeconfig, None)
        .await
        .map_err(|e| e.to_string())?;
    let up = started.elapsed();

    let options = KubeOptions {
        run: format!("k3s{}", std::process::id() % 1000),
        mesh: 1,
        allow_faults: true,
        allow_node_labels: false,
        fault_image: meshcert_kube::faults::DEFAULT_FAULT_IMAGE.into(),
        rollout_deadline: Duration::from_secs(300),
        lifetime: Duration::from_secs(3600),
        target_name: "k3s".into(),
        version: "k3s".into(),
        profile: Profile::Istio,
        settle: true,
    };
    let exec = Arc::new(KubeExec {
        client: client.clone(),
    });
    let mut mesh = KubeMesh::new(client.clone(), exec, options);
    let outcome = exercise(&mut mesh).await;
    let teardown = mesh.teardown().await;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client);
    for ns in mesh.namespaces() {
        if namespaces
            .get_opt(ns)
            .await
            .map_err(|e| e.to_string())?
            .is_some()
        {
            return Err(format!("namespace {ns} is still there after teardown"));
        }
    }
    let summary = outcome?;
    teardown.map_err(|e| e.to_string())?;
    Ok(format!(
        "K3s at {url} up in {:.0}s; {summary}; teardown removed every namespace",
        up.as_secs_f64()
    ))
}

async fn exercise(mesh: &mut KubeMesh) -> Result<String, String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let set = ManifestSet::load_all([
        root.join("fixtures/in-ambient.yaml"),
        root.join("fixtures/client-in-ambient.yaml"),
    ])
    .map_err(|e| e.to_string())?;
    mesh.deploy(&set).await.map_err(|e| e.to_string())?;
    let backend = DeploymentRef::new("httpbin", "in-ambient");
    mesh.scale(&backend, 3).await.map_err(|e| e.to_string())?;
    let pods = mesh.pods(&backend).await.map_err(|e| e.to_string())?;
    if pods.len() != 3 || pods.iter().any(|p| !p.ready) {
        return Err(format!("after scale to 3: {pods:?}"));
    }
    let names: Vec<String> = pods.iter().map(|p| p.name.clone()).collect();
    let plan = RequestPlan {
        client: DeploymentRef::new("httpbin", "client-in-ambient"),
        url: "http://in-ambient:8000/hostname".into(),
        count: 9,
        interval: Duration::ZERO,
        timeout: Duration::from_secs(5),
    };
    let records = mesh.send_requests(&plan).await.map_err(|e| e.to_string())?;
    let strangers: Vec<&str> = records
        .iter()
        .filter_map(|r| r.replica())
        .filter(|r| !names.iter().any(|n| n == r))
        .collect();
    if records.iter().any(|r| r.failed()) || !strangers.is_empty() {
        return Err(format!(
            "requests before the fault: {records:?} (replicas {names:?})"
        ));
    }
    let fault = Fault {
        pod: PodRef {
            namespace: "httpbin".into(),
            name: names[0].clone(),
        },
        kind: FaultKind::IptablesDrop { port: 8080 },
    };
    let handle = mesh.inject(&fault).await.map_err(|e| e.to_string())?;
    let plan = RequestPlan {
        timeout: Duration::from_secs(2),
        ..plan
    };
    let blocked = mesh.send_requests(&plan).await.map_err(|e| e.to_string())?;
    if blocked
        .iter()
        .any(|r| r.replica() == Some(names[0].as_str()))
    {
        return Err(format!(
            "the blocked pod {} answered: {blocked:?}",
            names[0]
        ));
    }
    mesh.undo(&handle).await.map_err(|e| e.to_string())?;
    Ok(format!(
        "3 replicas answered 9 of 9; with {} blocked {} of 9 failed (no proxy to fail over) and none answered from it; the rule was read back in and out",
        names[0],
        blocked.iter().filter(|r| r.failed()).count()
    ))
}

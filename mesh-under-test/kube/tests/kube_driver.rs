//! The kube driver against a mock API server (tower-test, as kube-rs's controller-rs tests):
//! every operation's exact requests (method, path, query, body), and what the driver does with
//! the API server's errors (403, 404, 409, never ready, no answer). Commands in pods go through
//! a recording fake `PodExec`: a mock server cannot hand back the upgraded connection of a real
//! exec, so `KubeExec`'s own request is checked separately, up to the upgrade.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use meshcert_kube::{ExecOutput, KubeExec, KubeMesh, KubeOptions, PodExec};
use meshcert_mesh::manifest::ManifestSet;
use meshcert_mesh::{
    DeploymentRef, Fault, FaultKind, MeshError, MeshUnderTest, PodRef, Profile, RequestOutcome,
    RequestPlan,
};
use serde_json::{Value, json};
use tower_test::mock::{Handle, pair};

type ApiHandle = Handle<Request<Body>, Response<Body>>;

const NS: &str = "mc-run1-1-httpbin";

/// One request the driver made.
#[derive(Debug)]
struct Seen {
    method: Method,
    path: String,
    query: String,
    content_type: String,
    body: Value,
}

/// The mock API server's side: answers requests one by one, in the order the test expects.
struct ApiServer {
    handle: ApiHandle,
}

impl ApiServer {
    /// Takes the next request, checks method, path and query words, answers `status` `body`.
    async fn expect(
        &mut self,
        method: Method,
        path: impl Into<String>,
        query: &[&str],
        status: u16,
        body: Value,
    ) -> Seen {
        let path: String = path.into();
        let (request, send) = self
            .handle
            .next_request()
            .await
            .expect("the driver stopped calling the API server");
        let seen = Seen {
            method: request.method().clone(),
            path: request.uri().path().to_string(),
            query: request.uri().query().unwrap_or("").to_string(),
            content_type: request
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string(),
            body: {
                let bytes = request.into_body().collect_bytes().await.unwrap();
                serde_json::from_slice(&bytes).unwrap_or(Value::Null)
            },
        };
        assert_eq!(
            (&seen.method, seen.path.as_str()),
            (&method, path.as_str()),
            "unexpected request {seen:?}"
        );
        for word in query {
            assert!(seen.query.contains(word), "{word:?} missing in {seen:?}");
        }
        let text = match &body {
            Value::String(s) => s.clone().into_bytes(),
            other => serde_json::to_vec(other).unwrap(),
        };
        send.send_response(
            Response::builder()
                .status(StatusCode::from_u16(status).unwrap())
                .body(Body::from(text))
                .unwrap(),
        );
        seen
    }

    async fn ok(&mut self, method: Method, path: impl Into<String>, body: Value) -> Seen {
        self.expect(method, path, &[], 200, body).await
    }
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind":"Status","apiVersion":"v1","status":"Failure","code":code,"reason":reason,"message":message})
}

fn deployment(name: &str, replicas: i32, ready: i32) -> Value {
    json!({
        "apiVersion":"apps/v1","kind":"Deployment",
        "metadata":{"name":name,"namespace":NS,"generation":2},
        "spec":{"replicas":replicas,"selector":{"matchLabels":{"app":name}},
                "template":{"metadata":{"labels":{"app":name}},"spec":{"containers":[{"name":name,"image":"i"}]}}},
        "status":{"observedGeneration":2,"replicas":replicas,"readyReplicas":ready,"updatedReplicas":replicas}
    })
}

fn pod(name: &str, app: &str, node: &str, ip: &str) -> Value {
    json!({
        "apiVersion":"v1","kind":"Pod",
        "metadata":{"name":name,"namespace":NS,"labels":{"app":app}},
        "spec":{"nodeName":node,"containers":[{"name":app,"image":"i"}]},
        "status":{"podIP":ip,"conditions":[{"type":"Ready","status":"True"}]}
    })
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion":"v1","kind":kind,"metadata":{},"items":items})
}

/// Namespace, pod, container and command of one exec.
type Ran = (String, String, Option<String>, Vec<String>);

/// Commands the fake ran, and the answers it gives (first matching prefix wins, then the
/// default: success with empty output).
#[derive(Default)]
struct FakeExec {
    ran: Mutex<Vec<Ran>>,
    answers: Mutex<VecDeque<(String, ExecOutput)>>,
}

impl FakeExec {
    fn answer(&self, command_starts: &str, stdout: &str) {
        self.answers.lock().unwrap().push_back((
            command_starts.to_string(),
            ExecOutput {
                stdout: stdout.into(),
                stderr: String::new(),
                status: "Success".into(),
                success: true,
            },
        ));
    }

    fn ran(&self) -> Vec<String> {
        self.ran
            .lock()
            .unwrap()
            .iter()
            .map(|(ns, pod, c, cmd)| {
                format!(
                    "{ns}/{pod}[{}] {}",
                    c.clone().unwrap_or_default(),
                    cmd.join(" ")
                )
            })
            .collect()
    }
}

#[async_trait]
impl PodExec for FakeExec {
    async fn exec(
        &self,
        namespace: &str,
        pod: &str,
        container: Option<&str>,
        command: &[String],
        _deadline: Duration,
    ) -> Result<ExecOutput, MeshError> {
        self.ran.lock().unwrap().push((
            namespace.into(),
            pod.into(),
            container.map(str::to_string),
            command.to_vec(),
        ));
        let line = command.join(" ");
        let mut answers = self.answers.lock().unwrap();
        let found = answers
            .iter()
            .position(|(p, _)| line.starts_with(p.as_str()));
        Ok(match found {
            Some(i) => answers.remove(i).unwrap().1,
            None => ExecOutput {
                status: "Success".into(),
                success: true,
                ..Default::default()
            },
        })
    }
}

fn options(allow_faults: bool) -> KubeOptions {
    KubeOptions {
        run: "run1".into(),
        mesh: 1,
        allow_faults,
        allow_node_labels: false,
        fault_image: "netshoot:test".into(),
        rollout_deadline: Duration::from_secs(2),
        lifetime: Duration::from_secs(3600),
        target_name: "kind".into(),
        version: "1.30.5".into(),
        profile: Profile::Istio,
        settle: false,
    }
}

fn mesh(allow_faults: bool) -> (KubeMesh, ApiServer, Arc<FakeExec>) {
    let (service, handle) = pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let exec = Arc::new(FakeExec::default());
    let mesh = KubeMesh::new(client, exec.clone(), options(allow_faults));
    (mesh, ApiServer { handle }, exec)
}

fn fixtures() -> ManifestSet {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    ManifestSet::load_all([
        root.join("in-ambient.yaml"),
        root.join("client-in-ambient.yaml"),
    ])
    .unwrap()
}

const APPLY: &[&str] = &["fieldManager=meshcert", "force=true"];

/// The requests of a healthy rollout wait: the deployment, then its pods.
async fn rollout(api: &mut ApiServer, name: &str, pods: Vec<Value>) {
    let n = pods.len() as i32;
    let path = format!("/apis/apps/v1/namespaces/{NS}/deployments/{name}");
    api.ok(Method::GET, &path, deployment(name, n, n)).await;
    api.ok(Method::GET, &path, deployment(name, n, n)).await;
    let selector = format!("labelSelector=app%3D{name}");
    api.expect(
        Method::GET,
        &format!("/api/v1/namespaces/{NS}/pods"),
        &[&selector],
        200,
        list("PodList", pods),
    )
    .await;
}

/// The whole deploy conversation; returns what was applied.
/// The applies of the two fixtures, in the order the driver sends them.
async fn serve_applies(api: &mut ApiServer) -> Vec<Seen> {
    let mut seen = Vec::new();
    for path in [
        format!("/api/v1/namespaces/{NS}"),
        format!("/api/v1/namespaces/{NS}/serviceaccounts/in-ambient"),
        format!("/api/v1/namespaces/{NS}/services/in-ambient"),
        format!("/apis/apps/v1/namespaces/{NS}/deployments/in-ambient"),
        format!("/api/v1/namespaces/{NS}/serviceaccounts/client-in-ambient"),
        format!("/apis/apps/v1/namespaces/{NS}/deployments/client-in-ambient"),
    ] {
        seen.push(api.expect(Method::PATCH, path, APPLY, 200, json!({})).await);
    }
    seen
}

/// The whole deploy conversation; returns what was applied.
async fn serve_deploy(api: &mut ApiServer) -> Vec<Seen> {
    let seen = serve_applies(api).await;
    rollout(
        api,
        "in-ambient",
        vec![pod("in-ambient-a", "in-ambient", "worker2", "10.244.2.5")],
    )
    .await;
    rollout(
        api,
        "client-in-ambient",
        vec![pod(
            "client-in-ambient-c",
            "client-in-ambient",
            "worker",
            "10.244.1.7",
        )],
    )
    .await;
    seen
}

/// A mesh whose fixtures are deployed.
async fn deployed(allow_faults: bool) -> (KubeMesh, ApiServer, Arc<FakeExec>) {
    let (mut mesh, mut api, exec) = mesh(allow_faults);
    let set = fixtures();
    bounded(async { tokio::join!(mesh.deploy(&set), serve_deploy(&mut api)) })
        .await
        .0
        .unwrap();
    (mesh, api, exec)
}

/// The requests that find the client's pod: its deployment, then its pods.
async fn serve_client_pod(api: &mut ApiServer) {
    let path = format!("/apis/apps/v1/namespaces/{NS}/deployments/client-in-ambient");
    api.ok(Method::GET, &path, deployment("client-in-ambient", 1, 1))
        .await;
    let client = pod(
        "client-in-ambient-c",
        "client-in-ambient",
        "worker",
        "10.244.1.7",
    );
    api.ok(
        Method::GET,
        format!("/api/v1/namespaces/{NS}/pods"),
        list("PodList", vec![client]),
    )
    .await;
}

/// The guide's fault: DROP on port 8080 of the first backend pod.
fn drop_on_first_backend() -> Fault {
    Fault {
        pod: PodRef {
            namespace: "httpbin".into(),
            name: "in-ambient-a".into(),
        },
        kind: FaultKind::IptablesDrop { port: 8080 },
    }
}

/// The requests of adding a debug container: the pod, the patch (returned), the pod running
/// it.
async fn serve_debug_container(api: &mut ApiServer) -> Seen {
    let pod_path = format!("/api/v1/namespaces/{NS}/pods/in-ambient-a");
    let backend = pod("in-ambient-a", "in-ambient", "worker2", "10.244.2.5");
    api.ok(Method::GET, &pod_path, backend).await;
    let patch = api
        .ok(
            Method::PATCH,
            format!("{pod_path}/ephemeralcontainers"),
            json!({}),
        )
        .await;
    api.ok(Method::GET, &pod_path, debug_container_running())
        .await;
    patch
}

/// The backend pod with the first fault's debug container running.
fn debug_container_running() -> Value {
    let mut running = pod("in-ambient-a", "in-ambient", "worker2", "10.244.2.5");
    running["status"]["ephemeralContainerStatuses"] = json!([{"name":"meshcert-fault-1",
        "image":"netshoot:test","imageID":"","ready":false,"restartCount":0,"state":{"running":{}}}]);
    running
}

async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("the test's conversation did not finish in 20s")
}

#[tokio::test]
async fn deploy_applies_every_fixture_server_side_into_the_run_namespace_then_waits_for_rollouts() {
    let (mut mesh, mut api, _) = mesh(false);
    let set = fixtures();
    let (result, seen) =
        bounded(async { tokio::join!(mesh.deploy(&set), serve_deploy(&mut api)) }).await;
    result.unwrap();
    let namespace = &seen[0];
    assert_eq!(namespace.content_type, "application/apply-patch+yaml");
    assert_eq!(
        namespace.body["metadata"]["labels"]["meshcert.dev/run"],
        "run1"
    );
    assert_eq!(
        namespace.body["metadata"]["labels"]["istio.io/dataplane-mode"],
        "ambient"
    );
    assert!(namespace.body["metadata"]["annotations"]["meshcert.dev/expires"].is_string());
    let deployment = &seen[3];
    assert_eq!(deployment.body["kind"], "Deployment");
    assert_eq!(deployment.body["metadata"]["namespace"], NS);
    assert_eq!(
        deployment.body["spec"]["template"]["spec"]["containers"][0]["image"],
        "docker.io/mccutchen/go-httpbin:v2.15.0"
    );
    assert_eq!(mesh.namespaces(), [NS]);
}

#[tokio::test]
async fn scale_patches_the_scale_subresource_and_waits_for_the_new_count() {
    let (mut mesh, mut api, _) = deployed(false).await;
    let target = DeploymentRef::new("httpbin", "in-ambient");
    let serve = async {
        let seen = api
            .ok(
                Method::PATCH,
                &format!("/apis/apps/v1/namespaces/{NS}/deployments/in-ambient/scale"),
                json!({}),
            )
            .await;
        rollout(
            &mut api,
            "in-ambient",
            vec![
                pod("in-ambient-a", "in-ambient", "worker2", "10.244.2.5"),
                pod("in-ambient-b", "in-ambient", "worker3", "10.244.3.5"),
                pod("in-ambient-c", "in-ambient", "worker4", "10.244.4.5"),
            ],
        )
        .await;
        seen
    };
    let (result, seen) = bounded(async { tokio::join!(mesh.scale(&target, 3), serve) }).await;
    result.unwrap();
    assert_eq!(seen.content_type, "application/merge-patch+json");
    assert_eq!(seen.body, json!({"spec":{"replicas":3}}));
}

#[tokio::test]
async fn requests_are_one_curl_loop_exec_in_the_client_pod_parsed_per_request() {
    let (mut mesh, mut api, exec) = deployed(false).await;
    exec.answer(
        "sh -c",
        "@@meshcert-begin 0\n{\"hostname\":\"in-ambient-a\"}\n@@meshcert-w 200 0.003 10.244.1.7:5000\n@@meshcert-rc 0\n\
         @@meshcert-begin 1\n\n@@meshcert-w 000 2.0 :0\n@@meshcert-rc 28 curl: (28) timed out\n",
    );
    let plan = RequestPlan {
        client: DeploymentRef::new("httpbin", "client-in-ambient"),
        url: "http://in-ambient.httpbin:8000/hostname".into(),
        count: 2,
        interval: Duration::ZERO,
        timeout: Duration::from_secs(2),
    };
    let serve = async {
        serve_client_pod(&mut api).await;
    };
    let (records, ()) = bounded(async { tokio::join!(mesh.send_requests(&plan), serve) }).await;
    let records = records.unwrap();
    assert_eq!(
        records[0].outcome,
        RequestOutcome::Answered {
            replica: "in-ambient-a".into(),
            status: 200
        }
    );
    assert!(records[1].failed());
    let ran = exec.ran();
    assert_eq!(ran.len(), 1);
    assert!(
        ran[0].starts_with(&format!(
            "{NS}/client-in-ambient-c[] sh -c i=0; while [ $i -lt 2 ]"
        )),
        "{ran:?}"
    );
    // The fixture namespace in the URL is the run's.
    assert!(
        ran[0].contains(&format!("'http://in-ambient.{NS}:8000/hostname'")),
        "{ran:?}"
    );
}

#[tokio::test]
async fn faults_go_in_through_a_net_admin_debug_container_and_are_read_back_in_and_out() {
    let (mut mesh, mut api, exec) = deployed(true).await;
    let rule = "-A INPUT -p tcp -m tcp --dport 8080 -j DROP";
    exec.answer(
        "iptables -w 5 -S INPUT",
        &format!("-P INPUT ACCEPT\n{rule}\n"),
    );
    let fault = drop_on_first_backend();
    let serve = serve_debug_container(&mut api);
    let (handle, patch) = bounded(async { tokio::join!(mesh.inject(&fault), serve) }).await;
    let handle = handle.unwrap();
    assert_eq!(patch.content_type, "application/strategic-merge-patch+json");
    let container = &patch.body["spec"]["ephemeralContainers"][0];
    assert_eq!(container["name"], "meshcert-fault-1");
    assert_eq!(container["image"], "netshoot:test");
    assert_eq!(
        container["securityContext"]["capabilities"]["add"],
        json!(["NET_ADMIN"])
    );
    assert_eq!(container["targetContainerName"], "in-ambient");
    assert_eq!(
        exec.ran(),
        [
            format!(
                "{NS}/in-ambient-a[meshcert-fault-1] iptables -w 5 -A INPUT -p tcp -m tcp --dport 8080 -j DROP"
            ),
            format!("{NS}/in-ambient-a[meshcert-fault-1] iptables -w 5 -S INPUT"),
        ]
    );
    // Undo: listed, deleted, proven gone.
    exec.answer("iptables -w 5 -S INPUT", &format!("{rule}\n"));
    exec.answer("iptables -w 5 -S INPUT", "-P INPUT ACCEPT\n");
    mesh.undo(&handle).await.unwrap();
    let ran = exec.ran();
    assert_eq!(
        ran[2..],
        [
            format!("{NS}/in-ambient-a[meshcert-fault-1] iptables -w 5 -S INPUT"),
            format!(
                "{NS}/in-ambient-a[meshcert-fault-1] iptables -w 5 -D INPUT -p tcp -m tcp --dport 8080 -j DROP"
            ),
            format!("{NS}/in-ambient-a[meshcert-fault-1] iptables -w 5 -S INPUT"),
        ]
    );
}

/// Faults a cluster's pods cannot be made to have are `Unsupported` (the scenario is skipped),
/// and nothing is run for them.
#[tokio::test]
async fn faults_the_kube_driver_cannot_make_are_unsupported() {
    let (mut mesh, _api, exec) = mesh(true);
    for kind in [
        FaultKind::HttpStatus { status: 503 },
        FaultKind::NotReady,
        FaultKind::ProcessKill,
    ] {
        let fault = Fault {
            kind: kind.clone(),
            ..drop_on_first_backend()
        };
        let err = mesh.inject(&fault).await.unwrap_err();
        assert!(
            matches!(err, MeshError::Unsupported { .. }),
            "{kind}: {err}"
        );
    }
    assert!(exec.ran().is_empty());
}

#[tokio::test]
async fn a_rule_that_does_not_read_back_is_an_error_and_faults_need_permission() {
    let (mut mesh, _api, exec) = mesh(false);
    let fault = drop_on_first_backend();
    let err = mesh.inject(&fault).await.unwrap_err();
    assert!(matches!(err, MeshError::Unsupported { .. }), "{err}");
    assert!(err.to_string().contains("--allow-faults"), "{err}");
    assert!(exec.ran().is_empty(), "nothing may run without permission");

    let (mut mesh, mut api, exec) = deployed(true).await;
    exec.answer("iptables -w 5 -S INPUT", "-P INPUT ACCEPT\n");
    let serve = async {
        serve_debug_container(&mut api).await;
    };
    let (result, ()) = bounded(async { tokio::join!(mesh.inject(&fault), serve) }).await;
    let err = result.unwrap_err().to_string();
    assert!(err.contains("does not list"), "{err}");
}

#[tokio::test]
async fn ztunnel_logs_come_from_the_ztunnel_on_the_clients_node_since_the_scenario_began() {
    let (mesh, mut api, _) = deployed(false).await;
    let serve = async {
        serve_client_pod(&mut api).await;
        let mut other = pod("ztunnel-other", "ztunnel", "worker2", "10.244.2.2");
        other["metadata"]["namespace"] = json!("istio-system");
        let mut mine = pod("ztunnel-mine", "ztunnel", "worker", "10.244.1.2");
        mine["metadata"]["namespace"] = json!("istio-system");
        api.expect(
            Method::GET,
            "/api/v1/namespaces/istio-system/pods",
            &["labelSelector=app%3Dztunnel"],
            200,
            list("PodList", vec![other, mine]),
        )
        .await;
        api.expect(
            Method::GET,
            "/api/v1/namespaces/istio-system/pods/ztunnel-mine/log",
            &["sinceSeconds="],
            200,
            Value::String(
                "2000-01-01T00:00:00.000000Z\tinfo\taccess\tconnection complete\tdst.workload=\"old\"\n\
                 2099-01-01T00:00:00.000000Z\tinfo\taccess\tconnection complete\tdst.workload=\"in-ambient-a\"\n\
                 not a log line\n"
                    .into(),
            ),
        )
        .await;
    };
    let (lines, ()) = bounded(async { tokio::join!(mesh.ztunnel_logs(), serve) }).await;
    let lines = lines.unwrap();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0].field("dst.workload"), Some("in-ambient-a"));
}

#[tokio::test]
async fn teardown_deletes_the_run_namespace_and_waits_until_it_is_gone() {
    let (mut mesh, mut api, _) = deployed(false).await;
    let serve = async {
        let path = format!("/api/v1/namespaces/{NS}");
        let delete = api
            .ok(Method::DELETE, &path, json!({"metadata":{"name":NS}}))
            .await;
        api.ok(
            Method::GET,
            &path,
            json!({"metadata":{"name":NS},"status":{"phase":"Terminating"}}),
        )
        .await;
        api.expect(
            Method::GET,
            &path,
            &[],
            404,
            status(404, "NotFound", "namespaces \"x\" not found"),
        )
        .await;
        delete
    };
    let (result, delete) = bounded(async { tokio::join!(mesh.teardown(), serve) }).await;
    result.unwrap();
    assert_eq!(delete.body["propagationPolicy"], "Foreground");
    // Idempotent: a second teardown makes no request.
    mesh.teardown().await.unwrap();
}

#[tokio::test]
async fn a_forbidden_apply_names_the_object_and_the_rbac_file() {
    let (mut mesh, mut api, _) = mesh(false);
    let set = fixtures();
    let serve = api.expect(
        Method::PATCH,
        format!("/api/v1/namespaces/{NS}"),
        APPLY,
        403,
        status(
            403,
            "Forbidden",
            "namespaces is forbidden: User \"dev\" cannot patch resource \"namespaces\"",
        ),
    );
    let (result, _) = bounded(async { tokio::join!(mesh.deploy(&set), serve) }).await;
    let err = result.unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "apply Namespace {NS}: the API server answered 403 Forbidden"
        )),
        "{err}"
    );
    assert!(err.contains("apply ci/rbac.yaml"), "{err}");
    assert!(!err.contains('\n'));
}

#[tokio::test]
async fn a_conflicting_apply_and_a_missing_deployment_say_so() {
    let (mut mesh, mut api, _) = mesh(false);
    let set = fixtures();
    let serve = async {
        api.expect(
            Method::PATCH,
            format!("/api/v1/namespaces/{NS}"),
            APPLY,
            200,
            json!({}),
        )
        .await;
        api.expect(
            Method::PATCH,
            &format!("/api/v1/namespaces/{NS}/serviceaccounts/in-ambient"),
            APPLY,
            409,
            status(409, "Conflict", "Apply failed with 1 conflict"),
        )
        .await;
    };
    let (result, ()) = bounded(async { tokio::join!(mesh.deploy(&set), serve) }).await;
    let err = result.unwrap_err().to_string();
    assert!(
        err.contains("409 Conflict") && err.contains("conflict"),
        "{err}"
    );
    // The namespace was created: teardown must remove it even though deploy failed.
    assert_eq!(mesh.namespaces(), [NS]);

    let (mut mesh, mut api, _) = deployed(false).await;
    let serve = api.expect(
        Method::PATCH,
        format!("/apis/apps/v1/namespaces/{NS}/deployments/in-ambient/scale"),
        &[],
        404,
        status(404, "NotFound", "deployments.apps \"in-ambient\" not found"),
    );
    let target = DeploymentRef::new("httpbin", "in-ambient");
    let (result, _) = bounded(async { tokio::join!(mesh.scale(&target, 2), serve) }).await;
    let err = result.unwrap_err().to_string();
    assert!(
        err.contains("404 NotFound") && err.contains("it does not exist"),
        "{err}"
    );
}

#[tokio::test]
async fn a_rollout_that_never_becomes_ready_times_out_with_what_it_last_saw() {
    let (mut mesh, mut api, _) = mesh(false);
    let set = fixtures();
    let serve = async {
        serve_applies(&mut api).await;
        // Never ready: answer every poll until the driver gives up (2s deadline, 500ms polls).
        while let Ok(Some((_request, send))) =
            tokio::time::timeout(Duration::from_secs(5), api.handle.next_request()).await
        {
            let body = serde_json::to_vec(&deployment("in-ambient", 1, 0)).unwrap();
            send.send_response(Response::builder().body(Body::from(body)).unwrap());
        }
    };
    let result = bounded(async {
        tokio::select! {
            r = mesh.deploy(&set) => r,
            () = serve => panic!("the mock stopped first"),
        }
    })
    .await;
    let err = result.unwrap_err();
    assert!(matches!(err, MeshError::Timeout { .. }), "{err}");
    let err = err.to_string();
    assert!(
        err.contains("rollout of Deployment httpbin/in-ambient") && err.contains("0 ready"),
        "{err}"
    );
}

#[tokio::test]
async fn kube_exec_asks_for_the_exec_subresource_and_an_api_server_that_never_answers_is_bounded() {
    let (service, handle) = pair::<Request<Body>, Response<Body>>();
    let exec = KubeExec {
        client: Client::new(service, "default"),
    };
    let mut api = ApiServer { handle };
    let command: Vec<String> = ["iptables", "-S", "INPUT"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let serve = api.expect(
        Method::GET,
        format!("/api/v1/namespaces/{NS}/pods/in-ambient-a/exec"),
        &[
            "command=iptables",
            "command=-S",
            "command=INPUT",
            "container=meshcert-fault-1",
            "stdout=true",
            "stderr=true",
        ],
        403,
        status(
            403,
            "Forbidden",
            "pods \"in-ambient-a\" is forbidden: cannot create resource \"pods/exec\"",
        ),
    );
    let (result, _) = bounded(async {
        tokio::join!(
            exec.exec(
                NS,
                "in-ambient-a",
                Some("meshcert-fault-1"),
                &command,
                Duration::from_secs(5)
            ),
            serve
        )
    })
    .await;
    let err = result.unwrap_err().to_string();
    assert!(
        err.contains("exec `iptables` in pod") && !err.contains('\n'),
        "{err}"
    );

    // An API server that takes the request and never answers: the deadline ends the wait.
    let (service, mut handle) = pair::<Request<Body>, Response<Body>>();
    let exec = KubeExec {
        client: Client::new(service, "default"),
    };
    let hold = async {
        let pending = handle.next_request().await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        drop(pending);
    };
    let (result, ()) = bounded(async {
        tokio::join!(
            exec.exec(NS, "p", None, &command, Duration::from_millis(500)),
            hold
        )
    })
    .await;
    assert!(
        matches!(result, Err(MeshError::Timeout { .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn metrics_are_read_through_the_api_servers_pod_proxy() {
    let (mesh, mut api, _) = deployed(false).await;
    let serve = async {
        serve_client_pod(&mut api).await;
        let mut mine = pod("ztunnel-mine", "ztunnel", "worker", "10.244.1.2");
        mine["metadata"]["namespace"] = json!("istio-system");
        api.ok(
            Method::GET,
            "/api/v1/namespaces/istio-system/pods",
            list("PodList", vec![mine]),
        )
        .await;
        api.ok(
            Method::GET,
            "/api/v1/namespaces/istio-system/pods/ztunnel-mine:15020/proxy/metrics",
            Value::String("# TYPE istio_tcp_connections_opened_total counter\nistio_tcp_connections_opened_total{reporter=\"source\"} 7\n".into()),
        )
        .await;
    };
    let (samples, ()) = bounded(async { tokio::join!(mesh.metrics(), serve) }).await;
    let samples = samples.unwrap();
    assert_eq!(
        meshcert_oracle::metrics::sum(&samples, "istio_tcp_connections_opened_total", &[]),
        7.0
    );
}

#[tokio::test]
async fn the_sweeper_deletes_only_expired_meshcert_namespaces() {
    let (service, handle) = pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let mut api = ApiServer { handle };
    let ns = |name: &str, expires: &str, terminating: bool| {
        let mut v = json!({"apiVersion":"v1","kind":"Namespace","metadata":{"name":name,
            "labels":{"meshcert.dev/run":"r"},"annotations":{"meshcert.dev/expires":expires}}});
        if terminating {
            v["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        v
    };
    let serve = async {
        let listed = api
            .expect(
                Method::GET,
                "/api/v1/namespaces",
                &["labelSelector=meshcert.dev%2Frun"],
                200,
                list(
                    "NamespaceList",
                    vec![
                        ns("mc-old", "1000", false),
                        ns("mc-live", "99999999999", false),
                        ns("mc-going", "1000", true),
                    ],
                ),
            )
            .await;
        let deleted = api
            .ok(Method::DELETE, "/api/v1/namespaces/mc-old", json!({}))
            .await;
        (listed, deleted)
    };
    let (report, _) =
        bounded(async { tokio::join!(meshcert_kube::sweep(&client, false), serve) }).await;
    let report = report.unwrap();
    assert_eq!(report.deleted, ["mc-old"]);
    assert_eq!(report.kept, ["mc-live"]);
}

#[tokio::test]
async fn preflight_reports_the_mesh_and_a_cluster_without_ztunnel_is_one_clear_error() {
    let version = json!({"major":"1","minor":"34","gitVersion":"v1.34.11","gitCommit":"","gitTreeState":"","buildDate":"","goVersion":"","compiler":"","platform":"linux/amd64"});
    let (service, handle) = pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let mut api = ApiServer { handle };
    let serve = async {
        api.ok(Method::GET, "/version", version.clone()).await;
        api.expect(
            Method::GET,
            "/apis/apps/v1/namespaces/istio-system/daemonsets/ztunnel",
            &[],
            404,
            status(404, "NotFound", "daemonsets.apps \"ztunnel\" not found"),
        )
        .await;
    };
    let (result, ()) =
        bounded(async { tokio::join!(meshcert_kube::preflight(&client), serve) }).await;
    let err = result.unwrap_err().to_string();
    assert!(
        err.starts_with("no ztunnel DaemonSet in istio-system"),
        "{err}"
    );

    let (service, handle) = pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let mut api = ApiServer { handle };
    let serve = async {
        api.ok(Method::GET, "/version", version.clone()).await;
        api.ok(Method::GET, "/apis/apps/v1/namespaces/istio-system/daemonsets/ztunnel", json!({
            "apiVersion":"apps/v1","kind":"DaemonSet","metadata":{"name":"ztunnel","namespace":"istio-system"},
            "spec":{"selector":{"matchLabels":{"app":"ztunnel"}},"template":{"spec":{"containers":[{"name":"istio-proxy","image":"docker.io/istio/ztunnel:1.30.5-distroless"}]}}},
            "status":{"currentNumberScheduled":4,"desiredNumberScheduled":4,"numberMisscheduled":0,"numberReady":4}
        })).await;
        let node = |name: &str, zone: &str| json!({"apiVersion":"v1","kind":"Node","metadata":{"name":name,"labels":{"topology.kubernetes.io/region":"r1","topology.kubernetes.io/zone":zone}}});
        api.ok(
            Method::GET,
            "/api/v1/nodes",
            list(
                "NodeList",
                vec![node("w1", "r1-a"), node("w2", "r1-a"), node("w3", "r1-b")],
            ),
        )
        .await;
    };
    let (report, ()) =
        bounded(async { tokio::join!(meshcert_kube::preflight(&client), serve) }).await;
    let report = report.unwrap();
    assert_eq!(report.ztunnel_version, "1.30.5-distroless");
    assert_eq!(report.profile, Profile::Istio);
    assert_eq!(
        (
            report.ztunnel_ready,
            report.ztunnel_desired,
            report.nodes,
            report.zones.len()
        ),
        (4, 4, 3, 2)
    );
    assert_eq!(
        report.to_string(),
        "Kubernetes v1.34.11, ztunnel docker.io/istio/ztunnel:1.30.5-distroless (4 of 4 ready, profile istio), 3 nodes in 2 zones"
    );
}

#[tokio::test]
async fn after_a_rollout_requests_go_out_until_every_ready_backend_has_answered() {
    let (service, handle) = pair::<Request<Body>, Response<Body>>();
    let exec = Arc::new(FakeExec::default());
    let mut opts = options(false);
    opts.settle = true;
    let mut mesh = KubeMesh::new(Client::new(service, "default"), exec.clone(), opts);
    let mut api = ApiServer { handle };
    // ztunnel does not know the endpoint yet: refused; then it does.
    exec.answer(
        "sh -c",
        "@@meshcert-begin 0\n\n@@meshcert-w 000 0.001 :0\n@@meshcert-rc 7 curl: (7) refused\n\
         @@meshcert-begin 1\n\n@@meshcert-w 000 0.001 :0\n@@meshcert-rc 7 curl: (7) refused\n",
    );
    exec.answer(
        "sh -c",
        "@@meshcert-begin 0\n{\"hostname\":\"in-ambient-a\"}\n@@meshcert-w 200 0.01 10.244.1.7:5\n@@meshcert-rc 0\n\
         @@meshcert-begin 1\n{\"hostname\":\"in-ambient-a\"}\n@@meshcert-w 200 0.01 10.244.1.7:6\n@@meshcert-rc 0\n",
    );
    let set = fixtures();
    let serve = async {
        serve_deploy(&mut api).await;
        for _ in 0..2 {
            api.expect(
                Method::GET,
                format!("/api/v1/namespaces/{NS}/pods"),
                &["labelSelector=app%3Din-ambient"],
                200,
                list(
                    "PodList",
                    vec![pod("in-ambient-a", "in-ambient", "worker2", "10.244.2.5")],
                ),
            )
            .await;
            serve_client_pod(&mut api).await;
        }
    };
    let (result, ()) = bounded(async { tokio::join!(mesh.deploy(&set), serve) }).await;
    result.unwrap();
    let ran = exec.ran();
    assert_eq!(ran.len(), 2, "{ran:?}");
    for r in &ran {
        assert!(
            r.contains(&format!("'http://in-ambient.{NS}:8000/hostname'")),
            "{r}"
        );
        assert!(r.contains("while [ $i -lt 2 ]"), "{r}");
    }
}

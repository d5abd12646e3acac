//! The World over the in-memory mesh: configuration, the mesh made through its source,
//! observations, fault bookkeeping, evidence and the thresholds.

use std::sync::Arc;
use std::time::Duration;

use meshcert_mesh::FaultKind;
use meshcert_mesh::wait::TimeScale;
use meshcert_model::{LogLine, MetricSample};

use super::config;
use crate::testing::{InMemoryMesh, InMemorySource};
use crate::thresholds::Thresholds;
use crate::world::MeshWorld;

const URL: &str = "http://in-ambient:8000/hostname";

/// A configured World over copies of `mesh`, and the source that makes them.
async fn world(mesh: InMemoryMesh) -> (MeshWorld, Arc<InMemorySource>) {
    let source = Arc::new(InMemorySource::new(mesh));
    let mut world = unconfigured().await;
    world.configure(config(source.clone()));
    (world, source)
}

async fn unconfigured() -> MeshWorld {
    <MeshWorld as cucumber::World>::new()
        .await
        .expect("a World")
}

/// The guide's apps with three backends, and six requests sent.
async fn guide(world: &mut MeshWorld) {
    world
        .deploy_fixtures(&["in-ambient", "client-in-ambient"])
        .await
        .unwrap();
    let backend = world.deployment("in-ambient");
    world
        .mesh()
        .await
        .unwrap()
        .scale(&backend, 3)
        .await
        .unwrap();
}

#[tokio::test]
async fn an_unconfigured_world_says_it_runs_only_in_a_suite() {
    let mut world = unconfigured().await;
    let expected = "the World has no configuration: scenarios run only in a suite";
    assert_eq!(world.mesh().await.err().unwrap().0, expected);
    assert_eq!(world.thresholds().err().unwrap().0, expected);
    assert_eq!(world.fixtures_dir().err().unwrap().0, expected);
    assert_eq!(world.elapsed(), Duration::ZERO);
    world.teardown().await.expect("nothing to tear down");
}

#[tokio::test]
async fn the_mesh_is_made_once_through_the_source_on_first_use() {
    let (mut world, source) = world(InMemoryMesh::new()).await;
    assert_eq!(source.made(), 0);
    guide(&mut world).await;
    world.mesh().await.unwrap();
    assert_eq!(source.made(), 1);
    assert_eq!(
        world.client().unwrap().to_string(),
        "httpbin/client-in-ambient"
    );
    let pods = world.pods("in-ambient").await.unwrap();
    let names: Vec<&str> = pods.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["in-ambient-0", "in-ambient-1", "in-ambient-2"]);
    assert!(pods.iter().all(|p| p.ip.to_string().starts_with("10.244.")));
    assert_eq!(
        world.pod("in-ambient", 3).await.err().unwrap().0,
        "in-ambient has 3 pods; there is no pod number 4"
    );
}

#[tokio::test]
async fn batches_are_recorded_with_their_plan() {
    let (mut world, _) = world(InMemoryMesh::new()).await;
    assert_eq!(
        world.last_batch().err().unwrap().0,
        "no requests were sent yet"
    );
    assert!(world.client().is_err(), "no client before the apps");
    guide(&mut world).await;
    world
        .send(URL, 6, Duration::from_millis(10), Duration::from_secs(1))
        .await
        .unwrap();
    let batch = &world.observations.batches[0];
    assert_eq!(batch.plan.count, 6);
    assert_eq!(batch.plan.client.name, "client-in-ambient");
    assert_eq!(world.last_batch().unwrap().len(), 6);
    assert_eq!(world.elapsed(), Duration::from_millis(60));
}

#[tokio::test]
async fn request_timeouts_stretch_with_the_time_scale_as_the_windows_do() {
    let mut config = config(Arc::new(InMemorySource::new(InMemoryMesh::new())));
    let mut thresholds = (*config.thresholds).clone();
    thresholds.time_scale = TimeScale::parse(Some("3")).unwrap();
    config.thresholds = Arc::new(thresholds);
    let mut world = unconfigured().await;
    world.configure(config);
    guide(&mut world).await;
    world
        .send(URL, 2, Duration::ZERO, Duration::from_secs(2))
        .await
        .unwrap();
    // A 2s timeout must stay above the 1.5s drop deadline it proves a drop against: at scale
    // 3 they are 6s and 4.5s.
    assert_eq!(
        world.observations.batches[0].plan.timeout,
        Duration::from_secs(6)
    );
}

#[tokio::test]
async fn faults_are_kept_until_undone_and_http_statuses_are_no_block() {
    let (mut world, _) = world(InMemoryMesh::new()).await;
    guide(&mut world).await;
    let first = world.pod("in-ambient", 0).await.unwrap();
    let second = world.pod("in-ambient", 1).await.unwrap();
    world
        .inject(second, FaultKind::HttpStatus { status: 503 })
        .await
        .unwrap();
    assert!(
        world.network_fault().is_err(),
        "an HTTP status blocks nothing"
    );
    world.inject(first, FaultKind::ProcessKill).await.unwrap();
    assert_eq!(world.network_fault().unwrap().pod.name, "in-ambient-0");
    world
        .send(URL, 3, Duration::from_millis(5), Duration::from_secs(1))
        .await
        .unwrap();
    world.undo_network_fault().await.unwrap();
    let undone = &world.observations.faults[1];
    assert_eq!(undone.undone_at, Some(Duration::from_millis(15)));
    assert_eq!(
        world.undo_network_fault().await.err().unwrap().0,
        "no block is in force"
    );
    let err = world
        .undo_network_faults_on(&["in-ambient-1".to_string()])
        .await
        .err()
        .unwrap();
    assert_eq!(err.0, r#"no block is in force on ["in-ambient-1"]"#);
    assert_eq!(world.observations.faults[0].undone_at, None);
}

#[tokio::test]
async fn a_failed_scenario_keeps_the_scripted_log_and_metrics_a_passed_one_does_not() {
    let line = LogLine {
        observed_at: Duration::ZERO,
        timestamp: None,
        level: "warn".into(),
        target: "ewma".into(),
        message: "endpoint ejected".into(),
        fields: Default::default(),
        raw: "warn ewma endpoint ejected".into(),
    };
    let sample = MetricSample {
        name: "istio_tcp_connections_opened_total".into(),
        labels: Default::default(),
        value: 6.0,
    };
    let mesh = InMemoryMesh::new()
        .log_lines(vec![line.clone()])
        .metrics(vec![sample.clone()]);
    let (mut world, _) = world(mesh).await;
    guide(&mut world).await;
    world.keep_evidence(false).await;
    assert!(world.observations.failure_evidence.is_none());
    world.keep_evidence(true).await;
    let evidence = world.observations.failure_evidence.clone().unwrap();
    assert_eq!(evidence.ztunnel_log, [line]);
    assert_eq!(evidence.metrics, [sample]);
    world.teardown().await.unwrap();
    assert!(world.pods("in-ambient").await.unwrap().is_empty());
}

#[tokio::test]
async fn thresholds_are_the_configured_ones_and_a_missing_file_is_named() {
    let (world, _) = world(InMemoryMesh::new()).await;
    let thresholds = world.thresholds().unwrap();
    assert!(thresholds.source.ends_with("features/thresholds/solo.yaml"));
    let missing = super::repo("features/thresholds/none.yaml");
    let err = Thresholds::load(&missing).unwrap_err();
    assert!(
        err.starts_with(&format!(
            "cannot read thresholds file {}",
            missing.display()
        )),
        "{err}"
    );
}

#[tokio::test]
async fn a_missing_fixture_fails_the_step_naming_the_file() {
    let (mut world, _) = world(InMemoryMesh::new()).await;
    let err = world.deploy_fixtures(&["no-such-app"]).await.unwrap_err();
    assert!(err.0.contains("no-such-app.yaml"), "{}", err.0);
}

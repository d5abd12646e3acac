//! Steps of traffic distribution and locality: nodes and where replicas run, the Service's
//! settings, and assertions by priority level ("the replicas at P1 of PreferClose"), with the
//! levels computed from the catalogue's tables (`meshcert_oracle::levels`), never from the mesh.

use std::collections::BTreeMap;
use std::time::Duration;

use cucumber::gherkin::Step;
use cucumber::{given, then, when};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use meshcert_control_plane::TRAFFIC_DISTRIBUTION_ANNOTATION;
use meshcert_mesh::manifest::Manifest;
use meshcert_mesh::topology::{ClientPlacement, ReplicaPlacement, Topology, TopologyNode};
use meshcert_mesh::{DeploymentRef, FaultKind, MeshError, PodInfo, RequestRecord};
use meshcert_model::{Placement, PriorityLevel, RequestBatch, TrafficDistribution};
use meshcert_oracle::levels::priority_level;
use meshcert_oracle::{failover, spread, summary};

use crate::params::{After, Budget, Mode, Priority, Rate, Setting, SettingField, TakeDown, Window};
use crate::world::{MeshWorld, StepFailure, StepResult, ensure};

#[given(expr = "the topology {string}")]
async fn topology(world: &mut MeshWorld, name: String) -> StepResult {
    world.scene.topology = load_topology(world, &name)?;
    world.apply_topology().await
}

/// The topology with no replica ranked above `level` for its client: the level is then the
/// best one left without a fault, a detection or a scale-down (each a behaviour of its own).
#[given(expr = "the topology {string} without the replicas above {priority} of {mode}")]
async fn topology_without_above(
    world: &mut MeshWorld,
    name: String,
    level: Priority,
    mode: Mode,
) -> StepResult {
    let mut topology = load_topology(world, &name)?;
    let client = topology
        .clients
        .first()
        .and_then(|c| topology.placement(&c.node, None))
        .ok_or_else(|| StepFailure(format!("topology {name} places no client on a node")))?;
    let ranks = |r: &ReplicaPlacement| {
        topology
            .placement(&r.node, r.network.as_deref())
            .and_then(|at| priority_level(mode.0, &client, &at))
    };
    let kept: Vec<ReplicaPlacement> = topology
        .replicas
        .iter()
        .filter(|r| ranks(r).is_none_or(|l| l >= level.0))
        .cloned()
        .collect();
    topology.replicas = kept;
    world.scene.topology = topology;
    world.apply_topology().await
}

fn load_topology(world: &MeshWorld, name: &str) -> Result<Topology, StepFailure> {
    let path = world
        .fixtures_dir()?
        .join("topologies")
        .join(format!("{name}.yaml"));
    Ok(meshcert_mesh::topology::load(&path)?)
}

#[given(expr = "the mesh's network is {string}")]
#[when(expr = "the mesh's network is changed to {string}")]
async fn mesh_network(world: &mut MeshWorld, network: String) -> StepResult {
    world.scene.topology.network = network;
    world.apply_topology().await
}

#[given("nodes:")]
async fn nodes(world: &mut MeshWorld, step: &Step) -> StepResult {
    for row in table(step, &["node"], &["region", "zone", "subzone", "network"])? {
        world.scene.topology.nodes.push(TopologyNode {
            name: row["node"].clone(),
            region: row.get("region").cloned().unwrap_or_default(),
            zone: row.get("zone").cloned().unwrap_or_default(),
            subzone: row.get("subzone").cloned().unwrap_or_default(),
            network: row.get("network").filter(|n| !n.is_empty()).cloned(),
        });
    }
    world.apply_topology().await
}

#[given(expr = "the client {string} runs on node {string}")]
async fn client_on(world: &mut MeshWorld, app: String, node: String) -> StepResult {
    world.scene.topology.clients.push(ClientPlacement {
        app,
        name: None,
        node,
    });
    world.apply_topology().await
}

#[given(expr = "another client {string} like {string} runs on node {string}")]
async fn another_client_on(
    world: &mut MeshWorld,
    name: String,
    app: String,
    node: String,
) -> StepResult {
    world.scene.topology.clients.push(ClientPlacement {
        app,
        name: Some(name),
        node,
    });
    world.apply_topology().await
}

#[given(expr = "{string} has replicas:")]
async fn replicas(world: &mut MeshWorld, app: String, step: &Step) -> StepResult {
    for row in table(step, &["replica", "node"], &["pod network label"])? {
        world.scene.topology.replicas.push(ReplicaPlacement {
            app: app.clone(),
            name: row["replica"].clone(),
            node: row["node"].clone(),
            network: row
                .get("pod network label")
                .filter(|n| !n.is_empty())
                .cloned(),
        });
    }
    world.apply_topology().await
}

#[when(expr = "node {string} is relabelled with zone {string}")]
async fn relabel_zone(world: &mut MeshWorld, node: String, zone: String) -> StepResult {
    let known = world
        .scene
        .topology
        .nodes
        .iter_mut()
        .find(|n| n.name == node)
        .ok_or_else(|| StepFailure(format!("no node {node:?} in this scenario")))?;
    known.zone = zone;
    world.apply_topology().await
}

#[given(expr = "the Service {string} has {setting}")]
#[when(expr = "the Service {string} is changed to also have {setting}")]
async fn service_setting(world: &mut MeshWorld, service: String, setting: Setting) -> StepResult {
    world
        .change_object("Service", &service, |object| set(object, &setting))
        .await
}

#[given(expr = "the ServiceEntry {string} has {setting}")]
async fn service_entry_setting(
    world: &mut MeshWorld,
    entry: String,
    setting: Setting,
) -> StepResult {
    world
        .change_object("ServiceEntry", &entry, |object| set(object, &setting))
        .await
}

#[given(expr = "the Service {string} has no traffic distribution setting")]
async fn service_unset(world: &mut MeshWorld, service: String) -> StepResult {
    let object = world
        .scene
        .fixtures
        .objects
        .iter()
        .find(|o| o.kind() == "Service" && o.name() == service)
        .ok_or_else(|| StepFailure(format!("no Service {service:?} in this scenario")))?;
    let Manifest::Service(svc) = object else {
        unreachable!("kind checked")
    };
    let spec = svc.spec.clone().unwrap_or_default();
    let annotated = svc
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(TRAFFIC_DISTRIBUTION_ANNOTATION));
    ensure!(
        spec.traffic_distribution.is_none()
            && spec.internal_traffic_policy.as_deref() != Some("Local")
            && !annotated,
        "Service {service} does set its traffic distribution: {spec:?}, annotated: {annotated}"
    );
    Ok(())
}

#[then(expr = "giving the Service {string} {setting} is refused, naming {string}")]
async fn setting_refused(
    world: &mut MeshWorld,
    service: String,
    setting: Setting,
    field: String,
) -> StepResult {
    match world
        .try_change_object("Service", &service, |object| set(object, &setting))
        .await?
    {
        Ok(()) => Err(StepFailure(format!(
            "the mesh accepted {setting:?} on Service {service}; it must refuse it"
        ))),
        Err(MeshError::Refused { field: named, .. }) if named == field => Ok(()),
        Err(e @ MeshError::Refused { .. }) => Err(StepFailure(format!(
            "the mesh refused {setting:?} on Service {service} naming another field than \
             {field:?}: {e}"
        ))),
        Err(e) => Err(StepFailure(format!(
            "the mesh did not refuse {setting:?} on Service {service} as an API server \
             refuses an object (naming the object and field {field:?}); it failed: {e}"
        ))),
    }
}

#[given(expr = "the fixture {string} is applied")]
#[when(expr = "the fixture {string} is applied")]
async fn fixture_applied(world: &mut MeshWorld, name: String) -> StepResult {
    let manifests = world.load_fixtures(&[&name])?;
    world.mesh().await?.deploy(&manifests).await?;
    Ok(())
}

#[given(
    expr = "port {int} of every replica above {priority} of {mode} is blocked with iptables DROP"
)]
#[when(expr = "I block port {int} of every replica above {priority} of {mode} with iptables DROP")]
async fn block_above(world: &mut MeshWorld, port: u16, level: Priority, mode: Mode) -> StepResult {
    let client = world.client()?;
    let pods = replica_pods(world, &client, mode.0, |l| l < level.0).await?;
    for pod in pods {
        world.inject(pod, FaultKind::IptablesDrop { port }).await?;
    }
    Ok(())
}

#[when(expr = "I block port {int} of every replica at {priority} of {mode} with iptables DROP")]
async fn block_at(world: &mut MeshWorld, port: u16, level: Priority, mode: Mode) -> StepResult {
    take_down_level(world, level, mode, FaultKind::IptablesDrop { port }).await
}

#[when(expr = "I take down every replica at {priority} of {mode} by {fault}")]
async fn take_down_at(
    world: &mut MeshWorld,
    level: Priority,
    mode: Mode,
    fault: TakeDown,
) -> StepResult {
    take_down_level(world, level, mode, fault.0).await
}

async fn take_down_level(
    world: &mut MeshWorld,
    level: Priority,
    mode: Mode,
    kind: FaultKind,
) -> StepResult {
    let client = world.client()?;
    let pods = replica_pods(world, &client, mode.0, |l| l == level.0).await?;
    ensure!(
        !pods.is_empty(),
        "no replica is at {} of {} for this client: nothing to take down",
        level.0,
        mode.0
    );
    for pod in pods {
        world.inject(pod, kind.clone()).await?;
    }
    Ok(())
}

#[when(expr = "I block port {int} of one replica at {priority} of {mode} with iptables DROP")]
async fn block_one_at(world: &mut MeshWorld, port: u16, level: Priority, mode: Mode) -> StepResult {
    take_down_one_at_level(world, level, mode, FaultKind::IptablesDrop { port }).await
}

#[when(expr = "I take down one replica at {priority} of {mode} by {fault}")]
async fn take_down_one_at(
    world: &mut MeshWorld,
    level: Priority,
    mode: Mode,
    fault: TakeDown,
) -> StepResult {
    take_down_one_at_level(world, level, mode, fault.0).await
}

async fn take_down_one_at_level(
    world: &mut MeshWorld,
    level: Priority,
    mode: Mode,
    kind: FaultKind,
) -> StepResult {
    let client = world.client()?;
    let pods = replica_pods(world, &client, mode.0, |l| l == level.0).await?;
    ensure!(
        pods.len() >= 2,
        "{} of {} has {} replica(s) for this client: taking one down must leave another healthy",
        level.0,
        mode.0,
        pods.len()
    );
    let first = pods.into_iter().next().expect("checked above");
    world.inject(first, kind).await
}

#[when(expr = "I remove the blocks of the replicas at {priority} of {mode} with iptables -F")]
#[when(expr = "the faults on the replicas at {priority} of {mode} are removed")]
async fn unblock_at(world: &mut MeshWorld, level: Priority, mode: Mode) -> StepResult {
    let client = world.client()?;
    let pods: Vec<String> = replica_pods(world, &client, mode.0, |l| l == level.0)
        .await?
        .into_iter()
        .map(|p| p.name)
        .collect();
    world.undo_network_faults_on(&pods).await
}

#[when(expr = "the client {string} sends {int} request(s) to {string}")]
async fn named_client_sends(
    world: &mut MeshWorld,
    client: String,
    count: u32,
    url: String,
) -> StepResult {
    let client = world.deployment(&client);
    world
        .send_from(client, &url, count, Duration::ZERO, Duration::from_secs(5))
        .await
}

/// The level claim of a mode: every answer came from the level (exact), and every replica of
/// the level answered (statistical, at the step's false-alarm rate).
#[then(
    expr = "the replicas at {priority} of {mode} answered every request, each at least once, with {rate}"
)]
async fn level_took_all(
    world: &mut MeshWorld,
    level: Priority,
    mode: Mode,
    rate: Rate,
) -> StepResult {
    let batch = last_batch(world)?;
    let levels = Levels::of(world, &batch.plan.client, mode.0).await?;
    let members = levels.at(level.0);
    ensure!(
        !members.is_empty(),
        "no replica is at {} of {} for {}: {}",
        level.0,
        mode.0,
        batch.plan.client,
        levels.describe()
    );
    world.expect_even(
        levels.pods_at(level.0),
        format!(
            "the replicas at {} of {} answered every request, each at least once",
            level.0, mode.0
        ),
    );
    let answers: Vec<Option<&str>> = batch
        .records
        .iter()
        .map(|r| r.replica().map(|pod| levels.replica_of(pod).unwrap_or(pod)))
        .collect();
    let names: Vec<&str> = members.iter().map(String::as_str).collect();
    let rate = rate.resolve(&*world.thresholds()?);
    spread::answered_only_by(&answers, &names)
        .and_then(|counts| spread::every_member_answered(&counts, rate))
        .map_err(|finding| {
            StepFailure(format!(
                "the replicas at {} of {} for {}: {finding}. Levels: {}",
                level.0,
                mode.0,
                batch.plan.client,
                levels.describe()
            ))
        })
}

#[then(
    expr = "the requests started {after} were answered only by replicas at {priority} of {mode}, and no more failed than {budget}"
)]
async fn after_block_at(
    world: &mut MeshWorld,
    after: After,
    level: Priority,
    mode: Mode,
    budget: Budget,
) -> StepResult {
    let failure_budget = budget.resolve(&*world.thresholds()?);
    let after = after.0.resolve(&*world.thresholds()?);
    let from = world.network_fault()?.handle.injected_at + after;
    let batch = last_batch(world)?;
    let late: Vec<&RequestRecord> = batch
        .records
        .iter()
        .filter(|r| r.started_at >= from)
        .collect();
    ensure!(
        !late.is_empty(),
        "no request started {:?} or more after the block: send for longer",
        after
    );
    let levels = Levels::of(world, &batch.plan.client, mode.0).await?;
    let members = levels.at(level.0);
    let names: Vec<&str> = members.iter().map(String::as_str).collect();
    let answers: Vec<Option<&str>> = late
        .iter()
        .map(|r| r.replica().map(|p| levels.replica_of(p).unwrap_or(p)))
        .collect();
    spread::answers_only_from(&answers, &names, failure_budget)
        .map(|_| ())
        .map_err(|finding| {
            StepFailure(format!(
                "the requests started {after:?} or more after the block did not all reach {} of \
                 {} ({}): {finding}. Levels: {}",
                level.0,
                mode.0,
                members.join(", "),
                levels.describe()
            ))
        })
}

#[then(
    expr = "within {window} the replicas at {priority} of {mode} take every request to {string}"
)]
async fn level_takes_over(
    world: &mut MeshWorld,
    within: Window,
    level: Priority,
    mode: Mode,
    url: String,
) -> StepResult {
    let client = world.client()?;
    let levels = Levels::of(world, &client, mode.0).await?;
    let members = levels.at(level.0);
    ensure!(
        !members.is_empty(),
        "no replica is at {} of {}: {}",
        level.0,
        mode.0,
        levels.describe()
    );
    // Paced probes, bounded by the deadline: the level has taken over once one full round
    // (one request per member) lands there and nothing lands elsewhere.
    let every = Duration::from_millis(50);
    let within = within.resolve(&*world.thresholds()?);
    let count = (within.as_millis() / every.as_millis()).clamp(1, 200) as u32;
    let started = world.elapsed();
    world
        .send_from(client, &url, count, every, Duration::from_secs(2))
        .await?;
    let batch = world.last_batch()?;
    let stream: Vec<(Duration, Option<&str>)> = batch
        .iter()
        .map(|r| {
            let replica = r.replica().map(|p| levels.replica_of(p).unwrap_or(p));
            (r.started_at.saturating_sub(started), replica)
        })
        .collect();
    let names: Vec<&str> = members.iter().map(String::as_str).collect();
    failover::took_over_within(&stream, &names, within)
        .map(|_| ())
        .map_err(|why| {
            StepFailure(format!(
                "within {within:?} the replicas at {} of {} ({}) did not take every request: \
                 {why}; answers in order: {}. Levels: {}",
                level.0,
                mode.0,
                members.join(", "),
                summary::runs(stream.iter().map(|(_, r)| r.unwrap_or("<failed>"))),
                levels.describe()
            ))
        })
}

#[then(expr = "every request failed within {window}")]
async fn failed_fast(world: &mut MeshWorld, within: Window) -> StepResult {
    let within = within.resolve(&*world.thresholds()?);
    let slow: Vec<String> = world
        .last_batch()?
        .iter()
        .filter(|r| !r.failed() || r.latency > within)
        .map(|r| format!("#{} {:?} after {:?}", r.index, r.outcome, r.latency))
        .collect();
    ensure!(
        slow.is_empty(),
        "every request should have failed within {:?} (the connection dropped, not left to \
         time out); these did not: {slow:?}",
        within
    );
    Ok(())
}

#[then("no request was answered")]
async fn none_answered(world: &mut MeshWorld) -> StepResult {
    let answered: Vec<String> = world
        .last_batch()?
        .iter()
        .filter_map(|r| r.replica().map(|p| format!("#{} by {p}", r.index)))
        .collect();
    ensure!(
        answered.is_empty(),
        "{} request(s) were answered, none should be: {answered:?}",
        answered.len()
    );
    Ok(())
}

/// The latest batch with its plan (which client sent it).
fn last_batch(world: &MeshWorld) -> Result<RequestBatch, StepFailure> {
    world
        .observations
        .batches
        .last()
        .cloned()
        .ok_or_else(|| StepFailure("no requests were sent yet".into()))
}

/// Applies one setting to a Service, or the annotation to a ServiceEntry (its only setting).
fn set(object: &mut Manifest, setting: &Setting) -> StepResult {
    let annotate = |meta: &mut ObjectMeta| {
        meta.annotations
            .get_or_insert_with(Default::default)
            .insert(
                TRAFFIC_DISTRIBUTION_ANNOTATION.to_string(),
                setting.value.clone(),
            );
    };
    let service = match object {
        Manifest::ServiceEntry(entry) if setting.field == SettingField::Annotation => {
            annotate(&mut entry.metadata);
            return Ok(());
        }
        Manifest::Service(service) => service,
        other => {
            return Err(StepFailure(format!(
                "{setting:?} does not apply to {}: a ServiceEntry takes only the annotation",
                other.describe()
            )));
        }
    };
    match setting.field {
        SettingField::Annotation => annotate(&mut service.metadata),
        SettingField::Spec => {
            service
                .spec
                .get_or_insert_with(Default::default)
                .traffic_distribution = Some(setting.value.clone());
        }
        SettingField::InternalTrafficPolicy => {
            service
                .spec
                .get_or_insert_with(Default::default)
                .internal_traffic_policy = Some(setting.value.clone());
        }
    }
    Ok(())
}

/// A data table as rows keyed by header; `required` columns must be there, `optional` may be.
fn table(
    step: &Step,
    required: &[&str],
    optional: &[&str],
) -> Result<Vec<BTreeMap<String, String>>, StepFailure> {
    let rows = step
        .table
        .as_ref()
        .map(|t| t.rows.clone())
        .unwrap_or_default();
    let Some((header, body)) = rows.split_first() else {
        return Err(StepFailure(format!(
            "step {:?} needs a table with the columns {}",
            step.value,
            required.join(", ")
        )));
    };
    for column in header {
        ensure!(
            required.contains(&column.as_str()) || optional.contains(&column.as_str()),
            "unknown column {column:?} in the table of {:?} (columns: {})",
            step.value,
            required
                .iter()
                .chain(optional)
                .copied()
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for column in required {
        ensure!(
            header.iter().any(|h| h == column),
            "the table of {:?} lacks the column {column:?}",
            step.value
        );
    }
    Ok(body
        .iter()
        .map(|row| header.iter().cloned().zip(row.iter().cloned()).collect())
        .collect())
}

/// Every replica of the scene with its pods and its level for one client under one mode.
struct Levels {
    /// (replica, its pods, its level).
    replicas: Vec<(String, Vec<PodInfo>, Option<PriorityLevel>)>,
}

impl Levels {
    async fn of(
        world: &mut MeshWorld,
        client: &DeploymentRef,
        mode: TrafficDistribution,
    ) -> Result<Levels, StepFailure> {
        let topology = world.scene.topology.clone();
        let at = topology
            .clients
            .iter()
            .find(|c| c.deployment_name() == client.name)
            .and_then(|c| topology.placement(&c.node, None))
            .ok_or_else(|| {
                StepFailure(format!(
                    "client {client} was not placed on a node of this scenario's topology"
                ))
            })?;
        let mut replicas = Vec::new();
        for replica in &topology.replicas {
            let placement: Placement = topology
                .placement(&replica.node, replica.network.as_deref())
                .ok_or_else(|| StepFailure(format!("replica {} has no node", replica.name)))?;
            let pods = world.pods(&replica.deployment_name()).await?;
            replicas.push((
                replica.name.clone(),
                pods,
                priority_level(mode, &at, &placement),
            ));
        }
        Ok(Levels { replicas })
    }

    fn at(&self, level: PriorityLevel) -> Vec<String> {
        self.replicas
            .iter()
            .filter(|(_, _, l)| *l == Some(level))
            .map(|(name, _, _)| name.clone())
            .collect()
    }

    /// Pod names of the replicas at `level`.
    fn pods_at(&self, level: PriorityLevel) -> Vec<String> {
        self.replicas
            .iter()
            .filter(|(_, _, l)| *l == Some(level))
            .flat_map(|(_, pods, _)| pods.iter().map(|p| p.name.clone()))
            .collect()
    }

    fn replica_of(&self, pod: &str) -> Option<&str> {
        self.replicas
            .iter()
            .find(|(_, pods, _)| pods.iter().any(|p| p.name == pod))
            .map(|(name, _, _)| name.as_str())
    }

    fn describe(&self) -> String {
        self.replicas
            .iter()
            .map(|(name, _, l)| {
                format!(
                    "{name}={}",
                    l.map(|l| l.to_string())
                        .unwrap_or_else(|| "unreachable".into())
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The pods of the replicas whose level for `client` satisfies `wanted`.
async fn replica_pods(
    world: &mut MeshWorld,
    client: &DeploymentRef,
    mode: TrafficDistribution,
    wanted: impl Fn(PriorityLevel) -> bool,
) -> Result<Vec<PodInfo>, StepFailure> {
    let levels = Levels::of(world, client, mode).await?;
    Ok(levels
        .replicas
        .into_iter()
        .filter(|(_, _, level)| level.is_some_and(&wanted))
        .flat_map(|(_, pods, _)| pods)
        .collect())
}

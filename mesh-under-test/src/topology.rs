//! A topology (the model's: the nodes of a cluster with their locality and network, and where
//! each replica and each client runs), read from `fixtures/topologies/*.yaml` or built from a
//! feature's tables, becomes Kubernetes objects here: Nodes with locality labels, the
//! `istio-system` Namespace with the mesh's network label, and one Deployment per replica pinned
//! to its node, so every driver deploys it the way a user would.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Node};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::MeshError;
use crate::manifest::{Manifest, ManifestSet};
use meshcert_control_plane::{
    ISTIO_SYSTEM, NETWORK_LABEL, REGION_LABEL, SUBZONE_LABEL, ZONE_LABEL,
};

pub use meshcert_model::topology::{ClientPlacement, ReplicaPlacement, Topology, TopologyNode};

/// Node label Kubernetes sets to the node's name; pods are pinned with it.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";
/// Pod label that tells one replica Deployment's pods from another's of the same app.
pub const REPLICA_LABEL: &str = "meshcert.dev/replica";

/// Reads and checks `path`; errors name the file, line and field.
pub fn load(path: &Path) -> Result<Topology, MeshError> {
    let fail = |message: String| MeshError::Manifest {
        file: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(MeshError::io(format!(
        "cannot read topology {} (topologies live in fixtures/topologies/)",
        path.display()
    )))?;
    let topology: Topology =
        serde_saphyr::from_str(&text).map_err(|e| fail(format!("not a valid topology: {e}")))?;
    topology.validate().map_err(fail)?;
    Ok(topology)
}

/// The Node objects, with the locality labels istiod reads.
fn node_objects(topology: &Topology) -> Vec<Node> {
    topology
        .nodes
        .iter()
        .map(|n| {
            let mut labels = BTreeMap::from([(HOSTNAME_LABEL.to_string(), n.name.clone())]);
            for (key, value) in [
                (REGION_LABEL, &n.region),
                (ZONE_LABEL, &n.zone),
                (SUBZONE_LABEL, &n.subzone),
            ] {
                if !value.is_empty() {
                    labels.insert(key.to_string(), value.clone());
                }
            }
            Node {
                metadata: ObjectMeta {
                    name: Some(n.name.clone()),
                    labels: Some(labels),
                    ..Default::default()
                },
                ..Default::default()
            }
        })
        .collect()
}

/// `istio-system` with the mesh's network label; `None` when the mesh has no network name.
fn network_namespace(topology: &Topology) -> Option<Namespace> {
    (!topology.network.is_empty()).then(|| Namespace {
        metadata: ObjectMeta {
            name: Some(ISTIO_SYSTEM.to_string()),
            labels: Some(BTreeMap::from([(
                NETWORK_LABEL.to_string(),
                topology.network.clone(),
            )])),
            ..Default::default()
        },
        ..Default::default()
    })
}

/// Everything to apply: the network namespace, the nodes, then the fixture objects the
/// placements need (namespaces, service accounts, services) and one pinned Deployment per
/// client and replica, made from the fixture Deployment of its app.
pub fn manifests(topology: &Topology, fixtures: &ManifestSet) -> Result<ManifestSet, MeshError> {
    let mut out = ManifestSet::default();
    out.objects
        .extend(network_namespace(topology).map(Manifest::Namespace));
    out.objects
        .extend(node_objects(topology).into_iter().map(Manifest::Node));
    let apps: BTreeSet<&str> = topology
        .clients
        .iter()
        .map(|c| c.app.as_str())
        .chain(topology.replicas.iter().map(|r| r.app.as_str()))
        .collect();
    for app in &apps {
        template(fixtures, app)?;
    }
    if !apps.is_empty() {
        out.objects.extend(
            fixtures
                .objects
                .iter()
                .filter(|o| !matches!(o, Manifest::Deployment(_) | Manifest::Node(_)))
                .cloned(),
        );
    }
    for client in &topology.clients {
        let node = topology.node(&client.node).expect("validated");
        let deployment = pinned(
            template(fixtures, &client.app)?,
            client.deployment_name(),
            None,
            &node.name,
            pod_network_label(topology, node, None),
        );
        out.objects.push(Manifest::Deployment(deployment));
    }
    for replica in &topology.replicas {
        let node = topology.node(&replica.node).expect("validated");
        let deployment = pinned(
            template(fixtures, &replica.app)?,
            &replica.deployment_name(),
            Some(&replica.name),
            &node.name,
            pod_network_label(topology, node, replica.network.as_deref()),
        );
        out.objects.push(Manifest::Deployment(deployment));
    }
    Ok(out)
}

/// A pod gets a network label only where its network is not simply the mesh's.
fn pod_network_label(
    topology: &Topology,
    node: &TopologyNode,
    own: Option<&str>,
) -> Option<String> {
    own.map(str::to_string).or_else(|| {
        node.network
            .as_ref()
            .filter(|n| **n != topology.network)
            .cloned()
    })
}

fn template<'a>(fixtures: &'a ManifestSet, app: &str) -> Result<&'a Deployment, MeshError> {
    fixtures
        .deployments()
        .find(|d| d.metadata.name.as_deref() == Some(app))
        .ok_or_else(|| {
            MeshError::InvalidRequest(format!(
                "the topology places {app:?}, but no fixture defines Deployment {app:?} \
                 (fixtures define: {})",
                fixtures
                    .deployments()
                    .filter_map(|d| d.metadata.name.as_deref())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

/// A one-replica copy of `base` named `name`, pinned to `node`. A replica label joins the
/// selector so that Deployments of one app never adopt each other's pods.
fn pinned(
    base: &Deployment,
    name: &str,
    replica: Option<&str>,
    node: &str,
    network: Option<String>,
) -> Deployment {
    let mut deployment = base.clone();
    deployment.metadata.name = Some(name.to_string());
    let spec = deployment.spec.get_or_insert_with(Default::default);
    spec.replicas = Some(1);
    if let Some(replica) = replica {
        spec.selector
            .match_labels
            .get_or_insert_with(Default::default)
            .insert(REPLICA_LABEL.to_string(), replica.to_string());
    }
    let template = &mut spec.template;
    let labels = template
        .metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(Default::default);
    if let Some(replica) = replica {
        labels.insert(REPLICA_LABEL.to_string(), replica.to_string());
    }
    if let Some(network) = network {
        labels.insert(NETWORK_LABEL.to_string(), network);
    }
    let pod = template.spec.get_or_insert_with(Default::default);
    pod.node_name = None;
    pod.node_selector = Some(BTreeMap::from([(
        HOSTNAME_LABEL.to_string(),
        node.to_string(),
    )]));
    deployment
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixtures() -> ManifestSet {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures");
        ManifestSet::load_all([
            dir.join("in-ambient.yaml"),
            dir.join("client-in-ambient.yaml"),
        ])
        .unwrap()
    }

    fn ladder() -> Topology {
        let path =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/topologies/ladder.yaml");
        load(&path).unwrap()
    }

    #[test]
    fn the_ladder_becomes_pinned_deployments() {
        let topology = ladder();
        let set = manifests(&topology, &fixtures()).unwrap();
        let deployments: Vec<&Deployment> = set.deployments().collect();
        assert_eq!(deployments.len(), topology.replicas.len() + 1);
        let far = deployments
            .iter()
            .find(|d| d.metadata.name.as_deref() == Some("in-ambient-other-network"))
            .unwrap();
        let spec = far.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(1));
        let pod_labels = spec
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .as_ref()
            .unwrap();
        assert_eq!(
            pod_labels.get(NETWORK_LABEL).map(String::as_str),
            Some("net2")
        );
        assert_eq!(
            pod_labels.get("app").map(String::as_str),
            Some("in-ambient")
        );
        assert_eq!(
            spec.selector
                .match_labels
                .as_ref()
                .unwrap()
                .get(REPLICA_LABEL)
                .map(String::as_str),
            Some("other-network")
        );
        let same = deployments
            .iter()
            .find(|d| d.metadata.name.as_deref() == Some("in-ambient-same-node"))
            .unwrap();
        let same_labels = same
            .spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap();
        assert!(
            !same_labels
                .labels
                .as_ref()
                .unwrap()
                .contains_key(NETWORK_LABEL)
        );
        assert!(
            set.services()
                .any(|s| s.metadata.name.as_deref() == Some("in-ambient"))
        );
        assert!(set.find_namespace(ISTIO_SYSTEM).is_some());
        let node_d = set.find_node("node-d").unwrap();
        let labels = node_d.metadata.labels.as_ref().unwrap();
        assert_eq!(labels.get(ZONE_LABEL).map(String::as_str), Some("z2"));
    }

    #[test]
    fn placements_take_the_pod_label_then_the_node_then_the_mesh() {
        let mut topology = ladder();
        assert_eq!(topology.placement("node-a", None).unwrap().network, "net1");
        assert_eq!(topology.placement("node-f", None).unwrap().network, "net2");
        assert_eq!(
            topology.placement("node-a", Some("net3")).unwrap().network,
            "net3"
        );
        topology.network = "net9".into();
        assert_eq!(topology.placement("node-a", None).unwrap().network, "net9");
        assert!(topology.placement("node-z", None).is_none());
    }

    #[rstest::rstest]
    #[case("nodes: [{name: a}, {name: a}]", "nodes[1].name")]
    #[case("nodes: [{name: A}]", "nodes[0].name")]
    #[case(
        "nodes: [{name: a}]\nreplicas: [{app: x, name: r, node: b}]",
        "replicas[0].node"
    )]
    #[case("nodes: [{name: a}]\nclients: [{app: c, node: b}]", "clients[0].node")]
    #[case(
        "nodes: [{name: a}]\nreplicas: [{app: x, name: r, node: a}, {app: x, name: r, node: a}]",
        "replicas[1].name"
    )]
    fn invalid_topologies_name_the_field(#[case] text: &str, #[case] field: &str) {
        let topology: Topology = serde_saphyr::from_str(text).unwrap();
        let err = topology.validate().unwrap_err();
        assert!(err.contains(field), "{err}");
    }

    #[test]
    fn unknown_keys_and_lines_are_reported() {
        let dir = std::env::temp_dir().join(format!("meshcert-topology-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.yaml");
        std::fs::write(&path, "network: net1\nnodes:\n- name: a\n  zoen: z1\n").unwrap();
        let err = load(&path).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            err.contains("bad.yaml") && err.contains("zoen") && err.contains('4'),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_app_names_the_fixtures() {
        let topology: Topology = serde_saphyr::from_str(
            "nodes: [{name: a}]\nreplicas: [{app: nginx, name: r, node: a}]",
        )
        .unwrap();
        let err = manifests(&topology, &fixtures()).unwrap_err().to_string();
        assert!(err.contains("nginx") && err.contains("in-ambient"), "{err}");
    }
}

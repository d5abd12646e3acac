//! A topology: the nodes of a cluster with their locality and network, and where each replica and
//! each client runs. Read from `fixtures/topologies/*.yaml` or built from a feature's tables, it
//! becomes Kubernetes objects: Nodes with locality labels, the `istio-system` Namespace with the
//! mesh's network label, and one Deployment per replica pinned to its node, so every driver
//! deploys it the way a user would.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Node};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use crate::MeshError;
use crate::manifest::{Manifest, ManifestSet};
use meshcert_control_plane::{
    ISTIO_SYSTEM, NETWORK_LABEL, REGION_LABEL, SUBZONE_LABEL, ZONE_LABEL,
};
use meshcert_model::Placement;

/// Node label Kubernetes sets to the node's name; pods are pinned with it.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";
/// Pod label that tells one replica Deployment's pods from another's of the same app.
pub const REPLICA_LABEL: &str = "meshcert.dev/replica";

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Topology {
    /// The mesh's network: the `topology.istio.io/network` label of `istio-system`.
    #[serde(default)]
    pub network: String,
    pub nodes: Vec<TopologyNode>,
    #[serde(default)]
    pub clients: Vec<ClientPlacement>,
    #[serde(default)]
    pub replicas: Vec<ReplicaPlacement>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TopologyNode {
    pub name: String,
    #[serde(default)]
    pub region: String,
    #[serde(default)]
    pub zone: String,
    #[serde(default)]
    pub subzone: String,
    /// A network other than the mesh's: pods here carry the `topology.istio.io/network` label,
    /// as pods of another network do in a multi-network mesh.
    #[serde(default)]
    pub network: Option<String>,
}

/// A client deployment of the fixtures (`app`), deployed as `name` on `node`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClientPlacement {
    pub app: String,
    #[serde(default)]
    pub name: Option<String>,
    pub node: String,
}

/// One replica of an app of the fixtures, deployed as Deployment `<app>-<name>` on `node`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReplicaPlacement {
    pub app: String,
    pub name: String,
    pub node: String,
    /// The pod's own `topology.istio.io/network` label, overriding its node's network.
    #[serde(default)]
    pub network: Option<String>,
}

impl ClientPlacement {
    pub fn deployment_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.app)
    }
}

impl ReplicaPlacement {
    pub fn deployment_name(&self) -> String {
        format!("{}-{}", self.app, self.name)
    }
}

impl Topology {
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
        let topology: Topology = serde_saphyr::from_str(&text)
            .map_err(|e| fail(format!("not a valid topology: {e}")))?;
        topology.validate().map_err(fail)?;
        Ok(topology)
    }

    /// Names are DNS labels, unique, and every placement names a known node.
    pub fn validate(&self) -> Result<(), String> {
        let mut nodes = BTreeSet::new();
        for (i, node) in self.nodes.iter().enumerate() {
            check_name(&node.name, &format!("nodes[{i}].name"))?;
            if !nodes.insert(node.name.as_str()) {
                return Err(format!(
                    "field `nodes[{i}].name`: node {:?} is listed twice",
                    node.name
                ));
            }
        }
        let known = |node: &str, field: String| {
            if nodes.contains(node) {
                Ok(())
            } else {
                Err(format!(
                    "field `{field}`: node {node:?} is not among the nodes ({})",
                    self.nodes
                        .iter()
                        .map(|n| n.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            }
        };
        let mut deployments = BTreeSet::new();
        for (i, client) in self.clients.iter().enumerate() {
            known(&client.node, format!("clients[{i}].node"))?;
            check_name(client.deployment_name(), &format!("clients[{i}].name"))?;
            if !deployments.insert(client.deployment_name().to_string()) {
                return Err(format!(
                    "field `clients[{i}]`: {:?} is placed twice",
                    client.deployment_name()
                ));
            }
        }
        for (i, replica) in self.replicas.iter().enumerate() {
            known(&replica.node, format!("replicas[{i}].node"))?;
            check_name(&replica.deployment_name(), &format!("replicas[{i}].name"))?;
            if !deployments.insert(replica.deployment_name()) {
                return Err(format!(
                    "field `replicas[{i}].name`: replica {:?} of {:?} is placed twice",
                    replica.name, replica.app
                ));
            }
        }
        Ok(())
    }

    pub fn node(&self, name: &str) -> Option<&TopologyNode> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The network a pod on `node` is in, given its own label, as istiod decides it.
    fn network_of(&self, node: &TopologyNode, own: Option<&str>) -> String {
        own.or(node.network.as_deref())
            .unwrap_or(&self.network)
            .to_string()
    }

    /// Where a pod on `node` (with its own network label, if any) runs, as ranking sees it.
    pub fn placement(&self, node: &str, own_network: Option<&str>) -> Option<Placement> {
        let n = self.node(node)?;
        Some(Placement {
            network: self.network_of(n, own_network),
            region: n.region.clone(),
            zone: n.zone.clone(),
            subzone: n.subzone.clone(),
            node: n.name.clone(),
        })
    }

    /// The Node objects, with the locality labels istiod reads.
    pub fn node_objects(&self) -> Vec<Node> {
        self.nodes
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
    pub fn network_namespace(&self) -> Option<Namespace> {
        (!self.network.is_empty()).then(|| Namespace {
            metadata: ObjectMeta {
                name: Some(ISTIO_SYSTEM.to_string()),
                labels: Some(BTreeMap::from([(
                    NETWORK_LABEL.to_string(),
                    self.network.clone(),
                )])),
                ..Default::default()
            },
            ..Default::default()
        })
    }

    /// Everything to apply: the network namespace, the nodes, then the fixture objects the
    /// placements need (namespaces, service accounts, services) and one pinned Deployment per
    /// client and replica, made from the fixture Deployment of its app.
    pub fn manifests(&self, fixtures: &ManifestSet) -> Result<ManifestSet, MeshError> {
        let mut out = ManifestSet::default();
        out.objects
            .extend(self.network_namespace().map(Manifest::Namespace));
        out.objects
            .extend(self.node_objects().into_iter().map(Manifest::Node));
        let apps: BTreeSet<&str> = self
            .clients
            .iter()
            .map(|c| c.app.as_str())
            .chain(self.replicas.iter().map(|r| r.app.as_str()))
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
        for client in &self.clients {
            let node = self.node(&client.node).expect("validated");
            let deployment = pinned(
                template(fixtures, &client.app)?,
                client.deployment_name(),
                None,
                &node.name,
                self.pod_network_label(node, None),
            );
            out.objects.push(Manifest::Deployment(deployment));
        }
        for replica in &self.replicas {
            let node = self.node(&replica.node).expect("validated");
            let deployment = pinned(
                template(fixtures, &replica.app)?,
                &replica.deployment_name(),
                Some(&replica.name),
                &node.name,
                self.pod_network_label(node, replica.network.as_deref()),
            );
            out.objects.push(Manifest::Deployment(deployment));
        }
        Ok(out)
    }

    /// A pod gets a network label only where its network is not simply the mesh's.
    fn pod_network_label(&self, node: &TopologyNode, own: Option<&str>) -> Option<String> {
        own.map(str::to_string).or_else(|| {
            node.network
                .as_ref()
                .filter(|n| **n != self.network)
                .cloned()
        })
    }
}

fn check_name(name: &str, field: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "field `{field}`: {name:?} is not a DNS label (lowercase letters, digits and '-', \
             at most 63 characters)"
        ))
    }
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
        Topology::load(&path).unwrap()
    }

    #[test]
    fn the_ladder_becomes_pinned_deployments() {
        let topology = ladder();
        let set = topology.manifests(&fixtures()).unwrap();
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
        let err = Topology::load(&path).unwrap_err().to_string();
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
        let err = topology.manifests(&fixtures()).unwrap_err().to_string();
        assert!(err.contains("nginx") && err.contains("in-ambient"), "{err}");
    }
}

//! A topology: the nodes of a cluster with their locality and network, and where each replica and
//! each client runs. The seam crate reads it from `fixtures/topologies/*.yaml` and turns it into
//! Kubernetes objects; here it is plain data with its checks and the placements ranking reads.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::placement::Placement;

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

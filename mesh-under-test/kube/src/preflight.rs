//! What a cluster has, checked before any scenario: the API server answers, a ztunnel DaemonSet
//! runs in `istio-system` (its image says its version and whether it is Solo's build), the
//! nodes and their localities. The report goes into the results; a cluster without ztunnel is
//! one clear error.

use std::collections::BTreeSet;
use std::fmt;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::{Api, ListParams};
use meshcert_mesh::{MeshError, Profile};

use crate::{api_error, status_code};

pub const ISTIO_SYSTEM: &str = "istio-system";
pub const ZTUNNEL: &str = "ztunnel";

/// What the preflight found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterReport {
    pub server_version: String,
    pub ztunnel_image: String,
    /// The image tag (`1.30.5`, `1.30.5-solo`).
    pub ztunnel_version: String,
    pub ztunnel_ready: i32,
    pub ztunnel_desired: i32,
    /// Solo's builds carry `solo` in their image; everything else is held to upstream's.
    pub profile: Profile,
    pub nodes: usize,
    /// `region/zone` of the nodes that have both labels.
    pub zones: BTreeSet<String>,
}

impl fmt::Display for ClusterReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Kubernetes {}, ztunnel {} ({} of {} ready, profile {}), {} nodes in {} zones",
            self.server_version,
            self.ztunnel_image,
            self.ztunnel_ready,
            self.ztunnel_desired,
            self.profile,
            self.nodes,
            self.zones.len()
        )
    }
}

/// The profile an image declares.
pub fn profile_of(image: &str) -> Profile {
    if image.to_ascii_lowercase().contains("solo") {
        Profile::Solo
    } else {
        Profile::Istio
    }
}

/// `repo/ztunnel:1.30.5@sha256:..` -> `1.30.5`.
pub fn tag_of(image: &str) -> String {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last.split_once(':')
        .map(|(_, tag)| tag.to_string())
        .unwrap_or_else(|| "latest".into())
}

pub async fn preflight(client: &Client) -> Result<ClusterReport, MeshError> {
    let version = client
        .apiserver_version()
        .await
        .map_err(|e| api_error("GET /version", e))?;
    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), ISTIO_SYSTEM);
    let ztunnel = match daemonsets.get_opt(ZTUNNEL).await {
        Ok(Some(ds)) => ds,
        Ok(None) => {
            return Err(MeshError::Environment(format!(
                "no ztunnel DaemonSet in {ISTIO_SYSTEM}: Istio ambient is not installed \
                 (ci/install-istio.sh installs it)"
            )));
        }
        Err(e) => return Err(api_error("get DaemonSet istio-system/ztunnel", e)),
    };
    let image = ztunnel
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    let status = ztunnel.status.unwrap_or_default();
    let nodes: Api<Node> = Api::all(client.clone());
    let nodes = match nodes.list(&ListParams::default()).await {
        Ok(list) => list.items,
        Err(e) if status_code(&e) == Some(403) => Vec::new(),
        Err(e) => return Err(api_error("list nodes", e)),
    };
    let zones = nodes
        .iter()
        .filter_map(|n| {
            let labels = n.metadata.labels.as_ref()?;
            Some(format!(
                "{}/{}",
                labels.get("topology.kubernetes.io/region")?,
                labels.get("topology.kubernetes.io/zone")?
            ))
        })
        .collect();
    Ok(ClusterReport {
        server_version: version.git_version,
        ztunnel_version: tag_of(&image),
        profile: profile_of(&image),
        ztunnel_image: image,
        ztunnel_ready: status.number_ready,
        ztunnel_desired: status.desired_number_scheduled,
        nodes: nodes.len(),
        zones,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(
        "docker.io/istio/ztunnel:1.30.5-distroless",
        "1.30.5-distroless",
        Profile::Istio
    )]
    #[case(
        "us-docker.pkg.dev/soloio-img/istio/ztunnel:1.30.5-solo",
        "1.30.5-solo",
        Profile::Solo
    )]
    #[case("localhost:5000/ztunnel@sha256:abc", "latest", Profile::Istio)]
    #[case(
        "gcr.io/istio-release/ztunnel:1.30.5@sha256:abc",
        "1.30.5",
        Profile::Istio
    )]
    fn images_give_version_and_profile(
        #[case] image: &str,
        #[case] tag: &str,
        #[case] profile: Profile,
    ) {
        assert_eq!(tag_of(image), tag);
        assert_eq!(profile_of(image), profile);
    }
}

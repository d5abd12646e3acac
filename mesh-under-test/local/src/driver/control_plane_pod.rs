//! Fed by the control plane: its pod, the token each pod gets, which pods run a ztunnel (every enrolled one) and how their workloads are reached (HBONE).

use meshcert_model::Identity;
use meshcert_ztunnel::local_config::{LocalConfig, Protocol};

use super::*;
use crate::istiod::ISTIOD_POD;

impl LocalMesh {
    /// The control plane's pod, on the first node, made with the mesh's first pod (a mesh fed
    /// by file has none).
    pub(super) async fn ensure_istiod(&mut self) -> Result<(), MeshError> {
        if self.options.config_source != ConfigSource::ControlPlane || self.istiod.is_some() {
            return Ok(());
        }
        let node = self
            .nodes
            .first()
            .map(|n| n.name.clone())
            .ok_or_else(|| MeshError::InvalidRequest("the mesh has no node".into()))?;
        let plan = self.topology.plan_system_pod(&node, ISTIOD_POD)?;
        let (run, ledger) = (self.run.clone(), self.ledger.clone());
        let pod = blocking(move || netns::create_pod(&run, &ledger, &plan)).await?;
        self.wait_reachable(&node, &pod).await?;
        // Held until its server is in the ledger: a closing run stops it or it never started.
        let _creating = self.run.creating("the control plane")?;
        self.istiod = Some(Istiod::start(&self.sockets, &self.ledger, pod, &self.dir)?);
        Ok(())
    }

    /// A new pod's token, granting the identity of its service account until the pod is
    /// stopped; none when fed by file.
    pub(super) fn issue_token(
        &self,
        pod: &PodRef,
        service_account: &str,
    ) -> Result<Option<EntryId>, MeshError> {
        let Some(istiod) = &self.istiod else {
            return Ok(None);
        };
        let identity = Identity::new(
            control_plane::CLUSTER_DOMAIN,
            &pod.namespace,
            service_account,
        );
        istiod.issue_token(&self.ledger, pod, identity).map(Some)
    }

    /// The pods that run a ztunnel: every client; fed by the control plane, also every pod
    /// it lists, that is every pod enrolled in the mesh.
    pub(super) fn ztunnel_pods(&self, config: &LocalConfig) -> Vec<PodRef> {
        let enrolled = |pod: &PodRef| {
            self.options.config_source == ConfigSource::ControlPlane
                && config
                    .workloads
                    .iter()
                    .any(|w| w.namespace == pod.namespace && w.name == pod.name)
        };
        self.pods
            .iter()
            .filter(|(pod, p)| {
                enrolled(pod)
                    || self
                        .deployments
                        .get(&p.deployment)
                        .is_some_and(|d| d.template.is_client())
            })
            .map(|(pod, _)| pod.clone())
            .collect()
    }

    /// Every pod the config lists runs a ztunnel (see `ztunnel_pods`), so, as in a cluster,
    /// it is reached through that ztunnel: its workload says `HBONE`.
    pub(super) fn reach_pods_through_hbone(&self, config: &mut LocalConfig) {
        for workload in &mut config.workloads {
            let pod = PodRef {
                namespace: workload.namespace.clone(),
                name: workload.name.clone(),
            };
            if self.pods.contains_key(&pod) {
                workload.protocol = Protocol::HBONE;
            }
        }
    }

    /// How a pod's ztunnel gets its config: its own file, or the control plane.
    pub(super) fn config_feed(&self, pod: &PodRef) -> Result<ConfigFeed, MeshError> {
        match (self.options.config_source, &self.istiod) {
            (ConfigSource::File, _) => Ok(ConfigFeed::File(
                self.dir.join(format!("ztunnel-{}.yaml", pod.name)),
            )),
            (ConfigSource::ControlPlane, Some(istiod)) => {
                Ok(ConfigFeed::ControlPlane(istiod.access(pod)))
            }
            (ConfigSource::ControlPlane, None) => Err(MeshError::Environment(format!(
                "the ztunnel of {pod} is to be fed by the control plane, which is not running"
            ))),
        }
    }
}

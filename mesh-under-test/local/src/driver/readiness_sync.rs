//! The kubelet's side of readiness: probers report to the board; a change is written into the pods the control plane sees and pushed.

use super::*;

impl LocalMesh {
    /// Has the control plane act on what the kubelet reported since the last look: pods
    /// whose readiness changed get their Ready condition rewritten and every ztunnel the new
    /// config (their workloads Healthy or Unhealthy), pushed as any change is. Whether
    /// anything changed. `send_requests` does this as changes come; call it to act on one
    /// without traffic.
    pub async fn sync_readiness(&mut self) -> Result<bool, MeshError> {
        if !self
            .pods
            .iter()
            .any(|(pod, s)| self.readiness_differs(pod, s))
        {
            return Ok(false);
        }
        self.push(&BTreeSet::new()).await?;
        Ok(true)
    }

    /// What the kubelet reports for a pod now: its app runs and every probed container is
    /// ready. A client (no app) is Ready once created.
    pub(super) fn kubelet_ready(&self, pod: &PodRef, state: &PodState) -> bool {
        if state.app.is_none() {
            return true;
        }
        !state.killed && self.board.ready(pod).unwrap_or(true)
    }

    pub(super) fn readiness_differs(&self, pod: &PodRef, state: &PodState) -> bool {
        cluster::pod_ready(&state.object) != self.kubelet_ready(pod, state)
    }

    /// Writes the kubelet's readiness into the Pod objects; records each change.
    pub(super) fn refresh_readiness(&mut self) {
        let now = self.elapsed();
        let mut changes = Vec::new();
        for (pod, state) in &self.pods {
            if !self.readiness_differs(pod, state) {
                continue;
            }
            let ready = !cluster::pod_ready(&state.object);
            let reason = if state.killed && !ready {
                "the app's process was killed".to_string()
            } else {
                self.board.describe(pod)
            };
            changes.push(ReadinessChange {
                pod: pod.clone(),
                ready,
                at: self.board.since(pod).unwrap_or(now),
                pushed_at: None,
                reason,
            });
        }
        for change in changes {
            let state = self.pods.get_mut(&change.pod).expect("listed above");
            cluster::set_ready(&mut state.object, change.ready, &change.reason);
            tracing::info!(mesh = self.number, pod = %change.pod, ready = change.ready, reason = %change.reason, "pod readiness changed");
            self.readiness.push(change);
        }
    }

    /// Runs `work` (which must not need the mesh) while acting on readiness changes as the
    /// kubelet reports them, as a cluster's control plane does while traffic flows; a push
    /// under way when `work` ends is finished first.
    ///
    /// A push whose confirmation times out (the ztunnel did not show the new config in time)
    /// does not fail `work`: only a ztunnel that exits does.
    ///
    /// A ztunnel that reads its config once takes a push by restarting, the harness's stand-in
    /// for xDS, which a cluster's push never costs: such a push first takes `quiet` (which
    /// `work` holds during each request), so no request is in flight while it restarts and the
    /// next waits for it, rather than fail on it.
    pub(super) async fn alongside_readiness<T>(
        &mut self,
        quiet: Arc<tokio::sync::Mutex<()>>,
        work: impl std::future::Future<Output = Result<T, MeshError>>,
    ) -> Result<T, MeshError> {
        let board = self.board.clone();
        let restarts = self.options.config_source == ConfigSource::File
            && !self.options.ztunnel.reloads_config;
        tokio::pin!(work);
        loop {
            tokio::select! {
                done = &mut work => return done,
                () = board.changed() => {
                    let quiet = quiet.clone();
                    let push = async {
                        let _quiet = if restarts { Some(quiet.lock().await) } else { None };
                        match self.sync_readiness().await {
                            // A cluster's push is never confirmed either: the traffic shows
                            // whether it took effect, and a slow machine must not fail the step.
                            Err(MeshError::Timeout { what, waited, last }) => {
                                tracing::warn!(%what, ?waited, %last, "a readiness push was not confirmed; the traffic judges it");
                                Ok(true)
                            }
                            other => other,
                        }
                    };
                    tokio::pin!(push);
                    tokio::select! {
                        pushed = &mut push => {
                            pushed?;
                        }
                        done = &mut work => {
                            push.await?;
                            return done;
                        }
                    }
                }
            }
        }
    }
}

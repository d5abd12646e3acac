//! Config push: the translated config given to every ztunnel (written to its file, then reloaded or restarted; or pushed by the control plane), and its admin endpoint.

use meshcert_ztunnel::local_config::LocalConfig;

use futures::future::join_all;

use super::*;

/// What giving one ztunnel the config did.
enum Synced {
    /// It was running and has the config (or will reload it).
    Unchanged,
    /// It was launched, not yet ready.
    Started(Admin),
    /// It was stopped and launched again to read its file (mesh clock and instant of the stop).
    Restarted(Admin, (Duration, Instant)),
}

impl LocalMesh {
    /// The control plane's push after a change: Ready conditions as the kubelet reports
    /// them, every ztunnel synced, then the grace periods of pods just delisted begin.
    pub(super) async fn push(&mut self, removed: &BTreeSet<String>) -> Result<(), MeshError> {
        let first = self.readiness.len();
        self.refresh_readiness();
        let synced = self.sync_ztunnels(removed).await;
        self.start_grace_periods();
        synced?;
        let pushed = self.elapsed();
        for change in &mut self.readiness[first..] {
            change.pushed_at = Some(pushed);
        }
        Ok(())
    }

    /// Brings the pods of a deployment to `replicas`: new ones last in name order are not
    /// guaranteed, so removal takes the highest names, as the brief of `scale` says. Removed
    /// pods are only delisted here; the caller's push starts their grace periods.
    pub(super) async fn reconcile(
        &mut self,
        deployment: &DeploymentRef,
        replicas: u32,
    ) -> Result<BTreeSet<String>, MeshError> {
        let mut removed = BTreeSet::new();
        let current = self.pods_of(deployment).len() as u32;
        for _ in current..replicas {
            self.add_pod(deployment).await?;
        }
        if replicas < current {
            let doomed: Vec<PodRef> = self
                .pods_of(deployment)
                .iter()
                .rev()
                .take((current - replicas) as usize)
                .map(|p| PodRef {
                    namespace: p.deployment.namespace.clone(),
                    name: p.netns.name.clone(),
                })
                .collect();
            for pod in doomed {
                self.delist_pod(&pod)?;
                removed.insert(pod.name);
            }
        }
        if let Some(state) = self.deployments.get_mut(deployment) {
            state
                .object
                .spec
                .get_or_insert_with(Default::default)
                .replicas = Some(replicas as i32);
        }
        Ok(removed)
    }

    /// Names of the ready backend pods the config lists: what every ztunnel must know.
    pub(super) fn expected_endpoints(&self, config: &LocalConfig) -> BTreeSet<String> {
        let listed: BTreeSet<&str> = config.workloads.iter().map(|w| w.name.as_str()).collect();
        self.pods
            .iter()
            .filter(|(pod, state)| state.app.is_some() && listed.contains(pod.name.as_str()))
            .map(|(pod, _)| pod.name.clone())
            .collect()
    }

    /// Brings every ztunnel to the current config: each pod that runs one gets it (its file
    /// written, or one push from the control plane), a missing ztunnel is started and one
    /// that reads its file once is restarted; then waits until each is ready and knows every
    /// endpoint. Ztunnels start, and confirm the config, side by side, as a node's pods do.
    pub(super) async fn sync_ztunnels(
        &mut self,
        removed: &BTreeSet<String>,
    ) -> Result<(), MeshError> {
        let config = self.translate()?;
        let yaml = config.to_yaml();
        let present = self.expected_endpoints(&config);
        let pods = self.ztunnel_pods(&config);
        // A reloading ztunnel's reload is looked for from here, before any file is written.
        let written_at = self.elapsed();
        if let Some(istiod) = &self.istiod {
            // Sent before any new ztunnel starts, so it gets this config on connecting.
            istiod.push(config.clone());
        }
        let mut restarting = BTreeMap::new();
        let mut starting = Vec::new();
        for pod in &pods {
            match self.sync_ztunnel(pod, &config, &yaml).await? {
                Synced::Unchanged => {}
                Synced::Started(admin) => starting.push((pod, admin)),
                Synced::Restarted(admin, began) => {
                    restarting.insert(pod.clone(), began);
                    starting.push((pod, admin));
                }
            }
        }
        let ready = join_all(
            starting
                .iter()
                .map(|(pod, admin)| self.wait_started(pod, admin)),
        )
        .await;
        ready.into_iter().collect::<Result<Vec<()>, MeshError>>()?;
        let confirmed = join_all(
            pods.iter()
                .map(|pod| self.confirm_config(pod, &config, written_at, &present, removed)),
        )
        .await;
        for (pod, confirmed) in pods.iter().zip(confirmed) {
            confirmed?;
            if let Some((at, began)) = restarting.remove(pod) {
                // Stop, start, ready and knowing the config: what a change costs this target.
                self.restarts.push(Restart {
                    pod: pod.to_string(),
                    at,
                    took: began.elapsed(),
                });
            }
        }
        Ok(())
    }

    /// The control plane's translation of what the mesh holds now; its warnings logged once.
    fn translate(&mut self) -> Result<LocalConfig, MeshError> {
        // The reference's defect list names the control plane's switches too.
        let defects = ControlPlaneDefects {
            wrong_precedence: self.options.defects.is_on(Defect::WrongPrecedence),
        };
        let translation =
            control_plane::to_local_config_with(&self.snapshot(), self.options.profile, defects)?;
        for warning in &translation.warnings {
            if !self.warnings.contains(warning) {
                tracing::warn!(mesh = self.number, "{warning}");
                self.warnings.push(warning.clone());
            }
        }
        let mut config = translation.config;
        if self.options.config_source == ConfigSource::ControlPlane {
            self.reach_pods_through_hbone(&mut config);
        }
        Ok(config)
    }

    /// Gives one pod's ztunnel the config: writes its file if it changed (fed by file),
    /// launches it if it is not running, relaunches it to read a changed file. A launched
    /// ztunnel is not yet ready: see [`Self::wait_started`].
    async fn sync_ztunnel(
        &mut self,
        pod: &PodRef,
        config: &LocalConfig,
        yaml: &str,
    ) -> Result<Synced, MeshError> {
        if !self.ztunnels.contains_key(pod) {
            let z = self.new_pod_ztunnel(pod, config)?;
            self.ztunnels.insert(pod.clone(), z);
        }
        let z = self.ztunnels.get_mut(pod).expect("inserted above");
        let changed = match &z.spec.config {
            ConfigFeed::File(path) if z.written != yaml => {
                write_atomically(path, yaml)?;
                z.written = yaml.to_string();
                true
            }
            ConfigFeed::File(_) | ConfigFeed::ControlPlane(_) => false,
        };
        match &z.running {
            None => Ok(Synced::Started(self.launch_ztunnel(pod).await?)),
            Some((process, _)) => {
                if let Some(status) = process.exit_status() {
                    return Err(MeshError::Ztunnel(process.describe_exit(status)));
                }
                if changed && !self.options.ztunnel.reloads_config {
                    let began = (self.elapsed(), Instant::now());
                    self.stop_ztunnel(pod).await?;
                    let admin = self.launch_ztunnel(pod).await?;
                    return Ok(Synced::Restarted(admin, began));
                }
                Ok(Synced::Unchanged)
            }
        }
    }

    /// Waits until a pod's ztunnel serves the config. One that reloads (the reference, by
    /// file or by push) must serve exactly the config, which implies knowing every endpoint;
    /// any other must know every endpoint present and none removed.
    async fn confirm_config(
        &self,
        pod: &PodRef,
        config: &LocalConfig,
        written_at: Duration,
        present: &BTreeSet<String>,
        removed: &BTreeSet<String>,
    ) -> Result<(), MeshError> {
        let Some(admin) = self.admin(pod) else {
            return Ok(());
        };
        if self.options.ztunnel.reloads_config {
            admin.wait_config(config, written_at).await
        } else {
            admin.wait_knows(present, removed).await
        }
    }

    /// The launch of a pod's ztunnel: where the pod runs, how it is fed, and its network and
    /// cluster as the control plane wrote them for its workload in `config`.
    pub(super) fn new_pod_ztunnel(
        &self,
        pod: &PodRef,
        config: &LocalConfig,
    ) -> Result<PodZtunnel, MeshError> {
        let state = &self.pods[pod];
        let template = &self.deployments[&state.deployment].template;
        let output = OutputLog::create(
            &self.dir.join(format!("ztunnel-{}.log", pod.name)),
            self.created,
        )?;
        let workload = config
            .workloads
            .iter()
            .find(|w| w.namespace == pod.namespace && w.name == pod.name);
        let spec = state.object.spec.as_ref();
        let status = state.object.status.as_ref();
        Ok(PodZtunnel {
            spec: LaunchSpec {
                netns: state.netns.netns.clone(),
                pod_namespace: pod.namespace.clone(),
                pod_name: pod.name.clone(),
                service_account: template.service_account.clone(),
                config: self.config_feed(pod)?,
                node_name: spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
                instance_ip: status.and_then(|s| s.pod_ip.clone()).unwrap_or_default(),
                network: workload
                    .map(|w| w.network.clone())
                    .unwrap_or_else(|| self.options.network.clone()),
                cluster_id: workload
                    .map(|w| w.cluster_id.clone())
                    .unwrap_or_else(|| self.options.cluster_id.clone()),
            },
            output,
            running: None,
            written: String::new(),
            redirected: false,
        })
    }

    /// Launches a pod's ztunnel (its redirect installed first) without waiting for it.
    async fn launch_ztunnel(&mut self, pod: &PodRef) -> Result<Admin, MeshError> {
        let z = self
            .ztunnels
            .get_mut(pod)
            .expect("caller made the pod's ztunnel");
        if !z.redirected {
            let netns = z.spec.netns.clone();
            let run = self.run.clone();
            blocking(move || {
                let _creating = run.creating(&format!("the redirect in {netns}"))?;
                ztunnel::install_redirect(&netns)
            })
            .await?;
            z.redirected = true;
        }
        let (command, spec, output) = (
            self.options.ztunnel.clone(),
            z.spec.clone(),
            z.output.clone(),
        );
        let (run, ledger) = (self.run.clone(), self.ledger.clone());
        // Launched and recorded under one permission, so a closing run either sees it in the
        // ledger or it never started.
        let (process, entry) = blocking(move || {
            let _creating = run.creating(&format!("a ztunnel in {}", spec.netns))?;
            let process = ZtunnelProcess::launch(&command, &spec, output)?;
            let entry = ledger.record(Box::new(process.clone()));
            Ok((process, entry))
        })
        .await?;
        z.running = Some((process.clone(), entry));
        Ok(Admin {
            sockets: self.sockets.clone(),
            netns: z.spec.netns.clone(),
            process,
            pod: pod.to_string(),
        })
    }

    /// Waits until a launched ztunnel is ready; fed by the control plane, a failure says
    /// first whether it could reach the CA.
    async fn wait_started(&self, pod: &PodRef, admin: &Admin) -> Result<(), MeshError> {
        let ready = admin.wait_ready(self.options.ready_deadline).await;
        match (&self.istiod, ready) {
            (Some(istiod), Err(e)) => {
                Err(istiod.explain_start_failure(pod, e, admin.process.output()))
            }
            (_, ready) => ready,
        }
    }

    async fn stop_ztunnel(&mut self, pod: &PodRef) -> Result<(), MeshError> {
        let Some(z) = self.ztunnels.get_mut(pod) else {
            return Ok(());
        };
        let Some((_, entry)) = z.running.take() else {
            return Ok(());
        };
        let ledger = self.ledger.clone();
        blocking(move || ledger.release(entry)).await
    }

    /// The admin endpoints of a pod's running ztunnel.
    pub(super) fn admin(&self, pod: &PodRef) -> Option<Admin> {
        let z = self.ztunnels.get(pod)?;
        let (process, _) = z.running.as_ref()?;
        Some(Admin {
            sockets: self.sockets.clone(),
            netns: z.spec.netns.clone(),
            process: process.clone(),
            pod: pod.to_string(),
        })
    }
}

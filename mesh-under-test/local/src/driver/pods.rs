//! Pod lifecycle: pods made, probed Ready, delisted and terminated after their grace period; app faults that a kubelet would see.

use super::*;

impl LocalMesh {
    /// Makes one more pod of a deployment: namespace, address, app, Ready (and its token,
    /// fed by the control plane, whose pod comes with the first).
    pub(super) async fn add_pod(
        &mut self,
        deployment: &DeploymentRef,
    ) -> Result<PodRef, MeshError> {
        self.ensure_istiod().await?;
        let (name, node, ports) = self.place_pod(deployment)?;
        let plan = self.topology.plan_pod(&node, &name)?;
        let (run, ledger) = (self.run.clone(), self.ledger.clone());
        let pod_netns = blocking(move || netns::create_pod(&run, &ledger, &plan)).await?;
        let app = if ports.is_empty() {
            None
        } else {
            Some(self.start_app(&name, &pod_netns, &ports).await?)
        };
        let pod = PodRef {
            namespace: deployment.namespace.clone(),
            name: name.clone(),
        };
        // Probes run only where an app listens: a client's would have nothing to answer.
        let specs = match &app {
            Some(_) => self.deployments[deployment].template.readiness.clone(),
            None => Vec::new(),
        };
        if let Some((app, _)) = &app {
            for spec in &specs {
                if let ProbeAction::HttpGet { path, .. } = &spec.action {
                    app.switch().spare(path);
                }
            }
        }
        let service_account = self.deployments[deployment]
            .template
            .service_account
            .clone();
        let up = self.bring_up(&pod, &node, &pod_netns, &specs).await;
        let (probers, token) =
            match up.and_then(|probers| match self.issue_token(&pod, &service_account) {
                Ok(token) => Ok((probers, token)),
                Err(e) => Err((e, probers)),
            }) {
                Ok(started) => started,
                Err((e, probers)) => {
                    self.board.forget(&pod);
                    let mut entries = probers;
                    entries.extend(app.map(|(_, entry)| entry));
                    entries.push(pod_netns.entry);
                    self.release_all(entries).await?;
                    return Err(e);
                }
            };
        let state = &self.deployments[deployment];
        let object = cluster::build_pod(&cluster::PodFacts {
            namespace: &deployment.namespace,
            name: &name,
            deployment: &state.object,
            template_hash: &state.hash,
            node: &node,
            ip: pod_netns.ip,
            ready: true,
        });
        tracing::debug!(%pod, ip = %pod_netns.ip, %node, "pod ready");
        self.pods.insert(
            pod.clone(),
            PodState {
                object,
                deployment: deployment.clone(),
                netns: pod_netns,
                app,
                token,
                probers,
                killed: false,
            },
        );
        Ok(pod)
    }

    /// A new pod's name (unused in its namespace), its node and its container ports, as the
    /// ReplicaSet controller and the scheduler would choose them.
    fn place_pod(
        &mut self,
        deployment: &DeploymentRef,
    ) -> Result<(String, String, Vec<u16>), MeshError> {
        let node_names: Vec<String> = self.nodes.iter().map(|n| n.name.clone()).collect();
        let state = self
            .deployments
            .get_mut(deployment)
            .expect("caller checked the deployment");
        let mut ordinal = state.made;
        let name = loop {
            let candidate = format!(
                "{}-{}-{}",
                deployment.name,
                state.hash,
                cluster::pod_suffix(self.seed, &deployment.namespace, &deployment.name, ordinal)
            );
            ordinal += 1;
            if !self.pods.contains_key(&PodRef {
                namespace: deployment.namespace.clone(),
                name: candidate.clone(),
            }) {
                break candidate;
            }
        };
        let node = cluster::place(
            &node_names,
            state.template.pinned_node.as_deref(),
            state.made as usize,
        )?;
        state.made = ordinal;
        Ok((name, node, state.template.ports.clone()))
    }

    /// Starts a pod's app in its namespace and records it; on failure the namespace goes.
    async fn start_app(
        &self,
        name: &str,
        pod_netns: &PodNetns,
        ports: &[u16],
    ) -> Result<(Arc<BackendApp>, EntryId), MeshError> {
        let started = match self.run.creating(&format!("the app of pod {name}")) {
            Ok(creating) => {
                BackendApp::start(&self.sockets, &pod_netns.netns, pod_netns.ip, ports, name)
                    .await
                    .map(|app| (app, creating))
            }
            Err(e) => Err(e),
        };
        match started {
            Ok((app, creating)) => {
                let app = Arc::new(app);
                let entry = self.ledger.record(Box::new(app.clone()));
                drop(creating);
                Ok((app, entry))
            }
            Err(e) => {
                let (ledger, entry) = (self.ledger.clone(), pod_netns.entry);
                blocking(move || ledger.release(entry)).await?;
                Err(e)
            }
        }
    }

    /// Waits until a new pod is reachable from its node and, if it has probes, Ready; returns
    /// its probers, or the error with the probers started so far.
    async fn bring_up(
        &self,
        pod: &PodRef,
        node: &str,
        pod_netns: &PodNetns,
        specs: &[ProbeSpec],
    ) -> Result<Vec<EntryId>, (MeshError, Vec<EntryId>)> {
        self.wait_reachable(node, pod_netns)
            .await
            .map_err(|e| (e, Vec::new()))?;
        if specs.is_empty() {
            return Ok(Vec::new());
        }
        let probers = self
            .start_probers(pod, node, pod_netns.ip, specs)
            .map_err(|e| (e, Vec::new()))?;
        match self.wait_probed_ready(pod, specs).await {
            Ok(()) => Ok(probers),
            Err(e) => Err((e, probers)),
        }
    }

    /// Releases every entry even if one fails; the first failure is reported.
    async fn release_all(&self, entries: Vec<EntryId>) -> Result<(), MeshError> {
        let ledger = self.ledger.clone();
        blocking(move || {
            let results: Vec<Result<(), MeshError>> =
                entries.into_iter().map(|e| ledger.release(e)).collect();
            results.into_iter().collect::<Result<(), MeshError>>()
        })
        .await
    }

    /// Starts the kubelet's readiness workers of a pod whose containers just started: each
    /// probes from the pod's node and reports to the board.
    pub(super) fn start_probers(
        &self,
        pod: &PodRef,
        node: &str,
        ip: std::net::Ipv4Addr,
        specs: &[ProbeSpec],
    ) -> Result<Vec<EntryId>, MeshError> {
        let node_netns = self
            .topology
            .node(node)
            .map(|n| n.netns.clone())
            .ok_or_else(|| MeshError::InvalidRequest(format!("no node {node:?}")))?;
        let started = self.elapsed();
        let mut entries = Vec::new();
        for spec in specs {
            let creating = self.run.creating(&format!(
                "the readiness probe of container {} of pod {pod}",
                spec.container
            ))?;
            let target = ProbeTarget {
                sockets: self.sockets.clone(),
                pod: pod.clone(),
                node_netns: node_netns.clone(),
                pod_ip: ip,
            };
            let prober = Prober::spawn(
                self.board.clone(),
                target,
                spec.clone(),
                self.created,
                started,
            );
            entries.push(self.ledger.record(Box::new(prober)));
            drop(creating);
        }
        Ok(entries)
    }

    /// Waits until a new pod's probes pass, as a rollout waits for its pods to be Ready.
    pub(super) async fn wait_probed_ready(
        &self,
        pod: &PodRef,
        specs: &[ProbeSpec],
    ) -> Result<(), MeshError> {
        let deadline = specs
            .iter()
            .map(ProbeSpec::time_to_ready)
            .max()
            .unwrap_or_default()
            + READY_SLACK;
        let probes: Vec<String> = specs.iter().map(ProbeSpec::describe).collect();
        let what = format!(
            "pod {pod} to pass its readiness probe ({}) from its node",
            probes.join("; ")
        );
        let board = self.board.clone();
        eventually(&what, deadline, Duration::from_millis(20), || {
            let (board, pod) = (board.clone(), pod.clone());
            async move {
                match board.ready(&pod) {
                    Some(true) => Probe::Ready(()),
                    _ => Probe::NotYet(board.describe(&pod)),
                }
            }
        })
        .await
    }

    /// Removes a pod: its ztunnel, faults and app first, then its namespace.
    /// Waits until a new pod's link is up at both ends, as a CNI plugin does before the kubelet
    /// reports the pod: until then it is unreachable.
    pub(super) async fn wait_reachable(&self, node: &str, pod: &PodNetns) -> Result<(), MeshError> {
        let node_netns = self
            .topology
            .node(node)
            .map(|n| n.netns.clone())
            .ok_or_else(|| MeshError::InvalidRequest(format!("no node {node:?}")))?;
        let what = format!("the link of pod {} ({}) to come up", pod.name, pod.ip);
        eventually(&what, REACHABLE_DEADLINE, Duration::from_millis(20), || {
            let (node_netns, pod) = (node_netns.clone(), pod.clone());
            async move {
                match blocking(move || netns::pod_link_pending(&node_netns, &pod)).await {
                    Ok(None) => Probe::Ready(()),
                    Ok(Some(state)) => Probe::NotYet(state),
                    Err(e) => Probe::Failed(e),
                }
            }
        })
        .await
    }

    /// Takes a pod out of the cluster's view, as deleting it does: its probers stop and the
    /// control plane no longer lists it, but it keeps serving until its grace period, which
    /// begins once the change is pushed (`start_grace_periods`), ends.
    pub(super) fn delist_pod(&mut self, pod: &PodRef) -> Result<(), MeshError> {
        let Some(state) = self.pods.remove(pod) else {
            return Ok(());
        };
        self.board.forget(pod);
        for entry in &state.probers {
            // An abort: nothing that blocks.
            self.ledger.release(*entry)?;
        }
        let grace = self
            .deployments
            .get(&state.deployment)
            .map_or(cluster::LOCAL_GRACE_CAP, |d| d.template.local_grace());
        let mut entries = Vec::new();
        if let Some(z) = self.ztunnels.remove(pod)
            && let Some((_, entry)) = z.running
        {
            entries.push(entry);
        }
        entries.extend(state.token);
        let faults: Vec<u64> = self
            .faults
            .iter()
            .filter(|(_, f)| &f.handle.fault.pod == pod)
            .map(|(id, _)| *id)
            .collect();
        for id in faults {
            entries.push(self.faults.remove(&id).expect("listed above").entry);
        }
        if let Some((_, entry)) = state.app {
            entries.push(entry);
        }
        entries.push(state.netns.entry);
        self.terminating.push(Terminating {
            pod: pod.clone(),
            grace,
            entries,
            timer: None,
        });
        Ok(())
    }

    /// Starts the grace period of every pod delisted and not yet timed: when it ends, the
    /// pod is stopped (every entry released even if one fails, so one stuck rule cannot keep
    /// the rest). Timers still running at teardown are dropped with it.
    pub(super) fn start_grace_periods(&mut self) {
        self.terminating
            .retain(|t| !t.timer.as_ref().is_some_and(|h| h.is_finished()));
        for t in self.terminating.iter_mut().filter(|t| t.timer.is_none()) {
            let (ledger, entries, grace, pod) = (
                self.ledger.clone(),
                t.entries.clone(),
                t.grace,
                t.pod.clone(),
            );
            tracing::debug!(%pod, ?grace, "delisted; serving through its grace period");
            t.timer = Some(tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                let stopped = blocking(move || {
                    let results: Vec<Result<(), MeshError>> =
                        entries.into_iter().map(|e| ledger.release(e)).collect();
                    results.into_iter().collect::<Result<(), MeshError>>()
                })
                .await;
                match stopped {
                    Ok(()) => tracing::debug!(%pod, "stopped after its grace period"),
                    Err(e) => {
                        tracing::warn!(%pod, error = %e, "stopping a terminated pod failed; teardown retries")
                    }
                }
            }));
        }
    }

    /// The not-ready fault: every readiness probe of the pod fails while its app serves
    /// everything else. An httpGet probe's path answers 503; a tcpSocket probe is refused
    /// from the node only (`iptables -s <node> ... -j REJECT`).
    pub(super) async fn fail_readiness(&self, pod: &PodRef) -> Result<Box<dyn Undo>, MeshError> {
        let state = &self.pods[pod];
        let specs = &self.deployments[&state.deployment].template.readiness;
        let app = match &state.app {
            Some((app, _)) if !specs.is_empty() => app.clone(),
            _ => {
                return Err(MeshError::InvalidRequest(format!(
                    "cannot make {pod} not ready: its containers declare no readinessProbe, and \
                     a pod without one is Ready while its process runs; give the fixture's \
                     container a readinessProbe, or kill the process instead"
                )));
            }
        };
        let node_ip = self
            .topology
            .node(&state.netns.node)
            .map(|n| n.ip)
            .ok_or_else(|| MeshError::InvalidRequest(format!("no node {:?}", state.netns.node)))?;
        let mut parts: Vec<Box<dyn Undo>> = Vec::new();
        for spec in specs {
            match &spec.action {
                ProbeAction::HttpGet { path, .. } => parts.push(Box::new(ProbePathFault::inject(
                    &pod.to_string(),
                    app.switch(),
                    path,
                ))),
                ProbeAction::TcpSocket { port } => {
                    let (netns, rule) = (
                        state.netns.netns.clone(),
                        faults::refuse_probes_rule(node_ip, *port),
                    );
                    match blocking(move || IptablesFault::inject(&netns, rule)).await {
                        Ok(f) => parts.push(Box::new(f)),
                        Err(e) => {
                            // What is in force already must not outlive the failed inject.
                            let _ = Faults(parts).undo();
                            return Err(e);
                        }
                    }
                }
            }
        }
        Ok(Box::new(Faults(parts)))
    }

    /// The process-kill fault: the app's ports close and its connections drop; the kubelet
    /// sees the container exit at once (not Ready) and its probers stop with it.
    pub(super) async fn kill_app(&mut self, pod: &PodRef) -> Result<Box<dyn Undo>, MeshError> {
        let state = &self.pods[pod];
        let app = match &state.app {
            Some((app, _)) if !state.killed => app.clone(),
            Some(_) => {
                return Err(MeshError::InvalidRequest(format!(
                    "the app of {pod} is killed already"
                )));
            }
            None => {
                return Err(MeshError::InvalidRequest(format!(
                    "cannot kill the app of {pod}: it runs none (no container ports)"
                )));
            }
        };
        app.kill().await;
        let at = self.elapsed();
        let state = self.pods.get_mut(pod).expect("looked up above");
        state.killed = true;
        let probers = std::mem::take(&mut state.probers);
        for entry in probers {
            self.ledger.release(entry)?;
        }
        self.board.containers_exited(pod, at);
        Ok(Box::new(KilledApp {
            pod: pod.to_string(),
        }))
    }

    /// Undoes a kill: the app listens again and new readiness workers start, so the pod is
    /// Ready once its probes pass (at once when it has none).
    pub(super) fn restart_app(&mut self, pod: &PodRef) -> Result<(), MeshError> {
        let Some(state) = self.pods.get(pod) else {
            return Ok(());
        };
        let Some((app, _)) = &state.app else {
            return Ok(());
        };
        let creating = self
            .run
            .creating(&format!("the restarted app of pod {pod}"))?;
        app.restart(&self.sockets)?;
        let specs = self.deployments[&state.deployment]
            .template
            .readiness
            .clone();
        let (node, ip) = (state.netns.node.clone(), state.netns.ip);
        drop(creating);
        let probers = self.start_probers(pod, &node, ip, &specs)?;
        let state = self.pods.get_mut(pod).expect("looked up above");
        state.killed = false;
        state.probers = probers;
        Ok(())
    }
}

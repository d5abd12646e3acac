//! Requests: the cluster DNS a client resolves through, and the requests it sends.

use super::*;

impl LocalMesh {
    /// Resolves a host as the client pod would: kube-dns names of Services, then the hosts
    /// of ServiceEntries, which Istio's DNS proxy answers with the entry's address.
    pub(super) fn resolve(&self, host: &str, client_namespace: &str) -> Option<IpAddr> {
        client::resolve(host, client_namespace, &self.dns_services()).or_else(|| {
            let host = host.strip_suffix('.').unwrap_or(host);
            self.service_entries
                .values()
                .find_map(|e| e.addresses_of(host).first().and_then(|a| a.parse().ok()))
        })
    }

    pub(super) fn dns_services(&self) -> Vec<DnsService> {
        self.services
            .iter()
            .filter_map(|((ns, name), s)| {
                let ip: IpAddr = s.spec.as_ref()?.cluster_ip.as_deref()?.parse().ok()?;
                Some(DnsService {
                    name: name.clone(),
                    namespace: ns.clone(),
                    cluster_ip: ip,
                })
            })
            .collect()
    }

    /// Sends a plan's requests from its client pod, paced and bounded in count and time.
    pub(super) async fn send(
        &mut self,
        plan: &RequestPlan,
    ) -> Result<Vec<RequestRecord>, MeshError> {
        self.check_live()?;
        check_plan(plan)?;
        let client = self.sending_client(plan)?;
        let url = client::parse_url(&plan.url).map_err(MeshError::InvalidRequest)?;
        let ip = self
            .resolve(&url.host, &plan.client.namespace)
            .ok_or_else(|| {
                MeshError::InvalidRequest(format!(
                    "could not resolve host {:?} from namespace {} (no such Service or \
                     ServiceEntry host)",
                    url.host, plan.client.namespace
                ))
            })?;
        let host = if url.port == 80 {
            url.host.clone()
        } else {
            format!("{}:{}", url.host, url.port)
        };
        let stream = RequestStream {
            sockets: self.sockets.clone(),
            created: self.created,
            netns: client.netns.netns.clone(),
            client_ip: IpAddr::V4(client.netns.ip),
            dst: SocketAddr::new(ip, url.port),
            host,
            path: url.path.clone(),
            plan: plan.clone(),
        };
        // The loop owns what it needs, so the control plane can push readiness changes
        // while the requests run. It runs as a task of its own: the step's future is polled
        // with every other scenario's on one thread, where paced requests would queue.
        let quiet = Arc::new(tokio::sync::Mutex::new(()));
        let turns = quiet.clone();
        let task = AbortOnDrop(tokio::spawn(stream.run(turns)));
        self.alongside_readiness(quiet, task.joined()).await
    }

    /// The plan's client pod, which must run a ztunnel.
    fn sending_client(&self, plan: &RequestPlan) -> Result<&PodState, MeshError> {
        let client = self
            .pods_of(&plan.client)
            .into_iter()
            .next()
            .ok_or_else(|| {
                MeshError::InvalidRequest(format!(
                    "client {} has no pods (deployed: {})",
                    plan.client,
                    self.deployment_names()
                ))
            })?;
        let client_ref = PodRef {
            namespace: client.deployment.namespace.clone(),
            name: client.netns.name.clone(),
        };
        if !self.ztunnels.contains_key(&client_ref) {
            return Err(MeshError::InvalidRequest(format!(
                "{} has container ports, so it is a backend without a ztunnel; send from a client deployment",
                plan.client
            )));
        }
        Ok(client)
    }
}

fn check_plan(plan: &RequestPlan) -> Result<(), MeshError> {
    if plan.count > MAX_REQUESTS {
        return Err(MeshError::InvalidRequest(format!(
            "{} requests asked; at most {MAX_REQUESTS} per plan",
            plan.count
        )));
    }
    if plan.timeout.is_zero() {
        return Err(MeshError::InvalidRequest(
            "the request timeout must be more than zero".into(),
        ));
    }
    Ok(())
}

/// One plan's requests, with everything the loop needs owned.
struct RequestStream {
    sockets: SocketFactory,
    created: Instant,
    netns: String,
    client_ip: IpAddr,
    dst: SocketAddr,
    host: String,
    path: String,
    plan: RequestPlan,
}

impl RequestStream {
    /// The whole loop, bounded by every request's timeout and interval plus a slack.
    async fn run(
        self,
        turns: Arc<tokio::sync::Mutex<()>>,
    ) -> Result<Vec<RequestRecord>, MeshError> {
        let plan = &self.plan;
        let bound = (plan.timeout + plan.interval)
            .saturating_mul(plan.count)
            .saturating_add(REQUESTS_SLACK);
        let mut records = Vec::with_capacity(plan.count as usize);
        let first = tokio::time::Instant::now();
        let loop_result = tokio::time::timeout(bound, async {
            for index in 0..plan.count {
                if !plan.interval.is_zero() {
                    tokio::time::sleep_until(first + plan.interval * index).await;
                }
                // Not while a restarting ztunnel takes a push (see `alongside_readiness`).
                let _turn = turns.lock().await;
                records.push(self.one(index).await?);
            }
            Ok::<(), MeshError>(())
        })
        .await;
        match loop_result {
            Ok(Ok(())) => Ok(records),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(MeshError::Timeout {
                what: format!("{} requests to {}", plan.count, plan.url),
                waited: bound,
                last: format!("{} of {} done", records.len(), plan.count),
            }),
        }
    }

    async fn one(&self, index: u32) -> Result<RequestRecord, MeshError> {
        let started_at = self.created.elapsed();
        let began = Instant::now();
        // A socket is made in the pod's namespace by a helper thread; wait for it off the
        // runtime's workers.
        let (sockets, netns, dst) = (self.sockets.clone(), self.netns.clone(), self.dst);
        let socket = blocking(move || sockets.connector(Some(&netns), dst)).await?;
        let (source_port, outcome) =
            client::get_on(socket, dst, &self.host, &self.path, self.plan.timeout).await;
        let latency = began.elapsed();
        let outcome = match outcome {
            Ok(response) => RequestOutcome::Answered {
                replica: response.replica(),
                status: response.status,
            },
            Err(failure) => RequestOutcome::Failed { failure },
        };
        Ok(RequestRecord {
            index,
            started_at,
            latency,
            source: source_port.map(|port| SocketAddr::new(self.client_ip, port).to_string()),
            outcome,
        })
    }
}

/// A spawned task that is aborted when its handle is dropped (a scenario cancelled by Ctrl-C
/// takes its requests with it).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<R> AbortOnDrop<Result<R, MeshError>> {
    /// The task's output; its panic, resumed here.
    async fn joined(mut self) -> Result<R, MeshError> {
        match (&mut self.0).await {
            Ok(output) => output,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(MeshError::Environment(format!(
                "the request task was cancelled: {e}"
            ))),
        }
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

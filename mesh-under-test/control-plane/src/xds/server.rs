//! Envoy's delta ADS (`DeltaAggregatedResources`) serving `istio.workload.Address` from the
//! driver's current local config, as istiod serves ztunnel.
//!
//! Per stream, as upstream ztunnel's client expects (`src/xds/client.rs`): its first request for
//! a type carries the node and subscribes to everything (no names), echoing in
//! `initial_resource_versions` what it kept from an earlier stream; the first response sends
//! what it lacks, each later config change only what changed (changed resources, and the names
//! of removed ones). A request with `response_nonce` ACKs that response, or NACKs it with
//! `error_detail`; a NACK is logged and recorded, never resent. Authorization policies get one
//! empty response (ztunnel waits for a first response of every type it watches before it is
//! ready); any other type ends the stream with `InvalidArgument`.
//!
//! [`XdsServer::streams`] shows what each stream was pushed and ACKed, by [`ConfigVersion`], so
//! the driver can wait until every ztunnel runs the config it wrote.

use std::collections::BTreeMap;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use meshcert_istio_api::discovery::aggregated_discovery_service_server::AggregatedDiscoveryService;
use meshcert_istio_api::discovery::{DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource};
use meshcert_istio_api::{ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL};
use meshcert_ztunnel::local_config::LocalConfig;
use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::translate::{VersionedAddress, digest, versioned_addresses};
use crate::ControlPlaneError;

/// The version of a whole config as served: equal configs have equal versions.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConfigVersion(String);

impl ConfigVersion {
    pub fn of(config: &LocalConfig) -> Self {
        Self::of_resources(&versioned_addresses(config))
    }

    fn of_resources(resources: &BTreeMap<String, VersionedAddress>) -> Self {
        let versions: Vec<(&String, &String)> =
            resources.iter().map(|(n, r)| (n, &r.version)).collect();
        Self(digest(&versions))
    }
}

impl fmt::Display for ConfigVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One ADS stream subscribed to addresses: who it is and how far it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamState {
    /// `DeltaDiscoveryRequest.node.id` of the stream's first request; upstream sends
    /// `ztunnel~<ip>~<pod>.<namespace>~<namespace>.svc.cluster.local`.
    pub node_id: String,
    /// The config the last response brings the client to.
    pub pushed: Option<ConfigVersion>,
    /// The config of the newest response the client ACKed.
    pub acked: Option<ConfigVersion>,
    /// The `error_detail` of the last NACK, if any.
    pub nack: Option<String>,
}

/// The streams subscribed to addresses, by a number given in order of connection.
pub type Streams = BTreeMap<u64, StreamState>;

/// The ADS service over a watched local config. Cheap to clone: clones share streams.
#[derive(Clone)]
pub struct XdsServer {
    configs: watch::Receiver<LocalConfig>,
    streams: Arc<watch::Sender<Streams>>,
    stop: Arc<watch::Sender<bool>>,
    next_stream: Arc<AtomicU64>,
}

impl From<watch::Receiver<LocalConfig>> for XdsServer {
    fn from(configs: watch::Receiver<LocalConfig>) -> Self {
        Self::new(configs)
    }
}

/// Responses queued per stream before the stream waits for the client to read.
const QUEUED_RESPONSES: usize = 16;

impl XdsServer {
    /// Serves every value `configs` takes, to every stream.
    pub fn new(configs: watch::Receiver<LocalConfig>) -> Self {
        Self {
            configs,
            streams: Arc::new(watch::channel(Streams::new()).0),
            stop: Arc::new(watch::channel(false).0),
            next_stream: Arc::new(AtomicU64::new(0)),
        }
    }

    /// What each connected stream was pushed and ACKed; it changes as they do.
    pub fn streams(&self) -> watch::Receiver<Streams> {
        self.streams.subscribe()
    }

    /// Waits until at least `clients` streams are subscribed and every one has ACKed
    /// `version`; on timeout the error shows each stream's state.
    pub async fn wait_until_acked(
        &self,
        version: &ConfigVersion,
        clients: usize,
        within: Duration,
    ) -> Result<(), ControlPlaneError> {
        let mut streams = self.streams();
        let all_acked = |s: &Streams| {
            s.len() >= clients && s.values().all(|s| s.acked.as_ref() == Some(version))
        };
        let acked =
            tokio::time::timeout(within, async { streams.wait_for(all_acked).await.is_ok() }).await;
        if acked == Ok(true) {
            return Ok(());
        }
        Err(ControlPlaneError::NotAcked {
            version: version.to_string(),
            clients,
            within,
            streams: format!("{:?}", *streams.borrow()),
        })
    }

    /// Ends every stream (with `Unavailable`), so a graceful server shutdown does not wait for
    /// clients that never hang up.
    pub(crate) fn stop_streams(&self) {
        self.stop.send_replace(true);
    }
}

type ResponseStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<DeltaDiscoveryResponse, Status>> + Send>>;

#[tonic::async_trait]
impl AggregatedDiscoveryService for XdsServer {
    type DeltaAggregatedResourcesStream = ResponseStream;

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        let (responses, queued) = mpsc::channel(QUEUED_RESPONSES);
        let stream = AdsStream {
            id: self.next_stream.fetch_add(1, Ordering::Relaxed),
            node_id: String::new(),
            addresses: None,
            nonces: 0,
            responses,
            stop: self.stop.subscribe(),
            streams: self.streams.clone(),
        };
        tokio::spawn(stream.run(request.into_inner(), self.configs.clone()));
        Ok(Response::new(Box::pin(ReceiverStream::new(queued))))
    }
}

/// One client's stream: what it holds and which responses it has not answered.
struct AdsStream {
    id: u64,
    node_id: String,
    addresses: Option<AddressSubscription>,
    nonces: u64,
    responses: mpsc::Sender<Result<DeltaDiscoveryResponse, Status>>,
    stop: watch::Receiver<bool>,
    streams: Arc<watch::Sender<Streams>>,
}

struct AddressSubscription {
    /// Name -> version of what the client holds, as far as the responses sent tell.
    held: BTreeMap<String, String>,
    /// Nonce -> the config a response not yet answered brings the client to.
    unanswered: BTreeMap<u64, ConfigVersion>,
}

/// Why a stream ends.
enum End {
    /// The client hung up, or the server stops: nothing more to send.
    Quietly,
    /// The client asked for something this server refuses.
    With(Status),
}

impl AdsStream {
    async fn run(
        mut self,
        mut requests: Streaming<DeltaDiscoveryRequest>,
        mut configs: watch::Receiver<LocalConfig>,
    ) {
        let mut stop = self.stop.clone();
        let mut watching = true;
        let end = loop {
            tokio::select! {
                request = requests.message() => match request {
                    Ok(Some(request)) => {
                        if let Err(end) = self.on_request(request, &configs).await {
                            break end;
                        }
                    }
                    Ok(None) | Err(_) => break End::Quietly,
                },
                changed = configs.changed(), if watching => {
                    // A dropped sender means the config stays as it is.
                    watching = changed.is_ok();
                    let current = versioned_addresses(&configs.borrow_and_update());
                    if let Err(end) = self.push_changes(current, false).await {
                        break end;
                    }
                }
                () = stopped(&mut stop) => {
                    break End::With(Status::unavailable("the control plane is shutting down"));
                }
                _ = self.responses.closed() => break End::Quietly,
            }
        };
        if let End::With(status) = end {
            let _ = self.responses.try_send(Err(status));
        }
        self.streams
            .send_if_modified(|s| s.remove(&self.id).is_some());
    }

    async fn on_request(
        &mut self,
        request: DeltaDiscoveryRequest,
        configs: &watch::Receiver<LocalConfig>,
    ) -> Result<(), End> {
        if let Some(node) = &request.node
            && self.node_id.is_empty()
        {
            self.node_id = node.id.clone();
        }
        match request.type_url.as_str() {
            ADDRESS_TYPE_URL if !request.response_nonce.is_empty() => {
                self.on_answer(&request);
                Ok(())
            }
            ADDRESS_TYPE_URL => self.on_address_subscription(&request, configs).await,
            AUTHORIZATION_TYPE_URL if !request.response_nonce.is_empty() => {
                if let Some(error) = &request.error_detail {
                    tracing::warn!(node = %self.node_id, type_url = AUTHORIZATION_TYPE_URL,
                        nonce = %request.response_nonce, error = %error.message, "xDS NACK");
                }
                Ok(())
            }
            AUTHORIZATION_TYPE_URL => {
                // The reference enforces no policies and the driver writes none: always empty.
                let response = self.response(AUTHORIZATION_TYPE_URL, Vec::new(), Vec::new());
                self.send(response).await
            }
            other => Err(End::With(Status::invalid_argument(format!(
                "type {other:?} is not served; this control plane serves {ADDRESS_TYPE_URL} \
                 and {AUTHORIZATION_TYPE_URL}"
            )))),
        }
    }

    /// The first address request subscribes; later ones without a nonce change nothing.
    async fn on_address_subscription(
        &mut self,
        request: &DeltaDiscoveryRequest,
        configs: &watch::Receiver<LocalConfig>,
    ) -> Result<(), End> {
        let wildcard = request.resource_names_subscribe.iter().all(|n| n == "*")
            && !request.resource_names_unsubscribe.iter().any(|n| n == "*");
        if !wildcard {
            return Err(End::With(Status::invalid_argument(format!(
                "only a wildcard subscription to {ADDRESS_TYPE_URL} is served (ztunnel's \
                 XDS_ON_DEMAND is not); the request subscribes {:?} and unsubscribes {:?}",
                request.resource_names_subscribe, request.resource_names_unsubscribe
            ))));
        }
        if self.addresses.is_some() {
            return Ok(());
        }
        self.addresses = Some(AddressSubscription {
            held: request
                .initial_resource_versions
                .iter()
                .map(|(name, version)| (name.clone(), version.clone()))
                .collect(),
            unanswered: BTreeMap::new(),
        });
        let node_id = self.node_id.clone();
        self.streams.send_modify(|s| {
            s.insert(
                self.id,
                StreamState {
                    node_id,
                    pushed: None,
                    acked: None,
                    nack: None,
                },
            );
        });
        let current = versioned_addresses(&configs.borrow());
        self.push_changes(current, true).await
    }

    /// Sends what the client lacks of `current`; the first response goes out even if empty,
    /// since ztunnel is not ready until it has one.
    async fn push_changes(
        &mut self,
        current: BTreeMap<String, VersionedAddress>,
        first: bool,
    ) -> Result<(), End> {
        let Some(subscription) = &mut self.addresses else {
            return Ok(());
        };
        let removed: Vec<String> = subscription
            .held
            .keys()
            .filter(|name| !current.contains_key(*name))
            .cloned()
            .collect();
        let changed: Vec<Resource> = current
            .iter()
            .filter(|(name, r)| subscription.held.get(*name) != Some(&r.version))
            .map(|(name, r)| Resource {
                name: name.clone(),
                version: r.version.clone(),
                resource: Some(prost_types::Any {
                    type_url: ADDRESS_TYPE_URL.to_string(),
                    value: r.address.encode_to_vec(),
                }),
                ..Resource::default()
            })
            .collect();
        if changed.is_empty() && removed.is_empty() && !first {
            return Ok(());
        }
        let version = ConfigVersion::of_resources(&current);
        subscription.held = current.into_iter().map(|(n, r)| (n, r.version)).collect();
        let mut response = self.response(ADDRESS_TYPE_URL, changed, removed);
        response.system_version_info = version.to_string();
        let nonce = self.nonces;
        if let Some(subscription) = &mut self.addresses {
            subscription.unanswered.insert(nonce, version.clone());
        }
        self.update_state(|s| s.pushed = Some(version));
        self.send(response).await
    }

    /// An ACK or NACK of an address response.
    fn on_answer(&mut self, request: &DeltaDiscoveryRequest) {
        let nonce = request.response_nonce.parse::<u64>().ok();
        let Some((subscription, nonce)) = self.addresses.as_mut().zip(nonce) else {
            tracing::debug!(node = %self.node_id, nonce = %request.response_nonce,
                "xDS answer to a response this stream did not send");
            return;
        };
        let Some(version) = subscription.unanswered.remove(&nonce) else {
            return;
        };
        // Older responses are superseded by this one.
        subscription.unanswered.retain(|&n, _| n > nonce);
        match &request.error_detail {
            Some(error) => {
                tracing::warn!(node = %self.node_id, type_url = ADDRESS_TYPE_URL, nonce,
                    %version, error = %error.message, "xDS NACK");
                let message = error.message.clone();
                self.update_state(|s| s.nack = Some(message));
            }
            None => self.update_state(|s| s.acked = Some(version)),
        }
    }

    /// A response with the stream's next nonce.
    fn response(
        &mut self,
        type_url: &str,
        resources: Vec<Resource>,
        removed_resources: Vec<String>,
    ) -> DeltaDiscoveryResponse {
        self.nonces += 1;
        DeltaDiscoveryResponse {
            type_url: type_url.to_string(),
            nonce: self.nonces.to_string(),
            resources,
            removed_resources,
            ..DeltaDiscoveryResponse::default()
        }
    }

    fn update_state(&self, change: impl FnOnce(&mut StreamState)) {
        self.streams.send_modify(|s| {
            if let Some(state) = s.get_mut(&self.id) {
                change(state);
            }
        });
    }

    /// Queues a response unless the client is gone or the server stops first.
    async fn send(&mut self, response: DeltaDiscoveryResponse) -> Result<(), End> {
        tokio::select! {
            sent = self.responses.send(Ok(response)) => sent.map_err(|_| End::Quietly),
            () = stopped(&mut self.stop) => Err(End::Quietly),
        }
    }
}

/// Returns once the server stops (or can no longer say it will).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

//! The routing model over delta xDS (`XDS_ADDRESS`), as upstream's client speaks it: one
//! aggregated stream announcing the node (`ztunnel~<ip>~<pod>.<ns>~<ns>.svc.cluster.local`),
//! wildcard subscriptions to `istio.workload.Address` and `istio.security.Authorization`, an
//! ACK (the response's nonce) or a NACK (the nonce and an error) for every response, and
//! `initial_resource_versions` on reconnect. Address resources are kept by name; after each
//! response the whole set is translated to a `LocalConfig` and swapped in as a file reload
//! would. The reference enforces no authorization policy, so a non-empty set is NACKed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use meshcert_istio_api::discovery::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use meshcert_istio_api::discovery::{DeltaDiscoveryRequest, DeltaDiscoveryResponse};
use meshcert_istio_api::envoy::config::core::v3::Node;
use meshcert_istio_api::google::rpc::Status;
use meshcert_istio_api::workload::Address;
use meshcert_istio_api::{ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL};
use prost::Message;
use prost_types::{Struct, Value, value::Kind};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use crate::ZtunnelError;
use crate::config::{ControlPlane, XdsNode};
use crate::grpc::{self, Backoff, OnceReporter};
use crate::log::{Level, Record};
use crate::reload::replace_model;
use crate::shutdown::Shutdown;
use crate::state::ProxyState;

/// How xDS is named in logs and errors.
pub const XDS: &str = "xDS";
/// Upstream's reconnect delays.
const FIRST_RETRY: Duration = Duration::from_millis(10);
const MOST_RETRY: Duration = Duration::from_secs(15);
/// Requests queued for the stream: two initial ones and one ACK per response in flight.
const QUEUED_REQUESTS: usize = 16;

/// What this client holds across responses and reconnects.
#[derive(Debug, Default)]
pub struct Resources {
    /// Address resources by name, as last accepted, with their versions.
    addresses: BTreeMap<String, (String, Address)>,
    /// Types accepted at least once: the proxy is configured when both have been.
    accepted: Vec<String>,
}

impl Resources {
    /// Applies one response; `Ok` is an ACK, `Err` a NACK with its reason (nothing changed,
    /// the reason logged).
    pub fn apply(
        &mut self,
        response: &DeltaDiscoveryResponse,
        state: &ProxyState,
        origin: &str,
    ) -> Result<(), String> {
        if response.type_url == ADDRESS_TYPE_URL {
            // Logged as a file reload logs it.
            self.apply_addresses(response, state, origin)?;
        } else if let Err(error) = check_other(response) {
            state.log(
                Record::new(Level::Error, "xds", "response rejected")
                    .str("type", response.type_url.clone())
                    .str("error", error.clone()),
            );
            return Err(error);
        }
        if !self.accepted.contains(&response.type_url) {
            self.accepted.push(response.type_url.clone());
        }
        Ok(())
    }

    fn apply_addresses(
        &mut self,
        response: &DeltaDiscoveryResponse,
        state: &ProxyState,
        origin: &str,
    ) -> Result<(), String> {
        let next = merge(&self.addresses, response);
        let config = next
            .as_ref()
            .map_err(String::clone)
            .and_then(|next| {
                crate::xds_translate::local_config(next.iter().map(|(n, (_, a))| (n, a)))
            })
            .map_err(|message| ZtunnelError::Model {
                path: origin.to_string(),
                message,
            });
        replace_model(state, config, origin)?;
        self.addresses = next?;
        Ok(())
    }

    /// Whether both subscribed types have been accepted at least once.
    pub fn configured(&self) -> bool {
        [ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL]
            .iter()
            .all(|t| self.accepted.iter().any(|a| a == t))
    }

    /// The first requests of a stream: Address (with the versions held) then Authorization.
    pub fn initial_requests(&self, node: &XdsNode) -> [DeltaDiscoveryRequest; 2] {
        let versions: HashMap<String, String> = self
            .addresses
            .iter()
            .map(|(name, (version, _))| (name.clone(), version.clone()))
            .collect();
        let request = |type_url: &str| DeltaDiscoveryRequest {
            node: Some(announce(node)),
            type_url: type_url.to_string(),
            ..DeltaDiscoveryRequest::default()
        };
        [
            DeltaDiscoveryRequest {
                initial_resource_versions: versions,
                ..request(ADDRESS_TYPE_URL)
            },
            request(AUTHORIZATION_TYPE_URL),
        ]
    }
}

/// `held` with a response's removals and additions applied.
fn merge(
    held: &BTreeMap<String, (String, Address)>,
    response: &DeltaDiscoveryResponse,
) -> Result<BTreeMap<String, (String, Address)>, String> {
    let mut next = held.clone();
    for name in &response.removed_resources {
        next.remove(name);
    }
    for resource in &response.resources {
        let any = resource
            .resource
            .as_ref()
            .ok_or_else(|| format!("resource {:?} is empty", resource.name))?;
        if any.type_url != ADDRESS_TYPE_URL {
            return Err(format!(
                "resource {:?} is a {}, not an Address",
                resource.name, any.type_url
            ));
        }
        let address = Address::decode(any.value.as_slice())
            .map_err(|e| format!("resource {:?} does not decode: {e}", resource.name))?;
        next.insert(resource.name.clone(), (resource.version.clone(), address));
    }
    Ok(next)
}

/// Authorization: only an empty set is accepted. Any other type was never asked for.
fn check_other(response: &DeltaDiscoveryResponse) -> Result<(), String> {
    match response.type_url.as_str() {
        AUTHORIZATION_TYPE_URL if response.resources.is_empty() => Ok(()),
        AUTHORIZATION_TYPE_URL => {
            let names: Vec<&str> = response.resources.iter().map(|r| r.name.as_str()).collect();
            Err(format!(
                "authorization policies are not supported by the reference ztunnel \
                 (got {names:?}); push none"
            ))
        }
        other => Err(format!("type {other} was not subscribed to")),
    }
}

/// The node as upstream announces it: its id and NAME, NAMESPACE, INSTANCE_IPS, NODE_NAME.
pub fn announce(node: &XdsNode) -> Node {
    let fields = [
        ("NAME", &node.pod_name),
        ("NAMESPACE", &node.pod_namespace),
        ("INSTANCE_IPS", &node.instance_ip),
        ("NODE_NAME", &node.node_name),
    ]
    .into_iter()
    .map(|(key, value)| {
        let kind = Some(Kind::StringValue(value.clone()));
        (key.to_string(), Value { kind })
    })
    .collect();
    Node {
        id: node.id(),
        metadata: Some(Struct { fields }),
        ..Node::default()
    }
}

/// The ACK (no error) or NACK answering `response`.
pub fn answer(response: &DeltaDiscoveryResponse, error: Option<String>) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: response.type_url.clone(),
        response_nonce: response.nonce.clone(),
        error_detail: error.map(|message| Status {
            message,
            ..Status::default()
        }),
        ..DeltaDiscoveryRequest::default()
    }
}

/// Streams until shutdown, reconnecting with backoff; `configured` turns true once both types
/// have been accepted. Each new stream error is logged once.
pub async fn run(
    state: Arc<ProxyState>,
    server: ControlPlane,
    configured: watch::Sender<bool>,
    mut shutdown: Shutdown,
) {
    let mut resources = Resources::default();
    let mut backoff = Backoff::new(FIRST_RETRY, MOST_RETRY);
    let mut reporter = OnceReporter::default();
    loop {
        let streamed = tokio::select! {
            streamed = stream(&state, &server, &mut resources, &configured, &mut backoff) => streamed,
            _ = shutdown.wait() => return,
        };
        let line = match streamed {
            Ok(()) => format!("{XDS} stream from {} ended; reconnecting", server.address),
            Err(e) => ZtunnelError::chain(&e),
        };
        if reporter.is_new(&line) {
            state.log(Record::new(Level::Error, "xds", line));
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = shutdown.wait() => return,
        }
    }
}

/// One stream: subscribe, then answer every response until the stream ends.
async fn stream(
    state: &ProxyState,
    server: &ControlPlane,
    resources: &mut Resources,
    configured: &watch::Sender<bool>,
    backoff: &mut Backoff,
) -> Result<(), ZtunnelError> {
    let refused = |message: String| ZtunnelError::ControlPlane {
        server: XDS,
        address: server.address.clone(),
        message,
    };
    let channel = grpc::connect(server, XDS).await?;
    let (requests, queued) = mpsc::channel(QUEUED_REQUESTS);
    for request in resources.initial_requests(&state.config.control_plane.node) {
        requests
            .try_send(request)
            .expect("room for the initial requests");
    }
    let mut call = tonic::Request::new(ReceiverStream::new(queued));
    let cluster_id = crate::ca_client::cluster_id(&state.config);
    grpc::authorize(&mut call, &state.config.control_plane.auth, &cluster_id)
        .await
        .map_err(refused)?;
    let mut responses = AggregatedDiscoveryServiceClient::new(channel)
        .delta_aggregated_resources(call)
        .await
        .map_err(|status| refused(format!("the ADS stream was refused: {status}")))?
        .into_inner();
    let origin = state.config.config_origin();
    while let Some(response) = responses
        .message()
        .await
        .map_err(|status| refused(format!("the ADS stream failed: {status}")))?
    {
        backoff.reset();
        let error = resources.apply(&response, state, &origin).err();
        if requests.send(answer(&response, error)).await.is_err() {
            return Ok(());
        }
        if resources.configured() {
            configured.send_if_modified(|c| !std::mem::replace(c, true));
        }
    }
    Ok(())
}

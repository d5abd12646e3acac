//! Istio's `networking.istio.io` objects that meshcert reads: ServiceEntry, WorkloadEntry and
//! DestinationRule, typed after the Istio API (v1; v1beta1 and v1alpha3 have the same shape).
//!
//! Spec structs reject unknown fields and closed value sets are enums, so a misspelt field or
//! value in a fixture is an error that names it instead of a setting silently ignored.
//! `validate` holds the rules Istio's validation webhook would enforce on apply.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use meshcert_ztunnel::local_config::Locality;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The `apiVersion` this module writes.
pub const API_VERSION: &str = "networking.istio.io/v1";
/// Every `apiVersion` accepted on read: the kinds have one shape in all three.
pub const API_VERSIONS: [&str; 3] = [
    "networking.istio.io/v1",
    "networking.istio.io/v1beta1",
    "networking.istio.io/v1alpha3",
];

fn default_api_version() -> String {
    API_VERSION.to_string()
}

/// `networking.istio.io` ServiceEntry: adds hosts to the mesh's service registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceEntry {
    #[serde(default = "default_api_version")]
    pub api_version: String,
    #[serde(default = "ServiceEntry::kind_name")]
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: ServiceEntrySpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ServiceEntryStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceEntrySpec {
    pub hosts: Vec<String>,
    /// Virtual IPs of every host; empty lets the control plane allocate one per host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ServiceEntryPort>,
    #[serde(default)]
    pub location: Location,
    #[serde(default)]
    pub resolution: Resolution,
    /// Inline endpoints; exclusive with `workloadSelector`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<WorkloadEntrySpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<WorkloadSelector>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub export_to: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceEntryPort {
    pub number: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The endpoints' port; unset means `number`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<u32>,
}

/// Whether the hosts are part of the mesh. Istio's default is `MESH_EXTERNAL`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Location {
    #[default]
    #[serde(rename = "MESH_EXTERNAL")]
    MeshExternal,
    #[serde(rename = "MESH_INTERNAL")]
    MeshInternal,
}

/// How the endpoints of the hosts are found. Istio's default is `NONE`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Resolution {
    #[default]
    #[serde(rename = "NONE")]
    None,
    #[serde(rename = "STATIC")]
    Static,
    #[serde(rename = "DNS")]
    Dns,
    #[serde(rename = "DNS_ROUND_ROBIN")]
    DnsRoundRobin,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Location::MeshExternal => "MESH_EXTERNAL",
            Location::MeshInternal => "MESH_INTERNAL",
        })
    }
}

impl fmt::Display for Resolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Resolution::None => "NONE",
            Resolution::Static => "STATIC",
            Resolution::Dns => "DNS",
            Resolution::DnsRoundRobin => "DNS_ROUND_ROBIN",
        })
    }
}

/// What the control plane writes back: the addresses it allocated per host (Istio ambient's
/// ServiceEntry address auto-allocation). Conditions and the rest are not read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEntryStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<ServiceEntryAddress>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEntryAddress {
    pub value: String,
    pub host: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkloadSelector {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// `networking.istio.io` WorkloadEntry: a workload that is not a pod (a VM, or a remote
/// cluster's endpoint on a flat network).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkloadEntry {
    #[serde(default = "default_api_version")]
    pub api_version: String,
    #[serde(default = "WorkloadEntry::kind_name")]
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: WorkloadEntrySpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

/// The spec of a WorkloadEntry, also the shape of a ServiceEntry's inline endpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkloadEntrySpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub address: String,
    /// Service port name -> this endpoint's port.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<String, u32>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub network: String,
    /// `region/zone/subzone`; trailing parts may be left out.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub locality: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_account: String,
}

/// `networking.istio.io` DestinationRule: policy applied after routing, by the proxy that
/// routes (waypoint, gateway, sidecar), never by ztunnel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DestinationRule {
    #[serde(default = "default_api_version")]
    pub api_version: String,
    #[serde(default = "DestinationRule::kind_name")]
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: DestinationRuleSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DestinationRuleSpec {
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_policy: Option<TrafficPolicy>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subsets: Vec<Subset>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub export_to: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<WorkloadSelector>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TrafficPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancerSettings>,
    /// Kept as written: meshcert asserts nothing about connection pools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    /// Kept as written, like `connectionPool`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<serde_json::Value>,
    /// Kept as written, like `connectionPool`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_level_settings: Option<serde_json::Value>,
}

/// `simple` and `consistentHash` are a oneof; `validate` refuses both.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LoadBalancerSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simple: Option<SimpleLb>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistent_hash: Option<ConsistentHashLb>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality_lb_setting: Option<LocalityLbSetting>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_duration_secs: Option<GoDuration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SimpleLb {
    Unspecified,
    LeastConn,
    Random,
    Passthrough,
    RoundRobin,
    LeastRequest,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConsistentHashLb {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_header_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_cookie: Option<HttpCookie>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_source_ip: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_query_parameter_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ring_hash: Option<RingHash>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maglev: Option<Maglev>,
    /// Deprecated in Istio in favour of `ringHash.minimumRingSize`; still accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_ring_size: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpCookie {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<GoDuration>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RingHash {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_ring_size: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Maglev {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_size: Option<u64>,
}

/// `failover`, `failoverPriority` and `distribute` are mutually exclusive (WP-LOC-1).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LocalityLbSetting {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub distribute: Vec<LocalityDistribute>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failover: Vec<LocalityFailover>,
    /// Labels that order endpoints (e.g. `topology.kubernetes.io/region`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failover_priority: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LocalityDistribute {
    pub from: String,
    /// Locality -> percentage of the traffic; the percentages add up to 100.
    pub to: BTreeMap<String, u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LocalityFailover {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OutlierDetection {
    #[serde(
        default,
        rename = "consecutive5xxErrors",
        skip_serializing_if = "Option::is_none"
    )]
    pub consecutive_5xx_errors: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_gateway_errors: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_local_origin_failures: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_ejection_time: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ejection_percent: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_health_percent: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_external_local_origin_errors: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Subset {
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_policy: Option<TrafficPolicy>,
}

/// A duration as Istio's YAML writes it (`10s`, `3m`, `1m30s`, `500ms`, `1.5s`), kept with
/// its spelling so that writing it back gives what was read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GoDuration {
    pub duration: Duration,
    pub text: String,
}

impl GoDuration {
    /// Parses Go's `time.ParseDuration` syntax without a sign (the model's one duration parser).
    pub fn parse(text: &str) -> Result<GoDuration, String> {
        let duration = meshcert_model::duration::parse(text)?;
        Ok(GoDuration {
            duration,
            text: text.to_string(),
        })
    }
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        GoDuration::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// What the three object types share: `kind`, `new` and `Default`.
macro_rules! istio_object {
    ($object:ident, $spec:ident) => {
        impl $object {
            fn kind_name() -> String {
                stringify!($object).to_string()
            }

            pub fn new(metadata: ObjectMeta, spec: $spec) -> Self {
                $object {
                    api_version: default_api_version(),
                    kind: Self::kind_name(),
                    metadata,
                    spec,
                    status: None,
                }
            }
        }

        impl Default for $object {
            fn default() -> Self {
                $object::new(ObjectMeta::default(), $spec::default())
            }
        }
    };
}

istio_object!(ServiceEntry, ServiceEntrySpec);
istio_object!(WorkloadEntry, WorkloadEntrySpec);
istio_object!(DestinationRule, DestinationRuleSpec);

impl ServiceEntry {
    /// The addresses of `host`: `spec.addresses` (shared by every host), else what the control
    /// plane allocated to that host in `status.addresses`.
    pub fn addresses_of(&self, host: &str) -> Vec<&str> {
        self.addresses_where(|a| a.host == host)
    }

    /// Every address of the entry: `spec.addresses`, else all those allocated to its hosts.
    pub fn all_addresses(&self) -> Vec<&str> {
        self.addresses_where(|_| true)
    }

    fn addresses_where(&self, allocated: impl Fn(&ServiceEntryAddress) -> bool) -> Vec<&str> {
        if !self.spec.addresses.is_empty() {
            return self.spec.addresses.iter().map(String::as_str).collect();
        }
        self.status
            .iter()
            .flat_map(|s| s.addresses.iter())
            .filter(|a| allocated(a))
            .map(|a| a.value.as_str())
            .collect()
    }

    /// The rules of Istio's validation webhook that meshcert relies on.
    pub fn validate(&self) -> Result<(), String> {
        let spec = &self.spec;
        if spec.hosts.is_empty() {
            return Err("field `spec.hosts` is empty: name at least one host".into());
        }
        for (i, host) in spec.hosts.iter().enumerate() {
            if host.is_empty() || host.contains(char::is_whitespace) {
                return Err(format!(
                    "field `spec.hosts[{i}]` is {host:?}: a host is a DNS name"
                ));
            }
        }
        for (i, address) in spec.addresses.iter().enumerate() {
            let ip = address
                .split_once('/')
                .map_or(address.as_str(), |(ip, _)| ip);
            if ip.parse::<std::net::IpAddr>().is_err() {
                return Err(format!(
                    "field `spec.addresses[{i}]` is {address:?}: it must be an IP address or CIDR"
                ));
            }
        }
        let mut names = BTreeMap::new();
        for (i, port) in spec.ports.iter().enumerate() {
            check_port(&format!("spec.ports[{i}].number"), port.number)?;
            if let Some(target) = port.target_port {
                check_port(&format!("spec.ports[{i}].targetPort"), target)?;
            }
            if !port.name.is_empty()
                && let Some(first) = names.insert(port.name.as_str(), i)
            {
                return Err(format!(
                    "field `spec.ports[{i}].name` is {:?}, as is `spec.ports[{first}].name`: \
                     port names must be unique",
                    port.name
                ));
            }
        }
        if spec.workload_selector.is_some() && !spec.endpoints.is_empty() {
            return Err(
                "fields `spec.workloadSelector` and `spec.endpoints` are both set: a \
                 ServiceEntry takes its endpoints from one or the other"
                    .into(),
            );
        }
        for (i, endpoint) in spec.endpoints.iter().enumerate() {
            endpoint.validate(&format!("spec.endpoints[{i}]"))?;
            if spec.resolution == Resolution::Static
                && endpoint.address.parse::<std::net::IpAddr>().is_err()
            {
                return Err(format!(
                    "field `spec.endpoints[{i}].address` is {:?}: resolution STATIC needs IP \
                     addresses",
                    endpoint.address
                ));
            }
        }
        Ok(())
    }
}

impl WorkloadEntry {
    pub fn validate(&self) -> Result<(), String> {
        if self.spec.address.is_empty() && self.spec.network.is_empty() {
            return Err(
                "field `spec.address` is empty: give the workload's address (only a workload \
                 on another network, reached through its gateway, may omit it)"
                    .into(),
            );
        }
        self.spec.validate("spec")
    }
}

impl WorkloadEntrySpec {
    /// `field` is where this spec sits in its object (`spec`, `spec.endpoints[0]`).
    pub fn validate(&self, field: &str) -> Result<(), String> {
        for (name, port) in &self.ports {
            check_port(&format!("{field}.ports.{name}"), *port)?;
        }
        parse_locality(&self.locality)
            .map_err(|problem| format!("field `{field}.locality` {problem}"))?;
        Ok(())
    }
}

impl DestinationRule {
    pub fn validate(&self) -> Result<(), String> {
        let spec = &self.spec;
        if spec.host.is_empty() {
            return Err("field `spec.host` is empty: name the host the rule applies to".into());
        }
        if let Some(policy) = &spec.traffic_policy {
            policy.validate("spec.trafficPolicy")?;
        }
        let mut names = BTreeMap::new();
        for (i, subset) in spec.subsets.iter().enumerate() {
            if subset.name.is_empty() {
                return Err(format!("field `spec.subsets[{i}].name` is empty"));
            }
            if let Some(first) = names.insert(subset.name.as_str(), i) {
                return Err(format!(
                    "field `spec.subsets[{i}].name` is {:?}, as is `spec.subsets[{first}].name`: \
                     subset names must be unique",
                    subset.name
                ));
            }
            if let Some(policy) = &subset.traffic_policy {
                policy.validate(&format!("spec.subsets[{i}].trafficPolicy"))?;
            }
        }
        Ok(())
    }
}

impl TrafficPolicy {
    fn validate(&self, field: &str) -> Result<(), String> {
        if let Some(lb) = &self.load_balancer {
            if lb.simple.is_some() && lb.consistent_hash.is_some() {
                return Err(format!(
                    "fields `{field}.loadBalancer.simple` and `{field}.loadBalancer.consistentHash` \
                     are both set: choose one"
                ));
            }
            if let Some(locality) = &lb.locality_lb_setting {
                locality.validate(&format!("{field}.loadBalancer.localityLbSetting"))?;
            }
        }
        if let Some(od) = &self.outlier_detection {
            for (name, value) in [
                ("maxEjectionPercent", od.max_ejection_percent),
                ("minHealthPercent", od.min_health_percent),
            ] {
                if let Some(v) = value
                    && !(0..=100).contains(&v)
                {
                    return Err(format!(
                        "field `{field}.outlierDetection.{name}` is {v}: it must be 0..100"
                    ));
                }
            }
        }
        Ok(())
    }
}

impl LocalityLbSetting {
    fn validate(&self, field: &str) -> Result<(), String> {
        let set: Vec<&str> = [
            ("distribute", !self.distribute.is_empty()),
            ("failover", !self.failover.is_empty()),
            ("failoverPriority", !self.failover_priority.is_empty()),
        ]
        .into_iter()
        .filter_map(|(name, on)| on.then_some(name))
        .collect();
        if set.len() > 1 {
            return Err(format!(
                "fields {} of `{field}` are all set: distribute, failover and failoverPriority \
                 are mutually exclusive, choose one",
                set.iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(" and ")
            ));
        }
        for (i, rule) in self.distribute.iter().enumerate() {
            let total: u32 = rule.to.values().sum();
            if total != 100 {
                return Err(format!(
                    "field `{field}.distribute[{i}].to` adds up to {total}: the weights must add \
                     up to 100"
                ));
            }
        }
        for (i, rule) in self.failover.iter().enumerate() {
            if rule.from == rule.to {
                return Err(format!(
                    "field `{field}.failover[{i}]` fails over from {:?} to itself: name another \
                     region in `to`",
                    rule.from
                ));
            }
        }
        Ok(())
    }
}

fn check_port(field: &str, port: u32) -> Result<(), String> {
    if (1..=65535).contains(&port) {
        Ok(())
    } else {
        Err(format!("field `{field}` is {port}: it must be 1..65535"))
    }
}

/// Splits Istio's locality string `region/zone/subzone` (trailing parts may be left out; ""
/// is no locality). A problem is returned as the end of a sentence about the field.
pub fn parse_locality(value: &str) -> Result<Locality, String> {
    if value.is_empty() {
        return Ok(Locality::default());
    }
    let parts: Vec<&str> = value.split('/').collect();
    let shape = "write region/zone/subzone, e.g. us-east1/us-east1-b/rack-3, leaving out \
                 trailing parts you do not need";
    if parts.len() > 3 {
        return Err(format!(
            "is {value:?}, which has {} parts: {shape}",
            parts.len()
        ));
    }
    if let Some(i) = parts.iter().position(|p| p.is_empty() || p.trim() != *p) {
        let which = ["region", "zone", "subzone"][i];
        return Err(format!(
            "is {value:?}, whose {which} is empty or padded: {shape}"
        ));
    }
    let part = |i: usize| parts.get(i).copied().unwrap_or_default().to_string();
    Ok(Locality {
        region: part(0),
        zone: part(1),
        subzone: part(2),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("10s", Duration::from_secs(10))]
    #[case("3m", Duration::from_secs(180))]
    #[case("1m30s", Duration::from_secs(90))]
    #[case("500ms", Duration::from_millis(500))]
    #[case("1.5s", Duration::from_millis(1500))]
    #[case("2h", Duration::from_secs(7200))]
    #[case("250us", Duration::from_micros(250))]
    #[case("0", Duration::ZERO)]
    fn durations_parse(#[case] text: &str, #[case] expected: Duration) {
        let d = GoDuration::parse(text).unwrap();
        assert_eq!(d.duration, expected);
        assert_eq!(d.text, text);
    }

    #[rstest]
    #[case("")]
    #[case("10")]
    #[case("s")]
    #[case("10 s")]
    #[case("1m 30s")]
    #[case("10sec")]
    #[case("-1s")]
    #[case("1..5s")]
    fn bad_durations_say_how_to_write_one(#[case] text: &str) {
        let err = GoDuration::parse(text).unwrap_err();
        assert!(err.contains("like 250ms, 1.5s or 1m30s"), "{err}");
    }

    #[rstest]
    #[case("", ("", "", ""))]
    #[case("r1", ("r1", "", ""))]
    #[case("r1/z1", ("r1", "z1", ""))]
    #[case("r1/z1/s1", ("r1", "z1", "s1"))]
    fn localities_split(#[case] value: &str, #[case] expected: (&str, &str, &str)) {
        let l = parse_locality(value).unwrap();
        assert_eq!(
            (l.region.as_str(), l.zone.as_str(), l.subzone.as_str()),
            expected
        );
    }

    #[rstest]
    #[case("r1/z1/s1/x", "4 parts")]
    #[case("/z1", "region is empty")]
    #[case("r1//s1", "zone is empty")]
    #[case("r1/z1/", "subzone is empty")]
    #[case("r1/ z1", "zone is empty or padded")]
    fn bad_localities_are_named(#[case] value: &str, #[case] fragment: &str) {
        let err = parse_locality(value).unwrap_err();
        assert!(
            err.contains(fragment) && err.contains("region/zone/subzone"),
            "{err}"
        );
    }

    #[test]
    fn addresses_come_from_the_spec_else_the_allocation_of_the_host() {
        let mut se = ServiceEntry::new(
            ObjectMeta::default(),
            ServiceEntrySpec {
                hosts: vec!["a.example".into(), "b.example".into()],
                ..Default::default()
            },
        );
        se.status = Some(ServiceEntryStatus {
            addresses: vec![
                ServiceEntryAddress {
                    value: "10.96.0.20".into(),
                    host: "a.example".into(),
                },
                ServiceEntryAddress {
                    value: "10.96.0.21".into(),
                    host: "b.example".into(),
                },
            ],
        });
        assert_eq!(se.addresses_of("b.example"), ["10.96.0.21"]);
        assert!(se.addresses_of("c.example").is_empty());
        se.spec.addresses = vec!["10.96.1.1".into()];
        assert_eq!(se.addresses_of("a.example"), ["10.96.1.1"]);
        assert_eq!(se.addresses_of("b.example"), ["10.96.1.1"]);
    }

    #[test]
    fn objects_write_back_what_they_read() {
        let dr = DestinationRule::new(
            ObjectMeta {
                name: Some("r".into()),
                ..Default::default()
            },
            DestinationRuleSpec {
                host: "h".into(),
                traffic_policy: Some(TrafficPolicy {
                    outlier_detection: Some(OutlierDetection {
                        consecutive_5xx_errors: Some(1),
                        base_ejection_time: Some(GoDuration::parse("30s").unwrap()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
        );
        let json = serde_json::to_value(&dr).unwrap();
        assert_eq!(json["apiVersion"], "networking.istio.io/v1");
        assert_eq!(json["kind"], "DestinationRule");
        let od = &json["spec"]["trafficPolicy"]["outlierDetection"];
        assert_eq!(od["consecutive5xxErrors"], 1);
        assert_eq!(od["baseEjectionTime"], "30s");
        let back: DestinationRule = serde_json::from_value(json).unwrap();
        assert_eq!(back, dr);
    }
}

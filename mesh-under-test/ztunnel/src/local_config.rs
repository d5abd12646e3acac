//! ztunnel's local config file (`LOCAL_XDS_PATH`): the workload model as upstream istio/ztunnel
//! reads it with no control plane. Field names, required keys and strictness follow upstream's
//! `LocalConfig` so that one file drives the reference and an upstream build alike.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The whole file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalConfig {
    #[serde(default)]
    pub workloads: Vec<LocalWorkload>,
    /// Authorization policies; the reference enforces none, so it accepts only an empty list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<serde_json::Value>,
    #[serde(default)]
    pub services: Vec<Service>,
}

/// One workload (a pod), with the services it backs and their port maps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalWorkload {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_account: String,
    pub workload_ips: Vec<IpAddr>,
    #[serde(default)]
    pub protocol: Protocol,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    #[serde(default)]
    pub network: String,
    #[serde(default)]
    pub cluster_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub trust_domain: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub workload_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    #[serde(default)]
    pub status: HealthStatus,
    #[serde(default = "default_capacity")]
    pub capacity: u32,
    #[serde(default)]
    pub locality: Locality,
    /// `"<namespace>/<hostname>"` -> service port -> target port. Required, may be empty.
    pub services: BTreeMap<String, BTreeMap<u16, u16>>,
}

fn default_capacity() -> u32 {
    1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[allow(clippy::upper_case_acronyms)]
pub enum Protocol {
    #[default]
    TCP,
    HBONE,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash, Serialize, Deserialize)]
pub enum HealthStatus {
    #[default]
    Healthy,
    Unhealthy,
}

/// Where a workload runs. Upstream requires all three keys whenever `locality` is present.
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Locality {
    pub region: String,
    pub zone: String,
    pub subzone: String,
}

/// A service: its VIPs and ports, and how ztunnel load-balances it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Service {
    pub name: String,
    pub namespace: String,
    pub hostname: String,
    pub vips: Vec<NetworkAddress>,
    pub ports: BTreeMap<u16, u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancer>,
}

/// Routing preferences, mode and health policy of a service (upstream `LoadBalancer`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadBalancer {
    pub routing_preferences: Vec<RoutingPreference>,
    pub mode: LoadBalancerMode,
    pub health_policy: HealthPolicy,
}

/// One locality scope an endpoint must share with the client to rank first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RoutingPreference {
    Region,
    Zone,
    Subzone,
    Node,
    Cluster,
    Network,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LoadBalancerMode {
    /// Routing preferences are ignored.
    Standard,
    /// Only endpoints matching every preference; none left means the connection fails.
    Strict,
    /// Prefer the endpoints matching the most preferences, fall back level by level.
    Failover,
    /// No endpoint selection: connect to the original destination.
    Passthrough,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash, Serialize, Deserialize)]
pub enum HealthPolicy {
    #[default]
    OnlyHealthy,
    AllowAll,
}

/// `network/ip`, as upstream writes VIPs (`"/10.96.0.10"` on the default network).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NetworkAddress {
    pub network: String,
    pub address: IpAddr,
}

impl fmt::Display for NetworkAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.address)
    }
}

impl FromStr for NetworkAddress {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (network, ip) = s
            .rsplit_once('/')
            .ok_or_else(|| format!("VIP {s:?} is not of the form \"network/ip\""))?;
        let address = ip
            .parse()
            .map_err(|e| format!("VIP {s:?} has an invalid IP address {ip:?}: {e}"))?;
        Ok(Self {
            network: network.to_string(),
            address,
        })
    }
}

impl Serialize for NetworkAddress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for NetworkAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Why a local config file was refused.
#[derive(Debug, thiserror::Error)]
pub enum LocalConfigError {
    #[error("cannot read ztunnel config {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("ztunnel config {path}: {message}")]
    Parse { path: String, message: String },
    #[error("ztunnel config {path}: {message}")]
    Invalid { path: String, message: String },
}

impl LocalConfig {
    /// Reads and checks a config file; errors name the file, and the line and field where known.
    pub fn load(path: &Path) -> Result<Self, LocalConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| LocalConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses config text; `origin` names the text in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, LocalConfigError> {
        // serde-saphyr's message already names the line and column.
        let config: LocalConfig =
            serde_saphyr::from_str(text).map_err(|e| LocalConfigError::Parse {
                path: origin.to_string(),
                message: e.without_snippet().to_string(),
            })?;
        config
            .validate()
            .map_err(|message| LocalConfigError::Invalid {
                path: origin.to_string(),
                message,
            })?;
        Ok(config)
    }

    /// Rules across fields that serde cannot express.
    pub fn validate(&self) -> Result<(), String> {
        if !self.policies.is_empty() {
            return Err(
                "policies: authorization policies are not supported by this ztunnel".into(),
            );
        }
        let hosts: std::collections::BTreeSet<String> = self
            .services
            .iter()
            .map(|s| format!("{}/{}", s.namespace, s.hostname))
            .collect();
        for (i, w) in self.workloads.iter().enumerate() {
            if w.workload_ips.is_empty() {
                return Err(format!("workloads[{i}] ({}): workloadIps is empty", w.name));
            }
            for key in w.services.keys() {
                if !key.contains('/') {
                    return Err(format!(
                        "workloads[{i}] ({}): services key {key:?} is not \"namespace/hostname\"",
                        w.name
                    ));
                }
                if !hosts.contains(key) {
                    return Err(format!(
                        "workloads[{i}] ({}): services names {key:?}, which no service defines",
                        w.name
                    ));
                }
            }
        }
        for (i, s) in self.services.iter().enumerate() {
            if s.vips.is_empty() {
                return Err(format!("services[{i}] ({}): vips is empty", s.hostname));
            }
        }
        Ok(())
    }

    /// Writes the file as YAML, the form upstream reads.
    pub fn to_yaml(&self) -> String {
        serde_saphyr::to_string(self).expect("the local config always serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUIDE: &str = r#"
workloads:
- uid: cluster1//v1/Pod/httpbin/in-ambient-1
  name: in-ambient-1
  namespace: httpbin
  serviceAccount: in-ambient
  workloadIps: ["10.244.1.11"]
  protocol: TCP
  node: node-a
  network: ""
  clusterId: cluster1
  trustDomain: cluster.local
  workloadName: in-ambient
  status: Healthy
  capacity: 1
  locality: {region: r1, zone: z1, subzone: ""}
  services: {"httpbin/in-ambient.httpbin.svc.cluster.local": {8000: 8080}}
services:
- name: in-ambient
  namespace: httpbin
  hostname: in-ambient.httpbin.svc.cluster.local
  vips: ["/10.96.0.10"]
  ports: {8000: 8080}
  loadBalancer: {routingPreferences: [Network, Region, Zone], mode: Failover, healthPolicy: OnlyHealthy}
"#;

    #[test]
    fn parses_the_design_example_and_round_trips() {
        let config = LocalConfig::parse(GUIDE, "guide.yaml").unwrap();
        assert_eq!(config.workloads[0].locality.region, "r1");
        assert_eq!(config.services[0].vips[0].to_string(), "/10.96.0.10");
        let again = LocalConfig::parse(&config.to_yaml(), "again.yaml").unwrap();
        assert_eq!(config, again);
    }

    #[test]
    fn unknown_field_is_named_with_its_line() {
        let text = GUIDE.replace("  capacity: 1\n", "  capacity: 1\n  weight: 3\n");
        let err = LocalConfig::parse(&text, "bad.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad.yaml"), "{err}");
        assert!(err.contains("weight"), "{err}");
        assert!(err.contains("line 16"), "{err}");
    }

    #[test]
    fn locality_needs_all_three_keys() {
        let text = GUIDE.replace(
            "{region: r1, zone: z1, subzone: \"\"}",
            "{region: r1, zone: z1}",
        );
        let err = LocalConfig::parse(&text, "loc.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("subzone"), "{err}");
    }

    #[test]
    fn workload_must_list_services() {
        let text = GUIDE.replace(
            "  services: {\"httpbin/in-ambient.httpbin.svc.cluster.local\": {8000: 8080}}\n",
            "",
        );
        let err = LocalConfig::parse(&text, "svc.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("services"), "{err}");
    }

    #[test]
    fn workload_service_must_exist() {
        let text = GUIDE.replace("httpbin/in-ambient.httpbin", "httpbin/other.httpbin");
        let err = LocalConfig::parse(&text, "x.yaml").unwrap_err().to_string();
        assert!(err.contains("no service defines"), "{err}");
    }
}

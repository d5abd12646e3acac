//! Traffic-distribution resolution: which mode a Service or ServiceEntry asks for (its
//! `internalTrafficPolicy`, `spec.trafficDistribution` or annotation, in that precedence, else
//! the profile's default), and the `loadBalancer` of the local config that mode becomes.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use meshcert_model::{Profile, TrafficDistribution};
use meshcert_ztunnel::local_config::{
    HealthPolicy, LoadBalancer, LoadBalancerMode, RoutingPreference,
};

use crate::istio::ServiceEntry;
use crate::{ControlPlaneDefects, ControlPlaneError, TRAFFIC_DISTRIBUTION_ANNOTATION, describe};

/// The service's `loadBalancer` in the local config; `None` for `Any`.
pub fn load_balancer(distribution: TrafficDistribution) -> Option<LoadBalancer> {
    use RoutingPreference::*;
    let (routing_preferences, mode) = match distribution {
        TrafficDistribution::NodeLocal => (vec![Node], LoadBalancerMode::Strict),
        TrafficDistribution::PreferClose => {
            (vec![Network, Region, Zone], LoadBalancerMode::Failover)
        }
        TrafficDistribution::PreferSameNode => (
            vec![Network, Region, Zone, Subzone, Node],
            LoadBalancerMode::Failover,
        ),
        TrafficDistribution::PreferNetwork => (vec![Network], LoadBalancerMode::Failover),
        TrafficDistribution::PreferRegion => (vec![Network, Region], LoadBalancerMode::Failover),
        TrafficDistribution::Any => return None,
    };
    Some(LoadBalancer {
        routing_preferences,
        mode,
        health_policy: HealthPolicy::OnlyHealthy,
    })
}

/// Where a service's traffic distribution came from, highest precedence first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    InternalTrafficPolicy,
    /// `spec.trafficDistribution`.
    Spec,
    /// The `networking.istio.io/traffic-distribution` annotation.
    Annotation,
    /// Nothing set: the profile's default.
    Default,
}

/// A service's traffic distribution and where it came from (warnings are dropped; see
/// [`crate::to_local_config`] for them).
pub fn traffic_distribution(
    service: &Service,
    profile: Profile,
) -> Result<(TrafficDistribution, Source), ControlPlaneError> {
    let resolved = resolve_distribution(service, profile, ControlPlaneDefects::default())?;
    Ok((resolved.distribution, resolved.source))
}

/// A ServiceEntry's traffic distribution: its annotation, else the profile's default (TD-PREC-3).
pub fn service_entry_distribution(
    entry: &ServiceEntry,
    profile: Profile,
) -> Result<(TrafficDistribution, Source), ControlPlaneError> {
    let resolved = resolve_entry_distribution(entry, profile)?;
    Ok((resolved.distribution, resolved.source))
}

/// A resolved mode, where it came from, and the warning its value earned (profile istio).
pub(crate) struct Resolved {
    pub(crate) distribution: TrafficDistribution,
    pub(crate) source: Source,
    pub(crate) warning: Option<String>,
}

pub(crate) fn resolve_distribution(
    service: &Service,
    profile: Profile,
    defects: ControlPlaneDefects,
) -> Result<Resolved, ControlPlaneError> {
    let spec = service.spec.as_ref();
    if spec.and_then(|s| s.internal_traffic_policy.as_deref()) == Some("Local") {
        return Ok(Resolved {
            distribution: TrafficDistribution::NodeLocal,
            source: Source::InternalTrafficPolicy,
            warning: None,
        });
    }
    let what = describe("Service", &service.metadata);
    let from_spec = spec
        .and_then(|s| s.traffic_distribution.as_deref())
        .filter(|v| !v.is_empty())
        .map(|v| (Source::Spec, v));
    let from_annotation = annotation_value(&service.metadata).map(|v| (Source::Annotation, v));
    let chosen = if defects.wrong_precedence {
        from_annotation.or(from_spec)
    } else {
        from_spec.or(from_annotation)
    };
    match chosen {
        Some((Source::Spec, value)) => spec_distribution(&what, value, profile),
        Some((_, value)) => annotation_distribution(&what, value, profile),
        None => Ok(default_distribution(profile)),
    }
}

pub(crate) fn resolve_entry_distribution(
    entry: &ServiceEntry,
    profile: Profile,
) -> Result<Resolved, ControlPlaneError> {
    match annotation_value(&entry.metadata) {
        Some(value) => {
            annotation_distribution(&describe("ServiceEntry", &entry.metadata), value, profile)
        }
        None => Ok(default_distribution(profile)),
    }
}

fn annotation_value(meta: &ObjectMeta) -> Option<&str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(TRAFFIC_DISTRIBUTION_ANNOTATION))
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

fn default_distribution(profile: Profile) -> Resolved {
    Resolved {
        distribution: match profile {
            Profile::Solo => TrafficDistribution::PreferNetwork,
            Profile::Istio => TrafficDistribution::Any,
        },
        source: Source::Default,
        warning: None,
    }
}

/// `spec.trafficDistribution`: the API server accepts only the Kubernetes values here; the
/// Istio-only ones (Any, PreferNetwork, PreferRegion) belong in the annotation.
fn spec_distribution(
    what: &str,
    value: &str,
    profile: Profile,
) -> Result<Resolved, ControlPlaneError> {
    let distribution = match value {
        "PreferClose" | "PreferSameZone" => TrafficDistribution::PreferClose,
        "PreferSameNode" => TrafficDistribution::PreferSameNode,
        other => {
            return unknown_value(
                what,
                profile,
                Source::Spec,
                "spec.trafficDistribution",
                other,
                "PreferClose, PreferSameZone, PreferSameNode",
            );
        }
    };
    Ok(Resolved {
        distribution,
        source: Source::Spec,
        warning: None,
    })
}

/// The `networking.istio.io/traffic-distribution` annotation of a Service or ServiceEntry.
fn annotation_distribution(
    what: &str,
    value: &str,
    profile: Profile,
) -> Result<Resolved, ControlPlaneError> {
    let distribution = match (value, profile) {
        ("PreferClose" | "PreferSameZone", _) => TrafficDistribution::PreferClose,
        ("PreferSameNode", _) => TrafficDistribution::PreferSameNode,
        ("Any", _) => TrafficDistribution::Any,
        ("PreferNetwork", Profile::Solo) => TrafficDistribution::PreferNetwork,
        ("PreferRegion", Profile::Solo) => TrafficDistribution::PreferRegion,
        (other, profile) => {
            let accepted = match profile {
                Profile::Solo => {
                    "PreferClose, PreferSameZone, PreferSameNode, PreferNetwork, PreferRegion, Any"
                }
                Profile::Istio => "PreferClose, PreferSameZone, PreferSameNode, Any",
            };
            let field = format!("metadata.annotations[{TRAFFIC_DISTRIBUTION_ANNOTATION}]");
            return unknown_value(what, profile, Source::Annotation, &field, other, accepted);
        }
    };
    Ok(Resolved {
        distribution,
        source: Source::Annotation,
        warning: None,
    })
}

/// Istio falls back to `Any` on a value it does not know; the Solo profile promises to refuse
/// it, so a misspelt value cannot silently change failover behaviour.
fn unknown_value(
    what: &str,
    profile: Profile,
    source: Source,
    field: &str,
    value: &str,
    accepted: &str,
) -> Result<Resolved, ControlPlaneError> {
    match profile {
        Profile::Istio => Ok(Resolved {
            distribution: TrafficDistribution::Any,
            source,
            warning: Some(format!(
                "{what}: field `{field}` is {value:?}, which profile istio does not know \
                 (it accepts {accepted}): treated as Any, every healthy endpoint with equal weight"
            )),
        }),
        Profile::Solo => Err(ControlPlaneError::Refused {
            object: what.to_string(),
            field: field.to_string(),
            problem: format!(
                "is {value:?}, which profile solo does not accept: use one of {accepted}"
            ),
        }),
    }
}

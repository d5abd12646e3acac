//! Traffic-distribution resolution: precedence, modes, profile defaults, unknown values and
//! the `wrong-precedence` defect.

use k8s_openapi::api::core::v1::Service;
use meshcert_model::Profile;
use meshcert_ztunnel::local_config::{
    HealthPolicy, LoadBalancer, LoadBalancerMode, RoutingPreference, RoutingPreference::*,
};
use rstest::rstest;

use crate::distribution::resolve_distribution;
use crate::testing::*;
use crate::*;
use TrafficDistribution as TD;

/// `None` leaves the setting unset.
fn svc(itp: Option<&str>, spec: Option<&str>, annotation: Option<&str>) -> Service {
    let mut b = service("in-ambient");
    if let Some(v) = itp {
        b = b.internal_traffic_policy(v);
    }
    if let Some(v) = spec {
        b = b.traffic_distribution(v);
    }
    if let Some(v) = annotation {
        b = b.annotation(v);
    }
    b.build()
}

#[rstest]
// internalTrafficPolicy Local beats everything.
#[case::itp_beats_spec(
    Some("Local"),
    Some("PreferClose"),
    Some("Any"),
    Profile::Istio,
    TD::NodeLocal,
    Source::InternalTrafficPolicy
)]
#[case::itp_beats_bad_values_solo(
    Some("Local"),
    Some("Bogus"),
    Some("Bogus"),
    Profile::Solo,
    TD::NodeLocal,
    Source::InternalTrafficPolicy
)]
#[case::itp_cluster_is_no_preference(
    Some("Cluster"),
    None,
    None,
    Profile::Istio,
    TD::Any,
    Source::Default
)]
// spec beats the annotation.
#[case::spec_beats_annotation_istio(
    None,
    Some("PreferSameNode"),
    Some("Any"),
    Profile::Istio,
    TD::PreferSameNode,
    Source::Spec
)]
#[case::spec_beats_annotation_solo(
    None,
    Some("PreferClose"),
    Some("PreferNetwork"),
    Profile::Solo,
    TD::PreferClose,
    Source::Spec
)]
#[case::spec_same_zone(
    None,
    Some("PreferSameZone"),
    None,
    Profile::Istio,
    TD::PreferClose,
    Source::Spec
)]
#[case::empty_spec_is_unset(
    None,
    Some(""),
    Some("PreferSameNode"),
    Profile::Istio,
    TD::PreferSameNode,
    Source::Annotation
)]
// the annotation beats the default.
#[case::annotation_close_istio(
    None,
    None,
    Some("PreferClose"),
    Profile::Istio,
    TD::PreferClose,
    Source::Annotation
)]
#[case::annotation_same_zone_solo(
    None,
    None,
    Some("PreferSameZone"),
    Profile::Solo,
    TD::PreferClose,
    Source::Annotation
)]
#[case::annotation_same_node(
    None,
    None,
    Some("PreferSameNode"),
    Profile::Solo,
    TD::PreferSameNode,
    Source::Annotation
)]
#[case::annotation_any_solo(None, None, Some("Any"), Profile::Solo, TD::Any, Source::Annotation)]
#[case::annotation_network_solo(
    None,
    None,
    Some("PreferNetwork"),
    Profile::Solo,
    TD::PreferNetwork,
    Source::Annotation
)]
#[case::annotation_region_solo(
    None,
    None,
    Some("PreferRegion"),
    Profile::Solo,
    TD::PreferRegion,
    Source::Annotation
)]
// istio treats unknown values, including the Solo ones, as Any.
#[case::annotation_network_istio(
    None,
    None,
    Some("PreferNetwork"),
    Profile::Istio,
    TD::Any,
    Source::Annotation
)]
#[case::annotation_region_istio(
    None,
    None,
    Some("PreferRegion"),
    Profile::Istio,
    TD::Any,
    Source::Annotation
)]
#[case::annotation_bogus_istio(
    None,
    None,
    Some("Bogus"),
    Profile::Istio,
    TD::Any,
    Source::Annotation
)]
#[case::spec_bogus_istio(
    None,
    Some("PreferNetwork"),
    None,
    Profile::Istio,
    TD::Any,
    Source::Spec
)]
// defaults.
#[case::default_istio(None, None, None, Profile::Istio, TD::Any, Source::Default)]
#[case::default_solo(None, None, None, Profile::Solo, TD::PreferNetwork, Source::Default)]
fn precedence(
    #[case] itp: Option<&str>,
    #[case] spec: Option<&str>,
    #[case] annotation: Option<&str>,
    #[case] profile: Profile,
    #[case] expected: TrafficDistribution,
    #[case] source: Source,
) {
    let got = traffic_distribution(&svc(itp, spec, annotation), profile).unwrap();
    assert_eq!(got, (expected, source));
}

#[rstest]
#[case::node_local(TD::NodeLocal, Some((vec![Node], LoadBalancerMode::Strict)))]
#[case::close(TD::PreferClose, Some((vec![Network, Region, Zone], LoadBalancerMode::Failover)))]
#[case::same_node(TD::PreferSameNode, Some((vec![Network, Region, Zone, Subzone, Node], LoadBalancerMode::Failover)))]
#[case::network(TD::PreferNetwork, Some((vec![Network], LoadBalancerMode::Failover)))]
#[case::region(TD::PreferRegion, Some((vec![Network, Region], LoadBalancerMode::Failover)))]
#[case::any(TD::Any, None)]
fn modes(
    #[case] distribution: TrafficDistribution,
    #[case] expected: Option<(Vec<RoutingPreference>, LoadBalancerMode)>,
) {
    let expected = expected.map(|(routing_preferences, mode)| LoadBalancer {
        routing_preferences,
        mode,
        health_policy: HealthPolicy::OnlyHealthy,
    });
    assert_eq!(load_balancer(distribution), expected);
}

#[rstest]
#[case::spec(
    None,
    Some("PreferNetwork"),
    "`spec.trafficDistribution` is \"PreferNetwork\""
)]
#[case::annotation(
    None,
    None,
    "`metadata.annotations[networking.istio.io/traffic-distribution]` is \"Nearby\""
)]
fn solo_refuses_unknown_values(
    #[case] itp: Option<&str>,
    #[case] spec: Option<&str>,
    #[case] fragment: &str,
) {
    let service = svc(itp, spec, spec.is_none().then_some("Nearby"));
    let err = traffic_distribution(&service, Profile::Solo)
        .unwrap_err()
        .to_string();
    assert!(err.contains("Service httpbin/in-ambient"), "{err}");
    assert!(err.contains(fragment), "{err}");
    let mut snap = snapshot();
    snap.services.push(service);
    assert!(to_local_config(&snap, Profile::Solo).is_err());
}

#[test]
fn istio_warns_about_unknown_values() {
    let mut snap = snapshot();
    snap.services.push(
        service("in-ambient")
            .annotation("PreferRegion")
            .port(8000, 8080)
            .build(),
    );
    let t = to_local_config(&snap, Profile::Istio).unwrap();
    assert_eq!(t.config.services[0].load_balancer, None);
    assert_eq!(t.warnings.len(), 1, "{:?}", t.warnings);
    assert!(
        t.warnings[0].contains("Service httpbin/in-ambient"),
        "{}",
        t.warnings[0]
    );
    assert!(
        t.warnings[0].contains("\"PreferRegion\""),
        "{}",
        t.warnings[0]
    );
}

/// Every combination of the three settings, both profiles: the defect changes the result
/// exactly where both spec and annotation are set (and internalTrafficPolicy is not Local),
/// and there the annotation wins.
#[test]
fn wrong_precedence_flips_exactly_the_spec_versus_annotation_rows() {
    let wrong = ControlPlaneDefects {
        wrong_precedence: true,
    };
    let mut flipped = 0;
    for itp in [None, Some("Local"), Some("Cluster")] {
        for spec in [None, Some(""), Some("PreferClose"), Some("PreferSameNode")] {
            for annotation in [
                None,
                Some("Any"),
                Some("PreferSameNode"),
                Some("PreferClose"),
            ] {
                for profile in [Profile::Istio, Profile::Solo] {
                    let service = svc(itp, spec, annotation);
                    let right =
                        resolve_distribution(&service, profile, ControlPlaneDefects::default())
                            .unwrap();
                    let got = resolve_distribution(&service, profile, wrong).unwrap();
                    let conflict = itp != Some("Local")
                        && spec.is_some_and(|s| !s.is_empty())
                        && annotation.is_some();
                    let row = format!("{itp:?} {spec:?} {annotation:?} {profile}");
                    if conflict {
                        let annotation_only =
                            traffic_distribution(&svc(itp, None, annotation), profile).unwrap();
                        assert_eq!((got.distribution, got.source), annotation_only, "{row}");
                        flipped += usize::from(got.distribution != right.distribution);
                    } else {
                        assert_eq!(
                            (got.distribution, got.source),
                            (right.distribution, right.source),
                            "{row}"
                        );
                    }
                }
            }
        }
    }
    // Rows where spec and annotation name different modes: each of the 2 spec values
    // against the 2 other annotation values, for itp unset and Cluster, in both profiles.
    assert_eq!(flipped, 2 * 2 * 2 * 2);
}

#[test]
fn the_defect_reaches_the_translated_service() {
    let mut snap = snapshot();
    snap.services.push(
        service("in-ambient")
            .traffic_distribution("PreferClose")
            .annotation("PreferSameNode")
            .build(),
    );
    let wrong = ControlPlaneDefects {
        wrong_precedence: true,
    };
    let right = to_local_config(&snap, Profile::Istio).unwrap();
    let broken = to_local_config_with(&snap, Profile::Istio, wrong).unwrap();
    assert_eq!(
        right.config.services[0].load_balancer,
        load_balancer(TD::PreferClose)
    );
    assert_eq!(
        broken.config.services[0].load_balancer,
        load_balancer(TD::PreferSameNode)
    );
}

#[rstest]
#[case::close_istio(
    Some("PreferClose"),
    Profile::Istio,
    TD::PreferClose,
    Source::Annotation
)]
#[case::same_zone_solo(
    Some("PreferSameZone"),
    Profile::Solo,
    TD::PreferClose,
    Source::Annotation
)]
#[case::same_node_istio(
    Some("PreferSameNode"),
    Profile::Istio,
    TD::PreferSameNode,
    Source::Annotation
)]
#[case::any_solo(Some("Any"), Profile::Solo, TD::Any, Source::Annotation)]
#[case::any_istio(Some("Any"), Profile::Istio, TD::Any, Source::Annotation)]
#[case::network_solo(
    Some("PreferNetwork"),
    Profile::Solo,
    TD::PreferNetwork,
    Source::Annotation
)]
#[case::region_solo(
    Some("PreferRegion"),
    Profile::Solo,
    TD::PreferRegion,
    Source::Annotation
)]
#[case::network_istio(Some("PreferNetwork"), Profile::Istio, TD::Any, Source::Annotation)]
#[case::region_istio(Some("PreferRegion"), Profile::Istio, TD::Any, Source::Annotation)]
#[case::empty_is_unset(Some(""), Profile::Solo, TD::PreferNetwork, Source::Default)]
#[case::default_istio(None, Profile::Istio, TD::Any, Source::Default)]
#[case::default_solo(None, Profile::Solo, TD::PreferNetwork, Source::Default)]
fn service_entries_take_the_mode_from_their_annotation(
    #[case] annotation: Option<&str>,
    #[case] profile: Profile,
    #[case] expected: TrafficDistribution,
    #[case] source: Source,
) {
    let mut entry = service_entry("in-ambient-se").port(80, "http", Some(8080));
    if let Some(value) = annotation {
        entry = entry.annotation(value);
    }
    let entry = entry.build();
    assert_eq!(
        service_entry_distribution(&entry, profile).unwrap(),
        (expected, source)
    );
    let mut snap = snapshot();
    snap.service_entries.push(entry);
    let t = to_local_config(&snap, profile).unwrap();
    assert_eq!(t.config.services[0].load_balancer, load_balancer(expected));
}

#[rstest]
#[case::istio_warns(Profile::Istio, true)]
#[case::solo_refuses(Profile::Solo, false)]
fn unknown_service_entry_modes_follow_the_profile(
    #[case] profile: Profile,
    #[case] translated: bool,
) {
    let mut snap = snapshot();
    snap.service_entries
        .push(service_entry("se").annotation("Nearby").build());
    let fragment = "ServiceEntry httpbin/se: field \
                    `metadata.annotations[networking.istio.io/traffic-distribution]` is \"Nearby\"";
    match to_local_config(&snap, profile) {
        Ok(t) => {
            assert!(translated);
            assert_eq!(t.config.services[0].load_balancer, None);
            assert!(t.warnings[0].contains(fragment), "{:?}", t.warnings);
        }
        Err(e) => {
            assert!(!translated);
            assert!(e.to_string().contains(fragment), "{e}");
        }
    }
}

//! Priority levels of a service's endpoints, from its load-balancer routing preferences and
//! mode, as upstream ztunnel ranks them: an endpoint's rank is how many leading preferences it
//! shares with the client, counted in order and stopping at the first mismatch.

use crate::local_config::{LoadBalancer, LoadBalancerMode, LocalWorkload, RoutingPreference};

/// Whether `endpoint` shares one locality scope with `client`.
pub fn matches(pref: RoutingPreference, client: &LocalWorkload, endpoint: &LocalWorkload) -> bool {
    match pref {
        RoutingPreference::Network => client.network == endpoint.network,
        RoutingPreference::Cluster => client.cluster_id == endpoint.cluster_id,
        RoutingPreference::Region => client.locality.region == endpoint.locality.region,
        RoutingPreference::Zone => client.locality.zone == endpoint.locality.zone,
        RoutingPreference::Subzone => client.locality.subzone == endpoint.locality.subzone,
        RoutingPreference::Node => client.node == endpoint.node,
    }
}

/// Number of leading preferences `endpoint` shares with `client`.
pub fn rank(
    prefs: &[RoutingPreference],
    client: &LocalWorkload,
    endpoint: &LocalWorkload,
) -> usize {
    prefs
        .iter()
        .take_while(|p| matches(**p, client, endpoint))
        .count()
}

/// Groups endpoints into levels, best first, keeping their order inside each level.
/// `Standard` (or no load balancer): one level. `Failover`: one level per distinct rank.
/// `Strict`: only the endpoints matching every preference (possibly none).
/// `Passthrough` never reaches here (the proxy connects to the original destination).
pub fn priority_levels<T>(
    lb: Option<&LoadBalancer>,
    client: &LocalWorkload,
    endpoints: Vec<T>,
    workload_of: impl Fn(&T) -> &LocalWorkload,
) -> Vec<Vec<T>> {
    let Some(lb) = lb else {
        return non_empty(vec![endpoints]);
    };
    let prefs = &lb.routing_preferences;
    match lb.mode {
        LoadBalancerMode::Standard | LoadBalancerMode::Passthrough => non_empty(vec![endpoints]),
        LoadBalancerMode::Strict => non_empty(vec![
            endpoints
                .into_iter()
                .filter(|e| rank(prefs, client, workload_of(e)) == prefs.len())
                .collect(),
        ]),
        LoadBalancerMode::Failover => {
            let mut levels: Vec<Vec<T>> = (0..=prefs.len()).map(|_| Vec::new()).collect();
            for e in endpoints {
                let r = rank(prefs, client, workload_of(&e));
                levels[prefs.len() - r].push(e);
            }
            non_empty(levels)
        }
    }
}

fn non_empty<T>(levels: Vec<Vec<T>>) -> Vec<Vec<T>> {
    levels.into_iter().filter(|l| !l.is_empty()).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::local_config::{HealthPolicy, Locality, Protocol};
    use LoadBalancerMode::*;
    use RoutingPreference::*;
    use rstest::rstest;
    use std::collections::BTreeMap;

    /// A workload builder over defaults: `workload("a").zone("z2")`.
    pub(crate) fn workload(name: &str) -> LocalWorkload {
        LocalWorkload {
            uid: format!("cluster1//v1/Pod/ns/{name}"),
            name: name.to_string(),
            namespace: "ns".into(),
            service_account: "sa".into(),
            workload_ips: vec!["10.0.0.1".parse().unwrap()],
            protocol: Protocol::TCP,
            node: "node-a".into(),
            network: "net1".into(),
            cluster_id: "cluster1".into(),
            trust_domain: String::new(),
            workload_name: String::new(),
            hostname: String::new(),
            status: Default::default(),
            capacity: 1,
            locality: Locality {
                region: "r1".into(),
                zone: "z1".into(),
                subzone: "s1".into(),
            },
            services: BTreeMap::new(),
        }
    }

    trait Builder {
        fn set(self, pref: RoutingPreference, value: &str) -> Self;
    }

    impl Builder for LocalWorkload {
        fn set(mut self, pref: RoutingPreference, value: &str) -> Self {
            let v = value.to_string();
            match pref {
                Network => self.network = v,
                Cluster => self.cluster_id = v,
                Region => self.locality.region = v,
                Zone => self.locality.zone = v,
                Subzone => self.locality.subzone = v,
                Node => self.node = v,
            }
            self
        }
    }

    fn lb(prefs: &[RoutingPreference], mode: LoadBalancerMode) -> LoadBalancer {
        LoadBalancer {
            routing_preferences: prefs.to_vec(),
            mode,
            health_policy: HealthPolicy::OnlyHealthy,
        }
    }

    #[rstest]
    #[case(&[Network, Region, Zone], &[], 3)]
    #[case(&[Network, Region, Zone], &[(Zone, "z2")], 2)]
    #[case(&[Network, Region, Zone], &[(Region, "r2")], 1)]
    #[case(&[Network, Region, Zone], &[(Network, "net2")], 0)]
    // Counting stops at the first mismatch, even if later scopes match again.
    #[case(&[Network, Region, Zone], &[(Region, "r2"), (Zone, "z1")], 1)]
    #[case(&[Network, Region, Zone], &[(Network, "net2"), (Region, "r1")], 0)]
    #[case(&[Node], &[(Node, "node-b")], 0)]
    #[case(&[Cluster, Network], &[(Network, "net2")], 1)]
    #[case(&[Network, Region, Zone, Subzone, Node], &[(Subzone, "s2")], 3)]
    #[case(&[], &[(Network, "net2")], 0)]
    fn ranks(
        #[case] prefs: &[RoutingPreference],
        #[case] differs: &[(RoutingPreference, &str)],
        #[case] expected: usize,
    ) {
        let client = workload("client");
        let endpoint = differs.iter().fold(workload("e"), |w, (p, v)| w.set(*p, v));
        assert_eq!(rank(prefs, &client, &endpoint), expected);
    }

    fn endpoints() -> Vec<LocalWorkload> {
        vec![
            workload("same-zone"),
            workload("other-zone").set(Zone, "z2"),
            workload("other-region").set(Region, "r2"),
            workload("other-network").set(Network, "net2"),
            workload("other-zone-2").set(Zone, "z3"),
        ]
    }

    fn names(levels: &[Vec<LocalWorkload>]) -> Vec<Vec<&str>> {
        levels
            .iter()
            .map(|l| l.iter().map(|w| w.name.as_str()).collect())
            .collect()
    }

    #[rstest]
    #[case(None, vec![vec!["same-zone", "other-zone", "other-region", "other-network", "other-zone-2"]])]
    #[case(Some(lb(&[Network, Region, Zone], Standard)), vec![vec!["same-zone", "other-zone", "other-region", "other-network", "other-zone-2"]])]
    #[case(Some(lb(&[Network, Region, Zone], Failover)), vec![vec!["same-zone"], vec!["other-zone", "other-zone-2"], vec!["other-region"], vec!["other-network"]])]
    #[case(Some(lb(&[Network], Failover)), vec![vec!["same-zone", "other-zone", "other-region", "other-zone-2"], vec!["other-network"]])]
    #[case(Some(lb(&[Network, Region, Zone], Strict)), vec![vec!["same-zone"]])]
    #[case(Some(lb(&[Node], Strict)), vec![vec!["same-zone", "other-zone", "other-region", "other-network", "other-zone-2"]])]
    fn levels(#[case] lb: Option<LoadBalancer>, #[case] expected: Vec<Vec<&str>>) {
        let client = workload("client");
        let levels = priority_levels(lb.as_ref(), &client, endpoints(), |w| w);
        assert_eq!(names(&levels), expected);
    }

    #[test]
    fn strict_with_no_match_has_no_level() {
        let client = workload("client").set(Node, "node-z");
        let levels = priority_levels(Some(&lb(&[Node], Strict)), &client, endpoints(), |w| w);
        assert!(levels.is_empty());
    }
}

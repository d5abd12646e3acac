//! Priority levels of a service's endpoints, from its load-balancer routing preferences and
//! mode, as upstream ztunnel ranks them: an endpoint's rank is how many leading preferences it
//! shares with the client (this proxy's own workload), counted in order and stopping at the
//! first mismatch. With `Network` first, every cross-network endpoint ranks 0, so they all share
//! the lowest level whatever their region or zone (TD-MODE-XNET).

use crate::defects::{Defect, Defects};
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

/// Number of leading preferences `endpoint` shares with `client`. An unknown client (its
/// workload is not in the config) shares nothing with anyone.
pub fn rank(
    prefs: &[RoutingPreference],
    client: Option<&LocalWorkload>,
    endpoint: &LocalWorkload,
) -> usize {
    client.map_or(0, |client| {
        prefs
            .iter()
            .take_while(|p| matches(**p, client, endpoint))
            .count()
    })
}

/// How one service's endpoints are grouped into levels, once the defect switches are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ranking<'a> {
    /// No load balancer (`Any`), `Standard`, or `Passthrough` (which never reaches the picker):
    /// every endpoint in one level.
    OneLevel,
    /// Only the endpoints matching every preference, in one level (possibly none): no failover.
    Strict(&'a [RoutingPreference]),
    /// One level per rank, best first.
    Failover(&'a [RoutingPreference]),
    /// The `cross-network-by-locality` defect (upstream since 2d8e90e): like `Failover`, but a
    /// cross-network endpoint skips the `Network` scope and still ranks by the other
    /// preferences, below every endpoint of the client's network.
    FailoverCrossNetworkByLocality(&'a [RoutingPreference]),
}

impl<'a> Ranking<'a> {
    pub fn of(lb: Option<&'a LoadBalancer>, defects: &Defects) -> Self {
        let Some(lb) = lb else {
            return Ranking::OneLevel;
        };
        if defects.is_on(Defect::IgnoreLocality) {
            return Ranking::OneLevel;
        }
        let prefs = lb.routing_preferences.as_slice();
        match lb.mode {
            LoadBalancerMode::Standard | LoadBalancerMode::Passthrough => Ranking::OneLevel,
            LoadBalancerMode::Strict if defects.is_on(Defect::StrictAsFailover) => {
                Ranking::Failover(prefs)
            }
            LoadBalancerMode::Strict => Ranking::Strict(prefs),
            LoadBalancerMode::Failover if defects.is_on(Defect::CrossNetworkByLocality) => {
                Ranking::FailoverCrossNetworkByLocality(prefs)
            }
            LoadBalancerMode::Failover => Ranking::Failover(prefs),
        }
    }

    /// Groups endpoints into levels, best first, keeping their order inside each level; empty
    /// levels are left out.
    pub fn levels<T>(
        self,
        client: Option<&LocalWorkload>,
        endpoints: Vec<T>,
        workload_of: impl Fn(&T) -> &LocalWorkload,
    ) -> Vec<Vec<T>> {
        match self {
            Ranking::OneLevel => non_empty(vec![endpoints]),
            Ranking::Strict(prefs) => non_empty(vec![
                endpoints
                    .into_iter()
                    .filter(|e| rank(prefs, client, workload_of(e)) == prefs.len())
                    .collect(),
            ]),
            Ranking::Failover(prefs) => {
                let mut levels: Vec<Vec<T>> = (0..=prefs.len()).map(|_| Vec::new()).collect();
                for e in endpoints {
                    let r = rank(prefs, client, workload_of(&e));
                    levels[prefs.len() - r].push(e);
                }
                non_empty(levels)
            }
            Ranking::FailoverCrossNetworkByLocality(prefs) => {
                let n = prefs.len();
                let mut levels: Vec<Vec<T>> = (0..2 * n + 1).map(|_| Vec::new()).collect();
                for e in endpoints {
                    let w = workload_of(&e);
                    let cross = prefs.first() == Some(&RoutingPreference::Network)
                        && client.is_some_and(|c| !matches(RoutingPreference::Network, c, w));
                    let index = if cross {
                        // Below all n levels of the client's network, ranked by the rest.
                        n + (n - 1 - rank(&prefs[1..], client, w))
                    } else {
                        n - rank(prefs, client, w)
                    };
                    levels[index].push(e);
                }
                non_empty(levels)
            }
        }
    }

    /// For `Strict`: the scope every endpoint must share with this proxy, for the log line of a
    /// dropped connection.
    pub fn strict_scope(self) -> Option<StrictScope> {
        match self {
            Ranking::Strict(prefs) => Some(StrictScope::new(prefs)),
            Ranking::OneLevel
            | Ranking::Failover(_)
            | Ranking::FailoverCrossNetworkByLocality(_) => None,
        }
    }
}

fn non_empty<T>(levels: Vec<Vec<T>>) -> Vec<Vec<T>> {
    levels.into_iter().filter(|l| !l.is_empty()).collect()
}

/// The locality a `Strict` service's endpoints must share with this proxy, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrictScope {
    /// The routing preferences, lower case, `+`-joined: `node`, `network+region`.
    pub scope: String,
    /// Where a usable endpoint would be: `on this node`, `in this network and region`.
    pub place: String,
}

impl StrictScope {
    pub fn new(prefs: &[RoutingPreference]) -> Self {
        let names: Vec<&str> = prefs.iter().map(|p| scope_name(*p)).collect();
        let place = match names.as_slice() {
            [] => "anywhere".to_string(),
            ["node"] => "on this node".to_string(),
            [one] => format!("in this {one}"),
            [init @ .., last] => format!("in this {} and {last}", init.join(", ")),
        };
        Self {
            scope: names.join("+"),
            place,
        }
    }
}

fn scope_name(pref: RoutingPreference) -> &'static str {
    match pref {
        RoutingPreference::Network => "network",
        RoutingPreference::Cluster => "cluster",
        RoutingPreference::Region => "region",
        RoutingPreference::Zone => "zone",
        RoutingPreference::Subzone => "subzone",
        RoutingPreference::Node => "node",
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::local_config::{HealthPolicy, Locality, Protocol};
    use LoadBalancerMode::*;
    use RoutingPreference::*;
    use rstest::rstest;
    use std::collections::BTreeMap;

    /// A workload builder over defaults: `workload("a").set(Zone, "z2")`. The defaults are the
    /// client's locality in these tests: network net1, region r1, zone z1, subzone s1, node-a.
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

    pub(crate) trait Builder {
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

    pub(crate) fn lb(prefs: &[RoutingPreference], mode: LoadBalancerMode) -> LoadBalancer {
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
        assert_eq!(rank(prefs, Some(&client), &endpoint), expected);
        assert_eq!(rank(prefs, None, &endpoint), 0, "unknown client");
    }

    /// One endpoint per rung of locality relative to the client, in a mixed order so that
    /// levels cannot come from the input order.
    fn ladder() -> Vec<LocalWorkload> {
        vec![
            workload("xnet-other-labels")
                .set(Network, "net2")
                .set(Region, "r9")
                .set(Zone, "z9")
                .set(Subzone, "s9")
                .set(Node, "node-g"),
            workload("same-zone").set(Subzone, "s2").set(Node, "node-c"),
            workload("same-network")
                .set(Region, "r2")
                .set(Zone, "z3")
                .set(Subzone, "s4")
                .set(Node, "node-e"),
            workload("same-node"),
            // Another network whose region, zone and subzone labels equal the client's.
            workload("xnet-same-labels")
                .set(Network, "net2")
                .set(Node, "node-f"),
            workload("same-region")
                .set(Zone, "z2")
                .set(Subzone, "s3")
                .set(Node, "node-d"),
            workload("same-subzone").set(Node, "node-b"),
        ]
    }

    const ALL: &[&str] = &[
        "xnet-other-labels",
        "same-zone",
        "same-network",
        "same-node",
        "xnet-same-labels",
        "same-region",
        "same-subzone",
    ];
    const XNET: &[&str] = &["xnet-other-labels", "xnet-same-labels"];

    fn names(levels: &[Vec<LocalWorkload>]) -> Vec<Vec<&str>> {
        levels
            .iter()
            .map(|l| l.iter().map(|w| w.name.as_str()).collect())
            .collect()
    }

    fn ladder_levels(lb: Option<&LoadBalancer>, defects: &Defects) -> Vec<Vec<String>> {
        let client = workload("client");
        let levels = Ranking::of(lb, defects).levels(Some(&client), ladder(), |w| w);
        names(&levels)
            .into_iter()
            .map(|l| l.into_iter().map(String::from).collect())
            .collect()
    }

    fn prefer_close() -> Option<LoadBalancer> {
        Some(lb(&[Network, Region, Zone], Failover))
    }
    fn prefer_same_node() -> Option<LoadBalancer> {
        Some(lb(&[Network, Region, Zone, Subzone, Node], Failover))
    }
    fn prefer_network() -> Option<LoadBalancer> {
        Some(lb(&[Network], Failover))
    }
    fn prefer_region() -> Option<LoadBalancer> {
        Some(lb(&[Network, Region], Failover))
    }
    fn internal_traffic_policy_local() -> Option<LoadBalancer> {
        Some(lb(&[Node], Strict))
    }

    // The mode tables of BEHAVIORS.md, one rung of the ladder per endpoint.
    #[rstest]
    #[case::prefer_close_td_mode_pc(prefer_close(), vec![
        vec!["same-zone", "same-node", "same-subzone"],
        vec!["same-region"],
        vec!["same-network"],
        XNET.to_vec(),
    ])]
    #[case::prefer_same_node_td_mode_psn(prefer_same_node(), vec![
        vec!["same-node"],
        vec!["same-subzone"],
        vec!["same-zone"],
        vec!["same-region"],
        vec!["same-network"],
        XNET.to_vec(),
    ])]
    #[case::prefer_network_td_mode_pn(prefer_network(), vec![
        vec!["same-zone", "same-network", "same-node", "same-region", "same-subzone"],
        XNET.to_vec(),
    ])]
    #[case::prefer_region_td_mode_pr(prefer_region(), vec![
        vec!["same-zone", "same-node", "same-region", "same-subzone"],
        vec!["same-network"],
        XNET.to_vec(),
    ])]
    #[case::any_td_mode_any(None, vec![ALL.to_vec()])]
    #[case::standard_ignores_preferences(Some(lb(&[Network, Region, Zone], Standard)), vec![ALL.to_vec()])]
    #[case::internal_traffic_policy_local_td_itp(internal_traffic_policy_local(), vec![vec!["same-node"]])]
    #[case::strict_prefer_close(Some(lb(&[Network, Region, Zone], Strict)), vec![
        vec!["same-zone", "same-node", "same-subzone"],
    ])]
    fn modes_rank_the_ladder(#[case] lb: Option<LoadBalancer>, #[case] expected: Vec<Vec<&str>>) {
        assert_eq!(ladder_levels(lb.as_ref(), &Defects::none()), expected);
        // A control-plane defect and a picker defect change no level.
        let unrelated: Defects = [Defect::WrongPrecedence, Defect::FailOverTwoLevels]
            .into_iter()
            .collect();
        assert_eq!(ladder_levels(lb.as_ref(), &unrelated), expected);
    }

    #[rstest]
    fn ignore_locality_defect_puts_every_endpoint_in_one_level(
        #[values(
            prefer_close(),
            prefer_same_node(),
            prefer_network(),
            prefer_region(),
            None,
            internal_traffic_policy_local()
        )]
        lb: Option<LoadBalancer>,
    ) {
        let defects: Defects = [Defect::IgnoreLocality].into_iter().collect();
        assert_eq!(ladder_levels(lb.as_ref(), &defects), [ALL]);
        assert_eq!(Ranking::of(lb.as_ref(), &defects).strict_scope(), None);
    }

    #[test]
    fn cross_network_by_locality_defect_ranks_the_twin_above_the_far_endpoint() {
        let defects: Defects = [Defect::CrossNetworkByLocality].into_iter().collect();
        assert_eq!(
            ladder_levels(prefer_close().as_ref(), &defects),
            [
                &["same-zone", "same-node", "same-subzone"][..],
                &["same-region"],
                &["same-network"],
                &["xnet-same-labels"],
                &["xnet-other-labels"],
            ]
        );
    }

    #[test]
    fn strict_as_failover_defect_fails_over_past_the_node() {
        let defects: Defects = [Defect::StrictAsFailover].into_iter().collect();
        let lb = internal_traffic_policy_local();
        assert_eq!(
            ladder_levels(lb.as_ref(), &defects),
            [
                &["same-node"][..],
                &[
                    "xnet-other-labels",
                    "same-zone",
                    "same-network",
                    "xnet-same-labels",
                    "same-region",
                    "same-subzone"
                ]
            ]
        );
        assert_eq!(Ranking::of(lb.as_ref(), &defects).strict_scope(), None);
        // Failover services rank as before.
        let close = prefer_close();
        assert_eq!(
            ladder_levels(close.as_ref(), &defects),
            ladder_levels(close.as_ref(), &Defects::none())
        );
    }

    #[rstest]
    #[case::failover_one_level(prefer_close(), vec![ALL.to_vec()])]
    #[case::any_one_level(None, vec![ALL.to_vec()])]
    #[case::strict_nothing(internal_traffic_policy_local(), vec![])]
    fn unknown_client_shares_no_locality(
        #[case] lb: Option<LoadBalancer>,
        #[case] expected: Vec<Vec<&str>>,
    ) {
        let levels = Ranking::of(lb.as_ref(), &Defects::none()).levels(None, ladder(), |w| w);
        assert_eq!(names(&levels), expected);
    }

    #[test]
    fn strict_with_no_match_has_no_level() {
        let client = workload("client").set(Node, "node-z");
        let levels = Ranking::of(internal_traffic_policy_local().as_ref(), &Defects::none())
            .levels(Some(&client), ladder(), |w| w);
        assert!(levels.is_empty());
    }

    #[rstest]
    #[case(&[Node], "node", "on this node")]
    #[case(&[Network], "network", "in this network")]
    #[case(&[Network, Region], "network+region", "in this network and region")]
    #[case(&[Network, Region, Zone], "network+region+zone", "in this network, region and zone")]
    #[case(&[], "", "anywhere")]
    fn strict_scope_in_words(
        #[case] prefs: &[RoutingPreference],
        #[case] scope: &str,
        #[case] place: &str,
    ) {
        let lb = lb(prefs, Strict);
        let got = Ranking::of(Some(&lb), &Defects::none()).strict_scope();
        assert_eq!(
            got,
            Some(StrictScope {
                scope: scope.into(),
                place: place.into()
            })
        );
    }
}

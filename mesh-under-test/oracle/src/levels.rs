//! Priority levels as the catalogue's mode tables state them (BEHAVIORS.md, "modes and priority
//! levels"): the harness's own expectation of where a client's traffic goes, written from the
//! tables and independent of any ztunnel's ranking code, so a scenario can say "the replicas at P1".

use meshcert_model::{Placement, PriorityLevel, TrafficDistribution};

/// What an endpoint must share with the client, one row per level, from the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shares {
    Network,
    Region,
    Zone,
    Subzone,
    Node,
}

impl Shares {
    fn holds(self, client: &Placement, endpoint: &Placement) -> bool {
        match self {
            Shares::Network => client.network == endpoint.network,
            Shares::Region => client.region == endpoint.region,
            Shares::Zone => client.zone == endpoint.zone,
            Shares::Subzone => client.subzone == endpoint.subzone,
            Shares::Node => client.node == endpoint.node,
        }
    }
}

use Shares::*;

/// Each mode's levels but the last, which takes "every cross-network endpoint" (or, for `Any`,
/// every endpoint). `NodeLocal` is special: it has no last level (TD-ITP-1).
fn table(mode: TrafficDistribution) -> &'static [&'static [Shares]] {
    match mode {
        TrafficDistribution::PreferClose => {
            &[&[Network, Region, Zone], &[Network, Region], &[Network]]
        }
        TrafficDistribution::PreferNetwork => &[&[Network]],
        TrafficDistribution::PreferRegion => &[&[Network, Region], &[Network]],
        TrafficDistribution::PreferSameNode => &[
            &[Network, Region, Zone, Subzone, Node],
            &[Network, Region, Zone, Subzone],
            &[Network, Region, Zone],
            &[Network, Region],
            &[Network],
        ],
        TrafficDistribution::NodeLocal => &[&[Node]],
        TrafficDistribution::Any => &[],
    }
}

/// How many levels `mode` has.
pub fn level_count(mode: TrafficDistribution) -> usize {
    match mode {
        TrafficDistribution::NodeLocal => 1,
        other => table(other).len() + 1,
    }
}

/// The level of `endpoint` for a client at `client`; `None` when the mode never sends there
/// (`internalTrafficPolicy: Local`, another node).
pub fn priority_level(
    mode: TrafficDistribution,
    client: &Placement,
    endpoint: &Placement,
) -> Option<PriorityLevel> {
    let rows = table(mode);
    match rows
        .iter()
        .position(|row| row.iter().all(|s| s.holds(client, endpoint)))
    {
        Some(i) => Some(PriorityLevel(i as u8)),
        None if mode == TrafficDistribution::NodeLocal => None,
        None => Some(PriorityLevel(rows.len() as u8)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TrafficDistribution as TD;
    use rstest::rstest;

    fn at(network: &str, region: &str, zone: &str, subzone: &str, node: &str) -> Placement {
        Placement {
            network: network.into(),
            region: region.into(),
            zone: zone.into(),
            subzone: subzone.into(),
            node: node.into(),
        }
    }

    /// The ladder of `fixtures/topologies/ladder.yaml`, seen from a client on node-a.
    fn ladder() -> [(&'static str, Placement); 7] {
        [
            ("same-node", at("net1", "r1", "z1", "s1", "node-a")),
            ("same-subzone", at("net1", "r1", "z1", "s1", "node-b")),
            ("same-zone", at("net1", "r1", "z1", "s2", "node-c")),
            // Equal zone and subzone names in another region must not count as "same zone".
            ("same-region", at("net1", "r1", "z2", "s1", "node-d")),
            ("same-network", at("net1", "r2", "z1", "s1", "node-e")),
            ("other-network", at("net2", "r1", "z1", "s1", "node-f")),
            ("other-network-far", at("net2", "r9", "z9", "s9", "node-g")),
        ]
    }

    #[rstest]
    #[case::prefer_close(TD::PreferClose, [Some(0), Some(0), Some(0), Some(1), Some(2), Some(3), Some(3)])]
    #[case::prefer_same_node(TD::PreferSameNode, [Some(0), Some(1), Some(2), Some(3), Some(4), Some(5), Some(5)])]
    #[case::prefer_network(TD::PreferNetwork, [Some(0), Some(0), Some(0), Some(0), Some(0), Some(1), Some(1)])]
    #[case::prefer_region(TD::PreferRegion, [Some(0), Some(0), Some(0), Some(0), Some(1), Some(2), Some(2)])]
    #[case::any(TD::Any, [Some(0); 7])]
    #[case::node_local(TD::NodeLocal, [Some(0), None, None, None, None, None, None])]
    fn the_ladder_per_mode(#[case] mode: TrafficDistribution, #[case] expected: [Option<u8>; 7]) {
        let client = at("net1", "r1", "z1", "s1", "node-a");
        for ((name, placement), want) in ladder().iter().zip(expected) {
            assert_eq!(
                priority_level(mode, &client, placement),
                want.map(PriorityLevel),
                "{mode} {name}"
            );
        }
    }

    #[rstest]
    #[case(TD::PreferClose, 4)]
    #[case(TD::PreferSameNode, 6)]
    #[case(TD::PreferNetwork, 2)]
    #[case(TD::PreferRegion, 3)]
    #[case(TD::Any, 1)]
    #[case(TD::NodeLocal, 1)]
    fn level_counts_match_the_tables(#[case] mode: TrafficDistribution, #[case] levels: usize) {
        assert_eq!(level_count(mode), levels);
    }

    #[rstest]
    #[case("P0", Some(0))]
    #[case("P5", Some(5))]
    #[case("P6", None)]
    #[case("p1", None)]
    #[case("1", None)]
    fn levels_parse(#[case] text: &str, #[case] expected: Option<u8>) {
        assert_eq!(
            text.parse::<PriorityLevel>().ok(),
            expected.map(PriorityLevel)
        );
    }
}

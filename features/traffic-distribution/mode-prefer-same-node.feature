@needs-topology
Feature: PreferSameNode ranks same node, subzone, zone, region, network, then every cross-network endpoint
  Seed 002: `PreferSameNode` has six levels: P0 same network, region, zone, subzone and node;
  P1 ... and subzone; P2 ... and zone; P3 ... and region; P4 same network; P5 every
  cross-network endpoint.
  Seed 001: traffic moves to the next level only when no healthy endpoint is left above it.
  The ladder topology (fixtures/topologies/ladder.yaml) puts one replica at every distance from
  the client, two of them on another network.

  Ranking (TD-MODE-PSN): with the ladder's replicas above a level left out, so that no fault,
  detection or scale-down is involved, that level must take every request: only its replicas answer (exact), and each of
  them answers (the declared false-alarm rate, 0.00001 as bundled, for a mesh that picks evenly at random within the
  level; each row sends enough requests for that: 18 for two replicas, 32 for three, 45 for
  four, 59 for five). Rows whose level is the cross-network one need a target that reaches
  other networks.

  Failover (TD-FO-1): the replicas of a level are blocked with the guide's
  `iptables -A INPUT -p tcp --dport 8080 -j DROP`; after the declared detection window (1s as bundled)
  every request that is answered must be answered by the next level, and no other (failover
  moves exactly one level; a failed request is no answer from another level, but more failures
  than the declared failure budget mean the next level did not take the traffic); after `iptables -F` the level must take every answer back within the
  declared recovery window (8s as bundled).

  @TD-MODE-PSN
  Scenario Outline: PreferSameNode sends every request to <level> when nothing is left above it
    Given the topology "ladder" without the replicas above <level> of PreferSameNode
    And the Service "in-ambient" has annotation networking.istio.io/traffic-distribution: PreferSameNode
    When the client sends <requests> requests to "http://in-ambient:8000/hostname"
    Then the replicas at <level> of PreferSameNode answered every request, each at least once, with the declared false-alarm rate

    Examples: levels in the client's network
      | level | requests |
      | P0    | 12       |
      | P1    | 12       |
      | P2    | 12       |
      | P3    | 12       |
      | P4    | 12       |

    @needs-cross-network
    Examples: the cross-network level
      | level | requests |
      | P5    | 18       |

  @TD-FO-1 @needs-network-faults
  Scenario Outline: PreferSameNode fails over from <level> to <next> and back
    Given the topology "ladder" without the replicas above <level> of PreferSameNode
    And the Service "in-ambient" has annotation networking.istio.io/traffic-distribution: PreferSameNode
    When I block port 8080 of every replica at <level> of PreferSameNode with iptables DROP
    And the client sends 30 requests to "http://in-ambient:8000/hostname", one every 50ms, with a 2s timeout
    Then the requests started after the detection window were answered only by replicas at <next> of PreferSameNode, and no more failed than the failure budget
    When I remove the blocks of the replicas at <level> of PreferSameNode with iptables -F
    Then within the recovery window the replicas at <level> of PreferSameNode take every request to "http://in-ambient:8000/hostname"

    Examples: next level in the client's network
      | level | next |
      | P0    | P1   |
      | P1    | P2   |
      | P2    | P3   |
      | P3    | P4   |

    @needs-cross-network
    Examples: next level across networks
      | level | next |
      | P4    | P5   |

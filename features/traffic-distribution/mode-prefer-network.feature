@profile-solo @needs-topology
Feature: PreferNetwork (Solo) keeps traffic in the client's network while any endpoint there is healthy
  Seed 002: the Solo value `PreferNetwork` has two levels: P0 same network; P1 every
  cross-network endpoint.
  Seed 001: traffic moves to the next level only when no healthy endpoint is left above it.
  The ladder topology (fixtures/topologies/ladder.yaml) puts one replica at every distance from
  the client, two of them on another network.

  Ranking (TD-MODE-PN): with the ladder's replicas above a level left out, so that no fault,
  detection or scale-down is involved, that level must take every request: only its replicas answer (exact), and each of
  them answers (the declared false-alarm rate, 0.00001 as bundled, for a mesh that picks evenly at random within the
  level; each row sends enough requests for that: 18 for two replicas, 32 for three, 45 for
  four, 59 for five). Rows whose level is the cross-network one need a target that reaches
  other networks.

  Failover between levels (TD-FO-1) is checked on PreferSameNode, whose six levels include
  every kind of step, and on PreferClose.

  @TD-MODE-PN
  Scenario Outline: PreferNetwork sends every request to <level> when nothing is left above it
    Given the topology "ladder" without the replicas above <level> of PreferNetwork
    And the Service "in-ambient" has annotation networking.istio.io/traffic-distribution: PreferNetwork
    When the client sends <requests> requests to "http://in-ambient:8000/hostname"
    Then the replicas at <level> of PreferNetwork answered every request, each at least once, with the declared false-alarm rate

    Examples: levels in the client's network
      | level | requests |
      | P0    | 59       |

    @needs-cross-network
    Examples: the cross-network level
      | level | requests |
      | P1    | 18       |

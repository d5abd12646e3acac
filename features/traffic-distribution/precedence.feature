@TD-PREC-1 @needs-topology
Feature: internalTrafficPolicy Local beats spec.trafficDistribution, which beats the annotation
  Seeds 001 and 002: the precedence, highest first, is the Service's `spec.trafficDistribution`,
  then its annotation `networking.istio.io/traffic-distribution`; DESIGN.md puts
  `internalTrafficPolicy: Local` above both. Every pair of settings is set in both orders, and
  the spec/annotation pair also with the values swapped, so the winner is the field, never the
  value set last.
  The mode in effect is read from where the traffic goes on the ladder topology
  (fixtures/topologies/ladder.yaml), where the modes used here have different top levels.
  Every answer must come from the winner's top level (exact) and each replica there must answer
  (the declared false-alarm rate, 0.00001 as bundled, for a mesh that picks evenly at random: 32 requests for the three
  replicas at P0 of PreferClose).

  Background:
    Given the topology "ladder"

  Scenario Outline: <first>, then <second>: <winner> is in effect
    Given the Service "in-ambient" has <first>
    When the Service "in-ambient" is changed to also have <second>
    And the client sends 32 requests to "http://in-ambient:8000/hostname"
    Then the replicas at P0 of <winner> answered every request, each at least once, with the declared false-alarm rate

    Examples: spec.trafficDistribution and the annotation
      | first                                                            | second                                                           | winner         |
      | spec.trafficDistribution: PreferClose                            | annotation networking.istio.io/traffic-distribution: PreferSameNode | PreferClose    |
      | annotation networking.istio.io/traffic-distribution: PreferSameNode | spec.trafficDistribution: PreferClose                            | PreferClose    |
      | spec.trafficDistribution: PreferSameNode                         | annotation networking.istio.io/traffic-distribution: PreferClose | PreferSameNode |
      | annotation networking.istio.io/traffic-distribution: PreferClose | spec.trafficDistribution: PreferSameNode                         | PreferSameNode |

    Examples: internalTrafficPolicy Local and the others
      | first                                                            | second                                                           | winner |
      | internalTrafficPolicy: Local                                     | spec.trafficDistribution: PreferClose                            | Local  |
      | spec.trafficDistribution: PreferClose                            | internalTrafficPolicy: Local                                     | Local  |
      | internalTrafficPolicy: Local                                     | annotation networking.istio.io/traffic-distribution: Any         | Local  |
      | annotation networking.istio.io/traffic-distribution: Any         | internalTrafficPolicy: Local                                     | Local  |

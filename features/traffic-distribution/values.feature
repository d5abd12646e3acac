@TD-PREC-2 @needs-topology
Feature: spec.trafficDistribution takes the Kubernetes values; the annotation takes every mode
  Seeds 001 and 002: `spec.trafficDistribution` supports `PreferClose` (alias `PreferSameZone`);
  the Istio-only modes go in the annotation, which supports every mode. The API server refuses
  any other value in the spec field (upstream Kubernetes also accepts `PreferSameNode` there,
  see the precedence feature). `PreferNetwork` and `PreferRegion` are Solo values: on an `istio`
  target they are unknown, which means `Any` (the mode features check that).
  The mode in effect is read from where the traffic goes on the ladder topology: every answer
  from the mode's top level (exact) and each replica there answering (the declared false-alarm rate, 0.00001 as bundled,
  for a mesh that picks evenly at random; each row sends enough requests for its level's size).

  Background:
    Given the topology "ladder"

  Scenario: spec.trafficDistribution PreferSameZone is PreferClose
    Given the Service "in-ambient" has spec.trafficDistribution: PreferSameZone
    When the client sends 32 requests to "http://in-ambient:8000/hostname"
    Then the replicas at P0 of PreferClose answered every request, each at least once, with the declared false-alarm rate

  Scenario Outline: spec.trafficDistribution refuses <value>, which belongs in the annotation
    Then giving the Service "in-ambient" spec.trafficDistribution: <value> is refused, naming "spec.trafficDistribution"

    Examples:
      | value         |
      | PreferNetwork |
      | PreferRegion  |
      | Any           |

  Scenario Outline: the annotation sets <value>
    Given the Service "in-ambient" has annotation networking.istio.io/traffic-distribution: <value>
    When the client sends <requests> requests to "http://in-ambient:8000/hostname"
    Then the replicas at P0 of <value> answered every request, each at least once, with the declared false-alarm rate

    Examples: modes of every profile
      | value          | requests |
      | PreferClose    | 32       |
      | PreferSameZone | 32       |
      | PreferSameNode | 12       |

    @needs-cross-network
    Examples: a mode whose top level spans networks
      | value | requests |
      | Any   | 88       |

    @profile-solo
    Examples: modes of the Solo distribution
      | value         | requests |
      | PreferNetwork | 59       |
      | PreferRegion  | 45       |

@TD-PREC-2 @needs-topology
Feature: spec.trafficDistribution takes the Kubernetes values; the annotation takes every mode
  Seeds 001 and 002: `spec.trafficDistribution` supports `PreferClose` (alias `PreferSameZone`);
  the Istio-only modes go in the annotation, which supports every mode. The API server refuses
  any other value in the spec field (upstream Kubernetes also accepts `PreferSameNode` there,
  see the precedence feature). `PreferNetwork` and `PreferRegion` are Solo values: on an `istio`
  target they are unknown, which means `Any` (the mode features check that).
  The mode in effect is read from where the traffic goes on the ladder topology; exact
  assertions, false-alarm rate 0.

  Background:
    Given the topology "ladder"

  Scenario: spec.trafficDistribution PreferSameZone is PreferClose
    Given the Service "in-ambient" has spec.trafficDistribution: PreferSameZone
    When the client sends 12 requests to "http://in-ambient:8000/hostname"
    Then the replicas at P0 of PreferClose answered every request, evenly

  Scenario Outline: spec.trafficDistribution refuses <value>, which belongs in the annotation
    Then giving the Service "in-ambient" spec.trafficDistribution: <value> is refused, naming "spec.trafficDistribution"

    Examples:
      | value         |
      | PreferNetwork |
      | PreferRegion  |
      | Any           |

  Scenario Outline: the annotation sets <value>
    Given the Service "in-ambient" has annotation networking.istio.io/traffic-distribution: <value>
    When the client sends 12 requests to "http://in-ambient:8000/hostname"
    Then the replicas at P0 of <value> answered every request, evenly

    Examples: modes of every profile
      | value          |
      | PreferClose    |
      | PreferSameZone |
      | PreferSameNode |
      | Any            |

    @profile-solo
    Examples: modes of the Solo distribution
      | value         |
      | PreferNetwork |
      | PreferRegion  |

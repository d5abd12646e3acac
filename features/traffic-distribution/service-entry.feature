@needs-topology
Feature: a ServiceEntry takes its mode from its annotation, with every mode available
  Seeds 002 and 003: a ServiceEntry has no `spec.trafficDistribution`; the annotation
  `networking.istio.io/traffic-distribution` sets its mode, and every mode is available. The
  ServiceEntry of fixtures/service-entry.yaml selects the in-ambient replicas of the ladder
  topology (`workloadSelector: app: in-ambient`), so the mode in effect shows in where the
  traffic to `in-ambient.mesh.example` goes: every answer from the mode's top level (exact) and
  each replica there answering (the declared false-alarm rate, 0.00001 as bundled, for a mesh that picks evenly at random;
  each row sends enough requests for its level's size).

  Background:
    Given the topology "ladder"
    And the fixture "service-entry" is applied

  @TD-PREC-3
  Scenario Outline: the ServiceEntry's annotation sets <value>
    Given the ServiceEntry "in-ambient-se" has annotation networking.istio.io/traffic-distribution: <value>
    When the client sends <requests> requests to "http://in-ambient.mesh.example/hostname"
    Then the replicas at P0 of <value> answered every request, each at least once, with the declared false-alarm rate

    Examples: modes of every profile
      | value          | requests |
      | PreferClose    | 32       |
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

  @profile-solo @TD-DEF-1
  Scenario: a ServiceEntry with no annotation is PreferNetwork on Solo
    When the client sends 59 requests to "http://in-ambient.mesh.example/hostname"
    Then the replicas at P0 of PreferNetwork answered every request, each at least once, with the declared false-alarm rate

  @profile-istio @TD-DEF-2 @needs-cross-network
  Scenario: a ServiceEntry with no annotation gives every endpoint equal weight on Istio
    When the client sends 88 requests to "http://in-ambient.mesh.example/hostname"
    Then the replicas at P0 of Any answered every request, each at least once, with the declared false-alarm rate

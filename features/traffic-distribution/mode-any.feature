@TD-MODE-ANY @needs-topology @needs-cross-network
Feature: Any gives every endpoint the same level, with no locality preference
  Seed 002: with `Any`, every endpoint is at P0, whatever its node, zone, region or network.
  The ladder topology (fixtures/topologies/ladder.yaml) has seven replicas at seven distances
  from the client: 88 requests must reach every one of them (the declared false-alarm rate, 0.00001 as bundled, for a
  mesh that picks evenly at random: it leaves one of seven out with probability at most
  7 (6/7)^88 = 9e-6). The order of the picks is L4-RR-2's claim, not this mode's.

  Scenario: requests reach the replicas at every distance
    Given the topology "ladder"
    And the Service "in-ambient" has annotation networking.istio.io/traffic-distribution: Any
    When the client sends 88 requests to "http://in-ambient:8000/hostname"
    Then the replicas at P0 of Any answered every request, each at least once, with the declared false-alarm rate

@TD-MODE-ANY @needs-topology
Feature: Any gives every endpoint the same level, round robin, with no locality preference
  Seed 002: with `Any`, every endpoint is at P0 and connections go round robin over all of them,
  whatever their node, zone, region or network. The ladder topology (fixtures/topologies/
  ladder.yaml) has seven replicas at seven distances from the client: 14 requests must give
  each exactly 2. Exact assertion, false-alarm rate 0.

  Scenario: 14 requests over seven replicas at every distance give each replica 2
    Given the topology "ladder"
    And the Service "in-ambient" has annotation networking.istio.io/traffic-distribution: Any
    When the client sends 14 requests to "http://in-ambient:8000/hostname"
    Then the replicas at P0 of Any answered every request, evenly
    And the replicas answered in a repeating order

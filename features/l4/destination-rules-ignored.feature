@needs-topology
Feature: ztunnel ignores DestinationRules: traffic distribution, round robin and L4-only detection hold
  Seeds 001 and 002: a DestinationRule's `outlierDetection` and `localityLbSetting` change nothing
  on the ztunnel path (L4-OD-2); seed 003: no DestinationRule changes the L4 pick (L4-RR-3);
  seed 002: a DestinationRule overrides traffic distribution at a waypoint, gateway or sidecar
  only (TD-DEF-3). fixtures/destination-rule.yaml asks for RANDOM balancing, locality failover
  from r1 to r2, and ejection after a single 5xx; with it applied, a PreferClose service must
  still round-robin over its P0 replicas, one of which answers HTTP 503 to every request and
  is never ejected. Exact assertions, false-alarm rate 0.

  Background:
    Given the mesh's network is "net1"
    And nodes:
      | node   | region | zone | subzone |
      | node-a | r1     | z1   | s1      |
      | node-b | r1     | z1   | s2      |
      | node-e | r2     | z1   | s1      |
    And the client "client-in-ambient" runs on node "node-a"
    And "in-ambient" has replicas:
      | replica | node   |
      | a1      | node-a |
      | b1      | node-b |
      | e1      | node-e |
    And the Service "in-ambient" has annotation networking.istio.io/traffic-distribution: PreferClose

  @L4-OD-2 @L4-RR-3 @TD-DEF-3 @needs-app-faults
  Scenario: with a DestinationRule, the ztunnel path keeps PreferClose, round robin and its 503 replica
    Given the fixture "destination-rule" is applied
    When the first "in-ambient-a1" pod answers every request with HTTP 503
    And the client sends 12 requests to "http://in-ambient:8000/hostname"
    Then the replicas at P0 of PreferClose answered every request, evenly
    And the replicas answered in a repeating order
    And the first "in-ambient-a1" pod answered its 6 requests with HTTP 503


Feature: ztunnel ignores DestinationRules
  Seeds 001 and 002: a DestinationRule's `outlierDetection` and `localityLbSetting` change nothing
  on the ztunnel path (L4-OD-2); seed 003: no DestinationRule changes the L4 pick (L4-RR-3);
  seed 002: a DestinationRule overrides traffic distribution at a waypoint, gateway or sidecar
  only (TD-DEF-3). fixtures/destination-rule.yaml asks for RANDOM balancing, locality failover
  from r1 to r2 (honoured, it would rank by subzone and leave b1 out), and ejection after a
  single 5xx. Each scenario applies it and checks one of the three claims.
  Statistical steps state their false-alarm rate for a mesh that picks evenly at random.

  @L4-OD-2 @needs-app-faults
  Scenario: with a DestinationRule that ejects after one 5xx, a pod answering HTTP 503 keeps being picked
    Given the guide's apps "in-ambient" and "client-in-ambient" are deployed
    And "in-ambient" is scaled to 3 replicas
    And the fixture "destination-rule" is applied
    When the first "in-ambient" pod answers every request with HTTP 503
    And the client sends 20 requests to "http://in-ambient:8000/hostname"
    And the client sends 32 requests to "http://in-ambient:8000/hostname"
    Then the first "in-ambient" pod was still picked in the latest batch, as one of its 3 replicas, with the declared false-alarm rate
    And every answer of the first "in-ambient" pod was HTTP 503

  @L4-RR-3
  Scenario: a DestinationRule asking for RANDOM balancing leaves the pick as it was
    Given the guide's apps "in-ambient" and "client-in-ambient" are deployed
    And "in-ambient" is scaled to 3 replicas
    When the client sends 60 requests to "http://in-ambient:8000/hostname"
    And the fixture "destination-rule" is applied
    And the client sends 60 requests to "http://in-ambient:8000/hostname"
    Then the pick did not change from the batch before, with the declared false-alarm rate

  @TD-DEF-3 @needs-topology
  Scenario: with a DestinationRule's locality settings, the ztunnel path keeps the Service's PreferClose
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
    And the fixture "destination-rule" is applied
    When the client sends 18 requests to "http://in-ambient:8000/hostname"
    Then the replicas at P0 of PreferClose answered every request, each at least once, with the declared false-alarm rate

@LOC-4 @needs-topology
Feature: each endpoint's locality is compared with the client's own ztunnel locality
  Seeds 001 and 002: the ranking is relative to the client: the same replicas are at different
  levels for clients on different nodes. Two clients of one PreferClose service, in two zones,
  must each keep their traffic in their own zone: every answer from the client's own zone
  (exact) and each replica there answering (the declared false-alarm rate, 0.00001 as bundled, for a mesh that picks
  evenly at random: 18 requests for two replicas).

  Scenario: clients in two zones each get the replicas of their own zone
    Given the mesh's network is "net1"
    And nodes:
      | node   | region | zone | subzone |
      | node-a | r1     | z1   | s1      |
      | node-b | r1     | z1   | s2      |
      | node-d | r1     | z2   | s1      |
    And the client "client-in-ambient" runs on node "node-a"
    And another client "client-d" like "client-in-ambient" runs on node "node-d"
    And "in-ambient" has replicas:
      | replica | node   |
      | a1      | node-a |
      | b1      | node-b |
      | d1      | node-d |
    And the Service "in-ambient" has annotation networking.istio.io/traffic-distribution: PreferClose
    When the client "client-in-ambient" sends 18 requests to "http://in-ambient:8000/hostname"
    Then the replicas at P0 of PreferClose answered every request, each at least once, with the declared false-alarm rate
    When the client "client-d" sends 12 requests to "http://in-ambient:8000/hostname"
    Then the replicas at P0 of PreferClose answered every request, each at least once, with the declared false-alarm rate

@TD-ITP-1 @needs-topology
Feature: internalTrafficPolicy Local keeps traffic on the client's node and never fails over
  Seed 002: with `internalTrafficPolicy: Local`, only endpoints on the client's node are used;
  with none there (or none left), the connection is dropped: there is no failover to another
  node, however close. Exact assertions (one replica per node here), false-alarm rate 0. "At once" means within the declared
  drop deadline (1.5s as bundled), well under the client's 2s timeout: the connection is dropped, not left hanging.

  Background:
    Given the mesh's network is "net1"
    And nodes:
      | node   | region | zone | subzone |
      | node-a | r1     | z1   | s1      |
      | node-b | r1     | z1   | s1      |
      | node-c | r1     | z2   | s1      |
    And the client "client-in-ambient" runs on node "node-a"

  @needs-network-faults
  Scenario: only the replica on the client's node answers; once it is blocked, nothing does
    Given "in-ambient" has replicas:
      | replica      | node   |
      | local        | node-a |
      | same-subzone | node-b |
      | other-zone   | node-c |
    And the Service "in-ambient" has internalTrafficPolicy: Local
    When the client sends 12 requests to "http://in-ambient:8000/hostname"
    Then the replicas at P0 of Local answered every request, each at least once, with the declared false-alarm rate
    When I block port 8080 of every replica at P0 of Local with iptables DROP
    And the client sends 10 requests to "http://in-ambient:8000/hostname", one every 100ms, with a 2s timeout
    Then no request was answered

  Scenario: with no replica on the client's node, every connection is dropped at once
    Given "in-ambient" has replicas:
      | replica      | node   |
      | same-subzone | node-b |
      | other-zone   | node-c |
    And the Service "in-ambient" has internalTrafficPolicy: Local
    When the client sends 6 requests to "http://in-ambient:8000/hostname" with a 2s timeout
    Then no request was answered
    And every request failed within the drop deadline

Feature: a connection that cannot reach its endpoint is re-opened to a different endpoint
  Seed 000 step 3 and seed 001: when ztunnel cannot connect to an endpoint, it opens a new TCP
  connection to a different endpoint chosen by the traffic distribution, so the client sees latency,
  not an error. Sent right after the block, before any detection could finish, round robin sends one
  of the first three connections to the blocked pod: each must still be answered.

  Background:
    Given the guide's apps "in-ambient" and "client-in-ambient" are deployed
    And "in-ambient" is scaled to 3 replicas

  @L4-FO-3 @needs-network-faults
  Scenario: requests sent right after the block are all answered, none by the blocked pod
    When I block port 8080 of the first "in-ambient" pod with iptables DROP
    And the client sends 6 requests to "http://in-ambient:8000/hostname" with a 2s timeout
    Then every request is answered
    And the blocked pod answered no request

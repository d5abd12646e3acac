Feature: after the block is removed, load balancing returns to every replica
  Seed 000 step 3: `iptables -F` in the pod, then requests reach all three replicas again (the
  guide shows 3/3/3 of 9 for its round robin; the exact count is L4-RR-2's claim). Declared
  threshold: the formerly blocked pod must answer again within the recovery window (8s as
  bundled) of the removal. Then 32
  requests must reach every replica (the declared false-alarm rate, 0.00001 as bundled, for a mesh that picks evenly at
  random).

  Background:
    Given the guide's apps "in-ambient" and "client-in-ambient" are deployed
    And "in-ambient" is scaled to 3 replicas

  @L4-FO-4 @needs-network-faults
  Scenario: the unblocked pod answers again and every replica takes requests
    When I block port 8080 of the first "in-ambient" pod with iptables DROP
    And the client sends 20 requests to "http://in-ambient:8000/hostname", one every 50ms, with a 2s timeout
    When I remove the block with iptables -F
    Then within the recovery window the formerly blocked pod answers again
    When the client sends 32 requests to "http://in-ambient:8000/hostname"
    Then the 3 "in-ambient" replicas answered every request, each at least once, with the declared false-alarm rate

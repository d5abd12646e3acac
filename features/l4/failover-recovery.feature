Feature: after the block is removed, load balancing returns to every replica
  Seed 000 step 3: `iptables -F` in the pod, then 9 requests give 3/3/3 (`sort | uniq -c`).
  Exact counts once the pod is back in rotation (false-alarm rate 0 for a round-robin mesh); the
  return itself must happen within 3s of the removal.

  Background:
    Given the guide's apps "in-ambient" and "client-in-ambient" are deployed
    And "in-ambient" is scaled to 3 replicas

  @L4-FO-4 @needs-network-faults
  Scenario: the unblocked pod answers again and 9 requests give each replica 3
    When I block port 8080 of the first "in-ambient" pod with iptables DROP
    And the client sends 20 requests to "http://in-ambient:8000/hostname", one every 50ms, with a 2s timeout
    Then the blocked pod answered no request
    When I remove the block with iptables -F
    Then within 3s the formerly blocked pod answers again
    When the client sends 9 requests to "http://in-ambient:8000/hostname"
    Then each of the 3 "in-ambient" replicas answered 3 requests

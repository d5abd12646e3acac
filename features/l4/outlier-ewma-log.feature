@profile-solo
Feature: each failure lowers the endpoint's EWMA health score, and the change is logged
  Seed 000 step 4: `info ewma updating endpoint health score dst.workload="…" previous_score=1.0
  new_score=0.65`: the first failure takes a healthy endpoint from 1.0 to 0.65.

  Background:
    Given the guide's apps "in-ambient" and "client-in-ambient" are deployed
    And "in-ambient" is scaled to 3 replicas

  @L4-OD-4 @needs-network-faults @needs-ztunnel-logs
  Scenario: the first failure of the blocked pod moves its score from 1.0 to 0.65
    When I block port 8080 of the first "in-ambient" pod with iptables DROP
    And the client sends 20 requests to "http://in-ambient:8000/hostname", one every 50ms, with a 2s timeout
    Then within the log deadline ztunnel logs at info a "ewma" line "updating endpoint health score" about the blocked pod, with fields:
      | previous_score | 1.0  |
      | new_score      | 0.65 |

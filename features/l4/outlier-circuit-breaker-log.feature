@profile-solo
Feature: after consecutive failures the circuit breaker opens, on by default
  Seed 000 step 4: `warn circuit_breaker endpoint marked unhealthy dst.workload="…"
  consecutive_failures=3 status="open"` (L4-OD-5). Seed 001: outlier detection is enabled by
  default (L4-OD-6): neither scenario configures anything on the mesh; the second asks only that
  the breaker opens.

  Background:
    Given the guide's apps "in-ambient" and "client-in-ambient" are deployed
    And "in-ambient" is scaled to 3 replicas

  @L4-OD-5 @needs-network-faults @needs-ztunnel-logs
  Scenario: three consecutive failures open the blocked pod's circuit breaker
    When I block port 8080 of the first "in-ambient" pod with iptables DROP
    And the client sends 20 requests to "http://in-ambient:8000/hostname", one every 50ms, with a 2s timeout
    Then within the log deadline ztunnel logs at warn a "circuit_breaker" line "endpoint marked unhealthy" about the blocked pod, with fields:
      | consecutive_failures | 3    |
      | status               | open |

  @L4-OD-6 @needs-network-faults @needs-ztunnel-logs
  Scenario: with nothing configured, outlier detection opens the blocked pod's circuit breaker
    When I block port 8080 of the first "in-ambient" pod with iptables DROP
    And the client sends 20 requests to "http://in-ambient:8000/hostname", one every 50ms, with a 2s timeout
    Then within the log deadline ztunnel logs at warn a "circuit_breaker" line "endpoint marked unhealthy" about the blocked pod, with fields:
      | status | open |

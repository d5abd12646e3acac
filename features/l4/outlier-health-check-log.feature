@profile-solo
Feature: a failed health check is logged with the endpoint and the error
  Seed 000 step 4: `warn health_check connection failed to endpoint dst.addr=10.10.0.15:8080
  dst.workload="in-ambient-…-ghi56" dst.service="in-ambient.httpbin.svc.cluster.local"
  error="connection timeout"`.

  Background:
    Given the guide's apps "in-ambient" and "client-in-ambient" are deployed
    And "in-ambient" is scaled to 3 replicas

  @L4-OD-3 @needs-network-faults @needs-ztunnel-logs
  Scenario: blocking a pod makes ztunnel log a failed health check against it
    When I block port 8080 of the first "in-ambient" pod with iptables DROP
    And the client sends 20 requests to "http://in-ambient:8000/hostname", one every 50ms, with a 2s timeout
    Then within the log deadline ztunnel logs at warn a "health_check" line "connection failed to endpoint" about the blocked pod, with fields:
      | dst.addr    | <blocked pod IP>:8080                |
      | dst.service | in-ambient.httpbin.svc.cluster.local |
      | error       | <any>                                |

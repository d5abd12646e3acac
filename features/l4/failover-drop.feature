Feature: a pod blocked with iptables DROP never answers, and is failed over within a detection window
  Seed 000 step 3: block port 8080 of one pod (`iptables -A INPUT -p tcp --dport 8080 -j DROP`),
  then send requests with `curl --max-time 2`. The blocked pod never answers (L4-FO-1); while
  ztunnel detects it a few requests may fail (2 of 12 in the guide's example), and after
  detection every request succeeds and is spread over the healthy pods only (L4-FO-2).
  Declared thresholds (features/thresholds/<profile>.yaml; the documentation gives none): the
  detection window (1s as bundled) and the failure budget (2 as bundled, the guide's example).
  "Spread over the healthy pods" is judged as: every request started after the window answered,
  only by the two healthy pods, each of them at least once (at the declared false-alarm rate,
  0.00001 as bundled, for a mesh that picks evenly at random: about 40 requests start after the
  window; 18 suffice). The documentation promises no latency, so none is asserted.

  Background:
    Given the guide's apps "in-ambient" and "client-in-ambient" are deployed
    And "in-ambient" is scaled to 3 replicas

  @L4-FO-1 @needs-network-faults
  Scenario: the blocked pod answers no request
    When I block port 8080 of the first "in-ambient" pod with iptables DROP
    And the client sends 12 requests to "http://in-ambient:8000/hostname", one every 50ms, with a 2s timeout
    Then the blocked pod answered no request

  @L4-FO-2 @needs-network-faults
  Scenario: while the block is detected at most 2 requests fail; after it every request is served by the other two
    When I block port 8080 of the first "in-ambient" pod with iptables DROP
    And the client sends 60 requests to "http://in-ambient:8000/hostname", one every 50ms, with a 2s timeout
    Then no more requests failed than the failure budget
    And the requests started after the detection window were answered by the other 2 "in-ambient" replicas, each at least once, with the declared false-alarm rate

Feature: a pod blocked with iptables DROP is failed over within a bounded detection window
  Seed 000 step 3: block port 8080 of one pod (`iptables -A INPUT -p tcp --dport 8080 -j DROP`),
  then send requests with `curl --max-time 2`. The blocked pod never answers; while ztunnel detects
  it a few requests may fail (2 of 12 in the guide's example); after detection every request
  succeeds and is spread over the healthy pods only.
  Detection deadline 1s after the block; after it, a request slower than 230ms counts as still
  reaching the blocked pod: one connect attempt to it costs the reference's whole 240ms connect
  timeout before the retry, while a healthy answer takes a few ms (up to ~200ms was measured with
  60 scenarios running at once on 2 cores, which is why the bound is not tighter). The spread
  after detection is judged by an exact multinomial test with a false-alarm rate of 0.001 for an even spread.

  Background:
    Given the guide's apps "in-ambient" and "client-in-ambient" are deployed
    And "in-ambient" is scaled to 3 replicas

  @L4-FO-1 @L4-FO-2 @needs-network-faults
  Scenario: the blocked pod never answers; after detection every request is served by the other two
    When I block port 8080 of the first "in-ambient" pod with iptables DROP
    And the client sends 40 requests to "http://in-ambient:8000/hostname", one every 50ms, with a 2s timeout
    Then the blocked pod answered no request
    And at most 2 requests failed
    And every request started 1s or more after the block was answered within 230ms
    And the requests started 1s or more after the block are spread evenly over the other 2 "in-ambient" replicas, with a false-alarm rate of 0.001

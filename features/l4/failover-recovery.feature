Feature: after the block is removed, load balancing returns to every replica
  Seed 000 step 3: `iptables -F` in the pod, then requests reach all three replicas again (the
  guide shows 3/3/3 of 9 for its round robin; the exact count is L4-RR-2's claim). The pod is
  taken down for as long as detecting it may take (the detection window, or the readiness window
  for a failing probe) and a second more, so it has left the rotation before it comes back.
  Declared threshold: the pod must answer again within the recovery window (8s as bundled) of
  the removal (for a killed app: of its restart; it is Ready after one passing probe). Then 32
  requests must reach every replica (the declared false-alarm rate, 0.00001 as bundled, for a mesh that picks evenly at
  random).

  Background:
    Given the guide's apps "in-ambient" and "client-in-ambient" are deployed
    And "in-ambient" is scaled to 3 replicas

  @L4-FO-4 @needs-network-faults
  Scenario Outline: after <fault> is removed the pod answers again and every replica takes requests
    When I take down the first "in-ambient" pod by <fault>
    And the client sends requests to "http://in-ambient:8000/hostname", one every 50ms, with a 2s timeout, until 1s after <window>
    When the fault is removed
    Then within the recovery window the pod taken down answers again
    When the client sends 32 requests to "http://in-ambient:8000/hostname"
    Then the 3 "in-ambient" replicas answered every request, each at least once, with the declared false-alarm rate

    Examples: the guide's block, removed with iptables -F
      | fault                        | window               |
      | iptables DROP on port 8080   | the detection window |

    Examples: the other ways a pod goes down: REJECT removed, the app restarted, the probe passing again
      | fault                        | window               |
      | iptables REJECT on port 8080 | the detection window |
      | killing its app process      | the detection window |
      | failing its readiness probe  | the readiness window |

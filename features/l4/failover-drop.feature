Feature: a pod blocked with iptables DROP never answers, and is failed over within a detection window
  Seed 000 step 3: block port 8080 of one pod (`iptables -A INPUT -p tcp --dport 8080 -j DROP`),
  then send requests with `curl --max-time 2`. The blocked pod never answers (L4-FO-1); while
  ztunnel detects it a few requests may fail (2 of 12 in the guide's example), and after
  detection every request succeeds and is spread over the healthy pods only (L4-FO-2).
  Every way the design lists for a pod to go down takes part: the guide's DROP (connects hang),
  REJECT (connects are reset), a killed app (its port refuses; the kubelet reports the pod
  NotReady at once) and a failing readiness probe (the app keeps serving; only the control
  plane's marking after the kubelet's probes takes it out).
  Declared thresholds (features/thresholds/<profile>.yaml; the documentation gives none): the
  detection window (1s as bundled), the readiness window (10s as bundled: the fixture's probe
  turns a pod NotReady after 7 failures 1s apart, then the control plane pushes) and the
  failure budget (2 as bundled, the guide's example).
  "Spread over the healthy pods" is judged as: every request started after the window answered,
  only by the two healthy pods, each of them at least once (at the declared false-alarm rate,
  0.00001 as bundled, for a mesh that picks evenly at random: about 40 requests start after the
  window; 18 suffice). The documentation promises no latency, so none is asserted.

  Background:
    Given the guide's apps "in-ambient" and "client-in-ambient" are deployed
    And "in-ambient" is scaled to 3 replicas

  @L4-FO-1 @needs-network-faults
  Scenario Outline: a pod taken down by <fault> answers no request
    When I take down the first "in-ambient" pod by <fault>
    And the client sends 12 requests to "http://in-ambient:8000/hostname", one every 50ms, with a 2s timeout
    Then the pod taken down answered no request

    Examples: the guide's block, and the other ways a pod goes down in a cluster
      | fault                      |
      | iptables DROP on port 8080 |
      | iptables REJECT on port 8080 |
      | killing its app process    |

  @L4-FO-2 @needs-network-faults
  Scenario Outline: while <fault> is detected at most the failure budget fails; after it every request is served by the other two
    When I take down the first "in-ambient" pod by <fault>
    And the client sends requests to "http://in-ambient:8000/hostname", one every 50ms, with a 2s timeout, until 2s after <window>
    Then no more requests failed than the failure budget
    And the requests started after <window> were answered by the other 2 "in-ambient" replicas, each at least once, with the declared false-alarm rate

    Examples: faults the data plane sees
      | fault                        | window               |
      | iptables DROP on port 8080   | the detection window |
      | iptables REJECT on port 8080 | the detection window |
      | killing its app process      | the detection window |

    Examples: a pod that fails its readiness probe keeps serving; only the control plane takes it out
      | fault                       | window               |
      | failing its readiness probe | the readiness window |

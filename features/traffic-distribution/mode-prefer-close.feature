@needs-topology
Feature: PreferClose ranks same zone, then same region, then same network, then every cross-network endpoint
  Seed 002: `PreferClose` (and `PreferSameZone`) has four levels: P0 same network, region and
  zone; P1 same network and region; P2 same network; P3 every cross-network endpoint.
  Seed 001: traffic moves to the next level only when no healthy endpoint is left above it.
  The ladder topology (fixtures/topologies/ladder.yaml) puts one replica at every distance from
  the client, two of them on another network.

  Ranking (TD-MODE-PC): with the ladder's replicas above a level left out, so that no fault,
  detection or scale-down is involved, that level must take every request: only its replicas answer (exact), and each of
  them answers (the declared false-alarm rate, 0.00001 as bundled, for a mesh that picks evenly at random within the
  level; each row sends enough requests for that: 18 for two replicas, 32 for three, 45 for
  four, 59 for five). Rows whose level is the cross-network one need a target that reaches
  other networks.

  Failover (TD-FO-1): the replicas of a level are taken down, with the guide's
  `iptables -A INPUT -p tcp --dport 8080 -j DROP` or the other ways a pod goes down (REJECT, a
  killed app, a failing readiness probe: the control plane's path, which a mesh with no
  detection of its own still follows); after the declared detection window (1s as bundled; the
  readiness window, 10s as bundled, for a failing probe) every request that is answered must be
  answered by the next level, and no other (failover moves exactly one level); once the fault is
  removed the level must take every answer back within the declared recovery window (8s as
  bundled). And the edge: with one replica of P0 blocked and the others healthy, traffic stays
  at P0. A request that fails is no answer from another level; more failures than the declared
  failure budget (2 as bundled) after the window mean the next level did not take the traffic.

  @TD-MODE-PC
  Scenario Outline: PreferClose sends every request to <level> when nothing is left above it
    Given the topology "ladder" without the replicas above <level> of PreferClose
    And the Service "in-ambient" has annotation networking.istio.io/traffic-distribution: PreferClose
    When the client sends <requests> requests to "http://in-ambient:8000/hostname"
    Then the replicas at <level> of PreferClose answered every request, each at least once, with the declared false-alarm rate

    Examples: levels in the client's network
      | level | requests |
      | P0    | 32       |
      | P1    | 12       |
      | P2    | 12       |

    @needs-cross-network
    Examples: the cross-network level
      | level | requests |
      | P3    | 18       |

  @TD-FO-1 @needs-network-faults
  Scenario Outline: PreferClose fails over from <level> to <next> and back (<fault>)
    Given the topology "ladder" without the replicas above <level> of PreferClose
    And the Service "in-ambient" has annotation networking.istio.io/traffic-distribution: PreferClose
    When I take down every replica at <level> of PreferClose by <fault>
    And the client sends requests to "http://in-ambient:8000/hostname", one every 50ms, with a 2s timeout, until 1.5s after <window>
    Then the requests started after <window> were answered only by replicas at <next> of PreferClose, and no more failed than the failure budget
    When the faults on the replicas at <level> of PreferClose are removed
    Then within the recovery window the replicas at <level> of PreferClose take every request to "http://in-ambient:8000/hostname"

    Examples: next level in the client's network
      | level | next | fault                        | window               |
      | P0    | P1   | iptables DROP on port 8080   | the detection window |
      | P1    | P2   | iptables DROP on port 8080   | the detection window |
      | P0    | P1   | iptables REJECT on port 8080 | the detection window |
      | P0    | P1   | killing its app process      | the detection window |

    Examples: unhealthy by the control plane alone: the probe fails, the app keeps serving
      | level | next | fault                       | window               |
      | P0    | P1   | failing its readiness probe | the readiness window |

    @needs-cross-network
    Examples: next level across networks
      | level | next | fault                      | window               |
      | P2    | P3   | iptables DROP on port 8080 | the detection window |

  @TD-FO-1 @needs-network-faults
  Scenario: with one replica of P0 blocked and the others healthy, traffic stays at P0
    Given the topology "ladder"
    And the Service "in-ambient" has annotation networking.istio.io/traffic-distribution: PreferClose
    When I block port 8080 of one replica at P0 of PreferClose with iptables DROP
    And the client sends 30 requests to "http://in-ambient:8000/hostname", one every 50ms, with a 2s timeout
    Then the requests started after the detection window were answered only by replicas at P0 of PreferClose, and no more failed than the failure budget

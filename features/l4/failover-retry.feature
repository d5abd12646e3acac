Feature: a connection that cannot reach its endpoint is re-opened to a different endpoint
  Seed 000 step 3 and seed 001: when ztunnel cannot connect to an endpoint, it opens a new TCP
  connection to a different endpoint chosen by the traffic distribution, so the client sees latency,
  not an error. Requests are sent right after the block, before any detection could finish: every
  one must still be answered, and (second scenario) by an endpoint of the best level the traffic
  distribution leaves, not by any endpoint at all. Exact assertions, false-alarm rate 0. (An even
  picker tries the blocked pod among the first 12 connections with probability 1 - (2/3)^12 =
  0.992, unless it detected the block first: either way no request may fail.)

  @L4-FO-3 @needs-network-faults
  Scenario Outline: requests sent right after <fault> are all answered, none by the pod taken down
    Given the guide's apps "in-ambient" and "client-in-ambient" are deployed
    And "in-ambient" is scaled to 3 replicas
    When I take down the first "in-ambient" pod by <fault>
    And the client sends 12 requests to "http://in-ambient:8000/hostname" with a 2s timeout
    Then every request is answered
    And the pod taken down answered no request

    Examples: a connect that hangs (the guide's), is reset, or is refused
      | fault                        |
      | iptables DROP on port 8080   |
      | iptables REJECT on port 8080 |
      | killing its app process      |

  @L4-FO-3 @needs-network-faults @needs-topology
  Scenario: the new connection goes to the other endpoint of the best level, not to a farther one
    Given the mesh's network is "net1"
    And nodes:
      | node   | region | zone | subzone |
      | node-a | r1     | z1   | s1      |
      | node-b | r1     | z1   | s2      |
      | node-d | r1     | z2   | s1      |
    And the client "client-in-ambient" runs on node "node-a"
    And "in-ambient" has replicas:
      | replica | node   |
      | a1      | node-a |
      | b1      | node-b |
      | d1      | node-d |
    And the Service "in-ambient" has annotation networking.istio.io/traffic-distribution: PreferClose
    When I block port 8080 of one replica at P0 of PreferClose with iptables DROP
    And the client sends 12 requests to "http://in-ambient:8000/hostname" with a 2s timeout
    Then every request is answered
    And the requests started 0s or more after the block were answered only by replicas at P0 of PreferClose, and no more failed than 0

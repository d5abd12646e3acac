@LOC-1 @needs-topology
Feature: an endpoint's locality comes from its node's labels, its network from the mesh's
  Seeds 001 and 002: a local endpoint's region, zone and subzone are its node's labels
  (`topology.kubernetes.io/region`, `topology.kubernetes.io/zone`, `topology.istio.io/subzone`);
  its network is the mesh's (the `topology.istio.io/network` label of `istio-system`) unless
  the pod says otherwise. Each scenario changes only the node or the namespace label, never the
  pods, and the ranking must follow: every answer from the level (exact) and each replica there
  answering (the declared false-alarm rate, 0.00001 as bundled, for a mesh that picks evenly at random: 18 requests for
  two replicas).

  Background:
    Given the mesh's network is "net1"
    And nodes:
      | node   | region | zone | subzone |
      | node-a | r1     | z1   | s1      |
      | node-d | r1     | z2   | s1      |
    And the client "client-in-ambient" runs on node "node-a"

  Scenario: relabelling a node's zone moves its replica into the client's zone
    Given "in-ambient" has replicas:
      | replica | node   |
      | here    | node-a |
      | there   | node-d |
    And the Service "in-ambient" has annotation networking.istio.io/traffic-distribution: PreferClose
    When the client sends 18 requests to "http://in-ambient:8000/hostname"
    Then the replicas at P0 of PreferClose answered every request, each at least once, with the declared false-alarm rate
    When node "node-d" is relabelled with zone "z1"
    And the client sends 18 requests to "http://in-ambient:8000/hostname"
    Then the replicas at P0 of PreferClose answered every request, each at least once, with the declared false-alarm rate

  Scenario: the mesh's network is the istio-system label, for every pod without its own
    Given "in-ambient" has replicas:
      | replica      | node   | pod network label |
      | plain        | node-d |                   |
      | labelled-one | node-d | net1              |
      | labelled-two | node-d | net2              |
    And the Service "in-ambient" has annotation networking.istio.io/traffic-distribution: PreferClose
    When the client sends 18 requests to "http://in-ambient:8000/hostname"
    Then the replicas at P1 of PreferClose answered every request, each at least once, with the declared false-alarm rate
    When the mesh's network is changed to "net2"
    And the client sends 18 requests to "http://in-ambient:8000/hostname"
    Then the replicas at P1 of PreferClose answered every request, each at least once, with the declared false-alarm rate

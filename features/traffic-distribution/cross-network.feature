@TD-MODE-XNET @needs-topology @needs-cross-network
Feature: every cross-network endpoint shares the lowest level, whatever its region or zone
  Seed 002: cross-network endpoints are all at the last level of every mode. Here one of them
  (twin) has exactly the client's region, zone and subzone labels, and another (far) has none
  in common; with no endpoint in the client's network, the two must share the traffic:
  every request answered by one of them and each of them answering (the declared false-alarm rate, 0.00001 as bundled,
  for a mesh that picks evenly at random; 18 requests over two replicas). A mesh that ranked the
  twin above the far one would send it everything.

  Background:
    Given the mesh's network is "net1"
    And nodes:
      | node   | region | zone | subzone | network |
      | node-a | r1     | z1   | s1      |         |
      | node-b | r2     | z5   | s5      |         |
      | node-x | r1     | z1   | s1      | net2    |
      | node-y | r7     | z7   | s7      | net3    |
    And the client "client-in-ambient" runs on node "node-a"
    And "in-ambient" has replicas:
      | replica | node   |
      | twin    | node-x |
      | far     | node-y |

  Scenario Outline: under <mode>, the cross-network replicas share <lowest>
    Given the Service "in-ambient" has annotation networking.istio.io/traffic-distribution: <mode>
    When the client sends 18 requests to "http://in-ambient:8000/hostname"
    Then the replicas at <lowest> of <mode> answered every request, each at least once, with the declared false-alarm rate

    Examples: modes of every profile
      | mode           | lowest |
      | PreferClose    | P3     |
      | PreferSameNode | P5     |

    @profile-solo
    Examples: modes of the Solo distribution
      | mode          | lowest |
      | PreferRegion  | P2     |
      | PreferNetwork | P1     |

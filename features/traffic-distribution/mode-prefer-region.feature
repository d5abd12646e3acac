@profile-solo @TD-MODE-PR @TD-FO-1 @needs-topology @needs-network-faults
Feature: PreferRegion (Solo) ranks same region, then same network, then every cross-network endpoint
  Seed 002: the Solo value `PreferRegion` has three levels: P0 same network and region; P1 same
  network; P2 every cross-network endpoint. Seed 001: traffic moves to the next level only when
  no healthy endpoint is left above it (TD-FO-1).
  The ladder topology (fixtures/topologies/ladder.yaml) puts one replica at every distance from
  the client, two of them on another network.
  Each row starts with the replicas above its level blocked (none for P0), so that its level is
  the best one left: that level must take every request, evenly. Then its replicas are blocked
  with the guide's `iptables -A INPUT -p tcp --dport 8080 -j DROP`; after a detection window of 1s
  every request must reach the next level, and no level below it (failover moves exactly one
  level). After `iptables -F` the level must take every request back within 3s. The last level
  has no row of its own: it is the next level of the row above it.
  False-alarm rate: 0 for the exact assertions (who answered, round robin within a level); the
  1s detection window and 3s return deadline are those of L4-FO-2 and L4-FO-4, and at most 2
  requests may fail while a level is being detected, as in the guide.

  Background:
    Given the topology "ladder"
    And the Service "in-ambient" has annotation networking.istio.io/traffic-distribution: PreferRegion

  Scenario Outline: PreferRegion fails over from <level> to <next> and back
    Given port 8080 of every replica above <level> of PreferRegion is blocked with iptables DROP
    Then within 2s the replicas at <level> of PreferRegion take every request to "http://in-ambient:8000/hostname"
    When the client sends 12 requests to "http://in-ambient:8000/hostname"
    Then the replicas at <level> of PreferRegion answered every request, evenly
    When I block port 8080 of every replica at <level> of PreferRegion with iptables DROP
    And the client sends 30 requests to "http://in-ambient:8000/hostname", one every 50ms, with a 2s timeout
    Then at most 2 requests failed
    And every request started 1s or more after the block was answered by a replica at <next> of PreferRegion
    When I remove the blocks of the replicas at <level> of PreferRegion with iptables -F
    Then within 3s the replicas at <level> of PreferRegion take every request to "http://in-ambient:8000/hostname"
    When the client sends 12 requests to "http://in-ambient:8000/hostname"
    Then the replicas at <level> of PreferRegion answered every request, evenly

    Examples:
      | level | next |
      | P0    | P1   |
      | P1    | P2   |

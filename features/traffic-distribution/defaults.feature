@needs-topology
Feature: with no setting, Solo prefers the client's network and Istio weighs every endpoint equally
  Seed 001 (TD-DEF-1, Solo): with nothing set, ztunnel behaves as `PreferNetwork`: every
  endpoint of the client's network first, cross-network endpoints only when none is left.
  Seed 003 (TD-DEF-2, Istio): with nothing set, every endpoint has equal weight.
  On the ladder topology the two differ in whether the two cross-network replicas get traffic.
  Only the level's replicas may answer (exact), and each of them must (the declared false-alarm rate, 0.00001 as bundled,
  for a mesh that picks evenly at random: 59 requests over five replicas, 88 over seven).

  Background:
    Given the topology "ladder"
    And the Service "in-ambient" has no traffic distribution setting

  @profile-solo @TD-DEF-1
  Scenario: unset on Solo is PreferNetwork: the same-network replicas take every request
    When the client sends 59 requests to "http://in-ambient:8000/hostname"
    Then the replicas at P0 of PreferNetwork answered every request, each at least once, with the declared false-alarm rate

  @profile-istio @TD-DEF-2 @needs-cross-network
  Scenario: unset on Istio: every replica has equal weight, whatever its network or locality
    When the client sends 88 requests to "http://in-ambient:8000/hostname"
    Then the replicas at P0 of Any answered every request, each at least once, with the declared false-alarm rate

  @profile-istio @TD-MODE-ANY @needs-cross-network
  Scenario: Solo's PreferNetwork is unknown on Istio and means Any
    Given the Service "in-ambient" has annotation networking.istio.io/traffic-distribution: PreferNetwork
    When the client sends 88 requests to "http://in-ambient:8000/hostname"
    Then the replicas at P0 of Any answered every request, each at least once, with the declared false-alarm rate
